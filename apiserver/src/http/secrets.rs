//! `/api/secrets`: the caller's secret values, by scope. Values are write-only: listings carry
//! names, scopes, descriptions and times, never values. Every path is under the caller's own user
//! id; names are validated so that none can reach another user's prefix. A write re-delivers the
//! values to the affected deployments (and restarts their pods when a value changed).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use kube::ResourceExt;
use serde::Deserialize;

use super::ApiJson;
use crate::AppState;
use crate::auth::{Principal, Scope as AuthScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::secrets::{Scope, SecretError, SecretInfo, validate_key};

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/secrets", get(list))
        .route("/api/secrets/user/{key}", put(put_user).delete(delete_user))
        .route(
            "/api/secrets/templates/{template}/{key}",
            put(put_template).delete(delete_template),
        )
        .route(
            "/api/secrets/deployments/{deployment}/{key}",
            put(put_deployment).delete(delete_deployment),
        )
        .route(
            "/api/secrets/deployments/{deployment}/services/{service}/{key}",
            put(put_service).delete(delete_service),
        )
}

/// Body of a write.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value (write-only: it is never shown again).
    pub value: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> Self {
        ApiError::Internal(anyhow::anyhow!("secret store: {e}"))
    }
}

/// The caller's secrets (never values).
#[utoipa::path(get, path = "/api/secrets", tag = "secrets", responses((status = 200, body = Vec<SecretInfo>)))]
pub async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<SecretInfo>>> {
    p.require(AuthScope::SecretsRead)?;
    Ok(Json(state.secrets.list(&p.tenant.owner.id).await?))
}

/// Checks every path parameter (each named in the error) before the store sees it.
fn checked(scope: Scope, key: &str) -> ApiResult<Scope> {
    use super::{NameKind, path_name};
    match &scope {
        Scope::User => {}
        Scope::Template(t) => path_name("template", t, NameKind::Label)?,
        Scope::Deployment(d) => path_name("deployment", d, NameKind::Label)?,
        Scope::Service { deployment, service } => {
            path_name("deployment", deployment, NameKind::Label)?;
            path_name("service", service, NameKind::Label)?;
        }
    }
    path_name("key", key, NameKind::EnvName)?;
    // The store's own rule, kept as a second line.
    scope.validate().map_err(ApiError::BadRequest)?;
    validate_key(key).map_err(ApiError::BadRequest)?;
    Ok(scope)
}

async fn write(
    state: &AppState,
    p: &Principal,
    scope: Scope,
    key: String,
    body: PutSecret,
) -> ApiResult<(StatusCode, Json<SecretInfo>)> {
    p.require(AuthScope::SecretsWrite)?;
    let scope = checked(scope, &key)?;
    let max_value = state.config.secrets_max_value_bytes as usize;
    if body.value.len() > max_value {
        return Err(ApiError::PayloadTooLarge(format!(
            "the value is {} bytes; a secret value may be at most {max_value} bytes (SECRETS_MAX_VALUE_BYTES)",
            body.value.len()
        )));
    }
    if body.description.chars().count() > 256 {
        return Err(ApiError::BadRequest("description may be at most 256 characters".into()));
    }
    scope_exists(state, p, &scope).await?;
    let max = state.config.secrets_max_per_user as usize;
    if state.secrets.count(&p.tenant.owner.id).await? >= max
        && !state
            .secrets
            .values(&p.tenant.owner.id, &scope)
            .await?
            .contains_key(&key)
    {
        return Err(ApiError::Forbidden(format!(
            "you have {max} secrets, the most SECRETS_MAX_PER_USER allows; delete one before adding {key}"
        )));
    }
    let created = state
        .secrets
        .put(&p.tenant.owner.id, &scope, &key, &body.value, &body.description)
        .await?;
    tracing::info!(user = %p.user.id, owner = %p.tenant.owner.id, scope = %scope.path(), key, created, "secret written");
    redeliver(state, p, &scope).await?;
    let info = SecretInfo::new(&scope, &key, &body.description, crate::db::now());
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(info)))
}

