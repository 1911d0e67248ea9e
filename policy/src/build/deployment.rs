//! Children of a UserDeployment: per service a Deployment, a ClusterIP Service and (with config
//! files) a ConfigMap; one route for the public service (a Gateway API HTTPRoute on the platform
//! Gateway, or an Ingress: `ROUTING`); a NetworkPolicy for its visibility; an ExternalSecret when
//! a ClusterSecretStore is configured. Typed k8s-openapi objects throughout (the ExternalSecret,
//! a kind k8s-openapi does not know, is a `DynamicObject`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvFromSource, EnvVar, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{
    CONFIG_HASH_ANNOTATION, DEPLOYMENT_LABEL, RESTARTED_AT_ANNOTATION, SERVICE_LABEL, VISIBILITY_LABEL,
    deployment_labels, fnv_hash,
};
use crate::names;
use crate::route::{
    HTTPRoute, HttpBackendRef, HttpPathMatch, HttpRouteMatch, HttpRouteRule, HttpRouteSpec, ParentReference,
};
use crate::settings::{BuildSettings, Routing, Settings};
use crate::validate::{ResolvedService, ValidatedDeployment};

/// Everything the controller applies for one UserDeployment.
#[derive(Debug, Clone, Default)]
pub struct DeploymentChildren {
    /// One per service.
    pub deployments: Vec<Deployment>,
    /// One per service.
    pub services: Vec<Service>,
    /// One per service that has config files.
    pub config_maps: Vec<ConfigMap>,
    /// For public apps with an ingress, routed with Ingresses (`ROUTING` ingress).
    pub ingress: Option<Ingress>,
    /// For public apps with an ingress, routed with the Gateway API (`ROUTING` gateway).
    pub http_route: Option<HTTPRoute>,
    /// Unless network policies are disabled.
    pub network_policy: Option<NetworkPolicy>,
    /// When `CLUSTER_SECRET_STORE` is set and the app has secrets: the app's Secret's, then one
    /// per service (its own values).
    pub external_secrets: Vec<DynamicObject>,
    /// One per service with two or more replicas.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
}

/// The Secret with one service's own secret values (written by the HTTP server).
pub fn service_secret_name(vd: &ValidatedDeployment, service: &str) -> String {
    names::service_secret(&vd.name, service)
}

/// The ExternalSecret kind of the External Secrets Operator.
pub fn external_secret_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"))
}

/// Name of a service's children: `<deployment>-<service>`.
pub fn child_name(vd: &ValidatedDeployment, service: &str) -> String {
    names::child(&vd.name, service)
}

fn metadata(vd: &ValidatedDeployment, name: &str, service: Option<&str>) -> ObjectMeta {
    let mut labels = deployment_labels(&vd.name);
    if let Some(s) = service {
        labels.insert(SERVICE_LABEL.to_string(), s.to_string());
    }
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(vd.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![vd.owner.clone()]),
        ..Default::default()
    }
}

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A parameter value as an env `value` the kubelet leaves as it is: the kubelet expands `$(VAR)`
/// (a value `$(DB_PASSWORD)` would read the secret variable) and turns `$$` into `$`, so every
/// `$` is doubled, which escapes `$(` as `$$(` and keeps any other `$` literal. The template's
/// own env, command and args are left as written: their author may use `$(VAR)` on purpose.
pub fn escape_expansion(value: &str) -> String {
    value.replace('$', "$$")
}

/// Builds every child of a validated UserDeployment.
pub fn build(vd: &ValidatedDeployment, settings: &Settings, config: &BuildSettings) -> DeploymentChildren {
    let mut out = DeploymentChildren::default();
    for svc in &vd.services {
        let cm = config_map(vd, svc);
        out.deployments.push(deployment(vd, svc, cm.as_ref()));
        // A service without a port (a worker) gets no Service: nothing could connect to it.
        out.services.extend(service(vd, svc));
        out.config_maps.extend(cm);
        out.disruption_budgets.extend(disruption_budget(vd, svc));
    }
    match config.routing {
        Routing::Gateway => out.http_route = http_route(vd, config),
        // `auto` is resolved at start-up; unresolved (the HTTP server's offline preview, tests)
        // it builds what a cluster without the Gateway API gets.
        Routing::Ingress | Routing::Auto => out.ingress = ingress(vd, settings, config),
    }
    if !config.disable_network_policies {
        out.network_policy = Some(network_policy(vd, config));
    }
    if !settings.cluster_secret_store.is_empty() && !vd.secret_keys.is_empty() {
        out.external_secrets = external_secrets(vd, &settings.cluster_secret_store);
    }
    out
}

