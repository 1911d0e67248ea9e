//! The session stores, one shared suite run against every backend: memory, SQLite, PostgreSQL and
//! Redis (PostgreSQL and Redis are started by `hack/test`; without them those tests fail), and the
//! session cookie set by the middleware.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apiserver::config::{Config, SessionBackend};
use apiserver::db::Db;
use apiserver::sessions::{self, MemoryStore, RedisStore, SqlStore, Store, storage_key};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use sqlx::Row;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;
use tower_sessions::session::{Id, Record};
use tower_sessions::{ExpiredDeletion, Session, SessionStore};

/// A path for a throwaway SQLite file.
fn temp_sqlite() -> PathBuf {
    std::env::temp_dir().join(format!("{}.db", e2e::unique_name("apiserver-sessions")))
}

fn record(expires_in: Duration, key: &str, value: serde_json::Value) -> Record {
    Record {
        id: Id::default(),
        data: [(key.to_string(), value)].into_iter().collect(),
        expiry_date: OffsetDateTime::now_utc() + expires_in,
    }
}

/// Whether the backend still holds the record of `id`, expired or not.
async fn stored(store: &Store, redis: Option<&mut e2e::services::TestRedis>, id: &Id) -> Result<bool> {
    Ok(match store {
        Store::Memory(m) => m.holds(id),
        Store::Sql(s) => {
            let row = sqlx::query("SELECT COUNT(*) FROM sessions WHERE id = $1")
                .bind(storage_key(id))
                .fetch_one(s.db().pool())
                .await?;
            row.try_get::<i64, _>(0)? == 1
        }
        Store::Redis(r) => {
            let conn = &mut redis.context("the Redis test connection")?.conn;
            redis::cmd("EXISTS").arg(r.key(id)).query_async::<bool>(conn).await?
        }
    })
}

