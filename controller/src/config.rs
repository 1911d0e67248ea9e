//! Controller configuration, from flags or environment variables, validated in one place.
//! A missing or invalid value stops start-up with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The k8s-scheduler operator: reconciles UserSandbox, Template and UserDeployment resources.
#[derive(Parser, Debug, Clone)]
#[command(name = "controller", version, about)]
pub struct Config {
    /// Base domain of app hosts: `<user-id>-<app>.<DEPLOYMENT_DOMAIN>`. Must match the server's.
    #[arg(long, env = "DEPLOYMENT_DOMAIN", value_parser = parse_domain)]
    pub deployment_domain: String,

    /// ClusterSecretStore of the External Secrets Operator; when set, each UserDeployment gets an
    /// ExternalSecret. Empty: containers read the Kubernetes Secret named in the spec.
    #[arg(long, env = "CLUSTER_SECRET_STORE", default_value = "", value_parser = parse_optional_name)]
    pub cluster_secret_store: String,

    /// Skip NetworkPolicy creation (clusters without NetworkPolicy support).
    #[arg(long, env = "DISABLE_NETWORK_POLICIES", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub disable_network_policies: bool,

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

    /// How public apps are routed: `auto` (decided at start-up: Gateway API HTTPRoutes when the
    /// cluster serves `gateway.networking.k8s.io/v1` HTTPRoute, else Ingresses), `gateway` or
    /// `ingress`. After start-up this holds the mode in use (`gateway` or `ingress`).
    #[arg(long, env = "ROUTING", default_value = "auto", value_parser = parse_routing)]
    pub routing: Routing,

    /// Name of the platform Gateway the apps' HTTPRoutes attach to (ROUTING gateway).
    #[arg(long, env = "GATEWAY_NAME", default_value = "k8s-scheduler", value_parser = parse_subdomain)]
    pub gateway_name: String,

    /// Namespace of the platform Gateway.
    #[arg(long, env = "GATEWAY_NAMESPACE", default_value = "gateway-system", value_parser = parse_name)]
    pub gateway_namespace: String,

    /// Listener of the Gateway the HTTPRoutes attach to (their parentRef's `sectionName`);
    /// empty: every listener that admits them.
    #[arg(long, env = "GATEWAY_LISTENER", default_value = "", value_parser = parse_optional_subdomain)]
    pub gateway_listener: String,

    /// Namespace of the gateway or ingress controller's pods (the proxies), allowed through the
    /// sandboxes' NetworkPolicies to reach public apps.
    #[arg(long, env = "INGRESS_NAMESPACE", default_value = "gateway-system", value_parser = parse_name)]
    pub ingress_namespace: String,

    /// IngressClass of the apps' Ingresses (ROUTING ingress); empty: no `ingressClassName`, the
    /// cluster's default IngressClass serves them.
    #[arg(long, env = "INGRESS_CLASS", default_value = "", value_parser = parse_optional_subdomain)]
    pub ingress_class: String,

    /// TLS Secret of the apps' Ingresses (e.g. a wildcard certificate); empty: one per app,
    /// `<name>-tls`, issued by cert-manager when `CERT_MANAGER_ISSUER` is set. Ingresses get no
    /// TLS section with `APP_URL_SCHEME=http`. (HTTPRoutes have no TLS of their own: the Gateway's
    /// listener holds one wildcard certificate.)
    #[arg(long, env = "INGRESS_TLS_SECRET", default_value = "", value_parser = parse_optional_name)]
    pub ingress_tls_secret: String,

    /// Scheme of the apps' URLs in status (`https` or `http`): what the gateway serves them on.
    #[arg(long, env = "APP_URL_SCHEME", default_value = "https", value_parser = parse_scheme)]
    pub app_url_scheme: String,

    /// Port of the apps' URLs in status (`<scheme>://<host>:<port>`), for a gateway that is not
    /// on the scheme's default port (e.g. 8088 on a laptop); empty: none.
    #[arg(long, env = "APP_URL_PORT", default_value = "", value_parser = parse_port)]
    pub app_url_port: UrlPort,

