//! The API against the local control plane: a DEV_MODE user lists templates, creates a
//! deployment, sees it become Ready through `/api/events` (with the controller running),
//! restarts it and deletes it; two signed-in users cannot see or touch each other's objects.

use crate::common;

use std::time::Duration;

use crate::common::{Server, server_with_provider, sign_in};
use anyhow::{Context, Result, bail};
use crds::{Template, UserDeployment, UserSandbox};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Per-test names and cleanup of everything labelled with the run (also used by the template
/// authoring tests).
pub(crate) struct Run {
    pub(crate) client: Client,
    pub(crate) run: String,
    pub(crate) platform: String,
}

impl Run {
    async fn new() -> Result<Run> {
        let r = Run::empty("api").await?;
        let mut t: Template =
            serde_yaml::from_str(include_str!("../../../examples/20-template-hello-web.yaml")).context("template")?;
        t.metadata.namespace = Some(r.platform.clone());
        Api::<Template>::namespaced(r.client.clone(), &r.platform)
            .create(&PostParams::default(), &t)
            .await?;
        Ok(r)
    }

    /// A run named `<prefix>-...` with its (empty) platform namespace.
    pub(crate) async fn empty(prefix: &str) -> Result<Run> {
        let client = e2e::client().await?;
        e2e::operator::ensure_crds(&client).await?;
        let run = e2e::unique_name(prefix);
        let platform = format!("{run}-platform");
        let r = Run { client, run, platform };
        r.namespace(&r.platform).await?;
        Ok(r)
    }

    /// Sandbox namespaces `<run>-sb-<user id>` (the platform's, `<run>-platform`, is not one of
    /// them: start-up refuses a pattern that could yield it).
    fn pattern(&self) -> String {
        format!("{}-sb-%s", self.run)
    }

    pub(crate) fn ns(&self, user: &str) -> String {
        format!("{}-sb-{user}", self.run)
    }

    pub(crate) fn configure(&self, c: &mut apiserver::config::Config) {
        c.kubernetes_enabled = true;
        c.kubeconfig = Some(e2e::cluster::kubeconfig_path());
        c.kubernetes_namespace = self.pattern();
        c.settings.platform_namespace = self.platform.clone();
        c.settings.deployment_domain = "apps.test".into();
        c.kubernetes_reconcile_interval = Duration::from_secs(20);
        c.sandbox_labels
            .0
            .insert(e2e::operator::RUN_LABEL.into(), self.run.clone());
    }

    pub(crate) async fn namespace(&self, name: &str) -> Result<()> {
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { e2e::cluster::TEST_NAMESPACE_LABEL: "true", e2e::operator::RUN_LABEL: self.run } }
        }))?;
        match Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn cleanup(&self) {
        let sel = format!("{}={}", e2e::operator::RUN_LABEL, self.run);
        let lp = ListParams::default().labels(&sel);
        let sandboxes: Api<UserSandbox> = Api::all(self.client.clone());
        if let Ok(list) = sandboxes.list(&lp).await {
            for sb in list {
                // Its namespace goes with it (owner reference) but may not carry the run label:
                // release its deployments first, or the namespace stays Terminating.
                e2e::operator::drop_deployment_finalizers(&self.client, &sb.spec.namespace).await;
                let _ = sandboxes.delete(&sb.name_any(), &DeleteParams::background()).await;
            }
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if let Ok(list) = namespaces.list(&lp).await {
            for ns in list {
                // No controller runs any more to remove its cleanup finalizer.
                e2e::operator::drop_deployment_finalizers(&self.client, &ns.name_any()).await;
                let _ = namespaces.delete(&ns.name_any(), &DeleteParams::background()).await;
            }
        }
    }
}

/// The JSON `client` gets from `url`, None on any failure (for [`poll`]).
async fn get_json(client: &reqwest::Client, url: String) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// Reads `/api/events` in the background into a channel of (event name, data).
async fn subscribe(server: &Server, client: &reqwest::Client) -> Result<mpsc::UnboundedReceiver<(String, Value)>> {
    let resp = client.get(server.url("/api/events")).send().await?;
    if resp.status() != StatusCode::OK {
        bail!("/api/events answered {}", resp.status());
    }
    assert!(
        resp.headers()["content-type"]
            .to_str()?
            .starts_with("text/event-stream")
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = resp.bytes_stream();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !event.is_empty()
                    && tx
                        .send((event, serde_json::from_str(&data).unwrap_or(Value::Null)))
                        .is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Polls `check` until it gives `Some` (or fails after `timeout`).
async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    e2e::wait::poll(timeout, what, || {
        let fut = check();
        async move { Ok(fut.await) }
    })
    .await
}

/// Waits for an SSE event matching `pred`.
async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<(String, Value)>,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&str, &Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((e, d))) if pred(&e, &d) => return Ok(d),
            Ok(Some(_)) => continue,
            Ok(None) => bail!("the event stream ended while waiting for {what}"),
            Err(_) => bail!("no event {what} within {timeout:?}"),
        }
    }
}

