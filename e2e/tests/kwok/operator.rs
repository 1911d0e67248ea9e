//! The operator against the local control plane: sandboxes, templates, deployments, the tenant
//! allow-list, routing (Gateway API HTTPRoutes or Ingresses), ExternalSecrets, leader election
//! and configuration errors.
//!
//! Tests that look at an app's route set `ROUTING` explicitly: the default (`auto`) follows what
//! the cluster serves, and the test cluster serves the Gateway API (see [`ensure_gateway_api`]).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use controller::gateway::HTTPRoute;
use crds::{Template, UserDeployment, UserSandbox};
use e2e::operator::{
    TestSandbox, condition_of, create_deployment, is_ready_condition, kubectl_apply, workspace_binary,
};
use e2e::wait::poll;
use e2e::{wait_for, wait_until_gone};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Pod, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

fn two_service_template(ns: &str) -> Template {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "Template",
        "metadata": { "name": "blog", "namespace": ns },
        "spec": {
            "displayName": "Blog",
            "parameters": [
                { "name": "SITE_TITLE", "required": true },
                { "name": "DB_PASSWORD", "secret": true },
            ],
            "services": [
                { "name": "web", "image": "ghcr.io/example/blog:1", "port": 3000, "healthCheckPath": "/healthz" },
                { "name": "db", "image": "ghcr.io/example/db:1", "port": 5432 },
            ],
            "ingress": { "service": "web" },
        },
    }))
    .expect("template")
}

fn blog_deployment(name: &str, title: &str, extra: serde_json::Value) -> UserDeployment {
    let mut spec = json!({ "templateRef": { "name": "blog" }, "parameters": { "SITE_TITLE": title } });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("deployment")
}

async fn ready(api: &Api<UserDeployment>, name: &str) -> Result<UserDeployment> {
    wait_for(
        api,
        name,
        TIMEOUT,
        "UserDeployment Ready",
        is_ready_condition::<UserDeployment>,
    )
    .await
}

async fn degraded_with(api: &Api<UserDeployment>, name: &str, reason: &'static str) -> Result<UserDeployment> {
    wait_for(api, name, TIMEOUT, reason, move |ud: Option<&UserDeployment>| {
        condition_of(ud, "Degraded") == Some(("True".into(), reason.into()))
    })
    .await
}

async fn names<K>(client: &Client, ns: &str, selector: &str) -> Result<BTreeSet<String>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list_metadata(&ListParams::default().labels(selector))
        .await?
        .items
        .iter()
        .map(|o| o.name_any())
        .collect())
}

/// Names of the app routes (Ingresses and HTTPRoutes, `Kind/name`) matching `selector` in `ns`;
/// HTTPRoutes count only where the cluster serves them.
async fn route_names(client: &Client, ns: &str, selector: &str) -> Result<BTreeSet<String>> {
    let mut out: BTreeSet<String> = names::<Ingress>(client, ns, selector)
        .await?
        .into_iter()
        .map(|n| format!("Ingress/{n}"))
        .collect();
    if controller::gateway::http_routes_served(client).await? {
        out.extend(
            names::<HTTPRoute>(client, ns, selector)
                .await?
                .into_iter()
                .map(|n| format!("HTTPRoute/{n}")),
        );
    }
    Ok(out)
}

/// Makes sure the cluster serves the Gateway API's HTTPRoute v1: installs the standard-channel
/// CRDs when missing, from the folder `GATEWAY_API_CRDS` names or the one
/// `hack/tools/gateway-api/crds` prints. `hack/test` installs them before any test runs (as it
/// does the project's CRDs), so that no controller started in `ROUTING=auto` sees them appear.
async fn ensure_gateway_api(client: &Client) -> Result<()> {
    if controller::gateway::http_routes_served(client).await? {
        return Ok(());
    }
    let dir = match std::env::var("GATEWAY_API_CRDS").ok().filter(|d| !d.is_empty()) {
        Some(dir) => dir,
        None => {
            let script = e2e::repo_path("hack/tools/gateway-api/crds");
            if !script.exists() {
                bail!(
                    "the cluster does not serve gateway.networking.k8s.io/v1 HTTPRoute: install the Gateway API \
                     CRDs (standard channel), or set GATEWAY_API_CRDS to a folder of them"
                );
            }
            let out = std::process::Command::new(&script)
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            ensure!(
                out.status.success(),
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let out = e2e::operator::kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f", &dir])
        .output()
        .context("running kubectl")?;
    ensure!(
        out.status.success(),
        "installing the Gateway API CRDs from {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll(TIMEOUT, "HTTPRoute v1 served", || async {
        Ok(controller::gateway::http_routes_served(client).await?.then_some(()))
    })
    .await
}

/// Deletes `name` and waits until the controller has created it again: another object of that
/// name (new uid, not being deleted) for which `check` holds.
async fn deleted_and_recreated<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    check: impl Fn(&K) -> bool + Send + 'static,
) -> Result<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let old_uid = api.get(name).await?.uid();
    api.delete(name, &DeleteParams::default()).await?;
    wait_for(api, name, TIMEOUT, what, move |o: Option<&K>| {
        o.is_some_and(|o| o.uid() != old_uid && o.meta().deletion_timestamp.is_none() && check(o))
    })
    .await
}

/// Runs `body` with a fresh sandbox and a controller for it, then removes both.
pub(crate) async fn with_sandbox<F, Fut>(controller_env: &[(&str, &str)], body: F) -> Result<()>
where
    F: FnOnce(Client, TestSandbox) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let client = e2e::client().await?;
    let sb = TestSandbox::create(&client, json!({})).await?;
    let mut ctrl = sb.start_controller(controller_env)?;
    let result = async {
        sb.wait_ready()
            .await
            .with_context(|| format!("controller log:\n{}", ctrl.logs()))?;
        body(client.clone(), sb.clone()).await
    }
    .await;
    // Delete while the controller runs: it removes the deployments' finalizers.
    let cleanup = sb.delete().await;
    let logs = ctrl.logs();
    ctrl.kill();
    result.with_context(|| format!("controller log:\n{logs}"))?;
    cleanup
}

