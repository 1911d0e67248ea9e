//! API token expiry and per-user cap, and deactivated users (issue 15 item 13), against a server
//! signing in through a real OpenID provider on loopback; `apiserver --deactivate-user` is run as
//! an administrator would, on the server's database.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{CLIENT_ID, Server, provider_for, sign_in_with_jar, use_provider};
use anyhow::{Context, Result};
use apiserver::config::Config;
use apiserver::db::{Db, User};
use apiserver::error::ApiResult;
use apiserver::platform::{Change, Platform, SandboxInfo};
use apiserver::views::EventView;
use async_trait::async_trait;
use crds::{Template, UserDeployment};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The offline platform, counting the sandbox creations asked of it.
struct Counting {
    inner: Arc<dyn Platform>,
    ensured: Arc<AtomicUsize>,
}

#[async_trait]
impl Platform for Counting {
    async fn ensure_sandbox(&self, user: &User) -> ApiResult<()> {
        self.ensured.fetch_add(1, Ordering::SeqCst);
        self.inner.ensure_sandbox(user).await
    }
    fn set_installation(&self, id: &str) {
        self.inner.set_installation(id)
    }
    fn sandbox(&self, user: &User) -> SandboxInfo {
        self.inner.sandbox(user)
    }
    fn templates(&self, namespace: &str) -> Vec<Arc<Template>> {
        self.inner.templates(namespace)
    }
    async fn deployments(&self, namespace: &str) -> ApiResult<Vec<Arc<UserDeployment>>> {
        self.inner.deployments(namespace).await
    }
    async fn deployment(&self, namespace: &str, name: &str) -> ApiResult<Option<Arc<UserDeployment>>> {
        self.inner.deployment(namespace, name).await
    }
    async fn create(&self, ud: UserDeployment) -> ApiResult<Arc<UserDeployment>> {
        self.inner.create(ud).await
    }
    async fn replace_spec(
        &self,
        current: &UserDeployment,
        spec: crds::UserDeploymentSpec,
    ) -> ApiResult<Arc<UserDeployment>> {
        self.inner.replace_spec(current, spec).await
    }
    async fn delete(&self, namespace: &str, name: &str) -> ApiResult<bool> {
        self.inner.delete(namespace, name).await
    }
    async fn events(&self, namespace: &str, name: &str) -> ApiResult<Vec<EventView>> {
        self.inner.events(namespace, name).await
    }
    fn manifests(&self, ud: &UserDeployment) -> Option<Vec<Value>> {
        self.inner.manifests(ud)
    }
    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.subscribe()
    }
    async fn deliver_secrets(
        &self,
        ud: &UserDeployment,
        values: &apiserver::secrets::Values,
        per_service: &std::collections::BTreeMap<String, apiserver::secrets::Values>,
        services: &[String],
        roll: bool,
    ) -> ApiResult<bool> {
        self.inner
            .deliver_secrets(ud, values, per_service, services, roll)
            .await
    }
    async fn ready(&self) -> Result<(), String> {
        self.inner.ready().await
    }
}

/// A provider, a server signing in through it (SQLite, memory sessions, no cluster) over the
/// counting platform, and the counter.
async fn start(configure: impl FnOnce(&mut Config)) -> Result<(e2e::oidc::OidcProvider, Server, Arc<AtomicUsize>)> {
    let (listener, base) = Server::bind().await?;
    let provider = provider_for(&base).await?;
    let mut config = Config::for_tests(common::temp_sqlite());
    config.base_url = base.parse()?;
    use_provider(&mut config, &base, provider.issuer(), CLIENT_ID);
    configure(&mut config);
    config.check().map_err(anyhow::Error::msg)?;
    let config = Arc::new(config);
    let db = Db::connect(None, &config.sqlite_path).await?;
    let offline = apiserver::platform::offline::OfflinePlatform::new(db.clone(), config.clone())?;
    let ensured = Arc::new(AtomicUsize::new(0));
    let platform: Arc<dyn Platform> = Arc::new(Counting {
        inner: Arc::new(offline),
        ensured: ensured.clone(),
    });
    let app = Arc::new(apiserver::app_with(config, db, platform, apiserver::metrics::Metrics::new()).await?);
    let router = app.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((provider, Server { base, app }, ensured))
}

