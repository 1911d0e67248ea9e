//! Children of a UserSandbox: its Namespace (Pod Security `restricted`), ResourceQuota and
//! LimitRange from the plan, default-deny NetworkPolicies with allowances, the default
//! ServiceAccount without token automount, and the RoleBindings that give the members' own
//! Kubernetes identities their role in the namespace ([`member_bindings`]).

use crds::UserSandbox;
use crds::plan::{
    DEFAULT_LIMIT_CPU, DEFAULT_LIMIT_EPHEMERAL_STORAGE, DEFAULT_LIMIT_MEMORY, DEFAULT_REQUEST_CPU,
    DEFAULT_REQUEST_EPHEMERAL_STORAGE, DEFAULT_REQUEST_MEMORY,
};
use crds::sandbox::MemberRole;
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
    if let Some(n) = sb.spec.plan.deployment_limit(o.deployments) {
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

/// Label on the members' RoleBindings naming the role they grant (`admin`, `developer`,
/// `viewer`): the controller prunes the RoleBindings with it, and only those (not the server's).
pub const MEMBER_ROLE_LABEL: &str = "k8s-scheduler.io/member-role";
/// Default of `SANDBOX_ROLE_PREFIX`.
pub const DEFAULT_SANDBOX_ROLE_PREFIX: &str = "k8s-scheduler";
/// The member roles, strongest first: the RoleBindings are built in this order.
pub const MEMBER_ROLES: [MemberRole; 3] = [MemberRole::Admin, MemberRole::Developer, MemberRole::Viewer];

/// How a member of a sandbox is named as a Kubernetes RBAC subject (`MEMBER_IDENTITY`), on
/// clusters whose kubectl users sign in with the identity provider the platform uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MemberIdentity {
    /// No member RoleBindings: kubectl users of the cluster sign in some other way.
    #[default]
    None,
    /// A `User` named by the member's email address (kube-apiserver
    /// `--oidc-username-claim=email` with `--oidc-username-prefix=-`).
    Email,
    /// A `User` named `<prefix><email>` (`--oidc-username-claim=email`,
    /// `--oidc-username-prefix=<prefix>`).
    Oidc(String),
}

impl std::fmt::Display for MemberIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberIdentity::None => f.write_str("none"),
            MemberIdentity::Email => f.write_str("email"),
            MemberIdentity::Oidc(prefix) => write!(f, "oidc:{prefix}"),
        }
    }
}

impl MemberIdentity {
    /// The `User` subject of a member with this email address; `None` when this mapping binds
    /// nobody or the address cannot name a Kubernetes user (see [`bindable_email`]).
    pub fn subject(&self, email: &str) -> Option<String> {
        if !bindable_email(email) {
            return None;
        }
        match self {
            MemberIdentity::None => None,
            MemberIdentity::Email => Some(email.to_string()),
            MemberIdentity::Oidc(prefix) => Some(format!("{prefix}{email}")),
        }
    }
}

/// `MEMBER_IDENTITY`: `none`, `email` or `oidc:<prefix>`.
pub fn parse_member_identity(s: &str) -> Result<MemberIdentity, String> {
    match s {
        "none" => Ok(MemberIdentity::None),
        "email" => Ok(MemberIdentity::Email),
        _ => match s.strip_prefix("oidc:") {
            Some("") => Err(
                "oidc: needs the kube-apiserver's --oidc-username-prefix after it (oidc:oidc: binds User \
                 oidc:alice@example.com); for no prefix, use email"
                    .into(),
            ),
            // A `system:` name is Kubernetes' own (nodes, ServiceAccounts, its components).
            Some(prefix) if prefix.starts_with("system:") => Err(format!(
                "{s:?}: the prefix must not start with system: (names Kubernetes reserves)"
            )),
            Some(prefix) if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(format!(
                "{s:?}: the prefix must not contain spaces or control characters"
            )),
            Some(prefix) => Ok(MemberIdentity::Oidc(prefix.to_string())),
            None => Err(format!(
                "{s:?} is not none, email or oidc:<prefix> (how a sandbox member is named in Kubernetes RBAC)"
            )),
        },
    }
}

