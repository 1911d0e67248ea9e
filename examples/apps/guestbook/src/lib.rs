//! guestbook, the web service of the `guestbook` Template (`examples/21-template-guestbook.yaml`):
//! keeps a list of entries in Redis.
//!
//! - `GET /`: a small HTML page listing the entries, with a form (no JavaScript).
//! - `POST /entries`: appends the body (`text/plain`, or the form's `entry` field; the form is
//!   then redirected back to `/`); 201 with `{"entry": ...}`.
//! - `GET /entries`: `{"entries": [...]}`, oldest first.
//! - `GET /healthz`: 200 while the process serves (liveness: a Redis outage must not restart
//!   the web pod). `GET /readyz`: 200 when Redis answers PING, else 503.
//!
//! Environment: `PORT` (default 3000, the Template's port); `REDIS_ADDR` (`host:port` or a
//! `redis://` URL) or else `REDIS_HOST` (default `redis`) and `REDIS_PORT` (default 6379);
//! `REDIS_PASSWORD` (optional); `TITLE` (default "Guestbook"); `LOG_LEVEL` (`debug` logs every
//! write; `info`, `warn`); `GUESTBOOK_KEY` (the Redis list, default `guestbook:entries`).

#![forbid(unsafe_code)]

pub mod store;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

pub use store::{MemoryStore, RedisAddr, RedisStore, Store, StoreError};

/// The crate's name and version, shown on the page.
pub const NAME: &str = env!("CARGO_PKG_NAME");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Listen port without `PORT` (the Template's port).
pub const DEFAULT_PORT: u16 = 3000;
/// Longest entry, in characters.
pub const MAX_ENTRY_CHARS: usize = 500;
/// Largest request body (a form-encoded entry of [`MAX_ENTRY_CHARS`] fits easily).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The app's settings, read once at start.
#[derive(Clone)]
pub struct Config {
    pub port: u16,
    pub redis: RedisAddr,
    /// `REDIS_PASSWORD`; never printed.
    pub redis_password: Option<String>,
    pub title: String,
    /// `LOG_LEVEL=debug`: log every write.
    pub debug: bool,
    pub key: String,
}

fn parse_port(name: &str, value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{name}={value:?} is not a port number (1-65535)"))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `var` (empty values count as unset).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let port = var("PORT")
            .map(|p| parse_port("PORT", &p))
            .transpose()?
            .unwrap_or(DEFAULT_PORT);
        let redis = match var("REDIS_ADDR") {
            Some(a) if a.contains("://") => RedisAddr::Url(a.trim().to_string()),
            Some(a) => {
                let (host, p) = a.trim().rsplit_once(':').ok_or_else(|| {
                    "REDIS_ADDR must be host:port or a redis:// URL (the value is not shown: it may hold a password)"
                        .to_string()
                })?;
                RedisAddr::HostPort(host.to_string(), parse_port("the port of REDIS_ADDR", p)?)
            }
            None => RedisAddr::HostPort(
                var("REDIS_HOST").unwrap_or_else(|| "redis".into()),
                var("REDIS_PORT")
                    .map(|p| parse_port("REDIS_PORT", &p))
                    .transpose()?
                    .unwrap_or(6379),
            ),
        };
        let debug = match var("LOG_LEVEL").as_deref().map(str::trim) {
            None | Some("info" | "warn") => false,
            Some("debug") => true,
            Some(other) => return Err(format!("LOG_LEVEL={other:?} is not one of debug, info, warn")),
        };
        Ok(Config {
            port,
            redis,
            redis_password: var("REDIS_PASSWORD"),
            title: var("TITLE").unwrap_or_else(|| "Guestbook".into()),
            debug,
            key: var("GUESTBOOK_KEY").unwrap_or_else(|| "guestbook:entries".into()),
        })
    }
}

/// What the handlers share.
pub struct App<S> {
    pub store: S,
    pub title: String,
    pub debug: bool,
}

/// The routes over `store`.
pub fn router<S: Store>(app: App<S>) -> Router {
    Router::new()
        .route("/", get(index::<S>))
        .route("/entries", get(list::<S>).post(append::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<S>))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(app))
}

type AppState<S> = State<Arc<App<S>>>;

