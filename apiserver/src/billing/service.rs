//! What billing does with Stripe's state: apply a subscription's plan to the cluster, start
//! Checkout and the Customer Portal, and the workers (webhook events, the grace period's end).
//!
//! A plan reaches the cluster as the owning UserSandboxes' `spec.plan`: an organization's plan is
//! written to every team sandbox of it (as the teams code does for members), a person's to their
//! own sandbox. The controller turns the plan into quota and limits and suspends the apps over a
//! lowered limit, newest first (never deleting them); they resume when the plan allows them again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crds::Plan;
use secrecy::ExposeSecret;

use super::account::{self, Account, Scope, SubscriptionState};
use super::stripe::{StripeApi, Subscription};
use super::webhook::{Event, Inbox, WebhookState};
use crate::AppState;
use crate::config::Config;
use crate::db::now;
use crate::teams::store as teams;

/// How often accounts in a grace period are checked (and synchronised with Stripe).
pub const GRACE_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// How often every live subscription is read again from Stripe: repairs a plan whose webhook
/// deliveries Stripe gave up on (it retries for 3 days), or a sandbox edited by hand.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// How long a worker waits for a wake-up before it looks for due retries anyway.
const WORKER_POLL: Duration = Duration::from_secs(15);
/// How long processed events are kept: longer than Stripe retries a delivery (3 days).
const KEEP_EVENTS: Duration = Duration::from_secs(30 * 86_400);

/// Billing with Stripe (BILLING_ENABLED).
#[derive(Clone)]
pub struct Billing {
    /// Stripe's API.
    pub stripe: StripeApi,
    /// The webhook's stored events.
    pub inbox: Inbox,
    /// The webhook's secrets and inbox.
    pub webhook: Arc<WebhookState>,
    /// Grace period after a failed payment, seconds.
    pub grace_seconds: i64,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("grace_seconds", &self.grace_seconds)
            .finish_non_exhaustive()
    }
}

impl Billing {
    /// From the configuration (checked at start-up: BILLING_ENABLED implies the Stripe variables);
    /// None when billing is off.
    pub fn from_config(config: &Config, db: &crate::db::Db) -> Result<Option<Billing>> {
        if !config.billing_enabled {
            return Ok(None);
        }
        let key = config
            .stripe_api_key
            .as_ref()
            .context("STRIPE_API_KEY is required when BILLING_ENABLED=true")?;
        let stripe = StripeApi::new(
            key.expose_secret(),
            config.stripe_api_base.as_str().trim_end_matches('/'),
        )?;
        let inbox = Inbox::new(db.clone());
        let secrets = config
            .stripe_webhook_secret
            .iter()
            .chain(config.stripe_webhook_previous_secret.iter())
            .filter(|s| !s.expose_secret().trim().is_empty())
            .cloned();
        let webhook = Arc::new(WebhookState::new(inbox.clone(), secrets)?);
        if config.stripe_price(Plan::Business).is_none() && config.stripe_price(Plan::Enterprise).is_none() {
            tracing::warn!(
                "BILLING_ENABLED=true without STRIPE_PRICE_BUSINESS or STRIPE_PRICE_ENTERPRISE: no plan can be bought"
            );
        }
        Ok(Some(Billing {
            stripe,
            inbox,
            webhook,
            grace_seconds: i64::try_from(config.billing_grace_period_hours * 3600).unwrap_or(i64::MAX),
        }))
    }
}

/// The subscription's state as [`account::plan_for`] reads it (None: Stripe has no such
/// subscription any more).
fn state_of(config: &Config, sub: Option<&Subscription>) -> SubscriptionState {
    match sub {
        None => SubscriptionState {
            status: "deleted".into(),
            plan: None,
        },
        Some(s) => SubscriptionState {
            status: s.status.clone(),
            plan: s.price_ids.iter().find_map(|p| config.plan_of_price(p)),
        },
    }
}

/// Writes `plan` to the sandboxes of `scope`: every team of an organization, or a person's own.
pub async fn apply_plan(state: &AppState, scope: &Scope, plan: Plan) -> Result<()> {
    match scope {
        Scope::Org(org) => {
            teams::set_org_plan(&state.db, org, plan).await?;
            for (team, _) in teams::org_teams(&state.db, org).await? {
                crate::http::teams::sync_sandbox(state, &team)
                    .await
                    .map_err(|e| anyhow::anyhow!("writing team {}'s sandbox: {e}", team.id))?;
            }
        }
        Scope::User(id) => {
            let Some(user) = state.db.user_by_id(id).await? else {
                tracing::warn!(user = %id, "billing: the account's user no longer exists; nothing to apply");
                return Ok(());
            };
            state
                .platform
                .set_sandbox_plan(&user, plan)
                .await
                .map_err(|e| anyhow::anyhow!("writing user {id}'s sandbox: {e}"))?;
        }
    }
    Ok(())
}

