//! `/api/templates`: the catalog the caller can deploy from — the system templates of the
//! platform namespace and the caller's own — and template authoring: create, replace, validate and
//! delete Template custom resources in the caller's current sandbox namespace (their own, or the
//! selected team's).
//!
//! A submitted template is checked the way the platform checks it everywhere else, and every
//! problem is answered with the field it concerns:
//! 1. its shape against the Template CRD's own schema (the one `kubectl apply` meets): unknown
//!    fields (a `securityContext`, a `hostPath`), wrong types, values outside the enums and
//!    bounds;
//! 2. the controller's rules, `policy::validate::validate_template`, with the server's settings
//!    (the registry allow-list included): what the controller would mark invalid is refused here;
//! 3. with Kubernetes, the API server itself (schema and CEL rules): `validate` asks it with a
//!    server-side dry run; a create or replace is the write itself, refused with the same causes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crds::{Template, TemplateVisibility, UserDeployment};
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::Value;

use super::NameKind;
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::views::{FieldProblem, TemplateValidation, TemplateView};

/// The apiVersion of a Template.
const API_VERSION: &str = "k8s-scheduler.io/v1alpha1";
/// Most apps a refusal names before it only counts the rest.
const NAMED_APPS: usize = 20;

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/templates", get(list).post(create))
        .route("/api/templates/validate", post(validate))
        .route("/api/templates/{name}", get(one).put(replace).delete(remove))
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

/// A submitted template: the Template object as JSON (`apiVersion` and `kind` optional), or the
/// same as YAML with `Content-Type: application/yaml` (a `kubectl`-style file), or, from a
/// browser (which may only send JSON), `{"yaml": "<that file>"}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBody {
    /// `k8s-scheduler.io/v1alpha1` when given.
    pub api_version: Option<String>,
    /// `Template` when given.
    pub kind: Option<String>,
    /// Name (a DNS label of at most 63 characters), optional labels and annotations; a namespace,
    /// when given, must be the caller's current sandbox namespace.
    pub metadata: Option<TemplateMetadata>,
    /// The Template's spec (`kubectl explain template.spec`).
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    /// Instead of the fields above: a `kubectl`-style YAML manifest of one Template.
    pub yaml: Option<String>,
}

/// The metadata a submitted template may carry.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TemplateMetadata {
    /// Template name.
    pub name: Option<String>,
    /// The caller's sandbox namespace (or absent).
    pub namespace: Option<String>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Creates a template in the caller's current sandbox.
#[utoipa::path(post, path = "/api/templates", tag = "templates",
    request_body(content((TemplateBody = "application/json"), (String = "application/yaml")),
        description = "The Template as JSON, or a kubectl-style YAML manifest"),
    responses((status = 201, body = TemplateView),
        (status = 400, description = "a body that is neither JSON nor YAML", body = ErrorBody),
        (status = 403, description = "scope, role (developer or admin in a team), or a visibility the caller may not give", body = ErrorBody),
        (status = 409, description = "the name is taken, or the server runs without Kubernetes", body = ErrorBody),
        (status = 415, description = "a Content-Type other than JSON or YAML", body = ErrorBody),
        (status = 422, description = "invalid: every problem with its field", body = TemplateValidation)))]
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    p.require(Scope::TemplatesWrite)?;
    let ns = sandbox_namespace(&state, &p)?;
    let value = parse_body(&headers, body)?;
    if let Err(why) = may_give(&state, &p, raw_visibility(&value)).await? {
        return Err(ApiError::Forbidden(why));
    }
    let (template, problems) = read(&value, &ns, None, &state.config.settings);
    let Some(template) = template.filter(|_| problems.is_empty()) else {
        return Ok(invalid(problems));
    };
    // No dry run first: the create itself meets the same schema, CEL rules and admission, and
    // its refusal lists the same causes.
    match state.platform.create_template(template).await? {
        Ok(stored) => {
            tracing::info!(user = %p.user.id, namespace = %ns, template = %stored.name_any(), "template created");
            let view = TemplateView::of(&stored, &state.config.settings.platform_namespace);
            Ok((StatusCode::CREATED, Json(view)).into_response())
        }
        Err(problems) => Ok(invalid(problems)),
    }
}

