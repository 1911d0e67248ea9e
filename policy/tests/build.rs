//! Pure tests: children built from YAML fixtures, without a cluster. One test per template shape
//! and one per forbidden field.

use std::collections::BTreeMap;

use crds::conditions::reasons;
use crds::{Template, UserDeployment, UserSandbox};
use k8s_openapi::api::apps::v1::Deployment;
use policy::build::{self, DEPLOYMENT_LABEL};
use policy::settings::{BuildSettings, Registries, Routing, Settings, UrlPort};
use policy::validate::{validate_deployment, validate_template};

/// What the controller's configuration holds for validation and the build.
#[derive(Clone)]
struct Config {
    settings: Settings,
    build: BuildSettings,
}

impl Config {
    fn for_tests() -> Self {
        Config {
            settings: Settings::with_domain("example.com"),
            build: BuildSettings::default(),
        }
    }
}

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/tests/fixtures/{name}",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn deployment(yaml: &str) -> UserDeployment {
    let mut ud: UserDeployment = serde_yaml::from_str(yaml).expect("deployment yaml");
    ud.metadata.uid = Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into());
    ud
}

fn ud_for(template: &str, extra: &str) -> UserDeployment {
    deployment(&format!(
        "apiVersion: k8s-scheduler.io/v1alpha1\nkind: UserDeployment\nmetadata:\n  name: my-app\n  namespace: sandbox-alice\nspec:\n  templateRef:\n    name: {template}\n{extra}"
    ))
}

fn container(d: &Deployment) -> &k8s_openapi::api::core::v1::Container {
    &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
}

fn env_of(d: &Deployment) -> BTreeMap<String, String> {
    container(d)
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

fn assert_restricted(d: &Deployment) {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(
        pod.service_account_name.is_none(),
        "tenants never choose a service account"
    );
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
    let sc = container(d)
        .security_context
        .as_ref()
        .expect("container security context");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert!(sc.capabilities.as_ref().unwrap().add.is_none());
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    for c in &pod.containers {
        assert!(c.ports.iter().flatten().all(|p| p.host_port.is_none()), "no host ports");
    }
}

#[test]
fn single_public_service() {
    let t: Template = fixture("template-web.yaml");
    let config = Config::for_tests();
    assert!(validate_template(&t.spec, &config.settings).is_empty());
    let ud = ud_for("web", "  parameters:\n    GREETING: hi\n");
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).expect("valid");
    assert_eq!(vd.url().as_deref(), Some("https://alice-my-app.example.com"));
    let c = build::deployment::build(&vd, &config.settings, &config.build);
    assert_eq!(c.deployments.len(), 1);
    assert_eq!(c.services.len(), 1);
    assert!(c.config_maps.is_empty());
    assert!(c.external_secrets.is_empty());
    let d = &c.deployments[0];
    assert_eq!(d.metadata.name.as_deref(), Some("my-app-web"));
    assert_restricted(d);
    assert_eq!(env_of(d).get("GREETING").map(String::as_str), Some("hi"));
    let res = container(d).resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "100m");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "256Mi");
    assert_eq!(
        container(d)
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    // Readiness is probed every 2 s (a missed first probe costs 2 s, not 10); liveness every 10 s.
    let web = container(d);
    assert_eq!(web.readiness_probe.as_ref().unwrap().period_seconds, Some(2));
    assert_eq!(web.liveness_probe.as_ref().unwrap().period_seconds, Some(10));
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("UserDeployment", "my-app", Some(true))
    );
    assert_eq!(d.metadata.labels.as_ref().unwrap()[DEPLOYMENT_LABEL], "my-app");

    let svc = &c.services[0];
    assert_eq!(svc.spec.as_ref().unwrap().type_.as_deref(), Some("ClusterIP"));
    let ing = c.ingress.as_ref().expect("public app has an ingress");
    let spec = ing.spec.as_ref().unwrap();
    assert_eq!(
        spec.ingress_class_name, None,
        "no INGRESS_CLASS: the cluster's default IngressClass, no ingress-nginx"
    );
    assert!(c.http_route.is_none(), "ROUTING unresolved (auto) builds an Ingress");
    assert_eq!(
        spec.rules.as_ref().unwrap()[0].host.as_deref(),
        Some("alice-my-app.example.com")
    );
    assert_eq!(
        spec.tls.as_ref().unwrap()[0].hosts.as_deref(),
        Some(&["alice-my-app.example.com".to_string()][..])
    );
    assert!(
        ing.metadata.annotations.is_none(),
        "no issuer configured, no annotation"
    );
    let np = c.network_policy.as_ref().expect("network policy");
    let from = &np.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
        .from
        .as_ref()
        .unwrap();
    assert_eq!(from.len(), 2, "own sandbox + ingress controller");
    assert_eq!(
        from[1]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "gateway-system",
        "INGRESS_NAMESPACE's default"
    );
}

