//! `GET /api/deployments/{name}/logs` on a real node (`hack/cluster up --real`): the HTTP server
//! runs as a process ([`ServerProcess`]) against the cluster, creates its users' sandboxes, and
//! streams the logs of the apps' real containers from the Kubernetes pod log API. A follow stream
//! receives a line the app writes after the stream opened; another user's app is 404; each cap
//! (LOGS_MAX_BYTES, LOGS_FOLLOW_MAX_SECONDS, LOGS_MAX_FOLLOWS_PER_USER) holds. And
//! `GET /api/deployments/{name}/metrics`: CPU and memory from metrics-server, restarts.
//!
//! Built only with `--features real-node`; `hack/test` runs it with the other real-node suites
//! (`cargo test -p e2e --features real-node --test real_node`). `E2E_GATEWAY_PORT` is
//! required; without it every test fails saying how to start the cluster.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use crds::UserDeployment;
use e2e::apiserver::ServerProcess;
use e2e::operator::{ControllerProcess, RUN_LABEL, TestSandbox, create_deployment, is_ready_condition};
use e2e::real_node::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, gateway_port, get_through_gateway, hello_template, loopback_client,
};
use e2e::{client, unique_name, wait_for};
use futures::StreamExt;
use kube::{Api, Client};
use serde_json::json;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The DEV_MODE user is `dev` in every server, and each test's server is another installation: a
/// second server would refuse the first one's `sandbox-dev`. The tests that sign in as the dev
/// user hold this for their whole run (the others of this suite run beside them).
static DEV_USER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test's world: a server and a controller sharing a run label (the server labels the
/// sandboxes it creates with it, the controller manages only those), and the users made.
struct World {
    client: Client,
    port: u16,
    run: String,
    server: ServerProcess,
    controller: ControllerProcess,
    sandboxes: Vec<TestSandbox>,
}

impl World {
    /// A server with `server_env` on top of the real node's settings, and its controller.
    async fn start(server_env: &[(&str, &str)]) -> Result<World> {
        let port = gateway_port()?;
        let client = client().await?;
        e2e::operator::ensure_crds(&client).await?;
        let run = unique_name("run");
        let port_s = port.to_string();
        let labels = format!("{RUN_LABEL}={run}");
        // What the controller builds apps with on the real node (as real_node/apps.rs): apps at
        // http://<user>-<app>.localhost:<gateway port>, routed by HTTPRoutes.
        let shared = [
            ("DEPLOYMENT_DOMAIN", "localhost"),
            ("APP_URL_SCHEME", "http"),
            ("APP_URL_PORT", port_s.as_str()),
        ];
        let mut env: Vec<(&str, &str)> = shared.to_vec();
        env.push(("SANDBOX_LABELS", &labels));
        env.extend_from_slice(server_env);
        let server = ServerProcess::start(&env).await?;
        let selector = format!("{RUN_LABEL}={run}");
        let mut ctrl_env: Vec<(&str, &str)> = shared.to_vec();
        ctrl_env.extend([
            ("ROUTING", "gateway"),
            ("GATEWAY_NAME", GATEWAY_NAME),
            ("GATEWAY_NAMESPACE", GATEWAY_NAMESPACE),
            ("INGRESS_NAMESPACE", GATEWAY_NAMESPACE),
            ("SANDBOX_SELECTOR", selector.as_str()),
        ]);
        let controller = ControllerProcess::start(&ctrl_env)?;
        Ok(World {
            client,
            port,
            run,
            server,
            controller,
            sandboxes: vec![],
        })
    }

    /// A new user with an API token; their first request makes the server create their
    /// UserSandbox, which the controller provisions. Returns the token and the sandbox.
    async fn user(&mut self) -> Result<(String, TestSandbox)> {
        // No dash: a user id ends at the first dash of an app's host label.
        let id = unique_name("u").replace('-', "");
        let token = self.server.token_for(&id).await?;
        let namespace = format!("sandbox-{id}");
        // Known before the request, so that clean-up finds it whatever happens next.
        let sandbox = TestSandbox {
            client: self.client.clone(),
            name: namespace.clone(),
            namespace,
            user_id: id,
            run: self.run.clone(),
        };
        self.sandboxes.push(sandbox.clone());
        let (status, body) = self.get(&token, "/api/me").await?;
        ensure!(status.is_success(), "GET /api/me: {status} {body}");
        sandbox.wait_ready().await?;
        Ok((token, sandbox))
    }

