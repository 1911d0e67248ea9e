//! The Stripe API as the billing code uses it: a small typed wrapper over async-stripe, so the
//! rest of the server never sees async-stripe's types (or its key).
//!
//! - Every request has a 20 s per-attempt timeout and is sent once: a create that timed out may
//!   still have happened, so retrying is the caller's decision (the webhook worker and the hourly
//!   usage reporter retry on their own schedule).
//! - Meter events carry their `identifier` (Stripe drops a second event with the same identifier)
//!   and the same value as their `Idempotency-Key`, so a resend after a crash bills once.
//! - Errors name the call and carry Stripe's own message with the secret key cut out: Stripe
//!   masks keys in its messages, but a fake (stripe-mock) echoes the whole `Authorization` header.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use stripe::{ApiErrorsCode, Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_meter_event::CreateBillingMeterEvent;
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::ListInvoice;
use stripe_billing::subscription::RetrieveSubscription;
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;

/// Stripe's API origin.
pub const DEFAULT_BASE: &str = "https://api.stripe.com";

/// Metadata key naming the sandbox or organization a Stripe object belongs to (customers and
/// subscriptions), so the webhook handler can map an event back to its owner.
pub const SCOPE_METADATA_KEY: &str = "k8s_scheduler_scope";

/// Per-attempt timeout of every request.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A Stripe API client for one account (secret key). Cheap to clone: clones share the connection
/// pool.
#[derive(Clone)]
pub struct StripeApi {
    client: Client,
    /// Kept only to cut it out of error messages (see the module comment).
    secret: Arc<SecretString>,
    base: String,
}

impl fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A subscription's current state, as read from Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    /// `active`, `trialing`, `past_due`, `canceled`, `unpaid`, `incomplete`,
    /// `incomplete_expired` or `paused` (or a status newer than this code).
    pub status: String,
    /// The price of each subscription item, in Stripe's order.
    pub price_ids: Vec<String>,
    /// When the current billing period ends (Unix seconds). Since API version 2025-03-31 the
    /// period lives on each subscription item, not on the subscription: this is the latest end
    /// among the items (they agree unless prices of different intervals are mixed); `None` for a
    /// subscription without items.
    pub current_period_end: Option<i64>,
    /// When the current billing period started (Unix seconds): the earliest start among the items.
    pub current_period_start: Option<i64>,
    pub cancel_at_period_end: bool,
}

/// One invoice for the Billing page (served as is by `GET /api/billing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub id: String,
    pub number: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: Option<String>,
    /// In the currency's smallest unit (cents).
    pub amount_due: i64,
    pub amount_paid: i64,
    /// Lower-case ISO code (`usd`).
    pub currency: String,
    /// Unix seconds.
    pub created: i64,
    pub hosted_invoice_url: Option<String>,
}