/// A public app's children in gateway mode.
fn gateway_children(config: &Config) -> build::deployment::DeploymentChildren {
    let t: Template = fixture("template-two-service.yaml");
    let ud = ud_for(
        "blog",
        "  parameters:\n    SITE_TITLE: My blog\n  secretRefs: [DB_PASSWORD]\n",
    );
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).expect("valid");
    build::deployment::build(&vd, &config.settings, &config.build)
}

#[test]
fn gateway_mode_routes_the_public_service_with_an_httproute() {
    let mut config = Config::for_tests();
    config.build.routing = Routing::Gateway;
    let c = gateway_children(&config);
    assert!(c.ingress.is_none(), "no Ingress in gateway mode");
    let route = c.http_route.as_ref().expect("public app has an HTTPRoute");
    let v = serde_json::to_value(route).unwrap();
    assert_eq!(v["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(v["kind"], "HTTPRoute");
    assert_eq!(v["metadata"]["name"], "my-app", "named like the Ingress");
    assert_eq!(v["metadata"]["namespace"], "sandbox-alice");
    assert_eq!(v["metadata"]["labels"][DEPLOYMENT_LABEL], "my-app");
    assert_eq!(
        v["metadata"]["ownerReferences"][0]["kind"], "UserDeployment",
        "owned, so it goes with the app"
    );
    assert!(v.get("status").is_none(), "status is not applied");
    assert_eq!(
        v["spec"],
        serde_json::json!({
            "parentRefs": [{ "group": "gateway.networking.k8s.io", "kind": "Gateway",
                             "name": "k8s-scheduler", "namespace": "gateway-system" }],
            "hostnames": ["alice-my-app.example.com"],
            "rules": [{
                "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                "backendRefs": [{ "group": "", "kind": "Service", "name": "my-app-web", "port": 3000 }],
            }],
        }),
        "no TLS per app: the Gateway's listener holds the wildcard certificate"
    );

    // A named Gateway and listener.
    config.build.gateway_name = "platform".into();
    config.build.gateway_namespace = "traefik".into();
    config.build.gateway_listener = "websecure".into();
    let route = gateway_children(&config).http_route.unwrap();
    assert_eq!(
        serde_json::to_value(&route.spec.parent_refs).unwrap(),
        serde_json::json!([{ "group": "gateway.networking.k8s.io", "kind": "Gateway",
                             "name": "platform", "namespace": "traefik", "sectionName": "websecure" }])
    );

    // Internal: no route at all.
    let t: Template = fixture("template-internal-worker.yaml");
    let ud = ud_for("worker", "  visibility: internal\n");
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).unwrap();
    let c = build::deployment::build(&vd, &config.settings, &config.build);
    assert!(c.http_route.is_none() && c.ingress.is_none());
}

#[test]
fn the_url_carries_the_configured_scheme_and_port() {
    let t: Template = fixture("template-web.yaml");
    let ud = ud_for("web", "");
    let mut config = Config::for_tests();
    config.settings.deployment_domain = "localhost".into();
    config.settings.app_url_scheme = "http".into();
    config.settings.app_url_port = UrlPort(Some(8088));
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).unwrap();
    assert_eq!(vd.url().as_deref(), Some("http://alice-my-app.localhost:8088"));
    assert_eq!(vd.host, "alice-my-app.localhost", "the host has no port");
    // Plain HTTP: the Ingress has no TLS section and no certificate annotation.
    config.build.cert_manager_issuer = "letsencrypt".into();
    config.build.ingress_class = "traefik".into();
    let ing = build::deployment::build(&vd, &config.settings, &config.build)
        .ingress
        .unwrap();
    let spec = ing.spec.as_ref().unwrap();
    assert!(spec.tls.is_none(), "no TLS with APP_URL_SCHEME=http");
    assert!(ing.metadata.annotations.is_none());
    assert_eq!(spec.ingress_class_name.as_deref(), Some("traefik"));
    // HTTPS (the default) keeps the TLS section and the issuer; a port is kept too.
    config.settings.app_url_scheme = "https".into();
    config.settings.app_url_port = UrlPort(Some(8443));
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).unwrap();
    assert_eq!(vd.url().as_deref(), Some("https://alice-my-app.localhost:8443"));
    let ing = build::deployment::build(&vd, &config.settings, &config.build)
        .ingress
        .unwrap();
    assert_eq!(
        ing.spec.as_ref().unwrap().tls.as_ref().unwrap()[0]
            .secret_name
            .as_deref(),
        Some("my-app-tls")
    );
    assert_eq!(
        ing.metadata.annotations.as_ref().unwrap()["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
}

#[test]
fn two_services_with_parameters_and_secrets() {
    let t: Template = fixture("template-two-service.yaml");
    let mut config = Config::for_tests();
    config.settings.cluster_secret_store = "vault-backend".into();
    let ud = ud_for(
        "blog",
        "  parameters:\n    SITE_TITLE: My blog\n  secretRefs: [DB_PASSWORD]\n",
    );
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).expect("valid");
    let c = build::deployment::build(&vd, &config.settings, &config.build);
    assert_eq!(c.deployments.len(), 2);
    assert_eq!(c.services.len(), 2);
    let web = &c.deployments[0];
    let env = env_of(web);
    assert_eq!(env["SITE_TITLE"], "My blog");
    assert_eq!(env["LOG_LEVEL"], "info", "template default");
    assert_eq!(env["WORKERS"], "2");
    assert_eq!(env["DB_HOST"], "blog-db", "fixed service env");
    assert!(!env.contains_key("DB_PASSWORD"), "secret values never in the spec");
    let env_from = container(web).env_from.as_ref().unwrap();
    assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "my-app-secrets");
    for d in &c.deployments {
        assert_restricted(d);
    }
    // Issue 15 item 22: the ExternalSecret merges the scopes in the server's order (user, template,
    // deployment; later wins), each a `dataFrom` extract; each service gets its own scope's.
    let extracts = |es: &kube::api::DynamicObject| -> Vec<String> {
        es.data["spec"]["dataFrom"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["extract"]["key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(c.external_secrets.len(), 3, "the app's Secret and one per service");
    let es = &c.external_secrets[0];
    assert_eq!(es.data["spec"]["secretStoreRef"]["name"], "vault-backend");
    assert_eq!(es.data["spec"]["secretStoreRef"]["kind"], "ClusterSecretStore");
    assert_eq!(es.data["spec"]["target"]["name"], "my-app-secrets");
    assert_eq!(
        extracts(es),
        [
            "users/alice/secrets",
            "users/alice/templates/blog",
            "users/alice/deployments/my-app"
        ]
    );
    // A scope without secrets is skipped, not an error (deletionPolicy Delete, see the build).
    assert_eq!(es.data["spec"]["target"]["deletionPolicy"], "Delete");
    let web = &c.external_secrets[1];
    assert_eq!(web.data["spec"]["target"]["name"], "my-app-web-secrets");
    assert_eq!(extracts(web), ["users/alice/deployments/my-app/services/web"]);
    assert_eq!(
        c.external_secrets[2].data["spec"]["target"]["name"],
        "my-app-db-secrets"
    );
    let own = env_from[1].secret_ref.as_ref().unwrap();
    assert_eq!((own.name.as_str(), own.optional), ("my-app-web-secrets", Some(true)));
    let ing = c.ingress.as_ref().unwrap().spec.clone().unwrap();
    let backend = ing.rules.unwrap()[0].http.clone().unwrap().paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(backend.name, "my-app-web");
    assert_eq!(backend.port.unwrap().number, Some(3000));
}

#[test]
fn config_files_become_a_configmap_and_roll_pods_when_changed() {
    let t: Template = fixture("template-config-files.yaml");
    let config = Config::for_tests();
    let ud = ud_for("proxy", "");
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).expect("valid");
    let c = build::deployment::build(&vd, &config.settings, &config.build);
    assert_eq!(c.config_maps.len(), 1);
    let cm = &c.config_maps[0];
    assert_eq!(cm.metadata.name.as_deref(), Some("my-app-proxy-config"));
    assert_eq!(cm.data.as_ref().unwrap()["file-1"], "gzip on;");
    let d = &c.deployments[0];
    let mounts = container(d).volume_mounts.as_ref().unwrap();
    assert_eq!(mounts[0].mount_path, "/etc/proxy/proxy.conf");
    assert_eq!(mounts[0].read_only, Some(true));
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[build::CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let mut t2 = t.clone();
    t2.spec.services[0].config_files[1].content = "gzip off;".into();
    let vd2 = validate_deployment(&ud, Some(&t2.spec), "alice", &config.settings).unwrap();
    let d2 = &build::deployment::build(&vd2, &config.settings, &config.build).deployments[0];
    assert_ne!(hash(d), hash(d2), "a config change changes the pod template");
}

#[test]
fn internal_app_has_no_ingress_and_only_sandbox_traffic() {
    let t: Template = fixture("template-internal-worker.yaml");
    let mut config = Config::for_tests();
    let ud = ud_for("worker", "  visibility: internal\n  replicas: 3\n");
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).unwrap();
    assert_eq!(vd.url(), None);
    let c = build::deployment::build(&vd, &config.settings, &config.build);
    assert!(c.ingress.is_none());
    config.build.routing = Routing::Gateway;
    assert!(
        build::deployment::build(&vd, &config.settings, &config.build)
            .http_route
            .is_none()
    );
    config.build.routing = Routing::Auto;
    assert_eq!(c.deployments[0].spec.as_ref().unwrap().replicas, Some(3));
    let np = c.network_policy.as_ref().unwrap();
    assert_eq!(
        np.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
            .from
            .as_ref()
            .unwrap()
            .len(),
        1
    );
    config.build.disable_network_policies = true;
    assert!(
        build::deployment::build(&vd, &config.settings, &config.build)
            .network_policy
            .is_none()
    );
}

#[test]
fn services_with_two_or_more_replicas_get_a_disruption_budget() {
    let t: Template = fixture("template-internal-worker.yaml");
    let config = Config::for_tests();
    let children = |extra: &str| {
        let vd = validate_deployment(&ud_for("worker", extra), Some(&t.spec), "alice", &config.settings).unwrap();
        build::deployment::build(&vd, &config.settings, &config.build)
    };
    let c = children("  replicas: 3\n");
    assert_eq!(c.disruption_budgets.len(), 1);
    let pdb = &c.disruption_budgets[0];
    let d = &c.deployments[0];
    assert_eq!(
        pdb.metadata.name, d.metadata.name,
        "named like the Deployment it guards"
    );
    assert_eq!(pdb.metadata.labels, d.metadata.labels);
    assert_eq!(pdb.metadata.owner_references, d.metadata.owner_references);
    let spec = pdb.spec.as_ref().unwrap();
    assert_eq!(
        spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(spec.min_available, None);
    assert_eq!(spec.selector.as_ref(), Some(&d.spec.as_ref().unwrap().selector));
    // One replica: a budget would block every drain. Suspended: nothing to guard.
    assert!(children("  replicas: 1\n").disruption_budgets.is_empty());
    assert!(
        children("  replicas: 3\n  suspend: true\n")
            .disruption_budgets
            .is_empty()
    );
    assert!(
        policy::names::claimed("worker", &["app"], None).contains(&("PodDisruptionBudget", "worker-app".to_string()))
    );
}

#[test]
fn suspended_scales_to_zero_and_image_override_applies() {
    let t: Template = fixture("template-web.yaml");
    let config = Config::for_tests();
    let ud = ud_for(
        "web",
        "  suspend: true\n  imageOverrides:\n    web: ghcr.io/example/web:1.1\n",
    );
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).unwrap();
    let d = &build::deployment::build(&vd, &config.settings, &config.build).deployments[0];
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(container(d).image.as_deref(), Some("ghcr.io/example/web:1.1"));
}

#[test]
fn restarted_at_is_copied_onto_the_pods() {
    let t: Template = fixture("template-web.yaml");
    let config = Config::for_tests();
    let pod_annotation = |extra: &str| {
        let vd = validate_deployment(&ud_for("web", extra), Some(&t.spec), "alice", &config.settings).unwrap();
        let d = build::deployment::build(&vd, &config.settings, &config.build)
            .deployments
            .remove(0);
        let tpl = d.spec.unwrap().template.metadata.unwrap_or_default();
        tpl.annotations
            .unwrap_or_default()
            .get("k8s-scheduler.io/restartedAt")
            .cloned()
    };
    assert_eq!(pod_annotation(""), None);
    assert_eq!(
        pod_annotation("  restartedAt: \"2026-11-25T10:00:00Z\"\n").as_deref(),
        Some("2026-11-25T10:00:00Z")
    );
}

#[test]
fn the_server_may_write_secrets_only_in_sandbox_namespaces() {
    let sb: UserSandbox = fixture("sandbox-alice.yaml");
    let mut config = Config::for_tests();
    assert!(build::sandbox::build(&sb, &config.build).server_role_binding.is_none());
    config.build.server_service_account = "platform/k8s-scheduler-server".into();
    let rb = build::sandbox::build(&sb, &config.build)
        .server_role_binding
        .expect("a RoleBinding");
    assert_eq!(rb.metadata.namespace.as_deref(), Some(sb.spec.namespace.as_str()));
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("ClusterRole", "k8s-scheduler-server-sandbox")
    );
    let subject = &rb.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "k8s-scheduler-server", Some("platform"))
    );
}

