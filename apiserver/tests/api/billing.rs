//! The Stripe webhook (issue 17): deliveries signed here exactly as Stripe signs them
//! (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`), sent through the webhook's router,
//! and the inbox they land in. The route is not yet in the application's router, so these drive
//! `billing::webhook::router` alone. The inbox suite runs on SQLite and on PostgreSQL
//! (E2E_POSTGRES_URL, which hack/test sets).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use apiserver::billing::webhook::{self, EventStatus, Inbox, PATH, WebhookState};
use apiserver::db::Db;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use tower::ServiceExt;

const SECRET: &str = "whsec_billing_test_current";
const PREVIOUS: &str = "whsec_billing_test_previous";

/// `v1` as Stripe computes it.
fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// The header Stripe sends for `payload` signed by `secret` now.
fn signed(secret: &str, payload: &[u8]) -> String {
    let t = apiserver::db::now();
    format!("t={t},v1={}", sign(secret, t, payload))
}

fn event(id: &str, event_type: &str) -> Vec<u8> {
    json!({
        "id": id, "object": "event", "api_version": "2025-06-30.basil", "type": event_type,
        "created": apiserver::db::now() - 2, "livemode": false,
        "data": {"object": {"id": "sub_123", "object": "subscription", "status": "active", "customer": "cus_1"}}
    })
    .to_string()
    .into_bytes()
}

struct Fixture {
    db: Db,
    inbox: Inbox,
    router: Router,
}

async fn fixture_on(db: Db, secrets: &[&str]) -> Result<Fixture> {
    let inbox = Inbox::new(db.clone());
    let state = WebhookState::new(inbox.clone(), secrets.iter().map(|s| SecretString::from(*s)))?;
    Ok(Fixture {
        db,
        inbox,
        router: webhook::router(Arc::new(state)),
    })
}

async fn fixture(secrets: &[&str]) -> Result<Fixture> {
    fixture_on(Db::connect(None, &common::temp_sqlite()).await?, secrets).await
}

impl Fixture {
    /// POSTs `body` with `signature` as the Stripe-Signature header (none: no header).
    async fn deliver(&self, signature: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
        let mut req = Request::post(PATH).header(header::CONTENT_TYPE, "application/json; charset=utf-8");
        if let Some(s) = signature {
            req = req.header("Stripe-Signature", s);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_vec())).unwrap())
            .await
            .expect("router answers");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn rows(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM billing_events")
            .fetch_one(self.db.pool())
            .await?)
    }
}

