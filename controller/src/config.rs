//! Controller configuration, from flags or environment variables, validated in one place.
//! A missing or invalid value stops start-up with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use policy::build::sandbox::{DEFAULT_SANDBOX_ROLE_PREFIX, MemberIdentity, parse_member_identity};
pub use policy::settings::{BuildSettings, Registries, Routing, Settings, UrlPort, image_registry};
use policy::settings::{parse_bool, parse_name, parse_optional_name, parse_subdomain};

/// The k8s-scheduler operator: reconciles UserSandbox, Template and UserDeployment resources.
#[derive(Parser, Debug, Clone)]
#[command(name = "controller", version, about)]
pub struct Config {
    /// What both binaries read (domain, platform namespace, registries, app URLs).
    #[command(flatten)]
    pub settings: Settings,

    /// How routes, policies and bindings are built.
    #[command(flatten)]
    pub build: BuildSettings,

    /// Namespace to watch for UserDeployments and Templates; empty = all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "", value_parser = parse_optional_name)]
    pub watch_namespace: String,

    /// Address of the Prometheus metrics listener.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,

    /// Address of the `/healthz` and `/readyz` listener.
    #[arg(long, env = "HEALTH_PROBE_ADDR", default_value = "127.0.0.1:8081")]
    pub health_probe_addr: SocketAddr,

    /// Label selector of the UserSandboxes this controller manages (e.g. to shard, or to keep
    /// test runs apart); empty = all. With a selector, UserDeployments and Templates in the
    /// namespace of another sandbox, or of no sandbox, are left alone (no status, no children).
    #[arg(long, env = "SANDBOX_SELECTOR", default_value = "")]
    pub sandbox_selector: String,

    /// Elect a leader through a Lease so that only one replica writes.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub leader_elect: bool,

    /// Name of the leader election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "k8s-scheduler-controller", value_parser = parse_name)]
    pub lease_name: String,

    /// Namespace of the leader election Lease.
    #[arg(long, env = "LEASE_NAMESPACE", default_value = "k8s-scheduler", value_parser = parse_name)]
    pub lease_namespace: String,

    /// How long a Lease is valid without renewal, in seconds; a standby takes over after it.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_duration_seconds: u64,

    /// Identity of this replica in the Lease (default: the host name and process id).
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub identity: String,

    /// Whether the cluster serves HTTPRoute v1 (found at start-up; then the controller watches
    /// and prunes HTTPRoutes in either mode).
    #[arg(skip)]
    pub http_routes_served: bool,

    /// Reconciles run at once per resource kind.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Fill the UserDeployment and child caches with streaming lists (watch with
    /// `sendInitialEvents`, Kubernetes 1.32+ by default): objects arrive one at a time instead of
    /// in pages of hundreds, which keeps the memory peak of a start or relist low. `false` for
    /// clusters without the WatchList feature: paged lists of 100.
    #[arg(long, env = "WATCH_STREAMING_LISTS", default_value_t = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub streaming_lists: bool,

    /// How a sandbox member is named as a Kubernetes RBAC subject, for clusters whose kubectl
    /// users sign in with the platform's identity provider: `none` (no member RoleBindings),
    /// `email` (a User named by the member's email address) or `oidc:<prefix>` (a User named
    /// `<prefix><email>`, as the kube-apiserver's `--oidc-username-prefix` makes it). Each member
    /// is then bound in the sandbox namespace to the ClusterRole of their role; members without
    /// an email address get no binding.
    #[arg(long, env = "MEMBER_IDENTITY", default_value = "none", value_parser = parse_member_identity)]
    pub member_identity: MemberIdentity,

    /// Prefix of the ClusterRoles the members are bound to: `<prefix>-sandbox-admin`,
    /// `<prefix>-sandbox-developer`, `<prefix>-sandbox-viewer` (the chart's: the release name).
    #[arg(long, env = "SANDBOX_ROLE_PREFIX", default_value = DEFAULT_SANDBOX_ROLE_PREFIX, value_parser = parse_role_prefix)]
    pub sandbox_role_prefix: String,

