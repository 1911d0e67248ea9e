//! The status of a UserDeployment as a pure function of the resource, what was observed of its
//! children and pods, and the time: no client, no cache, no clock of its own. The reconciler
//! computes it and writes it only when it differs from what the API has.

use crds::conditions::{DEGRADED, PROGRESSING, READY, reasons};
use crds::deployment::ServiceStatus;
use crds::{DeploymentPhase, UserDeployment, UserDeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use policy::suspend::{PLAN_LIMIT_EXCEEDED, RESUMED, SUSPENDED, Suspension, WITHIN_PLAN_LIMIT};
use policy::validate::{Invalid, ValidatedDeployment};

use super::condition_at;
use crate::child_cache::RolloutState;
use crate::diagnose::Diagnosis;

/// What was observed of an app that has its children.
pub struct Observed<'a> {
    /// The validated spec (services, replicas, URL).
    pub app: &'a ValidatedDeployment,
    /// The rollout of each service's Deployment, in the order of `app.services`.
    pub rollouts: &'a [RolloutState],
    /// Why each service's pods do not become ready, once it is stuck (in the order of
    /// `app.services`; empty or `None`: nothing found).
    pub problems: Vec<Option<Diagnosis>>,
    /// Why the Gateway refused its HTTPRoute.
    pub route_refusal: Option<String>,
    /// Hash of its children's names.
    pub children_hash: String,
    /// Why it is suspended, when its sandbox has more apps than its limit and it is among the
    /// newest (its Deployments are scaled to zero).
    pub suspension: Option<&'a Suspension>,
}

impl Observed<'_> {
    /// Every service rolled out and available.
    pub fn ready(&self) -> bool {
        self.rollouts.iter().all(RolloutState::available)
    }
}

/// Message of `Suspended` False: the app runs again.
pub const RESUMED_MESSAGE: &str =
    "the sandbox's deployment limit allows this app again; it runs with the replicas of its spec";

/// The status of a running (or starting) app, or of one suspended for its sandbox's limit.
pub fn running(ud: &UserDeployment, observed: Observed<'_>, now: &Time) -> UserDeploymentStatus {
    if let Some(suspension) = observed.suspension {
        return suspended(
            ud,
            observed.app,
            observed.rollouts,
            observed.children_hash,
            suspension,
            now,
        );
    }
    let ready = observed.ready();
    let Observed {
        app,
        rollouts,
        problems,
        route_refusal,
        children_hash,
        suspension: _,
    } = observed;
    let services: Vec<ServiceStatus> = rollouts
        .iter()
        .zip(&app.services)
        .enumerate()
        .map(|(i, (r, s))| {
            let problem = problems.get(i).and_then(Option::as_ref);
            ServiceStatus {
                name: s.spec.name.clone(),
                replicas: s.replicas,
                ready_replicas: r.ready,
                reason: problem.map(|d| d.reason.to_string()),
                message: problem.map(|d| d.message.clone()),
                hint: problem.map(|d| d.hint.to_string()),
            }
        })
        .collect();
    // The first failing service explains the app's conditions (each service has its own in
    // `services`); the message names the service when the app has several.
    let stuck: Option<Diagnosis> = problems.iter().enumerate().find_map(|(i, p)| {
        p.as_ref().map(|d| Diagnosis {
            message: match app.services.get(i) {
                Some(s) if app.services.len() > 1 => format!("service {}: {}", s.spec.name, d.message),
                _ => d.message.clone(),
            },
            ..d.clone()
        })
    });
    let previous = ud.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = ud.meta().generation;
    let condition =
        |type_, status, reason, message| condition_at(previous, type_, status, reason, message, generation, now);
    let (ready_reason, ready_msg) = match (ready, ud.spec.suspend, &stuck) {
        (true, true, _) => (
            reasons::SUSPENDED,
            "suspended: every service is scaled to zero".to_string(),
        ),
        (true, false, _) => (reasons::AVAILABLE, "every service is available".to_string()),
        (false, _, Some(d)) => (d.reason, d.message.clone()),
        (false, _, None) => {
            // Every service not rolled out, also one whose pods are all ready but old (a
            // rollout replacing them): the list is never empty while the app is not Ready.
            let waiting: Vec<String> = services
                .iter()
                .zip(rollouts)
                .filter(|(_, r)| !r.available())
                .map(|(s, r)| {
                    let detail = if r.observed_generation < r.generation {
                        " (rollout starting)".to_string()
                    } else if s.ready_replicas >= s.replicas && r.updated < r.desired {
                        format!(" ({}/{} updated)", r.updated, r.desired)
                    } else {
                        String::new()
                    };
                    format!("{} {}/{}{detail}", s.name, s.ready_replicas, s.replicas)
                })
                .collect();
            (
                reasons::ROLLING_OUT,
                format!("waiting for pods: {}", waiting.join(", ")),
            )
        }
    };
    let progressing = if ready {
        reasons::AVAILABLE
    } else {
        reasons::ROLLING_OUT
    };
    // A failing service explains more than a refused route: it wins.
    let degraded = match (&stuck, route_refusal) {
        (Some(d), _) => condition(DEGRADED, true, d.reason, d.message.clone()),
        (None, Some(why)) => condition(DEGRADED, true, reasons::ROUTE_NOT_ACCEPTED, why),
        (None, None) => condition(DEGRADED, false, reasons::AS_EXPECTED, String::new()),
    };
    let mut conditions = vec![
        condition(READY, ready, ready_reason, ready_msg),
        condition(PROGRESSING, !ready, progressing, String::new()),
        degraded,
    ];
    // Once suspended, an app keeps the condition, False, when it runs again.
    if previous.iter().any(|c| c.type_ == SUSPENDED) {
        conditions.push(condition(
            SUSPENDED,
            false,
            WITHIN_PLAN_LIMIT,
            RESUMED_MESSAGE.to_string(),
        ));
    }
    UserDeploymentStatus {
        phase: match (ready, &stuck) {
            (true, _) => DeploymentPhase::Ready,
            (false, Some(_)) => DeploymentPhase::Error,
            (false, None) => DeploymentPhase::Provisioning,
        },
        url: app.url(),
        services,
        observed_generation: generation,
        conditions,
        children_hash: Some(children_hash),
    }
}