/// POST that retries while the sandbox is still being prepared (503).
async fn create(server: &Server, client: &reqwest::Client, body: Value) -> Result<(StatusCode, Value)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let resp = server
            .send(client, Method::POST, "/api/deployments")
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status != StatusCode::SERVICE_UNAVAILABLE || tokio::time::Instant::now() > deadline {
            return Ok((status, v));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn metric(server: &Server, name: &str) -> Result<f64> {
    // What METRICS_ADDR serves (the public port has no /metrics).
    let text = server.app.state.metrics.encode();
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .with_context(|| format!("metric {name} in {text}"))?;
    Ok(line.rsplit(' ').next().unwrap_or("").parse()?)
}

/// The server in DEV_MODE and a controller for the dev user's sandbox of this run.
async fn dev_server(run: &Run) -> Result<(Server, e2e::operator::ControllerProcess, reqwest::Client)> {
    let server = Server::start(|c, _| run.configure(c)).await?;
    let ns = run.ns("dev");
    let controller = e2e::operator::ControllerProcess::start(&[
        ("SANDBOX_SELECTOR", &format!("{}={}", e2e::operator::RUN_LABEL, run.run)),
        ("WATCH_NAMESPACE", &ns),
        ("PLATFORM_NAMESPACE", &run.platform),
        ("DEPLOYMENT_DOMAIN", "apps.test"),
        ("LEADER_ELECT", "false"),
        ("DISABLE_NETWORK_POLICIES", "true"),
    ])?;
    let browser = server.browser();
    Ok((server, controller, browser))
}

/// Waits until the caller's sandbox is provisioned (the first request created it).
async fn wait_sandbox_ready(server: &Server, browser: &reqwest::Client) -> Result<()> {
    poll(Duration::from_secs(60), "the sandbox to be ready", || async {
        let me = get_json(browser, server.url("/api/me")).await?;
        (me["sandbox"]["ready"] == true).then_some(())
    })
    .await
}

/// The DEV_MODE user's id is always `dev`, and the controller gives one owner id one sandbox in
/// a cluster (a younger one is refused): the tests that sign in as the DEV_MODE user take turns,
/// after removing test sandboxes of `dev` that an interrupted run left behind.
static DEV_USER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the DEV_MODE user's turn: waits for the other DEV_MODE test of this binary, then deletes
/// leftover test sandboxes (labelled with a run) owned by `dev` and waits until they are gone.
async fn dev_user_turn(client: &Client) -> Result<tokio::sync::MutexGuard<'static, ()>> {
    let turn = DEV_USER.lock().await;
    let sandboxes: Api<UserSandbox> = Api::all(client.clone());
    let lp = ListParams::default().labels(e2e::operator::RUN_LABEL);
    for sb in sandboxes.list(&lp).await? {
        if sb.spec.owner.user_id == "dev" {
            e2e::operator::drop_deployment_finalizers(client, &sb.spec.namespace).await;
            let _ = sandboxes.delete(&sb.name_any(), &DeleteParams::background()).await;
            e2e::wait_until_gone(&sandboxes, &sb.name_any(), Duration::from_secs(60)).await?;
        }
    }
    Ok(turn)
}

#[tokio::test]
async fn dev_user_deploys_watches_restarts_and_deletes() -> Result<()> {
    let run = Run::new().await?;
    let _turn = dev_user_turn(&run.client).await?;
    let result = dev_flow(&run).await;
    run.cleanup().await;
    result
}

