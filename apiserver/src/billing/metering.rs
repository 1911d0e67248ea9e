//! Usage-based billing: running app-time, recorded and reported to Stripe's billing meters.
//!
//! # The pricing model is configuration
//! What is measured: for every service of every app, the CPU and memory its pods request (the
//! service's `resources.requests`, else its limits, else the sandbox's LimitRange defaults)
//! times the pods the controller reports ready in the UserDeployment's status, times the time
//! they were. Samples every USAGE_SAMPLE_SECONDS add to a row per account, hour, app and service
//! (`usage_hours`).
//!
//! What is billed: once an hour is over, each account with a Stripe customer gets one meter event
//! per meter with that hour's total: CPU in core-minutes to the meter STRIPE_METER_CPU, memory in
//! GiB-minutes to STRIPE_METER_MEMORY (empty: not reported). What a unit costs is the Price
//! attached to the meter in Stripe, not code here: change prices in Stripe's dashboard.
//!
//! # Reported once
//! The value of an hour's event is fixed in `usage_reports` before it is sent, under the
//! identifier `<scope>:<hour>:<meter>`. A crash after Stripe accepted it and before it was marked
//! sent sends the same identifier and value again, which Stripe counts once (meter event
//! identifiers are unique for at least 24 hours); late samples of an hour already fixed are not
//! billed (they are at most one sample interval, and hours close [`SETTLE_SECONDS`] late).

use std::collections::HashMap;

use anyhow::{Context, Result};
use sqlx::Row;

use super::account::{self, Scope};
use super::stripe::StripeApi;
use crate::AppState;
use crate::db::Db;
use crate::platform::SandboxApps;

/// An hour is reported this long after it ended, so the last samples of it are in.
pub const SETTLE_SECONDS: i64 = 300;
/// Hours older than this are not reported (Stripe takes meter events up to 35 days old; two
/// days is room for an outage of Stripe or of this server).
pub const REPORT_WINDOW_SECONDS: i64 = 2 * 86_400;

/// What one service of one app requests while running, now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// The account ([`Scope::key`]).
    pub scope: String,
    /// The sandbox's namespace (an organization's account spans its teams' sandboxes).
    pub namespace: String,
    /// The app.
    pub deployment: String,
    /// The service.
    pub service: String,
    /// CPU requested by its ready pods, millicores.
    pub cpu_millis: i64,
    /// Memory requested by its ready pods, MiB.
    pub memory_mib: i64,
}

/// The account a sandbox's usage belongs to: its organization, else its owner.
pub fn scope_of(sb: &SandboxApps) -> Scope {
    match &sb.org {
        Some(org) => Scope::Org(org.clone()),
        None => Scope::User(sb.owner.clone()),
    }
}

/// Requests of one pod of `s`: requests, else limits (Kubernetes copies them), else the
/// LimitRange defaults the controller writes into every sandbox. (millicores, MiB)
pub fn pod_requests(s: &crds::template::ServiceSpec) -> (i64, i64) {
    let r = s.resources.as_ref();
    let pick = |get: fn(&crds::template::ResourceList) -> Option<&String>, default: &str| {
        r.and_then(|r| r.requests.as_ref().and_then(get))
            .or_else(|| r.and_then(|r| r.limits.as_ref().and_then(get)))
            .and_then(|q| crate::usage::quantity(q))
            .or_else(|| crate::usage::quantity(default))
            .unwrap_or(0.0)
    };
    let cpu = pick(|l| l.cpu.as_ref(), crds::plan::DEFAULT_REQUEST_CPU);
    let memory = pick(|l| l.memory.as_ref(), crds::plan::DEFAULT_REQUEST_MEMORY);
    (
        (cpu * 1000.0).round() as i64,
        (memory / (1024.0 * 1024.0)).round() as i64,
    )
}

