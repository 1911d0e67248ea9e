//! CSRF protection for browser requests. A state-changing request (anything but GET, HEAD and
//! OPTIONS) that is not authenticated by an API token must be JSON and come from BASE_URL's origin
//! (a DELETE without a body needs no Content-Type, only the origin).
//! JSON bodies cannot be sent cross-site without a CORS preflight, which this server never grants,
//! and the Origin check stops the rest. API-token requests carry no ambient credentials, so they
//! are exempt; so is the Stripe webhook path, which authenticates by signature.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// Paths that authenticate otherwise and are exempt.
const EXEMPT: &[&str] = &["/api/billing/webhook"];

/// The middleware.
pub async fn protect(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || EXEMPT.contains(&req.uri().path()) {
        return Ok(());
    }
    let h = req.headers();
    if h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "))
    {
        return Ok(());
    }
    let origin = state.config.origin();
    let sent = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            // Some browsers omit Origin on same-origin requests; the Referer then names it.
            let r = h.get(header::REFERER)?.to_str().ok()?;
            url::Url::parse(r).ok().map(|u| u.origin().ascii_serialization())
        });
    match sent {
        Some(o) if o == origin => {}
        Some(o) => {
            return Err(ApiError::Forbidden(format!(
                "cross-site request refused: Origin {o} is not {origin} (BASE_URL)"
            )));
        }
        None => {
            return Err(ApiError::Forbidden(format!(
                "request refused: state-changing browser requests must send an Origin header of {origin}"
            )));
        }
    }
    // A DELETE without a body carries nothing a form could forge: same-origin is enough.
    let no_body = !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == "0"));
    if req.method() == Method::DELETE && no_body && !h.contains_key(header::CONTENT_TYPE) {
        return Ok(());
    }
    let content_type = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "state-changing requests must have Content-Type: application/json, not {:?}",
            content_type
        )));
    }
    Ok(())
}
