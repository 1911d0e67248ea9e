//! The settings validation and the build read, each parsed by one function here. Both binaries
//! flatten [`Settings`] into their configuration (the values both read: the server to check and
//! preview what the controller will build); the controller also flattens [`BuildSettings`], and
//! the server's offline preview builds with its defaults.
//!
//! A parser's error names the problem and what to write; clap adds the variable's name.

use clap::Args;

/// The values both binaries read, with the same meaning and the same rules.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct Settings {
    /// Base domain of app hosts: `<user-id>-<app>.<DEPLOYMENT_DOMAIN>`. The server and the
    /// controller must be given the same one.
    #[arg(long, env = "DEPLOYMENT_DOMAIN", value_parser = parse_domain)]
    pub deployment_domain: String,

    /// Namespace of system and public Templates, searched when a templateRef names no namespace
    /// and the Template is not in the deployment's own namespace.
    #[arg(long, env = "PLATFORM_NAMESPACE", default_value = DEFAULT_PLATFORM_NAMESPACE, value_parser = parse_name)]
    pub platform_namespace: String,

    /// ClusterSecretStore of the External Secrets Operator; when set, each UserDeployment gets an
    /// ExternalSecret and the server writes no Secrets. Empty: containers read the Kubernetes
    /// Secret the server writes.
    #[arg(long, env = "CLUSTER_SECRET_STORE", default_value = "", value_parser = parse_optional_name)]
    pub cluster_secret_store: String,

    /// Comma-separated image registries tenants may use (e.g. `ghcr.io,docker.io`); empty: any.
    /// The server refuses other images when a deployment is created; the controller when it is
    /// reconciled (with the same message).
    #[arg(long, env = "ALLOWED_REGISTRIES", default_value = "", value_parser = parse_registries)]
    pub allowed_registries: Registries,

    /// Scheme of the apps' URLs (`https` or `http`): what the gateway serves them on.
    #[arg(long, env = "APP_URL_SCHEME", default_value = "https", value_parser = parse_scheme)]
    pub app_url_scheme: String,

    /// Port of the apps' URLs (`<scheme>://<host>:<port>`), for a gateway that is not on the
    /// scheme's default port (e.g. 8088 on a laptop); empty: none.
    #[arg(long, env = "APP_URL_PORT", default_value = "", value_parser = parse_port)]
    pub app_url_port: UrlPort,
}

/// Default of `PLATFORM_NAMESPACE`.
pub const DEFAULT_PLATFORM_NAMESPACE: &str = "k8s-scheduler";

impl Settings {
    /// Settings with the defaults and this deployment domain (tests, examples).
    pub fn with_domain(deployment_domain: &str) -> Settings {
        Settings {
            deployment_domain: parse_domain(deployment_domain).unwrap_or_else(|e| panic!("{e}")),
            platform_namespace: DEFAULT_PLATFORM_NAMESPACE.into(),
            cluster_secret_store: String::new(),
            allowed_registries: Registries::default(),
            app_url_scheme: "https".into(),
            app_url_port: UrlPort(None),
        }
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
}

/// How the controller builds routes, policies and bindings: read by the controller only (the
/// server's offline preview builds with [`BuildSettings::default`]).
#[derive(Args, Debug, Clone, PartialEq)]
pub struct BuildSettings {
    /// Skip NetworkPolicy creation (clusters without NetworkPolicy support).
    #[arg(long, env = "DISABLE_NETWORK_POLICIES", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub disable_network_policies: bool,

    /// How public apps are routed: `auto` (decided at start-up: Gateway API HTTPRoutes when the
    /// cluster serves `gateway.networking.k8s.io/v1` HTTPRoute, else Ingresses), `gateway` or
    /// `ingress`. After start-up this holds the mode in use (`gateway` or `ingress`).
    #[arg(long, env = "ROUTING", default_value = "auto", value_parser = parse_routing)]
    pub routing: Routing,

    /// Name of the platform Gateway the apps' HTTPRoutes attach to (ROUTING gateway).
    #[arg(long, env = "GATEWAY_NAME", default_value = DEFAULT_GATEWAY_NAME, value_parser = parse_subdomain)]
    pub gateway_name: String,

