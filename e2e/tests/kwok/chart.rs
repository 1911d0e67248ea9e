//! The Helm chart: lint, rendering with each option, server-side dry-run, the values schema, the
//! server's ConfigMap against the configuration reference, the migration hook, and the RBAC of
//! both components proved with their ServiceAccounts' tokens: the controller and the HTTP server
//! run against the cluster with them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use crds::{Template, UserDeployment};
use e2e::operator::{
    ControllerProcess, TestSandbox, create_deployment, ensure_crds, is_ready_condition, kubectl, workspace_binary,
};
use e2e::{unique_name, wait_for, with_namespace};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::PostParams;
use policy::build::sandbox::SERVER_ROLE_BINDING;
use serde_json::json;
use serde_yaml::Value;

/// Kubernetes version `helm template` renders for (the chart requires >= 1.30).
const KUBE_VERSION: &str = "v1.36.3";

fn chart() -> String {
    e2e::repo_path("charts/k8s-scheduler").display().to_string()
}

fn helm() -> Command {
    Command::new(
        std::env::var("HELM")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "helm".into()),
    )
}

fn output(mut cmd: Command) -> Result<(bool, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running helm/kubectl (hack/test sets HELM and KUBECTL)")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

fn render(release: &str, namespace: &str, sets: &[&str]) -> Result<String> {
    let mut cmd = helm();
    cmd.args([
        "template",
        release,
        &chart(),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let (ok, out) = output(cmd)?;
    ensure!(ok, "helm template {sets:?} failed: {out}");
    Ok(out)
}

fn kubectl_stdin(args: &[&str], input: &str) -> Result<(bool, String)> {
    use std::io::Write;
    let mut child = kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Drops the documents of kinds whose CRDs this cluster does not have (ServiceMonitor).
fn without_kind(rendered: &str, kind: &str) -> String {
    rendered
        .split("\n---")
        .filter(|d| !d.contains(&format!("kind: {kind}")))
        .collect::<Vec<_>>()
        .join("\n---")
}

/// The rendered documents, parsed (comment-only documents dropped).
fn documents(rendered: &str) -> Result<Vec<Value>> {
    let mut docs = vec![];
    for d in rendered.split("\n---") {
        let v: Value = serde_yaml::from_str(d).with_context(|| format!("rendered YAML does not parse:\n{d}"))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The document of `kind` named `name`, if rendered.
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

fn get<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    find(docs, kind, name).with_context(|| format!("no {kind} {name} rendered"))
}

/// The env of the operator Deployment `name` (literal values only).
fn operator_env(docs: &[Value], name: &str) -> Result<BTreeMap<String, String>> {
    let env = get(docs, "Deployment", name)?["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .context("env")?;
    Ok(env
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
        .collect())
}

/// One RBAC rule: (API group, resource, verbs, resourceNames).
type Rule = (String, String, Vec<String>, Vec<String>);

/// A Role's or ClusterRole's rules: one group and one resource per rule, optional resourceNames,
/// no nonResourceURLs or wildcards.
fn rules_of(role: &Value) -> Result<Vec<Rule>> {
    let mut got = vec![];
    for rule in role["rules"].as_sequence().context("rules")? {
        let keys: Vec<&str> = rule
            .as_mapping()
            .context("rule")?
            .keys()
            .filter_map(|k| k.as_str())
            .collect();
        ensure!(
            keys == ["apiGroups", "resources", "verbs"] || keys == ["apiGroups", "resources", "verbs", "resourceNames"],
            "only apiGroups, resources, verbs (and resourceNames): {keys:?}"
        );
        let strings = |field: &str| -> Result<Vec<String>> {
            if rule[field].is_null() {
                return Ok(vec![]);
            }
            let v: Vec<String> = serde_yaml::from_value(rule[field].clone())?;
            ensure!(!v.iter().any(|s| s.contains('*')), "no wildcards: {v:?}");
            Ok(v)
        };
        let (groups, resources, verbs) = (strings("apiGroups")?, strings("resources")?, strings("verbs")?);
        ensure!(
            groups.len() == 1 && resources.len() == 1,
            "one group and resource per rule: {rule:?}"
        );
        got.push((
            groups[0].clone(),
            resources[0].clone(),
            verbs,
            strings("resourceNames")?,
        ));
    }
    Ok(got)
}

fn rules(list: &[(&str, &str, &[&str])]) -> Vec<Rule> {
    list.iter()
        .map(|(g, r, v)| {
            (
                g.to_string(),
                r.to_string(),
                v.iter().map(|s| s.to_string()).collect(),
                vec![],
            )
        })
        .collect()
}

/// The server's ConfigMap data as strings (every value must be a string).
fn config_data(docs: &[Value]) -> Result<BTreeMap<String, String>> {
    let data = get(docs, "ConfigMap", SERVER_CONFIG)?["data"]
        .as_mapping()
        .context("the ConfigMap has data")?;
    data.iter()
        .map(|(k, v)| {
            let k = k.as_str().context("string key")?.to_string();
            let v = v
                .as_str()
                .with_context(|| format!("{k} is a string: {v:?}"))?
                .to_string();
            Ok((k, v))
        })
        .collect()
}

/// `kubectl apply` of these documents into `ns`.
fn apply_documents(ns: &str, docs: &[&Value]) -> Result<()> {
    let yaml = docs
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<Vec<_>, _>>()?
        .join("---\n");
    let (ok, out) = kubectl_stdin(&["apply", "-n", ns, "-f", "-"], &yaml)?;
    ensure!(ok, "kubectl apply: {out}");
    Ok(())
}

/// The documents of the RBAC kinds whose names start with `prefix`.
fn rbac_documents<'a>(docs: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| {
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .contains(&d["kind"].as_str().unwrap_or_default())
                && d["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

/// A kubeconfig authenticating as ServiceAccount `sa` of `ns` (a one-hour token).
fn service_account_kubeconfig(sa: &str, ns: &str) -> Result<PathBuf> {
    let (ok, token) = output({
        let mut c = kubectl();
        c.args(["create", "token", sa, "-n", ns, "--duration=1h"]);
        c
    })?;
    ensure!(ok, "kubectl create token: {token}");
    token_kubeconfig(token.trim())
}

/// Deletes the cluster-scoped ClusterRole and ClusterRoleBinding named `name` (test cleanup).
fn delete_cluster_rbac(name: &str) {
    for kind in ["clusterrole", "clusterrolebinding"] {
        let _ = kubectl().args(["delete", kind, name, "--ignore-not-found"]).output();
    }
}

/// `who` (a ServiceAccount's kubeconfig) may do every request of `allowed` and none of `denied`
/// (`kubectl auth can-i` argument lists).
fn check_rights(kubeconfig: &std::path::Path, who: &str, allowed: &[&[&str]], denied: &[&[&str]]) -> Result<()> {
    for args in allowed {
        ensure!(can_i(kubeconfig, args)?, "the {who} may {args:?}");
    }
    for args in denied {
        ensure!(!can_i(kubeconfig, args)?, "the {who} must not {args:?}");
    }
    Ok(())
}

/// `kubectl auth can-i` with the kubeconfig of a ServiceAccount: true for "yes".
fn can_i(kubeconfig: &std::path::Path, args: &[&str]) -> Result<bool> {
    let out = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i"])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.split_whitespace().next() {
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        other => bail!(
            "kubectl auth can-i {args:?}: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `kubectl` with the kubeconfig of a ServiceAccount, `input` on stdin: (success, output).
fn kubectl_as(kubeconfig: &std::path::Path, args: &[&str], input: Option<&str>) -> Result<(bool, String)> {
    use std::io::Write;
    let mut child = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = input {
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Name of the chart's ValidatingAdmissionPolicy (and its binding) for `release`.
fn policy_name(release: &str) -> String {
    format!("{release}-sandbox-confinement")
}

/// Applies the chart's ValidatingAdmissionPolicy and its binding (cluster-scoped; removed by
/// [`delete_policy`]).
fn apply_policy(docs: &[Value], release: &str) -> Result<()> {
    let name = policy_name(release);
    let policy = get(docs, "ValidatingAdmissionPolicy", &name)?;
    let binding = get(docs, "ValidatingAdmissionPolicyBinding", &name)?;
    let yaml = format!(
        "{}---\n{}",
        serde_yaml::to_string(policy)?,
        serde_yaml::to_string(binding)?
    );
    let (ok, out) = kubectl_stdin(&["apply", "-f", "-"], &yaml)?;
    if !ok {
        delete_policy(release);
        bail!("kubectl apply of the admission policy: {out}");
    }
    Ok(())
}

/// Deletes the admission policy and binding of `release` (test cleanup).
fn delete_policy(release: &str) {
    let name = policy_name(release);
    for kind in ["validatingadmissionpolicybinding", "validatingadmissionpolicy"] {
        let _ = kubectl().args(["delete", kind, &name, "--ignore-not-found"]).output();
    }
}

/// Whether a kubectl output is a refusal by the chart's admission policy of `release`.
fn refused_by_policy(out: &str, release: &str) -> bool {
    out.contains(&format!("ValidatingAdmissionPolicy '{}'", policy_name(release))) && out.contains("denied request")
}

/// Waits until the API server enforces the new policy (it loads policies within seconds): until
/// `args` (a server-side dry run with `kubeconfig`) is refused by it.
async fn wait_until_policy_enforced(
    kubeconfig: &std::path::Path,
    release: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = kubectl_as(kubeconfig, args, input)?;
        if !ok && refused_by_policy(&out, release) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the admission policy {} is not enforced after 30 s: {args:?} gave {out}",
            policy_name(release)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The labels the controller gives a sandbox namespace (controller/src/build/sandbox.rs), and the
/// e2e label that marks test namespaces.
fn sandbox_labels(sandbox: &str) -> serde_json::Value {
    json!({
        "k8s-scheduler.io/sandbox": sandbox,
        "app.kubernetes.io/managed-by": "k8s-scheduler",
        e2e::cluster::TEST_NAMESPACE_LABEL: "true",
    })
}

/// A UserDeployment manifest in `namespace` (for requests made with a ServiceAccount's token).
fn probe_deployment(namespace: &str) -> String {
    json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
        "metadata": { "name": unique_name("probe"), "namespace": namespace },
        "spec": { "templateRef": { "name": "web" } },
    })
    .to_string()
}

/// Name of the server's ConfigMap (fixed by the configuration reference).
const SERVER_CONFIG: &str = "k8s-scheduler-server-config";

#[test]
fn helm_lint_passes() -> Result<()> {
    let mut cmd = helm();
    cmd.args(["lint", "--strict", &chart()]);
    let (ok, out) = output(cmd)?;
    ensure!(ok, "helm lint failed: {out}");
    Ok(())
}

#[test]
fn schema_rejects_wrong_types() -> Result<()> {
    for (set, field) in [
        ("operator.replicas=two", "replicas"),
        ("operator.leaderElection.enabled=maybe", "enabled"),
        ("operator.concurrency=0", "concurrency"),
        ("session.backend=bogus", "backend"),
        ("secrets.backend=s3", "backend"),
        ("server.replicas=two", "replicas"),
        ("session.duration=a day", "duration"),
        ("kubernetes.namespaceTemplate=sandbox", "namespaceTemplate"),
        // A user id alone must not choose the namespace, nor may sandboxes go under kube-.
        ("kubernetes.namespaceTemplate=%s", "namespaceTemplate"),
        ("kubernetes.namespaceTemplate=kube-%s", "namespaceTemplate"),
        ("kubernetes.namespaceTemplate=openshift-%s", "namespaceTemplate"),
        ("vault.address=vault:8200", "address"),
        ("server.ingress.enabeld=true", "enabeld"),
        ("operator.clusterSecretStore=Vault_Backend", "clusterSecretStore"),
        ("routing.mode=nginx", "mode"),
        ("routing.url.scheme=ftp", "scheme"),
        ("routing.url.port=0", "port"),
        ("routing.gateway.namespace=Gateway_System", "namespace"),
        ("routing.gateway.https.port=70000", "port"),
        (
            "routing.gateway.certificate.certManagerIssuerKind=Vault",
            "certManagerIssuerKind",
        ),
        ("routing.ingress.className=Nginx", "className"),
        ("routing.ingres.className=x", "ingres"),
    ] {
        let mut cmd = helm();
        cmd.args(["template", "x", &chart(), "--kube-version", KUBE_VERSION, "--set", set]);
        let (ok, out) = output(cmd)?;
        ensure!(!ok, "{set} was accepted");
        ensure!(out.contains(field), "the error names {field}: {out}");
    }
    Ok(())
}

#[test]
fn memory_sessions_need_a_single_replica() -> Result<()> {
    let mut cmd = helm();
    cmd.args([
        "template",
        "x",
        &chart(),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "session.backend=memory",
    ]);
    let (ok, out) = output(cmd)?;
    ensure!(
        !ok && out.contains("server.replicas=1"),
        "memory sessions with 2 replicas: {out}"
    );
    render("x", "ns", &["session.backend=memory", "server.replicas=1"])?;
    let mut cmd = helm();
    cmd.args([
        "template",
        "x",
        &chart(),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "secrets.backend=aws",
    ]);
    let (ok, out) = output(cmd)?;
    ensure!(!ok && out.contains("secrets.awsRegion"), "aws without a region: {out}");
    Ok(())
}

#[tokio::test]
async fn every_option_renders_and_passes_server_dry_run() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|_client, ns| async move {
        // Pod Security "restricted" warns (at the workload level) about any pod template of the
        // chart that would not run in a restricted namespace.
        let (ok, out) = output({
            let mut c = kubectl();
            c.args(["label", "namespace", &ns, "pod-security.kubernetes.io/warn=restricted"]);
            c
        })?;
        ensure!(ok, "labelling the namespace: {out}");
        let options: [&[&str]; 12] = [
            &[],
            &["operator.leaderElection.enabled=false", "operator.replicas=1"],
            &[
                "operator.clusterSecretStore=vault-backend",
                "operator.allowedRegistries=ghcr.io",
            ],
            &[
                "networkPolicy.enabled=false",
                "operator.podDisruptionBudget.enabled=false",
                "server.podDisruptionBudget.enabled=false",
            ],
            &[
                "routing.mode=ingress",
                "routing.ingress.className=traefik",
                "routing.ingress.certManagerIssuer=letsencrypt",
                "routing.ingress.tlsSecret=wildcard-tls",
                "routing.controllerNamespace=traefik",
                "routing.url.scheme=http",
                "routing.url.port=8088",
            ],
            &[
                "metrics.serviceMonitor.enabled=true",
                "operator.disableNetworkPolicies=true",
            ],
            &[
                "server.ingress.enabled=true",
                "server.ingress.className=traefik",
                "server.ingress.host=portal.acme.io",
                "server.ingress.tlsSecret=portal-tls",
                "server.ingress.certManagerIssuer=letsencrypt",
                "server.ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-buffering=off",
            ],
            &["vault.agentInject.enabled=false", "server.migrations.enabled=false"],
            &[
                "secrets.backend=aws",
                "secrets.awsRegion=eu-west-1",
                "session.backend=redis",
                "server.image.tag=0.2.0",
                "server.image.pullPolicy=Always",
            ],
            &[
                "secrets.backend=database",
                "session.backend=memory",
                "server.replicas=1",
                "session.cookieSecure=false",
                "session.duration=168h",
                "kubernetes.namespaceTemplate=tenant-%s",
                "kubernetes.reconcileInterval=1m",
            ],
            &[
                "server.email.provider=smtp",
                "server.email.smtp.host=smtp.acme.io",
                "server.email.smtp.username=apikey",
                "server.billing.enabled=true",
                "server.reactUI=false",
                "server.existingSecret=my-server-secrets",
                "server.extraEnv[0].name=RUST_LOG",
                "server.extraEnv[0].value=debug",
            ],
            &[
                "networkPolicy.serverAllowFrom[0].namespaceSelector.matchLabels.team=monitoring",
                "server.nodeSelector.pool=system",
                "server.tolerations[0].key=dedicated",
                "server.tolerations[0].operator=Exists",
                "server.migrations.ttlSecondsAfterFinished=60",
            ],
        ];
        for sets in options {
            let release = unique_name("r");
            let rendered = render(&release, &ns, sets)?;
            let docs = documents(&rendered)?;
            get(&docs, "Deployment", &format!("{release}-operator"))?;
            get(&docs, "Deployment", &format!("{release}-server"))?;
            get(&docs, "ConfigMap", SERVER_CONFIG)?;
            let has = |set: &str| sets.contains(&set);
            for component in ["operator", "server"] {
                ensure!(
                    find(&docs, "ServiceMonitor", &format!("{release}-{component}")).is_some()
                        == has("metrics.serviceMonitor.enabled=true"),
                    "{sets:?}: ServiceMonitor of the {component}"
                );
            }
            let policy = policy_name(&release);
            ensure!(
                find(&docs, "ValidatingAdmissionPolicy", &policy).is_some()
                    && find(&docs, "ValidatingAdmissionPolicyBinding", &policy).is_some(),
                "{sets:?}: the admission policy confining the ServiceAccounts"
            );
            ensure!(
                find(&docs, "Ingress", &format!("{release}-server")).is_some() == has("server.ingress.enabled=true"),
                "{sets:?}: server Ingress"
            );
            ensure!(
                find(&docs, "Job", &format!("{release}-server-migrate")).is_some()
                    != has("server.migrations.enabled=false"),
                "{sets:?}: migration Job"
            );
            ensure!(
                find(&docs, "NetworkPolicy", &format!("{release}-server")).is_some()
                    != has("networkPolicy.enabled=false"),
                "{sets:?}: server NetworkPolicy"
            );
            ensure!(
                find(&docs, "PodDisruptionBudget", &format!("{release}-server")).is_some()
                    != has("server.podDisruptionBudget.enabled=false"),
                "{sets:?}: server PodDisruptionBudget"
            );
            let (ok, out) = kubectl_stdin(
                &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
                &without_kind(&rendered, "ServiceMonitor"),
            )?;
            ensure!(ok, "{sets:?}: server dry-run failed: {out}");
            ensure!(
                !out.contains("PodSecurity"),
                "{sets:?}: a pod template breaks Pod Security \"restricted\": {out}"
            );
        }
        Ok(())
    })
    .await
}

/// The UserDeployment finalizer policy: rendered only where the cluster serves
/// MutatingAdmissionPolicy v1 (helm learns that from discovery on install; `--api-versions` here),
/// bound to sandbox namespaces, and to `operator.watchNamespace` alone when that is set; accepted
/// by the apiserver in a server dry-run.
#[tokio::test]
async fn finalizer_policy_renders_where_the_api_exists() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|_client, ns| async move {
        const POLICY: &str = "k8s-scheduler-userdeployment-finalizer";
        let docs = documents(&render("r", &ns, &[])?)?;
        ensure!(
            find(&docs, "MutatingAdmissionPolicy", POLICY).is_none(),
            "no policy may render without the API"
        );
        for (sets, want) in [
            (&[][..], vec![("k8s-scheduler.io/sandbox", "Exists", None)]),
            (
                &["operator.watchNamespace=apps"][..],
                vec![
                    ("k8s-scheduler.io/sandbox", "Exists", None),
                    ("kubernetes.io/metadata.name", "In", Some("apps")),
                ],
            ),
            (&["operator.finalizerPolicy=false"][..], vec![]),
        ] {
            let mut cmd = helm();
            cmd.args([
                "template",
                "r",
                &chart(),
                "--namespace",
                &ns,
                "--kube-version",
                KUBE_VERSION,
            ]);
            cmd.args([
                "--api-versions",
                "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
            ]);
            for s in sets {
                cmd.args(["--set", s]);
            }
            let (ok, rendered) = output(cmd)?;
            ensure!(ok, "helm template {sets:?}: {rendered}");
            let docs = documents(&rendered)?;
            if want.is_empty() {
                ensure!(
                    find(&docs, "MutatingAdmissionPolicy", POLICY).is_none()
                        && find(&docs, "MutatingAdmissionPolicyBinding", POLICY).is_none(),
                    "{sets:?}: the policy must not render"
                );
                continue;
            }
            let policy = get(&docs, "MutatingAdmissionPolicy", POLICY)?;
            let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
            ensure!(
                rule["resources"][0] == "userdeployments" && rule["operations"][0] == "CREATE",
                "{sets:?}: the policy must match UserDeployment creates: {rule:?}"
            );
            let binding = get(&docs, "MutatingAdmissionPolicyBinding", POLICY)?;
            let exprs = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
                .as_sequence()
                .context("binding without matchExpressions")?;
            let got: Vec<(String, String, Option<String>)> = exprs
                .iter()
                .map(|e| {
                    (
                        e["key"].as_str().unwrap_or_default().to_string(),
                        e["operator"].as_str().unwrap_or_default().to_string(),
                        e["values"][0].as_str().map(str::to_string),
                    )
                })
                .collect();
            let want: Vec<(String, String, Option<String>)> = want
                .iter()
                .map(|(k, o, v)| (k.to_string(), o.to_string(), v.map(str::to_string)))
                .collect();
            ensure!(got == want, "{sets:?}: binding selector {got:?}, want {want:?}");
            let (ok, out) = kubectl_stdin(
                &["apply", "--dry-run=server", "-f", "-"],
                &format!(
                    "{}---\n{}",
                    serde_yaml::to_string(policy)?,
                    serde_yaml::to_string(binding)?
                ),
            )?;
            ensure!(ok, "{sets:?}: server dry-run of the policy failed: {out}");
        }
        Ok(())
    })
    .await
}

#[test]
fn server_configmap_has_the_keys_of_the_configuration_reference() -> Result<()> {
    let docs = documents(&render("r", "platform", &["domain=acme.io", "session.backend=redis"])?)?;
    let data = config_data(&docs)?;
    // The "ConfigMap (Helm)" section of the configuration reference, for these values.
    let reference = [
        ("BASE_URL", "https://app.acme.io"),
        ("DEPLOYMENT_DOMAIN", "acme.io"),
        ("GOOGLE_REDIRECT_URL", "https://app.acme.io/oauth2/callback"),
        ("KUBERNETES_ENABLED", "true"),
        ("KUBERNETES_NAMESPACE", "sandbox-%s"),
        ("SESSION_BACKEND", "redis"),
        ("SESSION_DURATION", "24h"),
        ("COOKIE_SECURE", "true"),
        ("SECRETS_BACKEND", "vault"),
        ("VAULT_ADDR", "http://vault.vault.svc.cluster.local:8200"),
        ("VAULT_MOUNT_PATH", "secret"),
    ];
    // Further non-secret settings of the chart.
    let extra = [
        ("VAULT_TOKEN_FILE", "/vault/secrets/token"),
        ("REACT_UI", "true"),
        ("SERVER_ADDR", ":8081"),
        ("METRICS_ADDR", "0.0.0.0:9090"),
        ("PLATFORM_NAMESPACE", "platform"),
        ("KUBERNETES_RECONCILE_INTERVAL", "30s"),
        ("BILLING_ENABLED", "false"),
        ("BILLING_GRACE_PERIOD_HOURS", "168"),
        ("STRIPE_METER_CPU", "app_cpu_core_minutes"),
        ("STRIPE_METER_MEMORY", "app_memory_gib_minutes"),
        ("SMTP_PORT", "587"),
        ("ORG_DEFAULT_PLAN", "free"),
        // The operator's values, shared (policy::Settings): the API refuses what it would.
        ("ALLOWED_REGISTRIES", ""),
        ("APP_URL_SCHEME", "https"),
        ("APP_URL_PORT", ""),
    ];
    for (key, want) in reference.iter().chain(&extra) {
        ensure!(
            data.get(*key).map(String::as_str) == Some(*want),
            "{key}: want {want:?}, got {:?}",
            data.get(*key)
        );
    }
    ensure!(
        data.len() == reference.len() + extra.len(),
        "no other keys: {:?}",
        data.keys()
    );
    let cm = get(&docs, "ConfigMap", SERVER_CONFIG)?;
    ensure!(
        cm["metadata"]["namespace"].as_str() == Some("platform"),
        "in the release namespace"
    );

    // Every value follows its setting.
    let docs = documents(&render(
        "r",
        "platform",
        &[
            "domain=apps.example.org",
            "server.ingress.host=portal.example.org",
            "kubernetes.namespaceTemplate=tenant-%s",
            "session.duration=168h",
            "session.cookieSecure=false",
            "secrets.backend=aws",
            "secrets.awsRegion=us-east-1",
            "vault.address=https://vault.example.org:8200",
            "vault.mountPath=kv",
            "server.reactUI=false",
            "server.email.provider=smtp",
            "server.email.smtp.host=smtp.example.org",
            "server.email.smtp.port=2525",
            "server.email.smtp.username=mailer",
            "server.email.from=Platform <noreply@example.org>",
            "server.organizations.defaultPlan=business",
        ],
    )?)?;
    let data = config_data(&docs)?;
    for (key, want) in [
        ("BASE_URL", Some("https://portal.example.org")),
        (
            "GOOGLE_REDIRECT_URL",
            Some("https://portal.example.org/oauth2/callback"),
        ),
        ("DEPLOYMENT_DOMAIN", Some("apps.example.org")),
        ("KUBERNETES_NAMESPACE", Some("tenant-%s")),
        ("SESSION_BACKEND", Some("postgres")),
        ("SESSION_DURATION", Some("168h")),
        ("COOKIE_SECURE", Some("false")),
        ("SECRETS_BACKEND", Some("aws")),
        ("AWS_REGION", Some("us-east-1")),
        ("VAULT_ADDR", Some("https://vault.example.org:8200")),
        ("VAULT_MOUNT_PATH", Some("kv")),
        ("VAULT_TOKEN_FILE", None),
        ("REACT_UI", Some("false")),
        ("EMAIL_PROVIDER", Some("smtp")),
        ("SMTP_HOST", Some("smtp.example.org")),
        ("SMTP_PORT", Some("2525")),
        ("SMTP_USERNAME", Some("mailer")),
        ("EMAIL_FROM", Some("Platform <noreply@example.org>")),
        ("ORG_DEFAULT_PLAN", Some("business")),
    ] {
        ensure!(
            data.get(key).map(String::as_str) == want,
            "{key}: want {want:?}, got {:?}",
            data.get(key)
        );
    }
    // Secrets never go into the ConfigMap.
    for key in [
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "DATABASE_DSN",
        "SECRETS_ENCRYPTION_KEY",
        "REDIS_ADDR",
        "VAULT_TOKEN",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "SMTP_PASSWORD",
        "SENDGRID_API_KEY",
        "ANTHROPIC_API_KEY",
    ] {
        ensure!(!data.contains_key(key), "{key} is a secret, not ConfigMap data");
    }

    // The server reads the ConfigMap and the Secret (optional, named by server.existingSecret).
    let docs = documents(&render("r", "platform", &["server.existingSecret=mine"])?)?;
    let deployment = get(&docs, "Deployment", "r-server")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env_from = serde_json::to_value(&container["envFrom"])?;
    ensure!(
        env_from
            == json!([
                { "configMapRef": { "name": SERVER_CONFIG } },
                { "secretRef": { "name": "mine", "optional": true } },
            ]),
        "envFrom: {env_from}"
    );
    ensure!(
        container["image"].as_str() == Some("ghcr.io/k8s-scheduler/apiserver:0.1.0"),
        "image tag = appVersion"
    );
    ensure!(
        deployment["spec"]["replicas"].as_i64() == Some(2),
        "2 replicas by default"
    );
    ensure!(
        container["ports"][0]
            == serde_yaml::to_value(json!({ "name": "http", "containerPort": 8081, "protocol": "TCP" }))?,
        "port 8081 named http"
    );
    ensure!(
        container["livenessProbe"]["httpGet"]["path"].as_str() == Some("/health"),
        "liveness /health"
    );
    ensure!(
        container["readinessProbe"]["httpGet"]["path"].as_str() == Some("/readyz"),
        "readiness /readyz"
    );
    let service = get(&docs, "Service", "r-server")?;
    ensure!(
        service["spec"]["ports"][0]
            == serde_yaml::to_value(json!({ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" }))?,
        "Service 80 -> http"
    );
    Ok(())
}

/// The pod template of a Deployment or Job is Pod Security "restricted".
fn ensure_restricted(pod: &Value, what: &str) -> Result<()> {
    let psc = &pod["securityContext"];
    ensure!(psc["runAsNonRoot"].as_bool() == Some(true), "{what}: runAsNonRoot");
    ensure!(
        psc["seccompProfile"]["type"].as_str() == Some("RuntimeDefault"),
        "{what}: seccomp RuntimeDefault"
    );
    for c in pod["containers"].as_sequence().context("containers")? {
        let sc = &c["securityContext"];
        ensure!(
            sc["allowPrivilegeEscalation"].as_bool() == Some(false),
            "{what}: allowPrivilegeEscalation"
        );
        ensure!(
            sc["readOnlyRootFilesystem"].as_bool() == Some(true),
            "{what}: readOnlyRootFilesystem"
        );
        ensure!(
            serde_json::to_value(&sc["capabilities"]["drop"])? == json!(["ALL"]),
            "{what}: capabilities drop ALL"
        );
    }
    Ok(())
}

#[test]
fn migration_job_is_a_hook_running_migrate_only() -> Result<()> {
    let docs = documents(&render("r", "platform", &["domain=acme.io"])?)?;
    let job = get(&docs, "Job", "r-server-migrate")?;
    let annotations = &job["metadata"]["annotations"];
    ensure!(
        annotations["helm.sh/hook"].as_str() == Some("pre-install,pre-upgrade"),
        "hook: {annotations:?}"
    );
    ensure!(
        annotations["helm.sh/hook-delete-policy"].as_str() == Some("before-hook-creation,hook-succeeded"),
        "hook-delete-policy: {annotations:?}"
    );
    ensure!(job["spec"]["backoffLimit"].as_i64() == Some(3), "backoffLimit 3");
    ensure!(
        job["spec"]["ttlSecondsAfterFinished"].as_i64().is_some(),
        "ttlSecondsAfterFinished"
    );
    let pod = &job["spec"]["template"]["spec"];
    ensure_restricted(pod, "migration Job")?;
    ensure!(pod["restartPolicy"].as_str() == Some("Never"), "restartPolicy Never");
    ensure!(
        pod["automountServiceAccountToken"].as_bool() == Some(false),
        "no API token"
    );
    ensure!(
        job["spec"]["template"]["metadata"]["annotations"].is_null(),
        "no Vault Agent sidecar: it would keep the Job running"
    );
    let container = &pod["containers"][0];
    ensure!(
        container["image"].as_str()
            == get(&docs, "Deployment", "r-server")?["spec"]["template"]["spec"]["containers"][0]["image"].as_str(),
        "the server's image"
    );
    ensure!(
        serde_json::to_value(&container["args"])? == json!(["--migrate-only"]),
        "runs apiserver --migrate-only: {:?}",
        container["args"]
    );
    // The ConfigMap's data as env (the hook runs before the ConfigMap exists), the Secret as envFrom.
    let env: BTreeMap<String, String> = container["env"]
        .as_sequence()
        .context("env")?
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ensure!(
        env == config_data(&docs)?,
        "the Job's env is the ConfigMap's data: {env:?}"
    );
    ensure!(
        serde_json::to_value(&container["envFrom"])?
            == json!([{ "secretRef": { "name": "k8s-scheduler-server", "optional": true } }]),
        "DATABASE_DSN from the Secret"
    );

    let docs = documents(&render("r", "platform", &["server.migrations.enabled=false"])?)?;
    ensure!(find(&docs, "Job", "r-server-migrate").is_none(), "no Job when disabled");
    Ok(())
}

#[test]
fn vault_agent_annotations_by_default_and_not_when_disabled() -> Result<()> {
    let pod_annotations = |sets: &[&str]| -> Result<(Value, BTreeMap<String, String>)> {
        let docs = documents(&render("r", "platform", sets)?)?;
        let pod = get(&docs, "Deployment", "r-server")?["spec"]["template"].clone();
        ensure_restricted(&pod["spec"], "server Deployment")?;
        Ok((pod["metadata"]["annotations"].clone(), config_data(&docs)?))
    };
    let (annotations, data) = pod_annotations(&["vault.agentInject.role=scheduler"])?;
    for (key, want) in [
        ("vault.hashicorp.com/agent-inject", "true"),
        ("vault.hashicorp.com/role", "scheduler"),
        ("vault.hashicorp.com/agent-inject-token", "true"),
    ] {
        ensure!(annotations[key].as_str() == Some(want), "{key}: {annotations:?}");
    }
    ensure!(
        data.get("VAULT_TOKEN_FILE").map(String::as_str) == Some("/vault/secrets/token"),
        "VAULT_TOKEN_FILE"
    );

    for sets in [&["vault.agentInject.enabled=false"][..], &["secrets.backend=database"]] {
        let (annotations, data) = pod_annotations(sets)?;
        let vault: Vec<&str> = annotations
            .as_mapping()
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("vault.hashicorp.com/"))
            .collect();
        ensure!(vault.is_empty(), "{sets:?}: no Vault annotations: {vault:?}");
        ensure!(!data.contains_key("VAULT_TOKEN_FILE"), "{sets:?}: no VAULT_TOKEN_FILE");
    }
    Ok(())
}

/// Writes a kubeconfig that authenticates with `token` against the cluster under test.
fn token_kubeconfig(token: &str) -> Result<PathBuf> {
    let admin: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(e2e::cluster::kubeconfig_path())?)?;
    let cluster = admin["clusters"][0]["cluster"].clone();
    let kc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "c", "cluster": serde_json::to_value(&cluster)? }],
        "users": [{ "name": "sa", "user": { "token": token } }],
        "contexts": [{ "name": "sa", "context": { "cluster": "c", "user": "sa" } }],
        "current-context": "sa",
    });
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique_name("sa")));
    std::fs::write(&path, serde_yaml::to_string(&kc)?)?;
    Ok(path)
}

#[tokio::test]
async fn operator_runs_with_the_chart_rbac_and_nothing_more() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|client, ns| async move {
        let release = unique_name("rbac");
        let docs = documents(&render(&release, &ns, &[])?)?;
        // Only the operator's RBAC documents: the operator itself runs here as a process.
        let sa = format!("{release}-operator");
        let rbac = rbac_documents(&docs, &sa);
        ensure!(rbac.len() == 5, "ServiceAccount, ClusterRole(+Binding), Role(+Binding): {}", rbac.len());
        apply_documents(&ns, &rbac)?;
        // The ClusterRole the operator binds to the server in each sandbox namespace.
        let sandbox_role = format!("{release}-server-sandbox");
        apply_documents(&ns, &[get(&docs, "ClusterRole", &sandbox_role)?])?;
        // The admission policy confining the operator to sandbox namespaces: the scenario below
        // runs under it.
        apply_policy(&docs, &release)?;
        let operator_env = operator_env(&docs, &sa)?;
        ensure!(
            operator_env.get("SERVER_SERVICE_ACCOUNT") == Some(&format!("{ns}/{release}-server"))
                && operator_env.get("SERVER_SANDBOX_CLUSTER_ROLE") == Some(&sandbox_role),
            "the operator binds the server's ServiceAccount to {sandbox_role}: {operator_env:?}"
        );
        let kubeconfig = service_account_kubeconfig(&sa, &ns)?;
        wait_until_policy_enforced(
            &kubeconfig,
            &release,
            &["create", "configmap", "probe", "-n", &ns, "--dry-run=server"],
            None,
        )
        .await?;

        // Something the operator must not do: read Secrets.
        let (ok, out) = output({
            let mut c = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
            c.args(["--kubeconfig", kubeconfig.to_str().unwrap_or_default(), "get", "secrets", "-n", "kube-system"]);
            c
        })?;
        ensure!(!ok && out.contains("forbidden"), "the operator's token must not read Secrets: {out}");

        // The end-to-end scenario with the ServiceAccount's token, leader election included.
        let sb = TestSandbox::create(&client, json!({})).await?;
        let mut env: Vec<(&str, String)> = sb.controller_env();
        env.extend([
            ("LEADER_ELECT", "true".to_string()),
            ("LEASE_NAMESPACE", ns.clone()),
            ("LEASE_NAME", sa.clone()),
            ("CLUSTER_SECRET_STORE", String::new()),
            ("SERVER_SERVICE_ACCOUNT", operator_env["SERVER_SERVICE_ACCOUNT"].clone()),
            ("SERVER_SANDBOX_CLUSTER_ROLE", sandbox_role.clone()),
        ]);
        let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut ctrl = ControllerProcess::start_with_kubeconfig(&kubeconfig, &env_ref)?;
        let scenario = async {
            sb.wait_ready().await?;
            let tns = sb.namespace.as_str();
            let t: Template = serde_json::from_value(json!({
                "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "Template",
                "metadata": { "name": "web", "namespace": tns },
                "spec": { "displayName": "web", "services": [{ "name": "web", "image": "ghcr.io/x/web:1", "port": 8080 }],
                          "ingress": { "service": "web" } },
            }))?;
            Api::<Template>::namespaced(client.clone(), tns).create(&PostParams::default(), &t).await?;
            let uds: Api<UserDeployment> = Api::namespaced(client.clone(), tns);
            let ud: UserDeployment = serde_json::from_value(json!({
                "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
                "metadata": { "name": "app" }, "spec": { "templateRef": { "name": "web" } },
            }))?;
            create_deployment(&uds, &ud).await?;
            wait_for(&uds, "app", Duration::from_secs(90), "Ready with the chart's RBAC", is_ready_condition::<UserDeployment>)
                .await?;
            // Its route, of the kind ROUTING=auto picks here: HTTPRoutes where the cluster serves
            // the Gateway API (hack/test installs it), which the chart's RBAC must cover too.
            if controller::gateway::http_routes_served(&client).await? {
                Api::<controller::gateway::HTTPRoute>::namespaced(client.clone(), tns)
                    .get("app")
                    .await
                    .context("the app's HTTPRoute (ROUTING=auto on a cluster with the Gateway API)")?;
            } else {
                Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(client.clone(), tns)
                    .get("app")
                    .await
                    .context("the app's Ingress (ROUTING=auto on a cluster without the Gateway API)")?;
            }
            // The server's RoleBinding in the sandbox namespace (needs `bind` on the ClusterRole).
            let rb: Api<RoleBinding> = Api::namespaced(client.clone(), tns);
            let rb = rb.get(SERVER_ROLE_BINDING).await.context("the server's RoleBinding in the sandbox")?;
            ensure!(rb.role_ref.name == sandbox_role, "RoleBinding to {sandbox_role}: {:?}", rb.role_ref);
            Ok::<_, anyhow::Error>(())
        }
        .await;
        // Permission errors are judged on the scenario's log, before the namespace starts
        // terminating (writes into a terminating namespace are refused too, for other reasons).
        let scenario_logs = ctrl.logs();
        let cleanup = sb.delete().await;
        let logs = ctrl.logs();
        ctrl.kill();
        let _ = std::fs::remove_file(&kubeconfig);
        delete_cluster_rbac(&sa);
        delete_cluster_rbac(&sandbox_role);
        delete_policy(&release);
        scenario.with_context(|| format!("controller log:\n{logs}"))?;
        let denied = scenario_logs.lines().any(|l| {
            (l.contains("forbidden") && l.contains("cannot ")) || l.contains(&policy_name(&release))
        });
        ensure!(!denied, "the operator hit an RBAC or admission policy denial:\n{scenario_logs}");
        cleanup
    })
    .await
}

