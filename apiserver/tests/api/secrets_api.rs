//! `/api/secrets` over HTTP (`oneshot`, without a cluster): write-only values, scopes, users kept
//! apart, crafted names refused, a deployment's secrets deleted with it, and no secret value in
//! the logs of a full flow.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::common::{ORIGIN, call, get, json, json_with_token, offline_config};
use anyhow::Result;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

/// Log output of this test binary, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let c = Captured::default();
        let writer = c.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .try_init();
        c
    })
    .clone()
}

fn delete(path: &str) -> Request<Body> {
    Request::delete(path)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn secrets_are_write_only_scoped_and_leave_no_trace_in_logs() -> Result<()> {
    let logs = capture_logs();
    let app = apiserver::app(offline_config()).await?;
    let value = "SUPER-SECRET-VALUE-9f3a";

    let (s, e) = call(
        &app,
        json(
            "PUT",
            "/api/secrets/user/API_KEY",
            json!({ "value": value, "description": "the key" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    assert_eq!(e["scope"], "user");
    assert!(!e.to_string().contains(value));
    let (s, _) = call(
        &app,
        json(
            "PUT",
            "/api/secrets/user/API_KEY",
            json!({ "value": format!("{value}-2") }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "an update");
    let (s, e) = call(
        &app,
        json(
            "PUT",
            "/api/secrets/templates/guestbook/REDIS_PASSWORD",
            json!({ "value": value }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");

    // A deployment using the secret (deployment and service scopes need it to exist); deleted
    // below: its deployment- and service-scoped secrets go.
    let (s, d) = call(
        &app,
        json("POST", "/api/deployments", json!({
            "template": "guestbook", "name": "guest", "parameters": { "TITLE": "hi" }, "secretRefs": ["REDIS_PASSWORD"]
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    for path in [
        "/api/secrets/deployments/guest/REDIS_PASSWORD",
        "/api/secrets/deployments/guest/services/redis/REDIS_PASSWORD",
    ] {
        let (s, e) = call(&app, json("PUT", path, json!({ "value": value }))).await;
        assert_eq!(s, StatusCode::CREATED, "{path}: {e}");
    }
    let (s, list) = call(&app, get("/api/secrets", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
    assert!(!list.to_string().contains(value), "listings carry no values");
    let svc = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["scope"] == "service")
        .unwrap();
    assert_eq!(
        (svc["deployment"].as_str(), svc["service"].as_str()),
        (Some("guest"), Some("redis"))
    );

    assert!(!d.to_string().contains(value));
    let (_, detail) = call(&app, get("/api/deployments/guest", None)).await;
    assert!(
        !detail.to_string().contains(value),
        "rendered manifests reference the Secret, not the value"
    );
    assert_eq!(
        call(&app, delete("/api/deployments/guest")).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = call(&app, get("/api/secrets", None)).await;
    let scopes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes.len(), 2, "{list}");
    assert!(scopes.contains(&"user") && scopes.contains(&"template"));

    assert_eq!(
        call(&app, delete("/api/secrets/user/API_KEY")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, delete("/api/secrets/user/API_KEY")).await.0,
        StatusCode::NOT_FOUND
    );

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(text.contains("secret written"), "the flow was logged: {text}");
    assert!(!text.contains(value), "a secret value reached the logs");
    Ok(())
}

#[tokio::test]
async fn crafted_names_cannot_reach_other_prefixes() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    for path in [
        "/api/secrets/user/..%2F..%2Fbob%2Fsecrets%2FK",
        "/api/secrets/user/A%2FB",
        "/api/secrets/user/1BAD",
        "/api/secrets/deployments/..%2Fbob/K",
        "/api/secrets/deployments/%2e%2e/K",
        "/api/secrets/deployments/Web/K",
        "/api/secrets/templates/a%2Fb/K",
        "/api/secrets/deployments/web/services/..%2F..%2F..%2Fbob/K",
    ] {
        let (s, e) = call(&app, json("PUT", path, json!({ "value": "x" }))).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
            "{path}: {s} {e}"
        );
        assert_ne!(s, StatusCode::CREATED);
    }
    let (_, list) = call(&app, get("/api/secrets", None)).await;
    assert_eq!(list, json!([]), "nothing was stored");
    let (s, e) = call(
        &app,
        json("PUT", "/api/secrets/user/K", json!({ "value": "x", "owner": "bob" })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("unknown field `owner`"));
    Ok(())
}

#[tokio::test]
async fn users_cannot_read_overwrite_or_delete_each_others_secrets() -> Result<()> {
    let mut config = offline_config();
    config.dev_mode = false;
    config.google_client_id = Some("id".into());
    config.google_client_secret = Some(secrecy::SecretString::from("s".to_string()));
    config.google_redirect_url = Some("http://app.test/oauth2/callback".parse()?);
    let app = apiserver::app(config).await?;
    let db = &app.state.db;
    let all = ["secrets:read", "secrets:write", "deployments:read", "deployments:write"].map(String::from);
    let mut tokens = vec![];
    let mut ids = vec![];
    for who in ["alice", "bob"] {
        let (user, _) = db
            .upsert_user(&format!("test|{who}"), &format!("{who}@example.com"), who)
            .await?;
        let t = apiserver::auth::new_api_token();
        db.insert_token(&user.id, "t", &apiserver::auth::hash_token(&t), &all)
            .await?;
        tokens.push(t);
        ids.push(user.id);
    }
    let (alice_id, bob_id) = (ids[0].as_str(), ids[1].as_str());
    let (alice, bob) = (&tokens[0], &tokens[1]);
    // Deployment-scoped secrets need the deployment: each user has their own `web`.
    for t in [alice, bob] {
        let (s, d) = call(
            &app,
            json_with_token(
                "POST",
                "/api/deployments",
                json!({ "template": "hello-web", "name": "web" }),
                t,
            ),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
    }
    let put = |token: &str, v: &str| {
        json_with_token(
            "PUT",
            "/api/secrets/deployments/web/PASSWORD",
            json!({ "value": v }),
            token,
        )
    };
    assert_eq!(call(&app, put(bob, "bobs-value")).await.0, StatusCode::CREATED);
    // Alice's list does not show Bob's; her delete of the same name finds nothing.
    let (_, list) = call(&app, get("/api/secrets", Some(alice))).await;
    assert_eq!(list, json!([]));
    let del = Request::delete("/api/secrets/deployments/web/PASSWORD")
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .body(Body::empty())?;
    assert_eq!(call(&app, del).await.0, StatusCode::NOT_FOUND);
    // Her write of the same name is her own secret, not an overwrite of Bob's.
    assert_eq!(call(&app, put(alice, "alices-value")).await.0, StatusCode::CREATED);
    let store = &app.state.secrets;
    let dep = apiserver::secrets::Scope::Deployment("web".into());
    assert_eq!(store.values(bob_id, &dep).await?["PASSWORD"], "bobs-value");
    assert_eq!(store.values(alice_id, &dep).await?["PASSWORD"], "alices-value");
    // Scopes are enforced for tokens.
    let t = apiserver::auth::new_api_token();
    db.insert_token(
        alice_id,
        "ro",
        &apiserver::auth::hash_token(&t),
        &["secrets:read".to_string()],
    )
    .await?;
    assert_eq!(call(&app, put(&t, "x")).await.0, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn scopes_must_exist_and_counts_and_sizes_are_capped() -> Result<()> {
    scopes_and_caps(offline_config()).await
}

#[tokio::test]
async fn scopes_must_exist_and_counts_and_sizes_are_capped_on_postgres() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let mut config = offline_config();
    config.database_dsn = Some(secrecy::SecretString::from(pg.url.clone()));
    scopes_and_caps(config).await
}

async fn scopes_and_caps(mut config: apiserver::config::Config) -> Result<()> {
    config.secrets_max_per_user = 3;
    config.secrets_max_value_bytes = 100;
    let app = apiserver::app(config).await?;
    let put = |path: &str, value: &str| json("PUT", path, json!({ "value": value }));

    // Scopes for templates, deployments and services that do not exist for the caller: 404,
    // and nothing is stored.
    for (path, needle) in [
        (
            "/api/secrets/templates/no-such-template/K",
            "no template named \"no-such-template\"",
        ),
        ("/api/secrets/deployments/ghost/K", "no deployment named \"ghost\""),
        (
            "/api/secrets/deployments/ghost/services/web/K",
            "no deployment named \"ghost\"",
        ),
    ] {
        let (s, e) = call(&app, put(path, "v")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {e}");
        assert!(e["error"].as_str().unwrap_or("").contains(needle), "{path}: {e}");
    }
    let (s, d) = call(
        &app,
        json(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "web" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let (s, e) = call(&app, put("/api/secrets/deployments/web/services/nope/K", "v")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("no service named \"nope\""),
        "{e}"
    );
    let (_, list) = call(&app, get("/api/secrets", None)).await;
    assert_eq!(list, json!([]), "nothing was stored");

    // Existing scopes are accepted, up to SECRETS_MAX_PER_USER secrets.
    for path in [
        "/api/secrets/templates/hello-web/A",
        "/api/secrets/deployments/web/B",
        "/api/secrets/deployments/web/services/web/C",
    ] {
        let (s, e) = call(&app, put(path, "v")).await;
        assert_eq!(s, StatusCode::CREATED, "{path}: {e}");
    }
    let (s, e) = call(&app, put("/api/secrets/user/D", "v")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("SECRETS_MAX_PER_USER"),
        "{e}"
    );
    // Updating one that exists is still allowed at the cap; after a delete there is room again.
    let (s, e) = call(&app, put("/api/secrets/deployments/web/B", "v2")).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        call(&app, delete("/api/secrets/deployments/web/B")).await.0,
        StatusCode::NO_CONTENT
    );
    let (s, e) = call(&app, put("/api/secrets/user/D", "v")).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");

    // Values beyond SECRETS_MAX_VALUE_BYTES: 413 naming the limit; the stored value stays.
    let (s, e) = call(&app, put("/api/secrets/user/D", &"x".repeat(101))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("SECRETS_MAX_VALUE_BYTES"),
        "{e}"
    );
    let (_, me) = call(&app, get("/api/me", None)).await;
    let owner = me["user"]["id"].as_str().unwrap_or_default().to_string();
    let values = app
        .state
        .secrets
        .values(&owner, &apiserver::secrets::Scope::User)
        .await?;
    assert_eq!(values.get("D").map(String::as_str), Some("v"));
    let (s, e) = call(&app, put("/api/secrets/user/E", &"x".repeat(100))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "at the count cap again: {e}");

    // A secret of a template that has gone (or any stored scope) can still be deleted.
    assert_eq!(
        call(&app, delete("/api/secrets/templates/hello-web/A")).await.0,
        StatusCode::NO_CONTENT
    );
    Ok(())
}
