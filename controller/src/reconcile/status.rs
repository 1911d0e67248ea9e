//! The status of a UserDeployment as a pure function of the resource, what was observed of its
//! children and pods, and the time: no client, no cache, no clock of its own. The reconciler
//! computes it and writes it only when it differs from what the API has.

use crds::conditions::{DEGRADED, PROGRESSING, READY, reasons};
use crds::deployment::ServiceStatus;
use crds::{DeploymentPhase, UserDeployment, UserDeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
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
    /// Why its pods do not become ready, from the pods, once it is stuck.
    pub stuck: Option<Diagnosis>,
    /// Why the Gateway refused its HTTPRoute.
    pub route_refusal: Option<String>,
    /// Hash of its children's names.
    pub children_hash: String,
}

impl Observed<'_> {
    /// Every service rolled out and available.
    pub fn ready(&self) -> bool {
        self.rollouts.iter().all(RolloutState::available)
    }
}

/// The status of a running (or starting) app.
pub fn running(ud: &UserDeployment, observed: Observed<'_>, now: &Time) -> UserDeploymentStatus {
    let ready = observed.ready();
    let Observed {
        app,
        rollouts,
        stuck,
        route_refusal,
        children_hash,
    } = observed;
    let services: Vec<ServiceStatus> = rollouts
        .iter()
        .zip(&app.services)
        .map(|(r, s)| ServiceStatus {
            name: s.spec.name.clone(),
            replicas: s.replicas,
            ready_replicas: r.ready,
            ..Default::default()
        })
        .collect();
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
    UserDeploymentStatus {
        phase: match (ready, &stuck) {
            (true, _) => DeploymentPhase::Ready,
            (false, Some(_)) => DeploymentPhase::Error,
            (false, None) => DeploymentPhase::Provisioning,
        },
        url: app.url(),
        services,
        observed_generation: generation,
        conditions: vec![
            condition(READY, ready, ready_reason, ready_msg),
            condition(PROGRESSING, !ready, progressing, String::new()),
            degraded,
        ],
        children_hash: Some(children_hash),
    }
}

/// The status of an app that cannot run: phase Error, Degraded with the reason; the services
/// and children hash as they were (running children are left alone).
pub fn refused(ud: &UserDeployment, invalid: &Invalid, now: &Time) -> UserDeploymentStatus {
    let previous = ud.status.clone().unwrap_or_default();
    let generation = ud.meta().generation;
    let p = &previous.conditions;
    let message = &invalid.message;
    UserDeploymentStatus {
        phase: DeploymentPhase::Error,
        url: None,
        conditions: vec![
            condition_at(p, READY, false, invalid.reason, message.clone(), generation, now),
            condition_at(p, PROGRESSING, false, invalid.reason, String::new(), generation, now),
            condition_at(p, DEGRADED, true, invalid.reason, message.clone(), generation, now),
        ],
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
            stuck: None,
            route_refusal: None,
            children_hash: "h".into(),
        }
    }

    fn reason(s: &UserDeploymentStatus, type_: &str) -> (String, String) {
        let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.clone(), c.reason.clone())
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
            stuck: Some(Diagnosis {
                reason: crate::diagnose::reasons::IMAGE_PULL_FAILED,
                message: "db: not found".into(),
            }),
            route_refusal: Some("Gateway gw refused".into()),
            ..observed(&vd, &one_waiting)
        };
        let stuck = running(&ud, stuck, &now);
        assert_eq!(stuck.phase, DeploymentPhase::Error);
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