/// Replaces the spec (and, when given, the labels and annotations) of a template of the caller's
/// current sandbox; the apps that use it roll to the new spec (the controller re-renders them).
#[utoipa::path(put, path = "/api/templates/{name}", tag = "templates", params(("name" = String, Path)),
    request_body(content((TemplateBody = "application/json"), (String = "application/yaml")),
        description = "The Template as JSON, or a kubectl-style YAML manifest; metadata.name, when given, must be the path's"),
    responses((status = 200, body = TemplateView),
        (status = 400, description = "a body that is neither JSON nor YAML", body = ErrorBody),
        (status = 403, description = "scope, role (developer or admin in a team), or a visibility the caller may not give", body = ErrorBody),
        (status = 404, description = "no template of that name in the caller's sandbox", body = ErrorBody),
        (status = 409, description = "changed meanwhile; a narrower visibility would cut off apps of other sandboxes that use it; or the server runs without Kubernetes", body = ErrorBody),
        (status = 415, description = "a Content-Type other than JSON or YAML", body = ErrorBody),
        (status = 422, description = "invalid: every problem with its field", body = TemplateValidation)))]
pub async fn replace(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    p.require(Scope::TemplatesWrite)?;
    super::path_name("name", &name, NameKind::Subdomain)?;
    let ns = sandbox_namespace(&state, &p)?;
    let current = state
        .platform
        .template(&ns, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let value = parse_body(&headers, body)?;
    if let Err(why) = may_give(&state, &p, raw_visibility(&value)).await? {
        return Err(ApiError::Forbidden(why));
    }
    let (template, problems) = read(&value, &ns, Some(&name), &state.config.settings);
    let Some(template) = template.filter(|_| problems.is_empty()) else {
        return Ok(invalid(problems));
    };
    // Apps of other sandboxes that use it (a team's or an organization's template) must keep
    // seeing it: a narrower visibility would stop them at their next reconcile.
    if template.spec.visibility != current.spec.visibility {
        let platform = &state.config.settings.platform_namespace;
        let sandboxes = state.platform.sandboxes();
        let cut_off: Vec<Arc<UserDeployment>> = users(&state, &ns, &name)
            .into_iter()
            .filter(|ud| {
                let from = ud.namespace().unwrap_or_default();
                !policy::templates::is_visible(&ns, template.spec.visibility, &from, platform, &sandboxes)
            })
            .collect();
        if !cut_off.is_empty() {
            return Err(ApiError::Conflict(format!(
                "visibility {} would hide template {name} from {}; delete or move those apps first, or keep \
                 visibility {}",
                wire(&template.spec.visibility),
                describe_apps(&ns, &cut_off),
                wire(&current.spec.visibility)
            )));
        }
    }
    let mut next = (*current).clone();
    next.spec = template.spec;
    if template.metadata.labels.is_some() {
        next.metadata.labels = template.metadata.labels;
    }
    if template.metadata.annotations.is_some() {
        next.metadata.annotations = template.metadata.annotations;
    }
    // The controller writes status; the version read above makes a change meanwhile a 409.
    next.status = None;
    next.metadata.managed_fields = None;
    match state.platform.replace_template(next).await? {
        Ok(stored) => {
            tracing::info!(user = %p.user.id, namespace = %ns, template = %name, "template replaced");
            Ok(Json(TemplateView::of(&stored, &state.config.settings.platform_namespace)).into_response())
        }
        Err(problems) => Ok(invalid(problems)),
    }
}

/// Checks a template without saving it: the controller's rules and, with Kubernetes, a dry run of
/// its create (or replace, when the caller's sandbox has one of that name) on the API server.
#[utoipa::path(post, path = "/api/templates/validate", tag = "templates",
    request_body(content((TemplateBody = "application/json"), (String = "application/yaml")),
        description = "The Template as JSON, or a kubectl-style YAML manifest"),
    responses((status = 200, description = "valid or not, with every problem and its field", body = TemplateValidation),
        (status = 400, description = "a body that is neither JSON nor YAML", body = ErrorBody),
        (status = 415, description = "a Content-Type other than JSON or YAML", body = ErrorBody)))]