#[test]
fn sandbox_children_from_plan() {
    let sb: UserSandbox = fixture("sandbox-alice.yaml");
    let mut config = Config::for_tests();
    let c = build::sandbox::build(&sb, &config.build);
    let labels = c.namespace.metadata.labels.clone().unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce-version"],
        build::sandbox::POD_SECURITY_VERSION
    );
    let hard = c.quota.spec.clone().unwrap().hard.unwrap();
    assert_eq!(hard["requests.cpu"].0, "8", "business plan");
    assert_eq!(hard["services.nodeports"].0, "0");
    assert_eq!(hard["services.loadbalancers"].0, "0");
    assert_eq!(hard["count/userdeployments.k8s-scheduler.io"].0, "10");
    assert_eq!(c.network_policies.len(), 4);
    let allow_ingress = c
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("allow-ingress-controller"))
        .unwrap();
    let selector = allow_ingress
        .spec
        .as_ref()
        .unwrap()
        .pod_selector
        .clone()
        .unwrap()
        .match_labels
        .unwrap();
    assert_eq!(
        selector[build::VISIBILITY_LABEL],
        "public",
        "internal apps stay unreachable from the ingress controller"
    );
    assert_eq!(c.service_account.automount_service_account_token, Some(false));
    config.build.disable_network_policies = true;
    assert!(build::sandbox::build(&sb, &config.build).network_policies.is_empty());
}

