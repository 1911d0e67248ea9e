//! Sign-in and sign-out: `/login` and the OAuth callback (see `auth::oidc`), `/logout`, and in
//! DEV_MODE `/dev/login`.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use tower_sessions::Session;

use crate::AppState;
use crate::auth::oidc::{self, LoginQuery};
use crate::auth::{DEV_EMAIL, DEV_SUBJECT, SESSION_USER};
use crate::error::{ApiError, ApiResult};

/// Routes of this area.
pub fn router(state: &AppState) -> Router<AppState> {
    let callback = state.config.google_redirect_url.as_ref().map(|u| u.path().to_string());
    let mut r = Router::new()
        .route("/login", get(oidc::login))
        .route(
            callback
                .as_deref()
                .filter(|p| p.len() > 1)
                .unwrap_or("/oauth2/callback"),
            get(oidc::callback),
        )
        .route("/logout", post(logout));
    if state.config.dev_mode {
        r = r.route("/dev/login", get(dev_login));
    }
    r
}

/// Signs out: the session is deleted on the server, not only forgotten by the browser.
#[utoipa::path(post, path = "/logout", tag = "auth", responses((status = 204, description = "signed out")))]
pub async fn logout(State(state): State<AppState>, session: Session) -> ApiResult<StatusCode> {
    let id = session.id();
    session
        .flush()
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("session store: {e}")))?;
    // Its open event and log streams end with it.
    if let Some(id) = id {
        state.streams.end_session(&id.to_string());
        state.log_follows.end_session(&id.to_string());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// DEV_MODE only: a real session for dev@localhost.
#[utoipa::path(get, path = "/dev/login", tag = "auth", params(LoginQuery),
    responses((status = 303, description = "signed in as dev@localhost")))]
pub async fn dev_login(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<LoginQuery>,
) -> ApiResult<impl IntoResponse> {
    let redirect = oidc::redirect_target(&q)?;
    let (user, _) = state.db.upsert_user(DEV_SUBJECT, DEV_EMAIL, "Developer").await?;
    if !state.db.user_is_active(&user.id).await? {
        return Err(ApiError::Forbidden("this account is deactivated".into()));
    }
    state.platform.ensure_sandbox(&user).await?;
    let err = |e: tower_sessions::session::Error| ApiError::Internal(anyhow::anyhow!("session store: {e}"));
    session.cycle_id().await.map_err(err)?;
    session.insert(SESSION_USER, &user.id).await.map_err(err)?;
    Ok(Redirect::to(&redirect))
}
