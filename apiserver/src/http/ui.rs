//! The web UI (`web/`, React), embedded in the binary with rust-embed and served when
//! `REACT_UI=true`: files of `web/dist/` as they are (hashed `/assets/*` cached for a year as
//! immutable), and `index.html` (never cached) for every other path that is not the server's, so
//! that the single-page app's own routes (`/deployments/web`, ...) load it.
//!
//! Release builds carry the files inside the binary; debug builds read them from `web/dist/` at run
//! time (rust-embed's default), so that `npm --prefix web run build` is enough to see a change. The
//! crate compiles without a built UI: UI paths then answer 503 saying how to build it.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::AppState;
use crate::error::ApiError;

/// The production build of `web/` (`npm --prefix web run build`).
#[derive(RustEmbed)]
#[folder = "../web/dist/"]
#[allow_missing = true]
struct Dist;

/// Path prefixes the server owns: unknown paths under them are API 404s, never the UI.
const SERVER_PATHS: &[&str] = &[
    "/api", "/login", "/logout", "/oauth2", "/dev", "/health", "/readyz", "/metrics",
];

/// Hashed, content-addressed build output.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What the page may load: only this origin (inline `style` attributes are used for meters).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The message of a server built without the UI.
pub const NOT_BUILT: &str = "the UI was not built: run hack/dev or npm --prefix web run build";

/// The UI as a fallback for paths no other route takes (empty when `REACT_UI=false`).
pub fn router(state: &AppState) -> Router<AppState> {
    if !state.config.react_ui {
        return Router::new();
    }
    Router::new().fallback(serve)
}

/// Whether `path` belongs to the server rather than to the UI.
pub fn is_server_path(path: &str) -> bool {
    SERVER_PATHS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Answers a request no route took.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if is_server_path(path) {
        return ApiError::NotFound(format!(
            "no route {method} {path}; the API is described at /api/openapi.json"
        ))
        .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "the web UI only answers GET and HEAD",
        )
            .into_response();
    }
    let Some(index) = Dist::get("index.html") else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::RETRY_AFTER, "5"),
            ],
            NOT_BUILT,
        )
            .into_response();
    };
    let rel = path.trim_start_matches('/');
    if !rel.is_empty()
        && rel != "index.html"
        && let Some(file) = Dist::get(rel)
    {
        let cache = if rel.starts_with("assets/") {
            IMMUTABLE
        } else {
            "no-cache"
        };
        return file_response(&headers, file, cache, false);
    }
    if rel.starts_with("assets/") {
        // A hashed file of another build: HTML in its place would only confuse the browser.
        return (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            "no such asset; reload the page",
        )
            .into_response();
    }
    file_response(&headers, index, "no-cache", true)
}

fn file_response(req: &HeaderMap, file: rust_embed::EmbeddedFile, cache: &'static str, page: bool) -> Response {
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let mut resp = if req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data.into_owned()))
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if page {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_are_not_the_ui() {
        for p in [
            "/api",
            "/api/",
            "/api/nope",
            "/login",
            "/logout",
            "/oauth2/callback",
            "/dev/login",
            "/health",
            "/readyz",
            "/metrics",
        ] {
            assert!(is_server_path(p), "{p}");
        }
        for p in [
            "/",
            "/deployments/x",
            "/apis",
            "/login-help",
            "/developers",
            "/assets/index.js",
            "/signin",
        ] {
            assert!(!is_server_path(p), "{p}");
        }
    }

    async fn get(path: &str) -> Response {
        serve(Method::GET, path.parse().unwrap(), HeaderMap::new()).await
    }

    #[tokio::test]
    async fn spa_paths_get_index_html_or_503_without_a_build() {
        let built = Dist::get("index.html").is_some();
        for p in ["/", "/deployments/x", "/templates?q=web"] {
            let resp = get(p).await;
            if built {
                assert_eq!(resp.status(), StatusCode::OK, "{p}");
                assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache");
                assert!(
                    resp.headers()[header::CONTENT_TYPE]
                        .to_str()
                        .unwrap()
                        .starts_with("text/html")
                );
            } else {
                assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{p}");
            }
        }
        let api = get("/api/nope").await;
        assert_eq!(api.status(), StatusCode::NOT_FOUND);
        assert_eq!(api.headers()[header::CONTENT_TYPE], "application/json");
        let post = serve(Method::POST, "/x".parse().unwrap(), HeaderMap::new()).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn assets_are_immutable_and_revalidated_by_etag() {
        let Some(asset) = Dist::iter().find(|f| f.starts_with("assets/")) else {
            assert_eq!(get("/assets/x.js").await.status(), StatusCode::SERVICE_UNAVAILABLE);
            return;
        };
        let resp = get(&format!("/{asset}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], IMMUTABLE);
        let etag = resp.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        let again = serve(Method::GET, format!("/{asset}").parse().unwrap(), h).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get("/assets/gone-1234.js").await.status(), StatusCode::NOT_FOUND);
    }
}