/// What is running now in every sandbox, from the controller's status of each app (ready pods
/// per service) and its services' requests (template or inline).
pub fn observe(state: &AppState) -> Vec<Running> {
    let mut out = vec![];
    // Built once per sample, not per app: it holds every sandbox.
    let sandboxes = state.platform.sandboxes();
    let platform_ns = &state.config.settings.platform_namespace;
    for sb in state.platform.usage_snapshot() {
        let scope = scope_of(&sb).key();
        let mut visible = None;
        for ud in &sb.apps {
            let Some(status) = &ud.status else { continue };
            if status.services.iter().all(|s| s.ready_replicas <= 0) {
                continue;
            }
            let specs: Vec<crds::template::ServiceSpec> = match &ud.spec.template_ref {
                Some(r) => match policy::templates::resolve(r, &sb.namespace, platform_ns, &sandboxes, |tns, name| {
                    visible
                        .get_or_insert_with(|| state.platform.templates(&sb.namespace))
                        .iter()
                        .find(|t| {
                            t.metadata.namespace.as_deref() == Some(tns) && t.metadata.name.as_deref() == Some(name)
                        })
                        .cloned()
                }) {
                    Some(t) => t.spec.services.clone(),
                    None => continue,
                },
                None => ud.spec.services.clone().unwrap_or_default(),
            };
            for s in &status.services {
                if s.ready_replicas <= 0 {
                    continue;
                }
                let Some(spec) = specs.iter().find(|x| x.name == s.name) else {
                    continue;
                };
                let (cpu, memory) = pod_requests(spec);
                out.push(Running {
                    scope: scope.clone(),
                    namespace: sb.namespace.clone(),
                    deployment: ud.metadata.name.clone().unwrap_or_default(),
                    service: s.name.clone(),
                    cpu_millis: cpu * i64::from(s.ready_replicas),
                    memory_mib: memory * i64::from(s.ready_replicas),
                });
            }
        }
    }
    out
}

// Sums are cast back to BIGINT: PostgreSQL's SUM of a BIGINT is a NUMERIC.

/// Adds `running` over the interval `[from, to)` to the hours it covers.
pub async fn record(db: &Db, running: &[Running], from: i64, to: i64) -> Result<()> {
    if to <= from || running.is_empty() {
        return Ok(());
    }
    let mut tx = db.pool().begin().await.context("recording usage")?;
    let mut start = from;
    while start < to {
        let hour = start - start.rem_euclid(3600);
        let end = to.min(hour + 3600);
        let seconds = end - start;
        for r in running {
            sqlx::query(
                "INSERT INTO usage_hours (scope, hour, namespace, deployment, service, cpu_milli_seconds, memory_mib_seconds) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope, hour, namespace, deployment, service) DO UPDATE SET \
                 cpu_milli_seconds = usage_hours.cpu_milli_seconds + excluded.cpu_milli_seconds, \
                 memory_mib_seconds = usage_hours.memory_mib_seconds + excluded.memory_mib_seconds",
            )
            .bind(&r.scope)
            .bind(hour)
            .bind(&r.namespace)
            .bind(&r.deployment)
            .bind(&r.service)
            .bind(r.cpu_millis * seconds)
            .bind(r.memory_mib * seconds)
            .execute(&mut *tx)
            .await
            .context("recording usage")?;
        }
        start = end;
    }
    tx.commit().await.context("recording usage")?;
    Ok(())
}

/// Claims sample slot `slot` (a time divided by the sample interval): true for the one server
/// replica whose claim lands, which then records the slot; the others skip it.
pub async fn claim_slot(db: &Db, slot: i64, now: i64) -> Result<bool> {
    let res = sqlx::query("INSERT INTO usage_slots (slot, claimed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(slot)
        .bind(now)
        .execute(db.pool())
        .await
        .context("claiming a usage sample")?;
    Ok(res.rows_affected() == 1)
}

/// Forgets slots claimed before `before` (they are never claimed again: time moved on).
pub async fn purge_slots(db: &Db, before: i64) -> Result<u64> {
    let res = sqlx::query("DELETE FROM usage_slots WHERE claimed_at < $1")
        .bind(before)
        .execute(db.pool())
        .await
        .context("purging usage sample claims")?;
    Ok(res.rows_affected())
}

/// One service's use over a period.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUse {
    /// The sandbox (not serialized: the page lists the current sandbox's apps only).
    #[serde(skip)]
    pub namespace: String,
    /// The app.
    pub deployment: String,
    /// The service.
    pub service: String,
    /// CPU requested × hours.
    pub cpu_core_hours: f64,
    /// Memory requested × hours, GiB.
    pub memory_gib_hours: f64,
}