/// The suite every backend passes.
async fn suite(store: Store, mut redis: Option<e2e::services::TestRedis>) -> Result<()> {
    let backend = store.backend();

    // create → load round-trip.
    let mut a = record(Duration::hours(1), "user", serde_json::json!("alice"));
    store.create(&mut a).await?;
    assert_eq!(
        store.load(&a.id).await?.as_ref(),
        Some(&a),
        "{backend}: created record loads back"
    );

    // save updates the data and the expiry.
    a.data
        .insert("csrf".into(), serde_json::json!({"token": "t0k", "n": 2}));
    a.expiry_date = OffsetDateTime::now_utc() + Duration::hours(2);
    store.save(&a).await?;
    assert_eq!(
        store.load(&a.id).await?.as_ref(),
        Some(&a),
        "{backend}: saved changes load back"
    );

    // save of an id the store does not hold stores nothing (tower-sessions creates new sessions
    // with `create`; `save` is for a session it loaded).
    let unknown = record(Duration::minutes(30), "user", serde_json::json!("eve"));
    store.save(&unknown).await?;
    assert_eq!(store.load(&unknown.id).await?, None, "{backend}: save does not insert");
    assert!(
        !stored(&store, redis.as_mut(), &unknown.id).await?,
        "{backend}: save of an unknown id holds nothing"
    );

    let mut b = record(Duration::minutes(30), "user", serde_json::json!("bob"));
    store.create(&mut b).await?;
    assert_eq!(
        store.load(&b.id).await?.as_ref(),
        Some(&b),
        "{backend}: created record loads"
    );

    // delete removes.
    store.delete(&b.id).await?;
    assert_eq!(store.load(&b.id).await?, None, "{backend}: deleted record is gone");
    assert!(
        !stored(&store, redis.as_mut(), &b.id).await?,
        "{backend}: deleted record is not held"
    );
    store.delete(&b.id).await?; // deleting again is fine

    // Issue 15 item 14: a request that loaded the session before it was deleted (POST /logout)
    // and saves it afterwards does not bring it back.
    let mut c2 = record(Duration::hours(1), "user", serde_json::json!("carl"));
    store.create(&mut c2).await?;
    let mut loaded_before_logout = store.load(&c2.id).await?.context("the session loads")?;
    store.delete(&c2.id).await?; // logout
    loaded_before_logout.data.insert("seen".into(), serde_json::json!(true));
    loaded_before_logout.expiry_date = OffsetDateTime::now_utc() + Duration::hours(1);
    store.save(&loaded_before_logout).await?; // the slower request ends
    assert_eq!(
        store.load(&c2.id).await?,
        None,
        "{backend}: a signed-out session is not revived by a concurrent save"
    );
    assert!(
        !stored(&store, redis.as_mut(), &c2.id).await?,
        "{backend}: a signed-out session stays deleted"
    );

    // An unknown id loads nothing.
    assert_eq!(store.load(&Id::default()).await?, None, "{backend}: unknown id");

    // A record whose expiry is in the past is not loaded: saved, created, or expired by a save.
    let mut expired_saved = record(Duration::minutes(5), "user", serde_json::json!("old"));
    store.create(&mut expired_saved).await?;
    expired_saved.expiry_date = OffsetDateTime::now_utc() - Duration::minutes(5);
    store.save(&expired_saved).await?;
    assert_eq!(
        store.load(&expired_saved.id).await?,
        None,
        "{backend}: expired (saved) is not loaded"
    );
    let mut expired_created = record(-Duration::seconds(1), "user", serde_json::json!("old"));
    store.create(&mut expired_created).await?;
    assert_eq!(
        store.load(&expired_created.id).await?,
        None,
        "{backend}: expired (created) is not loaded"
    );
    let mut c = record(Duration::hours(1), "user", serde_json::json!("carol"));
    store.create(&mut c).await?;
    c.expiry_date = OffsetDateTime::now_utc() - Duration::seconds(10);
    store.save(&c).await?;
    assert_eq!(
        store.load(&c.id).await?,
        None,
        "{backend}: record expired by a save is not loaded"
    );

    // create on an id collision takes another id and keeps the existing record.
    let mut clash = record(Duration::hours(1), "user", serde_json::json!("mallory"));
    clash.id = a.id;
    store.create(&mut clash).await?;
    assert_ne!(clash.id, a.id, "{backend}: create on a taken id draws a new id");
    assert_eq!(
        store.load(&a.id).await?.as_ref(),
        Some(&a),
        "{backend}: the existing record is kept"
    );
    assert_eq!(
        store.load(&clash.id).await?.as_ref(),
        Some(&clash),
        "{backend}: the new record is stored"
    );

    // Cleanup.
    let live = [a.id, clash.id];
    match &store {
        Store::Redis(r) => {
            // Redis expires the keys itself: each key has a TTL matching the record's expiry.
            let conn = &mut redis.as_mut().context("the Redis test connection")?.conn;
            for rec in [&a, &clash] {
                let ttl: i64 = redis::cmd("TTL").arg(r.key(&rec.id)).query_async(conn).await?;
                let want = (rec.expiry_date - OffsetDateTime::now_utc()).whole_seconds();
                assert!((ttl - want).abs() <= 3, "{backend}: TTL {ttl}s, expected about {want}s");
            }
            for id in [expired_saved.id, expired_created.id, c.id] {
                let exists: bool = redis::cmd("EXISTS").arg(r.key(&id)).query_async(conn).await?;
                assert!(!exists, "{backend}: an expired record is not kept");
            }
            assert_eq!(store.delete_expired_count().await?, 0, "{backend}: nothing to clean up");
            store.delete_expired().await?;
        }
        Store::Memory(_) | Store::Sql(_) => {
            let expired = [expired_saved.id, expired_created.id, c.id];
            for id in &expired {
                assert!(
                    stored(&store, redis.as_mut(), id).await?,
                    "{backend}: expired record held before cleanup"
                );
            }
            assert_eq!(
                store.delete_expired_count().await?,
                3,
                "{backend}: three expired records deleted"
            );
            for id in &expired {
                assert!(
                    !stored(&store, redis.as_mut(), id).await?,
                    "{backend}: expired record gone after cleanup"
                );
            }
            store.delete_expired().await?; // through the trait: nothing left to delete
            assert_eq!(
                store.delete_expired_count().await?,
                0,
                "{backend}: second cleanup finds nothing"
            );
        }
    }
    for id in &live {
        assert!(
            store.load(id).await?.is_some(),
            "{backend}: live record survives cleanup"
        );
    }
    assert_eq!(store.load(&a.id).await?.as_ref(), Some(&a));

    // The stored form never contains the session id (the cookie value).
    if let Store::Sql(s) = &store {
        let row = sqlx::query("SELECT id, data FROM sessions WHERE id = $1")
            .bind(storage_key(&a.id))
            .fetch_one(s.db().pool())
            .await?;
        let data: String = row.try_get(1)?;
        assert!(
            !data.contains(&a.id.to_string()),
            "{backend}: stored data does not reveal the id"
        );
        assert_eq!(
            row.try_get::<String, _>(0)?.len(),
            64,
            "{backend}: rows are keyed by SHA-256 hex"
        );
    }
    if let Store::Redis(r) = &store {
        let conn = &mut redis.as_mut().context("the Redis test connection")?.conn;
        let data: String = redis::cmd("GET").arg(r.key(&a.id)).query_async(conn).await?;
        assert!(
            !data.contains(&a.id.to_string()),
            "{backend}: stored data does not reveal the id"
        );
        assert!(r.key(&a.id).ends_with(&storage_key(&a.id)));
    }
    Ok(())
}