pub async fn validate(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TemplateValidation>> {
    p.require(Scope::TemplatesRead)?;
    let ns = sandbox_namespace(&state, &p)?;
    let value = parse_body(&headers, body)?;
    let (template, mut problems) = read(&value, &ns, None, &state.config.settings);
    // What a save would refuse with 403 is a problem of the draft too.
    if let Err(why) = may_give(&state, &p, raw_visibility(&value)).await? {
        problems.push(FieldProblem::new("spec.visibility", why));
    }
    if let Some(mut t) = template.filter(|_| problems.is_empty()) {
        let existing = state.platform.template(&ns, &t.name_any()).await?;
        if let Some(current) = &existing {
            t.metadata.resource_version = current.resource_version();
        }
        problems = state.platform.dry_run_template(&t, existing.is_some()).await?;
    }
    Ok(Json(TemplateValidation {
        error: None,
        valid: problems.is_empty(),
        problems,
    }))
}

/// Deletes a template of the caller's current sandbox, unless apps use it.
#[utoipa::path(delete, path = "/api/templates/{name}", tag = "templates", params(("name" = String, Path)),
    responses((status = 204, description = "deleted"),
        (status = 403, description = "scope or role (developer or admin in a team)", body = ErrorBody),
        (status = 404, description = "no template of that name in the caller's sandbox", body = ErrorBody),
        (status = 409, description = "apps use it (named when they are in the caller's sandbox, counted otherwise), or the server runs without Kubernetes", body = ErrorBody)))]
pub async fn remove(State(state): State<AppState>, p: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    p.require(Scope::TemplatesWrite)?;
    super::path_name("name", &name, NameKind::Subdomain)?;
    let ns = sandbox_namespace(&state, &p)?;
    if state.platform.template(&ns, &name).await?.is_none() {
        return Err(not_found(&name));
    }
    let using = users(&state, &ns, &name);
    if !using.is_empty() {
        return Err(ApiError::Conflict(format!(
            "template {name} is in use by {}; delete those apps first",
            describe_apps(&ns, &using)
        )));
    }
    if !state.platform.delete_template(&ns, &name).await? {
        return Err(not_found(&name));
    }
    tracing::info!(user = %p.user.id, namespace = %ns, template = %name, "template deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("template {name:?} not found in your sandbox"))
}

/// The caller's current sandbox namespace, where their templates live; never the platform's (its
/// templates are the administrators', through kubectl or GitOps).
fn sandbox_namespace(state: &AppState, p: &Principal) -> ApiResult<String> {
    let ns = p.sandbox(state).namespace;
    match state.config.forbidden_sandbox_namespace(&ns) {
        Some(why) => Err(ApiError::Forbidden(why)),
        None => Ok(ns),
    }
}

/// 422 with every problem.
fn invalid(problems: Vec<FieldProblem>) -> Response {
    let summary: Vec<String> = problems
        .iter()
        .map(|p| {
            if p.field.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.field, p.message)
            }
        })
        .collect();
    let body = TemplateValidation {
        error: Some(format!("the template is not valid: {}", summary.join("; "))),
        valid: false,
        problems,
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The body as a JSON value: JSON, or YAML (`application/yaml`, `application/x-yaml`,
/// `text/yaml`), or JSON `{"yaml": "..."}` (browsers may only send JSON: the CSRF rule).
fn parse_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the body is larger than the server accepts ({})",
                r.body_text()
            ))
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    match mime.as_str() {
        "application/json" => {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
            match v.as_object() {
                Some(o) if o.len() == 1 && o.contains_key("yaml") => match &o["yaml"] {
                    Value::String(y) => from_yaml(y),
                    _ => Err(ApiError::BadRequest(
                        "yaml must be a string: the text of a YAML manifest".into(),
                    )),
                },
                _ => Ok(v),
            }
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => from_yaml(text),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "a template is sent as Content-Type: application/json or application/yaml, not {content_type:?}"
        ))),
    }
}