#[test]
fn missing_required_parameters_are_reported() {
    let t: Template = fixture("template-two-service.yaml");
    let config = Config::for_tests();
    let err = validate_deployment(
        &ud_for("blog", "  secretRefs: [DB_PASSWORD]\n"),
        Some(&t.spec),
        "alice",
        &config.settings,
    )
    .unwrap_err();
    assert_eq!(err.reason, reasons::MISSING_PARAMETER);
    assert!(err.message.contains("SITE_TITLE"), "{}", err.message);
    let err = validate_deployment(
        &ud_for("blog", "  parameters:\n    SITE_TITLE: x\n"),
        Some(&t.spec),
        "alice",
        &config.settings,
    )
    .unwrap_err();
    assert_eq!(err.reason, reasons::MISSING_PARAMETER);
    assert!(err.message.contains("DB_PASSWORD"), "{}", err.message);
}

#[test]
fn bad_parameter_values_are_rejected() {
    let t: Template = fixture("template-two-service.yaml");
    let config = Config::for_tests();
    for (extra, needle) in [
        (
            "  parameters:\n    SITE_TITLE: x\n    LOG_LEVEL: loud\n  secretRefs: [DB_PASSWORD]\n",
            "LOG_LEVEL",
        ),
        (
            "  parameters:\n    SITE_TITLE: x\n    WORKERS: many\n  secretRefs: [DB_PASSWORD]\n",
            "not a number",
        ),
        ("  parameters:\n    SITE_TITLE: x\n    DB_PASSWORD: hunter2\n", "secret"),
        (
            "  parameters:\n    SITE_TITLE: x\n    NOPE: y\n  secretRefs: [DB_PASSWORD]\n",
            "no parameter \"NOPE\"",
        ),
        (
            "  parameters:\n    SITE_TITLE: x\n  secretRefs: [DB_PASSWORD]\n  imageOverrides:\n    cache: redis\n",
            "imageOverrides",
        ),
    ] {
        let err = validate_deployment(&ud_for("blog", extra), Some(&t.spec), "alice", &config.settings).unwrap_err();
        assert_eq!(err.reason, reasons::INVALID_SPEC, "{extra}");
        assert!(err.message.contains(needle), "{needle}: {}", err.message);
        assert!(
            !err.message.contains("hunter2"),
            "secret values never appear in messages"
        );
    }
}