#[tokio::test]
async fn sandbox_provisions_a_restricted_namespace() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    with_sandbox(&[], |client, sb| async move {
        let ns = sb.namespace.as_str();
        let nsobj = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .get(ns)
            .await?;
        let labels = nsobj.labels();
        assert_eq!(
            labels.get("pod-security.kubernetes.io/enforce").map(String::as_str),
            Some("restricted")
        );
        assert!(labels.contains_key("pod-security.kubernetes.io/enforce-version"));

        let quota = Api::<ResourceQuota>::namespaced(client.clone(), ns)
            .get("sandbox-quota")
            .await?;
        let hard = quota.spec.unwrap().hard.unwrap();
        assert_eq!(hard["services.nodeports"].0, "0");
        assert_eq!(hard["services.loadbalancers"].0, "0");
        assert_eq!(hard["requests.cpu"].0, "8");
        // Ephemeral storage is under quota too, with container defaults (issue 15 item 19).
        assert_eq!(hard["requests.ephemeral-storage"].0, "8Gi");
        assert_eq!(hard["limits.ephemeral-storage"].0, "16Gi");
        let limit_range = Api::<LimitRange>::namespaced(client.clone(), ns)
            .get("sandbox-limits")
            .await?;
        let defaults = &limit_range.spec.unwrap().limits[0];
        assert_eq!(defaults.default.as_ref().unwrap()["ephemeral-storage"].0, "512Mi");
        assert_eq!(
            defaults.default_request.as_ref().unwrap()["ephemeral-storage"].0,
            "64Mi"
        );
        let policies = names::<NetworkPolicy>(&client, ns, "app.kubernetes.io/managed-by=k8s-scheduler").await?;
        assert_eq!(
            policies,
            [
                "allow-dns",
                "allow-ingress-controller",
                "allow-same-namespace",
                "default-deny"
            ]
            .map(String::from)
            .into()
        );
        let sa = Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get("default")
            .await?;
        assert_eq!(sa.automount_service_account_token, Some(false));

        // Pod Security admission refuses a privileged pod in the sandbox.
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "evil" },
            "spec": { "containers": [{ "name": "c", "image": "busybox", "securityContext": { "privileged": true } }] },
        }))?;
        let err = Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &pod)
            .await
            .expect_err("a privileged pod must be refused");
        let msg = err.to_string();
        assert!(msg.contains("privileged") && msg.contains("restricted"), "{msg}");
        // So is a pod that may run as root, even unprivileged.
        let root: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "root" },
            "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
        }))?;
        let err = Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &root)
            .await
            .expect_err("root");
        assert!(err.to_string().contains("runAsNonRoot"), "{err}");

        // A NodePort service is refused by the quota.
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "np" },
            "spec": { "type": "NodePort", "ports": [{ "port": 80 }] },
        }))?;
        let err = Api::<Service>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &svc)
            .await
            .expect_err("NodePort");
        assert!(err.to_string().contains("services.nodeports"), "{err}");

        // The quota is a watched child (metadata only): an edit of its spec by someone else, and
        // its deletion, are undone promptly.
        let quotas = Api::<ResourceQuota>::namespaced(client, ns);
        let nodeports = |q: Option<&ResourceQuota>| {
            q.and_then(|q| q.spec.as_ref()?.hard.as_ref()?.get("services.nodeports").cloned())
                .map(|v| v.0)
        };
        quotas
            .patch(
                "sandbox-quota",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "hard": { "services.nodeports": "5" } } })),
            )
            .await?;
        wait_for(
            &quotas,
            "sandbox-quota",
            TIMEOUT,
            "edited quota restored",
            move |q: Option<&ResourceQuota>| nodeports(q).as_deref() == Some("0"),
        )
        .await?;
        deleted_and_recreated(&quotas, "sandbox-quota", "deleted quota recreated", move |q| {
            nodeports(Some(q)).as_deref() == Some("0")
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn sandbox_without_network_policies_when_disabled() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    with_sandbox(&[("DISABLE_NETWORK_POLICIES", "true")], |client, sb| async move {
        let policies =
            names::<NetworkPolicy>(&client, &sb.namespace, "app.kubernetes.io/managed-by=k8s-scheduler").await?;
        assert!(policies.is_empty(), "{policies:?}");
        let sandbox = Api::<UserSandbox>::all(client).get(&sb.name).await?;
        assert_eq!(
            sandbox.status.unwrap().namespace.as_deref(),
            Some(sb.namespace.as_str())
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn two_service_deployment_lifecycle() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    with_sandbox(&[("ROUTING", "ingress")], |client, sb| async move {
        let ns = sb.namespace.as_str();
        Api::<Template>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &two_service_template(ns))
            .await?;
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        // The chart's MutatingAdmissionPolicy adds the cleanup finalizer at admission (a dry-run
        // create shows it; the policy can take a moment to be active after its first install).
        let finalizer = controller::reconcile::DEPLOYMENT_FINALIZER;
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let (mut admitted, mut admitted_error) = (None, None);
        for _ in 0..40 {
            // (A quota whose usage is not known yet refuses creates for a moment, too.)
            match uds.create(&dry_run, &blog_deployment("blog", "Hello", json!({}))).await {
                Ok(probe) if probe.finalizers().iter().any(|f| f == finalizer) => {
                    admitted = Some(probe);
                    break;
                }
                Ok(_) => {}
                Err(e) => admitted_error = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ensure!(
            admitted.is_some(),
            "the finalizer policy never added {finalizer} at admission (last error: {admitted_error:?})"
        );
        let created = create_deployment(&uds, &blog_deployment("blog", "Hello", json!({}))).await?;
        ensure!(
            created.finalizers() == [finalizer.to_string()],
            "created with finalizers {:?}, want [{finalizer}] from admission",
            created.finalizers()
        );
        let ud = ready(&uds, "blog").await?;
        let status = ud.status.clone().unwrap();
        assert_eq!(
            status.url.as_deref(),
            Some(format!("https://{}-blog.apps.example.com", sb.user_id).as_str())
        );
        assert_eq!(status.observed_generation, ud.metadata.generation);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for name in ["blog-web", "blog-db"] {
            let d = deployments.get(name).await?;
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Available" && c.status == "True"));
            assert!(available, "{name} is Available");
        }
        Api::<Ingress>::namespaced(client.clone(), ns).get("blog").await?;

        // Editing a parameter rolls the Deployment.
        let before = deployments.get("blog-web").await?;
        uds.patch(
            "blog",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "parameters": { "SITE_TITLE": "Changed" } } })),
        )
        .await?;
        let rolled = wait_for(
            &deployments,
            "blog-web",
            TIMEOUT,
            "Deployment rolled",
            |d: Option<&Deployment>| {
                d.and_then(|d| d.spec.as_ref()).is_some_and(|s| {
                    s.template.spec.as_ref().is_some_and(|p| {
                        p.containers[0]
                            .env
                            .iter()
                            .flatten()
                            .any(|e| e.name == "SITE_TITLE" && e.value.as_deref() == Some("Changed"))
                    })
                })
            },
        )
        .await?;
        assert!(rolled.metadata.generation > before.metadata.generation);
        ready(&uds, "blog").await?;

        // A deleted child Service comes back.
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        deleted_and_recreated(&services, "blog-db", "Service recreated", |_| true).await?;

        // Removing a service from the template prunes its children.
        Api::<Template>::namespaced(client.clone(), ns)
            .patch(
                "blog",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "services": [
                    { "name": "web", "image": "ghcr.io/example/blog:1", "port": 3000 } ] } })),
            )
            .await?;
        wait_until_gone(&deployments, "blog-db", TIMEOUT).await?;
        wait_until_gone(&services, "blog-db", TIMEOUT).await?;

        // Two replicas: a PodDisruptionBudget keeps a drain to one pod at a time; back to one,
        // it goes (a budget for a single pod would block every drain).
        let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
        let scale = |n: i32| {
            let uds = uds.clone();
            async move {
                uds.patch(
                    "blog",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "replicas": n } })),
                )
                .await
            }
        };
        scale(2).await?;
        let pdb = wait_for(
            &budgets,
            "blog-web",
            TIMEOUT,
            "PodDisruptionBudget",
            |p: Option<&PodDisruptionBudget>| p.is_some(),
        )
        .await?;
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            deployments
                .get("blog-web")
                .await?
                .spec
                .and_then(|s| s.selector.match_labels)
        );
        scale(1).await?;
        wait_until_gone(&budgets, "blog-web", TIMEOUT).await?;
        scale(2).await?;
        wait_for(
            &budgets,
            "blog-web",
            TIMEOUT,
            "PodDisruptionBudget again",
            |p: Option<&PodDisruptionBudget>| p.is_some(),
        )
        .await?;

        // Deleting the UserDeployment removes every child.
        uds.delete("blog", &DeleteParams::default()).await?;
        wait_until_gone(&uds, "blog", TIMEOUT).await?;
        let sel = "k8s-scheduler.io/deployment=blog";
        poll(TIMEOUT, "every child removed", || async {
            let left = names::<Deployment>(&client, ns, sel).await?.len()
                + names::<Service>(&client, ns, sel).await?.len()
                + route_names(&client, ns, sel).await?.len()
                + names::<NetworkPolicy>(&client, ns, sel).await?.len()
                + names::<ConfigMap>(&client, ns, sel).await?.len()
                + names::<PodDisruptionBudget>(&client, ns, sel).await?.len();
            Ok((left == 0).then_some(()))
        })
        .await
    })
    .await
}