/// Whether `email` can name a Kubernetes user: an address (`local@domain`, no spaces or control
/// characters) and not a name Kubernetes reserves (`system:`). The server writes verified
/// addresses; this keeps a hand-written sandbox from binding, say, a ServiceAccount's user name.
pub fn bindable_email(email: &str) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.starts_with("system:")
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `admin`, `developer` or `viewer`: the role's name in the CRD, its label value and the end of
/// its ClusterRole's name.
pub fn role_name(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Admin => "admin",
        MemberRole::Developer => "developer",
        MemberRole::Viewer => "viewer",
    }
}

/// Name of the RoleBinding of the members with `role`: `k8s-scheduler-admins`,
/// `k8s-scheduler-developers`, `k8s-scheduler-viewers`.
pub fn member_binding_name(role: MemberRole) -> String {
    format!("{MANAGER}-{}s", role_name(role))
}

/// The ClusterRole the members with `role` are bound to: `<prefix>-sandbox-<role>` (the chart's
/// templates/sandbox-roles.yaml, with the release name as the prefix).
pub fn sandbox_cluster_role(prefix: &str, role: MemberRole) -> String {
    format!("{prefix}-sandbox-{}", role_name(role))
}

/// What the members of a sandbox get in its namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberBindings {
    /// One RoleBinding per role that has a bound member, strongest role first.
    pub role_bindings: Vec<RoleBinding>,
    /// User ids of the members bound to nothing because they have no usable email address
    /// (empty with `MEMBER_IDENTITY=none`, which binds nobody).
    pub unbound: Vec<String>,
}

