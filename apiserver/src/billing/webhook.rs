//! `POST /api/billing/webhook`: Stripe's event deliveries.
//!
//! # What a delivery goes through
//!
//! 1. [`verify`]: the `Stripe-Signature` header (`t=<unix seconds>,v1=<hex>,v1=<hex>,v0=...`) must
//!    carry a timestamp and at least one `v1` signature; the HMAC-SHA256 of `"{t}.{raw body}"`
//!    under any configured secret must equal any `v1` value (compared in constant time), and `t`
//!    must be within the tolerance of our clock (300 s, Stripe's default). Every `v1` counts:
//!    while a signing secret is being rolled Stripe signs with the old and the new one, and some
//!    parsers keep only the last value. Several secrets count too (`STRIPE_WEBHOOK_SECRET` and the
//!    previous one during our own rotation). The raw body is what is signed, so the handler takes
//!    it as bytes and parses JSON only after the signature matched.
//! 2. [`Inbox::record`]: the event is stored under Stripe's event id (the primary key), so a
//!    replayed or retried delivery of the same event stores nothing and changes nothing.
//! 3. The handler answers 200 at once; Stripe retries anything else for days, and times out
//!    slow endpoints. The work happens afterwards: a worker takes [`Inbox::next_unprocessed`],
//!    applies it and calls [`Inbox::mark_processed`]; a crash in between leaves the event
//!    pending, so it is applied after the restart (at least once: applying must be idempotent,
//!    which reading the subscription's current state before writing a plan makes it).
//!
//! Event types the worker does not handle ([`HANDLED_TYPES`]) are stored as `ignored` and
//! answered 200 like the others: Stripe sends whatever the endpoint subscribes to, and a 4xx
//! would only make it retry.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::Row;
use tokio::sync::Notify;

use crate::db::{Db, now};
use crate::error::{ApiError, ApiResult};

/// The route.
pub const PATH: &str = "/api/billing/webhook";

/// The header Stripe signs deliveries in.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// How far the signed timestamp may be from our clock: Stripe's libraries' default. It bounds how
/// long a captured delivery can be replayed by someone else (the event id stops replays of events
/// still in the inbox; this stops them after the purge too).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Event types the worker applies; others are recorded as ignored.
pub const HANDLED_TYPES: &[&str] = &[
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_failed",
    "invoice.paid",
];

/// Longest event id or type accepted, in bytes (Stripe's are about 30; this only bounds what a
/// validly signed but odd body can put into the primary key).
const MAX_ID_BYTES: usize = 255;

/// Why a delivery is refused (answered 400). The messages name the problem and never contain a
/// secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `Stripe-Signature` header.
    #[error("Stripe-Signature header missing")]
    MissingHeader,
    /// The header is there but not `t=...,v1=...`.
    #[error("Stripe-Signature header is malformed: {0}")]
    MalformedHeader(String),
    /// The signed timestamp is too far from our clock (a replay, or a clock that is off).
    #[error(
        "timestamp outside the tolerance: signed at {signed_at} (Unix seconds), {age} s from the server's clock, \
         more than the {tolerance} s allowed"
    )]
    OutsideTolerance {
        /// The header's `t`.
        signed_at: i64,
        /// Our clock minus `t`, in seconds (negative: signed in the future).
        age: i64,
        /// The tolerance in seconds.
        tolerance: u64,
    },
    /// No `v1` value is the signature of this body under any configured secret.
    #[error(
        "no v1 signature matches: the body was changed, or it was signed with another secret than \
         STRIPE_WEBHOOK_SECRET (the endpoint's signing secret, whsec_...)"
    )]
    NoMatchingSignature,
    /// Signed correctly, but not an event.
    #[error("body is not a Stripe event: {0}")]
    NotAnEvent(String),
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// `t`: Unix seconds when Stripe signed the delivery.
    pub timestamp: i64,
    /// Every `v1` value, decoded from hex, in header order.
    pub v1: Vec<Vec<u8>>,
}

