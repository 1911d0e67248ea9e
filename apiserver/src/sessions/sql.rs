//! Sessions in the `sessions` table (`SESSION_BACKEND=postgres`; the same queries run on SQLite).
//!
//! A row is keyed by [`storage_key`] (SHA-256 of the session id), holds the record without its id
//! and with its absolute deadline as JSON ([`encode`]), and `expires_at` in Unix seconds for
//! loading and cleanup. `save` reads the deadline and updates the row only if it still exists.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, Error};
use tower_sessions::{ExpiredDeletion, SessionStore};

use super::{CREATE_ATTEMPTS, DEFAULT_MAX_LIFETIME, deadline_from_now, decode, encode, is_active, storage_key};
use crate::db::Db;

/// Session records in the database.
#[derive(Clone, Debug)]
pub struct SqlStore {
    db: Db,
    max_lifetime: Duration,
}

impl SqlStore {
    /// A store over the `sessions` table of `db` (created by the migrations).
    pub fn new(db: Db) -> SqlStore {
        SqlStore {
            db,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }

    /// The same store with sessions ending `max` after their creation at the latest.
    pub fn with_max_lifetime(self, max: Duration) -> SqlStore {
        SqlStore {
            max_lifetime: max,
            ..self
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Deletes the rows that expired and returns how many there were.
    pub async fn delete_expired_count(&self) -> session_store::Result<u64> {
        let res = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(OffsetDateTime::now_utc().unix_timestamp())
            .execute(self.db.pool())
            .await
            .map_err(|e| backend("deleting expired sessions", &e))?;
        Ok(res.rows_affected())
    }
}

fn backend(context: &str, e: &sqlx::Error) -> Error {
    Error::Backend(format!("{context} in the database: {e}"))
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (data, expiry) = encode(record, deadline_from_now(self.max_lifetime))?;
        record.expiry_date = expiry;
        let expires_at = expiry.unix_timestamp();
        for _ in 0..CREATE_ATTEMPTS {
            let res = sqlx::query(
                "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(storage_key(&record.id))
            .bind(&data)
            .bind(expires_at)
            .execute(self.db.pool())
            .await
            .map_err(|e| backend("creating a session", &e))?;
            if res.rows_affected() == 1 {
                return Ok(());
            }
            // The id is taken: draw another (the stored JSON does not contain the id).
            record.id = Id::default();
        }
        Err(Error::Backend(format!(
            "creating a session: no free session id after {CREATE_ATTEMPTS} attempts"
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let key = storage_key(&record.id);
        let row = sqlx::query("SELECT data FROM sessions WHERE id = $1")
            .bind(&key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| backend("reading a session to save it", &e))?;
        // Deleted (signed out) meanwhile: it stays deleted.
        let Some(row) = row else { return Ok(()) };
        let data: String = row.try_get(0).map_err(|e| backend("reading a session row", &e))?;
        let deadline = decode(&record.id, &data)?
            .1
            .unwrap_or_else(|| deadline_from_now(self.max_lifetime));
        let (data, expiry) = encode(record, deadline)?;
        // UPDATE, never INSERT: a delete between the read and here wins.
        sqlx::query("UPDATE sessions SET data = $2, expires_at = $3 WHERE id = $1")
            .bind(&key)
            .bind(data)
            .bind(expiry.unix_timestamp())
            .execute(self.db.pool())
            .await
            .map_err(|e| backend("saving a session", &e))?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = sqlx::query("SELECT data FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(storage_key(id))
            .bind(OffsetDateTime::now_utc().unix_timestamp())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| backend("loading a session", &e))?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get(0).map_err(|e| backend("reading a session row", &e))?;
        // `expires_at` has whole seconds; the record's own expiry is exact.
        Ok(Some(decode(id, &data)?.0).filter(is_active))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(storage_key(id))
            .execute(self.db.pool())
            .await
            .map_err(|e| backend("deleting a session", &e))?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for SqlStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.delete_expired_count().await.map(|_| ())
    }
}