/// Reads subscription `subscription_id` from Stripe and brings `account` (and the cluster) to
/// what it says, at `now`. The plan comes only from the subscription's current state.
pub async fn sync(
    state: &AppState,
    billing: &Billing,
    mut a: Account,
    subscription_id: &str,
    now: i64,
) -> Result<Account> {
    let scope = Scope::parse(&a.scope).with_context(|| format!("billing account {:?} has no valid scope", a.scope))?;
    let sub = billing.stripe.subscription(subscription_id).await?;
    if let Some(s) = &sub
        && a.customer_id.as_deref().is_some_and(|c| c != s.customer)
    {
        anyhow::bail!(
            "subscription {subscription_id} belongs to customer {}, not to account {}'s customer; not applied",
            s.customer,
            a.scope
        );
    }
    // Another subscription than the account's: take it when it is live (a new one bought through
    // the portal or a second Checkout) or the account's own is gone; a stale event about an old,
    // ended subscription must not downgrade an account that paid again since.
    let current = a.subscription_id.clone();
    if let Some(cur) = current.as_deref()
        && cur != subscription_id
    {
        let live = sub
            .as_ref()
            .is_some_and(|s| matches!(s.status.as_str(), "active" | "trialing" | "past_due"));
        if !live {
            let own = billing.stripe.subscription(cur).await?;
            if own
                .as_ref()
                .is_some_and(|s| !matches!(s.status.as_str(), "canceled" | "incomplete_expired"))
            {
                tracing::info!(account = %a.scope, subscription = subscription_id, "billing: an ended subscription that is not the account's; ignored");
                return Ok(a);
            }
        }
    }
    let (plan, past_due_since) = account::plan_for(
        &state_of(&state.config, sub.as_ref()),
        a.past_due_since,
        now,
        billing.grace_seconds,
    );
    a.subscription_id = Some(subscription_id.to_string());
    a.status = Some(sub.as_ref().map_or("deleted".to_string(), |s| s.status.clone()));
    a.current_period_start = sub.as_ref().and_then(|s| s.current_period_start);
    a.current_period_end = sub.as_ref().and_then(|s| s.current_period_end);
    a.cancel_at_period_end = sub.as_ref().is_some_and(|s| s.cancel_at_period_end);
    a.past_due_since = past_due_since;
    // The cluster first: if writing the sandboxes fails, the event stays pending and is retried,
    // and the stored plan never claims what the cluster does not have.
    apply_plan(state, &scope, plan).await?;
    if a.plan != plan {
        tracing::info!(account = %a.scope, from = a.plan.as_str(), to = plan.as_str(), status = a.status.as_deref().unwrap_or(""), "billing: plan changed");
    }
    a.plan = plan;
    account::save(&state.db, &a).await?;
    Ok(a)
}

fn str_field<'a>(object: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut v = object;
    for p in path {
        v = v.get(p)?;
    }
    // Expanded objects carry their id.
    v.as_str().or_else(|| v.get("id").and_then(|id| id.as_str()))
}

/// Applies one stored event at `now`. Errors leave it pending (retried later).
pub async fn apply_event(state: &AppState, billing: &Billing, event: &Event, now: i64) -> Result<()> {
    let o = &event.object;
    match event.event_type.as_str() {
        "checkout.session.completed" => {
            let Some(scope) = str_field(o, &["client_reference_id"]).and_then(Scope::parse) else {
                tracing::warn!(event = %event.id, "billing: a Checkout without our client_reference_id; ignored");
                return Ok(());
            };
            let (Some(customer), Some(subscription)) = (str_field(o, &["customer"]), str_field(o, &["subscription"]))
            else {
                tracing::warn!(event = %event.id, "billing: a Checkout without customer or subscription (not mode=subscription); ignored");
                return Ok(());
            };
            let owner = account::set_customer(&state.db, &scope, customer).await?;
            if owner != customer {
                tracing::warn!(event = %event.id, account = %scope.key(), "billing: a Checkout by another customer than the account's; ignored");
                return Ok(());
            }
            let a = account::get(&state.db, &scope).await?.unwrap_or_default();
            sync(state, billing, a, subscription, now).await?;
        }
        t if t.starts_with("customer.subscription.") => {
            let (Some(id), Some(customer)) = (str_field(o, &["id"]), str_field(o, &["customer"])) else {
                anyhow::bail!("event {} has no subscription id or customer", event.id);
            };
            match account::by_customer(&state.db, customer).await? {
                Some(a) => {
                    sync(state, billing, a, id, now).await?;
                }
                None => {
                    tracing::info!(event = %event.id, "billing: a subscription of a customer that is not ours; ignored")
                }
            }
        }
        t if t.starts_with("invoice.") => {
            let Some(customer) = str_field(o, &["customer"]) else {
                anyhow::bail!("event {} has no customer", event.id);
            };
            let Some(a) = account::by_customer(&state.db, customer).await? else {
                tracing::info!(event = %event.id, "billing: an invoice of a customer that is not ours; ignored");
                return Ok(());
            };
            // The invoice's subscription: `subscription` in older API versions, under
            // `parent.subscription_details` in newer ones; else the account's own.
            let sub = str_field(o, &["subscription"])
                .or_else(|| str_field(o, &["parent", "subscription_details", "subscription"]))
                .map(str::to_string)
                .or_else(|| a.subscription_id.clone());
            if let Some(sub) = sub {
                sync(state, billing, a, &sub, now).await?;
            }
        }
        other => tracing::debug!(event = %event.id, event_type = other, "billing: not an event the worker applies"),
    }
    Ok(())
}

