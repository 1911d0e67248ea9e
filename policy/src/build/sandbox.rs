//! Children of a UserSandbox: its Namespace (Pod Security `restricted`), ResourceQuota and
//! LimitRange from the plan, default-deny NetworkPolicies with allowances, and the default
//! ServiceAccount without token automount.

use crds::UserSandbox;
use crds::plan::{
    DEFAULT_LIMIT_CPU, DEFAULT_LIMIT_EPHEMERAL_STORAGE, DEFAULT_LIMIT_MEMORY, DEFAULT_REQUEST_CPU,
    DEFAULT_REQUEST_EPHEMERAL_STORAGE, DEFAULT_REQUEST_MEMORY,
};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{MANAGED_BY, MANAGER, SANDBOX_LABEL, VISIBILITY_LABEL, owner_ref};
use crate::settings::BuildSettings;

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
    /// Grants the HTTP server SERVER_SANDBOX_CLUSTER_ROLE here (the apps' pods and logs, and their
    /// Secrets), when SERVER_SERVICE_ACCOUNT is set.
    pub server_role_binding: Option<RoleBinding>,
}

/// Name of the RoleBinding that grants the HTTP server its rights in a sandbox namespace
/// (SERVER_SANDBOX_CLUSTER_ROLE). Not the former `k8s-scheduler-server`, which bound the
/// server-secrets ClusterRole: a RoleBinding's roleRef cannot change, so applying the new role
/// under the old name would fail in every existing sandbox. A sandbox from before keeps that old
/// RoleBinding, which grants nothing once the chart no longer renders its ClusterRole.
pub const SERVER_ROLE_BINDING: &str = "k8s-scheduler-server-sandbox";

fn labels(sandbox: &str) -> BTreeMap<String, String> {
    map([(MANAGED_BY, MANAGER), (SANDBOX_LABEL, sandbox)])
}

fn map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn quantities<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// Selects every pod (of the namespace, or as a peer: of the policy's namespace).
fn every_pod() -> LabelSelector {
    LabelSelector::default()
}

/// Selects the namespace named `name`.
fn namespace_named(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(map([("kubernetes.io/metadata.name", name)])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn same_namespace() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(every_pod()),
        ..Default::default()
    }
}

fn types(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|t| t.to_string()).collect())
}

/// Builds the children of a sandbox.
pub fn build(sb: &UserSandbox, config: &BuildSettings) -> SandboxChildren {
    let name = sb.name_any();
    let ns = sb.spec.namespace.clone();
    let owner = owner_ref(sb);
    let meta = |obj: &str| ObjectMeta {
        name: Some(obj.to_string()),
        namespace: Some(ns.clone()),
        labels: Some(labels(&name)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };

    let mut ns_labels = labels(&name);
    for mode in ["enforce", "audit", "warn"] {
        ns_labels.insert(format!("pod-security.kubernetes.io/{mode}"), "restricted".into());
        ns_labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            POD_SECURITY_VERSION.into(),
        );
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            labels: Some(ns_labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        ..Default::default()
    };

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
    let (pods, services) = (pods.to_string(), limits.services.max(pods).to_string());
    let mut hard = quantities([
        ("requests.cpu", &cpu),
        ("requests.memory", &memory),
        ("limits.cpu", &limit_cpu),
        ("limits.memory", &limit_memory),
        ("requests.ephemeral-storage", &ephemeral),
        ("limits.ephemeral-storage", &limit_ephemeral),
        ("pods", &pods),
        ("services", &services),
        ("services.nodeports", "0"),
        ("services.loadbalancers", "0"),
    ]);
    if let Some(n) = o.deployments.or(limits.deployments) {
        hard.insert("count/userdeployments.k8s-scheduler.io".into(), Quantity(n.to_string()));
    }
    let quota = ResourceQuota {
        metadata: meta(QUOTA_NAME),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    };
    let limit_range = LimitRange {
        metadata: meta(LIMIT_RANGE_NAME),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(quantities([
                    ("cpu", DEFAULT_REQUEST_CPU),
                    ("memory", DEFAULT_REQUEST_MEMORY),
                    ("ephemeral-storage", DEFAULT_REQUEST_EPHEMERAL_STORAGE),
                ])),
                default: Some(quantities([
                    ("cpu", DEFAULT_LIMIT_CPU),
                    ("memory", DEFAULT_LIMIT_MEMORY),
                    ("ephemeral-storage", DEFAULT_LIMIT_EPHEMERAL_STORAGE),
                ])),
                ..Default::default()
            }],
        }),
    };
    let network_policies = if config.disable_network_policies {
        vec![]
    } else {
        let policy = |name: &str, spec: NetworkPolicySpec| NetworkPolicy {
            metadata: meta(name),
            spec: Some(spec),
        };
        vec![
            policy(
                POLICY_NAMES[0],
                NetworkPolicySpec {
                    pod_selector: Some(every_pod()),
                    policy_types: types(&["Ingress", "Egress"]),
                    ..Default::default()
                },
            ),
            policy(
                POLICY_NAMES[1],
                NetworkPolicySpec {
                    pod_selector: Some(every_pod()),
                    policy_types: types(&["Egress"]),
                    egress: Some(vec![NetworkPolicyEgressRule {
                        to: Some(vec![namespace_named("kube-system")]),
                        ports: Some(
                            ["UDP", "TCP"]
                                .into_iter()
                                .map(|protocol| NetworkPolicyPort {
                                    protocol: Some(protocol.into()),
                                    port: Some(IntOrString::Int(53)),
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                    }]),
                    ..Default::default()
                },
            ),
            // Only pods of public apps: NetworkPolicies add up, so selecting every pod here
            // would make internal apps reachable from the ingress controller too.
            policy(
                POLICY_NAMES[2],
                NetworkPolicySpec {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(map([(VISIBILITY_LABEL, "public")])),
                        ..Default::default()
                    }),
                    policy_types: types(&["Ingress"]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![namespace_named(&config.ingress_namespace)]),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            ),
            policy(
                POLICY_NAMES[3],
                NetworkPolicySpec {
                    pod_selector: Some(every_pod()),
                    policy_types: types(&["Ingress", "Egress"]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![same_namespace()]),
                        ..Default::default()
                    }]),
                    egress: Some(vec![NetworkPolicyEgressRule {
                        to: Some(vec![same_namespace()]),
                        ..Default::default()
                    }]),
                },
            ),
        ]
    };
    // The default ServiceAccount is created by Kubernetes; the controller co-owns one field of it.
    let service_account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let server_role_binding = config
        .server_service_account
        .split_once('/')
        .map(|(sa_ns, sa)| RoleBinding {
            metadata: meta(SERVER_ROLE_BINDING),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: config.server_sandbox_cluster_role.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: sa.into(),
                namespace: Some(sa_ns.into()),
                ..Default::default()
            }]),
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