    /// Whether the cluster serves HTTPRoute v1 (found at start-up; then the controller watches
    /// and prunes HTTPRoutes in either mode).
    #[arg(skip)]
    pub http_routes_served: bool,

    /// The HTTP server's ServiceAccount, `namespace/name`: each sandbox namespace gets a RoleBinding
    /// granting it SERVER_SECRETS_CLUSTER_ROLE there (it writes the apps' Secrets), so the server
    /// can touch Secrets in sandbox namespaces and nowhere else. Empty: no RoleBinding.
    #[arg(long, env = "SERVER_SERVICE_ACCOUNT", default_value = "", value_parser = parse_service_account)]
    pub server_service_account: String,

    /// ClusterRole bound to the server in each sandbox namespace.
    #[arg(
        long,
        env = "SERVER_SECRETS_CLUSTER_ROLE",
        default_value = "k8s-scheduler-server-secrets"
    )]
    pub server_secrets_cluster_role: String,

    /// cert-manager ClusterIssuer named in the Ingress annotation; empty: no annotation.
    #[arg(long, env = "CERT_MANAGER_ISSUER", default_value = "", value_parser = parse_optional_name)]
    pub cert_manager_issuer: String,

    /// Comma-separated image registries tenants may use (e.g. `ghcr.io,docker.io`); empty: any.
    #[arg(long, env = "ALLOWED_REGISTRIES", default_value = "", value_parser = parse_registries)]
    pub allowed_registries: Registries,

    /// Namespace of system and public Templates, searched when a templateRef names no namespace
    /// and the Template is not in the deployment's own namespace.
    #[arg(long, env = "PLATFORM_NAMESPACE", default_value = "k8s-scheduler", value_parser = parse_name)]
    pub platform_namespace: String,

    /// Reconciles run at once per resource kind.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Fill the UserDeployment and child caches with streaming lists (watch with
    /// `sendInitialEvents`, Kubernetes 1.32+ by default): objects arrive one at a time instead of
    /// in pages of hundreds, which keeps the memory peak of a start or relist low. `false` for
    /// clusters without the WatchList feature: paged lists of 100.
    #[arg(long, env = "WATCH_STREAMING_LISTS", default_value_t = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub streaming_lists: bool,

    /// Kubeconfig file; default: in-cluster configuration or `KUBECONFIG`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
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
        let server_ns = self.server_service_account.split_once('/').map(|(ns, _)| ns);
        [
            ("PLATFORM_NAMESPACE", Some(self.platform_namespace.as_str())),
            ("INGRESS_NAMESPACE", Some(self.ingress_namespace.as_str())),
            ("GATEWAY_NAMESPACE", Some(self.gateway_namespace.as_str())),
            ("LEASE_NAMESPACE", Some(self.lease_namespace.as_str())),
            ("SERVER_SERVICE_ACCOUNT", server_ns),
        ]
        .into_iter()
        .find(|(_, ns)| *ns == Some(namespace))
        .map(|(var, _)| format!("namespace {namespace} is the platform's own ({var}); choose another spec.namespace"))
    }

    /// The public URL of an app whose host is `host`: `<scheme>://<host>[:<port>]`.
    pub fn app_url(&self, host: &str) -> String {
        match self.app_url_port.0 {
            Some(port) => format!("{}://{host}:{port}", self.app_url_scheme),
            None => format!("{}://{host}", self.app_url_scheme),
        }
    }

    /// Whether apps are served over plain HTTP (`APP_URL_SCHEME=http`): no TLS on their routes.
    pub fn plain_http(&self) -> bool {
        self.app_url_scheme == "http"
    }

    /// A configuration for unit tests.
    pub fn for_tests() -> Self {
        Config::try_parse_from(["controller", "--deployment-domain", "example.com"]).expect("test config")
    }
}

