//! Children of a UserDeployment: per service a Deployment, a ClusterIP Service and (with config
//! files) a ConfigMap; one route for the public service (a Gateway API HTTPRoute on the platform
//! Gateway, or an Ingress: `ROUTING`); a NetworkPolicy for its visibility; an ExternalSecret when
//! a ClusterSecretStore is configured.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::{
    CONFIG_HASH_ANNOTATION, DEPLOYMENT_LABEL, RESTARTED_AT_ANNOTATION, SERVICE_LABEL, VISIBILITY_LABEL,
    deployment_labels, fnv_hash, names, typed,
};
use crate::config::{Config, Routing};
use crate::gateway::HTTPRoute;
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

fn metadata(vd: &ValidatedDeployment, name: &str, service: Option<&str>) -> Value {
    let mut labels = deployment_labels(&vd.name);
    if let Some(s) = service {
        labels.insert(SERVICE_LABEL.to_string(), s.to_string());
    }
    json!({
        "name": name,
        "namespace": vd.namespace,
        "labels": labels,
        "ownerReferences": [vd.owner],
    })
}

/// A parameter value as an env `value` the kubelet leaves as it is: the kubelet expands `$(VAR)`
/// (a value `$(DB_PASSWORD)` would read the secret variable) and turns `$$` into `$`, so every
/// `$` is doubled, which escapes `$(` as `$$(` and keeps any other `$` literal. The template's
/// own env, command and args are left as written: their author may use `$(VAR)` on purpose.
pub fn escape_expansion(value: &str) -> String {
    value.replace('$', "$$")
}

/// Builds every child of a validated UserDeployment.
pub fn build(vd: &ValidatedDeployment, config: &Config) -> DeploymentChildren {
    let mut out = DeploymentChildren::default();
    for svc in &vd.services {
        let cm = config_map(vd, svc);
        out.deployments.push(deployment(vd, svc, cm.as_ref()));
        out.services.push(service(vd, svc));
        out.config_maps.extend(cm);
    }
    match config.routing {
        Routing::Gateway => out.http_route = http_route(vd, config),
        // `auto` is resolved at start-up; unresolved (the HTTP server's offline preview, tests)
        // it builds what a cluster without the Gateway API gets.
        Routing::Ingress | Routing::Auto => out.ingress = ingress(vd, config),
    }
    if !config.disable_network_policies {
        out.network_policy = Some(network_policy(vd, config));
    }
    if !config.cluster_secret_store.is_empty() && !vd.secret_keys.is_empty() {
        out.external_secrets = external_secrets(vd, &config.cluster_secret_store);
    }
    out
}

fn config_map(vd: &ValidatedDeployment, svc: &ResolvedService) -> Option<ConfigMap> {
    if svc.spec.config_files.is_empty() {
        return None;
    }
    let data: serde_json::Map<String, Value> = svc
        .spec
        .config_files
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("file-{i}"), Value::String(f.content.clone())))
        .collect();
    Some(typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(vd, &names::config_map(&vd.name, &svc.spec.name), Some(&svc.spec.name)),
        "data": data,
    })))
}

fn deployment(vd: &ValidatedDeployment, svc: &ResolvedService, cm: Option<&ConfigMap>) -> Deployment {
    let s = &svc.spec;
    let name = child_name(vd, &s.name);
    let selector = json!({ DEPLOYMENT_LABEL: vd.name, SERVICE_LABEL: s.name });
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
    let env: Vec<Value> = env_map.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect();

    let mut container = json!({
        "name": s.name,
        "image": s.image,
        "ports": [{ "name": "http", "containerPort": s.port, "protocol": "TCP" }],
        "env": env,
        "securityContext": {
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
    });
    if !s.command.is_empty() {
        container["command"] = json!(s.command);
    }
    if !s.args.is_empty() {
        container["args"] = json!(s.args);
    }
    if !vd.secret_keys.is_empty() {
        // The deployment's merged values, then this service's own (optional; later wins).
        container["envFrom"] = json!([
            { "secretRef": { "name": vd.secret_name } },
            { "secretRef": { "name": service_secret_name(vd, &s.name), "optional": true } },
        ]);
    }
    if let Some(r) = &s.resources {
        let mut res = json!({});
        if let Some(req) = &r.requests {
            res["requests"] = serde_json::to_value(req).unwrap_or_default();
        }
        if let Some(lim) = &r.limits {
            res["limits"] = serde_json::to_value(lim).unwrap_or_default();
        }
        container["resources"] = res;
    }
    if let Some(path) = &s.health_check_path {
        let probe = json!({ "httpGet": { "path": path, "port": s.port }, "periodSeconds": 10, "timeoutSeconds": 2 });
        // Readiness every 2 s: the kubelet probes once at start, and an app not listening yet
        // (about 1 start in 10 on the real node, `hack/bench gateway`) otherwise waits a whole
        // 10 s period for its first answer through the gateway.
        let mut readiness = probe.clone();
        readiness["periodSeconds"] = json!(2);
        container["readinessProbe"] = readiness;
        let mut liveness = probe;
        liveness["initialDelaySeconds"] = json!(15);
        liveness["failureThreshold"] = json!(6);
        container["livenessProbe"] = liveness;
    }
    let mut pod_annotations = serde_json::Map::new();
    let mut volumes = vec![];
    if let Some(cm) = cm {
        let cm_name = cm.metadata.name.clone().unwrap_or_default();
        let mounts: Vec<Value> = s
            .config_files
            .iter()
            .enumerate()
            .map(|(i, f)| json!({ "name": "config", "mountPath": f.path, "subPath": format!("file-{i}"), "readOnly": true }))
            .collect();
        container["volumeMounts"] = json!(mounts);
        volumes.push(json!({ "name": "config", "configMap": { "name": cm_name } }));
        let contents: Vec<&str> = s
            .config_files
            .iter()
            .flat_map(|f| [f.path.as_str(), f.content.as_str()])
            .collect();
        pod_annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), json!(fnv_hash(&contents)));
    }

    if let Some(at) = &vd.restarted_at {
        pod_annotations.insert(RESTARTED_AT_ANNOTATION.to_string(), json!(at));
    }
    let mut pod_spec = json!({
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "containers": [container],
    });
    if !volumes.is_empty() {
        pod_spec["volumes"] = json!(volumes);
    }
    let mut template_meta = json!({ "labels": pod_labels });
    if !pod_annotations.is_empty() {
        template_meta["annotations"] = Value::Object(pod_annotations);
    }
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(vd, &name, Some(&s.name)),
        "spec": {
            "replicas": svc.replicas,
            "revisionHistoryLimit": 3,
            "selector": { "matchLabels": selector },
            "template": { "metadata": template_meta, "spec": pod_spec },
        },
    }))
}