#[tokio::test]
async fn forbidden_fields_and_unknown_templates() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    with_sandbox(&[("ALLOWED_REGISTRIES", "ghcr.io")], |client, sb| async move {
        let ns = sb.namespace.as_str();
        let doc = |svc_extra: &str, spec_extra: &str| {
            format!(
                "apiVersion: k8s-scheduler.io/v1alpha1\nkind: UserDeployment\nmetadata:\n  name: bad\n  namespace: {ns}\nspec:\n{spec_extra}  services:\n  - name: web\n    image: ghcr.io/x/y:1\n    port: 8080\n{svc_extra}"
            )
        };
        for (svc_extra, spec_extra, field) in [
            ("    privileged: true\n", "", "privileged"),
            ("    securityContext:\n      runAsUser: 0\n", "", "securityContext"),
            ("    hostNetwork: true\n", "", "hostNetwork"),
            ("    hostPath: /\n", "", "hostPath"),
            ("    hostPort: 80\n", "", "hostPort"),
            ("    capabilities:\n      add: [NET_ADMIN]\n", "", "capabilities"),
            ("", "  serviceAccountName: admin\n", "serviceAccountName"),
            ("    serviceType: NodePort\n", "", "serviceType"),
            ("", "  ingressAnnotations:\n    a: b\n", "ingressAnnotations"),
            ("", "  host: bank.example.com\n", "host"),
        ] {
            let (ok, out) = kubectl_apply(&doc(svc_extra, spec_extra))?;
            ensure!(!ok, "kubectl apply accepted forbidden field {field}: {out}");
            ensure!(out.contains(field), "the refusal names {field}: {out}");
        }
        // CEL: a port out of range and a name too long for the host label.
        let (ok, out) = kubectl_apply(&doc("", "").replace("port: 8080", "port: 70000"))?;
        ensure!(!ok && out.contains("port"), "{out}");
        let long = "a".repeat(33);
        let (ok, out) = kubectl_apply(&doc("", "").replace("name: bad", &format!("name: {long}")))?;
        ensure!(!ok && out.contains("32 characters"), "{out}");

        // A registry outside the allow-list: Degraded, reported once, not retried in a storm.
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        let quay: UserDeployment = serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
            "metadata": { "name": "quay" },
            "spec": { "services": [{ "name": "web", "image": "quay.io/x/y:1", "port": 80 }] },
        }))?;
        create_deployment(&uds, &quay).await?;
        let ud = degraded_with(&uds, "quay", "RegistryNotAllowed").await?;
        assert_eq!(ud.status.unwrap().phase, crds::DeploymentPhase::Error);
        let deployments = names::<Deployment>(&client, ns, "k8s-scheduler.io/deployment=quay").await?;
        assert!(deployments.is_empty(), "nothing is created for an invalid spec");

        // An unknown template.
        create_deployment(&uds, &serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
            "metadata": { "name": "ghost" },
            "spec": { "templateRef": { "name": "does-not-exist" } },
        }))?)
        .await?;
        degraded_with(&uds, "ghost", "TemplateNotFound").await?;
        // ... which recovers once the template appears.
        let mut t = two_service_template(ns);
        t.metadata.name = Some("does-not-exist".into());
        t.spec.parameters.clear();
        Api::<Template>::namespaced(client.clone(), ns).create(&PostParams::default(), &t).await?;
        ready(&uds, "ghost").await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn external_secret_with_cluster_secret_store() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    let client = e2e::client().await?;
    let crds_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(include_str!("fixtures/externalsecret-crd.yaml"))?;
    crds_api
        .patch(&crd.name_any(), &PatchParams::apply("e2e").force(), &Patch::Apply(&crd))
        .await?;
    wait_for(
        &crds_api,
        &crd.name_any(),
        TIMEOUT,
        "CRD established",
        kube::runtime::conditions::is_crd_established(),
    )
    .await?;

    with_sandbox(&[("CLUSTER_SECRET_STORE", "vault-backend")], |client, sb| async move {
        let ns = sb.namespace.as_str();
        Api::<Template>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &two_service_template(ns))
            .await?;
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        create_deployment(
            &uds,
            &blog_deployment("shop", "Shop", json!({ "secretRefs": ["DB_PASSWORD", "API_KEY"] })),
        )
        .await?;
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"));
        let es_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let es = poll(TIMEOUT, "ExternalSecret created", || async {
            Ok(es_api.get_opt("shop-secrets").await?)
        })
        .await?;
        assert_eq!(es.data["spec"]["secretStoreRef"]["name"], "vault-backend");
        assert_eq!(es.data["spec"]["secretStoreRef"]["kind"], "ClusterSecretStore");
        assert_eq!(es.data["spec"]["target"]["name"], "shop-secrets");
        // The scopes in the server's order, later wins (issue 15 item 22).
        let extracts = |es: &DynamicObject| -> Vec<String> {
            es.data["spec"]["dataFrom"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["extract"]["key"].as_str().unwrap().to_string())
                .collect()
        };
        let user = format!("users/{}", sb.user_id);
        assert_eq!(
            extracts(&es),
            [
                format!("{user}/secrets"),
                format!("{user}/templates/blog"),
                format!("{user}/deployments/shop")
            ]
        );
        assert_eq!(es.data["spec"]["target"]["deletionPolicy"], "Delete");
        let web = es_api.get("shop-web-secrets").await?;
        assert_eq!(extracts(&web), [format!("{user}/deployments/shop/services/web")]);
        assert_eq!(web.data["spec"]["target"]["name"], "shop-web-secrets");
        let d = Api::<Deployment>::namespaced(client.clone(), ns)
            .get("shop-web")
            .await?;
        let env_from = d.spec.unwrap().template.spec.unwrap().containers[0]
            .env_from
            .clone()
            .unwrap();
        assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "shop-secrets");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn leader_election_hands_over_without_duplicates() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    let client = e2e::client().await?;
    let sb = TestSandbox::create(&client, json!({})).await?;
    let lease_ns = sb.namespace.clone();
    let lease_name = format!("lease-{}", sb.run);
    let env = [
        ("LEADER_ELECT", "true"),
        ("LEASE_NAME", lease_name.as_str()),
        ("LEASE_DURATION_SECONDS", "4"),
        ("LEASE_NAMESPACE", "default"),
    ];
    let mut a = sb.start_controller(&env)?;
    let mut b = sb.start_controller(&env)?;
    let result = async {
        sb.wait_ready().await?;
        let ns = lease_ns.as_str();
        Api::<Template>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &two_service_template(ns))
            .await?;
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        for i in 0..3 {
            create_deployment(&uds, &blog_deployment(&format!("first-{i}"), "x", json!({}))).await?;
        }
        for i in 0..3 {
            ready(&uds, &format!("first-{i}")).await?;
        }
        let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
        let holder = leases
            .get(&lease_name)
            .await?
            .spec
            .and_then(|s| s.holder_identity)
            .context("lease holder")?;
        let (leader, standby) = if holder == a.identity {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        ensure!(
            holder == leader.identity,
            "the lease names one of the two controllers: {holder}"
        );
        ensure!(!standby.logs().contains("became leader"), "only one replica leads");

        // Kill the leader, then create more work: the standby must take over and finish it.
        leader.kill();
        for i in 0..3 {
            create_deployment(&uds, &blog_deployment(&format!("second-{i}"), "y", json!({}))).await?;
        }
        for i in 0..3 {
            ready(&uds, &format!("second-{i}"))
                .await
                .with_context(|| format!("standby log:\n{}", standby.logs()))?;
        }
        let new_holder = leases
            .get(&lease_name)
            .await?
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        ensure!(new_holder == standby.identity, "standby holds the lease: {new_holder}");
        ensure!(standby.running(), "standby still running");
        // Exactly one Deployment per service per UserDeployment: nothing duplicated.
        let all = names::<Deployment>(&client, ns, "app.kubernetes.io/managed-by=k8s-scheduler").await?;
        let expected: BTreeSet<String> = (0..3)
            .flat_map(|i| ["first", "second"].map(|p| format!("{p}-{i}")))
            .flat_map(|ud| [format!("{ud}-web"), format!("{ud}-db")])
            .collect();
        ensure!(all == expected, "deployments {all:?} != {expected:?}");
        Ok(())
    }
    .await;
    let cleanup = sb.delete().await;
    a.kill();
    b.kill();
    let _ = Api::<Lease>::namespaced(client.clone(), "default")
        .delete(&lease_name, &DeleteParams::default())
        .await;
    result?;
    cleanup
}