    /// Namespace of the platform Gateway.
    #[arg(long, env = "GATEWAY_NAMESPACE", default_value = DEFAULT_GATEWAY_NAMESPACE, value_parser = parse_name)]
    pub gateway_namespace: String,

    /// Listener of the Gateway the HTTPRoutes attach to (their parentRef's `sectionName`);
    /// empty: every listener that admits them.
    #[arg(long, env = "GATEWAY_LISTENER", default_value = "", value_parser = parse_optional_subdomain)]
    pub gateway_listener: String,

    /// Namespace of the gateway or ingress controller's pods (the proxies), allowed through the
    /// sandboxes' NetworkPolicies to reach public apps.
    #[arg(long, env = "INGRESS_NAMESPACE", default_value = DEFAULT_GATEWAY_NAMESPACE, value_parser = parse_name)]
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

    /// cert-manager ClusterIssuer named in the Ingress annotation; empty: no annotation.
    #[arg(long, env = "CERT_MANAGER_ISSUER", default_value = "", value_parser = parse_optional_name)]
    pub cert_manager_issuer: String,

    /// The HTTP server's ServiceAccount, `namespace/name`: each sandbox namespace gets a RoleBinding
    /// granting it SERVER_SANDBOX_CLUSTER_ROLE there (it reads the apps' pods and their logs, and
    /// writes the apps' Secrets unless a ClusterSecretStore does), so the server can do that in
    /// sandbox namespaces and nowhere else. Empty: no RoleBinding.
    #[arg(long, env = "SERVER_SERVICE_ACCOUNT", default_value = "", value_parser = parse_service_account)]
    pub server_service_account: String,

    /// ClusterRole bound to the server (SERVER_SERVICE_ACCOUNT) in each sandbox namespace.
    #[arg(
        long,
        env = "SERVER_SANDBOX_CLUSTER_ROLE",
        default_value = DEFAULT_SERVER_SANDBOX_CLUSTER_ROLE,
        value_parser = parse_subdomain
    )]
    pub server_sandbox_cluster_role: String,
}

/// Default of `GATEWAY_NAME`.
pub const DEFAULT_GATEWAY_NAME: &str = "k8s-scheduler";
/// Default of `GATEWAY_NAMESPACE` and `INGRESS_NAMESPACE`.
pub const DEFAULT_GATEWAY_NAMESPACE: &str = "gateway-system";
/// Default of `SERVER_SANDBOX_CLUSTER_ROLE`.
pub const DEFAULT_SERVER_SANDBOX_CLUSTER_ROLE: &str = "k8s-scheduler-server-sandbox";

impl Default for BuildSettings {
    /// The flags' defaults (a unit test keeps the two equal).
    fn default() -> Self {
        BuildSettings {
            disable_network_policies: false,
            routing: Routing::Auto,
            gateway_name: DEFAULT_GATEWAY_NAME.into(),
            gateway_namespace: DEFAULT_GATEWAY_NAMESPACE.into(),
            gateway_listener: String::new(),
            ingress_namespace: DEFAULT_GATEWAY_NAMESPACE.into(),
            ingress_class: String::new(),
            ingress_tls_secret: String::new(),
            cert_manager_issuer: String::new(),
            server_service_account: String::new(),
            server_sandbox_cluster_role: DEFAULT_SERVER_SANDBOX_CLUSTER_ROLE.into(),
        }
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

/// The port of the apps' URLs, if not the scheme's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPort(pub Option<u16>);

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

/// `ROUTING`.
pub fn parse_routing(s: &str) -> Result<Routing, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(Routing::Auto),
        "gateway" => Ok(Routing::Gateway),
        "ingress" => Ok(Routing::Ingress),
        other => Err(format!(
            "{other:?} is not a routing mode; use auto (Gateway API when the cluster serves it, else Ingress), gateway or ingress"
        )),
    }
}

/// `APP_URL_SCHEME`.
pub fn parse_scheme(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "https" => Ok("https".into()),
        "http" => Ok("http".into()),
        other => Err(format!("{other:?} is not a URL scheme of apps; use https or http")),
    }
}

