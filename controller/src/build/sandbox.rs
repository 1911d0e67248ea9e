//! Children of a UserSandbox: its Namespace (Pod Security `restricted`), ResourceQuota and
//! LimitRange from the plan, default-deny NetworkPolicies with allowances, and the default
//! ServiceAccount without token automount.

use crds::UserSandbox;
use crds::plan::{
    DEFAULT_LIMIT_CPU, DEFAULT_LIMIT_EPHEMERAL_STORAGE, DEFAULT_LIMIT_MEMORY, DEFAULT_REQUEST_CPU,
    DEFAULT_REQUEST_EPHEMERAL_STORAGE, DEFAULT_REQUEST_MEMORY,
};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::{MANAGED_BY, MANAGER, SANDBOX_LABEL, VISIBILITY_LABEL, owner_ref, typed};
use crate::config::Config;

/// Pod Security Standards version the namespaces pin (not `latest`, so an upgrade of the cluster
/// does not silently tighten or loosen the rules).
pub const POD_SECURITY_VERSION: &str = "v1.34";
/// Name of the sandbox ResourceQuota.
pub const QUOTA_NAME: &str = "sandbox-quota";
/// Name of the sandbox LimitRange.
pub const LIMIT_RANGE_NAME: &str = "sandbox-limits";
/// Names of the sandbox NetworkPolicies.
pub const POLICY_NAMES: [&str; 4] = [
    "default-deny",
    "allow-dns",
    "allow-ingress-controller",
    "allow-same-namespace",
];

/// Everything the controller applies for one UserSandbox.
#[derive(Debug, Clone)]
pub struct SandboxChildren {
    /// The namespace.
    pub namespace: Namespace,
    /// Quota from the plan.
    pub quota: ResourceQuota,
    /// Container defaults.
    pub limit_range: LimitRange,
    /// Default deny plus allowances; empty when disabled.
    pub network_policies: Vec<NetworkPolicy>,
    /// The default ServiceAccount, without token automount.
    pub service_account: ServiceAccount,
    /// Lets the HTTP server write the apps' Secrets here (when SERVER_SERVICE_ACCOUNT is set).
    pub server_role_binding: Option<k8s_openapi::api::rbac::v1::RoleBinding>,
}

/// Name of the RoleBinding that lets the HTTP server write Secrets in a sandbox namespace.
pub const SERVER_ROLE_BINDING: &str = "k8s-scheduler-server";

fn labels(sandbox: &str) -> Value {
    json!({ MANAGED_BY: MANAGER, SANDBOX_LABEL: sandbox })
}

