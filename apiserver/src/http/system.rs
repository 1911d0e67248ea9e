//! Probes, the OpenAPI document and the feature flags of `/api/config`. (Metrics are served on
//! their own listener, see [`crate::metrics::router`].)

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::AppState;
use crate::auth::Principal;
use crate::db::User;
use crate::error::ApiResult;
use crate::platform::SandboxInfo;

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .route("/api/config", get(config))
        .route("/api/me", get(me))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "ok")))]
pub async fn health() -> &'static str {
    "ok"
}

// The answer names the dependency that is not ready; its error text goes to the log only (the
// probe is public).
/// Readiness: the database and (when enabled) Kubernetes answer.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "ready"), (status = 503, description = "what is not ready")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %format!("{e:#}"), "readyz: the database is not ready");
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: database");
    }
    match state.platform.ready().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "readyz: the platform is not ready");
            let what = if state.config.kubernetes_enabled {
                "not ready: kubernetes"
            } else {
                "not ready: database"
            };
            (StatusCode::SERVICE_UNAVAILABLE, what)
        }
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document())
}

/// Feature flags for the UI.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureFlags {
    /// Every request is signed in as dev@localhost.
    pub dev_mode: bool,
    /// Deployments run on Kubernetes (else they are only stored and rendered).
    pub kubernetes_enabled: bool,
    /// The embedded UI is served.
    pub react_ui: bool,
    /// Stripe billing is on.
    pub billing_enabled: bool,
    /// Invitations are emailed.
    pub email_enabled: bool,
    /// AI template drafts are available.
    pub ai_enabled: bool,
    /// Base domain of app hosts.
    pub deployment_domain: String,
    /// Public URL of the application.
    pub base_url: String,
}

/// Feature flags.
#[utoipa::path(get, path = "/api/config", tag = "system", responses((status = 200, body = FeatureFlags)))]
pub async fn config(State(state): State<AppState>) -> Json<FeatureFlags> {
    let c = &state.config;
    Json(FeatureFlags {
        dev_mode: c.dev_mode,
        kubernetes_enabled: c.kubernetes_enabled,
        react_ui: c.react_ui,
        billing_enabled: c.billing_enabled,
        email_enabled: c.email_provider.is_some(),
        ai_enabled: c.anthropic_api_key.is_some(),
        deployment_domain: c.settings.deployment_domain.clone(),
        base_url: c.base_url.as_str().trim_end_matches('/').to_string(),
    })
}

/// The caller.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The user.
    pub user: User,
    /// The current sandbox: the user's own, or the current team's.
    pub sandbox: SandboxInfo,
    /// The caller's role in it: owner (their own), admin, developer or viewer.
    pub role: crate::teams::SandboxRole,
    /// The current team (null: the user's own sandbox).
    pub team: Option<super::teams::TeamRef>,
    /// Every team the user can act in, with their role.
    pub teams: Vec<super::teams::TeamRef>,
    /// session, token or dev-mode.
    pub authenticated_by: String,
    /// Scopes, for API tokens.
    pub scopes: Option<Vec<String>>,
}

/// The view of the caller `p`.
pub async fn me_of(state: &AppState, p: Principal) -> ApiResult<Me> {
    let sandbox = p.sandbox(state);
    let teams = crate::teams::store::teams_of(&state.db, &p.user.id).await?;
    let team = p.tenant.team.as_ref().and_then(|t| {
        teams
            .iter()
            .find(|m| m.team.id == t.id)
            .map(|m| super::teams::TeamRef::new(&m.team, m.role))
    });
    Ok(Me {
        authenticated_by: match p.via {
            crate::auth::Via::Session => "session",
            crate::auth::Via::Token => "token",
            crate::auth::Via::DevMode => "dev-mode",
        }
        .into(),
        scopes: p.scopes.as_ref().map(|s| s.iter().map(|x| x.to_string()).collect()),
        role: p.tenant.role,
        team,
        teams: teams
            .iter()
            .map(|m| super::teams::TeamRef::new(&m.team, m.role))
            .collect(),
        user: p.user,
        sandbox,
    })
}

/// The signed-in user, their current sandbox and role, and their teams.
#[utoipa::path(get, path = "/api/me", tag = "system",
    responses((status = 200, body = Me), (status = 401, body = crate::error::ErrorBody)))]
pub async fn me(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Me>> {
    Ok(Json(me_of(&state, p).await?))
}
