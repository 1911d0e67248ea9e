//! HTTP handler tests with `oneshot` on the app without a cluster (KUBERNETES_ENABLED=false):
//! DEV_MODE, the deployments API over the database with rendered manifests, plan limits, CSRF,
//! API tokens and their scopes, bad input, and the checked-in OpenAPI document.

use crate::common;

use crate::common::{ORIGIN, call, get, json, json_with_token, offline_config};
use anyhow::Result;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

#[tokio::test]
async fn probes_and_feature_flags() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    assert_eq!(call(&app, get("/health", None)).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/readyz", None)).await.0, StatusCode::OK);
    let (s, flags) = call(&app, get("/api/config", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(flags["devMode"], true);
    assert_eq!(flags["kubernetesEnabled"], false);
    assert_eq!(flags["deploymentDomain"], "example.com");
    let (s, me) = call(&app, get("/api/me", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["user"]["email"], "dev@localhost");
    assert_eq!(me["user"]["id"], "dev");
    assert_eq!(me["sandbox"]["namespace"], "sandbox-dev");
    assert_eq!(me["authenticatedBy"], "dev-mode");
    Ok(())
}

/// ALLOWED_REGISTRIES is the controller's rule and the server's: an image from another registry is
/// refused when it is set, with the words the controller would write in the app's status, and
/// nothing is stored.
#[tokio::test]
async fn images_from_registries_outside_the_allow_list_are_refused_as_the_controller_would() -> Result<()> {
    let mut config = offline_config();
    config.settings.allowed_registries = policy::settings::parse_registries("ghcr.io").expect("registries");
    let settings = config.settings.clone();
    let app = apiserver::app(config).await?;
    let (s, d) = call(
        &app,
        json(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "shop" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "ghcr.io is allowed: {d}");
    let (s, e) = call(
        &app,
        json(
            "POST",
            "/api/deployments/shop/image",
            json!({ "service": "web", "image": "docker.io/library/nginx:1.27" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let error = e["error"].as_str().unwrap();

    // What the controller reports for the same spec.
    let template: crds::Template = serde_yaml::from_str(include_str!("../../../examples/20-template-hello-web.yaml"))?;
    let ud: crds::UserDeployment = serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
        "metadata": { "name": "shop", "namespace": "sandbox-dev" },
        "spec": { "templateRef": { "name": "hello-web" },
                  "imageOverrides": { "web": "docker.io/library/nginx:1.27" } },
    }))?;
    let invalid = policy::validate::validate_deployment(&ud, Some(&template.spec), "dev", &settings).unwrap_err();
    assert_eq!(invalid.reason, crds::conditions::reasons::REGISTRY_NOT_ALLOWED);
    assert!(
        error.contains(&invalid.message) && error.contains(invalid.reason),
        "the server says {error:?}, the controller {:?}",
        invalid.message
    );
    assert!(invalid.message.contains("registry docker.io") && invalid.message.contains("allowed: ghcr.io"));

    let (_, after) = call(&app, get("/api/deployments/shop", None)).await;
    assert_eq!(after["generation"], 1, "nothing stored: {after}");
    assert!(
        after["imageOverrides"].as_object().is_none_or(|o| o.is_empty()),
        "{after}"
    );
    Ok(())
}

#[tokio::test]
async fn deployment_lifecycle_without_kubernetes() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    let (s, templates) = call(&app, get("/api/templates", None)).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = templates
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"hello-web") && names.contains(&"guestbook"),
        "{names:?}"
    );
    assert_eq!(
        call(&app, get("/api/templates/hello-web", None)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, get("/api/templates/nope", None)).await.0,
        StatusCode::NOT_FOUND
    );

    // Create with a generated name.
    let (s, d) = call(
        &app,
        json("POST", "/api/deployments", json!({ "template": "hello-web" })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let name = d["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("hello-web-") && name.len() == "hello-web-".len() + 4,
        "{name}"
    );
    assert_eq!(d["namespace"], "sandbox-dev");
    assert_eq!(d["phase"], "Pending");
    assert_eq!(d["reason"], "KubernetesDisabled");

    // Detail: rendered children.
    let (s, detail) = call(&app, get(&format!("/api/deployments/{name}"), None)).await;
    assert_eq!(s, StatusCode::OK);
    let kinds: Vec<&str> = detail["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap_or(""))
        .collect();
    assert!(
        kinds.contains(&"Deployment") && kinds.contains(&"Service") && kinds.contains(&"Ingress"),
        "{kinds:?}"
    );
    let ingress = detail["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "Ingress")
        .unwrap();
    assert_eq!(ingress["spec"]["rules"][0]["host"], format!("dev-{name}.example.com"));

    // The free plan allows one deployment.
    let (s, e) = call(
        &app,
        json(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "second" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        e["error"].as_str().unwrap().contains("free plan allows 1 deployment"),
        "{e}"
    );

    // Update configuration, restart, new image.
    let path = format!("/api/deployments/{name}");
    let (s, d) = call(
        &app,
        json(
            "PATCH",
            &path,
            json!({ "parameters": { "GREETING": "hi" }, "visibility": "internal" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["parameters"]["GREETING"], "hi");
    assert_eq!(d["visibility"], "internal");
    assert_eq!(d["generation"], 2);
    let (s, _) = call(&app, json("POST", &format!("{path}/restart"), json!({}))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, d) = call(
        &app,
        json(
            "POST",
            &format!("{path}/image"),
            json!({ "service": "web", "image": "ghcr.io/acme/web:2" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{d}");
    assert_eq!(d["imageOverrides"]["web"], "ghcr.io/acme/web:2");
    let (_, detail) = call(&app, get(&path, None)).await;
    let dep = detail["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "Deployment")
        .unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/web:2"
    );
    assert!(dep["spec"]["template"]["metadata"]["annotations"]["k8s-scheduler.io/restartedAt"].is_string());

    // Invalid changes are refused and change nothing.
    let (s, e) = call(
        &app,
        json(
            "POST",
            &format!("{path}/image"),
            json!({ "service": "nope", "image": "x:1" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("nope"), "{e}");
    let (s, e) = call(&app, json("PATCH", &path, json!({ "replicas": 99 }))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = call(&app, json("PATCH", &path, json!({ "namespace": "sandbox-bob" }))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"].as_str().unwrap().contains("unknown field `namespace`"),
        "{e}"
    );
    let (_, after) = call(&app, get(&path, None)).await;
    assert_eq!(after["generation"], 4, "the refused requests changed nothing");

    // List, delete.
    let (_, list) = call(&app, get("/api/deployments", None)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let del = Request::delete(&path)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())?;
    assert_eq!(call(&app, del).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, get(&path, None)).await.0, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn bad_create_bodies_name_the_problem() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    for (body, needle) in [
        (json!({ "template": "nope" }), "no template named \"nope\""),
        (
            json!({ "template": "hello-web", "name": "Bad_Name" }),
            "must be a DNS label",
        ),
        (
            json!({ "template": "hello-web", "colour": "red" }),
            "unknown field `colour`",
        ),
        (
            json!({ "template": "hello-web", "visibility": "everyone" }),
            "unknown variant `everyone`",
        ),
        (json!({ "template": "guestbook" }), "TITLE"),
        (
            json!({ "template": "guestbook", "parameters": { "TITLE": "t", "LOG_LEVEL": "loud" } }),
            "LOG_LEVEL",
        ),
        (json!({ "template": 7 }), "invalid type"),
    ] {
        let (s, e) = call(&app, json("POST", "/api/deployments", body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {e}");
        assert!(
            e["error"].as_str().unwrap_or("").contains(needle),
            "{body}: {e} should mention {needle}"
        );
    }
    let (_, list) = call(&app, get("/api/deployments", None)).await;
    assert_eq!(list, json!([]), "nothing was created");
    Ok(())
}

#[tokio::test]
async fn csrf_refuses_non_json_and_foreign_origins() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    let body = json!({ "template": "hello-web", "name": "web" }).to_string();
    let cases = [
        ("text/plain", Some(ORIGIN), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "application/x-www-form-urlencoded",
            Some(ORIGIN),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("application/json", Some("http://evil.example"), StatusCode::FORBIDDEN),
        (
            "application/json",
            Some("http://app.test.evil.example"),
            StatusCode::FORBIDDEN,
        ),
        ("application/json", None, StatusCode::FORBIDDEN),
    ];
    for (ct, origin, want) in cases {
        let mut b = Request::post("/api/deployments").header(header::CONTENT_TYPE, ct);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        let (s, e) = call(&app, b.body(Body::from(body.clone()))?).await;
        assert_eq!(s, want, "{ct} from {origin:?}: {e}");
        assert!(e["error"].is_string());
    }
    let logout = Request::post("/logout")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())?;
    assert_eq!(call(&app, logout).await.0, StatusCode::FORBIDDEN);
    let (_, list) = call(&app, get("/api/deployments", None)).await;
    assert_eq!(list, json!([]), "nothing was created");
    Ok(())
}

#[tokio::test]
async fn api_tokens_are_shown_once_hashed_and_scoped() -> Result<()> {
    let mut config = offline_config();
    config.dev_mode = false;
    config.google_client_id = Some("id".into());
    config.google_client_secret = Some(secrecy::SecretString::from("secret".to_string()));
    config.google_redirect_url = Some("http://app.test/oauth2/callback".parse()?);
    let app = apiserver::app(config).await?;
    let db = &app.state.db;
    let (alice, _) = db.upsert_user("test|alice", "alice@example.com", "Alice").await?;

    // Without a session or token: 401.
    assert_eq!(
        call(&app, get("/api/deployments", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, get("/api/deployments", Some("kst_bogus"))).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Tokens are created from a session; here the store is used directly, as the session path
    // is covered by the sign-in tests.
    let read_token = apiserver::auth::new_api_token();
    let scopes = vec!["deployments:read".to_string(), "templates:read".to_string()];
    db.insert_token(&alice.id, "read", &apiserver::auth::hash_token(&read_token), &scopes)
        .await?;
    let stored = sqlx::query_scalar::<_, String>("SELECT token_hash FROM api_tokens")
        .fetch_all(db.pool())
        .await?;
    assert!(
        !stored.iter().any(|h| h.contains(&read_token)),
        "only the hash is stored"
    );

    let (s, me) = call(&app, get("/api/me", Some(&read_token))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["user"]["id"], alice.id.as_str());
    assert_eq!(me["authenticatedBy"], "token");
    assert_eq!(
        call(&app, get("/api/deployments", Some(&read_token))).await.0,
        StatusCode::OK
    );
    // No Origin needed with a token, but the scope is.
    let (s, e) = call(
        &app,
        json_with_token(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web" }),
            &read_token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(e["error"].as_str().unwrap().contains("deployments:write"), "{e}");
    // A token cannot manage tokens.
    let (s, _) = call(
        &app,
        json_with_token(
            "POST",
            "/api/tokens",
            json!({ "name": "x", "scopes": ["deployments:read"] }),
            &read_token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let write_token = apiserver::auth::new_api_token();
    let w = db
        .insert_token(
            &alice.id,
            "write",
            &apiserver::auth::hash_token(&write_token),
            &["deployments:write".to_string()],
        )
        .await?;
    let (s, d) = call(
        &app,
        json_with_token(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "api" }),
            &write_token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["namespace"], format!("sandbox-{}", alice.id));
    db.revoke_token(&alice.id, &w.id).await?;
    assert_eq!(
        call(&app, get("/api/me", Some(&write_token))).await.0,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn token_routes_in_dev_mode_session() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    let (s, created) = call(
        &app,
        json(
            "POST",
            "/api/tokens",
            json!({ "name": "ci", "scopes": ["deployments:read", "deployments:read"] }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kst_"));
    assert_eq!(created["scopes"], json!(["deployments:read"]));
    let (_, list) = call(&app, get("/api/tokens", None)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&token), "listing never shows the token");
    for (body, needle) in [
        (json!({ "name": "x", "scopes": ["root"] }), "unknown variant `root`"),
        (json!({ "name": "x", "scopes": [] }), "at least one"),
        (json!({ "name": "", "scopes": ["deployments:read"] }), "name"),
    ] {
        let (s, e) = call(&app, json("POST", "/api/tokens", body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(e["error"].as_str().unwrap().contains(needle), "{e}");
    }
    let id = created["id"].as_str().unwrap();
    let del = Request::delete(format!("/api/tokens/{id}"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())?;
    assert_eq!(call(&app, del).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&app, get("/api/me", Some(&token))).await.0,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn login_redirects_only_to_same_origin_paths() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    for bad in ["https://evil.example/", "//evil.example", "/\\evil.example", "evil"] {
        let uri = format!("/login?redirect={}", apiserver::auth::oidc::urlencode(bad));
        let (s, e) = call(&app, get(&uri, None)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {e}");
    }
    let resp = tower::ServiceExt::oneshot(app.router.clone(), get("/dev/login?redirect=/deployments", None)).await?;
    assert!(resp.status().is_redirection());
    assert_eq!(resp.headers()["location"], "/deployments");
    let cookie = resp.headers()[header::SET_COOKIE].to_str()?;
    assert!(
        cookie.starts_with("session_id=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    Ok(())
}

#[test]
fn openapi_document_is_checked_in() {
    let current = apiserver::openapi::document();
    // The running checkout (cargo sets this), not the one that compiled the test first.
    let path = format!(
        "{}/openapi.json",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim() == current.trim(),
        "apiserver/openapi.json is out of date; regenerate it with \
         `cargo run -p apiserver -- --print-openapi > apiserver/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&current).unwrap();
    for path in [
        "/api/deployments",
        "/api/deployments/{name}",
        "/api/events",
        "/api/templates",
        "/api/tokens",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}

/// Issue 15 item 2: a caller cannot grow the metrics without bound (the method and the path are
/// not labels as sent), and `/metrics` is not on the public port.
#[tokio::test]
async fn metrics_labels_stay_bounded_and_metrics_are_not_public() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("k8s_scheduler_server_http_request_duration_seconds_count"))
            .count()
    };
    // Warm up the ordinary series, then send thousands of unique methods to routes and to
    // paths no route takes, past the CSRF check (any bearer token, or a same-origin JSON request).
    for path in ["/health", "/api/config", "/nothing/here"] {
        call(&app, get(path, None)).await;
    }
    let before = series(&app.state.metrics.encode());
    for i in 0..3000 {
        let method = format!("WEIRD{i}{}", "X".repeat(200));
        let path = match i % 3 {
            0 => "/health".to_string(),
            1 => "/api/deployments".to_string(),
            _ => format!("/random/{i}"),
        };
        let req = Request::builder().method(method.as_str()).uri(path);
        let req = if i % 2 == 0 {
            req.header(header::AUTHORIZATION, "Bearer not-a-token")
        } else {
            req.header(header::ORIGIN, ORIGIN)
                .header(header::CONTENT_TYPE, "application/json")
        };
        call(&app, req.body(Body::empty())?).await;
    }
    let text = app.state.metrics.encode();
    assert!(!text.contains("WEIRD"), "a caller's method became a label");
    assert!(!text.contains("/random/"), "a caller's path became a label");
    let after = series(&text);
    assert!(
        after <= before + 4,
        "3,000 unique methods grew the request series from {before} to {after}"
    );
    assert!(text.len() < 64 * 1024, "the exposition is {} bytes", text.len());

    let (s, _) = call(&app, get("/metrics", None)).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "/metrics must not be served on the public port"
    );
    Ok(())
}

/// Issue 15 item 2: `/readyz` names the dependency that is not ready, never its error text.
#[tokio::test]
async fn readyz_names_the_failing_dependency_without_its_error() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    assert_eq!(call(&app, get("/readyz", None)).await.0, StatusCode::OK);
    // The database goes away: every query now fails with sqlx's own message.
    app.state.db.pool().close().await;
    let err = app.state.db.ping().await.unwrap_err().to_string();
    let resp = tower::ServiceExt::oneshot(app.router.clone(), get("/readyz", None)).await?;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = String::from_utf8(
        http_body_util::BodyExt::collect(resp.into_body())
            .await?
            .to_bytes()
            .to_vec(),
    )?;
    assert!(body.contains("database"), "the body names the dependency: {body}");
    assert!(!body.contains(&err), "the body carries the raw error {err:?}: {body}");
    assert!(!body.contains("pool") && !body.contains("connection"), "{body}");
    Ok(())
}

/// Issue 15 item 7: a token and a session minted in DEV_MODE stop working when the same database
/// is served without DEV_MODE, and nothing is written on their behalf.
#[tokio::test]
async fn dev_mode_tokens_and_sessions_die_with_dev_mode() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let config = |dev_mode: bool| {
        let mut c = offline_config();
        c.database_dsn = Some(secrecy::SecretString::from(pg.url.clone()));
        c.session_backend = apiserver::config::SessionBackend::Postgres;
        if !dev_mode {
            common::use_provider(&mut c, ORIGIN, "https://issuer.invalid", "client");
        }
        c
    };
    let dev = apiserver::app(config(true)).await?;
    let (s, t) = call(
        &dev,
        json(
            "POST",
            "/api/tokens",
            json!({ "name": "dev-ci", "scopes": ["deployments:write", "secrets:write", "deployments:read"] }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let token = t["token"].as_str().unwrap().to_string();
    let resp = tower::ServiceExt::oneshot(dev.router.clone(), get("/dev/login?redirect=/", None)).await?;
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()?
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let with_cookie = |path: &str| {
        Request::get(path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(call(&dev, get("/api/me", Some(&token))).await.0, StatusCode::OK);
    assert_eq!(call(&dev, with_cookie("/api/me")).await.0, StatusCode::OK);
    drop(dev);

    // The same database without DEV_MODE.
    let app = apiserver::app(config(false)).await?;
    let (s, e) = call(&app, get("/api/me", Some(&token))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a DEV_MODE token after DEV_MODE: {e}");
    assert!(e["error"].as_str().unwrap_or("").contains("DEV_MODE"), "{e}");
    let (s, e) = call(&app, with_cookie("/api/me")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a DEV_MODE session after DEV_MODE: {e}");
    let (s, e) = call(
        &app,
        json_with_token(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "after" }),
            &token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    let (s, e) = call(
        &app,
        json_with_token("PUT", "/api/secrets/user/STOLEN", json!({ "value": "x" }), &token),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    let deployments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offline_deployments")
        .fetch_one(app.state.db.pool())
        .await?;
    let secrets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets")
        .fetch_one(app.state.db.pool())
        .await?;
    assert_eq!(
        (deployments, secrets),
        (0, 0),
        "nothing is written for the DEV_MODE user"
    );
    Ok(())
}

/// Issue 15 items 1 and 3: server-assigned user ids hold no dash (the first dash of a host label
/// `<user-id>-<app>` ends the user id, so two users can never be given one host), are DNS labels,
/// and follow the identity (issuer and subject): a restored or second database gives the same
/// person the same id and never another person's.
#[tokio::test]
async fn user_ids_cannot_share_a_host_and_follow_the_identity() -> Result<()> {
    let people = [
        ("https://accounts.google.com|111", "bob@example.com"),
        ("https://accounts.google.com|222", "bob.smith@example.com"),
        ("https://accounts.google.com|333", "bob@other.example"),
        ("https://issuer.example|111", "Bob@example.com"),
        ("https://accounts.google.com|444", "42@example.com"),
        ("https://accounts.google.com|555", "__@example.com"),
        (
            "https://accounts.google.com|666",
            &format!("{}@example.com", "z".repeat(60)),
        ),
    ];
    let first = apiserver::db::Db::connect(None, &common::temp_sqlite()).await?;
    let mut ids = vec![];
    for (subject, email) in people {
        let (u, created) = first.upsert_user(subject, email, "").await?;
        assert!(created);
        assert!(!u.id.contains('-'), "{email}: the id {} holds a dash", u.id);
        assert!(crds::is_dns_label(&u.id, crds::MAX_USER_ID_LEN), "{email}: {}", u.id);
        assert!(u.id.starts_with(|c: char| c.is_ascii_lowercase()), "{email}: {}", u.id);
        ids.push(u.id);
    }
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    // bob's app smith-shop and bob.smith's app shop get different hosts.
    assert_ne!(format!("{}-smith-shop", ids[0]), format!("{}-shop", ids[1]));
    // A restored (or another installation's) database, people signing in in another order.
    let second = apiserver::db::Db::connect(None, &common::temp_sqlite()).await?;
    for (i, (subject, email)) in people.iter().enumerate().rev() {
        let (u, _) = second.upsert_user(subject, email, "").await?;
        assert_eq!(u.id, ids[i], "{email} gets the same id from another database");
    }
    // A changed email keeps the id.
    let (u, created) = second.upsert_user(people[0].0, "robert@example.com", "").await?;
    assert!(!created);
    assert_eq!(u.id, ids[0]);
    // The DEV_MODE user keeps its id.
    let (dev, _) = first
        .upsert_user(apiserver::auth::DEV_SUBJECT, apiserver::auth::DEV_EMAIL, "")
        .await?;
    assert_eq!(dev.id, "dev");
    Ok(())
}

/// Issue 15 item 6: a user whose sandbox namespace would be a system namespace (possible only
/// with an id kept from an older release, which could hold dashes) is refused at sandbox
/// creation, and nothing is written for them.
#[tokio::test]
async fn a_system_namespace_is_never_a_sandbox() -> Result<()> {
    let mut config = offline_config();
    config.kubernetes_namespace = "%s-apps".into();
    config.check().map_err(anyhow::Error::msg)?;
    let app = apiserver::app(config).await?;
    let db = &app.state.db;
    sqlx::query(
        "INSERT INTO users (id, subject, email, name, created_at) \
         VALUES ('kube-system', 'https://old.example|1', 'kube.system@example.com', '', 0)",
    )
    .execute(db.pool())
    .await?;
    let token = apiserver::auth::new_api_token();
    let scopes = ["deployments:read", "deployments:write"].map(String::from);
    db.insert_token("kube-system", "t", &apiserver::auth::hash_token(&token), &scopes)
        .await?;
    let (s, e) = call(&app, get("/api/me", Some(&token))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let message = e["error"].as_str().unwrap_or("");
    assert!(
        message.contains("kube-system-apps") && message.contains("system namespace"),
        "{e}"
    );
    let (s, e) = call(
        &app,
        json_with_token(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "x" }),
            &token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offline_deployments")
        .fetch_one(db.pool())
        .await?;
    assert_eq!(stored, 0);
    Ok(())
}
