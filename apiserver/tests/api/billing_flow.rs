//! Billing end to end in the server (issue 17): Checkout and the Portal through stripe-mock (the
//! requests the server makes are checked at a recording front), webhook deliveries signed here as
//! Stripe signs them, the plan that follows from the subscription's real state (the front sets it:
//! stripe-mock is stateless), the grace period with a clock the test controls, and usage reported
//! to Stripe's meters once. Needs E2E_STRIPE_MOCK_URL (hack/test starts stripe-mock); without it
//! these tests fail saying so.
//!
//! The server runs without a cluster here, so the plan is read from the billing account (and an
//! organization's from the database); the kwok suite checks that it reaches the UserSandbox and
//! that the controller suspends and resumes apps.

use crate::common::Server;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apiserver::billing::account::{self, Scope};
use apiserver::billing::metering::{self, Meters, Running};
use apiserver::billing::service;
use apiserver::billing::webhook::EventStatus;
use crds::Plan;
use e2e::stripe::StripeFront;
use hmac::{Hmac, Mac};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_flow_test_secret";
const PRICE_BUSINESS: &str = "price_flow_business";
const GRACE_HOURS: u64 = 24;

fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

struct Flow {
    server: Server,
    front: StripeFront,
    client: reqwest::Client,
}

impl Flow {
    async fn start() -> Result<Flow> {
        Flow::start_on(None).await
    }

    /// On PostgreSQL at `dsn`, or SQLite.
    async fn start_on(dsn: Option<String>) -> Result<Flow> {
        let front = StripeFront::from_env().await?;
        let api = front.url().to_string();
        let server = Server::start(|c, _| {
            c.billing_enabled = true;
            c.stripe_api_key = Some(SecretString::from("sk_test_flow"));
            c.stripe_webhook_secret = Some(SecretString::from(SECRET));
            c.stripe_api_base = api.parse().unwrap();
            c.stripe_price_business = Some(PRICE_BUSINESS.into());
            c.billing_grace_period_hours = GRACE_HOURS;
            c.database_dsn = dsn.map(SecretString::from);
        })
        .await?;
        let client = server.browser();
        Ok(Flow { server, front, client })
    }

