//! Where the entries live: Redis in the app, memory in the handler tests. Both behind [`Store`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, IntoConnectionInfo};

/// The newest entries kept; older ones are dropped so an example cannot fill Redis.
pub const MAX_ENTRIES: isize = 1000;

/// A store that could not do what was asked (the message names the server, never a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A list of entries, oldest first.
pub trait Store: Clone + Send + Sync + 'static {
    /// Appends an entry (keeping the newest [`MAX_ENTRIES`]).
    fn append(&self, entry: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// All entries, oldest first.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Whether the store answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisAddr {
    /// A `redis://` or `rediss://` URL (`REDIS_ADDR`), possibly holding credentials.
    Url(String),
    /// Host and port (`REDIS_ADDR=host:port`, or `REDIS_HOST`/`REDIS_PORT`).
    HostPort(String, u16),
}

/// The entries in a Redis list. The connection is opened at the first request, not at start,
/// so that the web pod may start before Redis does; a broken connection is replaced at the next
/// request.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<RedisInner>,
}

struct RedisInner {
    client: Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    key: String,
    /// `host:port` for messages.
    server: String,
}

impl RedisStore {
    /// A store of the list `key` at `addr`, authenticating with `password` when given.
    pub fn new(addr: &RedisAddr, password: Option<&str>, key: &str) -> Result<RedisStore, StoreError> {
        let info = match addr {
            RedisAddr::Url(url) => url.as_str().into_connection_info(),
            RedisAddr::HostPort(host, port) => (host.as_str(), *port).into_connection_info(),
        }
        .map_err(|e| StoreError(format!("REDIS_ADDR is not a Redis address: {e}")))?;
        let info = match password {
            Some(p) if !p.is_empty() => {
                let settings = info.redis_settings().clone().set_password(p);
                info.set_redis_settings(settings)
            }
            _ => info,
        };
        let server = info.addr().to_string();
        let client = Client::open(info).map_err(|e| StoreError(format!("Redis at {server}: {e}")))?;
        Ok(RedisStore {
            inner: Arc::new(RedisInner {
                client,
                conn: tokio::sync::Mutex::new(None),
                key: key.to_string(),
                server,
            }),
        })
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)));
        let conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(&e))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a command or pipeline; forgets the connection when it broke.
    async fn query<T: FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        match run(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_unrecoverable_error() || e.is_timeout() {
                    *self.inner.conn.lock().await = None;
                }
                Err(self.error(&e))
            }
        }
    }

    fn error(&self, e: &redis::RedisError) -> StoreError {
        StoreError(format!("Redis at {}: {e}", self.inner.server))
    }
}

impl Store for RedisStore {
    async fn append(&self, entry: &str) -> Result<(), StoreError> {
        let key = self.inner.key.clone();
        let entry = entry.to_string();
        self.query(async move |c| {
            redis::pipe()
                .atomic()
                .rpush(&key, entry)
                .ignore()
                .ltrim(&key, -MAX_ENTRIES, -1)
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        let key = self.inner.key.clone();
        self.query(async move |c| redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(c).await)
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query(async |c| redis::cmd("PING").query_async(c).await).await?;
        match pong.as_str() {
            "PONG" => Ok(()),
            other => Err(StoreError(format!(
                "Redis at {} answered PING with {other:?}",
                self.inner.server
            ))),
        }
    }
}

/// Entries in memory, with a switch that makes every call fail (Redis down) for tests.
#[derive(Clone, Default)]
pub struct MemoryStore {
    entries: Arc<Mutex<Vec<String>>>,
    down: Arc<AtomicBool>,
}

impl MemoryStore {
    /// Makes every later call fail (`true`) or work again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError("memory store is down".into()));
        }
        Ok(())
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    async fn append(&self, entry: &str) -> Result<(), StoreError> {
        self.check()?;
        let mut entries = self.entries();
        entries.push(entry.to_string());
        let excess = entries.len().saturating_sub(MAX_ENTRIES as usize);
        entries.drain(..excess);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.check()?;
        Ok(self.entries().clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}
