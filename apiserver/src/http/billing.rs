//! The Billing page's API (issue 17): the plan of the current tenant, its limits and use, the
//! subscription and invoices, and the ways to Stripe's Checkout and Customer Portal.
//!
//! The plan belongs to the organization when a team is selected (its owners and admins manage
//! it), else to the person's own sandbox. With BILLING_ENABLED=false the page still shows plan,
//! limits and use; plans are then set by administrators and the POST routes answer 409 saying so.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use crds::Plan;
use serde::{Deserialize, Serialize};

use super::ApiJson;
use crate::AppState;
use crate::auth::{Principal, Via};
use crate::billing::account::{self, Scope};
use crate::billing::metering::{self, ServiceUse};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::teams::store as teams;

/// Most invoices listed.
pub const INVOICES_LISTED: u8 = 12;

/// Routes of this area (the webhook is mounted apart: it has no session).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/billing", get(overview))
        .route("/api/billing/checkout", post(checkout))
        .route("/api/billing/portal", post(portal))
}

/// Whose plan.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeView {
    /// `org` or `user`.
    pub kind: String,
    /// The organization's or user's id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A plan's limits in one sandbox.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
    /// Most apps (null: unlimited).
    pub deployments: Option<i32>,
    /// Most pods.
    pub pods: i32,
    /// Sum of CPU requests.
    pub requests_cpu: String,
    /// Sum of memory requests.
    pub requests_memory: String,
    /// Sum of CPU limits.
    pub limits_cpu: String,
    /// Sum of memory limits.
    pub limits_memory: String,
}

impl LimitsView {
    fn of(plan: Plan) -> LimitsView {
        let l = plan.limits();
        LimitsView {
            deployments: l.deployments,
            pods: l.pods,
            requests_cpu: l.requests_cpu.into(),
            requests_memory: l.requests_memory.into(),
            limits_cpu: l.limits_cpu.into(),
            limits_memory: l.limits_memory.into(),
        }
    }
}

/// A plan on offer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    /// free, business or enterprise.
    pub plan: String,
    /// Its limits.
    pub limits: LimitsView,
    /// Whether it can be bought here (billing on and a Stripe price configured; free always).
    pub available: bool,
}

/// The subscription as last read from Stripe.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    /// Stripe's status (active, trialing, past_due, unpaid, canceled, deleted, ...).
    pub status: String,
    /// The plan billing applied.
    pub plan: String,
    /// End of the current period (Unix seconds).
    pub current_period_end: Option<i64>,
    /// It ends at the period's end.
    pub cancel_at_period_end: bool,
    /// A payment failed: the paid plan stays until then (Unix seconds).
    pub grace_until: Option<i64>,
}

/// Apps in the sandbox.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsedView {
    /// Apps.
    pub deployments: usize,
    /// Apps scaled to zero because the plan allows fewer.
    pub suspended: usize,
}

/// Running app-time this period.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// Start of the period (the subscription's, else the calendar month's; Unix seconds).
    pub period_start: i64,
    /// Its end, when a subscription says.
    pub period_end: Option<i64>,
    /// CPU requested by running apps × hours (the whole account: an organization's teams too).
    pub cpu_core_hours: f64,
    /// Memory requested × hours, GiB.
    pub memory_gib_hours: f64,
    /// Per app and service of the current sandbox.
    pub services: Vec<ServiceUse>,
}

/// The Billing page.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingView {
    /// BILLING_ENABLED: false means plans are set by administrators.
    pub enabled: bool,
    /// Whose plan.
    pub scope: ScopeView,
    /// The plan of the current sandbox.
    pub plan: String,
    /// Whether the caller may change it (the person themself; an organization's owners and
    /// admins).
    pub can_manage: bool,
    /// The subscription, if there is one.
    pub subscription: Option<SubscriptionView>,
    /// The current plan's limits.
    pub limits: LimitsView,
    /// What the sandbox holds.
    pub used: UsedView,
    /// Every plan.
    pub plans: Vec<PlanView>,
    /// Running app-time this period.
    pub usage: UsageView,
    /// Recent invoices, newest first (empty without billing).
    pub invoices: Vec<crate::billing::stripe::Invoice>,
}

/// The plan's owner for this request, its name and whether the caller manages it.
async fn scope_of(state: &AppState, p: &Principal) -> ApiResult<(Scope, String, bool)> {
    match &p.tenant.team {
        Some(team) => {
            let role = teams::org_for(&state.db, &team.org_id, &p.user.id)
                .await?
                .map(|(_, r)| r);
            Ok((
                Scope::Org(team.org_id.clone()),
                team.org_name.clone(),
                role.is_some_and(|r| r.manages()),
            ))
        }
        None => Ok((Scope::User(p.user.id.clone()), p.user.name.clone(), true)),
    }
}

