//! End to end on a real node (`hack/cluster up --real`): the images of `hack/image` run as pods
//! under Pod Security `restricted`, a request to an app's URL reaches it through the gateway
//! (Traefik, Gateway API), and the sandbox NetworkPolicies are enforced (kube-router).
//!
//! Built only with `--features real-node`: `hack/test` runs this file against a real-node
//! cluster after the kwok suite (`cargo test -p e2e --features real-node --test real_node`).
//! `E2E_GATEWAY_PORT` (the gateway's loopback port) is required; without it every test fails
//! with a message saying how to start the cluster.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use crds::UserDeployment;
use e2e::operator::{ControllerProcess, TestSandbox, create_deployment, is_ready_condition, kubectl};
use e2e::real_node::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, gateway_port, get_through_gateway, hello_template, image, loopback_client,
};
use e2e::wait::poll;
use e2e::{client, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Path of the hello-web binary inside its image (it doubles as the probe client in pods).
const HELLO_WEB_BIN: &str = "/usr/local/bin/hello-web";
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// An image whose user is root (hello-web with `--user 0:0`), made by hack/test with
/// `hack/image binary` for the refusal test: the kubelet must refuse it under `runAsNonRoot`.
const ROOT_IMAGE: &str = "localhost/k8s-scheduler-test/runs-as-root:1";
/// `e2e/src/bin/misbehave.rs` (exits with a code, or eats memory), packed by hack/test.
const MISBEHAVE_IMAGE: &str = "localhost/k8s-scheduler-test/misbehave:1";

/// Controller settings for the real node: apps at http://<user>-<app>.localhost:<gateway port>,
/// routed by HTTPRoutes on the Gateway `hack/cluster up --real` installs.
fn controller_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DEPLOYMENT_DOMAIN", "localhost".into()),
        ("ROUTING", "gateway".into()),
        ("GATEWAY_NAME", GATEWAY_NAME.into()),
        ("GATEWAY_NAMESPACE", GATEWAY_NAMESPACE.into()),
        ("INGRESS_NAMESPACE", GATEWAY_NAMESPACE.into()),
        ("APP_URL_SCHEME", "http".into()),
        ("APP_URL_PORT", port.to_string()),
    ]
}

fn start_controller(sandboxes: &[&TestSandbox], port: u16) -> Result<ControllerProcess> {
    let run = &sandboxes[0].run;
    ensure!(
        sandboxes.iter().all(|s| &s.run == run),
        "sandboxes of one controller share a run label"
    );
    let mut env: Vec<(&str, String)> = controller_env(port);
    env.push(("SANDBOX_SELECTOR", format!("{}={run}", e2e::operator::RUN_LABEL)));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ControllerProcess::start(&env)
}

fn apply(value: &serde_json::Value) -> Result<()> {
    let (ok, out) = e2e::operator::kubectl_apply(&serde_yaml::to_string(value)?)?;
    ensure!(ok, "kubectl apply failed: {out}");
    Ok(())
}

async fn deploy(client: &Client, ns: &str, name: &str, spec: serde_json::Value) -> Result<UserDeployment> {
    let api: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
    let ud: UserDeployment = serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    }))?;
    create_deployment(&api, &ud).await?;
    // Ready, or Degraded (a reason that will not go away by waiting): stop there and say it.
    let settled = |ud: Option<&UserDeployment>| {
        is_ready_condition(ud) || e2e::operator::condition_of(ud, "Degraded").is_some_and(|(s, _)| s == "True")
    };
    let ud = wait_for(
        &api,
        name,
        READY_TIMEOUT,
        "UserDeployment Ready on the real node",
        settled,
    )
    .await?;
    ensure!(
        is_ready_condition(Some(&ud)),
        "{name} is Degraded instead of Ready: {:?}",
        ud.status
    );
    Ok(ud)
}

/// A Running pod of `app` in `ns`.
async fn app_pod(client: &Client, ns: &str, app: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    poll(
        Duration::from_secs(60),
        &format!("a running pod of {app} in {ns}"),
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default()).await?;
                Ok(list
                    .items
                    .into_iter()
                    .find(|p| {
                        p.name_any().starts_with(&format!("{app}-"))
                            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .map(|p| p.name_any()))
            }
        },
    )
    .await
}

