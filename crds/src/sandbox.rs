//! `UserSandbox`: a tenant (a person or a team) and the namespace it deploys into.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Namespaces no sandbox may use: they belong to Kubernetes or a distribution.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "openshift", "kube-system", "kube-public", "kube-node-lease"];
/// Prefixes of namespaces no sandbox may use.
pub const SYSTEM_NAMESPACE_PREFIXES: &[&str] =
    &["kube-", "openshift-", "gke-", "gmp-", "cattle-", "calico-", "tigera-"];

/// CEL form of [`is_system_namespace`] (on `spec.namespace`); a unit test keeps them in step.
pub const SYSTEM_NAMESPACE_RULE: &str = "!(self in ['default', 'openshift', 'kube-system', 'kube-public', 'kube-node-lease']) && !['kube-', 'openshift-', 'gke-', 'gmp-', 'cattle-', 'calico-', 'tigera-'].exists(p, self.startsWith(p))";

/// Whether `namespace` is a system namespace (of Kubernetes or a distribution): never a sandbox's.
/// The platform's own namespaces (configured, not static) are refused by the controller.
pub fn is_system_namespace(namespace: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&namespace) || SYSTEM_NAMESPACE_PREFIXES.iter().any(|p| namespace.starts_with(p))
}

/// A tenant of the platform: its owner, members and plan. The controller creates and owns its
/// namespace, with Pod Security `restricted`, a ResourceQuota and LimitRange from the plan,
/// default-deny NetworkPolicies and a default ServiceAccount without a token.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "k8s-scheduler.io",
    version = "v1alpha1",
    kind = "UserSandbox",
    plural = "usersandboxes",
    shortname = "usb",
    shortname = "sandbox",
    category = "k8s-scheduler",
    status = "UserSandboxStatus",
    doc = "A tenant of k8s-scheduler: owner, members, plan and the namespace it deploys into.",
    printcolumn(
        name = "Owner",
        type_ = "string",
        json_path = ".spec.owner.userId",
        description = "Owner's user id"
    ),
    printcolumn(
        name = "Plan",
        type_ = "string",
        json_path = ".spec.plan",
        description = "Billing plan"
    ),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.namespace",
        description = "Sandbox namespace"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Namespace provisioned"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Age"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSandboxSpec {
    /// The user who owns the sandbox.
    pub owner: SandboxOwner,
    /// Other users with access to the sandbox, each with a role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(m, self.exists_one(n, n.userId == m.userId))").message("members must not list a user twice"))]
    #[schemars(length(max = 100))]
    pub members: Vec<SandboxMember>,
    /// Billing plan; it sets the namespace's ResourceQuota: free, business or enterprise.
    #[serde(default)]
    pub plan: Plan,
    /// Name of the namespace the sandbox deploys into (a DNS label, e.g. `sandbox-user-123`).
    /// It cannot be changed once set.
    #[x_kube(validation = kube::core::Rule::new(crate::DNS_LABEL_RULE).message("namespace must be a DNS label: lower-case letters, digits and '-'"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("namespace is immutable"))]
    #[x_kube(validation = kube::core::Rule::new(SYSTEM_NAMESPACE_RULE).message("namespace must not be a system namespace (default, kube-*, openshift-*, ...)"))]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Optional overrides of the plan's quota, e.g. for a customer with a custom contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_overrides: Option<QuotaOverrides>,
}

/// The owner of a sandbox.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxOwner {
    /// Stable user id (a DNS label of at most 30 characters); it prefixes the hosts of the
    /// sandbox's apps: `<userId>-<app>.<DEPLOYMENT_DOMAIN>`.
    #[x_kube(validation = kube::core::Rule::new(crate::DNS_LABEL_RULE).message("userId must be a DNS label: lower-case letters, digits and '-'"))]
    #[schemars(length(min = 1, max = 30))]
    pub user_id: String,
    /// The owner's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254))]
    pub email: Option<String>,
}

/// A member of a sandbox.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxMember {
    /// The member's user id.
    #[x_kube(validation = kube::core::Rule::new(crate::DNS_LABEL_RULE).message("userId must be a DNS label"))]
    #[schemars(length(min = 1, max = 30))]
    pub user_id: String,
    /// The member's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254))]
    pub email: Option<String>,
    /// What the member may do: admin, developer or viewer.
    pub role: MemberRole,
}

/// A member's role in a sandbox.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// Manage members and everything a developer can do.
    Admin,
    /// Create, change and delete deployments.
    Developer,
    /// Read only.
    Viewer,
}

/// Overrides of a plan's quota. Unset fields keep the plan's value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaOverrides {
    /// Most UserDeployments in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub deployments: Option<i32>,
    /// Most pods in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub pods: Option<i32>,
    /// Sum of CPU requests (a quantity, e.g. `4` or `500m`); also scales the CPU limit (x2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isQuantity(self)").message("cpu must be a quantity, e.g. 2 or 500m"))]
    #[schemars(length(max = 32))]
    pub cpu: Option<String>,
    /// Sum of memory requests (a quantity, e.g. `8Gi`); also scales the memory limit (x2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isQuantity(self)").message("memory must be a quantity, e.g. 8Gi"))]
    #[schemars(length(max = 32))]
    pub memory: Option<String>,
    /// Sum of ephemeral-storage requests (a quantity, e.g. `20Gi`); also scales the
    /// ephemeral-storage limit (x2). Raise it with `pods`: each container is limited to 512Mi by
    /// default, so the plan's storage limit also caps how many pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isQuantity(self)").message("ephemeralStorage must be a quantity, e.g. 20Gi"))]
    #[schemars(length(max = 32))]
    pub ephemeral_storage: Option<String>,
}

/// Observed state of a sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSandboxStatus {
    /// The namespace the controller provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Resource use against the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<SandboxUsage>,
    /// `Ready` (namespace, quota and policies in place) and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Resource use of a sandbox, read from its ResourceQuota.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxUsage {
    /// UserDeployments in the namespace.
    #[serde(default)]
    pub deployments: i64,
    /// CPU requested by its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory requested by its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cel_rule_lists_every_system_namespace() {
        for n in SYSTEM_NAMESPACES.iter().chain(SYSTEM_NAMESPACE_PREFIXES) {
            assert!(
                SYSTEM_NAMESPACE_RULE.contains(&format!("'{n}'")),
                "{n} missing from the CEL rule"
            );
        }
        assert_eq!(
            SYSTEM_NAMESPACE_RULE.matches("', '").count() + 2,
            SYSTEM_NAMESPACES.len() + SYSTEM_NAMESPACE_PREFIXES.len(),
            "the CEL rule lists exactly these"
        );
        assert!(is_system_namespace("kube-system") && is_system_namespace("openshift-ingress"));
        assert!(is_system_namespace("default") && !is_system_namespace("sandbox-default"));
        let crd = serde_json::to_string(&<UserSandbox as kube::CustomResourceExt>::crd()).unwrap();
        assert!(crd.contains("openshift-"), "the generated CRD carries the rule");
    }
}
