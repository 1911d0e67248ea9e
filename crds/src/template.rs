//! `Template`: an app catalog entry — the services an app runs and the parameters it takes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An app in the catalog: its services (containers), the parameters users fill in and which
/// service is public. Lives in the platform namespace (system/public templates) or a sandbox
/// namespace (private templates).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "k8s-scheduler.io",
    version = "v1alpha1",
    kind = "Template",
    namespaced,
    shortname = "tpl",
    category = "k8s-scheduler",
    status = "TemplateStatus",
    doc = "An app template of the k8s-scheduler catalog.",
    printcolumn(
        name = "Display Name",
        type_ = "string",
        json_path = ".spec.displayName",
        description = "Display name"
    ),
    printcolumn(
        name = "Category",
        type_ = "string",
        json_path = ".spec.category",
        description = "Category"
    ),
    printcolumn(
        name = "Visibility",
        type_ = "string",
        json_path = ".spec.visibility",
        description = "Who can use it"
    ),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status",
        description = "Passed validation"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Age"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.ingress) || self.services.exists(s, s.name == self.ingress.service)").message("ingress.service must name one of services"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    /// Name shown in the catalog.
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,
    /// What the app is and does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2000))]
    pub description: String,
    /// Catalog category, e.g. `database`, `web`, `cms`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 63))]
    pub category: String,
    /// Who may use the template: private (its sandbox), team, org or public.
    #[serde(default)]
    pub visibility: TemplateVisibility,
    /// Parameters users fill in; each becomes an environment variable of every service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = kube::core::Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message("parameter names must be unique"))]
    pub parameters: Vec<TemplateParameter>,
    /// The app's services: one Deployment and one ClusterIP Service each.
    #[schemars(length(min = 1, max = 10))]
    #[x_kube(validation = kube::core::Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("service names must be unique"))]
    pub services: Vec<ServiceSpec>,
    /// Which service and port is reachable at the app's public URL; none for internal-only apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<TemplateIngress>,
}

/// Who may use a template.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateVisibility {
    /// Only the sandbox it lives in.
    #[default]
    Private,
    /// The members of its sandbox's team.
    Team,
    /// Everyone in the organisation.
    Org,
    /// Everyone.
    Public,
}

/// A parameter of a template: an environment variable the user sets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!has(self.enum) || self.type == 'enum'").message("enum values are only allowed with type enum"))]
#[x_kube(validation = kube::core::Rule::new("self.type != 'enum' || (has(self.enum) && size(self.enum) > 0)").message("type enum needs enum values"))]
#[x_kube(validation = kube::core::Rule::new("!(has(self.secret) && self.secret && has(self.default))").message("a secret parameter cannot have a default"))]
pub struct TemplateParameter {
    /// Environment variable name: upper-case letters, digits and `_`, not starting with a digit.
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Z_][A-Z0-9_]*$')").message("parameter name must be an environment variable name like DATABASE_URL"))]
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// What the parameter is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1000))]
    pub description: String,
    /// Whether a UserDeployment must give a value (or the template a default).
    #[serde(default)]
    pub required: bool,
    /// Whether the value is secret: it comes from a stored secret, never from the spec.
    #[serde(default)]
    pub secret: bool,
    /// Value used when the UserDeployment gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub default: Option<String>,
    /// Kind of value: string, number, boolean or enum.
    #[serde(default, rename = "type")]
    pub type_: ParameterType,
    /// Allowed values when `type` is enum.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(max = 256)))]
    pub enum_values: Option<Vec<String>>,
    /// Regular expression (RE2) a value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub pattern: Option<String>,
}

/// Kind of a parameter's value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// Any text.
    #[default]
    String,
    /// A decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// One of `enum`.
    Enum,
}

/// A service (container) of an app. Only these fields can be set: security context, service
/// account, host namespaces, volumes other than config files and service types are chosen by the
/// platform, never by a tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Service name (a DNS label); names the Deployment and Service `<deployment>-<service>`.
    #[x_kube(validation = kube::core::Rule::new(crate::DNS_LABEL_RULE).message("service name must be a DNS label"))]
    #[schemars(length(min = 1, max = 20))]
    pub name: String,
    /// Container image, e.g. `ghcr.io/org/app:1.2`.
    #[x_kube(validation = kube::core::Rule::new("!self.contains(' ')").message("image must not contain spaces"))]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Port the container listens on (1-65535); absent for a service nothing connects to (a
    /// worker, a queue consumer): it then gets no Kubernetes Service, cannot be the public
    /// service, and cannot have a health check path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Overrides the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 1024)))]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// Fixed environment variables of this service (parameters come on top).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = crate::MAX_MAP_ENTRIES), transform = crate::string_map::MapValues { max: crate::MAX_VALUE_LEN as u64, ..crate::string_map::MapValues::ANY })]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, size(k) <= 128)").message("env names must be at most 128 characters"))]
    pub env: BTreeMap<String, String>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ServiceResources>,
    /// HTTP path probed for readiness and liveness, e.g. `/healthz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.startsWith('/')").message("healthCheckPath must start with /"))]
    #[schemars(length(max = 256))]
    pub health_check_path: Option<String>,
    /// Files mounted read-only into the container from a ConfigMap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub config_files: Vec<ConfigFile>,
    /// Number of pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 20))]
    pub replicas: Option<i32>,
}

/// A file mounted into a service's container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// Absolute path of the file in the container, e.g. `/etc/app/config.yaml`.
    #[x_kube(validation = kube::core::Rule::new("self.startsWith('/') && !self.contains('..') && !self.endsWith('/')").message("config file path must be an absolute file path without '..'"))]
    #[schemars(length(min = 2, max = 256))]
    pub path: String,
    /// File content.
    #[schemars(length(max = 262144))]
    pub content: String,
}

/// CPU and memory requests and limits of a service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceResources {
    /// Guaranteed resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
    /// Upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
}

/// CPU and memory quantities.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// CPU, e.g. `250m` or `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isQuantity(self)").message("cpu must be a quantity, e.g. 250m"))]
    #[schemars(length(max = 32))]
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isQuantity(self)").message("memory must be a quantity, e.g. 256Mi"))]
    #[schemars(length(max = 32))]
    pub memory: Option<String>,
}

/// Which service and port is public.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateIngress {
    /// Name of the public service.
    pub service: String,
    /// Port of that service (default: the service's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Result of validating a template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateStatus {
    /// Whether the template passed validation.
    #[serde(default)]
    pub valid: bool,
    /// Why the template is not valid; empty when it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The generation last validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