/// Creates a token from a signed-in browser; returns status and body.
async fn create_token(server: &Server, browser: &reqwest::Client, body: Value) -> Result<(StatusCode, Value)> {
    let resp = server
        .send(browser, Method::POST, "/api/tokens")
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// GET `path` with a bearer token.
async fn with_token(server: &Server, token: &str, path: &str) -> Result<StatusCode> {
    Ok(reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await?
        .status())
}

fn now() -> i64 {
    apiserver::db::now()
}

#[tokio::test]
async fn tokens_can_expire() -> Result<()> {
    let (provider, server, _) = start(|_| {}).await?;
    let (browser, _) = sign_in_with_jar(&server, &provider, "alice").await?;

    let (status, made) = create_token(
        &server,
        &browser,
        json!({ "name": "ci", "scopes": ["deployments:read"], "expiresInDays": 30 }),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let expires = made["expiresAt"].as_i64().context("expiresAt in the answer")?;
    let want = now() + 30 * 86_400;
    assert!(
        (expires - want).abs() <= 5,
        "expiresAt {expires}, expected about {want}"
    );
    let token = made["token"].as_str().context("the token")?.to_string();
    let (never_status, never) = create_token(
        &server,
        &browser,
        json!({ "name": "forever", "scopes": ["deployments:read"] }),
    )
    .await?;
    assert_eq!(never_status, StatusCode::CREATED);
    assert!(never["expiresAt"].is_null(), "no expiry unless asked: {never}");

    // The listing shows the expiry.
    let list: Value = browser.get(server.url("/api/tokens")).send().await?.json().await?;
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["id"] == made["id"]))
        .context("the token is listed")?;
    assert_eq!(listed["expiresAt"], expires);

    assert_eq!(with_token(&server, &token, "/api/deployments").await?, StatusCode::OK);
    // Time passes: the token's expiry is now in the past.
    sqlx::query("UPDATE api_tokens SET expires_at = $1 WHERE id = $2")
        .bind(now() - 1)
        .bind(made["id"].as_str().unwrap())
        .execute(server.app.state.db.pool())
        .await?;
    assert_eq!(
        with_token(&server, &token, "/api/deployments").await?,
        StatusCode::UNAUTHORIZED,
        "an expired token answers 401"
    );
    let never_token = never["token"].as_str().unwrap();
    assert_eq!(
        with_token(&server, never_token, "/api/deployments").await?,
        StatusCode::OK
    );

    // Out-of-range expiries are refused and create nothing.
    for bad in [json!(0), json!(-1), json!(3651), json!("soon")] {
        let (status, body) = create_token(
            &server,
            &browser,
            json!({ "name": "bad", "scopes": ["deployments:read"], "expiresInDays": bad }),
        )
        .await?;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {status} {body}"
        );
    }
    let list: Value = browser.get(server.url("/api/tokens")).send().await?.json().await?;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    Ok(())
}