impl StripeApi {
    /// A client for the account of `secret_key` at `base`: Stripe's API origin
    /// ([`DEFAULT_BASE`]) or, in tests, stripe-mock's URL.
    pub fn new(secret_key: &str, base: &str) -> Result<StripeApi> {
        if secret_key.trim().is_empty() {
            bail!("the Stripe secret key is empty");
        }
        let mut url = url::Url::parse(base).with_context(|| format!("the Stripe API base {base:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host().is_none() {
            bail!("the Stripe API base {base:?} is not an http(s) URL");
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!("the Stripe API base {base:?} must not have a query or fragment");
        }
        // async-stripe appends `v1/...` to the base as text: it must end with a slash.
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let base = url.to_string();
        // TLS: rustls with ring and the system's root certificates (features in Cargo.toml), like
        // the kube and SMTP clients. async-stripe builds its TLS config from the process's default
        // crypto provider, which must be chosen first (aws-lc is linked too), and it panics when
        // the system has no root certificate at all; the images carry Debian's ca-certificates.
        crate::install_crypto_provider();
        let client = ClientBuilder::new(secret_key)
            .url(base.clone())
            .timeout(TIMEOUT)
            .request_strategy(RequestStrategy::Once)
            .app_info("k8s-scheduler", Some(env!("CARGO_PKG_VERSION").to_string()), None)
            .build()
            // Its configuration errors name the field ("secret"), never its value.
            .map_err(|e| anyhow!("cannot configure the Stripe client: {e}"))?;
        Ok(StripeApi {
            client,
            secret: Arc::new(SecretString::from(secret_key.to_string())),
            base,
        })
    }

    /// Creates a customer for the sandbox or organization `scope` (in its metadata under
    /// [`SCOPE_METADATA_KEY`]); returns its id (`cus_...`).
    pub async fn create_customer(&self, email: Option<&str>, name: &str, scope: &str) -> Result<String> {
        let mut request = CreateCustomer::new().name(name).metadata(scope_metadata(scope));
        if let Some(email) = email {
            request = request.email(email);
        }
        let customer = request
            .send(&self.client)
            .await
            .map_err(|e| self.error("the customer", e))?;
        Ok(customer.id.to_string())
    }

    /// Creates a Checkout Session that subscribes `customer` to `price`; returns the URL to send
    /// the person to. `scope` goes into `client_reference_id` (on the `checkout.session.completed`
    /// event) and into the new subscription's metadata (on every subscription event).
    pub async fn checkout_session(
        &self,
        customer: &str,
        price: &str,
        scope: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<String> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(price.to_string());
        item.quantity = Some(1);
        let mut subscription = CreateCheckoutSessionSubscriptionData::new();
        subscription.metadata = Some(scope_metadata(scope));
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .customer(customer)
            .line_items(vec![item])
            .client_reference_id(scope)
            .subscription_data(subscription)
            .success_url(success_url)
            .cancel_url(cancel_url)
            .send(&self.client)
            .await
            .map_err(|e| self.error("the checkout session", e))?;
        // Only hosted sessions (the default ui_mode, used here) have a URL.
        session
            .url
            .ok_or_else(|| anyhow!("Stripe returned checkout session {} without a URL", session.id))
    }

    /// Creates a Customer Portal session for `customer`; returns its URL.
    pub async fn portal_session(&self, customer: &str, return_url: &str) -> Result<String> {
        let session = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url)
            .send(&self.client)
            .await
            .map_err(|e| self.error("the customer portal session", e))?;
        Ok(session.url)
    }

    /// The current state of subscription `id`; `None` when Stripe does not know it (deleted, or
    /// from another account or mode).
    pub async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        // Read into `SubscriptionWire`, not async-stripe's `Subscription`: see there.
        let request = RetrieveSubscription::new(id).build().customize::<SubscriptionWire>();
        let sub = match request.send(&self.client).await {
            Ok(sub) => sub,
            Err(StripeError::Stripe(e, 404)) if e.code == Some(ApiErrorsCode::ResourceMissing) => return Ok(None),
            Err(e) => return Err(self.error(&format!("the subscription {id}"), e)),
        };
        Ok(Some(Subscription {
            id: sub.id,
            customer: sub.customer,
            status: sub.status,
            price_ids: sub.items.data.iter().map(|item| item.price.id.clone()).collect(),
            current_period_end: sub.items.data.iter().filter_map(|item| item.current_period_end).max(),
            current_period_start: sub.items.data.iter().filter_map(|item| item.current_period_start).min(),
            cancel_at_period_end: sub.cancel_at_period_end,
        }))
    }

    /// The newest `limit` (1 to 100) invoices of `customer`, newest first.
    pub async fn invoices(&self, customer: &str, limit: u8) -> Result<Vec<Invoice>> {
        if !(1..=100).contains(&limit) {
            bail!("the invoice limit must be 1 to 100 (Stripe's page size), not {limit}");
        }
        let list = ListInvoice::new()
            .customer(customer)
            .limit(i64::from(limit))
            .send(&self.client)
            .await
            .map_err(|e| self.error(&format!("the invoices of {customer}"), e))?;
        Ok(list
            .data
            .into_iter()
            // Only previews of upcoming invoices lack an id; a list never returns them.
            .filter_map(|inv| {
                Some(Invoice {
                    id: inv.id?.to_string(),
                    number: inv.number,
                    status: inv.status.map(|s| s.as_str().to_string()),
                    amount_due: inv.amount_due,
                    amount_paid: inv.amount_paid,
                    currency: inv.currency.to_string(),
                    created: inv.created,
                    hosted_invoice_url: inv.hosted_invoice_url,
                })
            })
            .collect())
    }

    /// Reports `value` of meter `event_name` for `customer` at `timestamp` (Unix seconds; Stripe
    /// accepts the past 35 days). `identifier` makes it idempotent: Stripe counts one event per
    /// identifier, and it is also the request's `Idempotency-Key`.
    pub async fn meter_event(
        &self,
        event_name: &str,
        customer: &str,
        value: u64,
        identifier: &str,
        timestamp: i64,
    ) -> Result<()> {
        let key = IdempotencyKey::new(identifier)
            .map_err(|e| anyhow!("meter event identifier {identifier:?} cannot be an idempotency key: {e}"))?;
        // The payload keys a meter reads by default (its customer mapping and value settings).
        let payload = HashMap::from([
            ("stripe_customer_id".to_string(), customer.to_string()),
            ("value".to_string(), value.to_string()),
        ]);
        CreateBillingMeterEvent::new(event_name, payload)
            .identifier(identifier)
            .timestamp(timestamp)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|e| self.error(&format!("the meter event {identifier}"), e))?;
        Ok(())
    }

    /// An error for a failed call about `what`, with Stripe's message and without the key.
    fn error(&self, what: &str, err: StripeError) -> anyhow::Error {
        let text = match err {
            StripeError::Stripe(e, status) => {
                let mut kind = e.type_.as_str().to_string();
                if let Some(code) = &e.code {
                    kind = format!("{kind}, {}", code.as_str());
                }
                let message = e.message.as_deref().unwrap_or("no message");
                format!("Stripe refused {what} (HTTP {status}, {kind}): {message}")
            }
            StripeError::Timeout => format!("Stripe did not answer about {what} within {}s", TIMEOUT.as_secs()),
            StripeError::ClientError(e) => format!("cannot reach Stripe at {} about {what}: {e}", self.base),
            StripeError::JSONDeserialize(e) => format!("Stripe's answer about {what} cannot be read: {e}"),
            StripeError::ConfigError(e) => format!("the Stripe client cannot send {what}: {e}"),
        };
        anyhow!(text.replace(self.secret.expose_secret(), "[redacted]"))
    }
}