async fn dev_flow(run: &Run) -> Result<()> {
    let (server, mut controller, browser) = dev_server(run).await?;
    let ns = run.ns("dev");

    // First request: the user's sandbox is created and provisioned by the controller.
    let me: Value = browser.get(server.url("/api/me")).send().await?.json().await?;
    assert_eq!(me["user"]["email"], "dev@localhost");
    assert_eq!(me["sandbox"]["namespace"], ns);
    let sb: UserSandbox = Api::<UserSandbox>::all(run.client.clone()).get(&ns).await?;
    assert_eq!(sb.spec.owner.user_id, "dev");
    wait_sandbox_ready(&server, &browser).await?;

    let templates: Value = browser.get(server.url("/api/templates")).send().await?.json().await?;
    assert!(
        templates
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "hello-web" && t["system"] == true),
        "{templates}"
    );

    // Three browsers listening, one upstream watch.
    let mut events = subscribe(&server, &browser).await?;
    let snapshot = next_matching(&mut events, Duration::from_secs(10), "snapshot", |e, _| e == "snapshot").await?;
    assert_eq!(snapshot["deployments"], json!([]));
    let _second = subscribe(&server, &server.browser()).await?;
    let _third = subscribe(&server, &server.browser()).await?;
    poll(Duration::from_secs(10), "3 SSE clients counted", || async {
        (metric(&server, "k8s_scheduler_server_sse_clients").await.ok()? >= 3.0).then_some(())
    })
    .await?;
    assert_eq!(
        metric(
            &server,
            "k8s_scheduler_server_upstream_watches{kind=\"userdeployments\"}"
        )
        .await?,
        1.0
    );

    let (status, created) = create(&server, &browser, json!({ "template": "hello-web", "name": "web" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["namespace"], ns);
    let ready = next_matching(&mut events, Duration::from_secs(120), "web Ready", |e, d| {
        e == "deployment"
            && d["type"] == "applied"
            && d["deployment"]["name"] == "web"
            && d["deployment"]["ready"] == true
    })
    .await
    .with_context(|| controller.logs())?;
    assert_eq!(ready["deployment"]["url"], "https://dev-web.apps.test");
    let detail: Value = browser
        .get(server.url("/api/deployments/web"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(detail["phase"], "Ready");
    assert!(detail["events"].is_array());
    // The list is served from pre-rendered views: the same fields as the detail.
    let list: Value = poll(Duration::from_secs(10), "web Ready in the list", || async {
        let list = get_json(&browser, server.url("/api/deployments")).await?;
        (list[0]["name"] == "web" && list[0]["phase"] == "Ready").then_some(list)
    })
    .await?;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["url"], detail["url"]);
    assert_eq!(list[0]["conditions"], detail["conditions"]);

    // Restart: the pods' template changes.
    let restarted = server
        .send(&browser, Method::POST, "/api/deployments/web/restart")
        .send()
        .await?;
    assert_eq!(restarted.status(), StatusCode::ACCEPTED);
    let deployments: Api<Deployment> = Api::namespaced(run.client.clone(), &ns);
    poll(
        Duration::from_secs(60),
        "the restart annotation on the pods",
        || async {
            let list = deployments.list(&ListParams::default()).await.ok()?;
            list.items.iter().find_map(|d| {
                d.spec
                    .as_ref()?
                    .template
                    .metadata
                    .as_ref()?
                    .annotations
                    .as_ref()?
                    .get("k8s-scheduler.io/restartedAt")
                    .cloned()
            })
        },
    )
    .await?;

    // Delete: the stream says so, the resource and its children go.
    let del = server
        .send(&browser, Method::DELETE, "/api/deployments/web")
        .send()
        .await?;
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    next_matching(&mut events, Duration::from_secs(60), "web deleted", |e, d| {
        e == "deployment" && d["type"] == "deleted" && d["name"] == "web"
    })
    .await?;
    let uds: Api<UserDeployment> = Api::namespaced(run.client.clone(), &ns);
    e2e::wait_until_gone(&uds, "web", Duration::from_secs(60)).await?;
    assert_eq!(
        browser.get(server.url("/api/deployments/web")).send().await?.status(),
        StatusCode::NOT_FOUND
    );
    controller.kill();
    Ok(())
}

#[tokio::test]
async fn users_cannot_see_or_touch_each_others_objects() -> Result<()> {
    let run = Run::new().await?;
    let result = isolation(&run).await;
    run.cleanup().await;
    result
}

async fn isolation(run: &Run) -> Result<()> {
    let (provider, server) = server_with_provider(|c| run.configure(c)).await?;
    let alice = sign_in(&server, &provider, "alice").await?;
    let bob = sign_in(&server, &provider, "bob").await?;
    // User ids follow the identity (`alice<hash>`): ask the server.
    let mut ids = vec![];
    for browser in [&alice, &bob] {
        let me: Value = browser.get(server.url("/api/me")).send().await?.json().await?;
        ids.push(me["user"]["id"].as_str().context("user id")?.to_string());
    }
    let (alice_ns, bob_ns) = (run.ns(&ids[0]), run.ns(&ids[1]));
    // No controller here: create the sandbox namespaces as it would.
    run.namespace(&alice_ns).await?;
    run.namespace(&bob_ns).await?;

    let (status, made) = create(&server, &bob, json!({ "template": "hello-web", "name": "bobs-app" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    // Free plan: one deployment.
    let (status, e) = create(&server, &bob, json!({ "template": "hello-web", "name": "second" })).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap().contains("free plan"), "{e}");
    // Bob's private template.
    let mut t: Template = serde_yaml::from_str(include_str!("../../../examples/20-template-hello-web.yaml"))?;
    t.metadata.name = Some("bobs-template".into());
    t.metadata.namespace = Some(bob_ns.clone());
    t.spec.visibility = crds::TemplateVisibility::Private;
    Api::<Template>::namespaced(run.client.clone(), &bob_ns)
        .create(&PostParams::default(), &t)
        .await?;
    poll(Duration::from_secs(30), "bob's template in his catalog", || async {
        let list = get_json(&bob, server.url("/api/templates")).await?;
        list.as_array()?
            .iter()
            .any(|t| t["name"] == "bobs-template")
            .then_some(())
    })
    .await?;
    // Bob's API token.
    let token: Value = server
        .send(&bob, Method::POST, "/api/tokens")
        .json(&json!({ "name": "bob-ci", "scopes": ["deployments:read"] }))
        .send()
        .await?
        .json()
        .await?;

    let uds: Api<UserDeployment> = Api::namespaced(run.client.clone(), &bob_ns);
    let before = uds.get("bobs-app").await?;

    // Alice, on every route, against Bob's objects: 404, and nothing changes.
    let app = "/api/deployments/bobs-app";
    let tries: Vec<(Method, String, Value)> = vec![
        (Method::GET, app.into(), Value::Null),
        (Method::GET, format!("{app}/metrics"), Value::Null),
        (Method::GET, format!("{app}/logs"), Value::Null),
        (
            Method::PATCH,
            app.into(),
            json!({ "parameters": { "GREETING": "pwned" } }),
        ),
        (Method::POST, format!("{app}/restart"), json!({})),
        (
            Method::POST,
            format!("{app}/image"),
            json!({ "service": "web", "image": "evil/evil:1" }),
        ),
        (Method::DELETE, app.into(), Value::Null),
        (Method::GET, "/api/templates/bobs-template".into(), Value::Null),
        (
            Method::DELETE,
            format!("/api/tokens/{}", token["id"].as_str().unwrap()),
            Value::Null,
        ),
    ];
    for (method, path, body) in tries {
        let mut req = server.send(&alice, method.clone(), &path);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path} as alice");
    }
    let list: Value = alice.get(server.url("/api/deployments")).send().await?.json().await?;
    assert_eq!(list, json!([]), "alice sees none of bob's deployments");
    let catalog: Value = alice.get(server.url("/api/templates")).send().await?.json().await?;
    assert!(!catalog.as_array().unwrap().iter().any(|t| t["name"] == "bobs-template"));
    let mut alice_events = subscribe(&server, &alice).await?;
    let snap = next_matching(&mut alice_events, Duration::from_secs(10), "snapshot", |e, _| {
        e == "snapshot"
    })
    .await?;
    assert_eq!(snap["deployments"], json!([]));

    let after = uds.get("bobs-app").await?;
    assert_eq!(
        before.resource_version(),
        after.resource_version(),
        "bob's deployment is unchanged"
    );
    let still: Value = bob.get(server.url(app)).send().await?.json().await?;
    assert_eq!(still["name"], "bobs-app");
    let bearer = token["token"].as_str().unwrap();
    let with_token = reqwest::Client::new()
        .get(server.url("/api/deployments"))
        .bearer_auth(bearer)
        .send()
        .await?;
    assert_eq!(with_token.status(), StatusCode::OK, "bob's token still works");
    app_metrics(run, &server, &bob, &bob_ns).await
}

/// `GET /api/deployments/{name}/metrics` on a cluster without a metrics API (this one has no
/// metrics-server): pods, restarts and limits come from the app's real pods, and CPU and memory
/// are said to be unavailable, naming metrics-server. (CPU and memory themselves: on the real node,
/// e2e/tests/real_node/logs.rs.)
async fn app_metrics(run: &Run, server: &Server, bob: &reqwest::Client, bob_ns: &str) -> Result<()> {
    // A pod of bobs-app's service web, as the controller's Deployment would make it; no scheduler
    // takes it (schedulerName), so its status is the test's: 3 restarts.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(run.client.clone(), bob_ns);
    let pod = serde_json::from_value(json!({
        "metadata": { "name": "bobs-app-web-1", "labels": {
            policy::build::DEPLOYMENT_LABEL: "bobs-app", policy::build::SERVICE_LABEL: "web" } },
        "spec": { "schedulerName": "nobody", "containers": [{ "name": "web", "image": "hello-web:1",
            "resources": { "limits": { "cpu": "500m", "memory": "64Mi" } } }] }
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let status = json!({ "status": { "containerStatuses": [{ "name": "web", "image": "hello-web:1",
        "imageID": "", "ready": false, "restartCount": 3, "state": { "waiting": { "reason": "CrashLoopBackOff" } } }] } });
    pods.patch_status(
        "bobs-app-web-1",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await?;
    let view = poll(
        Duration::from_secs(30),
        "the first metrics sample's outcome",
        || async {
            let v = get_json(bob, server.url("/api/deployments/bobs-app/metrics")).await?;
            (v["available"] == false && v["message"].as_str()?.contains("metrics-server")).then_some(v)
        },
    )
    .await?;
    assert_eq!(
        view["message"],
        "the cluster serves no metrics API (metrics.k8s.io); install metrics-server to see CPU and memory",
        "{view}"
    );
    assert_eq!(view["intervalSeconds"], 60, "{view}");
    assert_eq!(view["windowSeconds"], 3600, "{view}");
    let web = &view["services"][0];
    assert_eq!(web["name"], "web", "{view}");
    assert_eq!(
        (web["pods"].as_u64(), web["restarts"].as_u64()),
        (Some(1), Some(3)),
        "{view}"
    );
    assert_eq!(web["cpuLimitMillicores"], 500.0, "{view}");
    assert_eq!(web["memoryLimitBytes"], 64 * 1024 * 1024, "{view}");
    assert_eq!(web["samples"], json!([]), "{view}");
    let missing = bob
        .get(server.url("/api/deployments/no-such-app/metrics"))
        .send()
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn secret_parameters_reach_the_pods_and_a_change_rolls_them() -> Result<()> {
    let run = Run::new().await?;
    let _turn = dev_user_turn(&run.client).await?;
    let result = secret_flow(&run).await;
    run.cleanup().await;
    result
}

async fn secret_flow(run: &Run) -> Result<()> {
    let mut t: Template = serde_yaml::from_str(include_str!("../../../examples/21-template-guestbook.yaml"))?;
    t.metadata.namespace = Some(run.platform.clone());
    Api::<Template>::namespaced(run.client.clone(), &run.platform)
        .create(&PostParams::default(), &t)
        .await?;
    let (server, mut controller, browser) = dev_server(run).await?;
    let ns = run.ns("dev");
    wait_sandbox_ready(&server, &browser).await?;
    poll(
        Duration::from_secs(30),
        "the guestbook template in the catalog",
        || async {
            let list = get_json(&browser, server.url("/api/templates")).await?;
            list.as_array()?.iter().any(|t| t["name"] == "guestbook").then_some(())
        },
    )
    .await?;

    // The status and, for the assertion's message, the answer's body.
    let put = |path: &str, value: &str| {
        let req = server
            .send(&browser, Method::PUT, path)
            .json(&json!({ "value": value }));
        async move {
            let resp = req.send().await?;
            Ok::<_, anyhow::Error>((resp.status(), resp.text().await?))
        }
    };
    let (status, body) = put("/api/secrets/user/SHARED_TOKEN", "from-user").await?;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "PUT /api/secrets/user/SHARED_TOKEN: {body}"
    );
    // Deployment- and service-scoped secrets need the deployment (issue 15, item 8).
    let (status, body) = put("/api/secrets/deployments/guest/REDIS_PASSWORD", "first").await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "PUT /api/secrets/deployments/guest/REDIS_PASSWORD: {body}"
    );
    let (status, made) = create(
        &server,
        &browser,
        json!({ "template": "guestbook", "name": "guest", "parameters": { "TITLE": "Hi" }, "secretRefs": ["REDIS_PASSWORD"] }),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, body) = put("/api/secrets/deployments/guest/REDIS_PASSWORD", "first").await?;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "PUT /api/secrets/deployments/guest/REDIS_PASSWORD: {body}"
    );
    let (status, body) = put("/api/secrets/deployments/guest/services/redis/ROLE", "primary").await?;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "PUT /api/secrets/deployments/guest/services/redis/ROLE: {body}"
    );

    let uds: Api<UserDeployment> = Api::namespaced(run.client.clone(), &ns);
    let ud = e2e::wait_for(
        &uds,
        "guest",
        Duration::from_secs(120),
        "Ready at its current generation (the secret writes above rolled it)",
        |ud: Option<&UserDeployment>| {
            e2e::operator::is_ready_condition(ud)
                && ud.is_some_and(|u| u.status.as_ref().and_then(|s| s.observed_generation) == u.metadata.generation)
        },
    )
    .await
    .with_context(|| controller.logs())?;
    assert!(
        !serde_json::to_string(&ud.spec)?.contains("first"),
        "no value in the CR"
    );

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(run.client.clone(), &ns);
    let value_of = |s: &k8s_openapi::api::core::v1::Secret, k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
    };
    let main = secrets.get("guest-secrets").await?;
    assert_eq!(value_of(&main, "REDIS_PASSWORD").as_deref(), Some("first"));
    assert_eq!(
        value_of(&main, "SHARED_TOKEN").as_deref(),
        Some("from-user"),
        "user-wide values are merged in"
    );
    let owner = &main.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("UserDeployment", "guest"));
    let redis_own = secrets.get("guest-redis-secrets").await?;
    assert_eq!(value_of(&redis_own, "ROLE").as_deref(), Some("primary"));
    // The label that tracks the content is keyed (issue 15, item 15): not the unkeyed hash of the
    // values, which anyone who can read labels could compare with guesses.
    let label = |s: &k8s_openapi::api::core::v1::Secret| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(apiserver::platform::kube::SECRET_HASH_LABEL).cloned())
            .unwrap_or_default()
    };
    // The old label: FNV over the keys and values in key order.
    let unkeyed = policy::build::fnv_hash(&["REDIS_PASSWORD", "first", "SHARED_TOKEN", "from-user"]);
    let main_label = label(&main);
    assert!(!main_label.is_empty(), "the Secret carries the label");
    assert_ne!(main_label, unkeyed, "the label is the unkeyed FNV hash of the values");
    assert_ne!(
        label(&redis_own),
        policy::build::fnv_hash(&["ROLE", "primary"]),
        "the label is the unkeyed FNV hash of the values"
    );

    let deployments: Api<Deployment> = Api::namespaced(run.client.clone(), &ns);
    let pod_template = |d: &Deployment| d.spec.as_ref().unwrap().template.clone();
    let web = deployments.get("guest-web").await?;
    let env_from = pod_template(&web).spec.unwrap().containers[0].env_from.clone().unwrap();
    assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "guest-secrets");
    let before = pod_template(&web)
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();

    // A new value: the Secret changes and the pods roll.
    let (status, body) = put("/api/secrets/deployments/guest/REDIS_PASSWORD", "second").await?;
    assert_eq!(
        status,
        StatusCode::OK,
        "PUT /api/secrets/deployments/guest/REDIS_PASSWORD: {body}"
    );
    let main = secrets.get("guest-secrets").await?;
    assert_eq!(value_of(&main, "REDIS_PASSWORD").as_deref(), Some("second"));
    poll(Duration::from_secs(60), "the pods to roll", || async {
        let d = deployments.get("guest-web").await.ok()?;
        let after = pod_template(&d)
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        let rolled = after.contains_key("k8s-scheduler.io/restartedAt")
            && after.get("k8s-scheduler.io/restartedAt") != before.get("k8s-scheduler.io/restartedAt");
        rolled.then_some(())
    })
    .await
    .with_context(|| controller.logs())?;

    // Deleting the deployment removes its deployment- and service-scoped secrets.
    assert_eq!(
        server
            .send(&browser, Method::DELETE, "/api/deployments/guest")
            .send()
            .await?
            .status(),
        StatusCode::NO_CONTENT
    );
    let list: Value = browser.get(server.url("/api/secrets")).send().await?.json().await?;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["SHARED_TOKEN"], "{list}");
    controller.kill();
    Ok(())
}