fn from_yaml(text: &str) -> ApiResult<Value> {
    serde_yaml::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a YAML manifest of one Template: {e}")))
}

/// `spec.visibility` as submitted (the default, private, when absent or not a visibility: the
/// schema check names a bad value).
fn raw_visibility(value: &Value) -> TemplateVisibility {
    serde_json::from_value(value["spec"]["visibility"].clone()).unwrap_or_default()
}

/// Whether the caller may give a template of their current sandbox `visibility`: private always;
/// team and org only in a team's sandbox, org only for the organization's owners and admins (it
/// reaches every sandbox of the organization); public never (it is the platform catalog's,
/// meaningful only in the platform namespace). `Ok(Err(why))` when not.
async fn may_give(state: &AppState, p: &Principal, visibility: TemplateVisibility) -> ApiResult<Result<(), String>> {
    let team = p.tenant.team.as_ref();
    Ok(match (visibility, team) {
        (TemplateVisibility::Private, _) => Ok(()),
        (TemplateVisibility::Public, _) => {
            Err("visibility public is for the platform's catalog, which administrators \
             manage in the platform namespace; a sandbox's template is private, team or org"
                .into())
        }
        (TemplateVisibility::Team | TemplateVisibility::Org, None) => Err(format!(
            "visibility {} shares a template with a team or organization, and this is your personal sandbox; \
             switch to the team's sandbox (PUT /api/me/team) or use private",
            wire(&visibility)
        )),
        (TemplateVisibility::Team, Some(_)) => Ok(()),
        (TemplateVisibility::Org, Some(team)) => {
            match crate::teams::store::org_for(&state.db, &team.org_id, &p.user.id).await? {
                Some((_, role)) if role.manages() => Ok(()),
                other => Err(format!(
                    "visibility org shares a template with every sandbox of organization {}: only its owners and \
                     admins may give it (you are {}); use team, or ask one of them",
                    team.org_name,
                    other.map_or("not a member of the organization".to_string(), |(_, r)| format!(
                        "a {}",
                        r.as_str()
                    ))
                )),
            }
        }
    })
}

/// The deployments, in any sandbox, whose template is template `name` of `namespace` by the one
/// rule of the server and the controller (`policy::templates::resolve`).
fn users(state: &AppState, namespace: &str, name: &str) -> Vec<Arc<UserDeployment>> {
    state
        .platform
        .deployments_naming_template(name)
        .into_iter()
        .filter(|ud| {
            let from = ud.namespace().unwrap_or_default();
            ud.spec
                .template_ref
                .as_ref()
                .and_then(|r| super::deployments::resolve_template(state, r, &from))
                .is_some_and(|t| t.namespace().as_deref() == Some(namespace) && t.name_any() == name)
        })
        .collect()
}

/// "2 apps of this sandbox (a, b) and 3 apps of 2 other sandboxes": the apps of the caller's
/// sandbox `namespace` by name (at most [`NAMED_APPS`]), those of other sandboxes (other
/// tenants') only counted.
fn describe_apps(namespace: &str, apps: &[Arc<UserDeployment>]) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut own: Vec<String> = apps
        .iter()
        .filter(|ud| ud.namespace().as_deref() == Some(namespace))
        .map(|ud| ud.name_any())
        .collect();
    own.sort();
    let others: Vec<&Arc<UserDeployment>> = apps
        .iter()
        .filter(|ud| ud.namespace().as_deref() != Some(namespace))
        .collect();
    let mut parts = vec![];
    if !own.is_empty() {
        let mut names = own.iter().take(NAMED_APPS).cloned().collect::<Vec<_>>().join(", ");
        if own.len() > NAMED_APPS {
            names.push_str(&format!(" and {} more", own.len() - NAMED_APPS));
        }
        parts.push(format!(
            "{} of this sandbox ({names})",
            plural(own.len(), "app", "apps")
        ));
    }
    if !others.is_empty() {
        let sandboxes: BTreeSet<String> = others.iter().filter_map(|ud| ud.namespace()).collect();
        parts.push(format!(
            "{} of {}",
            plural(others.len(), "app", "apps"),
            plural(sandboxes.len(), "other sandbox", "other sandboxes")
        ));
    }
    parts.join(" and ")
}

