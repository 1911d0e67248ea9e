//! Shared helpers of the apiserver's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use apiserver::App;
use apiserver::config::Config;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A path for a throwaway SQLite file.
pub fn temp_sqlite() -> PathBuf {
    std::env::temp_dir().join(format!("{}.db", e2e::unique_name("apiserver-test")))
}

/// DEV_MODE, SQLite, memory sessions, no cluster; BASE_URL http://app.test.
pub fn offline_config() -> Config {
    let mut c = Config::for_tests(temp_sqlite());
    c.base_url = "http://app.test".parse().unwrap();
    c
}

/// The origin of [`offline_config`].
pub const ORIGIN: &str = "http://app.test";

/// Sends one request through the router; returns status and JSON body (Null when empty or not JSON).
pub async fn call(app: &App, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.router.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A GET, optionally with a bearer token.
pub fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

/// A same-origin JSON request as the web UI sends it.
pub fn json(method: &str, path: &str, body: serde_json::Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, ORIGIN)
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A JSON request authenticated by an API token (no Origin needed).
pub fn json_with_token(method: &str, path: &str, body: serde_json::Value, token: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A server on a loopback port; `configure` gets the port before the app is built (BASE_URL and
/// the OAuth redirect URL name it).
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The app (state for direct inspection).
    pub app: Arc<App>,
}

impl Server {
    /// Starts a server.
    pub async fn start(configure: impl FnOnce(&mut Config, &str)) -> Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut config = Config::for_tests(temp_sqlite());
        config.base_url = base.parse()?;
        configure(&mut config, &base);
        config.check().map_err(anyhow::Error::msg)?;
        let app = Arc::new(apiserver::app(config).await?);
        let router = app.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Server { base, app })
    }

    /// A browser-like client: cookie jar, no automatic redirects.
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A same-origin JSON request from `client`.
    pub fn send(&self, client: &reqwest::Client, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .header("origin", &self.base)
    }
}

/// Configures Google sign-in against a test OpenID provider.
pub fn use_provider(config: &mut Config, base: &str, issuer: &str, client_id: &str) {
    config.dev_mode = false;
    config.google_client_id = Some(client_id.into());
    config.google_client_secret = Some(secrecy::SecretString::from(format!("{client_id}-secret")));
    config.google_redirect_url = Some(format!("{base}/oauth2/callback").parse().unwrap());
    config.oidc_issuer_url = issuer.parse().unwrap();
}

/// A provider client matching [`use_provider`].
pub fn provider_client(client_id: &str, base: &str) -> e2e::oidc::OidcClient {
    e2e::oidc::OidcClient {
        client_id: client_id.into(),
        client_secret: format!("{client_id}-secret"),
        redirect_uris: vec![format!("{base}/oauth2/callback")],
    }
}

/// Starts sign-in on `server` with `browser`; returns the provider's redirect back (the callback URL).
pub async fn start_login(
    server: &Server,
    provider: &e2e::oidc::OidcProvider,
    browser: &reqwest::Client,
    login: &str,
) -> Result<String> {
    let resp = browser.get(server.url("/login?redirect=/after")).send().await?;
    if resp.status() != StatusCode::SEE_OTHER && !resp.status().is_redirection() {
        bail!(
            "/login answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let to = resp
        .headers()
        .get("location")
        .context("no Location from /login")?
        .to_str()?
        .to_string();
    provider.authorize(&to, login).await
}

/// Signs `login` in through the provider; returns the browser holding the session.
pub async fn sign_in(server: &Server, provider: &e2e::oidc::OidcProvider, login: &str) -> Result<reqwest::Client> {
    let browser = server.browser();
    let callback = start_login(server, provider, &browser, login).await?;
    let resp = browser.get(&callback).send().await?;
    if !resp.status().is_redirection() {
        bail!(
            "callback answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(browser)
}