/// Runs the probe client inside a pod: `hello-web fetch <url>` prints the answer, or fails when
/// the connection cannot be made within its timeout. Returns (success, output).
fn fetch_from_pod(ns: &str, pod: &str, url: &str) -> Result<(bool, String)> {
    let out = kubectl()
        .args([
            "-n",
            ns,
            "exec",
            pod,
            "--",
            HELLO_WEB_BIN,
            "fetch",
            "--timeout-ms",
            "3000",
            url,
        ])
        .output()
        .context("running kubectl exec")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[tokio::test]
async fn hello_web_answers_through_the_gateway_with_its_parameter() -> Result<()> {
    let _turn = e2e::suite::turn("real_node").await;
    let port = gateway_port()?;
    let client = client().await?;
    let sandbox = TestSandbox::create(&client, json!({})).await?;
    let controller = start_controller(&[&sandbox], port)?;
    let result = async {
        sandbox.wait_ready().await?;
        apply(&hello_template(&sandbox.namespace, "private"))?;
        let greeting = format!("greetings-{}", e2e::unique_name("g"));
        let ud = deploy(
            &client,
            &sandbox.namespace,
            "hello",
            json!({
                "templateRef": { "name": "hello-web" },
                "parameters": { "GREETING": greeting },
                "visibility": "public",
            }),
        )
        .await?;
        let url = ud
            .status
            .as_ref()
            .and_then(|s| s.url.clone())
            .context("Ready without a URL")?;
        let expected = format!("http://{}-hello.localhost:{port}", sandbox.user_id);
        ensure!(url == expected, "status.url is {url}, expected {expected}");
        let body = get_through_gateway(&url).await?;
        ensure!(
            body.contains(&greeting),
            "the app's answer lacks the parameter value {greeting}: {body}"
        );
        ensure!(body.contains("hello-web"), "the app's answer lacks its name: {body}");
        Ok(())
    }
    .await;
    finish(result, &controller, &[sandbox]).await
}

#[tokio::test]
async fn sandboxes_are_isolated_on_the_network() -> Result<()> {
    let _turn = e2e::suite::turn("real_node").await;
    let port = gateway_port()?;
    let client = client().await?;
    let run = e2e::unique_name("run");
    let a = TestSandbox::create_as(&client, &run, &e2e::unique_name("u"), json!({})).await?;
    let b = TestSandbox::create_as(&client, &run, &e2e::unique_name("u"), json!({})).await?;
    let controller = start_controller(&[&a, &b], port)?;
    let result = async {
        for s in [&a, &b] {
            s.wait_ready().await?;
            apply(&hello_template(&s.namespace, "private"))?;
        }
        let internal = json!({ "templateRef": { "name": "hello-web" }, "visibility": "internal" });
        deploy(&client, &a.namespace, "hello", internal.clone()).await?;
        deploy(&client, &a.namespace, "peer", internal.clone()).await?;
        deploy(&client, &b.namespace, "hello", internal).await?;
        let pod_a = app_pod(&client, &a.namespace, "hello-web").await?;
        let pods_b: Api<Pod> = Api::namespaced(client.clone(), &b.namespace);
        let pod_b = app_pod(&client, &b.namespace, "hello-web").await?;
        let ip_b = pods_b
            .get(&pod_b)
            .await?
            .status
            .and_then(|s| s.pod_ip)
            .context("B's pod has no IP")?;
        // Allowed: its own sandbox's service, by its cluster DNS name (so DNS works too).
        let own = "http://peer-web:8080/";
        let (ok, out) = fetch_from_pod(&a.namespace, &pod_a, own)?;
        ensure!(
            ok && out.contains("hello-web"),
            "a pod cannot reach its own sandbox's service {own}: {out}"
        );
        // Refused: another sandbox's service and pod, the API server, the gateway.
        let denied = [
            format!("http://hello-web.{}.svc.cluster.local:8080/", b.namespace),
            format!("http://{ip_b}:8080/"),
            "http://10.96.0.1:443/".to_string(),
        ];
        for url in &denied {
            let (ok, out) = fetch_from_pod(&a.namespace, &pod_a, url)?;
            ensure!(
                !ok,
                "a pod of sandbox A reached {url}, which the policies forbid: {out}"
            );
        }
        // And the other way round: B's pod reaches its own service but not A's.
        let (ok, out) = fetch_from_pod(&b.namespace, &pod_b, "http://hello-web:8080/")?;
        ensure!(ok, "B's pod cannot reach its own service: {out}");
        let url = format!("http://peer-web.{}.svc.cluster.local:8080/", a.namespace);
        let (ok, out) = fetch_from_pod(&b.namespace, &pod_b, &url)?;
        ensure!(!ok, "a pod of sandbox B reached {url}: {out}");
        Ok(())
    }
    .await;
    finish(result, &controller, &[a, b]).await
}

#[tokio::test]
async fn guestbook_keeps_what_is_written_through_its_url() -> Result<()> {
    let _turn = e2e::suite::turn("real_node").await;
    let port = gateway_port()?;
    let client = client().await?;
    let sandbox = TestSandbox::create(&client, json!({})).await?;
    let controller = start_controller(&[&sandbox], port)?;
    let result = async {
        sandbox.wait_ready().await?;
        // The example Template as shipped, moved into the sandbox (a private template).
        let mut template: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(e2e::repo_path(
            "examples/21-template-guestbook.yaml",
        ))?)?;
        template["metadata"]["namespace"] = json!(sandbox.namespace);
        template["spec"]["visibility"] = json!("private");
        apply(&template)?;
        let password = e2e::unique_name("pw");
        apply(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "guestbook-secrets", "namespace": sandbox.namespace },
            "stringData": { "REDIS_PASSWORD": password },
        }))?;
        let ud = deploy(
            &client,
            &sandbox.namespace,
            "guestbook",
            json!({
                "templateRef": { "name": "guestbook" },
                "parameters": { "TITLE": "Real node" },
                "secretRefs": ["REDIS_PASSWORD"],
                "visibility": "public",
            }),
        )
        .await?;
        let url = ud
            .status
            .as_ref()
            .and_then(|s| s.url.clone())
            .context("Ready without a URL")?;
        get_through_gateway(&url).await?;
        let entry = e2e::unique_name("entry");
        let host = reqwest::Url::parse(&url)?.host_str().context("no host")?.to_string();
        let http = loopback_client(&host).timeout(Duration::from_secs(10)).build()?;
        let resp = http.post(format!("{url}/entries")).body(entry.clone()).send().await?;
        let status = resp.status();
        ensure!(status.is_success(), "POST /entries: {status}: {}", resp.text().await?);
        let listed = get_through_gateway(&format!("{url}/entries")).await?;
        ensure!(
            listed.contains(&entry),
            "the entry written is not read back through the URL: {listed}"
        );
        Ok(())
    }
    .await;
    finish(result, &controller, &[sandbox]).await
}

