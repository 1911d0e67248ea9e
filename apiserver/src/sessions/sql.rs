//! Sessions in the `sessions` table (`SESSION_BACKEND=postgres`; the same queries run on SQLite).
//!
//! A row is keyed by [`storage_key`] (SHA-256 of the session id), holds the record without its id
//! as JSON ([`encode`]), and `expires_at` in Unix seconds for loading and cleanup.

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, Error};
use tower_sessions::{ExpiredDeletion, SessionStore};

use super::{CREATE_ATTEMPTS, decode, encode, is_active, storage_key};
use crate::db::Db;

/// Session records in the database.
#[derive(Clone, Debug)]
pub struct SqlStore {
    db: Db,
}

impl SqlStore {
    /// A store over the `sessions` table of `db` (created by the migrations).
    pub fn new(db: Db) -> SqlStore {
        SqlStore { db }
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
        let data = encode(record)?;
        let expires_at = record.expiry_date.unix_timestamp();
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
        sqlx::query(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(storage_key(&record.id))
        .bind(encode(record)?)
        .bind(record.expiry_date.unix_timestamp())
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
        Ok(Some(decode(id, &data)?).filter(is_active))
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