#[test]
fn registry_allow_list() {
    let t: Template = fixture("template-two-service.yaml");
    let mut config = Config::for_tests();
    config.settings.allowed_registries = Registries(vec!["ghcr.io".into()]);
    let problems = validate_template(&t.spec, &config.settings);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("docker.io") && p.contains("services[1].image")),
        "{problems:?}"
    );
    let err = validate_deployment(
        &ud_for(
            "blog",
            "  parameters:\n    SITE_TITLE: x\n  secretRefs: [DB_PASSWORD]\n",
        ),
        Some(&t.spec),
        "alice",
        &config.settings,
    )
    .unwrap_err();
    assert_eq!(err.reason, reasons::TEMPLATE_INVALID);
    // Inline services: the image override is checked too.
    let inline = deployment(
        "apiVersion: k8s-scheduler.io/v1alpha1\nkind: UserDeployment\nmetadata: {name: x, namespace: sandbox-alice}\nspec:\n  services:\n  - {name: web, image: quay.io/x/y:1, port: 80}\n",
    );
    let err = validate_deployment(&inline, None, "alice", &config.settings).unwrap_err();
    assert_eq!(err.reason, reasons::REGISTRY_NOT_ALLOWED);
    assert!(err.message.contains("quay.io"), "{}", err.message);
}