/// A write needs its scope to exist for the caller: a template they can use, one of their
/// deployments, or a service of one (404 otherwise). Deletes do not: they only remove what the
/// caller stored, e.g. the secrets of a template that has since gone.
async fn scope_exists(state: &AppState, p: &Principal, scope: &Scope) -> ApiResult<()> {
    let ns = p.sandbox(state).namespace;
    let deployment = |name: String| async move {
        state.platform.deployment(&ns, &name).await?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "you have no deployment named {name:?}: create it first (POST /api/deployments), then store its secrets"
            ))
        })
    };
    match scope {
        Scope::User => Ok(()),
        Scope::Template(t) => {
            let ns = p.sandbox(state).namespace;
            if state.platform.templates(&ns).iter().any(|x| x.name_any() == *t) {
                Ok(())
            } else {
                Err(ApiError::NotFound(format!(
                    "no template named {t:?} that you can use; GET /api/templates lists them"
                )))
            }
        }
        Scope::Deployment(d) => deployment(d.clone()).await.map(|_| ()),
        Scope::Service { deployment: d, service } => {
            let ud = deployment(d.clone()).await?;
            if services_of(state, &ud).iter().any(|s| s == service) {
                Ok(())
            } else {
                Err(ApiError::NotFound(format!(
                    "deployment {d:?} has no service named {service:?}"
                )))
            }
        }
    }
}

/// The service names of a deployment: inline, or its template's.
fn services_of(state: &AppState, ud: &crds::UserDeployment) -> Vec<String> {
    let ns = ud.namespace().unwrap_or_default();
    let template = ud.spec.template_ref.as_ref().map(|r| r.name.clone());
    match (&ud.spec.services, &template) {
        (Some(inline), _) => inline.iter().map(|s| s.name.clone()).collect(),
        (None, Some(t)) => state
            .platform
            .templates(&ns)
            .iter()
            .find(|x| x.name_any() == *t)
            .map(|x| x.spec.services.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default(),
        (None, None) => vec![],
    }
}

async fn remove(state: &AppState, p: &Principal, scope: Scope, key: String) -> ApiResult<StatusCode> {
    p.require(AuthScope::SecretsWrite)?;
    let scope = checked(scope, &key)?;
    if !state.secrets.delete(&p.tenant.owner.id, &scope, &key).await? {
        return Err(ApiError::NotFound(format!(
            "secret {key:?} not found in {}",
            scope.path()
        )));
    }
    tracing::info!(user = %p.user.id, owner = %p.tenant.owner.id, scope = %scope.path(), key, "secret deleted");
    redeliver(state, p, &scope).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-delivers the values of every deployment of the caller that `scope` affects.
async fn redeliver(state: &AppState, p: &Principal, scope: &Scope) -> ApiResult<()> {
    let ns = p.sandbox(state).namespace;
    for ud in state.platform.deployments(&ns).await? {
        let template = ud.spec.template_ref.as_ref().map(|r| r.name.clone());
        let affected = match scope {
            Scope::User => true,
            Scope::Template(t) => template.as_deref() == Some(t.as_str()),
            Scope::Deployment(d) | Scope::Service { deployment: d, .. } => *d == ud.name_any(),
        };
        if affected {
            deliver(state, &p.tenant.owner.id, &ud, true).await?;
        }
    }
    Ok(())
}

/// Delivers a deployment's merged values to its pods.
pub async fn deliver(state: &AppState, owner: &str, ud: &crds::UserDeployment, roll: bool) -> ApiResult<bool> {
    let template = ud.spec.template_ref.as_ref().map(|r| r.name.clone());
    let services = services_of(state, ud);
    let (values, per_service) = crate::secrets::merged(
        state.secrets.as_ref(),
        owner,
        template.as_deref(),
        &ud.name_any(),
        &services,
    )
    .await?;
    state
        .platform
        .deliver_secrets(ud, &values, &per_service, &services, roll)
        .await
}

/// Writes a user-scoped secret.
#[utoipa::path(put, path = "/api/secrets/user/{key}", tag = "secrets", request_body = PutSecret, params(("key" = String, Path)),
    responses((status = 201, body = SecretInfo), (status = 200, body = SecretInfo), (status = 400, body = ErrorBody)))]
