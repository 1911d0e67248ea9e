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
//! Lifetimes: a session expires `SESSION_DURATION` after its last change (tower-sessions'
//! [`Expiry::OnInactivity`]) and, whatever its changes, `SESSION_MAX_LIFETIME` after it was
//! created (sign-in): every store records that deadline with the record and caps the expiry at it
//! ([`Store::with_max_lifetime`]).
//!
//! A deleted session stays deleted: `save` only updates a record that still exists, it never
//! inserts one (tower-sessions calls `create` for new sessions and `save` only for a session it
//! loaded). So a request that loaded the session before `POST /logout` deleted it, and saves it
//! afterwards, does not bring it back.
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

use time::OffsetDateTime;

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

    /// The same store with sessions ending `max` after their creation at the latest
    /// (`SESSION_MAX_LIFETIME`; [`DEFAULT_MAX_LIFETIME`] otherwise).
    pub fn with_max_lifetime(self, max: Duration) -> Store {
        match self {
            Store::Memory(s) => Store::Memory(s.with_max_lifetime(max)),
            Store::Sql(s) => Store::Sql(s.with_max_lifetime(max)),
            Store::Redis(s) => Store::Redis(s.with_max_lifetime(max)),
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
    Ok(build_backend(config, db)
        .await?
        .with_max_lifetime(config.session_max_lifetime))
}

async fn build_backend(config: &Config, db: &Db) -> anyhow::Result<Store> {
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
/// `SESSION_DURATION` of inactivity. With `COOKIE_SECURE` the name carries the `__Host-` prefix
/// (`__Secure-` with a domain; see [`Config::session_cookie`]): tenant apps share the platform's
/// site and could otherwise set a session cookie the server accepts. Logs the configuration's
/// warnings ([`Config::session_warnings`]).
pub fn layer(store: Store, config: &Config) -> SessionManagerLayer<Store> {
    for warning in config.session_warnings() {
        tracing::warn!("{warning}");
    }
    let duration = time::Duration::try_from(config.session_duration).unwrap_or(time::Duration::MAX);
    let layer = SessionManagerLayer::new(store)
        .with_name(config.session_cookie())
        .with_path("/")
        .with_secure(config.cookie_secure)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(duration));
    match config.cookie_domain() {
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
    record.expiry_date > OffsetDateTime::now_utc()
}

/// The sessions' absolute lifetime when none is configured: 7 days.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The deadline of a session created now with absolute lifetime `max`.
fn deadline_from_now(max: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc().saturating_add(time::Duration::try_from(max).unwrap_or(time::Duration::MAX))
}

/// The record's expiry, capped at `deadline`.
fn capped(record: &Record, deadline: OffsetDateTime) -> OffsetDateTime {
    record.expiry_date.min(deadline)
}

/// The JSON stored for a record: its data, exact expiry (capped at the deadline) and deadline,
/// without the id (the id is the cookie value; the row or key is named by its hash).
#[derive(serde::Serialize)]
struct StoredRef<'a> {
    data: &'a HashMap<String, serde_json::Value>,
    /// Unix nanoseconds.
    expiry_date: i128,
    /// Unix nanoseconds: the end of the session's absolute lifetime.
    deadline: i128,
}

/// [`StoredRef`] read back.
#[derive(serde::Deserialize)]
struct Stored {
    data: HashMap<String, serde_json::Value>,
    expiry_date: i128,
    /// Absent in records stored before absolute lifetimes.
    #[serde(default)]
    deadline: Option<i128>,
}

/// The JSON stored for a record whose absolute lifetime ends at `deadline`, and the expiry it
/// was stored with.
fn encode(record: &Record, deadline: OffsetDateTime) -> session_store::Result<(String, OffsetDateTime)> {
    let expiry = capped(record, deadline);
    let stored = StoredRef {
        data: &record.data,
        expiry_date: expiry.unix_timestamp_nanos(),
        deadline: deadline.unix_timestamp_nanos(),
    };
    let json = serde_json::to_string(&stored).map_err(|e| Error::Encode(json_error("encoding a session", &e)))?;
    Ok((json, expiry))
}

/// The record of `id` from its stored JSON (see [`encode`]) and its deadline, if stored.
fn decode(id: &Id, json: &str) -> session_store::Result<(Record, Option<OffsetDateTime>)> {
    let stored: Stored =
        serde_json::from_str(json).map_err(|e| Error::Decode(json_error("decoding a stored session", &e)))?;
    let time = |nanos| {
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .map_err(|_| Error::Decode("decoding a stored session: time out of range".into()))
    };
    let deadline = stored.deadline.map(time).transpose()?;
    let mut expiry_date = time(stored.expiry_date)?;
    if let Some(deadline) = deadline {
        expiry_date = expiry_date.min(deadline);
    }
    Ok((
        Record {
            id: *id,
            data: stored.data,
            expiry_date,
        },
        deadline,
    ))
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