fn month_start(now: i64) -> i64 {
    use k8s_openapi::jiff::{Timestamp, civil::Date, tz::TimeZone};
    Timestamp::from_second(now)
        .ok()
        .map(|t| t.to_zoned(TimeZone::UTC).date())
        .and_then(|d| Date::new(d.year(), d.month(), 1).ok())
        .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
        .map_or(now - now.rem_euclid(86_400), |z| z.timestamp().as_second())
}

/// The current tenant's plan, limits, use, subscription and invoices.
#[utoipa::path(get, path = "/api/billing", tag = "billing",
    responses((status = 200, body = BillingView), (status = 401, body = ErrorBody)))]
pub async fn overview(State(state): State<AppState>, p: Principal) -> ApiResult<Json<BillingView>> {
    let (scope, name, can_manage) = scope_of(&state, &p).await?;
    let billing = crate::billing::get(&state);
    let sandbox = state.platform.sandbox(&p.tenant.owner);
    let apps = state.platform.deployments(&sandbox.namespace).await?;
    let suspended = apps
        .iter()
        .filter(|a| {
            a.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == crds::conditions::reasons::SUSPENDED && c.status == "True")
            })
        })
        .count();
    let acct = account::get(&state.db, &scope).await?;
    let subscription = acct
        .as_ref()
        .filter(|a| a.subscription_id.is_some())
        .map(|a| SubscriptionView {
            status: a.status.clone().unwrap_or_default(),
            plan: a.plan.as_str().into(),
            current_period_end: a.current_period_end,
            cancel_at_period_end: a.cancel_at_period_end,
            grace_until: a
                .past_due_since
                .zip(billing.map(|b| b.grace_seconds))
                .map(|(since, grace)| since.saturating_add(grace)),
        });
    let now = crate::db::now();
    let period_start = acct
        .as_ref()
        .and_then(|a| a.current_period_start)
        .filter(|s| *s <= now)
        .unwrap_or_else(|| month_start(now));
    let services = metering::used_since(&state.db, &scope, period_start).await?;
    let invoices = match (billing, acct.as_ref().and_then(|a| a.customer_id.as_deref())) {
        (Some(b), Some(customer)) => match b.stripe.invoices(customer, INVOICES_LISTED).await {
            Ok(list) => list,
            Err(e) => {
                // The rest of the page is still right; the list is empty until Stripe answers.
                tracing::warn!(account = %scope.key(), error = format!("{e:#}"), "billing: listing invoices failed");
                vec![]
            }
        },
        _ => vec![],
    };
    let plans = [Plan::Free, Plan::Business, Plan::Enterprise]
        .into_iter()
        .map(|plan| PlanView {
            plan: plan.as_str().into(),
            limits: LimitsView::of(plan),
            available: plan == Plan::Free || (billing.is_some() && state.config.stripe_price(plan).is_some()),
        })
        .collect();
    Ok(Json(BillingView {
        enabled: billing.is_some(),
        scope: ScopeView {
            kind: scope.kind().into(),
            id: scope.id().into(),
            name,
        },
        plan: sandbox.plan.as_str().into(),
        can_manage,
        subscription,
        limits: LimitsView {
            deployments: sandbox.deployment_limit,
            ..LimitsView::of(sandbox.plan)
        },
        used: UsedView {
            deployments: apps.len(),
            suspended,
        },
        plans,
        usage: UsageView {
            period_start,
            period_end: acct.as_ref().and_then(|a| a.current_period_end),
            // Folded from +0.0: an empty f64 sum is -0.0, which JSON would show as "-0.0".
            cpu_core_hours: services.iter().fold(0.0, |t, s| t + s.cpu_core_hours),
            memory_gib_hours: services.iter().fold(0.0, |t, s| t + s.memory_gib_hours),
            // The totals are the account's (every team of an organization); the apps listed are
            // this sandbox's: a team's members do not learn the names of other teams' apps.
            services: services
                .into_iter()
                .filter(|s| s.namespace == sandbox.namespace)
                .collect(),
        },
        invoices,
    }))
}

/// Which plan to buy.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// business or enterprise.
    pub plan: String,
}

/// Where to send the browser.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RedirectView {
    /// A Stripe-hosted page (Checkout or the Customer Portal).
    pub url: String,
}