#[tokio::test]
async fn apps_that_cannot_run_say_why() -> Result<()> {
    let _turn = e2e::suite::turn("real_node").await;
    let port = gateway_port()?;
    let client = client().await?;
    let sandbox = TestSandbox::create(&client, json!({})).await?;
    let controller = start_controller(&[&sandbox], port)?;
    let result = async {
        sandbox.wait_ready().await?;
        let api: Api<UserDeployment> = Api::namespaced(client.clone(), &sandbox.namespace);
        let resources = json!({ "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "64Mi" } });
        let service = |image: String, env: serde_json::Value| {
            json!({ "services": [{ "name": "web", "image": image, "port": 8080, "env": env, "resources": resources }] })
        };
        let misbehave = |args: serde_json::Value| {
            json!({ "services": [{ "name": "web", "image": MISBEHAVE_IMAGE, "port": 8080, "args": args,
                "resources": resources }] })
        };
        // (name, spec, reason, what the sentence must say, how long it may take from creation)
        let cases = [
            // Not in any registry the node can reach (nothing is ever pulled here).
            (
                "missing",
                service(image("does-not-exist"), json!({})),
                "ImagePullFailed",
                vec![image("does-not-exist")],
                60,
            ),
            // Exits at once: hello-web refuses a PORT that is not a port.
            (
                "crash",
                service(image("hello-web"), json!({ "PORT": "not-a-port" })),
                "CrashLooping",
                vec!["exited with code".to_string()],
                120,
            ),
            // Exits with 3 after printing why: the code and its last log lines.
            (
                "exit3",
                misbehave(json!(["exit", "3"])),
                "CrashLooping",
                vec!["exited with code 3".to_string(), "misbehave: exiting with code 3".to_string()],
                120,
            ),
            // Uses 256 MiB under a 64Mi limit: killed for memory, the limit named.
            (
                "hungry",
                misbehave(json!(["eat", "256"])),
                "OOMKilled",
                vec!["memory".to_string(), "64Mi".to_string()],
                120,
            ),
            // Asks for more CPU than the sandbox may use: the quota (or its limits) refuse the pod.
            (
                "greedy",
                json!({ "services": [{ "name": "web", "image": image("hello-web"), "port": 8080,
                    "resources": { "requests": { "cpu": "1000", "memory": "16Mi" },
                                   "limits": { "cpu": "1000", "memory": "64Mi" } } }] }),
                "QuotaExceeded",
                vec!["cpu".to_string()],
                120,
            ),
            // Its health check path answers 404: the probes' answer, not a "crash" (the kubelet
            // restarts it for its liveness probe).
            (
                "sick",
                json!({ "services": [{ "name": "web", "image": image("hello-web"), "port": 8080,
                    "healthCheckPath": "/nope", "resources": resources }] }),
                "ProbeFailing",
                vec!["probe fails".to_string(), "statuscode: 404".to_string()],
                120,
            ),
            // Its image's user is root: the kubelet refuses it under runAsNonRoot (restricted).
            (
                "root",
                service(ROOT_IMAGE.to_string(), json!({})),
                "ContainerRefused",
                vec!["runAsNonRoot".to_string()],
                120,
            ),
        ];
        let created = std::time::Instant::now();
        for (name, spec, _, _, _) in &cases {
            let ud: UserDeployment = serde_json::from_value(json!({
                "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
                "metadata": { "name": name, "namespace": sandbox.namespace }, "spec": spec,
            }))?;
            create_deployment(&api, &ud).await?;
        }
        for (name, _, reason, texts, within) in &cases {
            let reason_of = |ud: Option<&UserDeployment>| {
                e2e::operator::condition_of(ud, "Ready").is_some_and(|(status, r)| status == "False" && r == *reason)
            };
            let left = Duration::from_secs(*within).saturating_sub(created.elapsed());
            let ud = wait_for(
                &api,
                name,
                left.max(Duration::from_secs(1)),
                &format!("{name}: Ready=False with reason {reason} within {within} s of its creation"),
                reason_of,
            )
            .await?;
            let v = serde_json::to_value(&ud)?;
            let condition = |type_: &str| {
                v["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
                    .unwrap_or_default()
            };
            let (ready, degraded) = (condition("Ready"), condition("Degraded"));
            let message = ready["message"].as_str().unwrap_or_default();
            for text in texts {
                ensure!(
                    message.contains(text.as_str()),
                    "{name}: the message does not say why ({text}): {message}"
                );
            }
            ensure!(
                degraded["status"] == "True" && degraded["reason"] == *reason,
                "{name}: Degraded should be True with {reason}: {degraded}"
            );
            ensure!(
                v["status"]["phase"] == "Error",
                "{name}: phase {} instead of Error",
                v["status"]["phase"]
            );
            // The service says it too, with what to do about it.
            let web = &v["status"]["services"][0];
            ensure!(
                web["reason"] == *reason && web["message"].as_str() == Some(message) && web["hint"].as_str().is_some_and(|h| !h.is_empty()),
                "{name}: the service's status should carry the reason, the sentence and a hint: {web}"
            );
        }
        // Fixing the cause (a new image) brings the app to Ready and clears the reason.
        let fixed = json!({ "spec": { "services": [{ "name": "web", "image": image("hello-web"), "port": 8080,
            "resources": resources }] } });
        api.patch("exit3", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&fixed))
            .await
            .context("patch exit3 with a working image")?;
        let ud = wait_for(&api, "exit3", READY_TIMEOUT, "exit3: Ready after the fix", is_ready_condition).await?;
        let v = serde_json::to_value(&ud)?;
        ensure!(
            v["status"]["services"][0].get("reason").is_none() && v["status"]["phase"] == "Ready",
            "exit3: the reason should be gone once it runs: {}",
            v["status"]
        );
        let degraded = e2e::operator::condition_of(Some(&ud), "Degraded");
        ensure!(
            degraded.as_ref().is_some_and(|(s, _)| s == "False"),
            "exit3: Degraded should be False after the fix: {degraded:?}"
        );
        Ok(())
    }
    .await;
    finish(result, &controller, &[sandbox]).await
}

/// Reports the controller's log on failure and removes the sandboxes either way.
async fn finish(result: Result<()>, controller: &ControllerProcess, sandboxes: &[TestSandbox]) -> Result<()> {
    for s in sandboxes {
        e2e::operator::drop_deployment_finalizers(&s.client, &s.namespace).await;
        let _ = s.clone().delete().await;
    }
    result.with_context(|| format!("controller log:\n{}", tail(&controller.logs(), 40)))
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
