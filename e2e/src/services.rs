//! PostgreSQL and Redis for tests, started on loopback by `hack/test`.
//!
//! `E2E_POSTGRES_URL` is an administrative DSN (a superuser on the throwaway server);
//! `E2E_REDIS_URL` is the Redis URL. Each test gets its own fresh database and its own Redis key
//! prefix.

use anyhow::{Context, Result};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::cluster::unique_name;

fn required_env(name: &str) -> Result<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).with_context(|| {
        format!("{name} is not set: run the tests with `hack/test`, which starts PostgreSQL and Redis on loopback")
    })
}

/// A freshly created, empty PostgreSQL database for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Name of the database.
    pub name: String,
    /// Connection URL of the database.
    pub url: String,
}

/// Creates a new, empty database on the test PostgreSQL server and returns its URL.
///
/// The server's data directory is thrown away when `hack/test` ends, so databases are not dropped
/// one by one.
pub async fn fresh_postgres() -> Result<TestDatabase> {
    let admin = required_env("E2E_POSTGRES_URL")?;
    let mut conn = PgConnection::connect(&admin)
        .await
        .with_context(|| format!("connecting to test PostgreSQL at {admin}; is it running? (`hack/test` starts it)"))?;
    let name = unique_name("test").replace('-', "_");
    // The name is generated here from [a-z0-9_] only, so it is safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await.ok();
    let url = url_with_path(&admin, &name);
    Ok(TestDatabase { name, url })
}

/// Replaces the database path of a `postgres://…/db?…` URL.
fn url_with_path(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A Redis connection for one test and a key prefix no other test uses.
pub struct TestRedis {
    /// Connection to the test Redis server.
    pub conn: redis::aio::MultiplexedConnection,
    /// Prefix for every key this test writes, ending in `:`.
    pub prefix: String,
    /// The server URL.
    pub url: String,
}

/// Connects to the test Redis server and allocates a fresh key prefix.
pub async fn fresh_redis() -> Result<TestRedis> {
    let url = required_env("E2E_REDIS_URL")?;
    let client = redis::Client::open(url.as_str()).with_context(|| format!("invalid E2E_REDIS_URL {url}"))?;
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to test Redis at {url}; is it running? (`hack/test` starts it)"))?;
    Ok(TestRedis {
        conn,
        prefix: format!("{}:", unique_name("test")),
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::url_with_path;

    #[test]
    fn replaces_database_in_url() {
        assert_eq!(
            url_with_path("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_path("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "x"),
            "postgres://u@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            url_with_path("postgres://127.0.0.1:5432", "x"),
            "postgres://127.0.0.1:5432/x"
        );
    }
}
