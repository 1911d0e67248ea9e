//! `kubectl apply -f examples/` brings every example UserDeployment to Ready.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use crds::UserDeployment;
use e2e::operator::{ControllerProcess, RUN_LABEL, ensure_crds, is_ready_condition, kubectl};
use e2e::{unique_name, wait_for, wait_until_gone};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

fn examples_dir() -> String {
    e2e::repo_path("examples").display().to_string()
}

fn run(args: &[&str]) -> Result<String> {
    let out = kubectl().args(args).output().context("running kubectl")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "kubectl {args:?} failed: {text}");
    Ok(text)
}

#[tokio::test]
async fn kubectl_apply_examples_brings_every_deployment_to_ready() -> Result<()> {
    let _turn = e2e::suite::turn("examples").await;
    let client = e2e::client().await?;
    ensure_crds(&client).await?;
    let dir = examples_dir();
    run(&["apply", "-f", &dir])?;
    // This test's controller manages only the example sandbox (tests share the cluster).
    let tag = unique_name("examples");
    run(&[
        "label",
        "usersandbox",
        "demo",
        &format!("{RUN_LABEL}={tag}"),
        "--overwrite",
    ])?;
    let mut ctrl = ControllerProcess::start(&[
        ("SANDBOX_SELECTOR", &format!("{RUN_LABEL}={tag}")),
        ("WATCH_NAMESPACE", "sandbox-demo"),
    ])?;
    let result = async {
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), "sandbox-demo");
        let names: Vec<String> = uds
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|u| u.metadata.name)
            .collect();
        ensure!(names.len() >= 2, "the examples define UserDeployments: {names:?}");
        for name in &names {
            wait_for(
                &uds,
                name,
                Duration::from_secs(120),
                "example Ready",
                is_ready_condition::<UserDeployment>,
            )
            .await?;
        }
        // What the examples README shows.
        run(&[
            "wait",
            "--for=condition=Ready",
            "userdeployment",
            "--all",
            "-n",
            "sandbox-demo",
            "--timeout=60s",
        ])?;
        let table = run(&["get", "ud", "-n", "sandbox-demo"])?;
        ensure!(
            table.contains("Ready") && table.contains("https://demo-hello."),
            "{table}"
        );
        Ok(())
    }
    .await;
    let delete = run(&["delete", "-f", &dir, "--wait=false"]);
    let gone = wait_until_gone(
        &Api::<Namespace>::all(client.clone()),
        "sandbox-demo",
        Duration::from_secs(120),
    )
    .await;
    let logs = ctrl.logs();
    ctrl.kill();
    result.with_context(|| format!("controller log:\n{logs}"))?;
    delete?;
    gone
}