/// How public apps are routed (`ROUTING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Decided at start-up from what the cluster serves; until then (and where no cluster is
    /// asked, e.g. the HTTP server's offline preview) apps are built with an Ingress.
    #[default]
    Auto,
    /// A Gateway API HTTPRoute per public app, attached to the platform Gateway.
    Gateway,
    /// An Ingress per public app.
    Ingress,
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Routing::Auto => "auto",
            Routing::Gateway => "gateway",
            Routing::Ingress => "ingress",
        })
    }
}

fn parse_routing(s: &str) -> Result<Routing, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(Routing::Auto),
        "gateway" => Ok(Routing::Gateway),
        "ingress" => Ok(Routing::Ingress),
        other => Err(format!(
            "{other:?} is not a routing mode; use auto (Gateway API when the cluster serves it, else Ingress), gateway or ingress"
        )),
    }
}

fn parse_scheme(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "https" => Ok("https".into()),
        "http" => Ok("http".into()),
        other => Err(format!("{other:?} is not a URL scheme of apps; use https or http")),
    }
}

/// The port of the apps' URLs, if not the scheme's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPort(pub Option<u16>);

fn parse_port(s: &str) -> Result<UrlPort, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(UrlPort(None));
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(UrlPort(Some(p))),
        _ => Err(format!(
            "{s:?} is not a port (1-65535); leave it empty for the scheme's default"
        )),
    }
}

/// A DNS subdomain (RFC 1123): dot-separated DNS labels, at most 253 characters; the names of
/// Gateways, listeners and IngressClasses.
fn parse_subdomain(s: &str) -> Result<String, String> {
    if s.len() <= 253 && s.split('.').all(|l| crds::is_dns_label(l, 63)) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a DNS subdomain (lower-case letters, digits, '-' and '.')"
        ))
    }
}

fn parse_optional_subdomain(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Ok(String::new())
    } else {
        parse_subdomain(s)
    }
}

fn parse_service_account(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    match s.split_once('/') {
        Some((ns, name)) if crds::is_dns_label(ns, 63) && crds::is_dns_label(name, 253) => Ok(s.to_string()),
        _ => Err("expected namespace/name of a ServiceAccount, e.g. k8s-scheduler/k8s-scheduler-server".into()),
    }
}

/// Image registries tenants may pull from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registries(pub Vec<String>);

impl Registries {
    /// Whether `image` comes from an allowed registry (always, when the list is empty).
    pub fn allows(&self, image: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|r| image_registry(image) == r.as_str())
    }
}

/// Registry of an image reference, Docker's way: the first path part when it looks like a host
/// (has a `.` or `:` or is `localhost`), otherwise `docker.io`.
pub fn image_registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean; use true or false")),
    }
}

fn parse_domain(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
    if s.is_empty() {
        return Err("must not be empty; set it to the base domain of app hosts, e.g. example.com".into());
    }
    if s.len() > 253 - 64 {
        return Err(format!(
            "{s:?} is too long: hosts <user-id>-<app>.{s} must fit in 253 characters"
        ));
    }
    if let Some(bad) = s.split('.').find(|l| !crds::is_dns_label(l, 63)) {
        return Err(format!("{s:?} is not a domain name: label {bad:?} is not a DNS label"));
    }
    Ok(s)
}

fn parse_name(s: &str) -> Result<String, String> {
    if crds::is_dns_label(s, 63) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a DNS label (lower-case letters, digits and '-')"))
    }
}

fn parse_optional_name(s: &str) -> Result<String, String> {
    if s.is_empty() { Ok(String::new()) } else { parse_name(s) }
}

