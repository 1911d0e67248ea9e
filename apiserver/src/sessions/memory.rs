//! Sessions in a map in the process (`SESSION_BACKEND=memory`): for local development and tests,
//! lost on restart and not shared between replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
use tower_sessions::{ExpiredDeletion, SessionStore};

use super::{DEFAULT_MAX_LIFETIME, capped, deadline_from_now, is_active};

/// A record and the end of its absolute lifetime.
#[derive(Clone, Debug)]
struct Entry {
    record: Record,
    deadline: OffsetDateTime,
}

/// Session records in memory. Clones share the map.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<Id, Entry>>>,
    max_lifetime: Duration,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore {
            records: Arc::default(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The same store with sessions ending `max` after their creation at the latest.
    pub fn with_max_lifetime(self, max: Duration) -> MemoryStore {
        MemoryStore {
            max_lifetime: max,
            ..self
        }
    }

    /// How many records are held, expired ones included.
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }

    /// Whether the record of `id` is held, expired or not.
    pub fn holds(&self, id: &Id) -> bool {
        self.records().contains_key(id)
    }

    /// Removes the expired records and returns how many there were.
    pub fn delete_expired_count(&self) -> u64 {
        let now = OffsetDateTime::now_utc();
        let mut records = self.records();
        let before = records.len();
        records.retain(|_, e| e.record.expiry_date > now);
        (before - records.len()) as u64
    }

    fn records(&self) -> MutexGuard<'_, HashMap<Id, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (every change is one
        // call on it), so a poisoned lock is still usable.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut records = self.records();
        while records.contains_key(&record.id) {
            record.id = Id::default();
        }
        let deadline = deadline_from_now(self.max_lifetime);
        record.expiry_date = capped(record, deadline);
        records.insert(
            record.id,
            Entry {
                record: record.clone(),
                deadline,
            },
        );
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        // Only an existing record is updated: a deleted session is not brought back.
        if let Some(entry) = self.records().get_mut(&record.id) {
            entry.record = Record {
                expiry_date: capped(record, entry.deadline),
                ..record.clone()
            };
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.records().get(id).map(|e| e.record.clone()).filter(is_active))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.records().remove(id);
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for MemoryStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.delete_expired_count();
        Ok(())
    }
}
