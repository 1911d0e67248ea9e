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
        let (listener, base) = Server::bind().await?;
        Server::start_on(listener, base, configure).await
    }

    /// A loopback listener and its base URL, for when something must know the port first.
    pub async fn bind() -> Result<(TcpListener, String)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        Ok((listener, base))
    }

    /// Starts a server on `listener`.
    pub async fn start_on(
        listener: TcpListener,
        base: String,
        configure: impl FnOnce(&mut Config, &str),
    ) -> Result<Server> {
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
        self.browser_with_jar().0
    }

    /// A browser-like client and its cookie jar.
    pub fn browser_with_jar(&self) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        (client, jar)
    }

    /// The value of cookie `name` in `jar` for this server.
    pub fn cookie(&self, jar: &reqwest::cookie::Jar, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let header = jar.cookies(&self.base.parse().ok()?)?;
        let all = header.to_str().ok()?.to_string();
        all.split("; ")
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// GET `path` sending exactly this session cookie (no jar: server-side checks only).
    pub async fn get_with_cookie(&self, path: &str, name: &str, value: &str) -> Result<reqwest::StatusCode> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(client
            .get(self.url(path))
            .header("cookie", format!("{name}={value}"))
            .send()
            .await?
            .status())
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
    Ok(sign_in_with_jar(server, provider, login).await?.0)
}

/// [`sign_in`], also returning the cookie jar.
pub async fn sign_in_with_jar(
    server: &Server,
    provider: &e2e::oidc::OidcProvider,
    login: &str,
) -> Result<(reqwest::Client, Arc<reqwest::cookie::Jar>)> {
    let (browser, jar) = server.browser_with_jar();
    let callback = start_login(server, provider, &browser, login).await?;
    let resp = browser.get(&callback).send().await?;
    if !resp.status().is_redirection() {
        bail!(
            "callback answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok((browser, jar))
}

/// A test OpenID provider with a client for a server that will listen at `base`.
pub async fn provider_for(base: &str) -> Result<e2e::oidc::OidcProvider> {
    e2e::oidc::OidcProvider::start(&[provider_client(CLIENT_ID, base)]).await
}

/// Client id the tests register.
pub const CLIENT_ID: &str = "k8s-scheduler-test";

/// A provider and a server signing in through it, with `configure` applied last.
pub async fn server_with_provider(configure: impl FnOnce(&mut Config)) -> Result<(e2e::oidc::OidcProvider, Server)> {
    let (listener, base) = Server::bind().await?;
    let provider = provider_for(&base).await?;
    let issuer = provider.issuer().to_string();
    let server = Server::start_on(listener, base, |c, base| {
        use_provider(c, base, &issuer, CLIENT_ID);
        configure(c);
    })
    .await?;
    Ok((provider, server))
}