fn config_map(vd: &ValidatedDeployment, svc: &ResolvedService) -> Option<ConfigMap> {
    if svc.spec.config_files.is_empty() {
        return None;
    }
    let data = svc
        .spec
        .config_files
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("file-{i}"), f.content.clone()))
        .collect();
    Some(ConfigMap {
        metadata: metadata(vd, &names::config_map(&vd.name, &svc.spec.name), Some(&svc.spec.name)),
        data: Some(data),
        ..Default::default()
    })
}

/// The selector of one service's pods.
fn pod_selector(vd: &ValidatedDeployment, service: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels([(DEPLOYMENT_LABEL, &vd.name), (SERVICE_LABEL, service)])),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn quantities(list: &crds::template::ResourceList) -> BTreeMap<String, Quantity> {
    [("cpu", &list.cpu), ("memory", &list.memory)]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), Quantity(v.clone()?))))
        .collect()
}

fn deployment(vd: &ValidatedDeployment, svc: &ResolvedService, cm: Option<&ConfigMap>) -> Deployment {
    let s = &svc.spec;
    let name = child_name(vd, &s.name);
    let mut pod_labels = deployment_labels(&vd.name);
    pod_labels.insert(SERVICE_LABEL.to_string(), s.name.clone());
    let public = vd.ingress.as_ref().is_some_and(|(svc, _)| *svc == s.name);
    pod_labels.insert(
        VISIBILITY_LABEL.to_string(),
        if public { "public" } else { "internal" }.to_string(),
    );

    // Fixed env of the service, then parameters (parameters win), sorted for stable output.
    let mut env_map = s.env.clone();
    env_map.extend(vd.env.iter().map(|(k, v)| (k.clone(), escape_expansion(v))));
    let env = env_map
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();

    let mut container = Container {
        name: s.name.clone(),
        image: Some(s.image.clone()),
        ports: s.port.map(|port| {
            vec![ContainerPort {
                name: Some("http".into()),
                container_port: port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]
        }),
        env: Some(env),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        command: (!s.command.is_empty()).then(|| s.command.clone()),
        args: (!s.args.is_empty()).then(|| s.args.clone()),
        // A container that exits with an error leaves the end of its log as its termination
        // message: the controller quotes it when it reports the crash (issue 19).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    if !vd.secret_keys.is_empty() {
        // The deployment's merged values, then this service's own (optional; later wins).
        container.env_from = Some(vec![
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: vd.secret_name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: service_secret_name(vd, &s.name),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ]);
    }
    if let Some(r) = &s.resources {
        container.resources = Some(ResourceRequirements {
            requests: r.requests.as_ref().map(quantities),
            limits: r.limits.as_ref().map(quantities),
            ..Default::default()
        });
    }
    // Validation refuses a health check without a port; a probe needs one.
    if let (Some(path), Some(port)) = (&s.health_check_path, s.port) {
        // Readiness every 2 s: the kubelet probes once at start, and an app not listening yet
        // (about 1 start in 10 on the real node, `hack/bench gateway`) otherwise waits a whole
        // 10 s period for its first answer through the gateway.
        container.readiness_probe = Some(http_probe(path, port, 2));
        container.liveness_probe = Some(Probe {
            initial_delay_seconds: Some(15),
            failure_threshold: Some(6),
            ..http_probe(path, port, 10)
        });
    }
    let mut pod_annotations = BTreeMap::new();
    let mut volumes = vec![];
    if let Some(cm) = cm {
        let cm_name = cm.metadata.name.clone().unwrap_or_default();
        let mounts = s
            .config_files
            .iter()
            .enumerate()
            .map(|(i, f)| VolumeMount {
                name: "config".into(),
                mount_path: f.path.clone(),
                sub_path: Some(format!("file-{i}")),
                read_only: Some(true),
                ..Default::default()
            })
            .collect();
        container.volume_mounts = Some(mounts);
        volumes.push(Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm_name,
                ..Default::default()
            }),
            ..Default::default()
        });
        let contents: Vec<&str> = s
            .config_files
            .iter()
            .flat_map(|f| [f.path.as_str(), f.content.as_str()])
            .collect();
        pod_annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), fnv_hash(&contents));
    }
    if let Some(at) = &vd.restarted_at {
        pod_annotations.insert(RESTARTED_AT_ANNOTATION.to_string(), at.clone());
    }
    let pod_spec = PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: (!volumes.is_empty()).then_some(volumes),
        ..Default::default()
    };
    Deployment {
        metadata: metadata(vd, &name, Some(&s.name)),
        spec: Some(DeploymentSpec {
            replicas: Some(svc.replicas),
            revision_history_limit: Some(3),
            selector: pod_selector(vd, &s.name),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!pod_annotations.is_empty()).then_some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

fn service(vd: &ValidatedDeployment, svc: &ResolvedService) -> Option<Service> {
    let s = &svc.spec;
    let port = s.port?;
    Some(Service {
        metadata: metadata(vd, &child_name(vd, &s.name), Some(&s.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: pod_selector(vd, &s.name).match_labels,
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A PodDisruptionBudget for a service with two or more replicas: a node drain or cluster
/// upgrade then evicts its pods one at a time (`maxUnavailable: 1`) instead of all at once. A
/// single replica gets none: a budget for it would block every drain.
fn disruption_budget(vd: &ValidatedDeployment, svc: &ResolvedService) -> Option<PodDisruptionBudget> {
    if svc.replicas < 2 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: metadata(vd, &child_name(vd, &svc.spec.name), Some(&svc.spec.name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(pod_selector(vd, &svc.spec.name)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The app's Ingress. No `ingressClassName` without `INGRESS_CLASS` (the cluster's default
/// IngressClass serves it); no TLS section with `APP_URL_SCHEME=http` (the URL says plain HTTP,
/// and a section naming a Secret nobody makes only produces errors in the ingress controller).
fn ingress(vd: &ValidatedDeployment, settings: &Settings, config: &BuildSettings) -> Option<Ingress> {
    let (svc, port) = vd.ingress.as_ref()?;
    let tls = !settings.plain_http();
    let mut metadata = metadata(vd, &names::app_object(&vd.name), None);
    if tls && !config.cert_manager_issuer.is_empty() {
        metadata.annotations = Some(labels([(
            "cert-manager.io/cluster-issuer",
            &config.cert_manager_issuer,
        )]));
    }
    let tls_secret = if config.ingress_tls_secret.is_empty() {
        names::tls_secret(&vd.name)
    } else {
        config.ingress_tls_secret.clone()
    };
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: (!config.ingress_class.is_empty()).then(|| config.ingress_class.clone()),
            rules: Some(vec![IngressRule {
                host: Some(vd.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: child_name(vd, svc),
                                port: Some(ServiceBackendPort {
                                    number: Some(*port),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            tls: tls.then(|| {
                vec![IngressTLS {
                    hosts: Some(vec![vd.host.clone()]),
                    secret_name: Some(tls_secret),
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The app's HTTPRoute: its host on the platform Gateway (`GATEWAY_NAMESPACE`/`GATEWAY_NAME`,
/// listener `GATEWAY_LISTENER` when set), every path to the public service. No TLS here: the
/// Gateway's listener terminates TLS with one wildcard certificate for `*.<DEPLOYMENT_DOMAIN>`.
/// Whether the Gateway admits routes from the sandbox namespace is its `allowedRoutes`' call (the
/// chart's Gateway admits namespaces labelled as sandboxes).
fn http_route(vd: &ValidatedDeployment, config: &BuildSettings) -> Option<HTTPRoute> {
    let (svc, port) = vd.ingress.as_ref()?;
    Some(HTTPRoute {
        metadata: metadata(vd, &names::app_object(&vd.name), None),
        spec: HttpRouteSpec {
            parent_refs: vec![ParentReference {
                group: Some(crate::route::GROUP.into()),
                kind: Some("Gateway".into()),
                name: config.gateway_name.clone(),
                namespace: Some(config.gateway_namespace.clone()),
                section_name: (!config.gateway_listener.is_empty()).then(|| config.gateway_listener.clone()),
            }],
            hostnames: vec![vd.host.clone()],
            rules: vec![HttpRouteRule {
                matches: vec![HttpRouteMatch {
                    path: Some(HttpPathMatch {
                        type_: Some("PathPrefix".into()),
                        value: Some("/".into()),
                    }),
                }],
                backend_refs: vec![HttpBackendRef {
                    group: Some(String::new()),
                    kind: Some("Service".into()),
                    name: child_name(vd, svc),
                    port: Some(*port),
                }],
            }],
        },
        status: None,
    })
}

/// The app's visibility as a policy. Public: the public service's pods accept traffic from the
/// gateway or ingress controller's namespace (`INGRESS_NAMESPACE`) and the sandbox. Internal: the
/// app's pods accept traffic from the sandbox only (the sandbox's `allow-ingress-controller`
/// policy selects public pods only).
fn network_policy(vd: &ValidatedDeployment, config: &BuildSettings) -> NetworkPolicy {
    let mut from = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..Default::default()
    }];
    let mut selector = labels([(DEPLOYMENT_LABEL, &vd.name)]);
    if vd.ingress.is_some() {
        selector.insert(VISIBILITY_LABEL.into(), "public".into());
        from.push(NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels([("kubernetes.io/metadata.name", &config.ingress_namespace)])),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    NetworkPolicy {
        metadata: metadata(vd, &names::app_object(&vd.name), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// Remote key of a user's scope in the secret store, the HTTP server's layout
/// (`apiserver/src/secrets`): `users/<user>/secrets`, `users/<user>/templates/<template>`,
/// `users/<user>/deployments/<app>`, `users/<user>/deployments/<app>/services/<service>`.
pub fn remote_key(user: &str, scope: &str) -> String {
    format!("users/{user}/{scope}")
}

/// The ExternalSecrets of an app. Its Secret merges the user, template and deployment scopes in
/// the server's order, one `dataFrom` extract each: ESO merges them in order, later wins. Each
/// service's Secret (read after it, `optional`) holds that service's scope.
///
/// A scope without secrets has no remote key. With `deletionPolicy: Delete`, ESO skips a
/// `dataFrom` entry whose key does not exist (a Normal event "secret does not exist at provider
/// using .dataFrom[i]") instead of failing the whole sync, which it does under the default
/// `Retain`; when no scope has a key at all it removes (or never creates) the Secret: a service
/// Secret is optional, and the app's own Secret is then missing as it is when the server writes
/// Secrets and has nothing to write (the pods wait for it).
fn external_secrets(vd: &ValidatedDeployment, store: &str) -> Vec<DynamicObject> {
    let mut scopes = vec![remote_key(&vd.user_id, "secrets")];
    if let Some(t) = &vd.template {
        scopes.push(remote_key(&vd.user_id, &format!("templates/{t}")));
    }
    let deployment = remote_key(&vd.user_id, &format!("deployments/{}", vd.name));
    scopes.push(deployment.clone());
    let mut out = vec![external_secret(vd, store, &vd.secret_name, &scopes)];
    for svc in &vd.services {
        let name = names::service_secret(&vd.name, &svc.spec.name);
        let scope = format!("{deployment}/services/{}", svc.spec.name);
        out.push(external_secret(vd, store, &name, &[scope]));
    }
    out
}

fn external_secret(vd: &ValidatedDeployment, store: &str, name: &str, keys: &[String]) -> DynamicObject {
    let data_from: Vec<serde_json::Value> = keys.iter().map(|k| json!({ "extract": { "key": k } })).collect();
    // A kind without Rust types: its spec is JSON, the rest is typed.
    let ar = external_secret_resource();
    DynamicObject {
        types: Some(kube::api::TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        }),
        metadata: metadata(vd, name, None),
        data: json!({
            "spec": {
                "refreshInterval": "1h",
                "secretStoreRef": { "kind": "ClusterSecretStore", "name": store },
                "target": { "name": name, "creationPolicy": "Owner", "deletionPolicy": "Delete" },
                "dataFrom": data_from,
            },
        }),
    }
}