impl SignatureHeader {
    /// Parses `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`. Other schemes (`v0`, future ones) and
    /// items without `=` are ignored, as Stripe's own libraries do; a `v1` value that is not hex
    /// is ignored too (it cannot match), but at least one usable `v1` is required.
    pub fn parse(header: &str) -> Result<SignatureHeader, WebhookError> {
        let mut timestamp = None;
        let mut v1 = vec![];
        let mut v1_seen = 0usize;
        for item in header.split(',') {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            match key.trim() {
                "t" => {
                    if timestamp.is_some() {
                        // Two timestamps would leave it open which one was signed.
                        return Err(WebhookError::MalformedHeader("more than one timestamp (t=)".into()));
                    }
                    let t = value.trim().parse::<i64>().map_err(|_| {
                        WebhookError::MalformedHeader("the timestamp (t=) is not a whole number of seconds".into())
                    })?;
                    timestamp = Some(t);
                }
                "v1" => {
                    v1_seen += 1;
                    if let Ok(sig) = hex::decode(value.trim()) {
                        v1.push(sig);
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or_else(|| {
            WebhookError::MalformedHeader("no timestamp (expected t=<unix seconds>,v1=<hex signature>)".into())
        })?;
        if v1.is_empty() {
            return Err(WebhookError::MalformedHeader(if v1_seen == 0 {
                "no v1 signature (expected t=<unix seconds>,v1=<hex signature>)".into()
            } else {
                "no v1 signature is hex".into()
            }));
        }
        Ok(SignatureHeader { timestamp, v1 })
    }
}

/// A verified Stripe event, as much of it as the server reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_...`: unique per event, the same in every delivery of it.
    pub id: String,
    /// `type`, e.g. `customer.subscription.updated`.
    pub event_type: String,
    /// `created`: Unix seconds, Stripe's clock.
    pub created: i64,
    /// `data.object`: the object the event is about, as it was when the event happened.
    pub object: serde_json::Value,
    /// The body exactly as signed (what the inbox stores).
    pub payload: String,
}

#[derive(Deserialize)]
struct WireEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    data: WireData,
}

#[derive(Deserialize)]
struct WireData {
    object: serde_json::Value,
}

impl Event {
    /// Parses an event body (no signature check: [`verify`] does that first).
    pub fn parse(payload: &[u8]) -> Result<Event, WebhookError> {
        let text = std::str::from_utf8(payload).map_err(|_| WebhookError::NotAnEvent("not UTF-8 text".into()))?;
        let wire: WireEvent = serde_json::from_str(text).map_err(|e| WebhookError::NotAnEvent(e.to_string()))?;
        for (name, value) in [("id", &wire.id), ("type", &wire.event_type)] {
            if value.is_empty() || value.len() > MAX_ID_BYTES {
                return Err(WebhookError::NotAnEvent(format!(
                    "`{name}` must have 1 to {MAX_ID_BYTES} bytes, not {}",
                    value.len()
                )));
            }
        }
        if !wire.data.object.is_object() {
            return Err(WebhookError::NotAnEvent("`data.object` is not an object".into()));
        }
        Ok(Event {
            id: wire.id,
            event_type: wire.event_type,
            created: wire.created,
            object: wire.data.object,
            payload: text.to_string(),
        })
    }

    /// Whether the worker applies events of this type ([`HANDLED_TYPES`]).
    pub fn is_handled(&self) -> bool {
        HANDLED_TYPES.contains(&self.event_type.as_str())
    }
}

/// Verifies a delivery and parses its event: the header's `t` and `v1` values, any `v1` matching
/// the HMAC-SHA256 of `"{t}.{payload}"` under any of `secrets` (constant-time), `t` within
/// `tolerance` of `now` (Unix seconds) in either direction, then the JSON.
pub fn verify(
    payload: &[u8],
    header: &str,
    secrets: &[SecretString],
    now: i64,
    tolerance: Duration,
) -> Result<Event, WebhookError> {
    let header = SignatureHeader::parse(header)?;
    let signed_prefix = format!("{}.", header.timestamp);
    let matched = secrets.iter().any(|secret| {
        // HMAC accepts keys of any length; Stripe's key is the whole `whsec_...` string.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(signed_prefix.as_bytes());
        mac.update(payload);
        // verify_slice compares in constant time (and refuses another length).
        header.v1.iter().any(|sig| mac.clone().verify_slice(sig).is_ok())
    });
    if !matched {
        return Err(WebhookError::NoMatchingSignature);
    }
    // Checked after the signature, as Stripe's libraries do: only a genuinely signed but old (or
    // future) delivery is told its timestamp is the problem.
    let age = now.saturating_sub(header.timestamp);
    let tolerance_s = tolerance.as_secs();
    if age.unsigned_abs() > tolerance_s {
        return Err(WebhookError::OutsideTolerance {
            signed_at: header.timestamp,
            age,
            tolerance: tolerance_s,
        });
    }
    Event::parse(payload)
}

/// Where a stored event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventStatus {
    /// Waiting for the worker.
    Pending,
    /// Applied by the worker.
    Processed,
    /// A type the worker does not handle; stored only so a replay is recognised.
    Ignored,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Processed => "processed",
            EventStatus::Ignored => "ignored",
        }
    }

    fn parse(s: &str) -> EventStatus {
        match s {
            "processed" => EventStatus::Processed,
            "ignored" => EventStatus::Ignored,
            _ => EventStatus::Pending,
        }
    }
}