/// The status of an app suspended for its sandbox's deployment limit: phase Error with Degraded
/// True (it cannot reach what its spec asks, like a refused app: Argo CD's health check and the
/// web UI show it as needing action, with the message), Ready False for reason `Suspended`, and
/// `Suspended` True with reason `PlanLimitExceeded`. Its services' desired replicas are what
/// runs now: zero. The URL stays: the app keeps its host and route.
fn suspended(
    ud: &UserDeployment,
    app: &ValidatedDeployment,
    rollouts: &[RolloutState],
    children_hash: String,
    suspension: &Suspension,
    now: &Time,
) -> UserDeploymentStatus {
    let previous = ud.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = ud.meta().generation;
    let condition =
        |type_, status, reason, message| condition_at(previous, type_, status, reason, message, generation, now);
    let message = suspension.message();
    UserDeploymentStatus {
        phase: DeploymentPhase::Error,
        url: app.url(),
        services: rollouts
            .iter()
            .zip(&app.services)
            .map(|(r, s)| ServiceStatus {
                name: s.spec.name.clone(),
                replicas: 0,
                ready_replicas: r.ready,
                ..Default::default()
            })
            .collect(),
        observed_generation: generation,
        conditions: vec![
            condition(READY, false, reasons::SUSPENDED, message.clone()),
            condition(PROGRESSING, false, reasons::SUSPENDED, String::new()),
            condition(DEGRADED, true, PLAN_LIMIT_EXCEEDED, message.clone()),
            condition(SUSPENDED, true, PLAN_LIMIT_EXCEEDED, message),
        ],
        children_hash: Some(children_hash),
    }
}

/// An event to publish about a status change: (Warning?, reason, note).
pub type Transition = (bool, String, String);

/// The events a status change deserves, for `kubectl describe`: a Warning `Suspended` when an
/// app is suspended for its sandbox's limit and Normal `Resumed` when it runs again, a Warning
/// for every service that starts failing (or fails for a new reason), Normal `Available` when an
/// app that had a status becomes Ready, Normal `RollingOut` when a Ready app starts a rollout. A
/// new app that becomes Ready at once gets none (its creation says enough: one write per new app).
pub fn transitions(previous: Option<&UserDeploymentStatus>, next: &UserDeploymentStatus) -> Vec<Transition> {
    let mut out = Vec::new();
    let suspended_of = |s: &UserDeploymentStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == SUSPENDED)
            .map(|c| (c.status == "True", c.message.clone()))
    };
    let was_suspended = previous.and_then(suspended_of).is_some_and(|(s, _)| s);
    match suspended_of(next) {
        Some((true, message)) if !was_suspended => out.push((true, reasons::SUSPENDED.into(), message)),
        Some((false, message)) if was_suspended => out.push((false, RESUMED.into(), message)),
        _ => {}
    }
    let ready_of = |s: &UserDeploymentStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status == "True", c.message.clone()))
    };
    for s in &next.services {
        let Some(reason) = &s.reason else { continue };
        let before = previous
            .and_then(|p| p.services.iter().find(|b| b.name == s.name))
            .and_then(|b| b.reason.as_ref());
        if before != Some(reason) {
            let message = s.message.as_deref().unwrap_or_default();
            out.push((true, reason.clone(), format!("service {}: {message}", s.name)));
        }
    }
    let Some(previous) = previous else { return out };
    match (ready_of(previous), ready_of(next)) {
        (Some((false, _)), Some((true, message))) => out.push((false, reasons::AVAILABLE.into(), message)),
        (Some((true, _)), Some((false, message))) if out.is_empty() => {
            out.push((false, reasons::ROLLING_OUT.into(), message))
        }
        _ => {}
    }
    out
}