/// Reads a submitted template for the caller's sandbox `namespace`: the Template, and every
/// problem found with the field it concerns (the object is None when its spec could not be read).
/// `path_name`: the name in the URL of a replace, which `metadata.name` may repeat.
fn read(
    value: &Value,
    namespace: &str,
    path_name: Option<&str>,
    settings: &policy::Settings,
) -> (Option<Template>, Vec<FieldProblem>) {
    let mut problems = vec![];
    let Some(top) = value.as_object() else {
        problems.push(FieldProblem::new("", "a template is an object with metadata and spec"));
        return (None, problems);
    };
    for key in top.keys() {
        // status is the controller's: a manifest exported with `kubectl get -o yaml` may carry it.
        if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str()) {
            problems.push(unknown_field(key));
        }
    }
    if let Some(v) = top.get("apiVersion").filter(|v| v.as_str() != Some(API_VERSION)) {
        problems.push(FieldProblem::new(
            "apiVersion",
            format!("must be {API_VERSION}, not {}", shown(v)),
        ));
    }
    if let Some(v) = top.get("kind").filter(|v| v.as_str() != Some("Template")) {
        problems.push(FieldProblem::new(
            "kind",
            format!("must be Template, not {}: only templates are written here", shown(v)),
        ));
    }
    let empty = serde_json::Map::new();
    let metadata = match top.get("metadata") {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            problems.push(FieldProblem::new("metadata", "must be an object"));
            &empty
        }
    };
    let name = metadata_problems(metadata, namespace, path_name, &mut problems);
    let mut spec = match top.get("spec") {
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            problems.push(FieldProblem::new("spec", "must be an object"));
            return (None, problems);
        }
        None => {
            problems.push(FieldProblem::new(
                "spec",
                "required: the template's services and parameters",
            ));
            return (None, problems);
        }
    };
    let before = problems.len();
    check_schema(spec_schema(), &mut spec, "spec", &mut problems);
    let shape_ok = problems.len() == before;
    let spec: crds::TemplateSpec = match serde_json::from_value(spec) {
        Ok(s) => s,
        Err(e) => {
            if shape_ok {
                problems.push(FieldProblem::new("spec", e.to_string()));
            }
            return (None, problems);
        }
    };
    for reason in policy::validate::validate_template(&spec, settings) {
        // The controller's reasons start with the field under spec: "services[0].image: ...".
        problems.push(match reason.split_once(": ") {
            Some((field, message)) if !field.contains(' ') => FieldProblem::new(format!("spec.{field}"), message),
            _ => FieldProblem::new("spec", reason),
        });
    }
    let labels = string_map(metadata.get("labels"));
    let annotations = string_map(metadata.get("annotations"));
    let template = serde_json::from_value::<Template>(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "Template",
        "metadata": {
            "name": name.or(path_name),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }));
    match template {
        Ok(t) => (Some(t), problems),
        Err(e) => {
            problems.push(FieldProblem::new("", format!("not a Template: {e}")));
            (None, problems)
        }
    }
}