    /// Kubeconfig file; default: in-cluster configuration or `KUBECONFIG`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// `SANDBOX_ROLE_PREFIX`: a DNS subdomain short enough that `<prefix>-sandbox-developer` is a
/// ClusterRole name (253 characters).
fn parse_role_prefix(s: &str) -> Result<String, String> {
    let longest = "-sandbox-developer".len();
    let prefix = parse_subdomain(s)?;
    if prefix.len() + longest > 253 {
        return Err(format!(
            "{s:?} is too long: <prefix>-sandbox-developer must fit in 253 characters"
        ));
    }
    Ok(prefix)
}

impl Config {
    /// How long a Lease is held without renewal.
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration_seconds)
    }

    /// Why `namespace` can never be a sandbox's, if it cannot: a system namespace (also refused
    /// by the CRD's CEL rule) or one this platform uses (configured, so checked here).
    /// `WATCH_NAMESPACE` is not refused: with it, the controller watches one sandbox namespace.
    pub fn namespace_refusal(&self, namespace: &str) -> Option<String> {
        if crds::sandbox::is_system_namespace(namespace) {
            return Some(format!(
                "namespace {namespace} is a system namespace; choose another spec.namespace"
            ));
        }
        let server_ns = self.build.server_service_account.split_once('/').map(|(ns, _)| ns);
        [
            ("PLATFORM_NAMESPACE", Some(self.settings.platform_namespace.as_str())),
            ("INGRESS_NAMESPACE", Some(self.build.ingress_namespace.as_str())),
            ("GATEWAY_NAMESPACE", Some(self.build.gateway_namespace.as_str())),
            ("LEASE_NAMESPACE", Some(self.lease_namespace.as_str())),
            ("SERVER_SERVICE_ACCOUNT", server_ns),
        ]
        .into_iter()
        .find(|(_, ns)| *ns == Some(namespace))
        .map(|(var, _)| format!("namespace {namespace} is the platform's own ({var}); choose another spec.namespace"))
    }

    /// A configuration for unit tests.
    pub fn for_tests() -> Self {
        Config::try_parse_from(["controller", "--deployment-domain", "example.com"]).expect("test config")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["controller"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).map_err(|e| e.to_string())
    }

    #[test]
    fn invalid_values_name_the_problem() {
        let err = parse(&["--deployment-domain", "bad_domain!"]).unwrap_err();
        assert!(err.contains("not a DNS label"), "{err}");
        let err = parse(&["--deployment-domain", "example.com", "--leader-elect", "maybe"]).unwrap_err();
        assert!(err.contains("not a boolean") && err.contains("LEADER_ELECT"), "{err}");
        let err = parse(&[]).unwrap_err();
        assert!(err.contains("DEPLOYMENT_DOMAIN"), "the domain is required: {err}");
    }

    #[test]
    fn defaults() {
        let c = parse(&["--deployment-domain", "Example.COM."]).unwrap();
        assert_eq!(c.settings, Settings::with_domain("example.com"));
        assert_eq!(c.build, BuildSettings::default());
        assert!(c.leader_elect);
        assert_eq!(c.watch_namespace, "");
        assert_eq!(c.member_identity, MemberIdentity::None);
        assert_eq!(c.sandbox_role_prefix, "k8s-scheduler");
    }

    #[test]
    fn member_identity_and_role_prefix() {
        let c = parse(&[
            "--deployment-domain",
            "example.com",
            "--member-identity",
            "oidc:oidc:",
            "--sandbox-role-prefix",
            "rel",
        ])
        .unwrap();
        assert_eq!(c.member_identity, MemberIdentity::Oidc("oidc:".into()));
        assert_eq!(c.sandbox_role_prefix, "rel");
        // A valid subdomain (four 60-letter labels), too long for the roles' names.
        let long = vec!["a".repeat(60); 4].join(".");
        for (flag, bad, says) in [
            ("--member-identity", "sub", "is not none, email or oidc:<prefix>"),
            ("--member-identity", "oidc:", "--oidc-username-prefix"),
            ("--sandbox-role-prefix", "Rel", "not a DNS subdomain"),
            ("--sandbox-role-prefix", long.as_str(), "too long"),
        ] {
            let err = parse(&["--deployment-domain", "example.com", flag, bad]).unwrap_err();
            let var = if flag == "--member-identity" {
                "MEMBER_IDENTITY"
            } else {
                "SANDBOX_ROLE_PREFIX"
            };
            assert!(err.contains(says) && err.contains(var), "{flag} {bad}: {err}");
        }
    }

    #[test]
    fn system_and_platform_namespaces_are_refused() {
        let c = parse(&[
            "--deployment-domain",
            "example.com",
            "--platform-namespace",
            "platform",
            "--ingress-namespace",
            "traefik",
            "--lease-namespace",
            "leases",
            "--server-service-account",
            "web/server",
        ])
        .unwrap();
        for (ns, says) in [
            ("kube-system", "system namespace"),
            ("default", "system namespace"),
            ("openshift-ingress", "system namespace"),
            ("platform", "PLATFORM_NAMESPACE"),
            ("traefik", "INGRESS_NAMESPACE"),
            ("leases", "LEASE_NAMESPACE"),
            ("gateway-system", "GATEWAY_NAMESPACE"),
            ("web", "SERVER_SERVICE_ACCOUNT"),
        ] {
            let why = c
                .namespace_refusal(ns)
                .unwrap_or_else(|| panic!("{ns} must be refused"));
            assert!(why.contains(says) && why.contains(ns), "{why}");
        }
        assert_eq!(c.namespace_refusal("sandbox-alice"), None);
    }
}