/// The status of an app that cannot run: phase Error, Degraded with the reason; the services
/// and children hash as they were (running children are left alone).
pub fn refused(ud: &UserDeployment, invalid: &Invalid, now: &Time) -> UserDeploymentStatus {
    let previous = ud.status.clone().unwrap_or_default();
    let generation = ud.meta().generation;
    let p = &previous.conditions;
    let message = &invalid.message;
    let mut conditions = vec![
        condition_at(p, READY, false, invalid.reason, message.clone(), generation, now),
        condition_at(p, PROGRESSING, false, invalid.reason, String::new(), generation, now),
        condition_at(p, DEGRADED, true, invalid.reason, message.clone(), generation, now),
    ];
    // A refusal says nothing about the deployment limit: a `Suspended` condition stays as it was.
    conditions.extend(p.iter().find(|c| c.type_ == SUSPENDED).cloned());
    UserDeploymentStatus {
        phase: DeploymentPhase::Error,
        url: None,
        conditions,
        observed_generation: generation,
        ..previous
    }
}

/// The status of an app being deleted: as it was, phase Deleting.
pub fn deleting(ud: &UserDeployment) -> UserDeploymentStatus {
    UserDeploymentStatus {
        phase: DeploymentPhase::Deleting,
        ..ud.status.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::settings::Settings;
    use serde_json::json;

    fn app(extra: serde_json::Value) -> UserDeployment {
        let mut spec = json!({ "services": [
            { "name": "web", "image": "ghcr.io/x/web:1", "port": 8080 },
            { "name": "db", "image": "ghcr.io/x/db:1", "port": 5432 },
        ] });
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
            "metadata": { "name": "shop", "namespace": "sb", "uid": "u", "generation": 3 },
            "spec": spec,
        }))
        .unwrap()
    }

    fn validated(ud: &UserDeployment) -> ValidatedDeployment {
        policy::validate::validate_deployment(ud, None, "alice", &Settings::with_domain("example.com")).unwrap()
    }

    fn rollout(ready: i32) -> RolloutState {
        RolloutState {
            desired: 1,
            generation: 1,
            observed_generation: 1,
            replicas: 1,
            updated: 1,
            available: ready,
            ready,
            replica_failure: false,
        }
    }

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn observed<'a>(vd: &'a ValidatedDeployment, rollouts: &'a [RolloutState]) -> Observed<'a> {
        Observed {
            app: vd,
            rollouts,
            problems: Vec::new(),
            route_refusal: None,
            children_hash: "h".into(),
            suspension: None,
        }
    }

    fn reason(s: &UserDeploymentStatus, type_: &str) -> (String, String) {
        let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn transitions_give_one_event_each() {
        let ud = app(json!({}));
        let vd = validated(&ud);
        let now = at("2026-11-29T10:00:00Z");
        let (waiting, all) = ([rollout(1), rollout(0)], [rollout(1), rollout(1)]);
        let failing = |reason: &'static str| Observed {
            problems: vec![
                None,
                Some(Diagnosis {
                    reason,
                    message: "it broke".into(),
                    hint: "fix it",
                }),
            ],
            ..observed(&vd, &waiting)
        };
        let ready = running(&ud, observed(&vd, &all), &now);
        // A new app Ready at once: nothing to say.
        assert_eq!(transitions(None, &ready), vec![]);
        let provisioning = running(&ud, observed(&vd, &waiting), &now);
        assert_eq!(transitions(None, &provisioning), vec![]);
        let pull = running(&ud, failing(crate::diagnose::reasons::IMAGE_PULL_FAILED), &now);
        assert_eq!(
            transitions(Some(&provisioning), &pull),
            vec![(true, "ImagePullFailed".into(), "service db: it broke".into())]
        );
        // The same reason again: no new event; a new reason: one.
        assert_eq!(transitions(Some(&pull), &pull), vec![]);
        let crash = running(&ud, failing(crate::diagnose::reasons::CRASH_LOOPING), &now);
        assert_eq!(transitions(Some(&pull), &crash).len(), 1);
        assert_eq!(
            transitions(Some(&crash), &ready),
            vec![(false, reasons::AVAILABLE.into(), "every service is available".into())]
        );
        assert_eq!(
            transitions(Some(&ready), &provisioning),
            vec![(false, reasons::ROLLING_OUT.into(), "waiting for pods: db 0/1".into())]
        );
        // Ready and failing at once (a Ready app whose pods start crashing): the Warning only.
        assert_eq!(transitions(Some(&ready), &crash).len(), 1);
    }

    #[test]
    fn ready_rolling_out_stuck_and_refused_routes() {
        let ud = app(json!({}));
        let vd = validated(&ud);
        let now = at("2026-11-29T10:00:00Z");
        let ready = running(&ud, observed(&vd, &[rollout(1), rollout(1)]), &now);
        assert_eq!(ready.phase, DeploymentPhase::Ready);
        assert_eq!(ready.url.as_deref(), Some("https://alice-shop.example.com"));
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(reason(&ready, READY), ("True".into(), reasons::AVAILABLE.into()));
        assert_eq!(reason(&ready, DEGRADED), ("False".into(), reasons::AS_EXPECTED.into()));

        let waiting = running(&ud, observed(&vd, &[rollout(1), rollout(0)]), &now);
        assert_eq!(waiting.phase, DeploymentPhase::Provisioning);
        let c = waiting.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(c.message, "waiting for pods: db 0/1");

        // A rollout: every pod ready, but the old ones; then the new spec not yet observed.
        let updating = RolloutState {
            generation: 2,
            observed_generation: 2,
            updated: 0,
            ..rollout(1)
        };
        let unobserved = RolloutState {
            generation: 3,
            ..rollout(1)
        };
        let rolling = running(&ud, observed(&vd, &[updating, unobserved]), &now);
        let c = rolling.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(
            c.message,
            "waiting for pods: web 1/1 (0/1 updated), db 1/1 (rollout starting)"
        );

        let (one_waiting, all_ready) = ([rollout(1), rollout(0)], [rollout(1), rollout(1)]);
        let stuck = Observed {
            problems: vec![
                None,
                Some(Diagnosis {
                    reason: crate::diagnose::reasons::IMAGE_PULL_FAILED,
                    message: "image x cannot be pulled: not found".into(),
                    hint: "check the image",
                }),
            ],
            route_refusal: Some("Gateway gw refused".into()),
            ..observed(&vd, &one_waiting)
        };
        let stuck = running(&ud, stuck, &now);
        assert_eq!(stuck.phase, DeploymentPhase::Error);
        // The failing service carries its own reason, sentence and hint; the other none.
        let db = &stuck.services[1];
        assert_eq!(
            (db.reason.as_deref(), db.message.as_deref(), db.hint.as_deref()),
            (
                Some(crate::diagnose::reasons::IMAGE_PULL_FAILED),
                Some("image x cannot be pulled: not found"),
                Some("check the image")
            )
        );
        assert_eq!(stuck.services[0].reason, None);
        let c = stuck.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(c.message, "service db: image x cannot be pulled: not found");
        assert_eq!(
            reason(&stuck, DEGRADED),
            ("True".into(), crate::diagnose::reasons::IMAGE_PULL_FAILED.into()),
            "a failing service wins over a refused route"
        );

        let refused_route = Observed {
            route_refusal: Some("Gateway gw refused".into()),
            ..observed(&vd, &all_ready)
        };
        let refused_route = running(&ud, refused_route, &now);
        assert_eq!(refused_route.phase, DeploymentPhase::Ready);
        assert_eq!(
            reason(&refused_route, DEGRADED),
            ("True".into(), reasons::ROUTE_NOT_ACCEPTED.into())
        );

        let suspended = app(json!({ "suspend": true }));
        let vd = validated(&suspended);
        let scaled_to_zero = RolloutState {
            desired: 0,
            replicas: 0,
            updated: 0,
            ..rollout(0)
        };
        let s = running(&suspended, observed(&vd, &[scaled_to_zero, scaled_to_zero]), &now);
        assert_eq!(s.phase, DeploymentPhase::Ready);
        assert_eq!(reason(&s, READY).1, reasons::SUSPENDED);
    }

    #[test]
    fn a_suspension_is_reported_once_and_kept_false_after_it() {
        let mut ud = app(json!({}));
        let vd = validated(&ud);
        let suspension = Suspension {
            allowed: 1,
            plan: crds::Plan::Free,
            overridden: false,
            position: 2,
            counted: 2,
        };
        let zero = RolloutState {
            desired: 0,
            replicas: 0,
            updated: 0,
            ..rollout(0)
        };
        let now = at("2026-11-29T10:00:00Z");
        let suspended = running(
            &ud,
            Observed {
                suspension: Some(&suspension),
                ..observed(&vd, &[zero, zero])
            },
            &now,
        );
        assert_eq!(suspended.phase, DeploymentPhase::Error);
        assert_eq!(reason(&suspended, READY), ("False".into(), reasons::SUSPENDED.into()));
        assert_eq!(
            reason(&suspended, DEGRADED),
            ("True".into(), PLAN_LIMIT_EXCEEDED.into())
        );
        assert_eq!(
            reason(&suspended, SUSPENDED),
            ("True".into(), PLAN_LIMIT_EXCEEDED.into())
        );
        assert_eq!(suspended.url.as_deref(), Some("https://alice-shop.example.com"));
        // Even a new app suspended at once gets the Warning: nobody asked for it to stop.
        assert_eq!(
            transitions(None, &suspended),
            vec![(true, reasons::SUSPENDED.into(), suspension.message())]
        );
        assert_eq!(transitions(Some(&suspended), &suspended), vec![]);
        // A refusal meanwhile keeps the condition as it was.
        ud.status = Some(suspended.clone());
        let invalid = Invalid {
            reason: reasons::TEMPLATE_NOT_FOUND,
            message: "gone".into(),
        };
        let refused = refused(&ud, &invalid, &at("2026-11-29T10:30:00Z"));
        assert_eq!(reason(&refused, SUSPENDED), ("True".into(), PLAN_LIMIT_EXCEEDED.into()));
        // Running again: False, not removed, with one Normal event (and Available).
        let later = at("2026-11-29T11:00:00Z");
        let resumed = running(&ud, observed(&vd, &[rollout(1), rollout(1)]), &later);
        assert_eq!(reason(&resumed, SUSPENDED), ("False".into(), WITHIN_PLAN_LIMIT.into()));
        let c = resumed.conditions.iter().find(|c| c.type_ == SUSPENDED).unwrap();
        assert_eq!(c.last_transition_time, later);
        assert_eq!(
            transitions(Some(&suspended), &resumed),
            vec![
                (false, RESUMED.into(), RESUMED_MESSAGE.into()),
                (false, reasons::AVAILABLE.into(), "every service is available".into())
            ]
        );
        ud.status = Some(resumed.clone());
        let again = running(
            &ud,
            observed(&vd, &[rollout(1), rollout(1)]),
            &at("2026-11-29T12:00:00Z"),
        );
        assert_eq!(again, resumed, "the False condition stays, unchanged");
        assert_eq!(transitions(Some(&resumed), &again), vec![]);
    }

    #[test]
    fn transition_times_move_only_with_the_condition() {
        let mut ud = app(json!({}));
        let vd = validated(&ud);
        let first = running(
            &ud,
            observed(&vd, &[rollout(1), rollout(0)]),
            &at("2026-11-29T10:00:00Z"),
        );
        ud.status = Some(first.clone());
        let same = running(
            &ud,
            observed(&vd, &[rollout(1), rollout(0)]),
            &at("2026-11-29T11:00:00Z"),
        );
        assert_eq!(same, first, "nothing changed: the same status, times included");
        let now = at("2026-11-29T12:00:00Z");
        let ready = running(&ud, observed(&vd, &[rollout(1), rollout(1)]), &now);
        let time = |s: &UserDeploymentStatus, t: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time(&ready, READY), now, "Ready flipped");
        assert_eq!(time(&ready, DEGRADED), time(&first, DEGRADED), "Degraded did not");
    }

    #[test]
    fn a_refused_app_keeps_its_services_and_children_hash() {
        let mut ud = app(json!({}));
        let vd = validated(&ud);
        ud.status = Some(running(
            &ud,
            observed(&vd, &[rollout(1), rollout(1)]),
            &at("2026-11-29T10:00:00Z"),
        ));
        let invalid = Invalid {
            reason: reasons::HOST_CONFLICT,
            message: "host taken".into(),
        };
        let s = refused(&ud, &invalid, &at("2026-11-29T11:00:00Z"));
        assert_eq!(s.phase, DeploymentPhase::Error);
        assert_eq!(s.url, None);
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.children_hash.as_deref(), Some("h"));
        assert_eq!(reason(&s, DEGRADED), ("True".into(), reasons::HOST_CONFLICT.into()));
        assert_eq!(deleting(&ud).phase, DeploymentPhase::Deleting);
    }
}