#[test]
fn controller_without_deployment_domain_exits_naming_it() -> Result<()> {
    let out = std::process::Command::new(workspace_binary("controller")?)
        .env_remove("DEPLOYMENT_DOMAIN")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEPLOYMENT_DOMAIN"), "{stderr}");
    let out = std::process::Command::new(workspace_binary("controller")?)
        .env("DEPLOYMENT_DOMAIN", "example.com")
        .env("DISABLE_NETWORK_POLICIES", "perhaps")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DISABLE_NETWORK_POLICIES") && stderr.contains("not a boolean"),
        "{stderr}"
    );
    Ok(())
}

/// A public app of one inline service.
fn web_app(name: &str) -> UserDeployment {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
        "metadata": { "name": name },
        "spec": { "services": [{ "name": "web", "image": "ghcr.io/example/web:1", "port": 8080 }] },
    }))
    .expect("deployment")
}

/// The message of an object's `Degraded` condition.
fn degraded_message<K: serde::Serialize>(obj: &K) -> String {
    let v = serde_json::to_value(obj).unwrap_or_default();
    v["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Degraded")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn sandbox_refused(client: &Client, name: &str, reason: &'static str) -> Result<UserSandbox> {
    wait_for(
        &Api::<UserSandbox>::all(client.clone()),
        name,
        TIMEOUT,
        reason,
        move |sb: Option<&UserSandbox>| {
            condition_of(sb, "Ready") == Some(("False".into(), reason.into()))
                && condition_of(sb, "Degraded") == Some(("True".into(), reason.into()))
        },
    )
    .await
}

/// Starts a controller for every sandbox labelled with `run`, watching all namespaces (hosts and
/// owner ids are contested across sandboxes), runs `body`, then deletes `sandboxes` and stops it.
async fn with_run_controller<F, Fut>(
    run: &str,
    env: &[(&str, &str)],
    sandboxes: Vec<TestSandbox>,
    body: F,
) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let selector = format!("{}={run}", e2e::operator::RUN_LABEL);
    let mut all_env = vec![("SANDBOX_SELECTOR", selector.as_str()), ("WATCH_NAMESPACE", "")];
    all_env.extend_from_slice(env);
    let mut ctrl = e2e::operator::ControllerProcess::start(&all_env)?;
    let result = body().await;
    let mut cleanup = Ok(());
    for sb in sandboxes {
        let client = sb.client.clone();
        let ns = sb.namespace.clone();
        if let Err(e) = sb.delete().await {
            e2e::operator::drop_deployment_finalizers(&client, &ns).await;
            cleanup = Err(e);
        }
    }
    let logs = ctrl.logs();
    ctrl.kill();
    result.with_context(|| format!("controller log:\n{logs}"))?;
    cleanup
}