fn parse_registries(s: &str) -> Result<Registries, String> {
    let list: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = list.iter().find(|r| r.contains('/') || r.contains(' ')) {
        return Err(format!(
            "{bad:?} is not a registry host (e.g. ghcr.io or registry.example.com:5000)"
        ));
    }
    Ok(Registries(list))
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
        let err = parse(&[
            "--deployment-domain",
            "example.com",
            "--disable-network-policies",
            "maybe",
        ])
        .unwrap_err();
        assert!(err.contains("not a boolean"), "{err}");
        let err = parse(&[
            "--deployment-domain",
            "example.com",
            "--allowed-registries",
            "ghcr.io/x",
        ])
        .unwrap_err();
        assert!(err.contains("not a registry host"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = parse(&["--deployment-domain", "Example.COM."]).unwrap();
        assert_eq!(c.deployment_domain, "example.com");
        assert!(!c.disable_network_policies);
        assert!(c.leader_elect);
        assert_eq!(c.cluster_secret_store, "");
        assert_eq!(c.watch_namespace, "");
        assert!(c.allowed_registries.allows("anything/at:all"));
        let c = parse(&["--deployment-domain", "localhost"]).unwrap();
        assert_eq!(c.deployment_domain, "localhost");
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

    #[test]
    fn routing_defaults_name_no_ingress_controller() {
        let c = parse(&["--deployment-domain", "example.com"]).unwrap();
        assert_eq!(c.routing, Routing::Auto);
        assert_eq!(c.ingress_class, "", "no class: the cluster's default IngressClass");
        assert_eq!(c.ingress_namespace, "gateway-system");
        assert_eq!(
            (
                c.gateway_name.as_str(),
                c.gateway_namespace.as_str(),
                c.gateway_listener.as_str()
            ),
            ("k8s-scheduler", "gateway-system", "")
        );
        assert_eq!(c.app_url("u-shop.example.com"), "https://u-shop.example.com");
        assert!(!c.plain_http());
        let c = parse(&[
            "--deployment-domain",
            "localhost",
            "--routing",
            "Gateway",
            "--gateway-listener",
            "http",
            "--ingress-class",
            "traefik.io",
            "--app-url-scheme",
            "http",
            "--app-url-port",
            "8088",
        ])
        .unwrap();
        assert_eq!(c.routing, Routing::Gateway);
        assert_eq!(c.gateway_listener, "http");
        assert_eq!(c.ingress_class, "traefik.io");
        assert_eq!(c.app_url("u-shop.localhost"), "http://u-shop.localhost:8088");
        assert!(c.plain_http());
    }

    #[test]
    fn bad_routing_settings_name_the_variable() {
        for (flag, value, variable, says) in [
            ("--routing", "nginx", "ROUTING", "use auto"),
            ("--app-url-scheme", "ftp", "APP_URL_SCHEME", "use https or http"),
            ("--app-url-port", "0", "APP_URL_PORT", "not a port"),
            ("--app-url-port", "70000", "APP_URL_PORT", "not a port"),
            ("--app-url-port", "eighty", "APP_URL_PORT", "not a port"),
            ("--gateway-name", "My_Gateway", "GATEWAY_NAME", "not a DNS subdomain"),
            (
                "--gateway-namespace",
                "gw.system",
                "GATEWAY_NAMESPACE",
                "not a DNS label",
            ),
            ("--gateway-listener", "HTTPS", "GATEWAY_LISTENER", "not a DNS subdomain"),
            ("--ingress-class", "nginx_", "INGRESS_CLASS", "not a DNS subdomain"),
        ] {
            let err = parse(&["--deployment-domain", "example.com", flag, value]).unwrap_err();
            assert!(err.contains(variable) && err.contains(says), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn registries() {
        let r = parse_registries("ghcr.io, registry.example.com:5000").unwrap();
        assert!(r.allows("ghcr.io/org/app:1"));
        assert!(r.allows("registry.example.com:5000/app"));
        assert!(!r.allows("nginx:1.27"));
        assert!(!r.allows("evil.io/ghcr.io/app"));
        assert_eq!(image_registry("nginx"), "docker.io");
        assert_eq!(image_registry("library/nginx"), "docker.io");
        assert_eq!(image_registry("localhost/app"), "localhost");
    }
}
