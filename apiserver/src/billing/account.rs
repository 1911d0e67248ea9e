//! Billing accounts: who pays for a plan, and the plan that follows from Stripe's state.
//!
//! An account is an organization (its teams' sandboxes share its plan) or a person's own sandbox,
//! named by a [`Scope`]. [`plan_for`] is the whole rule that turns a subscription into a plan; it
//! is pure, so the grace period and every status are unit-tested without Stripe.

use anyhow::{Context, Result};
use crds::Plan;
use sqlx::Row;

use crate::db::Db;

/// Whose plan: an organization's or a person's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Organization `id`: the plan of all its teams' sandboxes.
    Org(String),
    /// User `id`'s own sandbox.
    User(String),
}

impl Scope {
    /// `org:<id>` or `user:<id>`: the account's key, Checkout's `client_reference_id` and the
    /// customer's metadata.
    pub fn key(&self) -> String {
        match self {
            Scope::Org(id) => format!("org:{id}"),
            Scope::User(id) => format!("user:{id}"),
        }
    }

    /// Parses [`Scope::key`]; None for anything else (ids are DNS labels without dashes).
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, id) = s.split_once(':')?;
        if id.is_empty() || id.len() > 63 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return None;
        }
        match kind {
            "org" => Some(Scope::Org(id.to_string())),
            "user" => Some(Scope::User(id.to_string())),
            _ => None,
        }
    }

    /// `org` or `user`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Org(_) => "org",
            Scope::User(_) => "user",
        }
    }

    /// The organization's or user's id.
    pub fn id(&self) -> &str {
        match self {
            Scope::Org(id) | Scope::User(id) => id,
        }
    }
}

/// A stored account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// [`Scope::key`].
    pub scope: String,
    /// Stripe customer (cus_...).
    pub customer_id: Option<String>,
    /// The subscription that sets the plan (sub_...).
    pub subscription_id: Option<String>,
    /// The subscription's status as last read from Stripe.
    pub status: Option<String>,
    /// The plan billing last applied.
    pub plan: Plan,
    /// The current period, as last read.
    pub current_period_start: Option<i64>,
    /// See above.
    pub current_period_end: Option<i64>,
    /// The subscription ends at the period's end.
    pub cancel_at_period_end: bool,
    /// When a failed payment was first seen (the grace period's start).
    pub past_due_since: Option<i64>,
}

/// What Stripe says about an account's subscription, reduced to what decides the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    /// Stripe's status: active, trialing, past_due, unpaid, canceled, incomplete,
    /// incomplete_expired, paused; `deleted` when Stripe no longer has it.
    pub status: String,
    /// The plan its price buys (None: a price that is not one of ours).
    pub plan: Option<Plan>,
}

/// The plan an account gets, and the grace period's start to store, at `now`.
///
/// - active or trialing: the subscription's plan (free if its price is not one of ours);
/// - past_due or unpaid (a payment failed): the paid plan stays until `grace_seconds` after the
///   failure was first seen, then free;
/// - anything else (canceled, deleted, incomplete, incomplete_expired, paused): free.
///
/// Only the subscription's current state counts, never an event's: that is what makes events in
/// any order, and the same event twice, end in the same plan.
pub fn plan_for(
    state: &SubscriptionState,
    past_due_since: Option<i64>,
    now: i64,
    grace_seconds: i64,
) -> (Plan, Option<i64>) {
    match state.status.as_str() {
        "active" | "trialing" => (state.plan.unwrap_or(Plan::Free), None),
        "past_due" | "unpaid" => {
            let since = past_due_since.unwrap_or(now);
            if now.saturating_sub(since) < grace_seconds {
                (state.plan.unwrap_or(Plan::Free), Some(since))
            } else {
                (Plan::Free, Some(since))
            }
        }
        _ => (Plan::Free, None),
    }
}