/// Issue 15 item 1: `sandbox-bob/smith-shop` and `sandbox-bob-smith/shop` both resolve to
/// `bob-smith-shop.<domain>`; the older app holds it, the other is refused without learning whose
/// it is, and takes it over when the holder goes.
#[tokio::test]
async fn a_host_goes_to_the_oldest_app_across_sandboxes() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    let client = e2e::client().await?;
    let run = e2e::unique_name("run");
    let bob = e2e::unique_name("bob");
    let bob_smith = format!("{bob}-smith");
    let sb_bob = TestSandbox::create_as(&client, &run, &bob, json!({})).await?;
    let sb_bob_smith = TestSandbox::create_as(&client, &run, &bob_smith, json!({})).await?;
    let (a, b) = (sb_bob.clone(), sb_bob_smith.clone());
    // The Ingresses are looked at below.
    let env = [("ROUTING", "ingress")];
    with_run_controller(&run, &env, vec![sb_bob, sb_bob_smith], || async move {
        a.wait_ready().await?;
        b.wait_ready().await?;
        let in_bob: Api<UserDeployment> = Api::namespaced(client.clone(), &a.namespace);
        let in_bob_smith: Api<UserDeployment> = Api::namespaced(client.clone(), &b.namespace);
        let host = format!("{bob_smith}-shop.apps.example.com");

        create_deployment(&in_bob_smith, &web_app("shop")).await?;
        let holder = ready(&in_bob_smith, "shop").await?;
        ensure!(holder.status.unwrap().url == Some(format!("https://{host}")));
        // Creation times count in seconds.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        create_deployment(&in_bob, &web_app("smith-shop")).await?;
        let refused = degraded_with(&in_bob, "smith-shop", "HostConflict").await?;
        let message = degraded_message(&refused);
        ensure!(
            message.contains(&host) && message.contains("already used by another app"),
            "{message}"
        );
        ensure!(
            !message.contains(&b.namespace) && !message.contains(&b.name),
            "the message must not name the other tenant: {message}"
        );
        ensure!(refused.status.unwrap().url.is_none());
        let sel = "k8s-scheduler.io/deployment=smith-shop";
        ensure!(
            route_names(&client, &a.namespace, sel).await?.is_empty(),
            "no route for the refused app"
        );
        ensure!(
            names::<Deployment>(&client, &a.namespace, sel).await?.is_empty(),
            "no children for the refused app"
        );
        // Exactly one Ingress in the cluster routes the host.
        let routes: Vec<String> = Api::<Ingress>::all(client.clone())
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=k8s-scheduler"))
            .await?
            .items
            .iter()
            .filter(|i| {
                i.spec
                    .iter()
                    .flat_map(|s| s.rules.iter().flatten())
                    .any(|r| r.host.as_deref() == Some(host.as_str()))
            })
            .map(|i| format!("{}/{}", i.namespace().unwrap_or_default(), i.name_any()))
            .collect();
        ensure!(
            routes == [format!("{}/shop", b.namespace)],
            "Ingresses on {host}: {routes:?}"
        );

        // The holder goes: the refused app takes the host.
        in_bob_smith.delete("shop", &DeleteParams::default()).await?;
        wait_until_gone(&in_bob_smith, "shop", TIMEOUT).await?;
        let taken = ready(&in_bob, "smith-shop").await?;
        ensure!(taken.status.unwrap().url == Some(format!("https://{host}")));
        let ing = Api::<Ingress>::namespaced(client.clone(), &a.namespace)
            .get("smith-shop")
            .await?;
        ensure!(ing.spec.unwrap().rules.unwrap()[0].host.as_deref() == Some(host.as_str()));
        Ok(())
    })
    .await
}

/// Issue 15 item 1: a second UserSandbox with the same owner id (created with kubectl) gets no
/// namespace and its apps no children; it takes over when the older sandbox goes.
#[tokio::test]
async fn one_owner_id_one_sandbox() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    let client = e2e::client().await?;
    let run = e2e::unique_name("run");
    let owner = e2e::unique_name("u");
    let first = TestSandbox::create_as(&client, &run, &owner, json!({})).await?;
    let (f, c) = (first.clone(), client.clone());
    let second_slot: std::sync::Arc<tokio::sync::Mutex<Option<TestSandbox>>> = Default::default();
    let slot = second_slot.clone();
    let run2 = run.clone();
    let result = with_run_controller(&run, &[], vec![first], || async move {
        let (client, run) = (c, run2);
        f.wait_ready().await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second = TestSandbox::create_as(&client, &run, &owner, json!({})).await?;
        *slot.lock().await = Some(second.clone());
        let refused = sandbox_refused(&client, &second.name, "OwnerConflict").await?;
        ensure!(refused.status.unwrap().namespace.is_none());
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        ensure!(
            namespaces.get_opt(&second.namespace).await?.is_none(),
            "no namespace is provisioned for the second sandbox"
        );
        // Its namespace handed over by a platform admin (the label, as examples/ do): apps there
        // still get nothing.
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": second.namespace, "labels": { policy::build::SANDBOX_LABEL: second.name } },
        }))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        let in_second: Api<UserDeployment> = Api::namespaced(client.clone(), &second.namespace);
        create_deployment(&in_second, &web_app("shop")).await?;
        degraded_with(&in_second, "shop", "OwnerConflict").await?;
        let in_first: Api<UserDeployment> = Api::namespaced(client.clone(), &f.namespace);
        create_deployment(&in_first, &web_app("shop")).await?;
        ready(&in_first, "shop").await?;
        let sel = "k8s-scheduler.io/deployment=shop";
        ensure!(names::<Deployment>(&client, &second.namespace, sel).await?.is_empty());
        ensure!(route_names(&client, &second.namespace, sel).await?.is_empty());

        // The first sandbox goes: the second holds the owner id now, and its app runs.
        f.clone().delete().await?;
        second.wait_ready().await?;
        let app = ready(&in_second, "shop").await?;
        ensure!(app.status.unwrap().url == Some(format!("https://{owner}-shop.apps.example.com")));
        Ok(())
    })
    .await;
    if let Some(second) = second_slot.lock().await.take() {
        e2e::operator::drop_deployment_finalizers(&client, &second.namespace).await;
        second.delete().await?;
    }
    result
}

