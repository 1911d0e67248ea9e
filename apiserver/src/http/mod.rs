//! The HTTP API: one router per area, merged in [`router`].

pub mod deployments;
pub mod events;
pub mod secrets;
pub mod session;
pub mod system;
pub mod templates;
pub mod tokens;
pub mod ui;

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
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

/// Every route of the server (without the middleware, added in `crate::app`).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(system::router())
        .merge(session::router(state))
        .merge(templates::router())
        .merge(deployments::router())
        .merge(events::router())
        .merge(tokens::router())
        .merge(ui::router(state))
        .merge(secrets::router())
}