/// The server's ClusterRole, rule by rule (see templates/server-rbac.yaml): the calls of
/// apiserver/src/platform/kube.rs and nothing else (Template writes only in sandboxes, through the
/// per-sandbox role; a UserSandbox is patched
/// to adopt an unmarked one or to write a team's members, and deleted only with its team).
const SERVER_RULES: &[(&str, &str, &[&str])] = &[
    (
        "k8s-scheduler.io",
        "userdeployments",
        &["get", "list", "watch", "create", "update", "delete"],
    ),
    ("k8s-scheduler.io", "templates", &["list", "watch"]),
    (
        "k8s-scheduler.io",
        "usersandboxes",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "events", &["list"]),
    ("metrics.k8s.io", "pods", &["list"]),
];

/// The ClusterRole the operator binds to the server in each sandbox namespace: the pods of an app's
/// service (listed by label) and the chosen one's log (`GET /api/deployments/{name}/logs`); the
/// sandbox's own Templates (authoring: read, create, replace, delete); and,
/// unless a ClusterSecretStore owns them, the apps' Secrets (server-side apply of `<app>-secrets`,
/// a read to compare, a delete of a service's Secret no longer needed).
fn server_sandbox_rules(writes_secrets: bool) -> Vec<Rule> {
    let mut want = rules(&[
        ("", "pods", &["get", "list"]),
        ("", "pods/log", &["get"]),
        ("k8s-scheduler.io", "templates", &["get", "create", "update", "delete"]),
    ]);
    if writes_secrets {
        want.extend(rules(&[("", "secrets", &["get", "create", "patch", "delete"])]));
    }
    want
}