/// The fields of a subscription this server reads. async-stripe 1.0.0-rc.10's `Subscription`
/// (API version 2026-09-30) requires every field of the object, among them the legacy `plan` of
/// each item, which stripe-mock v0.203.0 (API version 2026-08-26) no longer sends: decoding the
/// whole object fails there ("error deserializing request data"). Reading only these fields works
/// with both, and a field Stripe adds or drops later cannot break the subscription check the
/// webhook worker depends on. Unknown fields are ignored; a missing `Option` is `None`.
#[derive(miniserde::Deserialize)]
struct SubscriptionWire {
    id: String,
    /// An id: the request does not expand it.
    customer: String,
    status: String,
    items: ItemListWire,
    cancel_at_period_end: bool,
}

#[derive(miniserde::Deserialize)]
struct ItemListWire {
    data: Vec<ItemWire>,
}

#[derive(miniserde::Deserialize)]
struct ItemWire {
    price: PriceWire,
    current_period_end: Option<i64>,
    current_period_start: Option<i64>,
}

#[derive(miniserde::Deserialize)]
struct PriceWire {
    id: String,
}

fn scope_metadata(scope: &str) -> HashMap<String, String> {
    HashMap::from([(SCOPE_METADATA_KEY.to_string(), scope.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_must_be_an_http_url() {
        for bad in [
            "",
            "api.stripe.com",
            "ftp://api.stripe.com",
            "https://api.stripe.com/?x=1",
            "mailto:a@b",
        ] {
            let err = StripeApi::new("sk_test_123", bad).unwrap_err().to_string();
            assert!(err.contains("Stripe API base"), "{bad:?}: {err}");
        }
        assert_eq!(
            StripeApi::new("sk_test_123", DEFAULT_BASE).unwrap().base,
            "https://api.stripe.com/"
        );
        assert_eq!(
            StripeApi::new("sk_test_123", "http://127.0.0.1:1/x").unwrap().base,
            "http://127.0.0.1:1/x/"
        );
    }

    #[test]
    fn empty_key_is_refused_and_debug_hides_the_key() {
        assert!(
            StripeApi::new(" ", DEFAULT_BASE)
                .unwrap_err()
                .to_string()
                .contains("secret key is empty")
        );
        let api = StripeApi::new("sk_test_hidden", DEFAULT_BASE).unwrap();
        assert!(!format!("{api:?}").contains("sk_test_hidden"));
    }
}