    /// DEV_MODE: a request without credentials is the dev user's; the first one creates its
    /// sandbox (labelled for this run's controller). Waits until it is ready; returns its namespace.
    async fn dev_user(&mut self) -> Result<String> {
        let me: serde_json::Value = reqwest::Client::new()
            .get(self.server.url("/api/me"))
            .timeout(Duration::from_secs(30))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let ns = me["sandbox"]["namespace"]
            .as_str()
            .context("no sandbox in /api/me")?
            .to_string();
        let sandbox = TestSandbox {
            client: self.client.clone(),
            name: me["sandbox"]["name"].as_str().unwrap_or(&ns).to_string(),
            namespace: ns.clone(),
            user_id: me["user"]["id"].as_str().unwrap_or_default().to_string(),
            run: self.run.clone(),
        };
        self.sandboxes.push(sandbox.clone());
        sandbox.wait_ready().await?;
        Ok(ns)
    }

    /// GET `path` with the API token `token`; an empty one sends no credentials (in DEV_MODE: the
    /// dev user).
    async fn get(&self, token: &str, path: &str) -> Result<(reqwest::StatusCode, String)> {
        let mut req = reqwest::Client::new()
            .get(self.server.url(path))
            .timeout(Duration::from_secs(30));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await?;
        Ok((resp.status(), resp.text().await?))
    }

    /// Opens a log stream (without reading its body).
    async fn open_logs(&self, token: &str, app: &str, query: &str) -> Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .get(self.server.url(&format!("/api/deployments/{app}/logs?{query}")))
            .bearer_auth(token)
            .send()
            .await?)
    }

    /// Reports the server's and the controller's logs on failure and removes the sandboxes either way.
    async fn finish(self, result: Result<()>) -> Result<()> {
        for s in &self.sandboxes {
            e2e::operator::drop_deployment_finalizers(&s.client, &s.namespace).await;
            let _ = s.clone().delete().await;
        }
        result.with_context(|| {
            format!(
                "server log:\n{}\ncontroller log:\n{}",
                tail(&self.server.logs(), 40),
                tail(&self.controller.logs(), 40)
            )
        })
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn apply(value: &serde_json::Value) -> Result<()> {
    let (ok, out) = e2e::operator::kubectl_apply(&serde_yaml::to_string(value)?)?;
    ensure!(ok, "kubectl apply failed: {out}");
    Ok(())
}

/// Creates a UserDeployment in `ns` (as kubectl would: the server serves it from its watch
/// cache all the same) and waits until it is Ready.
async fn deploy(client: &Client, ns: &str, name: &str, spec: serde_json::Value) -> Result<UserDeployment> {
    let api: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
    let ud: UserDeployment = serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    }))?;
    create_deployment(&api, &ud).await?;
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

/// hello-web (one service, `web`) as the user's app `hello`.
async fn hello(world: &World, sandbox: &TestSandbox) -> Result<()> {
    apply(&hello_template(&sandbox.namespace, "private"))?;
    deploy(
        &world.client,
        &sandbox.namespace,
        "hello",
        json!({ "templateRef": { "name": "hello-web" } }),
    )
    .await?;
    Ok(())
}

