//! `/api/deployments`: list, create, get, update configuration, restart, deploy a new image, delete.
//! Every route works in the caller's sandbox namespace only; names come from the path and the
//! namespace from the signed-in user, never from a body. Another user's deployment is simply not
//! there: 404.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use crds::{UserDeployment, UserDeploymentSpec, Visibility};
use kube::ResourceExt;
use serde::Deserialize;

use super::{ApiJson, NameKind};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::views::{DeploymentDetail, DeploymentView};

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/deployments", get(list).post(create))
        .route("/api/deployments/{name}", get(detail).patch(update).delete(remove))
        .route("/api/deployments/{name}/restart", post(restart))
        .route("/api/deployments/{name}/image", post(set_image))
        .route("/api/deployments/{name}/manifest", get(manifest))
}

/// Body of a create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateDeployment {
    /// Template name (from `GET /api/templates`).
    pub template: String,
    /// The template's namespace, when the catalog lists several of that name (a team's or an
    /// organization's shared template beside the platform's); absent: the first listed.
    pub template_namespace: Option<String>,
    /// Deployment name (DNS label, at most 32 characters); generated from the template when absent.
    pub name: Option<String>,
    /// Parameter values by name (not secret ones: list those in `secretRefs`).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Names of stored secrets the app reads.
    #[serde(default)]
    pub secret_refs: Vec<String>,
    /// `public` (default) or `internal`.
    #[schema(value_type = Option<String>)]
    pub visibility: Option<Visibility>,
    /// Pods per service (0-20).
    pub replicas: Option<i32>,
}

/// Body of a configuration update; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateDeployment {
    /// New parameter values (replaces all of them).
    pub parameters: Option<BTreeMap<String, String>>,
    /// New secret names.
    pub secret_refs: Option<Vec<String>>,
    /// `public` or `internal`.
    #[schema(value_type = Option<String>)]
    pub visibility: Option<Visibility>,
    /// Pods per service (0-20).
    pub replicas: Option<i32>,
    /// Scale to zero while true.
    pub suspend: Option<bool>,
}

/// Body of an image change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetImage {
    /// Service name in the template.
    pub service: String,
    /// New image, e.g. `ghcr.io/acme/web:1.4`.
    pub image: String,
}

/// Lists the caller's deployments.
#[utoipa::path(get, path = "/api/deployments", tag = "deployments",
    responses((status = 200, body = Vec<DeploymentView>), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<axum::response::Response> {
    p.require(Scope::DeploymentsRead)?;
    let ns = p.sandbox(&state).namespace;
    if let Some(json) = state.platform.list_json(&ns) {
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], json).into_response());
    }
    let items = state.platform.deployments(&ns).await?;
    Ok(Json(items.iter().map(|d| DeploymentView::of(d)).collect::<Vec<_>>()).into_response())
}

/// Creates a deployment from a template.
#[utoipa::path(post, path = "/api/deployments", tag = "deployments", request_body = CreateDeployment,
    responses((status = 201, body = DeploymentView), (status = 400, body = ErrorBody),
        (status = 403, description = "plan limit or scope", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<CreateDeployment>,
) -> ApiResult<impl IntoResponse> {
    p.require(Scope::DeploymentsWrite)?;
    let sandbox = p.sandbox(&state);
    let ns = sandbox.namespace.clone();
    let template = state
        .platform
        .templates(&ns)
        .into_iter()
        .find(|t| {
            t.name_any() == body.template
                && body
                    .template_namespace
                    .as_deref()
                    .is_none_or(|n| t.namespace().as_deref() == Some(n))
        })
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no template named {:?}; GET /api/templates lists them",
                body.template
            ))
        })?;
    let name = match body.name {
        Some(n) if crds::is_dns_label(&n, crds::MAX_DEPLOYMENT_NAME_LEN) => n,
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "name {n:?} must be a DNS label (lower-case letters, digits, dashes) of at most {} characters",
                crds::MAX_DEPLOYMENT_NAME_LEN
            )));
        }
        None => generated_name(&body.template),
    };
    if let Some(limit) = sandbox.deployment_limit {
        let count = state.platform.count_deployments(&ns).await?;
        if count >= limit as usize {
            let plan = serde_json::to_value(sandbox.plan)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            let what_next = if crate::billing::get(&state).is_some() {
                "delete one or upgrade the plan on the Billing page (/billing)"
            } else {
                "delete one or ask an administrator to raise your plan"
            };
            return Err(ApiError::Forbidden(format!(
                "the {} plan allows {limit} deployment{}; {what_next}",
                plan.unwrap_or_default(),
                if limit == 1 { "" } else { "s" }
            )));
        }
    }
    let ud: UserDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "templateRef": { "name": template.name_any(), "namespace": template.namespace() },
            "parameters": body.parameters,
            "secretRefs": body.secret_refs,
            "visibility": body.visibility.unwrap_or_default(),
            "replicas": body.replicas,
        },
    }))
    .map_err(|e| ApiError::BadRequest(format!("invalid deployment: {e}")))?;
    check(&state, &p, &ud, Some(&template.spec))?;
    let created = state.platform.create(ud).await?;
    super::secrets::deliver(&state, &p.tenant.owner.id, &created, false).await?;
    tracing::info!(user = %p.user.id, deployment = %name, template = %body.template, "deployment created");
    Ok((StatusCode::CREATED, Json(DeploymentView::of(&created))))
}