/// The operator's ClusterRole without the server-sandbox grant (templates/operator-rbac.yaml):
/// the calls of controller/src and nothing else.
const OPERATOR_RULES: &[(&str, &str, &[&str])] = &[
    ("k8s-scheduler.io", "usersandboxes", &["list", "watch"]),
    ("k8s-scheduler.io", "templates", &["get", "list", "watch"]),
    ("k8s-scheduler.io", "userdeployments", &["list", "watch", "patch"]),
    ("k8s-scheduler.io", "usersandboxes/status", &["patch"]),
    ("k8s-scheduler.io", "templates/status", &["patch"]),
    ("k8s-scheduler.io", "userdeployments/status", &["patch"]),
    ("k8s-scheduler.io", "usersandboxes/finalizers", &["update"]),
    ("k8s-scheduler.io", "userdeployments/finalizers", &["update"]),
    ("", "namespaces", &["get", "list", "watch", "create", "patch"]),
    ("", "resourcequotas", &["list", "watch", "create", "patch"]),
    ("", "limitranges", &["create", "patch"]),
    ("", "serviceaccounts", &["create", "patch"]),
    ("", "services", &["list", "watch", "create", "patch", "delete"]),
    ("", "configmaps", &["list", "watch", "create", "patch", "delete"]),
    (
        "apps",
        "deployments",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "pods", &["list"]),
    ("", "events", &["list"]),
    (
        "networking.k8s.io",
        "ingresses",
        &["list", "watch", "create", "patch", "delete"],
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        &["list", "watch", "create", "patch", "delete"],
    ),
    (
        "policy",
        "poddisruptionbudgets",
        &["list", "watch", "create", "patch", "delete"],
    ),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        &["list", "watch", "create", "patch", "delete"],
    ),
    (
        "external-secrets.io",
        "externalsecrets",
        &["list", "create", "patch", "delete"],
    ),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// The operator's rules: [`OPERATOR_RULES`], the server's RoleBinding in each sandbox with `bind`