/// Checks `metadata`: a name (a DNS label, as deployment names are made from it; on a replace
/// the path's), the caller's namespace if any, labels and annotations as maps of strings, the
/// fields only the API server sets ignored, and nothing else. Returns the name.
fn metadata_problems<'a>(
    metadata: &'a serde_json::Map<String, Value>,
    namespace: &str,
    path_name: Option<&str>,
    problems: &mut Vec<FieldProblem>,
) -> Option<&'a str> {
    const SERVER_SET: &[&str] = &[
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
    ];
    for key in metadata.keys() {
        if !["name", "namespace", "labels", "annotations"].contains(&key.as_str())
            && !SERVER_SET.contains(&key.as_str())
        {
            problems.push(FieldProblem::new(
                format!("metadata.{key}"),
                "cannot be set here: a template takes a name, labels and annotations",
            ));
        }
    }
    let name = match metadata.get("name") {
        Some(Value::String(n)) => Some(n.as_str()),
        Some(v) => {
            problems.push(FieldProblem::new(
                "metadata.name",
                format!("must be a string, not {}", shown(v)),
            ));
            None
        }
        None => None,
    };
    match (name, path_name) {
        (None, None) => problems.push(FieldProblem::new(
            "metadata.name",
            "required: the template's name (lower-case letters, digits and dashes)",
        )),
        (Some(n), Some(p)) if n != p => problems.push(FieldProblem::new(
            "metadata.name",
            format!("{n:?} is not {p:?}, the name in the path: a template cannot be renamed (create a new one)"),
        )),
        (Some(n), None) if !crds::is_dns_label(n, 63) => problems.push(FieldProblem::new(
            "metadata.name",
            format!(
                "{} is not a DNS label: 1-63 lower-case letters, digits and dashes, starting and ending with a \
                 letter or digit (app names are made from it)",
                shown(&Value::String(n.to_string()))
            ),
        )),
        _ => {}
    }
    match metadata.get("namespace") {
        None => {}
        Some(Value::String(ns)) if ns == namespace => {}
        Some(v) => problems.push(FieldProblem::new(
            "metadata.namespace",
            format!(
                "{} is not your current sandbox namespace {namespace}: a template is saved in your sandbox (leave \
                 the namespace out)",
                shown(v)
            ),
        )),
    }
    for key in ["labels", "annotations"] {
        match metadata.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if !v.is_string() {
                        problems.push(FieldProblem::new(
                            format!("metadata.{key}.{k}"),
                            format!("must be a string, not {}", shown(v)),
                        ));
                    }
                }
            }
            Some(v) => problems.push(FieldProblem::new(
                format!("metadata.{key}"),
                format!("must be a map of strings, not {}", shown(v)),
            )),
        }
    }
    name
}

fn string_map(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let m = v?.as_object()?;
    Some(
        m.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    )
}

/// A submitted value in a message: JSON, cut to 80 characters.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn unknown_field(path: &str) -> FieldProblem {
    FieldProblem::new(
        path,
        "unknown field: a template can only set the fields of its schema (`kubectl explain template.spec`); \
         security context, service account, host namespaces and paths, volumes and service types are the \
         platform's",
    )
}

/// The Template CRD's schema of `spec`: the one the API server checks a `kubectl apply` against.
fn spec_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(<Template as kube::CustomResourceExt>::crd()).unwrap_or_default();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    })
}