/// Issue 15 item 6: the controller places workloads only in a namespace it provisioned for an
/// active sandbox, and never provisions a system or platform namespace.
#[tokio::test]
async fn workloads_only_in_namespaces_the_controller_provisioned() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    let client = e2e::client().await?;
    let run = e2e::unique_name("run");
    // A namespace that exists without the controller's label (someone else's).
    let foreign = e2e::unique_name("foreign");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": foreign, "labels": { e2e::cluster::TEST_NAMESPACE_LABEL: "true" } },
            }))?,
        )
        .await?;
    let squatter =
        TestSandbox::create_as(&client, &run, &e2e::unique_name("u"), json!({ "namespace": foreign })).await?;
    // The platform's own namespace, configured (it does not exist: before, the controller
    // created it as a sandbox namespace).
    let platform = e2e::unique_name("platform");
    let on_platform =
        TestSandbox::create_as(&client, &run, &e2e::unique_name("u"), json!({ "namespace": platform })).await?;
    let (s, p, c) = (squatter.clone(), on_platform.clone(), client.clone());
    let result = with_run_controller(
        &run,
        &[("PLATFORM_NAMESPACE", platform.as_str())],
        vec![squatter, on_platform],
        || async move {
            let client = c;
            let refused = sandbox_refused(&client, &s.name, "NamespaceConflict").await?;
            ensure!(degraded_message(&refused).contains("not managed by k8s-scheduler"));
            let uds: Api<UserDeployment> = Api::namespaced(client.clone(), &s.namespace);
            create_deployment(&uds, &web_app("web")).await?;
            degraded_with(&uds, "web", "NamespaceConflict").await?;
            let sel = "k8s-scheduler.io/deployment=web";
            ensure!(names::<Deployment>(&client, &s.namespace, sel).await?.is_empty(), "no workload in {}", s.namespace);

            let refused = sandbox_refused(&client, &p.name, "NamespaceNotAllowed").await?;
            ensure!(degraded_message(&refused).contains("PLATFORM_NAMESPACE"), "{}", degraded_message(&refused));
            ensure!(
                Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get_opt(&p.namespace).await?.is_none(),
                "the platform namespace is not created as a sandbox"
            );

            // System namespaces are refused at admission (CEL), whoever applies the sandbox.
            for ns in ["kube-system", "default", "openshift-console"] {
                let doc = format!(
                    "apiVersion: k8s-scheduler.io/v1alpha1\nkind: UserSandbox\nmetadata:\n  name: {}\nspec:\n  owner:\n    userId: x\n  namespace: {ns}\n",
                    e2e::unique_name("sys")
                );
                let (ok, out) = kubectl_apply(&doc)?;
                ensure!(!ok && out.contains("system namespace"), "{ns}: {out}");
            }
            Ok(())
        },
    )
    .await;
    let _ = namespaces.delete(&foreign, &DeleteParams::background()).await;
    result
}

/// Issue 15 item 11: map values have length limits in the schema (they were lost in the generated
/// CRDs: 1.4 MB values were accepted).
#[tokio::test]
async fn oversized_map_values_are_refused_by_the_apiserver() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    e2e::with_namespace(|client, ns| async move {
        e2e::operator::ensure_crds(&client).await?;
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), &ns);
        let big = "x".repeat(5000);
        for (field, spec) in [
            (
                "spec.parameters.TITLE",
                json!({ "templateRef": { "name": "t" }, "parameters": { "TITLE": big } }),
            ),
            (
                "spec.imageOverrides.web",
                json!({ "templateRef": { "name": "t" }, "imageOverrides": { "web": big } }),
            ),
            (
                "spec.services[0].env.GREETING",
                json!({ "services": [{ "name": "web", "image": "nginx", "port": 80, "env": { "GREETING": big } }] }),
            ),
        ] {
            let ud: UserDeployment = serde_json::from_value(json!({
                "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
                "metadata": { "name": "big" }, "spec": spec,
            }))?;
            let err = uds
                .create(&PostParams::default(), &ud)
                .await
                .err()
                .with_context(|| format!("a 5,000-character {field} was accepted"))?;
            let msg = err.to_string();
            ensure!(msg.contains(field) && msg.contains("Too long"), "{field}: {msg}");
        }
        // At the limit it is accepted.
        let ud: UserDeployment = serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
            "metadata": { "name": "fits" },
            "spec": { "templateRef": { "name": "t" }, "parameters": { "TITLE": "x".repeat(crds::MAX_VALUE_LEN) } },
        }))?;
        uds.create(&PostParams::default(), &ud).await?;
        uds.delete("fits", &DeleteParams::default()).await?;
        Ok(())
    })
    .await
}

/// Issue 15 item 16: app `web` with service `db` and app `web-db` would share the Secret
/// `web-db-secrets` (and apps named like the sandbox's policies its NetworkPolicy): the newer app
/// is refused with NameConflict and gets no children.
#[tokio::test]
async fn colliding_child_names_refuse_the_newer_app() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    with_sandbox(&[], |client, sb| async move {
        let ns = sb.namespace.as_str();
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        let web: UserDeployment = serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
            "metadata": { "name": "web" },
            "spec": { "services": [
                { "name": "app", "image": "ghcr.io/example/web:1", "port": 8080 },
                { "name": "db", "image": "ghcr.io/example/db:1", "port": 5432 },
            ] },
        }))?;
        create_deployment(&uds, &web).await?;
        ready(&uds, "web").await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        create_deployment(&uds, &web_app("web-db")).await?;
        let refused = degraded_with(&uds, "web-db", "NameConflict").await?;
        let message = degraded_message(&refused);
        ensure!(
            message.contains("web-db-secrets") && message.contains("web"),
            "{message}"
        );
        let sel = "k8s-scheduler.io/deployment=web-db";
        ensure!(names::<Deployment>(&client, ns, sel).await?.is_empty());
        ensure!(route_names(&client, ns, sel).await?.is_empty());
        // A name of the sandbox's own NetworkPolicies.
        create_deployment(&uds, &web_app("default-deny")).await?;
        degraded_with(&uds, "default-deny", "NameConflict").await?;
        let policy = Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .get("default-deny")
            .await?;
        ensure!(
            policy.labels().get("k8s-scheduler.io/deployment").is_none(),
            "the sandbox's default-deny policy is untouched"
        );
        // The older app goes: the newer one runs.
        uds.delete("web", &DeleteParams::default()).await?;
        wait_until_gone(&uds, "web", TIMEOUT).await?;
        ready(&uds, "web-db").await?;
        Ok(())
    })
    .await
}

/// Issue 15 item 18: the controller runs only templates the server lists (one rule,
/// `policy::templates::is_visible`): before, it ran a private template of the platform namespace
/// and another namespace's public template.
#[tokio::test]
async fn only_visible_templates_run() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    let client = e2e::client().await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let platform = e2e::unique_name("platform");
    let other = e2e::unique_name("other");
    for ns in [&platform, &other] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": { "name": ns, "labels": { e2e::cluster::TEST_NAMESPACE_LABEL: "true" } },
                }))?,
            )
            .await?;
    }
    let template = |ns: &str, name: &str, visibility: &str| -> Result<Template> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "Template",
            "metadata": { "name": name, "namespace": ns },
            "spec": { "displayName": name, "visibility": visibility,
                      "services": [{ "name": "web", "image": "ghcr.io/example/web:1", "port": 8080 }] },
        }))?)
    };
    e2e::operator::ensure_crds(&client).await?;
    for (ns, name, visibility) in [
        (platform.as_str(), "private", "private"),
        (platform.as_str(), "shared", "org"),
        (other.as_str(), "elsewhere", "public"),
    ] {
        Api::<Template>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &template(ns, name, visibility)?)
            .await?;
    }
    let (p, o) = (platform.clone(), other.clone());
    let result = with_sandbox(&[("PLATFORM_NAMESPACE", platform.as_str())], |client, sb| async move {
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), &sb.namespace);
        let app = |name: &str, template: serde_json::Value| -> Result<UserDeployment> {
            Ok(serde_json::from_value(json!({
                "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
                "metadata": { "name": name }, "spec": { "templateRef": template },
            }))?)
        };
        create_deployment(&uds, &app("shared", json!({ "name": "shared" }))?).await?;
        ready(&uds, "shared").await?;
        create_deployment(&uds, &app("private", json!({ "name": "private" }))?).await?;
        degraded_with(&uds, "private", "TemplateNotFound").await?;
        create_deployment(&uds, &app("named", json!({ "name": "private", "namespace": p }))?).await?;
        degraded_with(&uds, "named", "TemplateNotFound").await?;
        create_deployment(&uds, &app("elsewhere", json!({ "name": "elsewhere", "namespace": o }))?).await?;
        degraded_with(&uds, "elsewhere", "TemplateNotFound").await?;
        Ok(())
    })
    .await;
    for ns in [&platform, &other] {
        let _ = namespaces.delete(ns, &DeleteParams::background()).await;
    }
    result
}