/// on `<release>-server-sandbox` (with or without a ClusterSecretStore: the server always reads the
/// apps' pods and logs there), and the members' RoleBindings (watched so that a hand-edited one is
/// restored, deleted when a role has no member left) with `bind` on the three sandbox roles only.
fn operator_rules(release: &str) -> Vec<Rule> {
    let mut want = rules(OPERATOR_RULES);
    want.push((
        "rbac.authorization.k8s.io".into(),
        "rolebindings".into(),
        vec![
            "list".into(),
            "watch".into(),
            "create".into(),
            "patch".into(),
            "delete".into(),
        ],
        vec![],
    ));
    want.push((
        "rbac.authorization.k8s.io".into(),
        "clusterroles".into(),
        vec!["bind".into()],
        vec![format!("{release}-server-sandbox")],
    ));
    want.push((
        "rbac.authorization.k8s.io".into(),
        "clusterroles".into(),
        vec!["bind".into()],
        vec![
            format!("{release}-sandbox-admin"),
            format!("{release}-sandbox-developer"),
            format!("{release}-sandbox-viewer"),
        ],
    ));
    want
}

/// The operator's leader-election Role in the release namespace: its one Lease.
fn leader_election_rules(release: &str) -> Vec<Rule> {
    vec![
        (
            "coordination.k8s.io".into(),
            "leases".into(),
            vec!["get".into(), "update".into()],
            vec![format!("{release}-operator")],
        ),
        (
            "coordination.k8s.io".into(),
            "leases".into(),
            vec!["create".into()],
            vec![],
        ),
    ]
}

#[tokio::test]
async fn server_rbac_grants_exactly_the_listed_rules() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|_client, ns| async move {
        let release = unique_name("srv");
        let sa = format!("{release}-server");
        let sandbox_role = format!("{sa}-sandbox");
        let docs = documents(&render(&release, &ns, &[])?)?;

        // The rendered rules are exactly the lists.
        let got = rules_of(get(&docs, "ClusterRole", &sa)?)?;
        let want = rules(SERVER_RULES);
        ensure!(got == want, "server ClusterRole rules:\n got {got:?}\nwant {want:?}");
        let got = rules_of(get(&docs, "ClusterRole", &sandbox_role)?)?;
        let want = server_sandbox_rules(true);
        ensure!(
            got == want,
            "server-sandbox ClusterRole rules:\n got {got:?}\nwant {want:?}"
        );
        // With a ClusterSecretStore the server writes no Secrets: pods and logs only.
        let eso = documents(&render(
            &release,
            &ns,
            &["operator.clusterSecretStore=vault-backend", "secrets.backend=vault"],
        )?)?;
        let got = rules_of(get(&eso, "ClusterRole", &sandbox_role)?)?;
        let want = server_sandbox_rules(false);
        ensure!(
            got == want,
            "server-sandbox ClusterRole rules with a ClusterSecretStore:\n got {got:?}\nwant {want:?}"
        );

        // Only the first is bound cluster-wide; the operator binds the second per sandbox.
        let rbac = rbac_documents(&docs, &sa);
        ensure!(
            rbac.len() == 4,
            "ServiceAccount, ClusterRole(+Binding), server-sandbox ClusterRole: {}",
            rbac.len()
        );
        let bindings: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("RoleBinding")))
            .filter(|d| {
                d["subjects"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|s| s["name"].as_str() == Some(&sa))
            })
            .collect();
        ensure!(
            bindings.len() == 1,
            "one binding of the server's ServiceAccount: {bindings:?}"
        );
        ensure!(
            bindings[0]["kind"].as_str() == Some("ClusterRoleBinding")
                && bindings[0]["roleRef"]["name"].as_str() == Some(&sa)
                && serde_json::to_value(&bindings[0]["subjects"])?
                    == json!([{ "kind": "ServiceAccount", "name": sa, "namespace": ns }]),
            "the ClusterRoleBinding of {sa}: {:?}",
            bindings[0]
        );
        ensure!(
            get(&docs, "Deployment", &sa)?["spec"]["template"]["spec"]["serviceAccountName"].as_str() == Some(&sa),
            "the server runs as its own ServiceAccount"
        );

        // What the API server makes of it, asked with the ServiceAccount's own token.
        apply_documents(&ns, &rbac)?;
        let checks = async {
            let kubeconfig = service_account_kubeconfig(&sa, &ns)?;
            // The test namespace plays a sandbox namespace: the RoleBinding the operator makes there.
            let role_binding = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": SERVER_ROLE_BINDING, "namespace": ns },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sandbox_role },
                "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": ns }],
            });
            let (ok, out) = kubectl_stdin(&["apply", "-f", "-"], &serde_json::to_string(&role_binding)?)?;
            ensure!(ok, "the sandbox's RoleBinding: {out}");
            let other_ns = "sandbox-someone-else";
            let result = {
                check_rights(
                    &kubeconfig,
                    "server",
                    &[
                        &["create", "userdeployments.k8s-scheduler.io", "-n", other_ns][..],
                        &["update", "userdeployments.k8s-scheduler.io", "-n", other_ns],
                        &["delete", "userdeployments.k8s-scheduler.io", "-n", other_ns],
                        &["watch", "userdeployments.k8s-scheduler.io", "--all-namespaces"],
                        &["watch", "templates.k8s-scheduler.io", "--all-namespaces"],
                        &["create", "usersandboxes.k8s-scheduler.io"],
                        &["watch", "usersandboxes.k8s-scheduler.io"],
                        // A team's sandbox: its members written, deleted with the team.
                        &["patch", "usersandboxes.k8s-scheduler.io"],
                        &["delete", "usersandboxes.k8s-scheduler.io"],
                        &["list", "events", "-n", other_ns],
                        &["create", "secrets", "-n", &ns],
                        &["patch", "secrets", "-n", &ns],
                        &["get", "secrets", "-n", &ns],
                        &["delete", "secrets", "-n", &ns],
                        // The logs route: an app's pods and the chosen one's log.
                        &["list", "pods", "-n", &ns],
                        &["get", "pods", "-n", &ns],
                        &["get", "pods", "--subresource=log", "-n", &ns],
                        // Template authoring in the sandbox.
                        &["get", "templates.k8s-scheduler.io", "-n", &ns],
                        &["create", "templates.k8s-scheduler.io", "-n", &ns],
                        &["update", "templates.k8s-scheduler.io", "-n", &ns],
                        &["delete", "templates.k8s-scheduler.io", "-n", &ns],
                    ],
                    &[
                        &["list", "pods", "-n", other_ns][..],
                        &["list", "pods", "--all-namespaces"],
                        // Pods: read only, in the sandbox that binds the role, and no way into
                        // them (exec, attach, port-forward) or around them (ephemeral containers).
                        &["get", "pods", "--subresource=log", "-n", other_ns],
                        &["watch", "pods", "-n", &ns],
                        &["create", "pods", "-n", &ns],
                        &["delete", "pods", "-n", &ns],
                        &["patch", "pods", "-n", &ns],
                        &["create", "pods", "--subresource=exec", "-n", &ns],
                        &["get", "pods", "--subresource=exec", "-n", &ns],
                        &["create", "pods", "--subresource=attach", "-n", &ns],
                        &["create", "pods", "--subresource=portforward", "-n", &ns],
                        &["patch", "pods", "--subresource=ephemeralcontainers", "-n", &ns],
                        &["create", "namespaces"],
                        &["create", "deployments.apps", "-n", other_ns],
                        &["update", "usersandboxes.k8s-scheduler.io"],
                        &[
                            "update",
                            "userdeployments.k8s-scheduler.io",
                            "--subresource=status",
                            "-n",
                            other_ns,
                        ],
                        &["create", "events", "-n", other_ns],
                        &["watch", "events", "-n", other_ns],
                        &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
                        &["patch", "userdeployments.k8s-scheduler.io", "-n", other_ns],
                        &["update", "usersandboxes.k8s-scheduler.io"],
                        &["update", "usersandboxes.k8s-scheduler.io", "--subresource=status"],
                        // No Template writes outside sandboxes, and no patch (authoring replaces).
                        &["patch", "templates.k8s-scheduler.io", "-n", &ns],
                        &["create", "templates.k8s-scheduler.io", "-n", other_ns],
                        &["update", "templates.k8s-scheduler.io", "-n", other_ns],
                        &["delete", "templates.k8s-scheduler.io", "-n", other_ns],
                        &["get", "templates.k8s-scheduler.io", "-n", other_ns],
                        // Secrets: only in the sandbox namespace that binds it, and never listed.
                        &["list", "secrets", "-n", &ns],
                        &["update", "secrets", "-n", &ns],
                        &["create", "secrets", "-n", other_ns],
                        &["get", "secrets", "-n", "kube-system"],
                    ],
                )
            };
            let _ = std::fs::remove_file(&kubeconfig);
            result
        }
        .await;
        delete_cluster_rbac(&sa);
        delete_cluster_rbac(&sandbox_role);
        checks
    })
    .await
}