/// Issue 15 item 14: every backend ends a session `max` after its creation, however often it is
/// saved with a later (sliding) expiry.
async fn absolute_lifetime(store: Store, mut redis: Option<e2e::services::TestRedis>) -> Result<()> {
    let backend = store.backend();
    let max = std::time::Duration::from_secs(3);
    let store = store.with_max_lifetime(max);
    let started = OffsetDateTime::now_utc();
    let deadline = started + Duration::try_from(max)?;
    let mut rec = record(Duration::hours(1), "user", serde_json::json!("alice"));
    store.create(&mut rec).await?;
    assert!(
        rec.expiry_date <= deadline + Duration::seconds(1),
        "{backend}: create caps the expiry at the absolute lifetime: {} vs {deadline}",
        rec.expiry_date
    );
    let loaded = store.load(&rec.id).await?.context("the session loads")?;
    assert!(loaded.expiry_date <= deadline + Duration::seconds(1), "{backend}");

    // A save with a new sliding expiry an hour away keeps the deadline.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut slid = loaded.clone();
    slid.expiry_date = OffsetDateTime::now_utc() + Duration::hours(1);
    store.save(&slid).await?;
    let loaded = store.load(&rec.id).await?.context("still within the lifetime")?;
    assert!(
        loaded.expiry_date <= deadline + Duration::seconds(1),
        "{backend}: save keeps the deadline: {} vs {deadline}",
        loaded.expiry_date
    );
    if let Store::Redis(r) = &store {
        let conn = &mut redis.as_mut().context("the Redis test connection")?.conn;
        let ttl: i64 = redis::cmd("TTL").arg(r.key(&rec.id)).query_async(conn).await?;
        assert!((0..=4).contains(&ttl), "{backend}: the key's TTL is capped: {ttl}s");
    }

    // After the deadline the session is gone although its sliding expiry was an hour away.
    let wait = (deadline - OffsetDateTime::now_utc()).whole_milliseconds().max(0) as u64 + 1100;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    assert_eq!(
        store.load(&rec.id).await?,
        None,
        "{backend}: a session ends at its absolute lifetime"
    );
    // A save after the deadline does not extend it either.
    store.save(&slid).await?;
    assert_eq!(store.load(&rec.id).await?, None, "{backend}: not revived by a save");
    Ok(())
}

#[tokio::test]
async fn absolute_lifetime_in_memory() -> Result<()> {
    absolute_lifetime(Store::Memory(MemoryStore::new()), None).await
}

#[tokio::test]
async fn absolute_lifetime_in_sqlite() -> Result<()> {
    let path = temp_sqlite();
    let db = Db::connect(None, &path).await?;
    absolute_lifetime(Store::Sql(SqlStore::new(db)), None).await?;
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[tokio::test]
async fn absolute_lifetime_in_postgres() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let db = Db::connect(Some(&pg.url), &temp_sqlite()).await?;
    absolute_lifetime(Store::Sql(SqlStore::new(db)), None).await
}

#[tokio::test]
async fn absolute_lifetime_in_redis() -> Result<()> {
    let test_redis = e2e::services::fresh_redis().await?;
    let store = RedisStore::connect(&test_redis.url, test_redis.prefix.clone()).await?;
    absolute_lifetime(Store::Redis(store), Some(test_redis)).await
}