    fn state(&self) -> &apiserver::AppState {
        &self.server.app.state
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut req = self.server.send(&self.client, method, path);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Delivers `body` signed now; returns the status and answer.
    async fn deliver(&self, body: &Value) -> Result<(u16, Value)> {
        let payload = body.to_string();
        let t = apiserver::db::now();
        let resp = reqwest::Client::new()
            .post(self.server.url("/api/billing/webhook"))
            .header("content-type", "application/json")
            .header(
                "stripe-signature",
                format!("t={t},v1={}", sign(SECRET, t, payload.as_bytes())),
            )
            .body(payload)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Delivers an event and waits until the worker finished it.
    async fn apply(&self, body: &Value) -> Result<()> {
        let (status, ack) = self.deliver(body).await?;
        ensure!(status == 200, "delivery answered {status}: {ack}");
        self.processed(body["id"].as_str().unwrap()).await
    }

    async fn processed(&self, id: &str) -> Result<()> {
        let inbox = &apiserver::billing::get(self.state()).context("billing is on")?.inbox;
        for _ in 0..100 {
            let stored = inbox.get(id).await?.context("the event is stored")?;
            if stored.status != EventStatus::Pending {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let error: Option<String> = sqlx::query_scalar("SELECT last_error FROM billing_events WHERE id = $1")
            .bind(id)
            .fetch_one(self.state().db.pool())
            .await?;
        anyhow::bail!("event {id} was not applied within 10 s; last error: {error:?}")
    }

    async fn account(&self, scope: &Scope) -> Result<account::Account> {
        account::get(&self.state().db, scope)
            .await?
            .context("the account exists")
    }

    fn subscription_reads(&self, id: &str) -> usize {
        self.front.requests_to("GET", &format!("/v1/subscriptions/{id}")).len()
    }
}

fn event(id: &str, event_type: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "api_version": "2025-06-30.basil", "type": event_type,
        "created": apiserver::db::now(), "livemode": false, "data": {"object": object}})
}

/// The subscription as Stripe would hold it: `status`, `price`, `customer`.
fn set_sub(front: &StripeFront, id: &str, status: &'static str, price: &'static str, customer: String) {
    front.patch_subscription(id, move |s| {
        s["status"] = json!(status);
        s["customer"] = json!(customer);
        s["cancel_at_period_end"] = json!(false);
        s["items"]["data"][0]["price"]["id"] = json!(price);
        s["items"]["data"][0]["current_period_start"] = json!(1_764_547_200);
        s["items"]["data"][0]["current_period_end"] = json!(1_767_225_600);
    });
}

#[tokio::test]
async fn checkout_webhooks_and_the_grace_period_follow_the_subscriptions_real_state() -> Result<()> {
    checkout_flow(Flow::start().await?).await
}

#[tokio::test]
async fn the_billing_flow_on_postgres() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    checkout_flow(Flow::start_on(Some(pg.url.clone())).await?).await
}

async fn checkout_flow(f: Flow) -> Result<()> {
    let me = Scope::User("dev".into());

    // The page before anything is bought.
    let (status, page) = f.json(Method::GET, "/api/billing", None).await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["enabled"], true);
    assert_eq!(page["plan"], "free");
    assert_eq!(page["canManage"], true);
    assert_eq!(page["scope"]["kind"], "user");
    assert_eq!(page["subscription"], Value::Null);
    let available: Vec<(&str, bool)> = page["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["plan"].as_str().unwrap(), p["available"].as_bool().unwrap()))
        .collect();
    assert_eq!(available, [("free", true), ("business", true), ("enterprise", false)]);

    // Refused Checkouts change nothing and call nobody.
    for (body, code, words) in [
        (json!({"plan": "enterprise"}), 400, "STRIPE_PRICE_ENTERPRISE"),
        (json!({"plan": "free"}), 400, "cannot be bought"),
        (json!({"plan": "platinum"}), 400, "cannot be bought"),
        (json!({"plan": "business", "extra": 1}), 400, "extra"),
    ] {
        let (status, answer) = f
            .json(Method::POST, "/api/billing/checkout", Some(body.clone()))
            .await?;
        assert_eq!(status, code, "{body} → {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(words),
            "{body} → {answer}"
        );
    }
    assert!(f.front.requests().is_empty(), "{:?}", f.front.requests());
    let (status, answer) = f.json(Method::POST, "/api/billing/portal", None).await?;
    assert_eq!(status, 409, "no customer yet: {answer}");

    // Checkout: a customer for this account, then a subscription-mode session for the price.
    let (status, answer) = f
        .json(Method::POST, "/api/billing/checkout", Some(json!({"plan": "business"})))
        .await?;
    assert_eq!(status, 200, "{answer}");
    let url = answer["url"].as_str().unwrap();
    assert!(url.starts_with("https://"), "Checkout's URL: {url}");
    let customers = f.front.requests_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1, "{customers:?}");
    assert_eq!(
        customers[0].form_value("metadata[k8s_scheduler_scope]"),
        Some("user:dev")
    );
    let sessions = f.front.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    let customer = f.account(&me).await?.customer_id.context("the customer is stored")?;
    assert_eq!(s.form_value("customer"), Some(customer.as_str()));
    assert_eq!(s.form_value("mode"), Some("subscription"));
    assert_eq!(s.form_value("client_reference_id"), Some("user:dev"));
    assert_eq!(s.form_value("line_items[0][price]"), Some(PRICE_BUSINESS));
    assert_eq!(
        s.form_value("success_url"),
        Some(f.server.url("/billing?checkout=success").as_str())
    );
    assert_eq!(
        s.form_value("cancel_url"),
        Some(f.server.url("/billing?checkout=cancelled").as_str())
    );
    // A second Checkout reuses the customer.
    let (status, _) = f
        .json(Method::POST, "/api/billing/checkout", Some(json!({"plan": "business"})))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(f.front.requests_to("POST", "/v1/customers").len(), 1);