/// Builds the children of a sandbox.
pub fn build(sb: &UserSandbox, config: &Config) -> SandboxChildren {
    let name = sb.name_any();
    let ns = sb.spec.namespace.clone();
    let owner = owner_ref(sb);
    let meta = |obj: &str| json!({ "name": obj, "namespace": ns, "labels": labels(&name), "ownerReferences": [owner] });

    let mut ns_labels = labels(&name);
    for mode in ["enforce", "audit", "warn"] {
        ns_labels[format!("pod-security.kubernetes.io/{mode}")] = json!("restricted");
        ns_labels[format!("pod-security.kubernetes.io/{mode}-version")] = json!(POD_SECURITY_VERSION);
    }
    let namespace = typed(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": ns, "labels": ns_labels, "ownerReferences": [owner] },
    }));

    let limits = sb.spec.plan.limits();
    let o = sb.spec.quota_overrides.clone().unwrap_or_default();
    let cpu = o.cpu.clone().unwrap_or_else(|| limits.requests_cpu.to_string());
    let memory = o.memory.clone().unwrap_or_else(|| limits.requests_memory.to_string());
    let (limit_cpu, limit_memory) = match (&o.cpu, &o.memory) {
        (None, None) => (limits.limits_cpu.to_string(), limits.limits_memory.to_string()),
        _ => (double(&cpu), double(&memory)),
    };
    let pods = o.pods.unwrap_or(limits.pods);
    let (ephemeral, limit_ephemeral) = match &o.ephemeral_storage {
        Some(q) => (q.clone(), double(q)),
        None => (
            limits.requests_ephemeral_storage.to_string(),
            limits.limits_ephemeral_storage.to_string(),
        ),
    };
    let mut quota: k8s_openapi::api::core::v1::ResourceQuota = typed(json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": meta(QUOTA_NAME),
        "spec": { "hard": {
            "requests.cpu": cpu,
            "requests.memory": memory,
            "limits.cpu": limit_cpu,
            "limits.memory": limit_memory,
            "requests.ephemeral-storage": ephemeral,
            "limits.ephemeral-storage": limit_ephemeral,
            "pods": pods.to_string(),
            "services": limits.services.max(pods).to_string(),
            "services.nodeports": "0",
            "services.loadbalancers": "0",
        } },
    }));
    if let Some(n) = o.deployments.or(limits.deployments) {
        quota.spec.get_or_insert_default().hard.get_or_insert_default().insert(
            "count/userdeployments.k8s-scheduler.io".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(n.to_string()),
        );
    }
    let limit_range = typed(json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": meta(LIMIT_RANGE_NAME),
        "spec": { "limits": [{
            "type": "Container",
            "defaultRequest": {
                "cpu": DEFAULT_REQUEST_CPU,
                "memory": DEFAULT_REQUEST_MEMORY,
                "ephemeral-storage": DEFAULT_REQUEST_EPHEMERAL_STORAGE,
            },
            "default": {
                "cpu": DEFAULT_LIMIT_CPU,
                "memory": DEFAULT_LIMIT_MEMORY,
                "ephemeral-storage": DEFAULT_LIMIT_EPHEMERAL_STORAGE,
            },
        }] },
    }));
    let network_policies = if config.disable_network_policies {
        vec![]
    } else {
        let policy = |name: &str, spec: Value| -> NetworkPolicy {
            typed(
                json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name), "spec": spec }),
            )
        };
        vec![
            policy(
                POLICY_NAMES[0],
                json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] }),
            ),
            policy(
                POLICY_NAMES[1],
                json!({
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{
                        "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } } }],
                        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
                    }],
                }),
            ),
            policy(
                POLICY_NAMES[2],
                // Only pods of public apps: NetworkPolicies add up, so selecting every pod here
                // would make internal apps reachable from the ingress controller too.
                json!({
                    "podSelector": { "matchLabels": { VISIBILITY_LABEL: "public" } },
                    "policyTypes": ["Ingress"],
                    "ingress": [{ "from": [{ "namespaceSelector": { "matchLabels": {
                        "kubernetes.io/metadata.name": config.ingress_namespace } } }] }],
                }),
            ),
            policy(
                POLICY_NAMES[3],
                json!({
                    "podSelector": {},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{ "from": [{ "podSelector": {} }] }],
                    "egress": [{ "to": [{ "podSelector": {} }] }],
                }),
            ),
        ]
    };
    // The default ServiceAccount is created by Kubernetes; the controller co-owns one field of it.
    let service_account = typed(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": { "name": "default", "namespace": ns },
        "automountServiceAccountToken": false,
    }));
    let server_role_binding = config.server_service_account.split_once('/').map(|(sa_ns, sa)| {
        typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(SERVER_ROLE_BINDING),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": config.server_secrets_cluster_role,
            },
            "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": sa_ns }],
        }))
    });
    SandboxChildren {
        namespace,
        quota,
        limit_range,
        network_policies,
        service_account,
        server_role_binding,
    }
}

/// Twice a quantity, keeping its unit (`4` → `8`, `500m` → `1000m`, `8Gi` → `16Gi`).
fn double(q: &str) -> String {
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    match num.parse::<f64>() {
        Ok(n) => {
            let d = n * 2.0;
            if d.fract() == 0.0 {
                format!("{}{unit}", d as u64)
            } else {
                format!("{d}{unit}")
            }
        }
        Err(_) => q.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::double;

    #[test]
    fn doubles_quantities() {
        assert_eq!(double("4"), "8");
        assert_eq!(double("500m"), "1000m");
        assert_eq!(double("8Gi"), "16Gi");
        assert_eq!(double("1.5"), "3");
    }
}