/// `APP_URL_PORT`.
pub fn parse_port(s: &str) -> Result<UrlPort, String> {
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
/// Gateways, listeners, IngressClasses and ClusterRoles.
pub fn parse_subdomain(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| crds::is_dns_label(l, 63)) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a DNS subdomain (lower-case letters, digits, '-' and '.')"
        ))
    }
}

/// A DNS subdomain or nothing.
pub fn parse_optional_subdomain(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Ok(String::new())
    } else {
        parse_subdomain(s)
    }
}

/// `namespace/name` of a ServiceAccount, or nothing.
pub fn parse_service_account(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    match s.split_once('/') {
        Some((ns, name)) if crds::is_dns_label(ns, 63) && parse_subdomain(name).is_ok() => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not namespace/name of a ServiceAccount, e.g. k8s-scheduler/k8s-scheduler-server"
        )),
    }
}

/// A boolean: `true`/`1`/`yes` or `false`/`0`/`no`/empty, any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean; use true or false")),
    }
}

/// `DEPLOYMENT_DOMAIN`: a domain name, lower-cased, without a trailing dot, short enough that
/// every host `<user-id>-<app>.<domain>` fits in 253 characters.
pub fn parse_domain(s: &str) -> Result<String, String> {
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

/// A DNS label (a namespace or object name).
pub fn parse_name(s: &str) -> Result<String, String> {
    if crds::is_dns_label(s, 63) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a DNS label (lower-case letters, digits and '-')"))
    }
}

/// A DNS label or nothing.
pub fn parse_optional_name(s: &str) -> Result<String, String> {
    if s.is_empty() { Ok(String::new()) } else { parse_name(s) }
}

/// `ALLOWED_REGISTRIES`: comma-separated registry hosts.
pub fn parse_registries(s: &str) -> Result<Registries, String> {
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
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Both {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        build: BuildSettings,
    }

    fn parse(args: &[&str]) -> Result<Both, String> {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Both::try_parse_from(all).map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_the_flags_defaults() {
        let both = parse(&["--deployment-domain", "Example.COM."]).unwrap();
        assert_eq!(both.build, BuildSettings::default());
        assert_eq!(both.settings, Settings::with_domain("example.com"));
        assert!(both.settings.allowed_registries.allows("anything/at:all"));
    }

    #[test]
    fn invalid_values_name_the_problem_and_the_variable() {
        for (flag, value, variable, says) in [
            (
                "--deployment-domain",
                "bad_domain!",
                "DEPLOYMENT_DOMAIN",
                "not a DNS label",
            ),
            (
                "--disable-network-policies",
                "maybe",
                "DISABLE_NETWORK_POLICIES",
                "not a boolean",
            ),
            (
                "--allowed-registries",
                "ghcr.io/x",
                "ALLOWED_REGISTRIES",
                "not a registry host",
            ),
            (
                "--cluster-secret-store",
                "Vault Backend",
                "CLUSTER_SECRET_STORE",
                "not a DNS label",
            ),
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
            (
                "--server-service-account",
                "web",
                "SERVER_SERVICE_ACCOUNT",
                "namespace/name",
            ),
            (
                "--server-sandbox-cluster-role",
                "",
                "SERVER_SANDBOX_CLUSTER_ROLE",
                "not a DNS subdomain",
            ),
        ] {
            let domain = if flag == "--deployment-domain" {
                value
            } else {
                "example.com"
            };
            let mut args = vec!["--deployment-domain", domain];
            if flag != "--deployment-domain" {
                args.extend([flag, value]);
            }
            let err = parse(&args).unwrap_err();
            assert!(err.contains(variable) && err.contains(says), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn app_urls() {
        let s = Settings::with_domain("example.com");
        assert_eq!(s.app_url("u-shop.example.com"), "https://u-shop.example.com");
        assert!(!s.plain_http());
        let s = parse(&[
            "--deployment-domain",
            "localhost",
            "--app-url-scheme",
            "http",
            "--app-url-port",
            "8088",
        ])
        .unwrap()
        .settings;
        assert_eq!(s.app_url("u-shop.localhost"), "http://u-shop.localhost:8088");
        assert!(s.plain_http());
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