#[test]
fn controller_with_bad_routing_settings_exits_naming_them() -> Result<()> {
    for (variable, value, says) in [
        ("ROUTING", "nginx", "use auto"),
        ("APP_URL_SCHEME", "ftp", "use https or http"),
        ("APP_URL_PORT", "0", "not a port"),
        ("GATEWAY_NAME", "Platform_GW", "not a DNS subdomain"),
    ] {
        let out = std::process::Command::new(workspace_binary("controller")?)
            .env("DEPLOYMENT_DOMAIN", "example.com")
            .env(variable, value)
            .output()?;
        ensure!(!out.status.success(), "{variable}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.contains(variable) && stderr.contains(says),
            "{variable}={value}: {stderr}"
        );
    }
    Ok(())
}

/// The parentRef the gateway tests configure.
const TEST_GATEWAY: (&str, &str, &str) = ("edge", "platform", "web");

/// Plays the gateway controller: writes the route's parent status with `Accepted` = `accepted`.
async fn set_route_accepted(routes: &Api<HTTPRoute>, name: &str, accepted: bool) -> Result<()> {
    let (namespace, gateway, listener) = TEST_GATEWAY;
    let generation = routes.get(name).await?.metadata.generation;
    let (status, reason, message) = if accepted {
        ("True", "Accepted", "")
    } else {
        (
            "False",
            "NotAllowedByListeners",
            "no listener of the Gateway admits routes from this namespace",
        )
    };
    routes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "parents": [{
                "parentRef": { "group": "gateway.networking.k8s.io", "kind": "Gateway",
                               "name": gateway, "namespace": namespace, "sectionName": listener },
                "controllerName": "example.com/e2e-gateway",
                "conditions": [{ "type": "Accepted", "status": status, "reason": reason, "message": message,
                                 "observedGeneration": generation,
                                 "lastTransitionTime": "2026-11-29T10:00:00Z" }],
            }] } })),
        )
        .await?;
    Ok(())
}

/// Gateway mode: a public app gets one HTTPRoute, named like its Ingress would be, on the
/// configured Gateway and listener, with the app's host and its public Service as the backend,
/// owned by the UserDeployment; no Ingress. The URL in status carries APP_URL_SCHEME and
/// APP_URL_PORT. A deleted route comes back. A Gateway's refusal (Accepted=False) shows as
/// Degraded (RouteNotAccepted) while the app stays Ready, and clears when it accepts. Deleting
/// the app removes the route.
#[tokio::test]
async fn gateway_mode_routes_public_apps_with_httproutes() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    ensure_gateway_api(&e2e::client().await?).await?;
    let (gw_namespace, gw_name, listener) = TEST_GATEWAY;
    let env = [
        ("ROUTING", "gateway"),
        ("GATEWAY_NAME", gw_name),
        ("GATEWAY_NAMESPACE", gw_namespace),
        ("GATEWAY_LISTENER", listener),
        ("APP_URL_SCHEME", "http"),
        ("APP_URL_PORT", "8088"),
    ];
    with_sandbox(&env, |client, sb| async move {
        let ns = sb.namespace.as_str();
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        create_deployment(&uds, &web_app("shop")).await?;
        let ud = ready(&uds, "shop").await?;
        let host = format!("{}-shop.apps.example.com", sb.user_id);
        let url = ud.status.clone().unwrap_or_default().url;
        ensure!(
            url == Some(format!("http://{host}:8088")),
            "the URL a browser opens: {url:?}"
        );

        let routes: Api<HTTPRoute> = Api::namespaced(client.clone(), ns);
        let route = routes.get("shop").await.context("the app's HTTPRoute")?;
        let spec = serde_json::to_value(&route.spec)?;
        ensure!(
            spec["hostnames"] == json!([host])
                && spec["parentRefs"]
                    == json!([{ "group": "gateway.networking.k8s.io", "kind": "Gateway",
                                "name": gw_name, "namespace": gw_namespace, "sectionName": listener }]),
            "host and parent: {spec}"
        );
        let backends = &spec["rules"][0]["backendRefs"];
        ensure!(
            backends.as_array().map(Vec::len) == Some(1)
                && backends[0]["name"] == "shop-web"
                && backends[0]["port"] == 8080
                && backends[0]["kind"] == "Service",
            "backend: {backends}"
        );
        let owner = route.owner_references().first().cloned().context("owner reference")?;
        ensure!(
            owner.kind == "UserDeployment" && owner.name == "shop" && owner.uid == ud.uid().unwrap_or_default(),
            "owned by the app: {owner:?}"
        );
        let sel = "k8s-scheduler.io/deployment=shop";
        ensure!(
            route_names(&client, ns, sel).await? == BTreeSet::from(["HTTPRoute/shop".to_string()]),
            "one route, no Ingress"
        );

        let want_host = host.clone();
        deleted_and_recreated(&routes, "shop", "HTTPRoute recreated", move |r: &HTTPRoute| {
            r.spec.hostnames == [want_host.clone()]
        })
        .await?;

        set_route_accepted(&routes, "shop", false).await?;
        let refused = degraded_with(&uds, "shop", "RouteNotAccepted").await?;
        let message = degraded_message(&refused);
        ensure!(
            message.contains(&format!("{gw_namespace}/{gw_name}")) && message.contains("NotAllowedByListeners"),
            "{message}"
        );
        ensure!(
            is_ready_condition(Some(&refused)),
            "Ready does not wait for the Gateway"
        );
        set_route_accepted(&routes, "shop", true).await?;
        wait_for(
            &uds,
            "shop",
            TIMEOUT,
            "Degraded cleared",
            |ud: Option<&UserDeployment>| condition_of(ud, "Degraded") == Some(("False".into(), "AsExpected".into())),
        )
        .await?;

        uds.delete("shop", &DeleteParams::default()).await?;
        wait_until_gone(&uds, "shop", TIMEOUT).await?;
        wait_until_gone(&routes, "shop", TIMEOUT).await
    })
    .await
}