/// `scope`'s use since `since` (hours starting at or after it), per sandbox, app and service,
/// most first.
pub async fn used_since(db: &Db, scope: &Scope, since: i64) -> Result<Vec<ServiceUse>> {
    let rows = sqlx::query(
        "SELECT namespace, deployment, service, CAST(SUM(cpu_milli_seconds) AS BIGINT) AS cpu, \
         CAST(SUM(memory_mib_seconds) AS BIGINT) AS memory \
         FROM usage_hours WHERE scope = $1 AND hour >= $2 GROUP BY namespace, deployment, service",
    )
    .bind(scope.key())
    .bind(since - since.rem_euclid(3600))
    .fetch_all(db.pool())
    .await
    .context("reading usage")?;
    let mut out: Vec<ServiceUse> = rows
        .iter()
        .map(|r| ServiceUse {
            namespace: r.get("namespace"),
            deployment: r.get("deployment"),
            service: r.get("service"),
            cpu_core_hours: r.get::<i64, _>("cpu") as f64 / 1000.0 / 3600.0,
            memory_gib_hours: r.get::<i64, _>("memory") as f64 / 1024.0 / 3600.0,
        })
        .collect();
    out.sort_by(|a, b| {
        b.cpu_core_hours
            .total_cmp(&a.cpu_core_hours)
            .then_with(|| (&a.deployment, &a.service).cmp(&(&b.deployment, &b.service)))
    });
    Ok(out)
}

/// A meter event, fixed before it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `<scope>:<hour>:<meter>`.
    pub identifier: String,
    /// The meter's event name.
    pub meter: String,
    /// The account.
    pub scope: String,
    /// The hour's start.
    pub hour: i64,
    /// Core-minutes or GiB-minutes.
    pub value: i64,
}

/// The meters and what they receive.
#[derive(Clone, Debug)]
pub struct Meters {
    /// Event name of CPU core-minutes (empty: not reported).
    pub cpu: String,
    /// Event name of memory GiB-minutes (empty: not reported).
    pub memory: String,
}