/// The apiserver binary as a child process; killed when dropped.
struct ServerProcess {
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The apiserver binary with exactly `env` (and PATH), output to a log file.
fn apiserver(env: &BTreeMap<String, String>, args: &[&str]) -> Result<(Command, PathBuf)> {
    let log = std::env::temp_dir().join(format!("{}.log", unique_name("apiserver")));
    let file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(workspace_binary("apiserver")?);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    Ok((cmd, log))
}

#[tokio::test]
async fn server_runs_with_the_chart_config_and_rbac() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|client, ns| async move {
        ensure_crds(&client).await?;
        let release = unique_name("srv");
        let sa = format!("{release}-server");
        // The database secrets backend: the Vault token file of the default exists only in a pod.
        let docs = documents(&render(&release, &ns, &["domain=acme.io", "secrets.backend=database"])?)?;
        let config = config_data(&docs)?;
        ensure!(
            config["SESSION_BACKEND"] == "postgres",
            "sessions in PostgreSQL by default"
        );
        let db = e2e::services::fresh_postgres().await?;
        // What the Secret holds.
        let secret: BTreeMap<String, String> = [
            ("DATABASE_DSN", db.url.as_str()),
            ("GOOGLE_CLIENT_ID", "chart-test.apps.googleusercontent.com"),
            ("GOOGLE_CLIENT_SECRET", "chart-test-secret"),
            ("SECRETS_ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();

        // The migration Job's container: its env and the Secret, `--migrate-only`.
        let job =
            &get(&docs, "Job", &format!("{release}-server-migrate"))?["spec"]["template"]["spec"]["containers"][0];
        let mut env: BTreeMap<String, String> = job["env"]
            .as_sequence()
            .context("env")?
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().into(),
                    e["value"].as_str().unwrap_or_default().into(),
                )
            })
            .collect();
        env.extend(secret.clone());
        let args: Vec<String> = serde_yaml::from_value(job["args"].clone())?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut cmd, log) = apiserver(&env, &args)?;
        let status = cmd.status()?;
        let migrate_log = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        ensure!(
            status.success(),
            "apiserver --migrate-only with the Job's env: {migrate_log}"
        );

        // The server: the ConfigMap and the Secret as env, the ServiceAccount's token, the
        // chart's RBAC. Only the listen address differs (a free loopback port).
        let rbac = rbac_documents(&docs, &sa);
        apply_documents(&ns, &rbac)?;
        // Under the admission policy that confines the server to sandbox namespaces.
        apply_policy(&docs, &release)?;
        let outcome = async {
            let kubeconfig = service_account_kubeconfig(&sa, &ns)?;
            let probe = probe_deployment(&ns);
            wait_until_policy_enforced(
                &kubeconfig,
                &release,
                &["create", "-f", "-", "--dry-run=server"],
                Some(&probe),
            )
            .await?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut env = config.clone();
            env.extend(secret.clone());
            env.insert("SERVER_ADDR".into(), format!("127.0.0.1:{port}"));
            env.insert("METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}"));
            env.insert("KUBECONFIG_PATH".into(), kubeconfig.display().to_string());
            let (mut cmd, log) = apiserver(&env, &[])?;
            let server = ServerProcess {
                child: cmd.spawn()?,
                log,
            };
            let result = async {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
                let base = format!("http://127.0.0.1:{port}");
                let deadline = Instant::now() + Duration::from_secs(90);
                let mut last = String::new();
                loop {
                    if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                        let status = r.status();
                        last = format!("{status}: {}", r.text().await.unwrap_or_default());
                        if status.is_success() {
                            break;
                        }
                    }
                    ensure!(Instant::now() < deadline, "/readyz not ok within 90 s (last: {last})");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let health = http.get(format!("{base}/health")).send().await?;
                ensure!(health.status().is_success(), "/health: {}", health.status());
                let flags: serde_json::Value = http.get(format!("{base}/api/config")).send().await?.json().await?;
                ensure!(flags["kubernetesEnabled"] == json!(true), "KUBERNETES_ENABLED: {flags}");
                ensure!(
                    flags["deploymentDomain"] == json!("acme.io"),
                    "DEPLOYMENT_DOMAIN: {flags}"
                );
                ensure!(flags["baseUrl"] == json!("https://app.acme.io"), "BASE_URL: {flags}");
                ensure!(flags["reactUi"] == json!(true), "REACT_UI: {flags}");
                ensure!(flags["devMode"] == json!(false), "not DEV_MODE: {flags}");
                api_flow_with_chart_rbac(&http, &base, &db.url, &client, &release, &ns).await
            }
            .await;
            let logs = server.logs();
            drop(server);
            let _ = std::fs::remove_file(&kubeconfig);
            result.with_context(|| format!("server log:\n{logs}"))?;
            ensure!(
                !logs.contains("forbidden"),
                "the server hit an RBAC or admission policy denial with the chart's ClusterRole:\n{logs}"
            );
            Ok(())
        }
        .await;
        delete_cluster_rbac(&sa);
        delete_policy(&release);
        outcome
    })
    .await
}

/// The API scenario of a signed-in user through the server running with the chart's RBAC: the
/// first request creates the user's UserSandbox; a deployment is created, listed, given a secret
/// (delivered as a Secret in the sandbox namespace, through the RoleBinding the operator makes
/// there) and deleted. What the controller does is stood in for by the test (namespace,
/// RoleBinding), since the operator's own RBAC is proved by `operator_runs_with_the_chart_rbac...`.
async fn api_flow_with_chart_rbac(
    http: &reqwest::Client,
    base: &str,
    db_url: &str,
    client: &kube::Client,
    release: &str,
    release_ns: &str,
) -> Result<()> {
    use sha2::Digest;
    let user = unique_name("chart");
    let token = format!("kst_{}", unique_name("token"));
    let hash: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pool = sqlx::PgPool::connect(db_url).await?;
    sqlx::query("INSERT INTO users (id, subject, email, name, created_at) VALUES ($1, $2, $3, $1, 0)")
        .bind(&user)
        .bind(format!("test|{user}"))
        .bind(format!("{user}@example.com"))
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at) VALUES ($1, $2, 't', $3, $4, 0)",
    )
    .bind(unique_name("t"))
    .bind(&user)
    .bind(&hash)
    .bind("deployments:read deployments:write templates:read secrets:read secrets:write")
    .execute(&pool)
    .await?;
    let sandbox_ns = format!("sandbox-{user}");
    let outcome = async {
        let me: serde_json::Value = http.get(format!("{base}/api/me")).bearer_auth(&token).send().await?.json().await?;
        ensure!(me["sandbox"]["namespace"] == json!(sandbox_ns), "{me}");
        let sandboxes: Api<crds::UserSandbox> = Api::all(client.clone());
        ensure!(sandboxes.get_opt(&sandbox_ns).await?.is_some(), "the server created the UserSandbox");
        // The controller's part: the namespace and the server's RoleBinding in it.
        // With the labels the controller gives sandbox namespaces (the admission policy lets the
        // server write only there).
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({ "metadata": {
            "name": sandbox_ns,
            "labels": sandbox_labels(&sandbox_ns),
        } }))?;
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": SERVER_ROLE_BINDING, "namespace": sandbox_ns },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{release}-server-sandbox") },
            "subjects": [{ "kind": "ServiceAccount", "name": format!("{release}-server"), "namespace": release_ns }],
        }))?;
        Api::<RoleBinding>::namespaced(client.clone(), &sandbox_ns).create(&PostParams::default(), &rb).await?;
        let send = |method: reqwest::Method, path: &str, body: serde_json::Value| {
            let mut r = http.request(method, format!("{base}{path}")).bearer_auth(&token);
            if !body.is_null() {
                r = r.json(&body);
            }
            r.send()
        };
        // A template the user owns (private, in the sandbox namespace).
        let mut t: Template = serde_yaml::from_str(include_str!("../../../examples/20-template-hello-web.yaml"))?;
        t.metadata.namespace = Some(sandbox_ns.clone());
        t.spec.visibility = crds::TemplateVisibility::Private;
        Api::<Template>::namespaced(client.clone(), &sandbox_ns).create(&PostParams::default(), &t).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list: serde_json::Value = send(reqwest::Method::GET, "/api/templates", serde_json::Value::Null).await?.json().await?;
            if list.as_array().is_some_and(|l| l.iter().any(|t| t["name"] == "hello-web")) {
                break;
            }
            ensure!(Instant::now() < deadline, "the template never reached the server's cache: {list}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let created = send(reqwest::Method::POST, "/api/deployments", json!({ "template": "hello-web", "name": "web" })).await?;
        let status = created.status();
        ensure!(status == reqwest::StatusCode::CREATED, "create: {status} {}", created.text().await?);
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), &sandbox_ns);
        ensure!(uds.get_opt("web").await?.is_some(), "the UserDeployment exists");
        let got = send(reqwest::Method::GET, "/api/deployments/web", serde_json::Value::Null).await?;
        ensure!(got.status().is_success(), "get: {}", got.status());
        // A secret: stored (database backend) and delivered as a Secret in the sandbox namespace.
        let put = send(reqwest::Method::PUT, "/api/secrets/deployments/web/API_KEY", json!({ "value": "v1" })).await?;
        let status = put.status();
        ensure!(status == reqwest::StatusCode::CREATED, "secret: {status} {}", put.text().await?);
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &sandbox_ns);
        let delivered = secrets.get_opt("web-secrets").await?.context("the Secret web-secrets was delivered")?;
        ensure!(delivered.data.as_ref().is_some_and(|d| d.contains_key("API_KEY")), "API_KEY in web-secrets");
        let del = send(reqwest::Method::DELETE, "/api/deployments/web", serde_json::Value::Null).await?;
        ensure!(del.status() == reqwest::StatusCode::NO_CONTENT, "delete: {}", del.status());
        Ok(())
    }
    .await;
    // The namespace carries the sandbox label, so the finalizer policy (when the cluster has it)
    // gave the app the controller's cleanup finalizer; no controller runs here to remove it.
    e2e::operator::drop_deployment_finalizers(client, &sandbox_ns).await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(&sandbox_ns, &Default::default())
        .await;
    let _ = Api::<crds::UserSandbox>::all(client.clone())
        .delete(&sandbox_ns, &Default::default())
        .await;
    outcome
}

