//! What the API returns: views of the custom resources, built from the watch caches. Secret
//! values never appear here (UserDeployments hold only secret names).

use std::collections::BTreeMap;

use crds::{Template, UserDeployment};
use kube::ResourceExt;
use serde::Serialize;

/// A condition of a deployment.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    /// Ready, Progressing, Degraded or Suspended.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}

/// Readiness of one service.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// Service name in the template.
    pub name: String,
    /// Desired pods.
    pub replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Why its pods do not become ready (e.g. ImagePullFailed, CrashLooping, OOMKilled,
    /// QuotaExceeded), while they do not.
    pub reason: Option<String>,
    /// One sentence saying what went wrong.
    pub message: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

/// A deployment (UserDeployment) as the API shows it.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    /// Name (DNS label).
    pub name: String,
    /// Sandbox namespace.
    pub namespace: String,
    /// Template name, when made from one.
    pub template: Option<String>,
    /// Pending, Provisioning, Ready, Error, Deleting, or Suspended (scaled to zero because the
    /// plan allows fewer apps; `reason` PlanLimitExceeded, `message` says what to do).
    pub phase: String,
    /// Reason of the phase, e.g. Available, TemplateNotFound, KubernetesDisabled.
    pub reason: Option<String>,
    /// Explanation of the phase.
    pub message: Option<String>,
    /// What to do about a failure: the hint of the first failing service.
    pub hint: Option<String>,
    /// Public URL, for public apps.
    pub url: Option<String>,
    /// Whether the Ready condition is True for the current generation.
    pub ready: bool,
    /// public or internal.
    pub visibility: String,
    /// Parameter values (never secret values).
    pub parameters: BTreeMap<String, String>,
    /// Names of the stored secrets the app reads.
    pub secret_refs: Vec<String>,
    /// Image per service, where overridden.
    pub image_overrides: BTreeMap<String, String>,
    /// Pods per service, when set.
    pub replicas: Option<i32>,
    /// Whether it is scaled to zero.
    pub suspend: bool,
    /// Per-service readiness.
    pub services: Vec<ServiceView>,
    /// Ready, Progressing, Degraded.
    pub conditions: Vec<ConditionView>,
    /// Spec generation.
    pub generation: i64,
    /// Generation the status describes.
    pub observed_generation: Option<i64>,
    /// Creation time (RFC 3339).
    pub created_at: Option<String>,
}

impl DeploymentView {
    /// The view of a UserDeployment.
    pub fn of(ud: &UserDeployment) -> DeploymentView {
        let status = ud.status.clone().unwrap_or_default();
        let generation = ud.metadata.generation.unwrap_or(0);
        let current = status.observed_generation == Some(generation);
        let cond = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
        let ready = current && cond(crds::conditions::READY).is_some_and(|c| c.status == "True");
        // A suspended app (scaled to zero over its plan's limit) is also Degraded; its own
        // condition says why and what to do.
        let suspended = cond(policy::suspend::SUSPENDED).filter(|c| c.status == "True");
        let (reason, message) = match suspended.or(cond(crds::conditions::DEGRADED).filter(|c| c.status == "True")) {
            Some(c) => (Some(c.reason.clone()), Some(c.message.clone())),
            None => match cond(crds::conditions::READY) {
                Some(c) => (Some(c.reason.clone()), Some(c.message.clone())),
                None => (None, None),
            },
        };
        let spec = &ud.spec;
        DeploymentView {
            name: ud.name_any(),
            namespace: ud.namespace().unwrap_or_default(),
            template: spec.template_ref.as_ref().map(|r| r.name.clone()),
            // "Suspended" is the view's word only (the CRD's phase says Error).
            phase: match suspended {
                Some(_) => "Suspended".into(),
                None => serde_json::to_value(status.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "Pending".into()),
            },
            reason,
            message,
            hint: status.services.iter().find_map(|s| s.hint.clone()),
            url: status.url.clone(),
            ready,
            visibility: serde_json::to_value(spec.visibility)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            parameters: spec.parameters.clone().into(),
            secret_refs: spec.secret_refs.clone(),
            image_overrides: spec.image_overrides.clone(),
            replicas: spec.replicas,
            suspend: spec.suspend,
            services: status
                .services
                .iter()
                .map(|s| ServiceView {
                    name: s.name.clone(),
                    replicas: s.replicas,
                    ready_replicas: s.ready_replicas,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                    hint: s.hint.clone(),
                })
                .collect(),
            conditions: status
                .conditions
                .iter()
                .map(|c| ConditionView {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.0.to_string(),
                })
                .collect(),
            generation,
            observed_generation: status.observed_generation,
            created_at: ud.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        }
    }
}