    // Checkout completes: the plan is the subscription's (read from Stripe), applied once.
    set_sub(&f.front, "sub_flow", "active", PRICE_BUSINESS, customer.clone());
    let completed = event(
        "evt_flow_completed",
        "checkout.session.completed",
        json!({"id": "cs_1", "object": "checkout.session", "client_reference_id": "user:dev",
               "customer": customer, "subscription": "sub_flow", "mode": "subscription"}),
    );
    f.apply(&completed).await?;
    let a = f.account(&me).await?;
    assert_eq!((a.plan, a.status.as_deref()), (Plan::Business, Some("active")));
    assert_eq!(f.subscription_reads("sub_flow"), 1);
    // Replayed: stored once, applied once.
    let (status, ack) = f.deliver(&completed).await?;
    assert_eq!((status, ack["duplicate"].as_bool()), (200, Some(true)), "{ack}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.subscription_reads("sub_flow"), 1, "a replay is not applied again");

    // Out of order: a `deleted` event while the subscription is still active changes nothing...
    let stale_deleted = event(
        "evt_flow_stale_deleted",
        "customer.subscription.deleted",
        json!({"id": "sub_flow", "object": "subscription", "customer": customer, "status": "canceled"}),
    );
    f.apply(&stale_deleted).await?;
    assert_eq!(f.account(&me).await?.plan, Plan::Business, "the real state is active");
    // ...and an `updated` event claiming active, once the subscription really ended, downgrades.
    f.front.delete_subscription("sub_flow");
    let stale_active = event(
        "evt_flow_stale_active",
        "customer.subscription.updated",
        json!({"id": "sub_flow", "object": "subscription", "customer": customer, "status": "active"}),
    );
    f.apply(&stale_active).await?;
    let a = f.account(&me).await?;
    assert_eq!((a.plan, a.status.as_deref()), (Plan::Free, Some("deleted")));

    // Paid again, then a payment fails: the plan stays for the grace period, then goes.
    set_sub(&f.front, "sub_flow", "active", PRICE_BUSINESS, customer.clone());
    f.apply(&event(
        "evt_flow_again",
        "customer.subscription.created",
        json!({"id": "sub_flow", "object": "subscription", "customer": customer}),
    ))
    .await?;
    assert_eq!(f.account(&me).await?.plan, Plan::Business);
    set_sub(&f.front, "sub_flow", "past_due", PRICE_BUSINESS, customer.clone());
    f.apply(&event(
        "evt_flow_failed",
        "invoice.payment_failed",
        json!({"id": "in_1", "object": "invoice", "customer": customer,
               "parent": {"subscription_details": {"subscription": "sub_flow"}}}),
    ))
    .await?;
    let a = f.account(&me).await?;
    let since = a.past_due_since.context("the grace period started")?;
    assert_eq!(a.plan, Plan::Business, "kept during the grace period");
    let (_, page) = f.json(Method::GET, "/api/billing", None).await?;
    assert_eq!(page["subscription"]["status"], "past_due");
    assert_eq!(
        page["subscription"]["graceUntil"],
        json!(since + GRACE_HOURS as i64 * 3600)
    );
    let billing = apiserver::billing::get(f.state()).unwrap().clone();
    service::check_grace(f.state(), &billing, since + GRACE_HOURS as i64 * 3600 - 60).await?;
    assert_eq!(f.account(&me).await?.plan, Plan::Business, "a minute before the end");
    service::check_grace(f.state(), &billing, since + GRACE_HOURS as i64 * 3600).await?;
    assert_eq!(f.account(&me).await?.plan, Plan::Free, "the grace period is over");

    // A change whose webhook never arrived is repaired by the periodic resynchronisation.
    set_sub(&f.front, "sub_flow", "active", PRICE_BUSINESS, customer.clone());
    assert_eq!(service::resync(f.state(), &billing, apiserver::db::now()).await?, 1);
    assert_eq!(
        f.account(&me).await?.plan,
        Plan::Business,
        "resynchronised without an event"
    );
    f.front.delete_subscription("sub_flow");
    service::resync(f.state(), &billing, apiserver::db::now()).await?;
    assert_eq!(f.account(&me).await?.plan, Plan::Free);
    assert_eq!(
        service::resync(f.state(), &billing, apiserver::db::now()).await?,
        0,
        "ended: not read again"
    );

    // Unknown types are answered 200 and ignored: no Stripe call.
    let before = f.front.requests().len();
    let (status, _) = f
        .deliver(&event(
            "evt_flow_unknown",
            "customer.tax_id.created",
            json!({"id": "txi_1"}),
        ))
        .await?;
    assert_eq!(status, 200);
    let stored = billing.inbox.get("evt_flow_unknown").await?.unwrap();
    assert_eq!(stored.status, EventStatus::Ignored);
    assert_eq!(f.front.requests().len(), before);

    // The portal, now that there is a customer.
    let (status, answer) = f.json(Method::POST, "/api/billing/portal", None).await?;
    assert_eq!(status, 200, "{answer}");
    let portal = f.front.requests_to("POST", "/v1/billing_portal/sessions");
    assert_eq!(portal.len(), 1);
    assert_eq!(portal[0].form_value("customer"), Some(customer.as_str()));
    assert_eq!(
        portal[0].form_value("return_url"),
        Some(f.server.url("/billing").as_str())
    );
    // Invoices of the customer on the page.
    let (_, page) = f.json(Method::GET, "/api/billing", None).await?;
    assert!(page["invoices"].as_array().is_some_and(|i| !i.is_empty()), "{page}");
    let listed = f.front.requests_to("GET", "/v1/invoices");
    assert_eq!(
        listed.last().and_then(|r| r.query_value("customer")),
        Some(customer.as_str())
    );
    Ok(())
}

#[tokio::test]
async fn refused_deliveries_change_no_plan() -> Result<()> {
    let f = Flow::start().await?;
    let body = event(
        "evt_flow_refused",
        "checkout.session.completed",
        json!({"client_reference_id": "user:dev", "customer": "cus_x", "subscription": "sub_x"}),
    )
    .to_string();
    let t = apiserver::db::now();
    let good = sign(SECRET, t, body.as_bytes());
    for (header, payload) in [
        (
            format!("t={},v1={}", t - 600, sign(SECRET, t - 600, body.as_bytes())),
            body.clone(),
        ),
        (
            format!("t={t},v1={}", sign("whsec_wrong", t, body.as_bytes())),
            body.clone(),
        ),
        (format!("t={t},v1={good}"), body.replace("sub_x", "sub_y")),
    ] {
        let resp = reqwest::Client::new()
            .post(f.server.url("/api/billing/webhook"))
            .header("stripe-signature", header)
            .body(payload)
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 400);
    }
    let resp = reqwest::Client::new()
        .post(f.server.url("/api/billing/webhook"))
        .body(body)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400, "no signature header");
    assert!(
        account::get(&f.state().db, &Scope::User("dev".into())).await?.is_none(),
        "nothing was stored"
    );
    assert!(f.front.requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn usage_is_reported_to_the_meters_once_per_hour_even_after_a_crash() -> Result<()> {
    usage_flow(Flow::start().await?).await
}

#[tokio::test]
async fn usage_reporting_on_postgres() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    usage_flow(Flow::start_on(Some(pg.url.clone())).await?).await
}