/// The operator's RBAC is exactly what the controller calls (issue 15, item 5), proved with its
/// ServiceAccount's token: no `update` of specs or workloads, no Secrets, no RBAC beyond binding
/// the server-sandbox ClusterRole, the Lease by name; the same with a ClusterSecretStore (the
/// server still reads the apps' pods and logs).
#[tokio::test]
async fn operator_rbac_grants_exactly_the_listed_rules() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|_client, ns| async move {
        let release = unique_name("op");
        let sa = format!("{release}-operator");
        let sandbox_role = format!("{release}-server-sandbox");
        let docs = documents(&render(&release, &ns, &[])?)?;
        let got = rules_of(get(&docs, "ClusterRole", &sa)?)?;
        let want = operator_rules(&release);
        ensure!(got == want, "operator ClusterRole rules:\n got {got:?}\nwant {want:?}");
        let got = rules_of(get(&docs, "Role", &format!("{sa}-leader-election"))?)?;
        let want = leader_election_rules(&release);
        ensure!(got == want, "leader-election Role rules:\n got {got:?}\nwant {want:?}");
        // External Secrets mode: the server writes no Secrets, but reads pods and logs: the same
        // one role to bind.
        let eso = documents(&render(&release, &ns, &["operator.clusterSecretStore=vault-backend"])?)?;
        let got = rules_of(get(&eso, "ClusterRole", &sa)?)?;
        let want = operator_rules(&release);
        ensure!(
            got == want,
            "operator ClusterRole rules with a ClusterSecretStore:\n got {got:?}\nwant {want:?}"
        );

        // What the API server makes of them, asked with the ServiceAccount's own token.
        let rbac = rbac_documents(&docs, &sa);
        apply_documents(&ns, &rbac)?;
        apply_documents(&ns, &[get(&docs, "ClusterRole", &sandbox_role)?])?;
        let checks = async {
            let kubeconfig = service_account_kubeconfig(&sa, &ns)?;
            let sandbox_ns = "sandbox-someone";
            let result = {
                let lease = format!("leases.coordination.k8s.io/{sa}");
                let bind_sandbox = format!("clusterroles.rbac.authorization.k8s.io/{sandbox_role}");
                check_rights(
                    &kubeconfig,
                    "operator",
                    &[
                        &["create", "namespaces"][..],
                        &["patch", "namespaces"],
                        &["patch", "deployments.apps", "-n", sandbox_ns],
                        &["delete", "configmaps", "-n", sandbox_ns],
                        &["create", "rolebindings.rbac.authorization.k8s.io", "-n", sandbox_ns],
                        &["bind", &bind_sandbox],
                        &["patch", "userdeployments.k8s-scheduler.io", "-n", sandbox_ns],
                        &[
                            "patch",
                            "userdeployments.k8s-scheduler.io",
                            "--subresource=status",
                            "-n",
                            sandbox_ns,
                        ],
                        &["create", "events.events.k8s.io", "-n", sandbox_ns],
                        &["watch", "httproutes.gateway.networking.k8s.io", "--all-namespaces"],
                        &["patch", "httproutes.gateway.networking.k8s.io", "-n", sandbox_ns],
                        &["delete", "httproutes.gateway.networking.k8s.io", "-n", sandbox_ns],
                        &["update", &lease, "-n", &ns],
                        &["create", "leases.coordination.k8s.io", "-n", &ns],
                        // Members' RoleBindings: pruned, watched, bound to the sandbox roles only.
                        &["delete", "rolebindings.rbac.authorization.k8s.io", "-n", sandbox_ns],
                        &["watch", "rolebindings.rbac.authorization.k8s.io", "--all-namespaces"],
                        &[
                            "bind",
                            &format!("clusterroles.rbac.authorization.k8s.io/{release}-sandbox-admin"),
                        ],
                    ],
                    &[
                        // No RBAC of its own making: no ClusterRoleBindings, no other role to bind,
                        // no escalation.
                        &["create", "clusterrolebindings.rbac.authorization.k8s.io"][..],
                        &["create", "clusterroles.rbac.authorization.k8s.io"],
                        &["create", "roles.rbac.authorization.k8s.io", "-n", sandbox_ns],
                        &["bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin"],
                        &["bind", "clusterroles.rbac.authorization.k8s.io/admin"],
                        &["bind", "clusterroles.rbac.authorization.k8s.io/edit"],
                        &["escalate", "clusterroles.rbac.authorization.k8s.io"],
                        &["escalate", "roles.rbac.authorization.k8s.io", "-n", sandbox_ns],
                        &["impersonate", "serviceaccounts", "-n", "kube-system"],
                        &["create", "serviceaccounts", "--subresource=token", "-n", "kube-system"],
                        // No Secrets, pods or other workloads; children are applied, not updated.
                        &["get", "secrets", "-n", sandbox_ns],
                        &["list", "secrets", "--all-namespaces"],
                        &["create", "pods", "-n", sandbox_ns],
                        &["create", "daemonsets.apps", "-n", sandbox_ns],
                        &["create", "jobs.batch", "-n", sandbox_ns],
                        &["update", "deployments.apps", "-n", sandbox_ns],
                        &["get", "configmaps", "-n", "kube-system"],
                        // Routes are applied, not updated; the Gateway is not the operator's.
                        &["update", "httproutes.gateway.networking.k8s.io", "-n", sandbox_ns],
                        &["get", "gateways.gateway.networking.k8s.io", "-n", "gateway-system"],
                        &["patch", "gateways.gateway.networking.k8s.io", "-n", "gateway-system"],
                        &["create", "grpcroutes.gateway.networking.k8s.io", "-n", sandbox_ns],
                        &["delete", "namespaces"],
                        &["update", "namespaces"],
                        // The custom resources: no spec writes, no creation or deletion.
                        &["create", "usersandboxes.k8s-scheduler.io"],
                        &["update", "usersandboxes.k8s-scheduler.io"],
                        &["delete", "usersandboxes.k8s-scheduler.io"],
                        &["create", "templates.k8s-scheduler.io", "-n", &ns],
                        &["patch", "templates.k8s-scheduler.io", "-n", &ns],
                        &["update", "userdeployments.k8s-scheduler.io", "-n", sandbox_ns],
                        &["delete", "userdeployments.k8s-scheduler.io", "-n", sandbox_ns],
                        // Only its own Lease, only in the release namespace.
                        &["update", "leases.coordination.k8s.io/other", "-n", &ns],
                        &["create", "leases.coordination.k8s.io", "-n", "kube-system"],
                    ],
                )
            };
            let _ = std::fs::remove_file(&kubeconfig);
            result
        }
        .await;
        delete_cluster_rbac(&sa);
        delete_cluster_rbac(&sandbox_role);
        checks
    })
    .await
}

/// Runs `args` (a create) with a ServiceAccount's kubeconfig, expecting a refusal; if the request
/// went through after all, deletes what it made (with the admin kubeconfig) and fails.
fn ensure_refused(
    kubeconfig: &std::path::Path,
    args: &[&str],
    input: Option<&str>,
    by_policy_of: Option<&str>,
    cleanup: &[&str],
) -> Result<()> {
    let (ok, out) = kubectl_as(kubeconfig, args, input)?;
    if ok {
        let _ = kubectl().args(cleanup).arg("--ignore-not-found").output();
        bail!("{args:?} must be refused, but it went through: {out}");
    }
    match by_policy_of {
        Some(release) => ensure!(
            refused_by_policy(&out, release),
            "{args:?}: refused, but not by the admission policy {}: {out}",
            policy_name(release)
        ),
        None => ensure!(out.contains("forbidden"), "{args:?}: not a refusal: {out}"),
    }
    Ok(())
}

/// Runs `args` with a ServiceAccount's kubeconfig, expecting success.
fn ensure_allowed(kubeconfig: &std::path::Path, args: &[&str], input: Option<&str>) -> Result<()> {
    let (ok, out) = kubectl_as(kubeconfig, args, input)?;
    ensure!(ok, "{args:?} must be allowed: {out}");
    Ok(())
}

/// The chart's ValidatingAdmissionPolicy confines both ServiceAccounts' writes to sandbox
/// namespaces (issue 15, item 5): real requests with their tokens into kube-system, the release
/// namespace and unlabelled namespaces are refused, also those RBAC allows (RBAC cannot say
/// where); the same requests in a namespace labelled like a sandbox go through.
#[tokio::test]
async fn service_accounts_are_confined_to_sandbox_namespaces() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|client, ns| async move {
        ensure_crds(&client).await?;
        let release = unique_name("conf");
        let operator_sa = format!("{release}-operator");
        let server_sa = format!("{release}-server");
        let sandbox_role = format!("{release}-server-sandbox");
        let docs = documents(&render(&release, &ns, &[])?)?;
        let mut rbac = rbac_documents(&docs, &operator_sa);
        rbac.extend(rbac_documents(&docs, &server_sa));
        let sandbox_ns = unique_name("sandbox-conf");
        let own_namespace = unique_name("sandbox-own");
        let checks = async {
            apply_documents(&ns, &rbac)?;
            apply_policy(&docs, &release)?;
            // A namespace labelled the way the controller labels a sandbox namespace.
            let (ok, out) = kubectl_stdin(
                &["apply", "-f", "-"],
                &json!({ "apiVersion": "v1", "kind": "Namespace",
                         "metadata": { "name": sandbox_ns, "labels": sandbox_labels(&sandbox_ns) } })
                .to_string(),
            )?;
            ensure!(ok, "the sandbox namespace: {out}");
            let operator = service_account_kubeconfig(&operator_sa, &ns)?;
            let server = service_account_kubeconfig(&server_sa, &ns)?;
            let result = async {
                wait_until_policy_enforced(
                    &operator,
                    &release,
                    &["create", "configmap", "probe", "-n", &ns, "--dry-run=server"],
                    None,
                )
                .await?;
                let name = unique_name("x");
                let to_server = format!("--serviceaccount={ns}:{server_sa}");
                let to_operator = format!("--serviceaccount={ns}:{operator_sa}");
                let sandbox_role_flag = format!("--clusterrole={sandbox_role}");

                // The operator: workloads, ConfigMaps and RoleBindings outside sandboxes are
                // refused by the policy (RBAC allows each of these kinds).
                for (args, cleanup) in [
                    (
                        vec!["create", "deployment", &name, "-n", "kube-system", "--image=registry.k8s.io/pause:3.10"],
                        vec!["delete", "deployment", &name, "-n", "kube-system"],
                    ),
                    (
                        vec!["create", "configmap", &name, "-n", "kube-system", "--from-literal=a=b"],
                        vec!["delete", "configmap", &name, "-n", "kube-system"],
                    ),
                    (
                        vec!["create", "rolebinding", &name, "-n", "kube-system", &sandbox_role_flag, &to_operator],
                        vec!["delete", "rolebinding", &name, "-n", "kube-system"],
                    ),
                    (
                        vec!["create", "rolebinding", &name, "-n", &ns, &sandbox_role_flag, &to_server],
                        vec!["delete", "rolebinding", &name, "-n", &ns],
                    ),
                    (
                        vec!["create", "configmap", &name, "-n", &ns, "--from-literal=a=b"],
                        vec!["delete", "configmap", &name, "-n", &ns],
                    ),
                    (
                        vec!["create", "namespace", &name],
                        vec!["delete", "namespace", &name],
                    ),
                ] {
                    ensure_refused(&operator, &args, None, Some(&release), &cleanup)?;
                }
                // It cannot make kube-system a sandbox by labelling it (a dry run: nothing is
                // changed should it go through).
                ensure_refused(
                    &operator,
                    &[
                        "label",
                        "namespace",
                        "kube-system",
                        "k8s-scheduler.io/sandbox=x",
                        "app.kubernetes.io/managed-by=k8s-scheduler",
                        "--dry-run=server",
                    ],
                    None,
                    Some(&release),
                    &["get", "namespace", "kube-system"],
                )?;
                // Events: in the release namespace, and about UserSandboxes in `default`; not
                // about anything else there.
                let event = |namespace: &str, kind: &str| {
                    // A UserSandbox is cluster-scoped: its reference names no namespace.
                    let regarding = if kind == "UserSandbox" {
                        json!({ "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": kind, "name": "x" })
                    } else {
                        json!({ "apiVersion": "v1", "kind": kind, "name": "x", "namespace": namespace })
                    };
                    json!({
                        "apiVersion": "events.k8s.io/v1", "kind": "Event",
                        "metadata": { "name": unique_name("ev"), "namespace": namespace },
                        "eventTime": "2026-01-01T00:00:00.000000Z",
                        "reportingController": "k8s-scheduler", "reportingInstance": "test",
                        "action": "Reconcile", "reason": "Test", "type": "Normal",
                        "regarding": regarding,
                    })
                    .to_string()
                };
                let create = ["create", "-f", "-", "--dry-run=server"];
                ensure_refused(&operator, &create, Some(&event("default", "Pod")), Some(&release), &["get", "ns", "default"])?;
                ensure_refused(&operator, &create, Some(&event("kube-system", "UserSandbox")), Some(&release), &["get", "ns", "default"])?;
                ensure_allowed(&operator, &create, Some(&event("default", "UserSandbox")))?;
                ensure_allowed(&operator, &create, Some(&event(&ns, "Template")))?;
                // What it does in its work: a Namespace with the sandbox labels, children in a
                // sandbox namespace, the server's RoleBinding there, its Lease.
                let labelled = json!({ "apiVersion": "v1", "kind": "Namespace",
                    "metadata": { "name": own_namespace, "labels": sandbox_labels(&own_namespace) } })
                .to_string();
                ensure_allowed(&operator, &["create", "-f", "-"], Some(&labelled))?;
                ensure_allowed(&operator, &["create", "configmap", &name, "-n", &sandbox_ns, "--from-literal=a=b"], None)?;
                ensure_allowed(
                    &operator,
                    &["create", "deployment", &name, "-n", &sandbox_ns, "--image=registry.k8s.io/pause:3.10", "--dry-run=server"],
                    None,
                )?;
                ensure_allowed(
                    &operator,
                    &["create", "rolebinding", SERVER_ROLE_BINDING, "-n", &sandbox_ns, &sandbox_role_flag, &to_server],
                    None,
                )?;
                let lease = json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": { "name": operator_sa, "namespace": ns }, "spec": { "holderIdentity": "test" } })
                .to_string();
                ensure_allowed(&operator, &["create", "-f", "-"], Some(&lease))?;

                // The server: UserDeployments, Secrets and Templates only in sandbox namespaces:
                // none where no RoleBinding grants them (RBAC), and none where a RoleBinding grants
                // them by mistake (the policy).
                ensure_refused(&server, &create, Some(&probe_deployment("kube-system")), Some(&release), &["get", "ns", "kube-system"])?;
                ensure_refused(&server, &create, Some(&probe_deployment(&ns)), Some(&release), &["get", "ns", "default"])?;
                let template = |namespace: &str| {
                    json!({ "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "Template",
                        "metadata": { "name": name, "namespace": namespace },
                        "spec": { "displayName": "x", "services": [{ "name": "web", "image": "ghcr.io/x/web:1", "port": 8080 }] } })
                    .to_string()
                };
                for namespace in ["kube-system", ns.as_str()] {
                    ensure_refused(
                        &server,
                        &["create", "-f", "-"],
                        Some(&template(namespace)),
                        None,
                        &["delete", "templates.k8s-scheduler.io", &name, "-n", namespace],
                    )?;
                }
                ensure_refused(
                    &server,
                    &["create", "secret", "generic", &name, "-n", "kube-system", "--from-literal=a=b"],
                    None,
                    None,
                    &["delete", "secret", &name, "-n", "kube-system"],
                )?;
                // A RoleBinding to server-sandbox outside the sandboxes (made by an administrator
                // here: the operator can no longer make one) still gives no Secrets there.
                let (ok, out) = output({
                    let mut c = kubectl();
                    c.args(["create", "rolebinding", "misplaced", "-n", &ns, &sandbox_role_flag, &to_server]);
                    c
                })?;
                ensure!(ok, "the misplaced RoleBinding: {out}");
                // RBAC sees new RoleBindings through an informer: wait until both grant Secrets, so
                // that a refusal below is the policy's.
                for namespace in [ns.as_str(), sandbox_ns.as_str()] {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while !can_i(&server, &["create", "secrets", "-n", namespace])? {
                        ensure!(Instant::now() < deadline, "the RoleBinding in {namespace} never took effect");
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
                ensure_refused(
                    &server,
                    &["create", "secret", "generic", &name, "-n", &ns, "--from-literal=a=b"],
                    None,
                    Some(&release),
                    &["delete", "secret", &name, "-n", &ns],
                )?;
                ensure_allowed(&server, &["create", "secret", "generic", &name, "-n", &sandbox_ns, "--from-literal=a=b"], None)?;
                ensure_allowed(&server, &["delete", "secret", &name, "-n", &sandbox_ns], None)?;
                // Template authoring: in the sandbox, not where the RoleBinding is misplaced.
                ensure_refused(
                    &server,
                    &["create", "-f", "-"],
                    Some(&template(&ns)),
                    Some(&release),
                    &["delete", "templates.k8s-scheduler.io", &name, "-n", &ns],
                )?;
                ensure_allowed(&server, &["create", "-f", "-", "--dry-run=server"], Some(&template(&sandbox_ns)))?;
                ensure_allowed(&server, &create, Some(&probe_deployment(&sandbox_ns)))?;
                Ok::<_, anyhow::Error>(())
            }
            .await;
            let _ = std::fs::remove_file(&operator);
            let _ = std::fs::remove_file(&server);
            result
        }
        .await;
        for namespace in [&sandbox_ns, &own_namespace] {
            let _ = kubectl()
                .args(["delete", "namespace", namespace, "--ignore-not-found", "--wait=false"])
                .output();
        }
        delete_policy(&release);
        delete_cluster_rbac(&operator_sa);
        delete_cluster_rbac(&server_sa);
        delete_cluster_rbac(&sandbox_role);
        checks
    })
    .await
}

