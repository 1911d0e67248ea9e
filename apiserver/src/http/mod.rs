//! The HTTP API: one router per area, merged in [`router`].

pub mod billing;
pub mod deployments;
pub mod events;
pub mod logs;
pub mod secrets;
pub mod session;
pub mod system;
pub mod teams;
pub mod templates;
pub mod tokens;
pub mod ui;
pub mod usage;

use axum::Router;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body whose rejection is an [`ApiError`] naming the problem (unknown field, wrong type,
/// not JSON) instead of a plain-text response.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("the body must be JSON (Content-Type: application/json)".into())
            }
            other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
                "the body is larger than the server accepts ({})",
                other.body_text()
            )),
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

/// What kind of name a path parameter holds, and so which rule it must meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A Kubernetes object name that is a DNS-1123 label of at most 63 characters (deployments,
    /// services, secret scopes).
    Label,
    /// A Kubernetes object name that is a DNS-1123 subdomain of at most 253 characters (templates).
    Subdomain,
    /// An environment variable name (secret keys).
    EnvName,
    /// An id the server generated (API tokens): 1-64 URL-safe base64 characters.
    Id,
}

/// The longest part of a refused value a message repeats.
const SHOWN: usize = 80;

/// Checks a path parameter before it reaches a Kubernetes request URL, a store path or a query:
/// anything that is not a name of `kind` (a decoded `/`, `..`, upper case, control characters,
/// overlong) is a 400 that names the parameter.
pub fn path_name(param: &str, value: &str, kind: NameKind) -> Result<(), ApiError> {
    let ok = match kind {
        NameKind::Label => crds::is_dns_label(value, 63),
        NameKind::Subdomain => value.len() <= 253 && value.split('.').all(|part| crds::is_dns_label(part, 63)),
        NameKind::EnvName => crate::secrets::validate_key(value).is_ok(),
        NameKind::Id => {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
    };
    if ok {
        return Ok(());
    }
    let shown: String = value.chars().take(SHOWN).collect();
    let shown = if shown.len() < value.len() {
        format!("{shown:?}... ({} bytes)", value.len())
    } else {
        format!("{shown:?}")
    };
    let rule = match kind {
        NameKind::Label => {
            "a DNS label: 1-63 lower-case letters, digits and dashes, not starting or ending with a dash"
        }
        NameKind::Subdomain => {
            "a DNS subdomain: at most 253 characters of dot-separated DNS labels (lower-case letters, digits, dashes)"
        }
        NameKind::EnvName => "an environment variable name matching ^[A-Za-z_][A-Za-z0-9_]*$, at most 128 characters",
        NameKind::Id => "an id of 1-64 letters, digits, '-' and '_'",
    };
    Err(ApiError::BadRequest(format!(
        "path parameter {param}: {shown} is not valid; it must be {rule}"
    )))
}

/// Every route of the server (without the middleware, added in `crate::app`).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(system::router())
        .merge(session::router(state))
        .merge(templates::router())
        .merge(deployments::router())
        .merge(events::router())
        .merge(logs::router())
        .merge(usage::router())
        .merge(teams::router())
        .merge(billing::router())
        .merge(tokens::router())
        .merge(ui::router(state))
        .merge(secrets::router())
}