pub async fn put_user(
    State(state): State<AppState>,
    p: Principal,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<PutSecret>,
) -> ApiResult<impl IntoResponse> {
    let (scope, key) = (Scope::User, key);
    write(&state, &p, scope, key, body).await
}

/// Deletes a user-scoped secret.
#[utoipa::path(delete, path = "/api/secrets/user/{key}", tag = "secrets", params(("key" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    p: Principal,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    let (scope, key) = (Scope::User, key);
    remove(&state, &p, scope, key).await
}

/// Writes a template-scoped secret.
#[utoipa::path(put, path = "/api/secrets/templates/{template}/{key}", tag = "secrets", request_body = PutSecret, params(("template" = String, Path), ("key" = String, Path)),
    responses((status = 201, body = SecretInfo), (status = 200, body = SecretInfo), (status = 400, body = ErrorBody)))]
pub async fn put_template(
    State(state): State<AppState>,
    p: Principal,
    Path((template, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutSecret>,
) -> ApiResult<impl IntoResponse> {
    let (scope, key) = (Scope::Template(template), key);
    write(&state, &p, scope, key, body).await
}

/// Deletes a template-scoped secret.
#[utoipa::path(delete, path = "/api/secrets/templates/{template}/{key}", tag = "secrets", params(("template" = String, Path), ("key" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_template(
    State(state): State<AppState>,
    p: Principal,
    Path((template, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (scope, key) = (Scope::Template(template), key);
    remove(&state, &p, scope, key).await
}

/// Writes a deployment-scoped secret.
#[utoipa::path(put, path = "/api/secrets/deployments/{deployment}/{key}", tag = "secrets", request_body = PutSecret, params(("deployment" = String, Path), ("key" = String, Path)),
    responses((status = 201, body = SecretInfo), (status = 200, body = SecretInfo), (status = 400, body = ErrorBody)))]
pub async fn put_deployment(
    State(state): State<AppState>,
    p: Principal,
    Path((deployment, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutSecret>,
) -> ApiResult<impl IntoResponse> {
    let (scope, key) = (Scope::Deployment(deployment), key);
    write(&state, &p, scope, key, body).await
}

/// Deletes a deployment-scoped secret.
#[utoipa::path(delete, path = "/api/secrets/deployments/{deployment}/{key}", tag = "secrets", params(("deployment" = String, Path), ("key" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_deployment(
    State(state): State<AppState>,
    p: Principal,
    Path((deployment, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (scope, key) = (Scope::Deployment(deployment), key);
    remove(&state, &p, scope, key).await
}

/// Writes a service-scoped secret.
#[utoipa::path(put, path = "/api/secrets/deployments/{deployment}/services/{service}/{key}", tag = "secrets", request_body = PutSecret, params(("deployment" = String, Path), ("service" = String, Path), ("key" = String, Path)),
    responses((status = 201, body = SecretInfo), (status = 200, body = SecretInfo), (status = 400, body = ErrorBody)))]
pub async fn put_service(
    State(state): State<AppState>,
    p: Principal,
    Path((deployment, service, key)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<PutSecret>,
) -> ApiResult<impl IntoResponse> {
    let (scope, key) = (Scope::Service { deployment, service }, key);
    write(&state, &p, scope, key, body).await
}

/// Deletes a service-scoped secret.
#[utoipa::path(delete, path = "/api/secrets/deployments/{deployment}/services/{service}/{key}", tag = "secrets", params(("deployment" = String, Path), ("service" = String, Path), ("key" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_service(
    State(state): State<AppState>,
    p: Principal,
    Path((deployment, service, key)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (scope, key) = (Scope::Service { deployment, service }, key);
    remove(&state, &p, scope, key).await
}