/// The members' RoleBindings: each member's (and the owner's, as an admin) Kubernetes identity
/// under `identity`, bound in the sandbox namespace to the ClusterRole of their role. Someone
/// listed twice (the owner again as a member, two user ids with one address) is bound once, with
/// the strongest of their roles. Subjects are sorted, so the objects do not change with the
/// order of the list.
pub fn member_bindings(sb: &UserSandbox, identity: &MemberIdentity, role_prefix: &str) -> MemberBindings {
    if *identity == MemberIdentity::None {
        return MemberBindings::default();
    }
    let rank = |r: MemberRole| MEMBER_ROLES.iter().position(|x| *x == r).unwrap_or(usize::MAX);
    let mut strongest: BTreeMap<String, MemberRole> = BTreeMap::new();
    let mut bind = |subject: String, role: MemberRole| {
        let best = strongest.entry(subject).or_insert(role);
        if rank(role) < rank(*best) {
            *best = role;
        }
    };
    // The owner of a team's sandbox is the team, without an email address: only people are bound.
    if let Some(subject) = sb.spec.owner.email.as_deref().and_then(|e| identity.subject(e)) {
        bind(subject, MemberRole::Admin);
    }
    let mut unbound = Vec::new();
    for m in &sb.spec.members {
        match m.email.as_deref().and_then(|e| identity.subject(e)) {
            Some(subject) => bind(subject, m.role),
            None => unbound.push(m.user_id.clone()),
        }
    }

    let name = sb.name_any();
    let owner = owner_ref(sb);
    let role_bindings = MEMBER_ROLES
        .iter()
        .filter_map(|role| {
            let subjects: Vec<Subject> = strongest
                .iter()
                .filter(|(_, r)| *r == role)
                .map(|(user, _)| Subject {
                    kind: "User".into(),
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    name: user.clone(),
                    namespace: None,
                })
                .collect();
            if subjects.is_empty() {
                return None;
            }
            let mut labels = labels(&name);
            labels.insert(MEMBER_ROLE_LABEL.into(), role_name(*role).into());
            Some(RoleBinding {
                metadata: ObjectMeta {
                    name: Some(member_binding_name(*role)),
                    namespace: Some(sb.spec.namespace.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: sandbox_cluster_role(role_prefix, *role),
                },
                subjects: Some(subjects),
            })
        })
        .collect();
    MemberBindings { role_bindings, unbound }
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
    use super::*;
    use serde_json::json;

    fn sandbox(owner_email: Option<&str>, members: serde_json::Value) -> UserSandbox {
        let mut owner = json!({ "userId": "tmabc" });
        if let Some(e) = owner_email {
            owner["email"] = json!(e);
        }
        serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
            "metadata": { "name": "team-abc", "uid": "uid-1" },
            "spec": { "owner": owner, "members": members, "namespace": "sandbox-tmabc" },
        }))
        .expect("sandbox")
    }

    fn team() -> UserSandbox {
        sandbox(
            None,
            json!([
                { "userId": "carol", "email": "carol@example.com", "role": "viewer" },
                { "userId": "bob", "email": "bob@example.com", "role": "developer" },
                { "userId": "dave", "role": "developer" },
                { "userId": "alice", "email": "alice@example.com", "role": "admin" },
                { "userId": "zed", "email": "zed@example.com", "role": "admin" },
            ]),
        )
    }

    /// (binding name, ClusterRole, subjects) of each RoleBinding.
    fn summary(b: &MemberBindings) -> Vec<(String, String, Vec<String>)> {
        b.role_bindings
            .iter()
            .map(|rb| {
                (
                    rb.name_any(),
                    rb.role_ref.name.clone(),
                    rb.subjects.iter().flatten().map(|s| s.name.clone()).collect(),
                )
            })
            .collect()
    }

    fn row(name: &str, role: &str, users: &[&str]) -> (String, String, Vec<String>) {
        (name.into(), role.into(), users.iter().map(|u| u.to_string()).collect())
    }

    #[test]
    fn each_role_with_members_gets_one_binding_to_its_cluster_role() {
        let b = member_bindings(&team(), &MemberIdentity::Email, "rel");
        assert_eq!(
            summary(&b),
            [
                row(
                    "k8s-scheduler-admins",
                    "rel-sandbox-admin",
                    &["alice@example.com", "zed@example.com"]
                ),
                row(
                    "k8s-scheduler-developers",
                    "rel-sandbox-developer",
                    &["bob@example.com"]
                ),
                row("k8s-scheduler-viewers", "rel-sandbox-viewer", &["carol@example.com"]),
            ]
        );
        assert_eq!(b.unbound, ["dave"], "no email, no binding");
        for rb in &b.role_bindings {
            assert_eq!(rb.namespace().as_deref(), Some("sandbox-tmabc"));
            assert_eq!(rb.role_ref.kind, "ClusterRole");
            assert_eq!(rb.role_ref.api_group.as_deref(), Some("rbac.authorization.k8s.io"));
            let labels = rb.labels();
            assert_eq!(labels.get(MANAGED_BY).map(String::as_str), Some(MANAGER));
            assert_eq!(labels.get(SANDBOX_LABEL).map(String::as_str), Some("team-abc"));
            assert!(rb.role_ref.name.ends_with(&labels[MEMBER_ROLE_LABEL]), "{rb:?}");
            let owner = &rb.owner_references()[0];
            assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("UserSandbox", "uid-1"));
            assert_eq!(owner.controller, Some(true));
            for s in rb.subjects.iter().flatten() {
                assert_eq!(
                    (s.kind.as_str(), s.api_group.as_deref(), s.namespace.as_deref()),
                    ("User", Some("rbac.authorization.k8s.io"), None)
                );
            }
        }
    }

    #[test]
    fn the_owner_with_an_email_is_an_admin() {
        let sb = sandbox(
            Some("owner@example.com"),
            json!([{ "userId": "bob", "email": "bob@example.com", "role": "viewer" }]),
        );
        assert_eq!(
            summary(&member_bindings(&sb, &MemberIdentity::Email, "k8s-scheduler")),
            [
                row(
                    "k8s-scheduler-admins",
                    "k8s-scheduler-sandbox-admin",
                    &["owner@example.com"]
                ),
                row(
                    "k8s-scheduler-viewers",
                    "k8s-scheduler-sandbox-viewer",
                    &["bob@example.com"]
                ),
            ],
            "no developers: no developers' binding"
        );
    }

    #[test]
    fn someone_listed_twice_is_bound_once_with_the_strongest_role() {
        let sb = sandbox(
            Some("alice@example.com"),
            json!([
                { "userId": "alice2", "email": "alice@example.com", "role": "viewer" },
                { "userId": "bob", "email": "bob@example.com", "role": "viewer" },
                { "userId": "bob2", "email": "bob@example.com", "role": "developer" },
            ]),
        );
        assert_eq!(
            summary(&member_bindings(&sb, &MemberIdentity::Email, "p")),
            [
                row("k8s-scheduler-admins", "p-sandbox-admin", &["alice@example.com"]),
                row("k8s-scheduler-developers", "p-sandbox-developer", &["bob@example.com"]),
            ]
        );
    }

    #[test]
    fn the_order_of_the_members_does_not_change_the_bindings() {
        let mut sb = team();
        let before = member_bindings(&sb, &MemberIdentity::Email, "p");
        sb.spec.members.reverse();
        assert_eq!(member_bindings(&sb, &MemberIdentity::Email, "p"), before);
    }

    #[test]
    fn none_binds_nobody() {
        let sb = sandbox(
            Some("owner@example.com"),
            json!([{ "userId": "dave", "role": "admin" }]),
        );
        assert_eq!(
            member_bindings(&sb, &MemberIdentity::None, "p"),
            MemberBindings::default()
        );
        assert_eq!(
            member_bindings(&team(), &MemberIdentity::None, "p"),
            MemberBindings::default()
        );
    }

    #[test]
    fn members_without_a_usable_email_are_skipped() {
        let sb = sandbox(
            Some("system:admin"),
            json!([
                { "userId": "dave", "role": "admin" },
                { "userId": "sa", "email": "system:serviceaccount:kube-system:default", "role": "admin" },
                { "userId": "spaces", "email": "a b@example.com", "role": "admin" },
                { "userId": "noat", "email": "bob", "role": "admin" },
                { "userId": "empty", "email": "", "role": "admin" },
                { "userId": "half", "email": "@example.com", "role": "admin" },
                { "userId": "ok", "email": "ok@example.com", "role": "viewer" },
            ]),
        );
        let b = member_bindings(&sb, &MemberIdentity::Email, "p");
        assert_eq!(
            summary(&b),
            [row("k8s-scheduler-viewers", "p-sandbox-viewer", &["ok@example.com"])]
        );
        assert_eq!(b.unbound, ["dave", "sa", "spaces", "noat", "empty", "half"]);
    }

    #[test]
    fn oidc_prefixes_the_email() {
        let sb = sandbox(
            None,
            json!([{ "userId": "alice", "email": "alice@example.com", "role": "developer" }]),
        );
        let identity = parse_member_identity("oidc:oidc:").expect("valid");
        assert_eq!(identity, MemberIdentity::Oidc("oidc:".into()));
        assert_eq!(
            summary(&member_bindings(&sb, &identity, "p")),
            [row(
                "k8s-scheduler-developers",
                "p-sandbox-developer",
                &["oidc:alice@example.com"]
            )]
        );
        let issuer = parse_member_identity("oidc:https://id.example.com#").expect("valid");
        assert_eq!(
            issuer.subject("alice@example.com").as_deref(),
            Some("https://id.example.com#alice@example.com")
        );
    }

    #[test]
    fn member_identity_values() {
        assert_eq!(parse_member_identity("none"), Ok(MemberIdentity::None));
        assert_eq!(parse_member_identity("email"), Ok(MemberIdentity::Email));
        for (bad, says) in [
            ("", "is not none, email or oidc:<prefix>"),
            ("Email", "is not none, email or oidc:<prefix>"),
            ("sub", "is not none, email or oidc:<prefix>"),
            ("oidc:", "--oidc-username-prefix"),
            ("oidc:system:", "system:"),
            ("oidc:my prefix", "spaces"),
        ] {
            let err = parse_member_identity(bad).expect_err(bad);
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        for s in ["none", "email", "oidc:oidc:"] {
            assert_eq!(parse_member_identity(s).expect(s).to_string(), s);
        }
    }

    #[test]
    fn doubles_quantities() {
        assert_eq!(double("4"), "8");
        assert_eq!(double("500m"), "1000m");
        assert_eq!(double("8Gi"), "16Gi");
        assert_eq!(double("1.5"), "3");
    }
}