/// The inbox's promises on one database: stored once, replays change nothing (not even after
/// processing), pending events oldest first, unhandled types ignored, the purge bounded.
async fn inbox_suite(db: Db) -> Result<()> {
    let f = fixture_on(db, &[SECRET]).await?;
    let first = event("evt_first", "customer.subscription.updated");
    let sig = signed(SECRET, &first);
    let (status, body) = f.deliver(Some(&sig), &first).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"received": true, "duplicate": false}))
    );
    let stored = f.inbox.get("evt_first").await?.expect("stored");
    assert_eq!(stored.status, EventStatus::Pending);
    assert_eq!(stored.processed_at, None);
    assert_eq!(stored.event.payload.as_bytes(), first.as_slice());
    assert_eq!(stored.event.object["id"], "sub_123");

    // The same delivery again (a replay within the tolerance, or Stripe retrying): 200, nothing new.
    let (status, body) = f.deliver(Some(&sig), &first).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"received": true, "duplicate": true}))
    );
    assert_eq!(f.rows().await?, 1);
    assert!(!f.inbox.record(&stored.event).await?, "record reports a replay");
    assert_eq!(
        f.inbox.get("evt_first").await?.unwrap(),
        stored,
        "a replay changes nothing"
    );

    let second = event("evt_second", "checkout.session.completed");
    assert_eq!(
        f.deliver(Some(&signed(SECRET, &second)), &second).await.0,
        StatusCode::OK
    );
    let unknown = event("evt_unknown", "customer.tax_id.created");
    assert_eq!(
        f.deliver(Some(&signed(SECRET, &unknown)), &unknown).await.0,
        StatusCode::OK
    );
    let ignored = f.inbox.get("evt_unknown").await?.expect("unknown types are recorded");
    assert_eq!(ignored.status, EventStatus::Ignored);
    assert!(ignored.processed_at.is_some());

    // The worker's loop: oldest pending first; unknown types never come up.
    let next = f.inbox.next_unprocessed().await?.expect("pending");
    assert_eq!(next.id, "evt_first");
    assert!(f.inbox.mark_processed("evt_first").await?);
    assert!(!f.inbox.mark_processed("evt_first").await?, "already processed");
    assert!(
        !f.inbox.mark_processed("evt_unknown").await?,
        "ignored events are not pending"
    );
    assert!(!f.inbox.mark_processed("evt_nope").await?);
    assert_eq!(f.inbox.next_unprocessed().await?.unwrap().id, "evt_second");
    assert!(f.inbox.mark_processed("evt_second").await?);
    assert_eq!(f.inbox.next_unprocessed().await?, None);

    // A replay after processing does not make the event pending again.
    let processed = f.inbox.get("evt_first").await?.unwrap();
    assert_eq!(processed.status, EventStatus::Processed);
    assert_eq!(
        f.deliver(Some(&signed(SECRET, &first)), &first).await.1["duplicate"],
        true
    );
    assert_eq!(f.inbox.get("evt_first").await?.unwrap(), processed);
    assert_eq!(f.inbox.next_unprocessed().await?, None);

    // Purge: finished rows older than `keep` go, recent ones and pending ones stay.
    let pending = event("evt_pending", "customer.subscription.deleted");
    assert_eq!(
        f.deliver(Some(&signed(SECRET, &pending)), &pending).await.0,
        StatusCode::OK
    );
    let long_ago = apiserver::db::now() - 40 * 86_400;
    sqlx::query("UPDATE billing_events SET processed_at = $1, received_at = $1 WHERE id <> $2")
        .bind(long_ago)
        .bind("evt_second")
        .execute(f.db.pool())
        .await?;
    assert_eq!(f.inbox.purge(Duration::from_secs(30 * 86_400)).await?, 2);
    assert!(f.inbox.get("evt_first").await?.is_none());
    assert!(f.inbox.get("evt_unknown").await?.is_none());
    assert!(f.inbox.get("evt_second").await?.is_some(), "processed recently");
    assert_eq!(f.inbox.get("evt_pending").await?.unwrap().status, EventStatus::Pending);
    assert_eq!(f.inbox.purge(Duration::from_secs(30 * 86_400)).await?, 0);
    Ok(())
}

#[tokio::test]
async fn inbox_on_sqlite() -> Result<()> {
    inbox_suite(Db::connect(None, &common::temp_sqlite()).await?).await
}

#[tokio::test]
async fn inbox_on_postgres() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let db = Db::connect(Some(&pg.url), std::path::Path::new("unused")).await?;
    assert_eq!(db.engine(), apiserver::db::Engine::Postgres);
    inbox_suite(db).await
}

