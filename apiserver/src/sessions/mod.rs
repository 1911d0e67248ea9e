//! Browser sessions: the cookie and its expiry, and where the session records are kept.
//!
//! # Decision
//!
//! [`tower_sessions`] provides the middleware: it reads and writes the session cookie, loads the
//! record lazily, refreshes the expiry on every change ([`Expiry::OnInactivity`]) and saves the
//! record after the response. The stores are our own [`SessionStore`] implementations instead of
//! the companion crates, because `tower-sessions-sqlx-store` pins sqlx 0.8 (the server uses sqlx
//! 0.9 through the `Any` driver, one code path for PostgreSQL and SQLite) and
//! `tower-sessions-redis-store` uses the `fred` client (the workspace uses the `redis` crate).
//!
//! Backends (`SESSION_BACKEND`):
//! - `memory`: [`MemoryStore`], a map in the process; lost on restart.
//! - `postgres`: [`SqlStore`] over the `sessions` table of the database.
//! - `redis`: [`RedisStore`]; Redis expires the keys itself.
//!
//! The persistent stores never keep the session id (the cookie value) itself: rows and keys are
//! named by the SHA-256 of the id ([`storage_key`]), and the stored JSON omits the id, so a leaked
//! database or Redis dump cannot be replayed as cookies. Store errors carry context but never
//! session data.

mod memory;
mod redis;
mod sql;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, Error};
use tower_sessions::{ExpiredDeletion, Expiry, SessionManagerLayer, SessionStore};

pub use self::memory::MemoryStore;
pub use self::redis::{DEFAULT_REDIS_PREFIX, REDIS_CLIENT_NAME, RedisStore};
pub use self::sql::SqlStore;
use crate::config::{Config, SessionBackend};
use crate::db::{Db, Engine};

/// The session store selected by `SESSION_BACKEND`.
#[derive(Clone, Debug)]
pub enum Store {
    /// In memory.
    Memory(MemoryStore),
    /// In the `sessions` table of the database.
    Sql(SqlStore),
    /// In Redis.
    Redis(RedisStore),
}

impl Store {
    /// Deletes the expired sessions and returns how many were deleted; Redis expires keys itself
    /// (always 0).
    pub async fn delete_expired_count(&self) -> session_store::Result<u64> {
        match self {
            Store::Memory(s) => Ok(s.delete_expired_count()),
            Store::Sql(s) => s.delete_expired_count().await,
            Store::Redis(_) => Ok(0),
        }
    }

    /// The backend's name, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Sql(_) => "sql",
            Store::Redis(_) => "redis",
        }
    }
}