/// A deployment with its events (and rendered manifests without Kubernetes).
#[utoipa::path(get, path = "/api/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    responses((status = 200, body = DeploymentDetail), (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<DeploymentDetail>> {
    p.require(Scope::DeploymentsRead)?;
    let ud = find(&state, &p, &name).await?;
    let events = state
        .platform
        .events(&ud.namespace().unwrap_or_default(), &name)
        .await?;
    Ok(Json(DeploymentDetail {
        deployment: DeploymentView::of(&ud),
        events,
        manifests: state.platform.manifests(&ud),
    }))
}

/// The UserDeployment as YAML, ready for `kubectl apply` or a Git repository (no status or
/// server-set metadata).
#[utoipa::path(get, path = "/api/deployments/{name}/manifest", tag = "deployments", params(("name" = String, Path)),
    responses((status = 200, description = "YAML manifest", content_type = "application/yaml", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn manifest(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    p.require(Scope::DeploymentsRead)?;
    let ud = find(&state, &p, &name).await?;
    let clean = serde_json::json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": ud.name_any(), "namespace": ud.namespace() },
        "spec": ud.spec,
    });
    let yaml = serde_yaml::to_string(&clean).map_err(anyhow::Error::from)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        yaml,
    ))
}

/// Changes a deployment's configuration.
#[utoipa::path(patch, path = "/api/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    request_body = UpdateDeployment,
    responses((status = 200, body = DeploymentView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateDeployment>,
) -> ApiResult<Json<DeploymentView>> {
    p.require(Scope::DeploymentsWrite)?;
    let current = find(&state, &p, &name).await?;
    let mut spec = current.spec.clone();
    if let Some(v) = body.parameters {
        spec.parameters = v.into();
    }
    if let Some(v) = body.secret_refs {
        spec.secret_refs = v;
    }
    if let Some(v) = body.visibility {
        spec.visibility = v;
    }
    if body.replicas.is_some() {
        spec.replicas = body.replicas;
    }
    if let Some(v) = body.suspend {
        spec.suspend = v;
    }
    let saved = save(&state, &p, &current, spec).await?;
    Ok(Json(DeploymentView::of(&saved)))
}

/// Restarts every pod of a deployment.
#[utoipa::path(post, path = "/api/deployments/{name}/restart", tag = "deployments", params(("name" = String, Path)),
    responses((status = 202, body = DeploymentView), (status = 404, body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    p.require(Scope::DeploymentsWrite)?;
    let current = find(&state, &p, &name).await?;
    let mut spec = current.spec.clone();
    spec.restarted_at = Some(k8s_openapi::jiff::Timestamp::now().to_string());
    let saved = save(&state, &p, &current, spec).await?;
    Ok((StatusCode::ACCEPTED, Json(DeploymentView::of(&saved))))
}

/// Deploys a new image for one service.
#[utoipa::path(post, path = "/api/deployments/{name}/image", tag = "deployments", params(("name" = String, Path)),
    request_body = SetImage,
    responses((status = 202, body = DeploymentView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_image(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetImage>,
) -> ApiResult<impl IntoResponse> {
    p.require(Scope::DeploymentsWrite)?;
    let current = find(&state, &p, &name).await?;
    if !crds::is_dns_label(&body.service, 63) {
        return Err(ApiError::BadRequest(format!(
            "service {:?} must be the name of one of the deployment's services (a DNS label)",
            body.service.chars().take(80).collect::<String>()
        )));
    }
    if body.image.is_empty() || body.image.len() > 512 || body.image.chars().any(char::is_whitespace) {
        return Err(ApiError::BadRequest(
            "image must be a container image reference without spaces".into(),
        ));
    }
    let mut spec = current.spec.clone();
    spec.image_overrides.insert(body.service, body.image);
    let saved = save(&state, &p, &current, spec).await?;
    Ok((StatusCode::ACCEPTED, Json(DeploymentView::of(&saved))))
}

/// Deletes a deployment and, through the controller, everything it runs.
#[utoipa::path(delete, path = "/api/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn remove(State(state): State<AppState>, p: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    p.require(Scope::DeploymentsWrite)?;
    super::path_name("name", &name, NameKind::Label)?;
    let ns = p.sandbox(&state).namespace;
    if state.platform.delete(&ns, &name).await? {
        // Its own secrets go with it, in every backend; the delivered Secrets are garbage-collected
        // with the UserDeployment they belong to.
        let removed = state.secrets.delete_deployment(&p.tenant.owner.id, &name).await?;
        tracing::info!(user = %p.user.id, deployment = %name, secrets = removed, "deployment secrets removed");
        tracing::info!(user = %p.user.id, deployment = %name, "deployment deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("deployment {name:?} not found"))
}

/// The caller's deployment `name`: only in the caller's own sandbox namespace, so another user's
/// deployment is 404 like a missing one.
pub(crate) async fn find(state: &AppState, p: &Principal, name: &str) -> ApiResult<std::sync::Arc<UserDeployment>> {
    // Before any lookup: the name goes into a Kubernetes request URL when it is not cached.
    super::path_name("name", name, NameKind::Label)?;
    let ns = p.sandbox(state).namespace;
    state
        .platform
        .deployment(&ns, name)
        .await?
        .ok_or_else(|| not_found(name))
}

/// The Template `r` means for an app in `ns`, among those the catalog of `ns` lists (the
/// controller's rule); None when there is none or it may not be used from there.
pub(crate) fn resolve_template(
    state: &AppState,
    r: &crds::deployment::TemplateRef,
    ns: &str,
) -> Option<std::sync::Arc<crds::Template>> {
    let visible = state.platform.templates(ns);
    policy::templates::resolve(
        r,
        ns,
        &state.config.settings.platform_namespace,
        &state.platform.sandboxes(),
        |tns, name| {
            visible
                .iter()
                .find(|t| t.namespace().as_deref() == Some(tns) && t.name_any() == name)
                .cloned()
        },
    )
}

/// Validates and stores a new spec.
async fn save(
    state: &AppState,
    p: &Principal,
    current: &UserDeployment,
    spec: UserDeploymentSpec,
) -> ApiResult<std::sync::Arc<UserDeployment>> {
    let mut next = current.clone();
    next.spec = spec.clone();
    let ns = current.namespace().unwrap_or_default();
    let template = match &spec.template_ref {
        Some(r) => {
            let t = resolve_template(state, r, &ns);
            Some(t.ok_or_else(|| {
                ApiError::BadRequest(format!("the deployment's template {:?} no longer exists", r.name))
            })?)
        }
        None => None,
    };
    check(state, p, &next, template.as_ref().map(|t| &t.spec))?;
    state.platform.replace_spec(current, spec).await
}

/// The controller's own validation: what it would refuse is refused here, with its message.
fn check(state: &AppState, p: &Principal, ud: &UserDeployment, template: Option<&crds::TemplateSpec>) -> ApiResult<()> {
    if let Some(r) = ud.spec.replicas.filter(|r| !(0..=20).contains(r)) {
        return Err(ApiError::BadRequest(format!(
            "replicas must be between 0 and 20, not {r}"
        )));
    }
    policy::validate::validate_deployment(ud, template, &p.tenant.owner.id, &state.config.settings)
        .map(|_| ())
        .map_err(|invalid| ApiError::BadRequest(format!("{} ({})", invalid.message, invalid.reason)))
}

/// `<template>-<4 random characters>`, within the name limit.
fn generated_name(template: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..4)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let base: String = template.chars().take(crds::MAX_DEPLOYMENT_NAME_LEN - 5).collect();
    format!("{}-{suffix}", base.trim_end_matches('-'))
}