#[tokio::test]
async fn two_v1_signatures_where_only_the_second_matches_are_accepted() -> Result<()> {
    let f = fixture(&[SECRET]).await?;
    let body = event("evt_two", "customer.subscription.created");
    let t = apiserver::db::now();
    let header = format!(
        "t={t},v1={},v1={},v0={}",
        sign("whsec_rolled_away", t, &body),
        sign(SECRET, t, &body),
        sign(SECRET, t, &body)
    );
    let (status, answer) = f.deliver(Some(&header), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(f.inbox.get("evt_two").await?.unwrap().status, EventStatus::Pending);
    // The match in the middle of three: neither the first nor the last value alone decides.
    let middle = event("evt_middle", "customer.subscription.created");
    let header = format!(
        "t={t},v1={},v1={},v1={}",
        sign("whsec_rolled_away", t, &middle),
        sign(SECRET, t, &middle),
        sign("whsec_next", t, &middle)
    );
    let (status, answer) = f.deliver(Some(&header), &middle).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(f.inbox.get("evt_middle").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn the_previous_secret_works_during_a_rotation() -> Result<()> {
    let f = fixture(&[SECRET, PREVIOUS]).await?;
    let old = event("evt_old_secret", "invoice.payment_failed");
    assert_eq!(f.deliver(Some(&signed(PREVIOUS, &old)), &old).await.0, StatusCode::OK);
    let new = event("evt_new_secret", "invoice.payment_failed");
    assert_eq!(f.deliver(Some(&signed(SECRET, &new)), &new).await.0, StatusCode::OK);
    let stranger = event("evt_stranger", "invoice.payment_failed");
    assert_eq!(
        f.deliver(Some(&signed("whsec_someone_else", &stranger)), &stranger)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(f.rows().await?, 2);

    // Once the previous secret is dropped from the configuration, it is refused.
    let after = fixture(&[SECRET]).await?;
    let (status, answer) = after.deliver(Some(&signed(PREVIOUS, &old)), &old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("no v1 signature matches"),
        "{answer}"
    );
    Ok(())
}

#[tokio::test]
async fn refused_deliveries_are_400_naming_the_problem_and_store_nothing() -> Result<()> {
    let f = fixture(&[SECRET]).await?;
    let body = event("evt_refused", "customer.subscription.updated");
    let now = apiserver::db::now();
    let stale = now - 301;
    let future = now + 600;
    let mut tampered = body.clone();
    let at = tampered.windows(6).position(|w| w == b"active").unwrap();
    tampered[at..at + 6].copy_from_slice(b"ACTIVE");
    let not_json = b"customer.subscription.updated evt_refused".to_vec();
    let no_object = br#"{"id":"evt_refused","type":"x","created":1}"#.to_vec();
    let cases: Vec<(&str, Option<String>, &[u8], &str)> = vec![
        (
            "stale timestamp",
            Some(format!("t={stale},v1={}", sign(SECRET, stale, &body))),
            &body,
            "timestamp outside the tolerance",
        ),
        (
            "future timestamp",
            Some(format!("t={future},v1={}", sign(SECRET, future, &body))),
            &body,
            "timestamp outside the tolerance",
        ),
        (
            "wrong secret",
            Some(signed("whsec_wrong", &body)),
            &body,
            "no v1 signature matches",
        ),
        (
            "tampered body",
            Some(signed(SECRET, &body)),
            &tampered,
            "no v1 signature matches",
        ),
        ("missing header", None, &body, "Stripe-Signature header missing"),
        (
            "malformed header",
            Some("garbage".into()),
            &body,
            "Stripe-Signature header is malformed: no timestamp",
        ),
        (
            "no v1",
            Some(format!("t={now},v0={}", sign(SECRET, now, &body))),
            &body,
            "Stripe-Signature header is malformed: no v1 signature",
        ),
        (
            "non-JSON body",
            Some(signed(SECRET, &not_json)),
            &not_json,
            "body is not a Stripe event: expected",
        ),
        (
            "not an event",
            Some(signed(SECRET, &no_object)),
            &no_object,
            "body is not a Stripe event: missing field `data`",
        ),
    ];
    for (name, header, payload, expect) in cases {
        let (status, answer) = f.deliver(header.as_deref(), payload).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(expect),
            "{name}: {error:?} should start with {expect:?}"
        );
        assert!(!error.contains(SECRET), "{name}: the secret is never shown");
    }
    assert_eq!(f.rows().await?, 0, "nothing was stored");
    Ok(())
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_store_it_once() -> Result<()> {
    let f = Arc::new(fixture(&[SECRET]).await?);
    let body = event("evt_race", "customer.subscription.updated");
    let header = signed(SECRET, &body);
    let answers = futures::future::join_all((0..8).map(|_| {
        let (f, body, header) = (f.clone(), body.clone(), header.clone());
        tokio::spawn(async move { f.deliver(Some(&header), &body).await })
    }))
    .await;
    let mut first = 0;
    for a in answers {
        let (status, answer) = a?;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if answer["duplicate"] == false {
            first += 1;
        }
    }
    assert_eq!(first, 1, "exactly one delivery stored the event");
    assert_eq!(f.rows().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_stored_event_wakes_the_worker() -> Result<()> {
    let f = fixture(&[SECRET]).await?;
    let inbox = f.inbox.clone();
    let waiter = tokio::spawn(async move { inbox.notified().await });
    let body = event("evt_wake", "customer.subscription.updated");
    assert_eq!(f.deliver(Some(&signed(SECRET, &body)), &body).await.0, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), waiter).await??;
    Ok(())
}

#[tokio::test]
async fn the_state_needs_a_secret_and_never_shows_it() -> Result<()> {
    let db = Db::connect(None, &common::temp_sqlite()).await?;
    let inbox = Inbox::new(db);
    let none = WebhookState::new(inbox.clone(), Vec::<SecretString>::new()).unwrap_err();
    assert!(none.to_string().contains("STRIPE_WEBHOOK_SECRET is not set"), "{none}");
    let empty = WebhookState::new(inbox.clone(), [SecretString::from(" ")]).unwrap_err();
    assert!(empty.to_string().contains("is empty"), "{empty}");
    let state = WebhookState::new(inbox, [SecretString::from(SECRET)])?.with_tolerance(Duration::from_secs(60));
    assert_eq!(state.tolerance, Duration::from_secs(60));
    assert!(!format!("{state:?}").contains(SECRET));
    Ok(())
}