#[tokio::test]
async fn tokens_per_user_are_capped() -> Result<()> {
    let (provider, server, _) = start(|c| c.api_tokens_max_per_user = 3).await?;
    let (alice, _) = sign_in_with_jar(&server, &provider, "alice").await?;
    let (bob, _) = sign_in_with_jar(&server, &provider, "bob").await?;
    let body = json!({ "name": "t", "scopes": ["deployments:read"] });
    let mut ids = vec![];
    for _ in 0..3 {
        let (status, made) = create_token(&server, &alice, body.clone()).await?;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(made["id"].as_str().unwrap().to_string());
    }
    let (status, refused) = create_token(&server, &alice, body.clone()).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("API_TOKENS_MAX_PER_USER")
            || refused["error"].as_str().unwrap_or("").contains("3"),
        "{refused}"
    );
    let list: Value = alice.get(server.url("/api/tokens")).send().await?.json().await?;
    assert_eq!(list.as_array().map(Vec::len), Some(3), "nothing was created");
    // Another user has their own allowance.
    assert_eq!(create_token(&server, &bob, body.clone()).await?.0, StatusCode::CREATED);
    // Revoking one frees a place.
    let revoked = server
        .send(&alice, Method::DELETE, &format!("/api/tokens/{}", ids[0]))
        .send()
        .await?;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        create_token(&server, &alice, body.clone()).await?.0,
        StatusCode::CREATED
    );
    // Expired tokens do not count.
    sqlx::query("UPDATE api_tokens SET expires_at = $1 WHERE id = $2")
        .bind(now() - 1)
        .bind(&ids[1])
        .execute(server.app.state.db.pool())
        .await?;
    assert_eq!(create_token(&server, &alice, body).await?.0, StatusCode::CREATED);
    Ok(())
}

/// Runs `apiserver <args>` on the server's SQLite database.
fn admin(server: &Server, args: &[&str]) -> Result<std::process::Output> {
    Ok(std::process::Command::new(env!("CARGO_BIN_EXE_apiserver"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", &server.app.state.config.sqlite_path)
        .args(args)
        .output()?)
}

#[tokio::test]
async fn a_deactivated_user_is_locked_out() -> Result<()> {
    let (provider, server, ensured) = start(|_| {}).await?;
    let (alice, _) = sign_in_with_jar(&server, &provider, "alice").await?;
    let (bob, _) = sign_in_with_jar(&server, &provider, "bob").await?;
    let (_, made) = create_token(&server, &alice, json!({ "name": "ci", "scopes": ["deployments:read"] })).await?;
    let token = made["token"].as_str().context("a token")?.to_string();
    let me: Value = alice.get(server.url("/api/me")).send().await?.json().await?;
    let alice_id = me["user"]["id"].as_str().context("alice's id")?.to_string();
    assert_eq!(with_token(&server, &token, "/api/deployments").await?, StatusCode::OK);

    // Unknown users and a missing argument are refused, changing nothing.
    let out = admin(&server, &["--deactivate-user", "nobody@example.com"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody@example.com"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = admin(&server, &["--deactivate-user", "alice@example.com"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&alice_id));

    let before = ensured.load(Ordering::SeqCst);
    assert_eq!(
        alice.get(server.url("/api/me")).send().await?.status(),
        StatusCode::UNAUTHORIZED,
        "the session stops working"
    );
    assert_eq!(
        with_token(&server, &token, "/api/deployments").await?,
        StatusCode::UNAUTHORIZED,
        "the token stops working"
    );
    // Signing in again is refused, and nothing asked for the sandbox meanwhile.
    let again = sign_in_with_jar(&server, &provider, "alice").await;
    let err = again.err().context("sign-in of a deactivated user must fail")?;
    assert!(format!("{err:#}").contains("403"), "{err:#}");
    assert_eq!(
        ensured.load(Ordering::SeqCst),
        before,
        "no sandbox is (re)created for a deactivated user"
    );
    // Others are unaffected.
    assert_eq!(bob.get(server.url("/api/me")).send().await?.status(), StatusCode::OK);

    // Reactivation by id restores access.
    let out = admin(&server, &["--reactivate-user", &alice_id])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(with_token(&server, &token, "/api/deployments").await?, StatusCode::OK);
    let (alice, _) = sign_in_with_jar(&server, &provider, "alice").await?;
    assert_eq!(alice.get(server.url("/api/me")).send().await?.status(), StatusCode::OK);
    Ok(())
}
