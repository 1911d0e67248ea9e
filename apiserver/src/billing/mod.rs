//! Billing with Stripe (issue 17).
//!
//! - [`webhook`]: `POST /api/billing/webhook`: verifies the `Stripe-Signature` of each delivery,
//!   stores the event once in an inbox (`billing_events`, migration 0007) and answers at once; a
//!   worker applies stored events afterwards.

pub mod webhook;
