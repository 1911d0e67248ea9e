//! The Helm chart: lint, rendering with each option, server-side dry-run, the values schema, and
//! the operator's RBAC proved by running the controller with the chart ServiceAccount's token.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use crds::{Template, UserDeployment};
use e2e::operator::{ControllerProcess, TestSandbox, create_deployment, is_ready_condition, kubectl};
use e2e::{unique_name, wait_for, with_namespace};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// Kubernetes version `helm template` renders for (the chart requires >= 1.30).
const KUBE_VERSION: &str = "v1.36.3";

fn chart() -> String {
    format!("{}/../charts/k8s-scheduler", env!("CARGO_MANIFEST_DIR"))
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
    ] {
        let mut cmd = helm();
        cmd.args(["template", "x", &chart(), "--kube-version", KUBE_VERSION, "--set", set]);
        let (ok, out) = output(cmd)?;
        ensure!(!ok, "{set} was accepted");
        ensure!(out.contains(field), "the error names {field}: {out}");
    }
    Ok(())
}

#[tokio::test]
async fn every_option_renders_and_passes_server_dry_run() -> Result<()> {
    with_namespace(|_client, ns| async move {
        let options: [&[&str]; 6] = [
            &[],
            &["operator.leaderElection.enabled=false", "operator.replicas=1"],
            &[
                "operator.clusterSecretStore=vault-backend",
                "operator.allowedRegistries=ghcr.io",
            ],
            &[
                "networkPolicy.enabled=false",
                "operator.podDisruptionBudget.enabled=false",
            ],
            &[
                "operator.ingress.certManagerIssuer=letsencrypt",
                "operator.ingress.tlsSecret=wildcard-tls",
            ],
            &[
                "metrics.serviceMonitor.enabled=true",
                "operator.disableNetworkPolicies=true",
            ],
        ];
        for sets in options {
            let release = unique_name("r");
            let rendered = render(&release, &ns, sets)?;
            ensure!(
                rendered.contains("kind: Deployment"),
                "{sets:?}: no operator Deployment"
            );
            if sets.contains(&"metrics.serviceMonitor.enabled=true") {
                ensure!(rendered.contains("kind: ServiceMonitor"), "ServiceMonitor rendered");
            }
            let (ok, out) = kubectl_stdin(
                &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
                &without_kind(&rendered, "ServiceMonitor"),
            )?;
            ensure!(ok, "{sets:?}: server dry-run failed: {out}");
        }
        Ok(())
    })
    .await
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
    with_namespace(|client, ns| async move {
        let release = unique_name("rbac");
        let rendered = render(&release, &ns, &[])?;
        // Only the RBAC documents: the operator itself runs here as a process.
        let rbac: Vec<&str> = rendered
            .split("\n---")
            .filter(|d| {
                ["kind: ServiceAccount", "kind: ClusterRole", "kind: ClusterRoleBinding", "kind: Role", "kind: RoleBinding"]
                    .iter()
                    .any(|k| d.lines().any(|l| l.trim() == *k))
            })
            .collect();
        ensure!(rbac.len() == 5, "ServiceAccount, ClusterRole(+Binding), Role(+Binding): {}", rbac.len());
        let (ok, out) = kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &rbac.join("\n---"))?;
        ensure!(ok, "applying the chart RBAC: {out}");
        let sa = format!("{release}-operator");
        let (ok, token) = output({
            let mut c = kubectl();
            c.args(["create", "token", &sa, "-n", &ns, "--duration=1h"]);
            c
        })?;
        ensure!(ok, "kubectl create token: {token}");
        let kubeconfig = token_kubeconfig(token.trim())?;

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
        for kind in ["clusterrole", "clusterrolebinding"] {
            let _ = kubectl().args(["delete", kind, &sa, "--ignore-not-found"]).output();
        }
        scenario.with_context(|| format!("controller log:\n{logs}"))?;
        let denied = scenario_logs.lines().any(|l| l.contains("forbidden") && l.contains("cannot "));
        ensure!(!denied, "the operator hit an RBAC denial:\n{scenario_logs}");
        cleanup
    })
    .await
}
