//! The one error type of the HTTP API. Known problems map to 4xx with a message a person can act
//! on; internal errors are logged with their context and answered with a generic 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401: not signed in, or an invalid token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: signed in but not allowed (scope, plan limit, CSRF).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such object for this caller (also for other users' objects).
    #[error("{0}")]
    NotFound(String),
    /// 409: the object exists or changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// 413: a value or body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body must be JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: too many at once (open event streams); retry later.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: a dependency is not ready yet; retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged, answered generically.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Error body: `{"error": "..."}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "internal error; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = (status, Json(ErrorBody { error: message })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("5"));
        }
        resp
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 404 => ApiError::NotFound(s.message.clone()),
            kube::Error::Api(s) if s.code == 409 => ApiError::Conflict(s.message.clone()),
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => ApiError::BadRequest(s.message.clone()),
            kube::Error::Api(s) if s.code == 403 && s.message.contains("status unknown for quota") => {
                ApiError::Unavailable("your sandbox is still being prepared; retry in a few seconds".into())
            }
            kube::Error::Api(s) if s.code == 403 && s.message.contains("exceeded quota") => {
                ApiError::Forbidden(format!("your sandbox's quota is used up: {}", s.message))
            }
            _ => ApiError::Internal(anyhow::Error::new(e).context("Kubernetes API request")),
        }
    }
}
