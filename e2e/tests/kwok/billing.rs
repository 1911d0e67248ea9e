//! Billing end to end on the local control plane (issue 17): the server binary with
//! BILLING_ENABLED against stripe-mock (behind the recording front of `e2e::stripe`, which also
//! holds "the subscription's real state"), the controller, and webhook deliveries signed here as
//! Stripe signs them.
//!
//! A free user at the one-app limit gets 403; a completed Checkout makes the plan business, the
//! UserSandbox and its ResourceQuota change, and a second app is accepted; the subscription's
//! deletion downgrades and suspends the newest app (still there, scaled to zero, a condition
//! saying why); upgrading again resumes it. Running app-time is recorded from the apps' status and
//! shown on the Billing page, which Playwright opens (`web/e2e/billing.spec.ts`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use crds::{Template, UserDeployment, UserSandbox};
use e2e::apiserver::ServerProcess;
use e2e::browser::{playwright, web_dir};
use e2e::operator::condition_of;
use e2e::stripe::StripeFront;
use e2e::wait::poll;
use hmac::{Hmac, Mac};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_kwok_billing";
const PRICE: &str = "price_kwok_business";
const TIMEOUT: Duration = Duration::from_secs(90);

fn signature(payload: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{payload}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

struct Env {
    client: Client,
    run: String,
    platform: String,
}

impl Env {
    fn label(&self) -> String {
        format!("{}={}", e2e::operator::RUN_LABEL, self.run)
    }

    fn sandbox_ns(&self) -> String {
        format!("{}-dev", self.run)
    }

    async fn cleanup(&self) {
        let sandboxes: Api<UserSandbox> = Api::all(self.client.clone());
        if let Ok(list) = sandboxes.list(&ListParams::default().labels(&self.label())).await {
            for sb in list {
                let _ = sandboxes.delete(&sb.name_any(), &DeleteParams::background()).await;
            }
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in [self.platform.clone(), self.sandbox_ns()] {
            let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
        }
    }
}

struct Api2<'a> {
    server: &'a ServerProcess,
    http: reqwest::Client,
}

impl Api2<'_> {
    /// A same-origin JSON request as the UI sends it (DEV_MODE signs it in).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, self.server.url(path))
            .header("origin", &self.server.base)
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await?;
        Ok((resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null)))
    }

    /// Creates app `name` from hello-web; retried while the new sandbox's quota is not counted
    /// yet (503), which the API says to retry.
    async fn create(&self, name: &str) -> Result<(u16, Value)> {
        let body = json!({"template": "hello-web", "name": name});
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let (status, answer) = self
                .call(reqwest::Method::POST, "/api/deployments", Some(body.clone()))
                .await?;
            if status != 503 || tokio::time::Instant::now() > deadline {
                return Ok((status, answer));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn deliver(&self, event: &Value) -> Result<()> {
        let payload = event.to_string();
        let resp = self
            .http
            .post(self.server.url("/api/billing/webhook"))
            .header("content-type", "application/json")
            .header("stripe-signature", signature(&payload))
            .body(payload)
            .send()
            .await?;
        ensure!(resp.status().as_u16() == 200, "the webhook answered {}", resp.status());
        Ok(())
    }
}

fn event(id: &str, event_type: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": event_type, "created": 1_764_547_200, "livemode": false,
        "api_version": "2025-06-30.basil", "data": {"object": object}})
}

async fn sandbox_plan(client: &Client, name: &str, plan: &str) -> Result<()> {
    let api: Api<UserSandbox> = Api::all(client.clone());
    poll(TIMEOUT, &format!("UserSandbox {name} on the {plan} plan"), || async {
        Ok(api
            .get_opt(name)
            .await?
            .filter(|sb| sb.spec.plan.as_str() == plan)
            .map(|_| ()))
    })
    .await
}

async fn quota_pods(client: &Client, ns: &str, pods: &str) -> Result<()> {
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    poll(
        TIMEOUT,
        &format!("the ResourceQuota of {ns} allows {pods} pods"),
        || async {
            let list = api.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .any(|q| {
                    q.spec
                        .as_ref()
                        .and_then(|s| s.hard.as_ref())
                        .and_then(|h| h.get("pods"))
                        .is_some_and(|p| p.0 == pods)
                })
                .then_some(()))
        },
    )
    .await
}