/// External Secrets mode (issue 15, item 22, the chart's half): one values key gives
/// CLUSTER_SECRET_STORE to the operator and to the server (its ConfigMap, hence the Deployment and
/// the migration Job), so that the ExternalSecret is the only owner of `<app>-secrets`: the server
/// then writes no Secrets (apiserver deliver_secrets), and the chart gives it no way to: its
/// per-sandbox ClusterRole (`<release>-server-sandbox`, bound by the operator) has no rule on
/// Secrets, only the apps' pods and logs.
#[test]
fn cluster_secret_store_reaches_the_operator_and_the_server() -> Result<()> {
    let docs = documents(&render(
        "r",
        "platform",
        &["operator.clusterSecretStore=vault-backend"],
    )?)?;
    let operator = operator_env(&docs, "r-operator")?;
    ensure!(
        operator.get("CLUSTER_SECRET_STORE").map(String::as_str) == Some("vault-backend"),
        "the operator's CLUSTER_SECRET_STORE: {operator:?}"
    );
    let config = config_data(&docs)?;
    ensure!(
        config.get("CLUSTER_SECRET_STORE").map(String::as_str) == Some("vault-backend"),
        "the server's ConfigMap has CLUSTER_SECRET_STORE: {config:?}"
    );
    let server = &get(&docs, "Deployment", "r-server")?["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        server["envFrom"][0]["configMapRef"]["name"].as_str() == Some(SERVER_CONFIG),
        "the server reads the ConfigMap: {:?}",
        server["envFrom"]
    );
    let job = &get(&docs, "Job", "r-server-migrate")?["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        job["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "CLUSTER_SECRET_STORE" && e["value"] == "vault-backend"),
        "the migration Job has the ConfigMap's CLUSTER_SECRET_STORE"
    );
    let got = rules_of(get(&docs, "ClusterRole", "r-server-sandbox")?)?;
    ensure!(
        got == server_sandbox_rules(false),
        "no Secrets for the server with a ClusterSecretStore, only pods and logs: {got:?}"
    );
    ensure!(
        operator.get("SERVER_SERVICE_ACCOUNT").map(String::as_str) == Some("platform/r-server")
            && operator.get("SERVER_SANDBOX_CLUSTER_ROLE").map(String::as_str) == Some("r-server-sandbox"),
        "the operator binds the server to r-server-sandbox (pods and logs): {operator:?}"
    );
    ensure!(
        rules_of(get(&docs, "ClusterRole", "r-operator")?)? == operator_rules("r"),
        "the operator binds r-server-sandbox and nothing else with a ClusterSecretStore"
    );

    // Without one: the server writes the Secrets, through the RoleBinding the operator makes.
    let docs = documents(&render("r", "platform", &[])?)?;
    ensure!(
        !config_data(&docs)?.contains_key("CLUSTER_SECRET_STORE"),
        "no CLUSTER_SECRET_STORE without a ClusterSecretStore"
    );
    let got = rules_of(get(&docs, "ClusterRole", "r-server-sandbox")?)?;
    ensure!(
        got == server_sandbox_rules(true),
        "the server writes Secrets in sandboxes without a ClusterSecretStore: {got:?}"
    );
    let operator = operator_env(&docs, "r-operator")?;
    ensure!(
        operator.get("SERVER_SERVICE_ACCOUNT").map(String::as_str) == Some("platform/r-server")
            && operator.get("SERVER_SANDBOX_CLUSTER_ROLE").map(String::as_str) == Some("r-server-sandbox"),
        "the operator binds the server to r-server-sandbox: {operator:?}"
    );

    // The External Secrets Operator cannot read values kept in the database.
    let mut cmd = helm();
    cmd.args([
        "template",
        "r",
        &chart(),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "operator.clusterSecretStore=vault-backend",
        "--set",
        "secrets.backend=database",
    ]);
    let (ok, out) = output(cmd)?;
    ensure!(
        !ok && out.contains("operator.clusterSecretStore") && out.contains("secrets.backend"),
        "a ClusterSecretStore with the database backend must fail naming both: {out}"
    );
    Ok(())
}

/// The server's /metrics is served on its own port (METRICS_ADDR, the `metrics` container and
/// Service port), which the ServiceMonitor scrapes and the NetworkPolicy admits like the
/// operator's; the public port stays the only one the ingress controller reaches.
#[test]
fn server_metrics_have_their_own_port() -> Result<()> {
    let docs = documents(&render("r", "platform", &["metrics.serviceMonitor.enabled=true"])?)?;
    let config = config_data(&docs)?;
    ensure!(
        config.get("METRICS_ADDR").map(String::as_str) == Some("0.0.0.0:9090"),
        "METRICS_ADDR: {:?}",
        config.get("METRICS_ADDR")
    );
    let container = &get(&docs, "Deployment", "r-server")?["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        serde_json::to_value(&container["ports"])?
            == json!([
                { "name": "http", "containerPort": 8081, "protocol": "TCP" },
                { "name": "metrics", "containerPort": 9090, "protocol": "TCP" },
            ]),
        "ports: {:?}",
        container["ports"]
    );
    let service = get(&docs, "Service", "r-server")?;
    ensure!(
        serde_json::to_value(&service["spec"]["ports"])?
            == json!([
                { "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" },
                { "name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP" },
            ]),
        "Service ports: {:?}",
        service["spec"]["ports"]
    );
    let monitor = get(&docs, "ServiceMonitor", "r-server")?;
    ensure!(
        serde_json::to_value(&monitor["spec"]["endpoints"])? == json!([{ "port": "metrics", "interval": "30s" }])
            && monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "server",
        "the server's ServiceMonitor scrapes the metrics port: {monitor:?}"
    );
    let policy = get(&docs, "NetworkPolicy", "r-server")?;
    let ingress = serde_json::to_value(&policy["spec"]["ingress"])?;
    ensure!(
        ingress[0]["ports"] == json!([{ "port": "http", "protocol": "TCP" }])
            && ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                == json!("gateway-system")
            && ingress[1] == json!({ "ports": [{ "port": "metrics", "protocol": "TCP" }] })
            && ingress.as_array().map(Vec::len) == Some(2),
        "the server's NetworkPolicy: HTTP from the ingress controller, metrics like the operator's: {ingress}"
    );
    let docs = documents(&render("r", "platform", &[])?)?;
    ensure!(
        find(&docs, "ServiceMonitor", "r-server").is_none(),
        "no ServiceMonitor unless enabled"
    );
    Ok(())
}

/// `helm template` as against a cluster serving `apis` (`--api-versions`); (success, output).
fn template_with_apis(namespace: &str, apis: &[&str], sets: &[&str]) -> Result<(bool, String)> {
    let mut cmd = helm();
    cmd.args([
        "template",
        "r",
        &chart(),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]);
    for api in apis {
        cmd.args(["--api-versions", api]);
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    output(cmd)
}

/// The routing values reach the operator's environment (ROUTING, GATEWAY_*, INGRESS_*,
/// APP_URL_*), and no default names ingress-nginx or its class: Ingresses (the apps' and the
/// server's) name no class unless one is set, and the policies admit `gateway-system`.
#[test]
fn routing_values_reach_the_operator_and_no_default_names_ingress_nginx() -> Result<()> {
    let rendered = render("r", "platform", &["server.ingress.enabled=true"])?;
    let docs = documents(&rendered)?;
    // The catalog's Templates may run nginx-based images (PrivateBin's); what routes must not.
    let platform: Vec<&Value> = docs.iter().filter(|d| d["kind"] != "Template").collect();
    let platform_text = serde_json::to_string(&platform)?;
    ensure!(
        !platform_text.contains("nginx"),
        "a default still names ingress-nginx:\n{rendered}"
    );
    ensure!(
        !rendered.contains("ingress-nginx"),
        "a catalog Template names ingress-nginx:\n{rendered}"
    );
    let env = operator_env(&docs, "r-operator")?;
    let defaults = [
        ("ROUTING", "auto"),
        ("GATEWAY_NAME", "k8s-scheduler"),
        ("GATEWAY_NAMESPACE", "gateway-system"),
        ("GATEWAY_LISTENER", ""),
        ("INGRESS_NAMESPACE", "gateway-system"),
        ("INGRESS_CLASS", ""),
        ("INGRESS_TLS_SECRET", ""),
        ("CERT_MANAGER_ISSUER", ""),
        ("APP_URL_SCHEME", "https"),
        ("APP_URL_PORT", ""),
    ];
    for (k, v) in defaults {
        ensure!(
            env.get(k).map(String::as_str) == Some(v),
            "default {k}: {:?}",
            env.get(k)
        );
    }
    let server_ingress = get(&docs, "Ingress", "r-server")?;
    ensure!(
        server_ingress["spec"]["ingressClassName"].is_null(),
        "the server's Ingress names no class by default: {:?}",
        server_ingress["spec"]
    );

    let docs = documents(&render(
        "r",
        "platform",
        &[
            "routing.mode=gateway",
            "routing.gateway.name=edge",
            "routing.gateway.namespace=traefik",
            "routing.gateway.listener=websecure",
            "routing.controllerNamespace=traefik",
            "routing.ingress.className=traefik",
            "routing.ingress.tlsSecret=wildcard-tls",
            "routing.ingress.certManagerIssuer=letsencrypt",
            "routing.url.scheme=http",
            "routing.url.port=8088",
        ],
    )?)?;
    let env = operator_env(&docs, "r-operator")?;
    for (k, v) in [
        ("ROUTING", "gateway"),
        ("GATEWAY_NAME", "edge"),
        ("GATEWAY_NAMESPACE", "traefik"),
        ("GATEWAY_LISTENER", "websecure"),
        ("INGRESS_NAMESPACE", "traefik"),
        ("INGRESS_CLASS", "traefik"),
        ("INGRESS_TLS_SECRET", "wildcard-tls"),
        ("CERT_MANAGER_ISSUER", "letsencrypt"),
        ("APP_URL_SCHEME", "http"),
        ("APP_URL_PORT", "8088"),
    ] {
        ensure!(env.get(k).map(String::as_str) == Some(v), "{k}: {:?}", env.get(k));
    }
    let policy = get(&docs, "NetworkPolicy", "r-server")?;
    ensure!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            == "traefik",
        "the server admits HTTP from routing.controllerNamespace: {:?}",
        policy["spec"]["ingress"]
    );

    // The values of chart 0.1 say where they went instead of being ignored.
    let (ok, out) = template_with_apis("platform", &[], &["operator.ingress.className=nginx"])?;
    ensure!(
        !ok && out.contains("routing.ingress.className") && out.contains("routing.controllerNamespace"),
        "operator.ingress.*: {out}"
    );
    Ok(())
}