fn account(r: &sqlx::any::AnyRow) -> Account {
    Account {
        scope: r.get("scope"),
        customer_id: r.get("customer_id"),
        subscription_id: r.get("subscription_id"),
        status: r.get("status"),
        plan: Plan::parse(&r.get::<String, _>("plan")).unwrap_or_default(),
        current_period_start: r.get("current_period_start"),
        current_period_end: r.get("current_period_end"),
        cancel_at_period_end: r.get::<i64, _>("cancel_at_period_end") != 0,
        past_due_since: r.get("past_due_since"),
    }
}

/// The account of `scope`, if it has one.
pub async fn get(db: &Db, scope: &Scope) -> Result<Option<Account>> {
    let row = sqlx::query(
        "SELECT scope, customer_id, subscription_id, status, plan, current_period_start, current_period_end, cancel_at_period_end, past_due_since FROM billing_accounts WHERE scope = $1",
    )
        .bind(scope.key())
        .fetch_optional(db.pool())
        .await
        .context("reading a billing account")?;
    Ok(row.as_ref().map(account))
}

/// The account of Stripe customer `customer`, if it is one of ours.
pub async fn by_customer(db: &Db, customer: &str) -> Result<Option<Account>> {
    let row = sqlx::query(
        "SELECT scope, customer_id, subscription_id, status, plan, current_period_start, current_period_end, cancel_at_period_end, past_due_since FROM billing_accounts WHERE customer_id = $1",
    )
        .bind(customer)
        .fetch_optional(db.pool())
        .await
        .context("reading a billing account by customer")?;
    Ok(row.as_ref().map(account))
}

/// Accounts in a grace period (a payment failed), to downgrade when it ends.
pub async fn past_due(db: &Db) -> Result<Vec<Account>> {
    let rows = sqlx::query(
        "SELECT scope, customer_id, subscription_id, status, plan, current_period_start, current_period_end, cancel_at_period_end, past_due_since FROM billing_accounts WHERE past_due_since IS NOT NULL ORDER BY past_due_since",
    )
    .fetch_all(db.pool())
    .await
    .context("listing billing accounts in a grace period")?;
    Ok(rows.iter().map(account).collect())
}

/// Accounts whose subscription has not ended, for the periodic resynchronisation with Stripe
/// (a webhook delivery Stripe gave up on must not leave a plan wrong for ever).
pub async fn with_live_subscription(db: &Db) -> Result<Vec<Account>> {
    let rows = sqlx::query(
        "SELECT scope, customer_id, subscription_id, status, plan, current_period_start, current_period_end, cancel_at_period_end, past_due_since FROM billing_accounts \
         WHERE subscription_id IS NOT NULL AND (status IS NULL OR status NOT IN ('deleted', 'canceled', 'incomplete_expired'))",
    )
    .fetch_all(db.pool())
    .await
    .context("listing billing accounts with a subscription")?;
    Ok(rows.iter().map(account).collect())
}

/// Accounts with a Stripe customer (usage is reported for these).
pub async fn with_customer(db: &Db) -> Result<Vec<Account>> {
    let rows = sqlx::query(
        "SELECT scope, customer_id, subscription_id, status, plan, current_period_start, current_period_end, cancel_at_period_end, past_due_since FROM billing_accounts WHERE customer_id IS NOT NULL",
    )
        .fetch_all(db.pool())
        .await
        .context("listing billing accounts")?;
    Ok(rows.iter().map(account).collect())
}

/// Records `customer` as `scope`'s Stripe customer unless it has one; returns the customer the
/// account has afterwards (the earlier one if two Checkouts raced).
pub async fn set_customer(db: &Db, scope: &Scope, customer: &str) -> Result<String> {
    sqlx::query(
        "INSERT INTO billing_accounts (scope, customer_id, plan, updated_at) VALUES ($1, $2, 'free', $3) \
         ON CONFLICT (scope) DO UPDATE SET customer_id = COALESCE(billing_accounts.customer_id, excluded.customer_id), \
         updated_at = excluded.updated_at",
    )
    .bind(scope.key())
    .bind(customer)
    .bind(crate::db::now())
    .execute(db.pool())
    .await
    .context("storing a billing account's customer")?;
    get(db, scope)
        .await?
        .and_then(|a| a.customer_id)
        .context("the billing account vanished while its customer was stored")
}