/// Billing on, a browser session, and the right to manage the plan.
async fn manager(state: &AppState, p: &Principal) -> ApiResult<(Scope, String)> {
    if crate::billing::get(state).is_none() {
        return Err(ApiError::Conflict(
            "billing is not enabled on this installation (BILLING_ENABLED=false): plans are set by administrators; \
             ask one to change yours"
                .into(),
        ));
    }
    if p.via == Via::Token {
        return Err(ApiError::Forbidden(
            "plans are bought and managed from a signed-in browser session, not with an API token".into(),
        ));
    }
    let (scope, name, can_manage) = scope_of(state, p).await?;
    if !can_manage {
        return Err(ApiError::Forbidden(
            "only the organization's owners and admins manage its plan; ask one of them".into(),
        ));
    }
    Ok((scope, name))
}

fn page_url(state: &AppState, query: &str) -> String {
    format!(
        "{}/billing{query}",
        state.config.base_url.as_str().trim_end_matches('/')
    )
}

/// Starts a Stripe Checkout for a paid plan; answers the URL to send the browser to.
#[utoipa::path(post, path = "/api/billing/checkout", tag = "billing", request_body = CheckoutBody,
    responses((status = 200, body = RedirectView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "billing off, or the plan is already the subscription's", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody)))]
pub async fn checkout(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> ApiResult<Json<RedirectView>> {
    let (scope, name) = manager(&state, &p).await?;
    let billing = crate::billing::get(&state).ok_or_else(|| ApiError::Conflict("billing is not enabled".into()))?;
    let plan = Plan::parse(body.plan.trim())
        .filter(|p| *p != Plan::Free)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "plan {:?} cannot be bought: choose business or enterprise",
                body.plan
            ))
        })?;
    let price = state.config.stripe_price(plan).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "the {} plan is not for sale on this installation (no STRIPE_PRICE_{} is configured)",
            plan.as_str(),
            plan.as_str().to_uppercase()
        ))
    })?;
    let acct = account::get(&state.db, &scope).await?.unwrap_or_default();
    if acct.subscription_id.is_some() && matches!(acct.status.as_deref(), Some("active" | "trialing" | "past_due")) {
        return Err(ApiError::Conflict(format!(
            "this account has a subscription already (the {} plan); change or cancel it with \"Manage subscription\" \
             (POST /api/billing/portal)",
            acct.plan.as_str()
        )));
    }
    let customer = match acct.customer_id {
        Some(c) => c,
        None => {
            let email = (!p.user.email.is_empty()).then_some(p.user.email.as_str());
            let created = billing
                .stripe
                .create_customer(email, &name, &scope.key())
                .await
                .map_err(stripe_unavailable)?;
            // Two Checkouts at once: the first customer stored wins, the other is left unused.
            account::set_customer(&state.db, &scope, &created).await?
        }
    };
    let url = billing
        .stripe
        .checkout_session(
            &customer,
            price,
            &scope.key(),
            &page_url(&state, "?checkout=success"),
            &page_url(&state, "?checkout=cancelled"),
        )
        .await
        .map_err(stripe_unavailable)?;
    tracing::info!(account = %scope.key(), plan = plan.as_str(), "billing: Checkout started");
    Ok(Json(RedirectView { url }))
}

/// Opens Stripe's Customer Portal (change or cancel the subscription, payment methods, invoices).
#[utoipa::path(post, path = "/api/billing/portal", tag = "billing",
    responses((status = 200, body = RedirectView), (status = 403, body = ErrorBody),
        (status = 409, description = "billing off, or no customer yet", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody)))]
pub async fn portal(State(state): State<AppState>, p: Principal) -> ApiResult<Json<RedirectView>> {
    let (scope, _) = manager(&state, &p).await?;
    let billing = crate::billing::get(&state).ok_or_else(|| ApiError::Conflict("billing is not enabled".into()))?;
    let customer = account::get(&state.db, &scope)
        .await?
        .and_then(|a| a.customer_id)
        .ok_or_else(|| {
            ApiError::Conflict("there is no subscription to manage yet: upgrade to a paid plan first".into())
        })?;
    let url = billing
        .stripe
        .portal_session(&customer, &page_url(&state, ""))
        .await
        .map_err(stripe_unavailable)?;
    Ok(Json(RedirectView { url }))
}

fn stripe_unavailable(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = format!("{e:#}"), "billing: a Stripe call failed");
    ApiError::Unavailable("Stripe did not complete the request; try again in a minute".into())
}
