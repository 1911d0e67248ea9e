//! hello-web, the app of the `hello-web` Template (`examples/20-template-hello-web.yaml`): an HTTP
//! server that answers `GET /` with its name, version, the pod's host name and the `GREETING`
//! parameter, so that a test or a person can see that a deployment's parameter reached the
//! container. `GET /healthz` answers 200 (the Template's health check).
//!
//! Environment:
//! - `PORT`: listen port on every IPv4 interface (default 8080, the Template's port).
//! - `GREETING`: the text shown (default "Hello from k8s-scheduler").
//! - `SHOW_ENV`: comma-separated names of further variables whose values the answer shows, e.g.
//!   a secret's key so that a test can check that the secret reached the container. Only the
//!   variables named here are shown: the app never lists its environment.
//!
//! `GET /` answers plain text, or JSON (`name`, `version`, `host`, `greeting`, `env`) when the
//! request accepts `application/json` or asks `?format=json`.

#![forbid(unsafe_code)]

pub mod fetch;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// The crate's name, shown in every answer.
pub const NAME: &str = env!("CARGO_PKG_NAME");
/// The crate's version (the workspace version: also the image tag).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Listen port without `PORT`.
pub const DEFAULT_PORT: u16 = 8080;
/// Greeting without `GREETING` (the Template's default).
pub const DEFAULT_GREETING: &str = "Hello from k8s-scheduler";

/// What the app serves, read once at start.
#[derive(Clone)]
pub struct Config {
    pub port: u16,
    pub greeting: String,
    /// `HOSTNAME` (the pod name in Kubernetes), to tell replicas apart.
    pub host: Option<String>,
    /// The variables named by `SHOW_ENV` and their values (`None`: not set).
    pub shown: BTreeMap<String, Option<String>>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `var` (the environment, or a map in tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let port = match var("PORT").filter(|p| !p.trim().is_empty()) {
            None => DEFAULT_PORT,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("PORT={p:?} is not a port number (1-65535)"))?,
        };
        let shown = var("SHOW_ENV")
            .unwrap_or_default()
            .split([',', ' '])
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| (n.to_string(), var(n)))
            .collect();
        Ok(Config {
            port,
            greeting: var("GREETING").unwrap_or_else(|| DEFAULT_GREETING.to_string()),
            host: var("HOSTNAME").filter(|h| !h.is_empty()),
            shown,
        })
    }
}

/// The routes: `GET /` and `GET /healthz` (HEAD too).
pub fn router(config: Config) -> Router {
    Router::new()
        .route(
            "/",
            get(move |uri: Uri, headers: HeaderMap| async move { index(&config, &uri, &headers) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

fn wants_json(uri: &Uri, headers: &HeaderMap) -> bool {
    let asked = uri.query().is_some_and(|q| q.split('&').any(|p| p == "format=json"));
    let accepts = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    asked || accepts
}

fn index(config: &Config, uri: &Uri, headers: &HeaderMap) -> Response {
    if wants_json(uri, headers) {
        let body = json!({
            "name": NAME,
            "version": VERSION,
            "host": config.host,
            "greeting": config.greeting,
            "env": config.shown,
        });
        return axum::Json(body).into_response();
    }
    let mut text = format!("{}\n{NAME} {VERSION}", config.greeting);
    if let Some(host) = &config.host {
        text.push_str(&format!(" on {host}"));
    }
    text.push('\n');
    for (name, value) in &config.shown {
        match value {
            Some(v) => text.push_str(&format!("{name}={v}\n")),
            None => text.push_str(&format!("{name} is not set\n")),
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Serves until SIGTERM or SIGINT, then finishes the requests in flight.
pub async fn run(config: Config) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (PORT): {e}"))?;
    let shutdown = shutdown_signal()?;
    eprintln!("{NAME} {VERSION}: listening on {addr}");
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("serving on {addr}: {e}"))?;
    eprintln!("{NAME}: stopped");
    Ok(())
}

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT. The handler is installed before the
/// server starts: as PID 1 of a container the process would otherwise ignore SIGTERM and be
/// killed only after the grace period.
fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("installing the SIGINT handler: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => eprintln!("{NAME}: SIGTERM, shutting down"),
            _ = int.recv() => eprintln!("{NAME}: SIGINT, shutting down"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use std::collections::HashMap;
    use tower::ServiceExt;

    fn config(vars: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|n| map.get(n).cloned()).unwrap()
    }

    async fn get(config: Config, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
        let mut req = Request::get(uri);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = router(config).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn defaults() {
        let c = config(&[]);
        assert_eq!(c.port, 8080);
        assert_eq!(c.greeting, DEFAULT_GREETING);
        assert!(c.shown.is_empty());
    }

    #[test]
    fn bad_port_names_the_variable() {
        for bad in ["0", "http", "70000"] {
            let err = Config::from_lookup(|n| (n == "PORT").then(|| bad.to_string()))
                .err()
                .unwrap();
            assert!(err.contains("PORT=") && err.contains(bad), "{err}");
        }
        assert_eq!(config(&[("PORT", "3000")]).port, 3000);
    }

    #[tokio::test]
    async fn text_answer_shows_greeting_version_and_listed_variables_only() {
        let c = config(&[
            ("GREETING", "Hi there"),
            ("HOSTNAME", "web-1"),
            ("SHOW_ENV", "API_KEY, MISSING"),
            ("API_KEY", "s3cret"),
            ("OTHER_SECRET", "hidden"),
        ]);
        let (status, ctype, body) = get(c, "/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        assert_eq!(
            body,
            format!("Hi there\nhello-web {VERSION} on web-1\nAPI_KEY=s3cret\nMISSING is not set\n")
        );
        assert!(!body.contains("hidden"));
    }

    #[tokio::test]
    async fn json_answer_by_accept_header_or_query() {
        let c = config(&[("GREETING", "Hi"), ("SHOW_ENV", "K"), ("K", "v")]);
        for (uri, accept) in [("/", Some("application/json")), ("/?format=json", None)] {
            let (status, ctype, body) = get(c.clone(), uri, accept).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(ctype, "application/json");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["name"], "hello-web");
            assert_eq!(v["version"], VERSION);
            assert_eq!(v["greeting"], "Hi");
            assert_eq!(v["env"]["K"], "v");
            assert_eq!(v["host"], serde_json::Value::Null);
        }
    }

    #[tokio::test]
    async fn healthz_and_unknown_paths() {
        let (status, _, body) = get(config(&[]), "/healthz", None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        let (status, _, _) = get(config(&[]), "/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