/// SESSION_MAX_LIFETIME reaches the store `sessions::build` makes.
#[tokio::test]
async fn build_applies_session_max_lifetime() -> Result<()> {
    let path = temp_sqlite();
    let mut config = Config::for_tests(path.clone());
    config.session_max_lifetime = std::time::Duration::from_secs(60);
    let db = Db::connect(None, &path).await?;
    let store = sessions::build(&config, &db).await?;
    let mut rec = record(Duration::hours(1), "user", serde_json::json!("alice"));
    store.create(&mut rec).await?;
    let left = rec.expiry_date - OffsetDateTime::now_utc();
    assert!(left <= Duration::seconds(61), "capped at SESSION_MAX_LIFETIME: {left}");
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[tokio::test]
async fn memory_store() -> Result<()> {
    let config = Config::for_tests(temp_sqlite());
    assert_eq!(config.session_backend, SessionBackend::Memory);
    let path = temp_sqlite();
    let db = Db::connect(None, &path).await?;
    let store = sessions::build(&config, &db).await?;
    assert!(matches!(store, Store::Memory(_)));
    suite(store, None).await?;
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[tokio::test]
async fn sqlite_store() -> Result<()> {
    let path = temp_sqlite();
    let db = Db::connect(None, &path).await?;
    suite(Store::Sql(SqlStore::new(db)), None).await?;
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[tokio::test]
async fn postgres_store() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let mut config = Config::for_tests(temp_sqlite());
    config.database_dsn = Some(pg.url.clone().into());
    config.session_backend = SessionBackend::Postgres;
    let db = Db::connect(config.postgres_dsn(), &config.sqlite_path).await?;
    let store = sessions::build(&config, &db).await?;
    assert!(matches!(store, Store::Sql(_)));
    suite(store, None).await
}

#[tokio::test]
async fn postgres_backend_needs_postgres() -> Result<()> {
    let path = temp_sqlite();
    let mut config = Config::for_tests(path.clone());
    config.session_backend = SessionBackend::Postgres;
    let db = Db::connect(None, &path).await?;
    let err = sessions::build(&config, &db)
        .await
        .expect_err("postgres sessions on SQLite");
    assert!(format!("{err:#}").contains("DATABASE_DSN"), "{err:#}");
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[tokio::test]
async fn redis_store() -> Result<()> {
    let test_redis = e2e::services::fresh_redis().await?;
    let store = RedisStore::connect(&test_redis.url, test_redis.prefix.clone()).await?;
    assert_eq!(store.prefix(), test_redis.prefix);
    suite(Store::Redis(store.clone()), Some(test_redis)).await?;

    // A broken connection is replaced: kill the store's connections, then use the store.
    let mut admin = e2e::services::fresh_redis().await?.conn;
    let mut rec = record(Duration::hours(1), "user", serde_json::json!("dave"));
    store.create(&mut rec).await?;
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut admin).await?;
    let name = format!("name={}", sessions::REDIS_CLIENT_NAME);
    let ids: Vec<&str> = clients
        .lines()
        .filter(|l| l.split(' ').any(|f| f == name))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert!(!ids.is_empty(), "the store's connection is named {name}: {clients}");
    for id in ids {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await?;
    }
    assert_eq!(store.load(&rec.id).await?.as_ref(), Some(&rec), "the store reconnects");
    store.delete(&rec.id).await?;
    Ok(())
}

#[tokio::test]
async fn redis_build_accepts_host_port_and_url() -> Result<()> {
    let test_redis = e2e::services::fresh_redis().await?;
    let host_port = test_redis
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let path = temp_sqlite();
    let db = Db::connect(None, &path).await?;
    for addr in [test_redis.url.clone(), host_port] {
        let mut config = Config::for_tests(path.clone());
        config.session_backend = SessionBackend::Redis;
        config.redis_addr = Some(addr.clone().into());
        let store = sessions::build(&config, &db).await?;
        let Store::Redis(r) = &store else {
            panic!("{addr}: expected the Redis store")
        };
        assert_eq!(r.prefix(), sessions::DEFAULT_REDIS_PREFIX);
        assert!(sessions::spawn_cleanup(&store, std::time::Duration::from_secs(1)).is_none());
    }
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[tokio::test]
async fn redis_unreachable_names_redis_addr() -> Result<()> {
    let path = temp_sqlite();
    let db = Db::connect(None, &path).await?;
    let mut config = Config::for_tests(path.clone());
    config.session_backend = SessionBackend::Redis;
    // Port 1 on loopback: nothing listens there. The password must not appear in the message.
    config.redis_addr = Some("redis://:hunter2@127.0.0.1:1".to_string().into());
    let err = sessions::build(&config, &db).await.expect_err("no Redis on port 1");
    let msg = format!("{err:#}");
    assert!(msg.contains("REDIS_ADDR"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[tokio::test]
async fn cleanup_task_deletes_expired_sessions() -> Result<()> {
    let memory = MemoryStore::new();
    let store = Store::Memory(memory.clone());
    store
        .create(&mut record(-Duration::seconds(1), "k", serde_json::json!(1)))
        .await?;
    let mut live = record(Duration::hours(1), "k", serde_json::json!(2));
    store.create(&mut live).await?;
    assert_eq!(memory.len(), 2);
    let task = sessions::spawn_cleanup(&store, std::time::Duration::from_millis(50)).context("a cleanup task")?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while memory.len() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the cleanup task did not run");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(store.load(&live.id).await?.as_ref(), Some(&live));
    task.abort();
    Ok(())
}

/// The Set-Cookie header of a request to a handler that writes to the session.
async fn session_cookie(config: &Config) -> Result<String> {
    async fn handler(session: Session) -> StatusCode {
        session.insert("user", "alice").await.expect("session insert");
        StatusCode::OK
    }
    let store = Store::Memory(MemoryStore::new());
    let app = axum::Router::new()
        .route("/", get(handler))
        .layer(sessions::layer(store.clone(), config));
    let res = app.oneshot(Request::builder().uri("/").body(Body::empty())?).await?;
    assert_eq!(res.status(), StatusCode::OK);
    let cookies: Vec<_> = res.headers().get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies.len(), 1, "one Set-Cookie: {cookies:?}");
    let cookie = cookies[0].to_str()?.to_string();
    // The cookie's value is a session the store holds.
    let value = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v)
        .unwrap_or("");
    let id: Id = value.parse().context("the cookie value is a session id")?;
    let rec = store.load(&id).await?.context("the session is stored")?;
    assert_eq!(rec.data.get("user"), Some(&serde_json::json!("alice")));
    let lifetime = rec.expiry_date - OffsetDateTime::now_utc();
    let want = Duration::try_from(config.session_duration)?;
    assert!(
        (want - lifetime).whole_seconds().abs() <= 5,
        "expiry {lifetime} vs SESSION_DURATION {want}"
    );
    Ok(cookie)
}

fn attributes(cookie: &str) -> Vec<String> {
    cookie.split(';').skip(1).map(|a| a.trim().to_string()).collect()
}

#[tokio::test]
async fn layer_sets_the_configured_cookie() -> Result<()> {
    let mut config = Config::for_tests(temp_sqlite());
    config.session_cookie_name = "sid_test".into();
    config.session_duration = std::time::Duration::from_secs(3600);
    config.cookie_secure = false;
    config.session_cookie_domain = None;
    let cookie = session_cookie(&config).await?;
    let attrs = attributes(&cookie);
    assert!(cookie.starts_with("sid_test="), "{cookie}");
    assert!(attrs.iter().any(|a| a == "HttpOnly"), "{cookie}");
    assert!(attrs.iter().any(|a| a == "SameSite=Lax"), "{cookie}");
    assert!(attrs.iter().any(|a| a == "Path=/"), "{cookie}");
    assert!(
        !attrs.iter().any(|a| a == "Secure"),
        "no Secure without COOKIE_SECURE: {cookie}"
    );
    assert!(
        !attrs.iter().any(|a| a.starts_with("Domain=")),
        "no Domain by default: {cookie}"
    );
    assert!(attrs.iter().any(|a| a == "Max-Age=3600"), "{cookie}");

    // With COOKIE_SECURE the name carries the `__Host-` prefix (Secure, Path=/, no Domain): a
    // tenant app on a sibling host cannot set or overwrite it (cookie tossing, issue 15 item 4).
    config.cookie_secure = true;
    let cookie = session_cookie(&config).await?;
    let attrs = attributes(&cookie);
    assert!(cookie.starts_with("__Host-sid_test="), "{cookie}");
    assert!(attrs.iter().any(|a| a == "Secure"), "{cookie}");
    assert!(attrs.iter().any(|a| a == "Path=/"), "{cookie}");
    assert!(
        !attrs.iter().any(|a| a.starts_with("Domain=")),
        "no Domain on a __Host- cookie: {cookie}"
    );
    assert!(attrs.iter().any(|a| a == "HttpOnly"), "{cookie}");

    // With SESSION_COOKIE_DOMAIN (which `__Host-` forbids) it is `__Secure-`.
    config.session_cookie_domain = Some(".platform.example.net".into());
    let cookie = session_cookie(&config).await?;
    let attrs = attributes(&cookie);
    assert!(cookie.starts_with("__Secure-sid_test="), "{cookie}");
    assert!(
        attrs.iter().any(|a| a == "Secure"),
        "Secure with COOKIE_SECURE: {cookie}"
    );
    assert!(attrs.iter().any(|a| a == "Domain=platform.example.net"), "{cookie}");
    assert!(attrs.iter().any(|a| a == "HttpOnly"), "{cookie}");
    assert!(attrs.iter().any(|a| a == "SameSite=Lax"), "{cookie}");
    Ok(())
}