/// The guestbook of examples/ (web + redis) as the app `guestbook` in `ns`, logging every entry
/// written (LOG_LEVEL=debug), public; waits until it answers through the gateway. Returns its URL.
async fn guestbook(world: &World, ns: &str) -> Result<String> {
    let mut template: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(e2e::repo_path(
        "examples/21-template-guestbook.yaml",
    ))?)?;
    template["metadata"]["namespace"] = json!(ns);
    template["spec"]["visibility"] = json!("private");
    apply(&template)?;
    apply(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "guestbook-secrets", "namespace": ns },
        "stringData": { "REDIS_PASSWORD": unique_name("pw") },
    }))?;
    let ud = deploy(
        &world.client,
        ns,
        "guestbook",
        json!({
            "templateRef": { "name": "guestbook" },
            "parameters": { "TITLE": "Logs", "LOG_LEVEL": "debug" },
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
    ensure!(url.ends_with(&format!(":{}", world.port)), "{url}");
    get_through_gateway(&url).await?;
    Ok(url)
}

/// Writes an entry of `chars` characters into the guestbook at `url` through the gateway.
async fn add_entry(url: &str, chars: usize) -> Result<()> {
    let host = reqwest::Url::parse(url)?.host_str().context("no host")?.to_string();
    let http = loopback_client(&host).timeout(Duration::from_secs(10)).build()?;
    let resp = http
        .post(format!("{url}/entries"))
        .body("x".repeat(chars))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "POST /entries: {}", resp.status());
    Ok(())
}

/// A streamed response's body as it arrives.
struct Reader {
    chunks: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    text: String,
    ended: bool,
}

impl Reader {
    fn new(resp: reqwest::Response) -> Reader {
        Reader {
            chunks: resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
            text: String::new(),
            ended: false,
        }
    }

    /// Reads until the text so far contains `what`; fails after `timeout` or at the end.
    async fn until(&mut self, what: &str, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.text.contains(what) {
            ensure!(
                !self.ended,
                "the stream ended without {what:?}; it sent:\n{}",
                self.text
            );
            match tokio::time::timeout_at(deadline, self.chunks.next()).await {
                Err(_) => bail!("no {what:?} within {timeout:?}; the stream sent:\n{}", self.text),
                Ok(None) => self.ended = true,
                Ok(Some(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk?)),
            }
        }
        Ok(())
    }

    /// Reads to the end; fails after `timeout`.
    async fn read_to_end(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.ended {
            match tokio::time::timeout_at(deadline, self.chunks.next()).await {
                Err(_) => bail!("the stream did not end within {timeout:?}; it sent:\n{}", self.text),
                Ok(None) => self.ended = true,
                Ok(Some(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk?)),
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_followed_log_shows_new_lines_and_other_users_apps_are_not_found() -> Result<()> {
    let _turn = e2e::suite::turn("real_node_logs").await;
    let mut world = World::start(&[]).await?;
    let result = async {
        let (token, sandbox) = world.user().await?;
        let ns = sandbox.namespace.clone();
        let url = guestbook(&world, &ns).await?;

        // Two services: the request must name one.
        let (status, body) = world.get(&token, "/api/deployments/guestbook/logs").await?;
        ensure!(
            status == reqwest::StatusCode::BAD_REQUEST && body.contains("web") && body.contains("redis"),
            "without service: {status} {body}"
        );

        let resp = world.open_logs(&token, "guestbook", "service=web&follow=true").await?;
        ensure!(
            resp.status() == reqwest::StatusCode::OK,
            "follow: {} {}",
            resp.status(),
            resp.text().await?
        );
        let pod = resp
            .headers()
            .get("x-pod-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        ensure!(pod.starts_with("guestbook-web-"), "X-Pod-Name {pod:?}");
        ensure!(
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()) == Some("text/plain; charset=utf-8"),
            "{:?}",
            resp.headers()
        );
        let mut stream = Reader::new(resp);
        // What the app wrote before: the stream is open and flowing.
        stream.until("listening on", Duration::from_secs(30)).await?;
        // An entry of a length no other request used, written through the gateway now.
        let chars = rand::random_range(100..400usize);
        let line = format!("added an entry of {chars} characters");
        ensure!(
            !stream.text.contains(&line),
            "the line is there before the request: {}",
            stream.text
        );
        add_entry(&url, chars).await?;
        stream.until(&line, Duration::from_secs(30)).await?;
        drop(stream);

        // Another user: the same app name is not theirs to read, the same 404 as a missing one.
        let (other, _) = world.user().await?;
        let (status, body) = world.get(&other, "/api/deployments/guestbook/logs?service=web").await?;
        ensure!(
            status == reqwest::StatusCode::NOT_FOUND,
            "another user's app: {status} {body}"
        );
        let error: serde_json::Value = serde_json::from_str(&body)?;
        ensure!(error["error"] == "deployment \"guestbook\" not found", "{body}");
        let (status, missing) = world.get(&token, "/api/deployments/nothing/logs").await?;
        ensure!(status == reqwest::StatusCode::NOT_FOUND, "{status} {missing}");
        Ok(())
    }
    .await;
    world.finish(result).await
}

#[tokio::test]
async fn the_byte_cap_cuts_a_log_and_says_so() -> Result<()> {
    let _turn = e2e::suite::turn("real_node_logs").await;
    let mut world = World::start(&[("LOGS_MAX_BYTES", "16")]).await?;
    let result = async {
        let (token, sandbox) = world.user().await?;
        hello(&world, &sandbox).await?;
        let resp = world.open_logs(&token, "hello", "").await?;
        ensure!(resp.status() == reqwest::StatusCode::OK, "{}", resp.status());
        let pod = resp.headers()["x-pod-name"].to_str()?.to_string();
        let body = resp.text().await?;
        // The log itself, read directly, is longer than 16 bytes ("hello-web <version>: listening on ...").
        let full = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(world.client.clone(), &sandbox.namespace)
            .logs(&pod, &Default::default())
            .await?;
        ensure!(full.len() > 16, "the app's log is too short for this test: {full:?}");
        let closing = "\n[k8s-scheduler: log output cut at 16 bytes (LOGS_MAX_BYTES)]\n";
        ensure!(
            body == format!("{}{closing}", &full[..16]),
            "cut log: {body:?} (the log: {full:?})"
        );
        // Following does not get past the cap either: the stream ends at once.
        let resp = world.open_logs(&token, "hello", "follow=true").await?;
        let mut stream = Reader::new(resp);
        stream.read_to_end(Duration::from_secs(30)).await?;
        ensure!(stream.text == body, "a followed stream: {:?}", stream.text);
        Ok(())
    }
    .await;
    world.finish(result).await
}

#[tokio::test]
async fn a_followed_stream_ends_after_its_time() -> Result<()> {
    let _turn = e2e::suite::turn("real_node_logs").await;
    let mut world = World::start(&[("LOGS_FOLLOW_MAX_SECONDS", "2")]).await?;
    let result = async {
        let (token, sandbox) = world.user().await?;
        hello(&world, &sandbox).await?;
        let started = Instant::now();
        let resp = world.open_logs(&token, "hello", "follow=true").await?;
        ensure!(resp.status() == reqwest::StatusCode::OK, "{}", resp.status());
        let mut stream = Reader::new(resp);
        stream.read_to_end(Duration::from_secs(30)).await?;
        let took = started.elapsed();
        ensure!(
            took >= Duration::from_secs(2),
            "ended after {took:?}: {:?}",
            stream.text
        );
        ensure!(stream.text.contains("listening on"), "{:?}", stream.text);
        ensure!(
            stream
                .text
                .ends_with("\n[k8s-scheduler: log stream ended after 2 s (LOGS_FOLLOW_MAX_SECONDS)]\n"),
            "{:?}",
            stream.text
        );
        Ok(())
    }
    .await;
    world.finish(result).await
}

#[tokio::test]
async fn followed_streams_per_user_are_capped() -> Result<()> {
    let _turn = e2e::suite::turn("real_node_logs").await;
    let mut world = World::start(&[("LOGS_MAX_FOLLOWS_PER_USER", "2")]).await?;
    let result = async {
        let (token, sandbox) = world.user().await?;
        hello(&world, &sandbox).await?;
        let mut open = vec![];
        for _ in 0..2 {
            let resp = world.open_logs(&token, "hello", "follow=true").await?;
            ensure!(resp.status() == reqwest::StatusCode::OK, "{}", resp.status());
            let mut stream = Reader::new(resp);
            stream.until("listening on", Duration::from_secs(30)).await?;
            open.push(stream);
        }
        let resp = world.open_logs(&token, "hello", "follow=true").await?;
        let status = resp.status();
        let body = resp.text().await?;
        ensure!(
            status == reqwest::StatusCode::TOO_MANY_REQUESTS && body.contains("LOGS_MAX_FOLLOWS_PER_USER (2)"),
            "a third followed stream: {status} {body}"
        );
        // A read without follow is not counted.
        let (status, _) = world.get(&token, "/api/deployments/hello/logs").await?;
        ensure!(status == reqwest::StatusCode::OK, "{status}");
        // A reader that goes away frees its place (the app writes nothing meanwhile).
        open.pop();
        let (w, t) = (&world, token.as_str());
        e2e::wait::poll(
            Duration::from_secs(15),
            "a place after closing a stream",
            move || async move {
                let resp = w.open_logs(t, "hello", "follow=true").await?;
                Ok((resp.status() == reqwest::StatusCode::OK).then_some(()))
            },
        )
        .await?;
        Ok(())
    }
    .await;
    world.finish(result).await
}

/// The web UI's log viewer (`web/e2e/logs.spec.ts`, Chromium) follows the guestbook's lines as it
/// prints them: the server runs in DEV_MODE with the UI, the test writes an entry through the
/// gateway every two seconds while the browser watches.
#[tokio::test]
async fn the_log_viewer_follows_new_lines_in_a_browser() -> Result<()> {
    let _turn = e2e::suite::turn("real_node_logs").await;
    let _dev = DEV_USER.lock().await;
    let mut world = World::start(&[("DEV_MODE", "true"), ("REACT_UI", "true")]).await?;
    let result = async {
        let ns = world.dev_user().await?;
        let url = guestbook(&world, &ns).await?;

        // Entries keep coming while the browser looks (each a line of the web service's log).
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let writer_url = url.clone();
        let writer = tokio::spawn(async move {
            let mut written = 0usize;
            loop {
                add_entry(&writer_url, 10 + written % 50).await?;
                written += 1;
                tokio::select! {
                    _ = &mut stopped => return Ok::<_, anyhow::Error>(written),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        });
        let screenshots = e2e::browser::web_dir().join("test-results/screenshots");
        std::fs::create_dir_all(&screenshots)?;
        let failures = std::env::temp_dir().join(format!("{}-playwright-logs", world.run));
        let base = world.server.base.clone();
        let out = failures.clone();
        let (ok, output) = tokio::task::spawn_blocking(move || {
            e2e::browser::playwright("logs.spec.ts", &base, &screenshots, &out, &[("LOGS_APP", "guestbook")])
        })
        .await??;
        let _ = stop.send(());
        let written = writer.await??;
        println!("{output}");
        ensure!(
            ok && output.contains("1 passed"),
            "the Playwright log viewer test failed (traces in {}; {written} entries written):\n{output}",
            failures.display()
        );
        let _ = std::fs::remove_dir_all(&failures);
        Ok(())
    }
    .await;
    world.finish(result).await
}

/// `GET /api/deployments/{name}/metrics` on the real node, where `hack/cluster up --real` runs
/// metrics-server behind the aggregation layer: the guestbook's two services show CPU and memory
/// sampled from their real containers, a crashing app's restarts count up, another user's app is
/// 404, and the deployment page draws the charts (`web/e2e/metrics.spec.ts`, Chromium).
#[tokio::test]
async fn cpu_memory_and_restarts_of_an_app_are_shown() -> Result<()> {
    let _turn = e2e::suite::turn("real_node_logs").await;
    let _dev = DEV_USER.lock().await;
    let mut world = World::start(&[
        ("DEV_MODE", "true"),
        ("REACT_UI", "true"),
        ("APP_METRICS_INTERVAL_SECONDS", "10"),
    ])
    .await?;
    let result = async {
        let ns = world.dev_user().await?;
        guestbook(&world, &ns).await?;
        let ready = Instant::now();
        // metrics-server scrapes every 15 s and lists a pod after two scrapes; the server samples
        // every 10 s here.
        let view = loop {
            let (status, body) = world.get("", "/api/deployments/guestbook/metrics").await?;
            ensure!(
                status.is_success(),
                "GET /api/deployments/guestbook/metrics: {status} {body}"
            );
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let sampled = |name: &str| {
                v["services"].as_array().into_iter().flatten().any(|s| {
                    s["name"] == name
                        && s["samples"]
                            .as_array()
                            .and_then(|a| a.last())
                            .is_some_and(|x| x["memoryBytes"].as_u64().unwrap_or(0) > 0)
                })
            };
            if v["available"] == true && sampled("web") && sampled("redis") {
                break v;
            }
            ensure!(
                ready.elapsed() < Duration::from_secs(180),
                "no CPU/memory samples for both services within 180 s; last answer: {body}"
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
        };
        println!("guestbook usage sampled {:?} after it was Ready", ready.elapsed());
        let web = view["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "web")
            .context("no web service")?;
        ensure!(web["pods"] == 1 && web["restarts"] == 0, "{view}");
        ensure!(
            web["memoryLimitBytes"].as_u64().is_some_and(|m| m > 0),
            "the limit is known: {view}"
        );
        let used = web["samples"].as_array().and_then(|a| a.last()).context("a sample")?["memoryBytes"]
            .as_u64()
            .unwrap_or(0);
        ensure!(
            used > 256 * 1024 && used < web["memoryLimitBytes"].as_u64().unwrap_or(0),
            "a real process's working set, under its limit: {used} bytes"
        );

        // Another user's app that exits with 3: its restarts count up, and it is theirs only.
        let (token, other) = world.user().await?;
        let api: Api<UserDeployment> = Api::namespaced(world.client.clone(), &other.namespace);
        let ud: UserDeployment = serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
            "metadata": { "name": "crash", "namespace": other.namespace },
            "spec": { "services": [{ "name": "web", "image": "localhost/k8s-scheduler-test/misbehave:1",
                "port": 8080, "args": ["exit", "3"],
                "resources": { "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "64Mi" } } }] },
        }))?;
        create_deployment(&api, &ud).await?;
        let start = Instant::now();
        loop {
            let (status, body) = world.get(&token, "/api/deployments/crash/metrics").await?;
            ensure!(
                status.is_success(),
                "GET /api/deployments/crash/metrics: {status} {body}"
            );
            let v: serde_json::Value = serde_json::from_str(&body)?;
            if v["services"][0]["restarts"].as_u64().unwrap_or(0) >= 2 {
                break;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(120),
                "the crashing app shows no 2 restarts within 120 s: {body}"
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let (status, body) = world.get("", "/api/deployments/crash/metrics").await?;
        ensure!(
            status == reqwest::StatusCode::NOT_FOUND,
            "another user's app: {status} {body}"
        );

        let screenshots = e2e::browser::web_dir().join("test-results/screenshots");
        std::fs::create_dir_all(&screenshots)?;
        let failures = std::env::temp_dir().join(format!("{}-playwright-metrics", world.run));
        let base = world.server.base.clone();
        let out = failures.clone();
        let (ok, output) = tokio::task::spawn_blocking(move || {
            e2e::browser::playwright(
                "metrics.spec.ts",
                &base,
                &screenshots,
                &out,
                &[("METRICS_APP", "guestbook")],
            )
        })
        .await??;
        println!("{output}");
        ensure!(
            ok && output.contains("1 passed"),
            "the Playwright usage charts test failed (traces in {}):\n{output}",
            failures.display()
        );
        let _ = std::fs::remove_dir_all(&failures);
        Ok(())
    }
    .await;
    world.finish(result).await
}