#[async_trait]
impl SessionStore for Store {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Store::Memory(s) => s.create(record).await,
            Store::Sql(s) => s.create(record).await,
            Store::Redis(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Store::Memory(s) => s.save(record).await,
            Store::Sql(s) => s.save(record).await,
            Store::Redis(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Store::Memory(s) => s.load(id).await,
            Store::Sql(s) => s.load(id).await,
            Store::Redis(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Store::Memory(s) => s.delete(id).await,
            Store::Sql(s) => s.delete(id).await,
            Store::Redis(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for Store {
    /// Deletes the expired sessions (a no-op for Redis, which expires keys itself).
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.delete_expired_count().await.map(|_| ())
    }
}

/// Creates the store of `SESSION_BACKEND`. For Redis, connects and checks the server with PING, so a
/// wrong `REDIS_ADDR` stops start-up.
pub async fn build(config: &Config, db: &Db) -> anyhow::Result<Store> {
    match config.session_backend {
        SessionBackend::Memory => Ok(Store::Memory(MemoryStore::default())),
        SessionBackend::Postgres => {
            anyhow::ensure!(
                db.engine() == Engine::Postgres,
                "SESSION_BACKEND=postgres requires DATABASE_DSN to name a PostgreSQL database; the server is \
                 using the embedded SQLite database"
            );
            Ok(Store::Sql(SqlStore::new(db.clone())))
        }
        SessionBackend::Redis => {
            use secrecy::ExposeSecret;
            let addr = config
                .redis_addr
                .as_ref()
                .map(|a| a.expose_secret().trim())
                .filter(|a| !a.is_empty())
                .context("REDIS_ADDR is required when SESSION_BACKEND=redis")?;
            let store = RedisStore::connect(addr, DEFAULT_REDIS_PREFIX).await?;
            Ok(Store::Redis(store))
        }
    }
}

/// Starts the task that deletes expired sessions every `every` (memory and SQL stores); `None` for
/// Redis, which expires keys itself. Must be called within a Tokio runtime; abort the handle to stop.
pub fn spawn_cleanup(store: &Store, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if matches!(store, Store::Redis(_)) {
        return None;
    }
    let store = store.clone();
    Some(tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await; // the first tick is immediate
        loop {
            interval.tick().await;
            match store.delete_expired_count().await {
                Ok(n) => tracing::debug!(backend = store.backend(), deleted = n, "deleted expired sessions"),
                Err(e) => tracing::warn!(backend = store.backend(), error = %e, "deleting expired sessions failed"),
            }
        }
    }))
}

/// The session middleware: the cookie `SESSION_COOKIE_NAME` (path `/`, `HttpOnly`, `SameSite=Lax`,
/// `Secure` with `COOKIE_SECURE`, `Domain` with `SESSION_COOKIE_DOMAIN`), expiring after
/// `SESSION_DURATION` of inactivity.
pub fn layer(store: Store, config: &Config) -> SessionManagerLayer<Store> {
    let duration = time::Duration::try_from(config.session_duration).unwrap_or(time::Duration::MAX);
    let layer = SessionManagerLayer::new(store)
        .with_name(config.session_cookie_name.clone())
        .with_path("/")
        .with_secure(config.cookie_secure)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(duration));
    match config
        .session_cookie_domain
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        Some(domain) => layer.with_domain(domain.to_string()),
        None => layer,
    }
}

/// The name under which a session is stored: the SHA-256 (hex) of the id as it appears in the
/// cookie.
pub fn storage_key(id: &Id) -> String {
    format!("{:x}", Sha256::digest(id.to_string().as_bytes()))
}

/// Whether the record has not expired yet.
fn is_active(record: &Record) -> bool {
    record.expiry_date > time::OffsetDateTime::now_utc()
}

/// The JSON stored for a record: its data and exact expiry, without the id (the id is the cookie
/// value; the row or key is named by its hash).
#[derive(serde::Serialize)]
struct StoredRef<'a> {
    data: &'a HashMap<String, serde_json::Value>,
    /// Unix nanoseconds.
    expiry_date: i128,
}

/// [`StoredRef`] read back.
#[derive(serde::Deserialize)]
struct Stored {
    data: HashMap<String, serde_json::Value>,
    expiry_date: i128,
}

/// The JSON stored for a record.
fn encode(record: &Record) -> session_store::Result<String> {
    let stored = StoredRef {
        data: &record.data,
        expiry_date: record.expiry_date.unix_timestamp_nanos(),
    };
    serde_json::to_string(&stored).map_err(|e| Error::Encode(json_error("encoding a session", &e)))
}

/// The record of `id` from its stored JSON (see [`encode`]).
fn decode(id: &Id, json: &str) -> session_store::Result<Record> {
    let stored: Stored =
        serde_json::from_str(json).map_err(|e| Error::Decode(json_error("decoding a stored session", &e)))?;
    let expiry_date = time::OffsetDateTime::from_unix_timestamp_nanos(stored.expiry_date)
        .map_err(|_| Error::Decode("decoding a stored session: expiry out of range".into()))?;
    Ok(Record {
        id: *id,
        data: stored.data,
        expiry_date,
    })
}

/// A serde_json error without its message, which may quote session data.
fn json_error(context: &str, e: &serde_json::Error) -> String {
    format!(
        "{context}: {:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// How many times `create` draws a new id after a collision before giving up.
const CREATE_ATTEMPTS: usize = 16;