#[test]
fn host_label_must_fit() {
    let t: Template = fixture("template-web.yaml");
    let config = Config::for_tests();
    let long_user = "u".repeat(60);
    let err = validate_deployment(&ud_for("web", ""), Some(&t.spec), &long_user, &config.settings).unwrap_err();
    assert_eq!(err.reason, reasons::INVALID_SPEC);
    assert!(err.message.contains("63"), "{}", err.message);
}

/// Every field a tenant must not set is unknown to the schema: parsing fails and names it (the
/// apiserver's strict field validation does the same for `kubectl apply`).
#[test]
fn forbidden_fields_are_refused_by_name() {
    let base = |svc_extra: &str, spec_extra: &str| {
        format!(
            "apiVersion: k8s-scheduler.io/v1alpha1\nkind: UserDeployment\nmetadata: {{name: x, namespace: sandbox-alice}}\nspec:\n{spec_extra}  services:\n  - name: web\n    image: ghcr.io/x/y:1\n    port: 80\n{svc_extra}"
        )
    };
    let cases = [
        ("    privileged: true\n", "", "privileged"),
        ("    securityContext: {runAsUser: 0}\n", "", "securityContext"),
        ("    allowPrivilegeEscalation: true\n", "", "allowPrivilegeEscalation"),
        ("    capabilities: {add: [NET_ADMIN]}\n", "", "capabilities"),
        ("    hostNetwork: true\n", "", "hostNetwork"),
        ("    hostPID: true\n", "", "hostPID"),
        ("    hostIPC: true\n", "", "hostIPC"),
        ("    hostPath: /var/run/docker.sock\n", "", "hostPath"),
        ("    hostPort: 80\n", "", "hostPort"),
        ("    volumes: [{name: root, hostPath: {path: /}}]\n", "", "volumes"),
        ("", "  serviceAccountName: admin\n", "serviceAccountName"),
        ("    serviceType: NodePort\n", "", "serviceType"),
        ("", "  serviceType: LoadBalancer\n", "serviceType"),
        ("", "  externalName: evil.example.com\n", "externalName"),
        (
            "",
            "  ingressAnnotations: {nginx.ingress.kubernetes.io/server-snippet: x}\n",
            "ingressAnnotations",
        ),
        ("", "  host: bank.example.com\n", "host"),
    ];
    for (svc_extra, spec_extra, field) in cases {
        let yaml = base(svc_extra, spec_extra);
        let err = serde_yaml::from_str::<UserDeployment>(&yaml)
            .expect_err(field)
            .to_string();
        assert!(err.contains(&format!("unknown field `{field}`")), "{field}: {err}");
    }
    // The same document without the forbidden field parses.
    serde_yaml::from_str::<UserDeployment>(&base("", "")).expect("base document is valid");
}

