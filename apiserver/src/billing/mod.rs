//! Billing with Stripe (issue 17).
//!
//! - [`webhook`]: `POST /api/billing/webhook`: verifies the `Stripe-Signature` of each delivery,
//!   stores the event once in an inbox (`billing_events`, migration 0007) and answers at once; a
//!   worker applies stored events afterwards ([`service`]).
//! - [`account`]: who pays (an organization, or a person without one) and the rule that turns a
//!   subscription's current state into a plan.
//! - [`service`]: applying a plan to the cluster (the owning UserSandboxes' `spec.plan`), the
//!   event worker and the grace period after a failed payment.
//! - [`metering`]: running app-time recorded per hour and reported to Stripe's billing meters.
//! - [`stripe`]: the Stripe API calls (async-stripe).

pub mod account;
pub mod metering;
pub mod service;
pub mod stripe;
pub mod webhook;

pub use service::Billing;

/// The billing of `state`, when BILLING_ENABLED.
pub fn get(state: &crate::AppState) -> Option<&Billing> {
    state.billing.as_ref()
}
