//! The Redis store against a real Redis: `E2E_REDIS_URL` (hack/test starts one). Each test uses
//! its own key and removes it.

use guestbook::{RedisAddr, RedisStore, Store};

fn redis_url() -> String {
    std::env::var("E2E_REDIS_URL").expect("E2E_REDIS_URL is not set: these tests need a Redis (hack/test starts one)")
}

fn unique_key(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("guestbook-test:{test}:{}:{nanos}", std::process::id())
}

async fn delete(url: &str, key: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("DEL").arg(key).query_async::<()>(&mut conn).await.unwrap();
}

#[tokio::test]
async fn entries_round_trip_through_redis() {
    let url = redis_url();
    let key = unique_key("round-trip");
    let store = RedisStore::new(&RedisAddr::Url(url.clone()), None, &key).unwrap();
    store.ping().await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    store.append("first").await.unwrap();
    store.append("second <b>").await.unwrap();
    assert_eq!(store.list().await.unwrap(), vec!["first", "second <b>"]);
    delete(&url, &key).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_naming_the_server() {
    // Port 1 on loopback: nothing listens there.
    let store = RedisStore::new(&RedisAddr::HostPort("127.0.0.1".into(), 1), None, "k").unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(err.0.contains("127.0.0.1:1"), "{err}");
}