/// Applies every pending event that is due, oldest first; returns how many were applied.
pub async fn drain(state: &AppState, billing: &Billing, now: i64) -> Result<usize> {
    let mut applied = 0;
    // Each pass either marks the event processed or pushes its next attempt into the future, so
    // the loop ends.
    while let Some(event) = billing.inbox.next_unprocessed().await? {
        match apply_event(state, billing, &event, now).await {
            Ok(()) => {
                billing.inbox.mark_processed(&event.id).await?;
                applied += 1;
            }
            Err(e) => {
                let attempts = billing.inbox.mark_failed(&event.id, &format!("{e:#}")).await?;
                tracing::warn!(event = %event.id, event_type = %event.event_type, attempts, error = format!("{e:#}"), "billing: applying an event failed; it is retried later");
            }
        }
    }
    Ok(applied)
}

/// Ends grace periods that are over at `now` (and refreshes the accounts in one from Stripe).
pub async fn check_grace(state: &AppState, billing: &Billing, now: i64) -> Result<()> {
    for a in account::past_due(&state.db).await? {
        let Some(sub) = a.subscription_id.clone() else { continue };
        let scope = a.scope.clone();
        if let Err(e) = sync(state, billing, a, &sub, now).await {
            tracing::warn!(account = %scope, error = format!("{e:#}"), "billing: checking a grace period failed; retried later");
        }
    }
    Ok(())
}

/// Reads every live subscription from Stripe again and applies what it says at `now`.
pub async fn resync(state: &AppState, billing: &Billing, now: i64) -> Result<usize> {
    let mut done = 0;
    for a in account::with_live_subscription(&state.db).await? {
        let Some(sub) = a.subscription_id.clone() else { continue };
        let scope = a.scope.clone();
        match sync(state, billing, a, &sub, now).await {
            Ok(_) => done += 1,
            Err(e) => {
                tracing::warn!(account = %scope, error = format!("{e:#}"), "billing: resynchronising an account failed; retried later")
            }
        }
    }
    Ok(done)
}

/// The webhook worker: applies stored events as they come (and retries), checks grace periods,
/// resynchronises live subscriptions now and then, and purges old events.
pub fn spawn_worker(state: AppState, billing: Billing) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_grace_check = 0i64;
        // Not at once: a restart of every replica must not read every subscription.
        let mut last_resync = now();
        loop {
            if let Err(e) = drain(&state, &billing, now()).await {
                tracing::warn!(error = format!("{e:#}"), "billing: reading the webhook inbox failed");
            }
            let t = now();
            if t - last_grace_check >= GRACE_CHECK_INTERVAL.as_secs() as i64 {
                last_grace_check = t;
                if let Err(e) = check_grace(&state, &billing, t).await {
                    tracing::warn!(error = format!("{e:#}"), "billing: checking grace periods failed");
                }
                if t - last_resync >= RESYNC_INTERVAL.as_secs() as i64 {
                    last_resync = t;
                    match resync(&state, &billing, t).await {
                        Ok(n) => tracing::info!(accounts = n, "billing: subscriptions resynchronised with Stripe"),
                        Err(e) => tracing::warn!(
                            error = format!("{e:#}"),
                            "billing: resynchronising subscriptions failed"
                        ),
                    }
                }
                if let Err(e) = billing.inbox.purge(KEEP_EVENTS).await {
                    tracing::warn!(error = format!("{e:#}"), "billing: purging old webhook events failed");
                }
            }
            tokio::select! {
                () = billing.inbox.notified() => {}
                () = tokio::time::sleep(WORKER_POLL) => {}
            }
        }
    })
}