/// Issue 15 item 11: map values longer than the schema allows (objects may predate the limits,
/// which the generated CRDs had lost) are refused by the controller too, naming the field.
#[test]
fn oversized_map_values_are_refused() {
    let config = Config::for_tests();
    let big = "x".repeat(crds::MAX_VALUE_LEN + 1);
    let t: Template = fixture("template-web.yaml");
    let ud = ud_for("web", &format!("  parameters:\n    GREETING: {big}\n"));
    let err = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).unwrap_err();
    assert_eq!(err.reason, reasons::INVALID_SPEC);
    assert!(
        err.message.contains("spec.parameters.GREETING") && err.message.contains("4096"),
        "{}",
        err.message
    );
    assert!(!err.message.contains(&big), "the value is not repeated");

    let ud = ud_for(
        "web",
        &format!("  imageOverrides:\n    web: ghcr.io/{}\n", "x".repeat(600)),
    );
    let err = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).unwrap_err();
    assert!(
        err.message.contains("spec.imageOverrides.web") && err.message.contains("512"),
        "{}",
        err.message
    );

    let many: String = (0..=crds::MAX_MAP_ENTRIES).map(|i| format!("    P{i}: x\n")).collect();
    let inline = deployment(&format!(
        "apiVersion: k8s-scheduler.io/v1alpha1\nkind: UserDeployment\nmetadata:\n  name: my-app\n  namespace: sandbox-alice\nspec:\n  parameters:\n{many}  services:\n  - name: web\n    image: nginx\n    port: 80\n"
    ));
    let err = validate_deployment(&inline, None, "alice", &config.settings).unwrap_err();
    assert!(
        err.message.contains("spec.parameters") && err.message.contains("100"),
        "{}",
        err.message
    );

    let mut t: Template = fixture("template-web.yaml");
    t.spec.services[0].env.insert("GREETING".into(), big.clone());
    let problems = validate_template(&t.spec, &config.settings);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("services[0].env.GREETING") && p.contains("4096")),
        "{problems:?}"
    );
    let err = validate_deployment(&ud_for("web", ""), Some(&t.spec), "alice", &config.settings).unwrap_err();
    assert_eq!(err.reason, reasons::TEMPLATE_INVALID);
}

/// Issue 15 item 17: parameter values are not subject to the kubelet's `$(VAR)` expansion (a value
/// `$(DB_PASSWORD)` would otherwise read the secret variable): every `$` is doubled, which the
/// kubelet turns back into the literal value.
#[test]
fn parameter_values_escape_variable_expansion() {
    let t: Template = fixture("template-two-service.yaml");
    let config = Config::for_tests();
    let ud = ud_for(
        "blog",
        "  parameters:\n    SITE_TITLE: \"$(DB_PASSWORD) costs $$5 or $x$\"\n  secretRefs: [DB_PASSWORD]\n",
    );
    let vd = validate_deployment(&ud, Some(&t.spec), "alice", &config.settings).expect("valid");
    let c = build::deployment::build(&vd, &config.settings, &config.build);
    let env = env_of(&c.deployments[0]);
    assert_eq!(env["SITE_TITLE"], "$$(DB_PASSWORD) costs $$$$5 or $$x$$");
    // The template's own values keep their meaning (its author may use `$(VAR)` on purpose).
    assert_eq!(env["DB_HOST"], "blog-db");
}