async fn usage_flow(f: Flow) -> Result<()> {
    let db = &f.state().db;
    let billing = apiserver::billing::get(f.state()).unwrap().clone();
    let scope = Scope::User("dev".into());
    account::set_customer(db, &scope, "cus_meter").await?;
    let meters = Meters {
        cpu: "app_cpu_core_minutes".into(),
        memory: "app_memory_gib_minutes".into(),
    };
    let hour = 1_764_547_200; // an hour's start
    let running = |cpu, memory| Running {
        scope: scope.key(),
        namespace: "sandbox-dev".into(),
        deployment: "blog".into(),
        service: "web".into(),
        cpu_millis: cpu,
        memory_mib: memory,
    };
    // 500m and 1 GiB for the whole hour (in two samples, one crossing into the next hour).
    metering::record(db, &[running(500, 1024)], hour, hour + 1800).await?;
    metering::record(db, &[running(500, 1024)], hour + 1800, hour + 3600 + 600).await?;
    // A user without a customer is recorded, not billed.
    metering::record(
        db,
        &[Running {
            scope: "user:nobody".into(),
            ..running(1000, 1024)
        }],
        hour,
        hour + 3600,
    )
    .await?;

    // Not before the hour is over and settled.
    assert_eq!(
        metering::report(db, &billing.stripe, &meters, hour + 3600 + 60).await?,
        0
    );
    assert!(f.front.requests_to("POST", "/v1/billing/meter_events").is_empty());
    let sent = metering::report(db, &billing.stripe, &meters, hour + 3600 + metering::SETTLE_SECONDS).await?;
    assert_eq!(sent, 2, "one event per meter");
    let events = f.front.requests_to("POST", "/v1/billing/meter_events");
    let by_meter = |name: &str| {
        events
            .iter()
            .find(|e| e.form_value("event_name") == Some(name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
    };
    let cpu = by_meter("app_cpu_core_minutes");
    assert_eq!(cpu.form_value("payload[value]"), Some("30"), "0.5 core × 60 minutes");
    assert_eq!(cpu.form_value("payload[stripe_customer_id]"), Some("cus_meter"));
    assert_eq!(
        cpu.form_value("identifier"),
        Some(format!("user:dev:{hour}:app_cpu_core_minutes").as_str())
    );
    assert_eq!(cpu.form_value("timestamp"), Some((hour + 3599).to_string().as_str()));
    let memory = by_meter("app_memory_gib_minutes");
    assert_eq!(memory.form_value("payload[value]"), Some("60"), "1 GiB × 60 minutes");

    // Nothing is sent twice...
    assert_eq!(metering::report(db, &billing.stripe, &meters, hour + 7200).await?, 0);
    // ...and after a crash between Stripe's answer and marking it sent, the same events go again,
    // with the same identifiers and values (Stripe counts an identifier once), even if late
    // samples of that hour arrived meanwhile.
    sqlx::query("UPDATE usage_reports SET sent_at = NULL")
        .execute(db.pool())
        .await?;
    metering::record(db, &[running(4000, 0)], hour + 3000, hour + 3500).await?;
    f.front.clear();
    assert_eq!(metering::report(db, &billing.stripe, &meters, hour + 7300).await?, 2);
    let again = f.front.requests_to("POST", "/v1/billing/meter_events");
    let ids = |list: &[e2e::stripe::RecordedRequest]| {
        let mut v: Vec<(String, String)> = list
            .iter()
            .map(|e| {
                (
                    e.form_value("identifier").unwrap().to_string(),
                    e.form_value("payload[value]").unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&again), ids(&events));

    // Two server replicas sample the same cluster: only one records a slot. (Real times: the
    // server's own sampler purges claims older than two days meanwhile.)
    let t = apiserver::db::now();
    assert!(metering::claim_slot(db, 1_000, t).await?);
    assert!(
        !metering::claim_slot(db, 1_000, t + 1).await?,
        "the second replica skips the slot"
    );
    assert!(metering::claim_slot(db, 1_001, t + 60).await?);
    metering::purge_slots(db, t + 30).await?;
    assert!(
        metering::claim_slot(db, 1_000, t + 61).await?,
        "a purged claim is forgotten"
    );
    assert!(!metering::claim_slot(db, 1_001, t + 62).await?, "a newer one is kept");

    // The page shows this period's use (the account has no subscription: the calendar month).
    let used = metering::used_since(db, &scope, hour).await?;
    assert_eq!(used.len(), 1);
    assert!(
        (used[0].cpu_core_hours - (0.5 * 1.1667 + 4.0 * 500.0 / 3600.0)).abs() < 0.01,
        "{used:?}"
    );
    // Another sandbox of the account (an organization's second team) with an app of the same name:
    // kept apart.
    let other = Running {
        namespace: "sandbox-other".into(),
        ..running(1000, 0)
    };
    metering::record(db, &[other], hour, hour + 60).await?;
    let used = metering::used_since(db, &scope, hour).await?;
    assert_eq!(used.len(), 2, "{used:?}");
    assert!(
        used.iter()
            .any(|u| u.namespace == "sandbox-other" && u.deployment == "blog")
    );
    Ok(())
}
