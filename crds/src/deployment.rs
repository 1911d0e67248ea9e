//! `UserDeployment`: one running instance of an app in a sandbox namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::string_map::StringMap;
use crate::template::ServiceSpec;

/// One app instance: a Template (or inline services) plus parameter values. The controller runs
/// it as Deployments and Services in the sandbox namespace, public at
/// `https://<user-id>-<name>.<DEPLOYMENT_DOMAIN>`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "k8s-scheduler.io",
    version = "v1alpha1",
    kind = "UserDeployment",
    namespaced,
    shortname = "ud",
    shortname = "udeploy",
    category = "k8s-scheduler",
    status = "UserDeploymentStatus",
    doc = "An app deployed by a k8s-scheduler user.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 32").message("name must be at most 32 characters: the host <user-id>-<name> must fit in 63"),
    validation = kube::core::Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("name must be a DNS label starting with a letter"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url", description = "Public URL"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "All services available"),
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.templateRef.name", priority = 1, description = "Template"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp", description = "Age")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.templateRef) != has(self.services)").message("set exactly one of templateRef and services"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserDeploymentSpec {
    /// The Template to run. Exactly one of `templateRef` and `services` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    /// Inline services, instead of a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub services: Option<Vec<ServiceSpec>>,
    /// Parameter values by name; they become environment variables. Never put secret values
    /// here: use `secretRefs`.
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    #[schemars(extend("maxProperties" = crate::MAX_MAP_ENTRIES), transform = crate::string_map::MapValues { max: crate::MAX_VALUE_LEN as u64, ..crate::string_map::MapValues::ANY })]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, size(k) <= 128 && k.matches('^[A-Z_][A-Z0-9_]*$'))").message("parameter names must be environment variable names like DATABASE_URL, of at most 128 characters"))]
    pub parameters: StringMap,
    /// Names of stored secrets (never values) whose keys become environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[schemars(inner(length(min = 1, max = 128), pattern(r"^[A-Za-z_][A-Za-z0-9_.-]*$")))]
    pub secret_refs: Vec<String>,
    /// Name of the Kubernetes Secret (in this namespace) the containers read secret values from,
    /// when no `CLUSTER_SECRET_STORE` is configured. Default: `<name>-secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(crate::DNS_LABEL_RULE).message("secretName must be a DNS label"))]
    #[schemars(length(max = 63))]
    pub secret_name: Option<String>,
    /// public: reachable at its URL through the ingress controller; internal: only from its own
    /// sandbox.
    #[serde(default)]
    pub visibility: Visibility,
    /// Pods per service, overriding the template (0-20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 20))]
    pub replicas: Option<i32>,
    /// Image per service name, overriding the template's image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 10), transform = crate::string_map::MapValues { min: 1, max: crate::MAX_IMAGE_LEN as u64, pattern: Some(r"^[^\s]+$") })]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, size(k) <= 20)").message("imageOverrides keys are service names of at most 20 characters"))]
    pub image_overrides: BTreeMap<String, String>,
    /// Scale every service to zero while true.
    #[serde(default)]
    pub suspend: bool,
    /// Set or change this (any string, conventionally an RFC 3339 time) to restart every pod,
    /// like `kubectl rollout restart`; the web UI's Restart button sets it to the current time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub restarted_at: Option<String>,
}

/// Reference to a Template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRef {
    /// The Template's name.
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$')").message("templateRef.name must be a DNS subdomain"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Template's namespace; default: the UserDeployment's own namespace, then the platform
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(crate::DNS_LABEL_RULE).message("templateRef.namespace must be a DNS label"))]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// Who can reach an app.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// At its public URL, through the ingress controller.
    #[default]
    Public,
    /// Only from pods of its own sandbox; no Ingress.
    Internal,
}

/// Lifecycle phase of a UserDeployment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum DeploymentPhase {
    /// Accepted, not yet acted on.
    #[default]
    Pending,
    /// Children are being created or rolled out.
    Provisioning,
    /// Every service is available.
    Ready,
    /// The spec cannot be run; see the Degraded condition.
    Error,
    /// Being deleted.
    Deleting,
}

/// Observed state of a UserDeployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDeploymentStatus {
    /// Lifecycle phase: Pending, Provisioning, Ready, Error or Deleting.
    #[serde(default)]
    pub phase: DeploymentPhase,
    /// Public URL, `https://<user-id>-<name>.<DEPLOYMENT_DOMAIN>` (public apps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Readiness per service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceStatus>,
    /// The generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Hash of the set of child objects last applied; orphans are pruned when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_hash: Option<String>,
}

/// Readiness of one service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Desired pods.
    pub replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Why its pods do not become ready (CamelCase, e.g. `ImagePullFailed`, `CrashLooping`,
    /// `OOMKilled`, `QuotaExceeded`); absent while it is fine or still starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One sentence saying what went wrong, with what Kubernetes reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}