fn unavailable(e: &StoreError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the entries are unavailable: {e}\n"),
    )
        .into_response()
}

async fn list<S: Store>(State(app): AppState<S>) -> Response {
    match app.store.list().await {
        Ok(entries) => axum::Json(json!({ "entries": entries })).into_response(),
        Err(e) => unavailable(&e),
    }
}

/// The entry of a request: the `entry` field of a form, else the whole body as UTF-8 text.
fn entry_of(headers: &HeaderMap, body: &[u8]) -> Result<(String, bool), String> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let text = if form {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == "entry")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| "the entry is not UTF-8 text".to_string())?
    };
    let text = text.trim().to_string();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_ENTRY_CHARS {
        return Err(format!(
            "an entry has 1 to {MAX_ENTRY_CHARS} characters (this one has {chars})"
        ));
    }
    Ok((text, form))
}

async fn append<S: Store>(State(app): AppState<S>, headers: HeaderMap, body: Bytes) -> Response {
    let (entry, form) = match entry_of(&headers, &body) {
        Ok(e) => e,
        Err(msg) => return (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response(),
    };
    if let Err(e) = app.store.append(&entry).await {
        return unavailable(&e);
    }
    if app.debug {
        eprintln!("{NAME}: added an entry of {} characters", entry.chars().count());
    }
    if form {
        // Post/redirect/get: reloading the page does not post the entry again.
        return Redirect::to("/").into_response();
    }
    (StatusCode::CREATED, axum::Json(json!({ "entry": entry }))).into_response()
}

async fn ready<S: Store>(State(app): AppState<S>) -> Response {
    match app.store.ping().await {
        Ok(()) => "ok\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn index<S: Store>(State(app): AppState<S>) -> Response {
    let title = escape(&app.title);
    let (items, status) = match app.store.list().await {
        Ok(entries) if entries.is_empty() => ("<p>No entries yet.</p>".to_string(), StatusCode::OK),
        Ok(entries) => {
            let lis: String = entries
                .iter()
                .rev()
                .map(|e| format!("<li>{}</li>", escape(e)))
                .collect();
            (format!("<ul>{lis}</ul>"), StatusCode::OK)
        }
        Err(e) => (
            format!("<p>The entries are unavailable: {}</p>", escape(&e.0)),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n\
         <form method=\"post\" action=\"/entries\"><textarea name=\"entry\" maxlength=\"{MAX_ENTRY_CHARS}\" required></textarea>\
         <button type=\"submit\">Sign</button></form>\n{items}\n<footer>{NAME} {VERSION}</footer></body></html>\n"
    );
    (status, Html(page)).into_response()
}

/// Serves until SIGTERM or SIGINT, then finishes the requests in flight.
pub async fn run(config: Config) -> Result<(), String> {
    let store =
        RedisStore::new(&config.redis, config.redis_password.as_deref(), &config.key).map_err(|e| e.to_string())?;
    let server = store.server().to_string();
    let app = App {
        store,
        title: config.title,
        debug: config.debug,
    };
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (PORT): {e}"))?;
    let shutdown = shutdown_signal()?;
    eprintln!("{NAME} {VERSION}: listening on {addr}, entries in Redis at {server}");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("serving on {addr}: {e}"))?;
    eprintln!("{NAME}: stopped");
    Ok(())
}

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT; installed before serving, because
/// PID 1 of a container ignores SIGTERM without a handler.
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

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |n| map.get(n).cloned()
    }

    async fn call(store: &MemoryStore, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let app = App {
            store: store.clone(),
            title: "My <book>".into(),
            debug: false,
        };
        let resp = router(app).oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn post(body: &str, ctype: &str) -> Request<Body> {
        Request::post("/entries")
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn redis_address_from_the_environment() {
        let c = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(c.redis, RedisAddr::HostPort("redis".into(), 6379));
        assert_eq!(c.port, 3000);
        let c = Config::from_lookup(lookup(&[("REDIS_HOST", "guestbook-redis"), ("REDIS_PORT", "6380")])).unwrap();
        assert_eq!(c.redis, RedisAddr::HostPort("guestbook-redis".into(), 6380));
        // REDIS_ADDR wins over REDIS_HOST.
        let c = Config::from_lookup(lookup(&[("REDIS_ADDR", "db:7000"), ("REDIS_HOST", "x")])).unwrap();
        assert_eq!(c.redis, RedisAddr::HostPort("db".into(), 7000));
        let c = Config::from_lookup(lookup(&[("REDIS_ADDR", "redis://:pw@db:7000/1")])).unwrap();
        assert_eq!(c.redis, RedisAddr::Url("redis://:pw@db:7000/1".into()));
    }

    #[test]
    fn wrong_settings_name_the_variable_not_the_secret() {
        let err = Config::from_lookup(lookup(&[("REDIS_PORT", "six")])).err().unwrap();
        assert!(err.starts_with("REDIS_PORT="), "{err}");
        let err = Config::from_lookup(lookup(&[("REDIS_ADDR", "s3cret-host")]))
            .err()
            .unwrap();
        assert!(err.contains("REDIS_ADDR") && !err.contains("s3cret"), "{err}");
        let err = Config::from_lookup(lookup(&[("LOG_LEVEL", "loud")])).err().unwrap();
        assert!(err.contains("LOG_LEVEL"), "{err}");
        assert!(Config::from_lookup(lookup(&[("LOG_LEVEL", "debug")])).unwrap().debug);
    }

    #[test]
    fn redis_store_builds_from_both_address_forms() {
        let s = RedisStore::new(&RedisAddr::HostPort("db".into(), 7000), Some("pw"), "k").unwrap();
        assert_eq!(s.server(), "db:7000");
        let s = RedisStore::new(&RedisAddr::Url("redis://:pw@db:7001".into()), None, "k").unwrap();
        assert_eq!(s.server(), "db:7001");
        assert!(RedisStore::new(&RedisAddr::Url("http://db".into()), None, "k").is_err());
    }

    #[tokio::test]
    async fn a_text_write_is_read_back() {
        let store = MemoryStore::default();
        let (status, _, body) = call(&store, post("  hello there \n", "text/plain")).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body, r#"{"entry":"hello there"}"#);
        call(&store, post("second", "text/plain")).await;
        let (status, headers, body) = call(&store, get("/entries")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body, r#"{"entries":["hello there","second"]}"#);
    }

    #[tokio::test]
    async fn a_form_write_redirects_to_the_page() {
        let store = MemoryStore::default();
        let (status, headers, _) = call(
            &store,
            post("entry=a+%3Cb%3E&other=x", "application/x-www-form-urlencoded"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/");
        assert_eq!(store.list().await.unwrap(), vec!["a <b>".to_string()]);
        // The page escapes entries and the title.
        let (status, _, page) = call(&store, get("/")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<li>a &lt;b&gt;</li>"), "{page}");
        assert!(page.contains("<title>My &lt;book&gt;</title>"), "{page}");
    }

    #[tokio::test]
    async fn empty_or_long_entries_are_refused() {
        let store = MemoryStore::default();
        for body in ["   ", &"x".repeat(MAX_ENTRY_CHARS + 1)] {
            let (status, _, msg) = call(&store, post(body, "text/plain")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(msg.contains("1 to 500 characters"), "{msg}");
        }
        let (status, _, _) = call(&store, post(&"é".repeat(MAX_ENTRY_CHARS), "text/plain")).await;
        assert_eq!(status, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn redis_down_fails_readiness_and_requests_but_not_liveness() {
        let store = MemoryStore::default();
        store.set_down(true);
        assert_eq!(call(&store, get("/healthz")).await.0, StatusCode::OK);
        let (status, _, msg) = call(&store, get("/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(msg.contains("memory store is down"), "{msg}");
        assert_eq!(call(&store, get("/entries")).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            call(&store, post("x", "text/plain")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(call(&store, get("/")).await.0, StatusCode::SERVICE_UNAVAILABLE);
        store.set_down(false);
        assert_eq!(call(&store, get("/readyz")).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn only_the_newest_entries_are_kept() {
        let store = MemoryStore::default();
        for i in 0..(store::MAX_ENTRIES + 5) {
            store.append(&i.to_string()).await.unwrap();
        }
        let entries = store.list().await.unwrap();
        assert_eq!(entries.len(), store::MAX_ENTRIES as usize);
        assert_eq!(entries[0], "5");
    }
}
