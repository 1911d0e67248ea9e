//! Sessions in a map in the process (`SESSION_BACKEND=memory`): for local development and tests,
//! lost on restart and not shared between replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
use tower_sessions::{ExpiredDeletion, SessionStore};

use super::is_active;

/// Session records in memory. Clones share the map.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<Id, Record>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
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
        records.retain(|_, r| r.expiry_date > now);
        (before - records.len()) as u64
    }

    fn records(&self) -> MutexGuard<'_, HashMap<Id, Record>> {
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
        records.insert(record.id, record.clone());
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.records().insert(record.id, record.clone());
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.records().get(id).filter(|r| is_active(r)).cloned())
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