/// A Kubernetes Event about a deployment.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// How often it happened.
    pub count: i32,
    /// When it last happened (RFC 3339).
    pub last_seen: Option<String>,
}

/// A deployment with its events (and, without Kubernetes, its rendered manifests).
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentDetail {
    /// The deployment.
    #[serde(flatten)]
    pub deployment: DeploymentView,
    /// Recent events, newest last.
    pub events: Vec<EventView>,
    /// With KUBERNETES_ENABLED=false: the child objects the controller would create.
    #[schema(value_type = Option<Vec<Object>>)]
    pub manifests: Option<Vec<serde_json::Value>>,
}

/// A template parameter.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterView {
    /// Environment variable name.
    pub name: String,
    /// For people.
    pub description: String,
    /// Must be given.
    pub required: bool,
    /// Stored as a secret (list it in secretRefs).
    pub secret: bool,
    /// Default value.
    pub default: Option<String>,
    /// string, number, boolean or enum.
    #[serde(rename = "type")]
    pub type_: String,
    /// Allowed values of an enum.
    #[serde(rename = "enum")]
    pub enum_values: Option<Vec<String>>,
    /// Regular expression values must match.
    pub pattern: Option<String>,
}

/// A template as the catalog shows it.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    /// Name (use it in `template` when creating a deployment).
    pub name: String,
    /// Namespace: the platform namespace for system templates, the user's sandbox for own ones.
    pub namespace: String,
    /// Whether it is a system template.
    pub system: bool,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// private, team, org or public.
    pub visibility: String,
    /// Whether the controller validated it.
    pub valid: Option<bool>,
    /// Why it is not valid.
    pub problems: Vec<String>,
    /// Parameters.
    pub parameters: Vec<ParameterView>,
    /// Service names and images.
    pub services: Vec<TemplateServiceView>,
}

/// A service of a template.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateServiceView {
    /// Service name.
    pub name: String,
    /// Container image.
    pub image: String,
    /// Container port; absent for a service nothing connects to (a worker).
    pub port: Option<i32>,
    /// CPU and memory requests and limits, when the template sets them.
    #[schema(value_type = Option<Object>)]
    pub resources: Option<serde_json::Value>,
}

fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl TemplateView {
    /// The view of a Template.
    pub fn of(t: &Template, platform_namespace: &str) -> TemplateView {
        let ns = t.namespace().unwrap_or_default();
        let status = t.status.clone().unwrap_or_default();
        let valid = t.status.as_ref().map(|s| s.valid);
        TemplateView {
            name: t.name_any(),
            system: ns == platform_namespace,
            namespace: ns,
            display_name: t.spec.display_name.clone(),
            description: t.spec.description.clone(),
            category: t.spec.category.clone(),
            visibility: wire(&t.spec.visibility),
            valid,
            problems: status.reasons.clone(),
            parameters: t
                .spec
                .parameters
                .iter()
                .map(|p| ParameterView {
                    name: p.name.clone(),
                    description: p.description.clone(),
                    required: p.required,
                    secret: p.secret,
                    default: p.default.clone(),
                    type_: wire(&p.type_),
                    enum_values: p.enum_values.clone(),
                    pattern: p.pattern.clone(),
                })
                .collect(),
            services: t
                .spec
                .services
                .iter()
                .map(|s| TemplateServiceView {
                    name: s.name.clone(),
                    image: s.image.clone(),
                    port: s.port,
                    resources: s.resources.as_ref().and_then(|r| serde_json::to_value(r).ok()),
                })
                .collect(),
        }
    }
}

/// One problem of a submitted template: the field it concerns and what is wrong.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldProblem {
    /// Path of the field in the Template, e.g. `spec.services[0].image` (empty when the problem
    /// concerns the whole object).
    pub field: String,
    /// What is wrong and what to change.
    pub message: String,
}

impl FieldProblem {
    /// A problem of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The outcome of validating a template: `POST /api/templates/validate` answers it with 200, a
/// create or replace of an invalid template with 422 (and `error`, the problems in one line).
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
pub struct TemplateValidation {
    /// The problems in one sentence (only on a refused create or replace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the template would be accepted.
    pub valid: bool,
    /// Every problem found, each with the field it concerns.
    pub problems: Vec<FieldProblem>,
}
