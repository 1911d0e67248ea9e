//! Sessions in Redis (`SESSION_BACKEND=redis`).
//!
//! A record is the key `<prefix><storage_key(id)>` holding the record without its id as JSON, set
//! with `EXAT <expiry>` so Redis removes it when it expires; no cleanup task is needed. One
//! multiplexed connection serves all requests; when it breaks it is replaced and the command is
//! sent once more.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, RedisError};
use anyhow::Context;
use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, Error};

use super::{CREATE_ATTEMPTS, DEFAULT_MAX_LIFETIME, deadline_from_now, decode, encode, is_active, storage_key};

/// The key prefix of session records.
pub const DEFAULT_REDIS_PREFIX: &str = "k8s-scheduler:session:";

/// Session records in Redis. Clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
    max_lifetime: Duration,
}

struct Inner {
    client: Client,
    conn: Mutex<MultiplexedConnection>,
    prefix: String,
    /// `host:port` of the server, for messages (never the credentials of `REDIS_ADDR`).
    server: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.inner.server)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(3)))
}

impl RedisStore {
    /// Connects to `addr` (`host:port` or a `redis://` / `rediss://` URL, as in `REDIS_ADDR`) and
    /// checks the server with PING. Keys are `prefix` followed by the hashed session id.
    pub async fn connect(addr: &str, prefix: impl Into<String>) -> anyhow::Result<RedisStore> {
        let addr = addr.trim();
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("redis://{addr}")
        };
        // The address may hold a password: messages name the variable, not its value.
        let client = Client::open(url.as_str())
            .context("REDIS_ADDR is not a Redis address (expected host:port or redis://[user:password@]host:port)")?;
        let server = client.get_connection_info().addr().to_string();
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await
            .with_context(|| {
                format!("connecting to Redis at {server} (REDIS_ADDR; is Redis running and the address right?)")
            })?;
        let pong: String = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .with_context(|| format!("Redis at {server} (REDIS_ADDR) did not answer PING"))?;
        anyhow::ensure!(
            pong == "PONG",
            "Redis at {server} (REDIS_ADDR) answered PING with {pong:?}"
        );
        name_connection(&mut conn).await;
        tracing::info!(%server, "session store: Redis");
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                conn: Mutex::new(conn),
                prefix: prefix.into(),
                server,
            }),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        })
    }

    /// The same store with sessions ending `max` after their creation at the latest.
    pub fn with_max_lifetime(self, max: Duration) -> RedisStore {
        RedisStore {
            max_lifetime: max,
            ..self
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key of a session.
    pub fn key(&self, id: &Id) -> String {
        format!("{}{}", self.inner.prefix, storage_key(id))
    }

    fn conn(&self) -> MultiplexedConnection {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Runs `cmd`; when the connection is broken, replaces it and runs `cmd` once more (every
    /// command of this store may be repeated safely).
    async fn run<T: FromRedisValue>(&self, context: &str, cmd: &Cmd) -> session_store::Result<T> {
        let mut conn = self.conn();
        match cmd.query_async(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_unrecoverable_error() || e.is_connection_dropped() || e.is_io_error() => {
                tracing::warn!(server = %self.inner.server, error = %e, "Redis session connection broken; reconnecting");
                let mut conn = self
                    .inner
                    .client
                    .get_multiplexed_async_connection_with_config(&connection_config())
                    .await
                    .map_err(|e| self.backend(context, &e))?;
                name_connection(&mut conn).await;
                *self.inner.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = conn.clone();
                cmd.query_async(&mut conn).await.map_err(|e| self.backend(context, &e))
            }
            Err(e) => Err(self.backend(context, &e)),
        }
    }

    fn backend(&self, context: &str, e: &RedisError) -> Error {
        // Connection and server errors do not quote values; conversion errors may, so only their
        // category is kept.
        let detail = match e.kind() {
            ErrorKind::Io | ErrorKind::Server(_) | ErrorKind::AuthenticationFailed => e.to_string(),
            _ => e.category().to_string(),
        };
        Error::Backend(format!("{context} in Redis at {}: {detail}", self.inner.server))
    }
}

/// The client name of the store's connection in `CLIENT LIST`.
pub const REDIS_CLIENT_NAME: &str = "k8s-scheduler-sessions";

/// Names the connection [`REDIS_CLIENT_NAME`] for operators; a server or ACL that refuses
/// `CLIENT SETNAME` does not stop the store.
async fn name_connection(conn: &mut MultiplexedConnection) {
    let named: Result<(), RedisError> = ::redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(REDIS_CLIENT_NAME)
        .query_async(conn)
        .await;
    if let Err(e) = named {
        tracing::debug!(error = %e, "naming the Redis session connection failed");
    }
}

/// The `EXAT` argument: the expiry rounded up to whole seconds.
fn expire_at(t: OffsetDateTime) -> i64 {
    t.unix_timestamp() + i64::from(t.nanosecond() > 0)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (data, expiry) = encode(record, deadline_from_now(self.max_lifetime))?;
        record.expiry_date = expiry;
        for _ in 0..CREATE_ATTEMPTS {
            let key = self.key(&record.id);
            let created = if is_active(record) {
                let set: Option<String> = self
                    .run(
                        "creating a session",
                        ::redis::cmd("SET")
                            .arg(&key)
                            .arg(&data)
                            .arg("NX")
                            .arg("EXAT")
                            .arg(expire_at(expiry)),
                    )
                    .await?;
                set.is_some()
            } else {
                // Already expired: nothing to keep, but the id must still be unused.
                let exists: bool = self.run("creating a session", ::redis::cmd("EXISTS").arg(&key)).await?;
                !exists
            };
            if created {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(Error::Backend(format!(
            "creating a session: no free session id after {CREATE_ATTEMPTS} attempts"
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let key = self.key(&record.id);
        let stored: Option<String> = self
            .run("reading a session to save it", ::redis::cmd("GET").arg(&key))
            .await?;
        // Deleted (signed out) or expired meanwhile: it stays deleted.
        let Some(stored) = stored else { return Ok(()) };
        let deadline = decode(&record.id, &stored)?
            .1
            .unwrap_or_else(|| deadline_from_now(self.max_lifetime));
        let (data, expiry) = encode(record, deadline)?;
        if expiry <= OffsetDateTime::now_utc() {
            // Redis rejects or drops an expiry in the past; an expired session is simply gone.
            let _: i64 = self
                .run("saving an expired session", ::redis::cmd("DEL").arg(&key))
                .await?;
            return Ok(());
        }
        // XX: only if the key still exists, so a delete between the read and here wins.
        let _: Option<String> = self
            .run(
                "saving a session",
                ::redis::cmd("SET")
                    .arg(&key)
                    .arg(data)
                    .arg("XX")
                    .arg("EXAT")
                    .arg(expire_at(expiry)),
            )
            .await?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let data: Option<String> = self
            .run("loading a session", ::redis::cmd("GET").arg(self.key(id)))
            .await?;
        match data {
            Some(data) => Ok(Some(decode(id, &data)?.0).filter(is_active)),
            None => Ok(None),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let _: i64 = self
            .run("deleting a session", ::redis::cmd("DEL").arg(self.key(id)))
            .await?;
        Ok(())
    }
}