/// A row of the inbox.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The event.
    pub event: Event,
    /// Where it is.
    pub status: EventStatus,
    /// Unix seconds of the first delivery.
    pub received_at: i64,
    /// Unix seconds when it was processed or (at once) ignored.
    pub processed_at: Option<i64>,
}

/// The verified events (`billing_events`, migration 0007). Clones share the signal that wakes
/// this process's worker when an event was stored.
#[derive(Clone, Debug)]
pub struct Inbox {
    db: Db,
    wake: Arc<Notify>,
}

impl Inbox {
    /// The inbox of `db` (its migrations create the table).
    pub fn new(db: Db) -> Inbox {
        Inbox {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Stores `event` unless its id is stored already; returns false then (a replay, or Stripe
    /// retrying a delivery whose answer it did not see), and nothing changes. Unhandled types are
    /// stored as [`EventStatus::Ignored`]. A new pending event wakes the worker.
    pub async fn record(&self, event: &Event) -> Result<bool> {
        let now = now();
        let (status, processed_at) = if event.is_handled() {
            (EventStatus::Pending, None)
        } else {
            (EventStatus::Ignored, Some(now))
        };
        // ON CONFLICT DO NOTHING: two concurrent deliveries of one event store it once, without
        // an error for the second (both are answered 200).
        let res = sqlx::query(
            "INSERT INTO billing_events (id, event_type, created, payload, status, received_at, processed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(event.created)
        .bind(&event.payload)
        .bind(status.as_str())
        .bind(now)
        .bind(processed_at)
        .execute(self.db.pool())
        .await
        .with_context(|| format!("storing Stripe event {}", event.id))?;
        let stored = res.rows_affected() == 1;
        if stored && status == EventStatus::Pending {
            // A permit is kept when no worker waits right now: its next wait returns at once.
            self.wake.notify_one();
        }
        Ok(stored)
    }

    /// The stored event `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<StoredEvent>> {
        let row = sqlx::query("SELECT payload, status, received_at, processed_at FROM billing_events WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .context("reading the billing event inbox")?;
        row.map(|r| {
            Ok(StoredEvent {
                event: stored_event(&r.get::<String, _>("payload"), id)?,
                status: EventStatus::parse(&r.get::<String, _>("status")),
                received_at: r.get("received_at"),
                processed_at: r.get("processed_at"),
            })
        })
        .transpose()
    }

    /// The pending event received first whose retry time has come, if any. Not a claim: two
    /// workers may get the same event, which applying idempotently makes harmless.
    pub async fn next_unprocessed(&self) -> Result<Option<Event>> {
        let row = sqlx::query(
            "SELECT id, payload FROM billing_events WHERE status = $1 AND next_attempt_at <= $2 \
             ORDER BY received_at, created, id LIMIT 1",
        )
        .bind(EventStatus::Pending.as_str())
        .bind(now())
        .fetch_optional(self.db.pool())
        .await
        .context("looking for pending billing events")?;
        row.map(|r| stored_event(&r.get::<String, _>("payload"), &r.get::<String, _>("id")))
            .transpose()
    }

    /// Marks pending event `id` processed; false if it is not pending (unknown, or done already).
    pub async fn mark_processed(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("UPDATE billing_events SET status = $1, processed_at = $2 WHERE id = $3 AND status = $4")
            .bind(EventStatus::Processed.as_str())
            .bind(now())
            .bind(id)
            .bind(EventStatus::Pending.as_str())
            .execute(self.db.pool())
            .await
            .with_context(|| format!("marking Stripe event {id} processed"))?;
        Ok(res.rows_affected() == 1)
    }

    /// Records that applying pending event `id` failed: it is tried again after a delay that
    /// doubles with each attempt (30 s, 1 min, ... at most an hour), and the events after it go
    /// on meanwhile. Returns the attempts so far.
    pub async fn mark_failed(&self, id: &str, error: &str) -> Result<i64> {
        let attempts: i64 = sqlx::query("SELECT attempts FROM billing_events WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .with_context(|| format!("reading Stripe event {id}'s attempts"))?
            .map_or(0, |r| r.get("attempts"))
            + 1;
        let delay = 30i64.saturating_mul(1 << (attempts - 1).clamp(0, 7)).min(3600);
        let error: String = error.chars().take(1000).collect();
        sqlx::query("UPDATE billing_events SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE id = $4")
            .bind(attempts)
            .bind(now() + delay)
            .bind(error)
            .bind(id)
            .execute(self.db.pool())
            .await
            .with_context(|| format!("recording the failure of Stripe event {id}"))?;
        Ok(attempts)
    }

    /// Deletes processed and ignored events finished more than `keep` ago; returns how many.
    /// Pending events are never deleted. `keep` must exceed how long Stripe retries a delivery
    /// (up to 3 days in live mode): a retry of a purged event would be stored and applied again
    /// (harmless when applying is idempotent, but it is the replay protection). 30 days is a
    /// good value.
    pub async fn purge(&self, keep: Duration) -> Result<u64> {
        let keep_s = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX / 4);
        let res = sqlx::query("DELETE FROM billing_events WHERE status <> $1 AND processed_at < $2")
            .bind(EventStatus::Pending.as_str())
            .bind(now() - keep_s)
            .execute(self.db.pool())
            .await
            .context("deleting old billing events")?;
        Ok(res.rows_affected())
    }

    /// Returns when an event was stored since the last call (at once if one was while nobody
    /// waited). A worker waits on this or a timer, whichever comes first (other replicas' events
    /// do not wake it).
    pub async fn notified(&self) {
        self.wake.notified().await;
    }
}

/// An event from its stored payload (verified when it was stored).
fn stored_event(payload: &str, id: &str) -> Result<Event> {
    Event::parse(payload.as_bytes()).with_context(|| format!("stored Stripe event {id} no longer parses"))
}

/// What the webhook handler needs: the inbox, the signing secrets and the tolerance.
#[derive(Debug)]
pub struct WebhookState {
    /// Where verified events go.
    pub inbox: Inbox,
    secrets: Vec<SecretString>,
    /// How far a delivery's timestamp may be from our clock.
    pub tolerance: Duration,
}

impl WebhookState {
    /// `secrets`: the current signing secret first (STRIPE_WEBHOOK_SECRET), then any previous one
    /// still accepted during a rotation. At least one, none empty. Tolerance: [`DEFAULT_TOLERANCE`].
    pub fn new(inbox: Inbox, secrets: impl IntoIterator<Item = SecretString>) -> Result<WebhookState> {
        let secrets: Vec<SecretString> = secrets.into_iter().collect();
        if secrets.is_empty() {
            anyhow::bail!("STRIPE_WEBHOOK_SECRET is not set: the billing webhook cannot verify Stripe's events");
        }
        if secrets.iter().any(|s| s.expose_secret().trim().is_empty()) {
            anyhow::bail!("a Stripe webhook signing secret (STRIPE_WEBHOOK_SECRET or the previous one) is empty");
        }
        Ok(WebhookState {
            inbox,
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// The same with another tolerance.
    pub fn with_tolerance(mut self, tolerance: Duration) -> WebhookState {
        self.tolerance = tolerance;
        self
    }
}

/// The webhook's answer (Stripe only looks at the status).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookAck {
    /// Always true.
    pub received: bool,
    /// The event was stored before: this delivery changed nothing.
    pub duplicate: bool,
}

/// Receives a Stripe event: 400 naming the problem when the signature does not verify or the
/// body is no event; otherwise it is stored (once per event id) and answered 200 at once.
#[utoipa::path(post, path = "/api/billing/webhook", tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]")),
    request_body(content = String, content_type = "application/json", description = "a Stripe event, as signed"),
    responses(
        (status = 200, body = WebhookAck, description = "stored, or stored before (duplicate)"),
        (status = 400, body = crate::error::ErrorBody, description = "signature, timestamp or body refused"),
        (status = 413, body = crate::error::ErrorBody, description = "body too large"),
        (status = 500, body = crate::error::ErrorBody, description = "the event could not be stored; Stripe retries"),
    ))]
pub async fn handle(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAck>> {
    let event = signature_header(&headers)
        .and_then(|h| verify(&body, &h, &state.secrets, now(), state.tolerance))
        .map_err(|e| {
            tracing::warn!(error = %e, "billing webhook: delivery refused");
            ApiError::BadRequest(e.to_string())
        })?;
    let stored = state.inbox.record(&event).await?;
    tracing::info!(event = %event.id, event_type = %event.event_type, duplicate = !stored, "billing webhook: event received");
    Ok(Json(WebhookAck {
        received: true,
        duplicate: !stored,
    }))
}

/// The `Stripe-Signature` value; several header lines are one comma-separated list (RFC 9110).
fn signature_header(headers: &HeaderMap) -> Result<String, WebhookError> {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter().peekable();
    if values.peek().is_none() {
        return Err(WebhookError::MissingHeader);
    }
    let parts = values
        .map(|v| v.to_str())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| WebhookError::MalformedHeader("not ASCII text".into()))?;
    Ok(parts.join(","))
}

/// The webhook route over `state`, to merge into the application's router (any state type: the
/// route carries its own).
pub fn router<S: Clone + Send + Sync + 'static>(state: Arc<WebhookState>) -> Router<S> {
    Router::new().route(PATH, post(handle)).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_current";
    const OTHER: &str = "whsec_test_other";
    const NOW: i64 = 1_700_000_000;

    /// `v1` as Stripe computes it.
    fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(payload);
        hex::encode(mac.finalize().into_bytes())
    }

    fn body(id: &str, event_type: &str) -> Vec<u8> {
        serde_json::json!({"id": id, "object": "event", "type": event_type, "created": NOW - 5,
            "data": {"object": {"id": "sub_1", "object": "subscription", "status": "active"}}})
        .to_string()
        .into_bytes()
    }

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter().map(|s| SecretString::from(*s)).collect()
    }

    #[test]
    fn parses_timestamp_and_every_v1_ignoring_other_schemes() {
        let h = SignatureHeader::parse(" t=12 , v1=00ff ,v0=abcd,v9=1,junk,,v1=0a").unwrap();
        assert_eq!(h.timestamp, 12);
        assert_eq!(h.v1, vec![vec![0x00, 0xff], vec![0x0a]]);
    }

    #[test]
    fn keeps_hex_v1_values_and_skips_others() {
        let h = SignatureHeader::parse("t=1,v1=zz,v1=ab").unwrap();
        assert_eq!(h.v1, vec![vec![0xab]]);
    }

    #[test]
    fn refuses_headers_without_what_is_needed() {
        let msg = |h: &str| SignatureHeader::parse(h).unwrap_err().to_string();
        assert!(msg("v1=ab").contains("no timestamp"), "{}", msg("v1=ab"));
        assert!(msg("garbage").contains("no timestamp"));
        assert!(msg("t=1,v0=ab").contains("no v1 signature ("), "{}", msg("t=1,v0=ab"));
        assert!(msg("t=1,v1=xyz").contains("no v1 signature is hex"));
        assert!(msg("t=abc,v1=ab").contains("not a whole number"));
        assert!(msg("t=1,t=2,v1=ab").contains("more than one timestamp"));
        assert!(msg("t=1").starts_with("Stripe-Signature header is malformed: no v1 signature"));
    }

    #[test]
    fn accepts_a_valid_signature_and_parses_the_event() {
        let payload = body("evt_1", "customer.subscription.updated");
        let header = format!("t={NOW},v1={}", sign(SECRET, NOW, &payload));
        let e = verify(&payload, &header, &secrets(&[SECRET]), NOW, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.event_type, "customer.subscription.updated");
        assert_eq!(e.created, NOW - 5);
        assert_eq!(e.object["id"], "sub_1");
        assert_eq!(e.payload.as_bytes(), payload.as_slice());
        assert!(e.is_handled());
    }

    #[test]
    fn any_v1_under_any_secret_matches() {
        let payload = body("evt_1", "invoice.payment_failed");
        // Only the second v1 matches, and only under the second (previous) secret.
        let header = format!(
            "t={NOW},v1={},v1={}",
            sign("whsec_unknown", NOW, &payload),
            sign(OTHER, NOW, &payload)
        );
        assert!(verify(&payload, &header, &secrets(&[SECRET, OTHER]), NOW, DEFAULT_TOLERANCE).is_ok());
        assert_eq!(
            verify(&payload, &header, &secrets(&[SECRET]), NOW, DEFAULT_TOLERANCE),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn refuses_a_changed_body_or_timestamp() {
        let payload = body("evt_1", "invoice.payment_failed");
        let sig = sign(SECRET, NOW, &payload);
        let tampered = body("evt_2", "invoice.payment_failed");
        let s = secrets(&[SECRET]);
        assert_eq!(
            verify(&tampered, &format!("t={NOW},v1={sig}"), &s, NOW, DEFAULT_TOLERANCE),
            Err(WebhookError::NoMatchingSignature)
        );
        // The timestamp is signed too: moving it breaks the signature.
        assert_eq!(
            verify(&payload, &format!("t={},v1={sig}", NOW + 1), &s, NOW, DEFAULT_TOLERANCE),
            Err(WebhookError::NoMatchingSignature)
        );
        // A truncated signature is not a prefix match.
        assert_eq!(
            verify(
                &payload,
                &format!("t={NOW},v1={}", &sig[..32]),
                &s,
                NOW,
                DEFAULT_TOLERANCE
            ),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn tolerance_holds_both_ways_and_at_the_edge() {
        let payload = body("evt_1", "invoice.payment_failed");
        let s = secrets(&[SECRET]);
        let at = |t: i64| {
            verify(
                &payload,
                &format!("t={t},v1={}", sign(SECRET, t, &payload)),
                &s,
                NOW,
                DEFAULT_TOLERANCE,
            )
        };
        assert!(at(NOW - 300).is_ok());
        assert!(at(NOW + 300).is_ok());
        let err = at(NOW - 301).unwrap_err();
        assert_eq!(
            err,
            WebhookError::OutsideTolerance {
                signed_at: NOW - 301,
                age: 301,
                tolerance: 300
            }
        );
        assert!(err.to_string().starts_with("timestamp outside the tolerance"));
        assert!(matches!(
            at(NOW + 301),
            Err(WebhookError::OutsideTolerance { age: -301, .. })
        ));
        // Far-off values do not overflow.
        assert!(matches!(at(i64::MIN), Err(WebhookError::OutsideTolerance { .. })));
    }

    #[test]
    fn refuses_signed_bodies_that_are_not_events() {
        let s = secrets(&[SECRET]);
        let check = |payload: &[u8], expect: &str| {
            let header = format!("t={NOW},v1={}", sign(SECRET, NOW, payload));
            let err = verify(payload, &header, &s, NOW, DEFAULT_TOLERANCE).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("body is not a Stripe event: "), "{msg}");
            assert!(msg.contains(expect), "{msg} should contain {expect}");
        };
        check(b"not json", "expected");
        check(b"\xff\xfe", "UTF-8");
        check(
            br#"{"id":"evt_1","created":1,"data":{"object":{}}}"#,
            "missing field `type`",
        );
        check(
            br#"{"id":"","type":"x","created":1,"data":{"object":{}}}"#,
            "`id` must have 1 to 255 bytes",
        );
        check(
            br#"{"id":"evt_1","type":"x","created":1,"data":{"object":3}}"#,
            "`data.object` is not an object",
        );
    }

    #[test]
    fn messages_never_show_the_secret_or_signature() {
        let payload = body("evt_1", "invoice.payment_failed");
        let sig = sign(SECRET, NOW, &payload);
        let s = secrets(&[SECRET]);
        for header in [format!("t={NOW},v1={sig}"), format!("t=x,v1={sig}")] {
            let err = verify(b"{}", &header, &s, NOW, DEFAULT_TOLERANCE)
                .unwrap_err()
                .to_string();
            assert!(!err.contains(SECRET) && !err.contains(&sig), "{err}");
        }
    }
}