/// Checks `value` (at `path`) against the structural schema `schema` and removes the fields it
/// does not declare, adding a problem for each: unknown fields, required ones missing, types,
/// enums, string lengths, item and property counts, integer bounds. The subset of OpenAPI that
/// a CRD's structural schema uses; its CEL rules are the API server's to run (the dry run). Every
/// problem is found, not only the first (serde stops at one); and without the unknown fields the
/// spec still reads, so the controller's rules report on the rest.
fn check_schema(schema: &Value, value: &mut Value, path: &str, problems: &mut Vec<FieldProblem>) {
    let problem = |problems: &mut Vec<FieldProblem>, message: String| problems.push(FieldProblem::new(path, message));
    if value.is_null() {
        if schema["nullable"] != true {
            problem(
                problems,
                format!(
                    "must be {}, not null",
                    kind_name(schema["type"].as_str().unwrap_or("a value"))
                ),
            );
        }
        return;
    }
    let count = |key: &str| schema[key].as_u64().map(|n| n as usize);
    match (schema["type"].as_str(), value) {
        (Some("object"), Value::Object(map)) => {
            if let (Some(max), n) = (count("maxProperties"), map.len())
                && n > max
            {
                problem(problems, format!("{n} entries, more than {max}"));
            }
            if let Some(props) = schema["properties"].as_object() {
                for required in schema["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !map.contains_key(required) {
                        problems.push(FieldProblem::new(format!("{path}.{required}"), "required"));
                    }
                }
                let unknown: Vec<String> = map.keys().filter(|k| !props.contains_key(*k)).cloned().collect();
                for key in unknown {
                    map.remove(&key);
                    problems.push(unknown_field(&format!("{path}.{key}")));
                }
                for (key, v) in map.iter_mut() {
                    check_schema(&props[key], v, &format!("{path}.{key}"), problems);
                }
            } else if let Some(items) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (key, v) in map.iter_mut() {
                    check_schema(items, v, &format!("{path}.{key}"), problems);
                }
            }
        }
        (Some("array"), Value::Array(items)) => {
            if let Some(max) = count("maxItems")
                && items.len() > max
            {
                problem(problems, format!("{} items, more than {max}", items.len()));
            }
            if let Some(min) = count("minItems")
                && items.len() < min
            {
                problem(problems, format!("{} items, fewer than {min}", items.len()));
            }
            for (i, v) in items.iter_mut().enumerate() {
                check_schema(&schema["items"], v, &format!("{path}[{i}]"), problems);
            }
        }
        (Some("string"), Value::String(s)) => {
            let n = s.chars().count();
            if let Some(max) = count("maxLength")
                && n > max
            {
                problem(problems, format!("{n} characters, more than {max}"));
            }
            if let Some(min) = count("minLength")
                && n < min
            {
                problem(
                    problems,
                    if n == 0 {
                        "must not be empty".to_string()
                    } else {
                        format!("{n} characters, fewer than {min}")
                    },
                );
            }
            if let Some(allowed) = schema["enum"].as_array()
                && !allowed.iter().any(|a| a.as_str() == Some(s))
            {
                let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
                problem(
                    problems,
                    format!(
                        "{} is not one of {}",
                        shown(&Value::String(s.clone())),
                        allowed.join(", ")
                    ),
                );
            }
        }
        (Some("integer"), Value::Number(n)) if n.is_i64() || n.is_u64() => {
            let v = n.as_f64().unwrap_or_default();
            if let Some(min) = schema["minimum"].as_f64()
                && v < min
            {
                problem(problems, format!("{n} is less than {min}"));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && v > max
            {
                problem(problems, format!("{n} is more than {max}"));
            }
        }
        (Some("number"), Value::Number(_)) | (Some("boolean"), Value::Bool(_)) | (None, _) => {}
        (Some(t), v) => problem(problems, format!("must be {}, not {}", kind_name(t), shown(v))),
    }
}