/// Issue 15 item 3: a UserSandbox is the user's only if it was made by this installation for this
/// identity (issuer and subject); one of another installation, or of another person with the same
/// owner id, is refused with 409 and left as it is. A sandbox without the marks is adopted only
/// when its owner email is the user's verified email.
#[tokio::test]
async fn a_sandbox_of_another_installation_or_identity_is_not_handed_over() -> Result<()> {
    let run = Run::new().await?;
    let result = ownership(&run).await;
    run.cleanup().await;
    result
}

async fn ownership(run: &Run) -> Result<()> {
    // One identity provider, two installations (two databases) on one cluster.
    let (listener_a, base_a) = Server::bind().await?;
    let (listener_b, base_b) = Server::bind().await?;
    let provider = e2e::oidc::OidcProvider::start(&[e2e::oidc::OidcClient {
        client_id: common::CLIENT_ID.into(),
        client_secret: format!("{}-secret", common::CLIENT_ID),
        redirect_uris: vec![format!("{base_a}/oauth2/callback"), format!("{base_b}/oauth2/callback")],
    }])
    .await?;
    let issuer = provider.issuer().to_string();
    let configure = |c: &mut apiserver::config::Config, base: &str| {
        common::use_provider(c, base, &issuer, common::CLIENT_ID);
        run.configure(c);
    };
    let a = Server::start_on(listener_a, base_a, configure).await?;
    let b = Server::start_on(listener_b, base_b, configure).await?;

    let alice = sign_in(&a, &provider, "alice").await?;
    let me: Value = alice.get(a.url("/api/me")).send().await?.json().await?;
    let id = me["user"]["id"].as_str().context("user id")?.to_string();
    let email = me["user"]["email"].as_str().context("email")?.to_string();
    let name = run.ns(&id);
    let sandboxes: Api<UserSandbox> = Api::all(run.client.clone());
    let made = sandboxes.get(&name).await?;

    // The same person signing in to another installation gets the same id, hence the same
    // sandbox name: refused, not handed over.
    let browser = b.browser();
    let callback = common::start_login(&b, &provider, &browser, "alice").await?;
    let resp = browser.get(&callback).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "another installation's sandbox was handed over: {body}"
    );
    assert!(body.contains(&name) && body.contains("installation"), "{body}");
    assert_eq!(
        sandboxes.get(&name).await?.resource_version(),
        made.resource_version(),
        "nothing was overwritten"
    );

    // The sandbox carries this installation's id and a hash of the identity, not the subject.
    let marks = made.annotations();
    let installation = marks
        .get("k8s-scheduler.io/installation")
        .context("the installation annotation")?;
    let identity = marks
        .get("k8s-scheduler.io/owner-identity")
        .context("the owner-identity annotation")?;
    assert!(!installation.is_empty() && identity.len() >= 32, "{marks:?}");
    assert!(!identity.contains(&issuer) && !identity.contains('|'), "{identity}");

    // Another identity's sandbox under the same owner id (made with kubectl): refused.
    let replace = |owner_email: &str| -> Result<UserSandbox> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1",
            "kind": "UserSandbox",
            "metadata": { "name": name, "labels": { e2e::operator::RUN_LABEL: run.run } },
            "spec": { "owner": { "userId": id, "email": owner_email }, "plan": "business", "namespace": name },
        }))?)
    };
    for (owner_email, adopted) in [("mallory@example.com", false), (email.as_str(), true)] {
        sandboxes.delete(&name, &DeleteParams::default()).await?;
        poll(Duration::from_secs(30), "the sandbox to be gone", || async {
            sandboxes.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await?;
        let created = sandboxes.create(&PostParams::default(), &replace(owner_email)?).await?;
        let want = if adopted { StatusCode::OK } else { StatusCode::CONFLICT };
        poll(
            Duration::from_secs(30),
            &format!("/api/me to answer {want}"),
            || async {
                let r = alice.get(a.url("/api/me")).send().await.ok()?;
                (r.status() == want).then_some(())
            },
        )
        .await?;
        let now = sandboxes.get(&name).await?;
        if adopted {
            assert_eq!(now.spec.plan, crds::Plan::Business, "the existing sandbox is kept");
            assert_eq!(now.annotations().get("k8s-scheduler.io/owner-identity"), Some(identity));
            assert_eq!(
                now.annotations().get("k8s-scheduler.io/installation"),
                Some(installation)
            );
        } else {
            assert_eq!(
                now.resource_version(),
                created.resource_version(),
                "mallory's sandbox is untouched"
            );
            let e: Value = alice.get(a.url("/api/me")).send().await?.json().await?;
            assert!(e["error"].as_str().unwrap_or("").contains(&name), "{e}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn team_and_org_templates_reach_the_team_and_the_organization() -> Result<()> {
    let run = Run::new().await?;
    let result = shared_templates(&run).await;
    run.cleanup().await;
    result
}

/// A team's `team` templates are in its members' catalogs (their own sandboxes too), its `org`
/// templates in every catalog of its organization, its private ones nowhere else; an outsider
/// sees none. The server writes the team's members and organization into its UserSandbox, which
/// is what the rule (and the controller) reads.
async fn shared_templates(run: &Run) -> Result<()> {
    let (provider, server) = server_with_provider(|c| run.configure(c)).await?;
    let alice = sign_in(&server, &provider, "alice").await?;
    let bob = sign_in(&server, &provider, "bob").await?;
    let me = get_json(&alice, server.url("/api/me"))
        .await
        .context("alice's /api/me")?;
    let alice_id = me["user"]["id"].as_str().context("alice's id")?.to_string();
    run.namespace(&run.ns(&alice_id)).await?;
    let org: Value = server
        .send(&alice, Method::POST, "/api/orgs")
        .json(&json!({ "name": "Acme" }))
        .send()
        .await?
        .json()
        .await?;
    let org = org["id"].as_str().context("org id")?.to_string();
    let team: Value = server
        .send(&alice, Method::POST, &format!("/api/orgs/{org}/teams"))
        .json(&json!({ "name": "Web" }))
        .send()
        .await?
        .json()
        .await?;
    let team_ns = team["namespace"].as_str().context("team namespace")?.to_string();
    run.namespace(&team_ns).await?;

    // What the server wrote into the team's sandbox.
    let sandboxes: Api<UserSandbox> = Api::all(run.client.clone());
    let sb = sandboxes.get(&team_ns).await?;
    assert_eq!(sb.labels().get(policy::templates::ORG_LABEL), Some(&org));
    let members: Vec<(&str, crds::MemberRole)> = sb.spec.members.iter().map(|m| (m.user_id.as_str(), m.role)).collect();
    assert_eq!(members, [(alice_id.as_str(), crds::MemberRole::Admin)]);

    let templates: Api<Template> = Api::namespaced(run.client.clone(), &team_ns);
    for (name, visibility) in [
        ("team-shop", crds::TemplateVisibility::Team),
        ("org-wiki", crds::TemplateVisibility::Org),
        ("team-secret", crds::TemplateVisibility::Private),
    ] {
        let mut t: Template = serde_yaml::from_str(include_str!("../../../examples/20-template-hello-web.yaml"))?;
        t.metadata.name = Some(name.into());
        t.metadata.namespace = Some(team_ns.clone());
        t.spec.visibility = visibility;
        templates.create(&PostParams::default(), &t).await?;
    }
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Alice in her own sandbox: the team's and the organization's shared templates.
    let catalog = poll(
        Duration::from_secs(30),
        "the shared templates in alice's catalog",
        || async {
            let list = get_json(&alice, server.url("/api/templates")).await?;
            let n = names(&list);
            (n.contains(&"team-shop".to_string()) && n.contains(&"org-wiki".to_string())).then_some(list)
        },
    )
    .await?;
    assert!(!names(&catalog).contains(&"team-secret".to_string()), "{catalog}");
    // Bob, outside the organization: none of them.
    let theirs = get_json(&bob, server.url("/api/templates"))
        .await
        .context("bob's catalog")?;
    for name in ["team-shop", "org-wiki", "team-secret"] {
        assert!(
            !names(&theirs).contains(&name.to_string()),
            "{name} in bob's catalog: {theirs}"
        );
    }
    // Alice deploys the team's template in her own sandbox: its reference names the team's namespace.
    let (status, made) = create(
        &server,
        &alice,
        json!({ "template": "team-shop", "name": "shop", "templateNamespace": team_ns }),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let ud = Api::<UserDeployment>::namespaced(run.client.clone(), &run.ns(&alice_id))
        .get("shop")
        .await?;
    assert_eq!(ud.spec.template_ref.and_then(|r| r.namespace), Some(team_ns.clone()));
    Ok(())
}