/// The platform Gateway (routing.gateway.create): rendered only where the cluster serves the
/// Gateway API (else a clear failure), with an HTTPS listener for `*.<domain>` holding one
/// wildcard certificate (a cert-manager Certificate, or a provided Secret) and an optional HTTP
/// listener; both admit HTTPRoutes only from namespaces carrying the labels the operator puts on
/// sandbox namespaces. The apiserver accepts it (server dry-run).
#[tokio::test]
async fn platform_gateway_admits_routes_from_sandboxes_only() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    const GATEWAY_API: &str = "gateway.networking.k8s.io/v1/Gateway";
    const CERT_MANAGER: &str = "cert-manager.io/v1/Certificate";
    with_namespace(|client, ns| async move {
        ensure!(
            controller::gateway::http_routes_served(&client).await?,
            "the cluster does not serve the Gateway API (gateway.networking.k8s.io/v1): hack/test installs its \
             CRDs (hack/tools/gateway-api/crds); install them into the cluster of E2E_KUBECONFIG first"
        );
        let gateway_ns = format!("routing.gateway.namespace={ns}");
        let docs = documents(&render("r", &ns, &[])?)?;
        ensure!(
            !docs.iter().any(|d| d["kind"] == "Gateway" || d["kind"] == "Certificate"),
            "no Gateway unless routing.gateway.create"
        );
        for (apis, sets, says) in [
            (
                &[][..],
                &["routing.gateway.create=true", "routing.gateway.certificate.secretName=wild"][..],
                "does not serve gateway.networking.k8s.io/v1 Gateway",
            ),
            (&[GATEWAY_API][..], &["routing.gateway.create=true"][..], "certificate for *.example.com"),
            (
                &[GATEWAY_API][..],
                &["routing.gateway.create=true", "routing.gateway.certificate.certManagerIssuer=le"][..],
                "does not serve cert-manager.io/v1 Certificate",
            ),
            (
                &[GATEWAY_API][..],
                &["routing.gateway.create=true", "routing.gateway.https.enabled=false"][..],
                "needs a listener",
            ),
        ] {
            let (ok, out) = template_with_apis(&ns, apis, sets)?;
            ensure!(!ok && out.contains(says), "{sets:?} must fail saying {says:?}: {out}");
        }

        // The labels of a sandbox namespace, as the operator builds it.
        let sandbox: crds::UserSandbox = serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
            "metadata": { "name": "alice", "uid": "u1" },
            "spec": { "owner": { "userId": "alice" }, "namespace": "sandbox-alice" },
        }))?;
        let sandbox_labels = policy::build::sandbox::build(&sandbox, &policy::BuildSettings::default())
            .namespace
            .metadata
            .labels
            .unwrap_or_default();

        let (ok, rendered) = template_with_apis(
            &ns,
            &[GATEWAY_API, CERT_MANAGER],
            &[
                "domain=apps.acme.io",
                "routing.gateway.create=true",
                &gateway_ns,
                "routing.gateway.certificate.certManagerIssuer=letsencrypt-dns",
                "routing.gateway.http.port=8000",
            ],
        )?;
        ensure!(ok, "{rendered}");
        let docs = documents(&rendered)?;
        let gateway = get(&docs, "Gateway", "k8s-scheduler")?;
        ensure!(gateway["metadata"]["namespace"].as_str() == Some(ns.as_str()));
        ensure!(gateway["spec"]["gatewayClassName"] == "traefik", "{gateway:?}");
        let listeners = gateway["spec"]["listeners"].as_sequence().context("listeners")?;
        let summary: Vec<(String, String, u64, String)> = listeners
            .iter()
            .map(|l| {
                (
                    l["name"].as_str().unwrap_or_default().to_string(),
                    l["protocol"].as_str().unwrap_or_default().to_string(),
                    l["port"].as_u64().unwrap_or_default(),
                    l["hostname"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        ensure!(
            summary
                == [
                    ("https".into(), "HTTPS".into(), 443, "*.apps.acme.io".into()),
                    ("http".into(), "HTTP".into(), 8000, "*.apps.acme.io".into()),
                ],
            "listeners: {summary:?}"
        );
        ensure!(
            serde_json::to_value(&listeners[0]["tls"])?
                == json!({ "mode": "Terminate",
                           "certificateRefs": [{ "group": "", "kind": "Secret", "name": "k8s-scheduler-wildcard-tls" }] }),
            "one wildcard certificate: {:?}",
            listeners[0]["tls"]
        );
        for l in listeners {
            let allowed = &l["allowedRoutes"];
            ensure!(
                serde_json::to_value(&allowed["kinds"])?
                    == json!([{ "group": "gateway.networking.k8s.io", "kind": "HTTPRoute" }])
                    && allowed["namespaces"]["from"] == "Selector",
                "{allowed:?}"
            );
            let selector = &allowed["namespaces"]["selector"];
            let labels: BTreeMap<String, String> = serde_yaml::from_value(selector["matchLabels"].clone())?;
            ensure!(
                labels.iter().all(|(k, v)| sandbox_labels.get(k) == Some(v))
                    && labels.get(policy::build::MANAGED_BY).map(String::as_str) == Some(policy::build::MANAGER),
                "matchLabels {labels:?} must select sandbox namespaces ({sandbox_labels:?})"
            );
            ensure!(
                serde_json::to_value(&selector["matchExpressions"])?
                    == json!([{ "key": policy::build::SANDBOX_LABEL, "operator": "Exists" }])
                    && sandbox_labels.contains_key(policy::build::SANDBOX_LABEL),
                "only namespaces with the sandbox label: {selector:?}"
            );
        }
        let cert = get(&docs, "Certificate", "k8s-scheduler-wildcard")?;
        ensure!(
            serde_json::to_value(&cert["spec"])?
                == json!({ "secretName": "k8s-scheduler-wildcard-tls", "dnsNames": ["*.apps.acme.io"],
                           "issuerRef": { "group": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt-dns" } }),
            "the wildcard Certificate: {:?}",
            cert["spec"]
        );

        // A provided Secret: no Certificate; HTTPS only.
        let (ok, rendered) = template_with_apis(
            &ns,
            &[GATEWAY_API],
            &[
                "routing.gateway.create=true",
                &gateway_ns,
                "routing.gateway.name=platform",
                "routing.gateway.className=other",
                "routing.gateway.certificate.secretName=wildcard-example-com",
            ],
        )?;
        ensure!(ok, "{rendered}");
        let docs = documents(&rendered)?;
        ensure!(find(&docs, "Certificate", "platform-wildcard").is_none());
        let gateway = get(&docs, "Gateway", "platform")?;
        let listeners = gateway["spec"]["listeners"].as_sequence().context("listeners")?;
        ensure!(
            listeners.len() == 1
                && listeners[0]["tls"]["certificateRefs"][0]["name"] == "wildcard-example-com"
                && gateway["spec"]["gatewayClassName"] == "other",
            "{gateway:?}"
        );
        let env = operator_env(&docs, "r-operator")?;
        ensure!(
            env.get("GATEWAY_NAME").map(String::as_str) == Some("platform")
                && env.get("GATEWAY_NAMESPACE") == Some(&ns),
            "the operator's routes name the chart's Gateway: {env:?}"
        );
        // The apiserver accepts the Gateway (the test cluster serves the Gateway API CRDs).
        let (ok, out) = kubectl_stdin(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            &serde_yaml::to_string(gateway)?,
        )?;
        ensure!(ok, "server dry-run of the Gateway: {out}");
        // A local setup: plain HTTP only.
        let (ok, rendered) = template_with_apis(
            &ns,
            &[GATEWAY_API],
            &[
                "routing.gateway.create=true",
                &gateway_ns,
                "routing.gateway.https.enabled=false",
                "routing.gateway.http.port=8000",
                "routing.url.scheme=http",
                "routing.url.port=8088",
            ],
        )?;
        ensure!(ok, "{rendered}");
        let docs = documents(&rendered)?;
        let listeners = get(&docs, "Gateway", "k8s-scheduler")?["spec"]["listeners"].clone();
        ensure!(
            listeners.as_sequence().map(Vec::len) == Some(1) && listeners[0]["protocol"] == "HTTP",
            "{listeners:?}"
        );
        Ok(())
    })
    .await
}

/// operator.allowedRegistries at admission: in a sandbox namespace a Template or UserDeployment
/// with an image from another registry is refused naming the field, whoever writes it (here
/// kubectl, as a tenant's `kubectl apply` or Argo CD would); allowed registries and other
/// namespaces (the platform's own Templates) are admitted; an empty list renders no policy.
#[tokio::test]
async fn allowed_registries_are_enforced_at_admission() -> Result<()> {
    let _turn = e2e::suite::turn("chart").await;
    with_namespace(|_client, ns| async move {
        let release = unique_name("reg");
        ensure!(
            !render(&release, &ns, &[])?.contains("allowed-registries"),
            "no policy without a list"
        );
        let docs = documents(&render(&release, &ns, &["operator.allowedRegistries=ghcr.io"])?)?;
        let policy: Vec<&Value> = docs
            .iter()
            .filter(|d| d["metadata"]["name"].as_str() == Some(&format!("{release}-allowed-registries")))
            .collect();
        ensure!(policy.len() == 2, "the policy and its binding: {policy:?}");
        apply_documents(&ns, &policy)?;
        let sandbox = unique_name("regsb");
        let namespace = json!({ "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": sandbox, "labels": sandbox_labels(&sandbox) } });
        let result = async {
            let (ok, out) = kubectl_stdin(&["apply", "-f", "-"], &namespace.to_string())?;
            ensure!(ok, "the sandbox namespace: {out}");
            let template = |namespace: &str, image: &str| {
                json!({ "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "Template",
                    "metadata": { "name": "reg", "namespace": namespace },
                    "spec": { "displayName": "x", "services": [{ "name": "web", "image": image, "port": 8080 }] } })
                .to_string()
            };
            let dry = ["apply", "--dry-run=server", "-f", "-"];
            // The policy becomes active a moment after it is created.
            let deadline = Instant::now() + Duration::from_secs(30);
            let refusal = loop {
                let (ok, out) = kubectl_stdin(&dry, &template(&sandbox, "docker.io/library/nginx:1"))?;
                if !ok {
                    break out;
                }
                ensure!(Instant::now() < deadline, "the policy never refused docker.io: {out}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            };
            ensure!(
                refusal.contains("spec.services[].image: web (docker.io/library/nginx:1) is not from an allowed registry (allowed: ghcr.io)"),
                "{refusal}"
            );
            // No registry in the name is docker.io too.
            let (ok, out) = kubectl_stdin(&dry, &template(&sandbox, "nginx:1"))?;
            ensure!(!ok && out.contains("web (nginx:1)"), "{out}");
            let (ok, out) = kubectl_stdin(&dry, &template(&sandbox, "ghcr.io/k8s-scheduler/hello-web:0.1.0"))?;
            ensure!(ok, "ghcr.io is allowed: {out}");
            // A look-alike path is not the registry.
            let (ok, out) = kubectl_stdin(&dry, &template(&sandbox, "evil.example/ghcr.io/web:1"))?;
            ensure!(!ok, "evil.example is not ghcr.io: {out}");
            // Outside sandboxes (the platform's Templates): not the policy's.
            let (ok, out) = kubectl_stdin(&dry, &template(&ns, "docker.io/library/nginx:1"))?;
            ensure!(ok, "the release namespace is not a sandbox: {out}");
            // A UserDeployment's image override.
            let app = json!({ "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
                "metadata": { "name": "reg", "namespace": sandbox },
                "spec": { "templateRef": { "name": "reg" }, "imageOverrides": { "web": "quay.io/x/web:2" } } });
            let (ok, out) = kubectl_stdin(&dry, &app.to_string())?;
            ensure!(
                !ok && out.contains("spec.imageOverrides: web (quay.io/x/web:2) is not from an allowed registry"),
                "{out}"
            );
            Ok(())
        }
        .await;
        for (kind, name) in [
            ("validatingadmissionpolicybinding", format!("{release}-allowed-registries")),
            ("validatingadmissionpolicy", format!("{release}-allowed-registries")),
            ("namespace", sandbox.clone()),
        ] {
            let _ = output({
                let mut c = kubectl();
                c.args(["delete", kind, &name, "--ignore-not-found", "--wait=false"]);
                c
            });
        }
        result
    })
    .await
}