fn service(vd: &ValidatedDeployment, svc: &ResolvedService) -> Service {
    let s = &svc.spec;
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(vd, &child_name(vd, &s.name), Some(&s.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": { DEPLOYMENT_LABEL: vd.name, SERVICE_LABEL: s.name },
            "ports": [{ "name": "http", "port": s.port, "targetPort": s.port, "protocol": "TCP" }],
        },
    }))
}

/// The app's Ingress. No `ingressClassName` without `INGRESS_CLASS` (the cluster's default
/// IngressClass serves it); no TLS section with `APP_URL_SCHEME=http` (the URL says plain HTTP,
/// and a section naming a Secret nobody makes only produces errors in the ingress controller).
fn ingress(vd: &ValidatedDeployment, config: &Config) -> Option<Ingress> {
    let (svc, port) = vd.ingress.as_ref()?;
    let tls = !config.plain_http();
    let mut meta = metadata(vd, &names::app_object(&vd.name), None);
    if tls && !config.cert_manager_issuer.is_empty() {
        meta["annotations"] = json!({ "cert-manager.io/cluster-issuer": config.cert_manager_issuer });
    }
    let mut spec = json!({
        "rules": [{
            "host": vd.host,
            "http": { "paths": [{
                "path": "/",
                "pathType": "Prefix",
                "backend": { "service": { "name": child_name(vd, svc), "port": { "number": port } } },
            }] },
        }],
    });
    if !config.ingress_class.is_empty() {
        spec["ingressClassName"] = json!(config.ingress_class);
    }
    if tls {
        let tls_secret = if config.ingress_tls_secret.is_empty() {
            names::tls_secret(&vd.name)
        } else {
            config.ingress_tls_secret.clone()
        };
        spec["tls"] = json!([{ "hosts": [vd.host], "secretName": tls_secret }]);
    }
    Some(typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": spec,
    })))
}

/// The app's HTTPRoute: its host on the platform Gateway (`GATEWAY_NAMESPACE`/`GATEWAY_NAME`,
/// listener `GATEWAY_LISTENER` when set), every path to the public service. No TLS here: the
/// Gateway's listener terminates TLS with one wildcard certificate for `*.<DEPLOYMENT_DOMAIN>`.
/// Whether the Gateway admits routes from the sandbox namespace is its `allowedRoutes`' call (the
/// chart's Gateway admits namespaces labelled as sandboxes).
fn http_route(vd: &ValidatedDeployment, config: &Config) -> Option<HTTPRoute> {
    let (svc, port) = vd.ingress.as_ref()?;
    let mut parent = json!({
        "group": crate::gateway::GROUP,
        "kind": "Gateway",
        "name": config.gateway_name,
        "namespace": config.gateway_namespace,
    });
    if !config.gateway_listener.is_empty() {
        parent["sectionName"] = json!(config.gateway_listener);
    }
    Some(typed(json!({
        "apiVersion": format!("{}/{}", crate::gateway::GROUP, crate::gateway::VERSION),
        "kind": "HTTPRoute",
        "metadata": metadata(vd, &names::app_object(&vd.name), None),
        "spec": {
            "parentRefs": [parent],
            "hostnames": [vd.host],
            "rules": [{
                "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                "backendRefs": [{ "group": "", "kind": "Service", "name": child_name(vd, svc), "port": port }],
            }],
        },
    })))
}

/// The app's visibility as a policy. Public: the public service's pods accept traffic from the
/// gateway or ingress controller's namespace (`INGRESS_NAMESPACE`) and the sandbox. Internal: the app's pods accept traffic from the sandbox
/// only (the sandbox's `allow-ingress-controller` policy selects public pods only).
fn network_policy(vd: &ValidatedDeployment, config: &Config) -> NetworkPolicy {
    let mut from = vec![json!({ "podSelector": {} })];
    let mut selector = json!({ DEPLOYMENT_LABEL: vd.name });
    if vd.ingress.is_some() {
        selector[VISIBILITY_LABEL] = json!("public");
        from.push(json!({
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": config.ingress_namespace } },
        }));
    }
    typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(vd, &names::app_object(&vd.name), None),
        "spec": {
            "podSelector": { "matchLabels": selector },
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": from }],
        },
    }))
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
    let data_from: Vec<Value> = keys.iter().map(|k| json!({ "extract": { "key": k } })).collect();
    let ar = external_secret_resource();
    typed(json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": metadata(vd, name, None),
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": { "kind": "ClusterSecretStore", "name": store },
            "target": { "name": name, "creationPolicy": "Owner", "deletionPolicy": "Delete" },
            "dataFrom": data_from,
        },
    }))
}
