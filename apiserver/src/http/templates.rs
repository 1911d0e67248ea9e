//! `/api/templates`: the catalog the caller can deploy from — the system templates of the
//! platform namespace and the caller's own.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use kube::ResourceExt;

use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::views::TemplateView;

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/templates", get(list))
        .route("/api/templates/{name}", get(one))
}

/// Templates the caller can use.
#[utoipa::path(get, path = "/api/templates", tag = "templates", responses((status = 200, body = Vec<TemplateView>)))]
pub async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<TemplateView>>> {
    p.require(Scope::TemplatesRead)?;
    let ns = p.sandbox(&state).namespace;
    let platform = &state.config.settings.platform_namespace;
    Ok(Json(
        state
            .platform
            .templates(&ns)
            .iter()
            .map(|t| TemplateView::of(t, platform))
            .collect(),
    ))
}

/// One template.
#[utoipa::path(get, path = "/api/templates/{name}", tag = "templates", params(("name" = String, Path)),
    responses((status = 200, body = TemplateView), (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<TemplateView>> {
    p.require(Scope::TemplatesRead)?;
    super::path_name("name", &name, super::NameKind::Subdomain)?;
    let ns = p.sandbox(&state).namespace;
    state
        .platform
        .templates(&ns)
        .iter()
        .find(|t| t.name_any() == name)
        .map(|t| Json(TemplateView::of(t, &state.config.settings.platform_namespace)))
        .ok_or_else(|| ApiError::NotFound(format!("template {name:?} not found")))
}