/// Ingress mode with the defaults: the app's Ingress names no IngressClass (the cluster's default
/// serves it, no ingress-nginx), carries the app's TLS section, and the sandbox's policies admit
/// the gateway/ingress controller's namespace, `gateway-system` by default.
#[tokio::test]
async fn ingress_mode_leaves_the_class_to_the_cluster() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    with_sandbox(&[("ROUTING", "ingress")], |client, sb| async move {
        let ns = sb.namespace.as_str();
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        create_deployment(&uds, &web_app("shop")).await?;
        let ud = ready(&uds, "shop").await?;
        let host = format!("{}-shop.apps.example.com", sb.user_id);
        ensure!(ud.status.unwrap_or_default().url == Some(format!("https://{host}")));
        let ing = Api::<Ingress>::namespaced(client.clone(), ns).get("shop").await?;
        let spec = ing.spec.clone().unwrap_or_default();
        ensure!(
            spec.ingress_class_name.is_none(),
            "no ingressClassName by default: {:?}",
            spec.ingress_class_name
        );
        let tls = spec.tls.clone().unwrap_or_default();
        ensure!(
            tls.len() == 1
                && tls[0].hosts == Some(vec![host.clone()])
                && tls[0].secret_name.as_deref() == Some("shop-tls"),
            "TLS: {tls:?}"
        );
        let rule = &spec.rules.clone().unwrap_or_default()[0];
        let backend = rule.http.clone().unwrap_or_default().paths[0].backend.service.clone();
        ensure!(
            rule.host.as_deref() == Some(host.as_str())
                && backend.as_ref().map(|b| b.name.as_str()) == Some("shop-web"),
            "rule: {rule:?}"
        );
        ensure!(
            route_names(&client, ns, "k8s-scheduler.io/deployment=shop").await?
                == BTreeSet::from(["Ingress/shop".to_string()]),
            "no HTTPRoute in ingress mode"
        );
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
        for name in ["allow-ingress-controller", "shop"] {
            let policy = serde_json::to_value(policies.get(name).await?)?;
            let peers = policy["spec"]["ingress"][0]["from"].to_string();
            ensure!(
                peers.contains("\"kubernetes.io/metadata.name\":\"gateway-system\""),
                "{name} admits gateway-system: {peers}"
            );
        }
        Ok(())
    })
    .await
}

/// An app's route follows its visibility (internal: none; public again: back) and the routing
/// mode: restarted in ingress mode, the controller replaces the app's HTTPRoute with an Ingress,
/// and back in gateway mode the Ingress with an HTTPRoute.
#[tokio::test]
async fn routes_follow_visibility_and_the_routing_mode() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    let client = e2e::client().await?;
    ensure_gateway_api(&client).await?;
    let sb = TestSandbox::create(&client, json!({})).await?;
    let ns = sb.namespace.clone();
    let uds: Api<UserDeployment> = Api::namespaced(client.clone(), &ns);
    let sel = "k8s-scheduler.io/deployment=shop";
    let routes_are = |want: &'static [&'static str]| {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            poll(TIMEOUT, &format!("routes {want:?}"), || async {
                Ok((route_names(&client, &ns, sel).await? == want).then_some(()))
            })
            .await
        }
    };
    let set_visibility = |visibility: &'static str| {
        let uds = uds.clone();
        async move {
            uds.patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "visibility": visibility } })),
            )
            .await
        }
    };
    let mut ctrl = sb.start_controller(&[("ROUTING", "gateway")])?;
    let mut logs = String::new();
    let result = async {
        sb.wait_ready().await?;
        let mut app = web_app("shop");
        app.spec.visibility = crds::Visibility::Internal;
        create_deployment(&uds, &app).await?;
        let ud = ready(&uds, "shop").await?;
        ensure!(
            ud.status.unwrap_or_default().url.is_none(),
            "an internal app has no URL"
        );
        routes_are(&[]).await?;
        set_visibility("public").await?;
        routes_are(&["HTTPRoute/shop"]).await?;
        wait_for(&uds, "shop", TIMEOUT, "a URL", |ud: Option<&UserDeployment>| {
            ud.and_then(|u| u.status.as_ref()).is_some_and(|s| s.url.is_some())
        })
        .await?;
        set_visibility("internal").await?;
        routes_are(&[]).await?;
        wait_for(&uds, "shop", TIMEOUT, "no URL", |ud: Option<&UserDeployment>| {
            ud.and_then(|u| u.status.as_ref()).is_some_and(|s| s.url.is_none())
        })
        .await?;
        set_visibility("public").await?;
        routes_are(&["HTTPRoute/shop"]).await?;

        const SWITCHES: [(&str, &[&str]); 2] = [("ingress", &["Ingress/shop"]), ("gateway", &["HTTPRoute/shop"])];
        for (mode, want) in SWITCHES {
            logs.push_str(&ctrl.logs());
            ctrl.kill();
            ctrl = sb.start_controller(&[("ROUTING", mode)])?;
            routes_are(want)
                .await
                .with_context(|| format!("after a restart with ROUTING={mode}: only {want:?}"))?;
            ready(&uds, "shop").await?;
        }
        Ok(())
    }
    .await;
    // Deleted while a controller runs: it removes the deployments' finalizers.
    let cleanup = sb.delete().await;
    logs.push_str(&ctrl.logs());
    ctrl.kill();
    result.with_context(|| format!("controller logs:\n{logs}"))?;
    cleanup
}

/// A worker (a service without a port) runs beside a web service and gets no Service (issue 18).
#[tokio::test]
async fn a_worker_without_a_port_runs_and_gets_no_service() -> Result<()> {
    let _turn = e2e::suite::turn("operator").await;
    with_sandbox(&[("ROUTING", "ingress")], |client, sb| async move {
        let ns = sb.namespace.as_str();
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        let ud: UserDeployment = serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1",
            "kind": "UserDeployment",
            "metadata": { "name": "queue" },
            "spec": { "services": [
                { "name": "web", "image": "ghcr.io/example/web:1", "port": 8080 },
                { "name": "worker", "image": "ghcr.io/example/worker:1" },
            ] },
        }))?;
        create_deployment(&uds, &ud).await?;
        ready(&uds, "queue").await?;
        let selector = format!("{}=queue", policy::build::DEPLOYMENT_LABEL);
        let deployments = names::<Deployment>(&client, ns, &selector).await?;
        ensure!(
            deployments == BTreeSet::from(["queue-web".to_string(), "queue-worker".to_string()]),
            "{deployments:?}"
        );
        let services = names::<Service>(&client, ns, &selector).await?;
        ensure!(
            services == BTreeSet::from(["queue-web".to_string()]),
            "only the web service has a Service: {services:?}"
        );
        Ok(())
    })
    .await
}