/// Issue 15 item 19: a sandbox's quota limits ephemeral storage (a container's writable layer,
/// logs and emptyDirs fill the node's disk otherwise), and its LimitRange gives containers
/// default requests and limits of it.
#[test]
fn sandbox_quota_limits_ephemeral_storage() {
    let sb: UserSandbox = fixture("sandbox-alice.yaml");
    let c = build::sandbox::build(&sb, &BuildSettings::default());
    let hard = c.quota.spec.clone().unwrap().hard.unwrap();
    let plan = crds::Plan::Business.limits();
    assert_eq!(hard["requests.ephemeral-storage"].0, plan.requests_ephemeral_storage);
    assert_eq!(hard["limits.ephemeral-storage"].0, plan.limits_ephemeral_storage);
    assert_eq!(plan.requests_ephemeral_storage, "8Gi");
    let limits = &c.limit_range.spec.as_ref().unwrap().limits[0];
    assert_eq!(
        limits.default_request.as_ref().unwrap()["ephemeral-storage"].0,
        crds::plan::DEFAULT_REQUEST_EPHEMERAL_STORAGE
    );
    assert_eq!(
        limits.default.as_ref().unwrap()["ephemeral-storage"].0,
        crds::plan::DEFAULT_LIMIT_EPHEMERAL_STORAGE
    );
    for plan in [crds::Plan::Free, crds::Plan::Business, crds::Plan::Enterprise] {
        let l = plan.limits();
        assert!(!l.requests_ephemeral_storage.is_empty() && !l.limits_ephemeral_storage.is_empty());
    }

    // An override raises the storage like CPU and memory: requests as given, limits doubled
    // (without it, a sandbox whose pods were raised stayed capped at 16Gi / 512Mi = 32 pods).
    let mut big = sb.clone();
    big.spec.quota_overrides = Some(crds::sandbox::QuotaOverrides {
        pods: Some(500),
        ephemeral_storage: Some("300Gi".into()),
        ..Default::default()
    });
    let hard = build::sandbox::build(&big, &BuildSettings::default())
        .quota
        .spec
        .unwrap()
        .hard
        .unwrap();
    assert_eq!(hard["requests.ephemeral-storage"].0, "300Gi");
    assert_eq!(hard["limits.ephemeral-storage"].0, "600Gi");
    assert_eq!(hard["pods"].0, "500");
}

/// A template with a web service and a worker that listens on nothing (issue 18).
fn web_and_worker(worker_extra: &str) -> Template {
    serde_yaml::from_str(&format!(
        "apiVersion: k8s-scheduler.io/v1alpha1\nkind: Template\nmetadata:\n  name: queue\n  namespace: k8s-scheduler-system\nspec:\n  \
         displayName: Queue\n  services:\n    - name: web\n      image: ghcr.io/example/web:1\n      port: 8080\n      healthCheckPath: /healthz\n    \
         - name: worker\n      image: ghcr.io/example/worker:1\n{worker_extra}  ingress:\n    service: web\n"
    ))
    .expect("template yaml")
}

#[test]
fn a_service_without_a_port_runs_without_a_service_or_probes() {
    let config = Config::for_tests();
    let t = web_and_worker("");
    assert_eq!(validate_template(&t.spec, &config.settings), Vec::<String>::new());
    let vd = validate_deployment(&ud_for("queue", ""), Some(&t.spec), "alice", &config.settings).expect("valid");
    let c = build::deployment::build(&vd, &config.settings, &config.build);
    assert_eq!(c.deployments.len(), 2, "both services run");
    let names: Vec<_> = c.services.iter().filter_map(|s| s.metadata.name.clone()).collect();
    assert_eq!(names, ["my-app-web"], "the worker gets no Service");
    let worker = c
        .deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("my-app-worker"))
        .expect("worker Deployment");
    let w = container(worker);
    assert!(
        w.ports.is_none() && w.readiness_probe.is_none() && w.liveness_probe.is_none(),
        "{w:?}"
    );
    assert_restricted(worker);
}

#[test]
fn a_service_without_a_port_cannot_be_probed_or_public() {
    let config = Config::for_tests();
    let probed = web_and_worker("      healthCheckPath: /healthz\n");
    let problems = validate_template(&probed.spec, &config.settings);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("services[1].healthCheckPath:") && p.contains("no port")),
        "{problems:?}"
    );
    let mut public = web_and_worker("");
    public.spec.ingress.as_mut().unwrap().service = "worker".into();
    let problems = validate_template(&public.spec, &config.settings);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("ingress.service:") && p.contains("no port")),
        "{problems:?}"
    );
}