/// Stores what was read from Stripe and the plan applied.
pub async fn save(db: &Db, a: &Account) -> Result<()> {
    sqlx::query(
        "INSERT INTO billing_accounts (scope, customer_id, subscription_id, status, plan, current_period_start, \
         current_period_end, cancel_at_period_end, past_due_since, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (scope) DO UPDATE SET customer_id = excluded.customer_id, \
         subscription_id = excluded.subscription_id, status = excluded.status, plan = excluded.plan, \
         current_period_start = excluded.current_period_start, current_period_end = excluded.current_period_end, \
         cancel_at_period_end = excluded.cancel_at_period_end, past_due_since = excluded.past_due_since, \
         updated_at = excluded.updated_at",
    )
    .bind(&a.scope)
    .bind(&a.customer_id)
    .bind(&a.subscription_id)
    .bind(&a.status)
    .bind(a.plan.as_str())
    .bind(a.current_period_start)
    .bind(a.current_period_end)
    .bind(i64::from(a.cancel_at_period_end))
    .bind(a.past_due_since)
    .bind(crate::db::now())
    .execute(db.pool())
    .await
    .with_context(|| format!("storing billing account {}", a.scope))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 3600;

    fn sub(status: &str, plan: Option<Plan>) -> SubscriptionState {
        SubscriptionState {
            status: status.into(),
            plan,
        }
    }

    #[test]
    fn scopes_round_trip_and_refuse_anything_else() {
        for s in [Scope::Org("orgabc123".into()), Scope::User("alice4k2q7z".into())] {
            assert_eq!(Scope::parse(&s.key()), Some(s));
        }
        for bad in ["", "org:", "team:abc", "org:ABC", "user:a-b", "org", "user:a:b"] {
            assert_eq!(Scope::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn active_and_trialing_subscriptions_give_their_plan() {
        for status in ["active", "trialing"] {
            assert_eq!(
                plan_for(&sub(status, Some(Plan::Business)), None, 100, GRACE),
                (Plan::Business, None)
            );
        }
        // A price that is not one of ours buys nothing.
        assert_eq!(plan_for(&sub("active", None), None, 100, GRACE), (Plan::Free, None));
        // Paid again after a failure: the grace period ends.
        assert_eq!(
            plan_for(&sub("active", Some(Plan::Business)), Some(50), 100, GRACE),
            (Plan::Business, None)
        );
    }

    #[test]
    fn a_failed_payment_keeps_the_plan_for_the_grace_period_then_downgrades() {
        let s = sub("past_due", Some(Plan::Enterprise));
        assert_eq!(plan_for(&s, None, 1000, GRACE), (Plan::Enterprise, Some(1000)));
        assert_eq!(
            plan_for(&s, Some(1000), 1000 + GRACE - 1, GRACE),
            (Plan::Enterprise, Some(1000))
        );
        assert_eq!(plan_for(&s, Some(1000), 1000 + GRACE, GRACE), (Plan::Free, Some(1000)));
        assert_eq!(
            plan_for(&sub("unpaid", Some(Plan::Business)), Some(0), GRACE * 10, GRACE),
            (Plan::Free, Some(0))
        );
        // No grace at all.
        assert_eq!(plan_for(&s, None, 1000, 0), (Plan::Free, Some(1000)));
    }

    #[test]
    fn ended_subscriptions_give_the_free_plan() {
        for status in [
            "canceled",
            "deleted",
            "incomplete",
            "incomplete_expired",
            "paused",
            "something_new",
        ] {
            assert_eq!(
                plan_for(&sub(status, Some(Plan::Business)), Some(5), 100, GRACE),
                (Plan::Free, None),
                "{status}"
            );
        }
    }
}