/// Fixes the meter events of hours closed at `now` for accounts with a Stripe customer (a row per
/// account, hour and meter, once; values of zero are not sent). Returns how many were added.
pub async fn fix_reports(db: &Db, meters: &Meters, now: i64) -> Result<usize> {
    let customers: HashMap<String, String> = account::with_customer(db)
        .await?
        .into_iter()
        .filter_map(|a| a.customer_id.map(|c| (a.scope, c)))
        .collect();
    let closed_before = now - SETTLE_SECONDS - 3600;
    let rows = sqlx::query(
        "SELECT scope, hour, CAST(SUM(cpu_milli_seconds) AS BIGINT) AS cpu, CAST(SUM(memory_mib_seconds) AS BIGINT) AS memory FROM usage_hours \
         WHERE hour <= $1 AND hour >= $2 GROUP BY scope, hour",
    )
    .bind(closed_before)
    .bind(now - REPORT_WINDOW_SECONDS)
    .fetch_all(db.pool())
    .await
    .context("reading usage to report")?;
    let mut added = 0;
    for r in &rows {
        let scope: String = r.get("scope");
        if !customers.contains_key(&scope) {
            continue;
        }
        let hour: i64 = r.get("hour");
        // Core-minutes: millicore-seconds / 1000 / 60; GiB-minutes: MiB-seconds / 1024 / 60.
        let cpu = (r.get::<i64, _>("cpu") as f64 / 60_000.0).round() as i64;
        let memory = (r.get::<i64, _>("memory") as f64 / 61_440.0).round() as i64;
        for (meter, value) in [(&meters.cpu, cpu), (&meters.memory, memory)] {
            if meter.is_empty() || value <= 0 {
                continue;
            }
            let res = sqlx::query(
                "INSERT INTO usage_reports (identifier, scope, hour, meter, value) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(format!("{scope}:{hour}:{meter}"))
            .bind(&scope)
            .bind(hour)
            .bind(meter)
            .bind(value)
            .execute(db.pool())
            .await
            .context("fixing a usage report")?;
            added += res.rows_affected() as usize;
        }
    }
    Ok(added)
}

/// Meter events fixed and not yet accepted by Stripe, oldest first.
///
/// Only hours within [`REPORT_WINDOW_SECONDS`] of `now` are sent: Stripe refuses meter events
/// much older, and a reporter does not pick up rows fixed with a clock far from its own (a
/// test's).
pub async fn unsent(db: &Db, now: i64) -> Result<Vec<Report>> {
    let rows = sqlx::query(
        "SELECT identifier, scope, hour, meter, value FROM usage_reports WHERE sent_at IS NULL AND hour >= $1 AND hour <= $2 \
         ORDER BY hour, identifier",
    )
    .bind(now - REPORT_WINDOW_SECONDS)
    .bind(now)
    .fetch_all(db.pool())
    .await
    .context("reading unsent usage reports")?;
    Ok(rows
        .iter()
        .map(|r| Report {
            identifier: r.get("identifier"),
            scope: r.get("scope"),
            hour: r.get("hour"),
            meter: r.get("meter"),
            value: r.get("value"),
        })
        .collect())
}

/// Marks a meter event accepted by Stripe.
pub async fn mark_sent(db: &Db, identifier: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE usage_reports SET sent_at = $1 WHERE identifier = $2")
        .bind(now)
        .bind(identifier)
        .execute(db.pool())
        .await
        .context("marking a usage report sent")?;
    Ok(())
}

/// Fixes the reports of closed hours and sends every unsent one; returns how many Stripe
/// accepted. A failure stops the round (the rest is sent next time, with the same identifiers).
pub async fn report(db: &Db, stripe: &StripeApi, meters: &Meters, now: i64) -> Result<usize> {
    fix_reports(db, meters, now).await?;
    let customers: HashMap<String, String> = account::with_customer(db)
        .await?
        .into_iter()
        .filter_map(|a| a.customer_id.map(|c| (a.scope, c)))
        .collect();
    let mut sent = 0;
    for r in unsent(db, now).await? {
        let Some(customer) = customers.get(&r.scope) else {
            continue;
        };
        // The event's time is inside its hour: the last second of it.
        stripe
            .meter_event(&r.meter, customer, r.value as u64, &r.identifier, r.hour + 3599)
            .await
            .with_context(|| format!("sending usage {} to Stripe", r.identifier))?;
        mark_sent(db, &r.identifier, now).await?;
        sent += 1;
    }
    Ok(sent)
}

/// Samples what runs every `interval` and records it; reports closed hours every few minutes.
///
/// Time is cut into slots of `interval`; in each slot the replica that claims it ([`claim_slot`])
/// records what runs now for the whole slot. Slots in which no replica ran are not counted: what
/// ran then is not known.
pub fn spawn(
    state: AppState,
    stripe: StripeApi,
    meters: Meters,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let seconds = interval.as_secs().max(1) as i64;
        let mut tick = tokio::time::interval(interval / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_slot = None;
        let mut last_report = 0i64;
        loop {
            tick.tick().await;
            let now = crate::db::now();
            let slot = now.div_euclid(seconds);
            if last_slot != Some(slot) {
                last_slot = Some(slot);
                let recorded = async {
                    if claim_slot(&state.db, slot, now).await? {
                        record(&state.db, &observe(&state), slot * seconds, (slot + 1) * seconds).await?;
                    }
                    anyhow::Ok(())
                };
                if let Err(e) = recorded.await {
                    tracing::warn!(error = format!("{e:#}"), "billing: recording usage failed");
                }
            }
            if now - last_report >= 300 {
                last_report = now;
                match report(&state.db, &stripe, &meters, now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "billing: usage reported to Stripe's meters"),
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        "billing: reporting usage failed; retried in 5 minutes"
                    ),
                }
                if let Err(e) = purge_slots(&state.db, now - REPORT_WINDOW_SECONDS).await {
                    tracing::warn!(error = format!("{e:#}"), "billing: purging usage sample claims failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(requests: Option<(&str, &str)>, limits: Option<(&str, &str)>) -> crds::template::ServiceSpec {
        let list = |(cpu, memory): (&str, &str)| crds::template::ResourceList {
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
        };
        serde_json::from_value(serde_json::json!({"name": "web", "image": "nginx", "port": 80}))
            .map(|mut s: crds::template::ServiceSpec| {
                if requests.is_some() || limits.is_some() {
                    s.resources = Some(crds::template::ServiceResources {
                        requests: requests.map(list),
                        limits: limits.map(list),
                    });
                }
                s
            })
            .unwrap()
    }

    #[test]
    fn requests_then_limits_then_the_sandbox_defaults() {
        assert_eq!(
            pod_requests(&service(Some(("250m", "256Mi")), Some(("1", "1Gi")))),
            (250, 256)
        );
        assert_eq!(pod_requests(&service(None, Some(("1", "1Gi")))), (1000, 1024));
        assert_eq!(pod_requests(&service(None, None)), (100, 128));
    }
}