/// Waits until app `name` is `suspended` (condition Suspended True, every Deployment at zero) or
/// running again (no Suspended condition set True, Ready True).
async fn suspended(client: &Client, ns: &str, name: &str, want: bool) -> Result<()> {
    let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let what = if want { "suspended" } else { "running again" };
    poll(TIMEOUT, &format!("app {name} {what}"), || async {
        let Some(ud) = uds.get_opt(name).await? else {
            bail!("app {name} is gone: a downgrade must never delete an app");
        };
        let cond = condition_of(Some(&ud), "Suspended");
        let selector = format!("{}={name}", policy::build::DEPLOYMENT_LABEL);
        let children = deployments.list(&ListParams::default().labels(&selector)).await?.items;
        let replicas: Vec<i32> = children
            .iter()
            .map(|d| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
            .collect();
        let ok = if want {
            cond.as_ref()
                .is_some_and(|(s, r)| s == "True" && r == "PlanLimitExceeded")
                && !replicas.is_empty()
                && replicas.iter().all(|r| *r == 0)
        } else {
            cond.as_ref().is_none_or(|(s, _)| s != "True")
                && replicas.iter().all(|r| *r > 0)
                && e2e::operator::is_ready_condition(Some(&ud))
        };
        Ok(ok.then_some(()))
    })
    .await
}

#[tokio::test]
async fn a_paid_plan_reaches_the_sandbox_and_a_downgrade_suspends_the_newest_app() -> Result<()> {
    let _turn = e2e::suite::turn("billing").await;
    let front = StripeFront::from_env().await?;
    let client = e2e::client().await?;
    e2e::operator::ensure_crds(&client).await?;
    let run = e2e::unique_name("bill");
    let env = Env {
        client: client.clone(),
        platform: format!("platform-{run}"),
        run,
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": env.platform,
        "labels": {e2e::cluster::TEST_NAMESPACE_LABEL: "true", e2e::operator::RUN_LABEL: env.run}}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let mut t: Template = serde_yaml::from_str(include_str!("../../../examples/20-template-hello-web.yaml"))?;
    t.metadata.namespace = Some(env.platform.clone());
    Api::<Template>::namespaced(client.clone(), &env.platform)
        .create(&PostParams::default(), &t)
        .await?;
    let mut controller = e2e::operator::ControllerProcess::start(&[
        ("WATCH_NAMESPACE", &env.sandbox_ns()),
        ("PLATFORM_NAMESPACE", &env.platform),
        ("SANDBOX_SELECTOR", &env.label()),
        ("DEPLOYMENT_DOMAIN", "apps.test"),
        ("LEADER_ELECT", "false"),
        ("HEALTH_PROBE_ADDR", "127.0.0.1:0"),
        ("DISABLE_NETWORK_POLICIES", "true"),
    ])?;
    let result = scenario(&env, &front).await;
    env.cleanup().await;
    let gone = e2e::wait_until_gone(&namespaces, &env.sandbox_ns(), e2e::cluster::NAMESPACE_DELETE_TIMEOUT).await;
    let logs = controller.logs();
    controller.kill();
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- controller log (end) ---\n{}", tail(&logs, 60)))?;
    gone.with_context(|| format!("namespace {} left behind", env.sandbox_ns()))
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn scenario(env: &Env, front: &StripeFront) -> Result<()> {
    let pattern = format!("{}-%s", env.run);
    let server = ServerProcess::start(&[
        ("DEV_MODE", "true"),
        ("REACT_UI", "true"),
        ("KUBERNETES_NAMESPACE", &pattern),
        ("PLATFORM_NAMESPACE", &env.platform),
        ("SANDBOX_LABELS", &env.label()),
        ("DEPLOYMENT_DOMAIN", "apps.test"),
        ("BILLING_ENABLED", "true"),
        ("STRIPE_API_KEY", "sk_test_kwok"),
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_API_BASE", front.url()),
        ("STRIPE_PRICE_BUSINESS", PRICE),
        ("USAGE_SAMPLE_SECONDS", "10"),
    ])
    .await?;
    let result = steps(env, front, &server).await;
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- server log (end) ---\n{}", tail(&server.logs(), 60)))
}

async fn steps(env: &Env, front: &StripeFront, server: &ServerProcess) -> Result<()> {
    let api = Api2 {
        server,
        http: reqwest::Client::new(),
    };
    let ns = env.sandbox_ns();
    let client = &env.client;

    // Free: one app, and the second is refused pointing at the Billing page.
    let (status, answer) = api.create("first").await?;
    ensure!(status == 201, "the first app: {status} {answer}");
    let (status, answer) = api.create("second").await?;
    ensure!(status == 403, "the second app on the free plan: {status} {answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    ensure!(
        message.contains("plan allows 1 deployment") && message.contains("/billing"),
        "{message}"
    );
    sandbox_plan(client, &ns, "free").await?;

    // The Billing page in a browser: plan, usage, and Upgrade going to Checkout's URL.
    let screenshots = std::env::var_os("UI_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| web_dir().join("test-results/screenshots"));
    std::fs::create_dir_all(&screenshots)?;
    let failures = std::env::temp_dir().join(format!("{}-playwright", env.run));
    let (base, dir, out) = (server.base.clone(), screenshots.clone(), failures.clone());
    let (ok, output) =
        tokio::task::spawn_blocking(move || playwright("billing.spec.ts", &base, &dir, &out, &[])).await??;
    println!("{output}");
    ensure!(
        ok && output.contains("1 passed"),
        "billing.spec.ts failed (traces in {}):\n{output}",
        failures.display()
    );
    let _ = std::fs::remove_dir_all(&failures);

    // The browser's Checkout made the account's customer: the session names it.
    let sessions = front.requests_to("POST", "/v1/checkout/sessions");
    let session = sessions.last().context("the Upgrade button started a Checkout")?;
    ensure!(session.form_value("line_items[0][price]") == Some(PRICE), "{session:?}");
    ensure!(
        session.form_value("client_reference_id") == Some("user:dev"),
        "{session:?}"
    );
    let customer = session
        .form_value("customer")
        .context("the session names the customer")?
        .to_string();

    // Checkout completed: business, the sandbox's plan and quota follow, a second app is accepted.
    let cust = customer.clone();
    front.patch_subscription("sub_kwok", move |s| {
        s["status"] = json!("active");
        s["customer"] = json!(cust);
        s["items"]["data"][0]["price"]["id"] = json!(PRICE);
    });
    api.deliver(&event(
        "evt_kwok_completed",
        "checkout.session.completed",
        json!({"id": "cs_kwok", "object": "checkout.session", "client_reference_id": "user:dev",
               "customer": customer, "subscription": "sub_kwok", "mode": "subscription"}),
    ))
    .await?;
    sandbox_plan(client, &ns, "business").await?;
    quota_pods(client, &ns, &crds::Plan::Business.limits().pods.to_string()).await?;
    let (status, answer) = api.create("second").await?;
    ensure!(status == 201, "the second app on business: {status} {answer}");
    suspended(client, &ns, "first", false).await?;
    suspended(client, &ns, "second", false).await?;

    // Running app-time is recorded from the apps' status (a sample every 10 s).
    poll(TIMEOUT, "usage of the running apps on the Billing page", || async {
        let (_, page) = api.call(reqwest::Method::GET, "/api/billing", None).await?;
        let cpu = page["usage"]["cpuCoreHours"].as_f64().unwrap_or(0.0);
        let apps: Vec<&str> = page["usage"]["services"]
            .as_array()
            .map(|s| s.iter().filter_map(|x| x["deployment"].as_str()).collect())
            .unwrap_or_default();
        Ok((cpu > 0.0 && apps.contains(&"first") && apps.contains(&"second")).then_some(()))
    })
    .await?;

    // The subscription is deleted: free again, the newest app suspended, nothing deleted.
    front.delete_subscription("sub_kwok");
    api.deliver(&event(
        "evt_kwok_deleted",
        "customer.subscription.deleted",
        json!({"id": "sub_kwok", "object": "subscription", "customer": customer, "status": "canceled"}),
    ))
    .await?;
    sandbox_plan(client, &ns, "free").await?;
    suspended(client, &ns, "second", true).await?;
    suspended(client, &ns, "first", false).await?;
    let (_, page) = api.call(reqwest::Method::GET, "/api/billing", None).await?;
    ensure!(
        page["plan"] == "free" && page["used"]["deployments"] == 2 && page["used"]["suspended"] == 1,
        "{page}"
    );

    // Upgraded again (a new subscription): the suspended app resumes.
    let cust = customer.clone();
    front.patch_subscription("sub_kwok_2", move |s| {
        s["status"] = json!("active");
        s["customer"] = json!(cust);
        s["items"]["data"][0]["price"]["id"] = json!(PRICE);
    });
    api.deliver(&event(
        "evt_kwok_again",
        "customer.subscription.created",
        json!({"id": "sub_kwok_2", "object": "subscription", "customer": customer, "status": "active"}),
    ))
    .await?;
    sandbox_plan(client, &ns, "business").await?;
    suspended(client, &ns, "second", false).await?;
    let (_, page) = api.call(reqwest::Method::GET, "/api/billing", None).await?;
    ensure!(
        page["plan"] == "business" && page["subscription"]["status"] == "active" && page["used"]["suspended"] == 0,
        "{page}"
    );
    Ok(())
}