fn kind_name(t: &str) -> &str {
    match t {
        "object" => "an object",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> policy::Settings {
        let mut s = policy::Settings::with_domain("apps.test");
        s.allowed_registries = policy::settings::Registries(vec!["ghcr.io".into()]);
        s
    }

    fn fields(problems: &[FieldProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    fn good() -> Value {
        json!({
            "apiVersion": API_VERSION, "kind": "Template",
            "metadata": { "name": "shop", "labels": { "team": "web" } },
            "spec": { "displayName": "Shop", "services": [{ "name": "web", "image": "ghcr.io/acme/shop:1", "port": 8080,
                "resources": { "limits": { "cpu": "500m" } } }] },
        })
    }

    #[test]
    fn a_good_template_reads_into_the_callers_namespace() {
        let (t, problems) = read(&good(), "sandbox-a", None, &settings());
        assert_eq!(problems, vec![]);
        let t = t.expect("a template");
        assert_eq!(t.namespace().as_deref(), Some("sandbox-a"));
        assert_eq!(t.name_any(), "shop");
        assert_eq!(t.labels().get("team").map(String::as_str), Some("web"));
        assert_eq!(t.spec.services[0].image, "ghcr.io/acme/shop:1");
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let mut v = good();
        v["kind"] = json!("Deployment");
        v["metadata"]["name"] = json!("Bad_Name");
        v["metadata"]["namespace"] = json!("kube-system");
        v["metadata"]["ownerReferences"] = json!([]);
        let svc = &mut v["spec"]["services"][0];
        svc["image"] = json!("docker.io/evil/miner:1");
        svc["securityContext"] = json!({ "privileged": true });
        svc["hostPath"] = json!("/");
        svc["replicas"] = json!(99);
        svc["command"] = json!("not-a-list");
        v["spec"]["visibility"] = json!("everyone");
        let (t, problems) = read(&v, "sandbox-a", None, &settings());
        assert!(t.is_none(), "wrong types: no template");
        let f = fields(&problems);
        for want in [
            "kind",
            "metadata.ownerReferences",
            "metadata.name",
            "metadata.namespace",
            "spec.services[0].securityContext",
            "spec.services[0].hostPath",
            "spec.services[0].replicas",
            "spec.services[0].command",
            "spec.visibility",
        ] {
            assert!(f.contains(&want), "{want} not named: {problems:#?}");
        }
        let ns = problems.iter().find(|p| p.field == "metadata.namespace").unwrap();
        assert!(
            ns.message.contains("kube-system") && ns.message.contains("sandbox-a"),
            "{ns:?}"
        );
    }

    #[test]
    fn unknown_fields_are_named_and_the_controllers_rules_still_run() {
        let mut v = good();
        v["spec"]["services"][0]["image"] = json!("docker.io/evil/miner:1");
        v["spec"]["services"][0]["securityContext"] = json!({ "privileged": true });
        v["spec"]["hostNetwork"] = json!(true);
        let (_, problems) = read(&v, "sandbox-a", None, &settings());
        assert_eq!(
            fields(&problems),
            [
                "spec.hostNetwork",
                "spec.services[0].securityContext",
                "spec.services[0].image"
            ],
            "{problems:#?}"
        );
        assert!(problems[2].message.contains("docker.io"), "{problems:#?}");
    }

    #[test]
    fn a_replace_keeps_the_paths_name() {
        let mut v = good();
        v["metadata"] = json!({});
        let (t, problems) = read(&v, "sandbox-a", Some("shop"), &settings());
        assert_eq!(problems, vec![]);
        assert_eq!(t.unwrap().name_any(), "shop");
        v["metadata"]["name"] = json!("other");
        let (_, problems) = read(&v, "sandbox-a", Some("shop"), &settings());
        assert_eq!(fields(&problems), ["metadata.name"]);
    }

    #[test]
    fn yaml_comes_as_a_body_or_inside_json() {
        let yaml = "apiVersion: k8s-scheduler.io/v1alpha1\nkind: Template\nmetadata: { name: shop }\nspec:\n  displayName: Shop\n  services: [{ name: web, image: ghcr.io/a/b:1, port: 80 }]\n";
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/yaml".parse().unwrap());
        let a = parse_body(&h, Ok(Bytes::from(yaml))).unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let b = parse_body(&h, Ok(Bytes::from(json!({ "yaml": yaml }).to_string()))).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["spec"]["services"][0]["port"], 80);
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            parse_body(&h, Ok(Bytes::from(yaml))),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/yaml".parse().unwrap());
        assert!(matches!(
            parse_body(&h, Ok(Bytes::from("a: [unclosed"))),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn apps_of_other_sandboxes_are_counted_not_named() {
        let ud = |ns: &str, name: &str| -> Arc<UserDeployment> {
            Arc::new(
                serde_json::from_value(json!({
                    "apiVersion": API_VERSION, "kind": "UserDeployment",
                    "metadata": { "name": name, "namespace": ns },
                    "spec": { "templateRef": { "name": "shop" } },
                }))
                .unwrap(),
            )
        };
        let mut apps: Vec<_> = (0..23).map(|i| ud("sandbox-a", &format!("app-{i:02}"))).collect();
        apps.push(ud("sandbox-b", "secret-1"));
        apps.push(ud("sandbox-b", "secret-2"));
        apps.push(ud("sandbox-c", "secret-3"));
        let text = describe_apps("sandbox-a", &apps);
        assert!(text.starts_with("23 apps of this sandbox (app-00, app-01,"), "{text}");
        assert!(text.contains("app-19 and 3 more)"), "{text}");
        assert!(!text.contains("app-20"), "{text}");
        assert!(text.ends_with("and 3 apps of 2 other sandboxes"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(describe_apps("sandbox-a", &apps[..1]), "1 app of this sandbox (app-00)");
    }
}
