//! Apps over their sandbox's deployment limit: which ones are suspended, and why.
//!
//! A sandbox whose limit drops below the number of its apps (a downgrade, a lowered
//! `spec.quotaOverrides.deployments`) loses nothing: its ResourceQuota refuses new apps, and the
//! apps beyond the limit are suspended, newest first. The oldest `limit` apps run; the others
//! keep every object and their spec, with their Deployments scaled to zero and a `Suspended`
//! condition that says why. When the limit allows them again (an upgrade, an older app deleted)
//! they run with their spec's replicas again.
//!
//! Age is `metadata.creationTimestamp` (an app without one counts as the newest), then the name
//! (creation times have a resolution of one second). Apps being deleted do not count: the one that
//! goes frees its place at once.

use std::collections::BTreeMap;

use crds::{Plan, UserSandboxSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::build::deployment::DeploymentChildren;

/// Condition type of a UserDeployment suspended for its sandbox's deployment limit: True while
/// it is, False once it runs again (kept, not removed, as the API conventions ask: a condition
/// that went away reads as Unknown). Apps never suspended do not carry it.
pub const SUSPENDED: &str = "Suspended";
/// Reason of `Suspended` True (and of `Degraded` True): the sandbox has more apps than its limit
/// and this one is among the newest.
pub const PLAN_LIMIT_EXCEEDED: &str = "PlanLimitExceeded";
/// Reason of `Suspended` False: the limit allows the app again.
pub const WITHIN_PLAN_LIMIT: &str = "WithinPlanLimit";
/// Reason of the Normal event published when a suspended app runs again.
pub const RESUMED: &str = "Resumed";

/// A sandbox's deployment limit and where it comes from (the message names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentLimit {
    /// Most UserDeployments (`None`: unlimited).
    pub most: Option<i32>,
    /// The sandbox's plan.
    pub plan: Plan,
    /// Whether `spec.quotaOverrides.deployments` sets it rather than the plan.
    pub overridden: bool,
}

impl DeploymentLimit {
    /// The limit of a sandbox ([`Plan::deployment_limit`]).
    pub fn of(spec: &UserSandboxSpec) -> DeploymentLimit {
        let override_limit = spec.quota_overrides.as_ref().and_then(|o| o.deployments);
        DeploymentLimit {
            most: spec.plan.deployment_limit(override_limit),
            plan: spec.plan,
            overridden: override_limit.is_some(),
        }
    }
}

/// Why one app is suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    /// The sandbox's limit (a number: an unlimited sandbox suspends nothing).
    pub allowed: i32,
    /// The sandbox's plan.
    pub plan: Plan,
    /// Whether the limit is the sandbox's override rather than the plan's.
    pub overridden: bool,
    /// The app's place by age among the counted apps, from 1 (the oldest).
    pub position: usize,
    /// How many apps count (those not being deleted).
    pub counted: usize,
}

impl Suspension {
    /// One sentence for the conditions and the event: the limit, the app's place, what to do.
    pub fn message(&self) -> String {
        let n = self.allowed;
        let deployments = if n == 1 { "deployment" } else { "deployments" };
        let place = if self.position == self.counted {
            format!("the newest of {}", self.counted)
        } else {
            format!("number {} of {} by age", self.position, self.counted)
        };
        if self.overridden {
            format!(
                "this sandbox's limit (spec.quotaOverrides.deployments) allows {n} {deployments} and this is {place}; \
                 it is scaled to zero until the limit allows it again (raise the limit or delete another app)"
            )
        } else {
            format!(
                "the {} plan allows {n} {deployments} and this is {place}; it is scaled to zero until the plan \
                 allows it again (upgrade the plan or delete another app)",
                self.plan.as_str()
            )
        }
    }
}

/// Which apps of one sandbox are suspended, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    suspended: BTreeMap<String, Suspension>,
}

impl Decision {
    /// Why the app `name` is suspended; `None` when it runs (or is not counted).
    pub fn suspension(&self, name: &str) -> Option<&Suspension> {
        self.suspended.get(name)
    }

    /// Whether the app `name` is suspended.
    pub fn is_suspended(&self, name: &str) -> bool {
        self.suspended.contains_key(name)
    }

    /// Whether no app is suspended.
    pub fn is_empty(&self) -> bool {
        self.suspended.is_empty()
    }

    /// The names of the suspended apps.
    pub fn suspended(&self) -> impl Iterator<Item = &str> {
        self.suspended.keys().map(String::as_str)
    }
}

/// Decides which of a sandbox's apps (`apps`: the metadata of every UserDeployment in its
/// namespace) run under `limit`: the oldest `limit` of those not being deleted run, the rest are
/// suspended. Unlimited: none is.
pub fn decide<'a>(limit: DeploymentLimit, apps: impl IntoIterator<Item = &'a ObjectMeta>) -> Decision {
    let Some(allowed) = limit.most else {
        return Decision::default();
    };
    let mut counted: Vec<&ObjectMeta> = apps.into_iter().filter(|m| m.deletion_timestamp.is_none()).collect();
    let keep = usize::try_from(allowed).unwrap_or(0);
    if counted.len() <= keep {
        return Decision::default();
    }
    counted.sort_by_key(|m| age_key(m));
    let total = counted.len();
    let suspended = counted
        .iter()
        .enumerate()
        .skip(keep)
        .map(|(i, m)| {
            (
                m.name.clone().unwrap_or_default(),
                Suspension {
                    allowed,
                    plan: limit.plan,
                    overridden: limit.overridden,
                    position: i + 1,
                    counted: total,
                },
            )
        })
        .collect();
    Decision { suspended }
}

/// Ordering key: older first; an app without a creation time counts as the newest; then name.
fn age_key(meta: &ObjectMeta) -> (bool, Option<i128>, &str) {
    let created = meta.creation_timestamp.as_ref().map(|t| t.0.as_nanosecond());
    (created.is_none(), created, meta.name.as_deref().unwrap_or_default())
}

/// Scales a suspended app's Deployments to zero. Everything else stays as built from the spec
/// (Services, route, policies, disruption budgets: nothing is deleted), and the spec itself is
/// untouched, so the app resumes with its own replicas when the build no longer goes through here.
pub fn scale_to_zero(children: &mut DeploymentChildren) {
    for d in &mut children.deployments {
        if let Some(spec) = d.spec.as_mut() {
            spec.replicas = Some(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn app(name: &str, created: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("sandbox-alice".into()),
            creation_timestamp: created.map(|c| Time(c.parse().unwrap())),
            ..Default::default()
        }
    }

    fn limit(plan: Plan, override_limit: Option<i32>) -> DeploymentLimit {
        DeploymentLimit {
            most: plan.deployment_limit(override_limit),
            plan,
            overridden: override_limit.is_some(),
        }
    }

    fn suspended(d: &Decision) -> Vec<&str> {
        d.suspended().collect()
    }

    const T1: &str = "2026-01-01T10:00:00Z";
    const T2: &str = "2026-01-01T11:00:00Z";
    const T3: &str = "2026-01-01T12:00:00Z";

    #[test]
    fn the_newest_beyond_the_limit_are_suspended() {
        // Listed in no particular order: the decision sorts by age.
        let apps = [app("c", Some(T3)), app("a", Some(T1)), app("b", Some(T2))];
        let d = decide(limit(Plan::Free, None), &apps);
        assert_eq!(suspended(&d), ["b", "c"]);
        assert!(!d.is_suspended("a") && d.suspension("a").is_none());
        let newest = d.suspension("c").unwrap();
        assert_eq!((newest.position, newest.counted, newest.allowed), (3, 3, 1));
        assert_eq!(
            newest.message(),
            "the free plan allows 1 deployment and this is the newest of 3; it is scaled to zero until the plan \
             allows it again (upgrade the plan or delete another app)"
        );
        assert_eq!(
            d.suspension("b").unwrap().message(),
            "the free plan allows 1 deployment and this is number 2 of 3 by age; it is scaled to zero until the \
             plan allows it again (upgrade the plan or delete another app)"
        );
        // Within the limit, or unlimited: none.
        assert_eq!(decide(limit(Plan::Business, None), &apps), Decision::default());
        assert_eq!(decide(limit(Plan::Enterprise, None), &apps), Decision::default());
        assert_eq!(decide(limit(Plan::Free, None), &apps[1..2]), Decision::default());
        assert_eq!(decide(limit(Plan::Free, None), std::iter::empty()), Decision::default());
    }

    #[test]
    fn the_name_breaks_ties_and_an_app_without_a_creation_time_is_the_newest() {
        // Created in the same second: the name decides, whatever the order of the list.
        let same = [app("zeta", Some(T1)), app("alpha", Some(T1))];
        assert_eq!(suspended(&decide(limit(Plan::Free, None), &same)), ["zeta"]);
        let unknown = [app("aaa", None), app("zzz", Some(T2))];
        assert_eq!(suspended(&decide(limit(Plan::Free, None), &unknown)), ["aaa"]);
    }

    #[test]
    fn an_app_being_deleted_frees_its_place() {
        let mut going = app("old", Some(T1));
        going.deletion_timestamp = Some(Time(T3.parse().unwrap()));
        let apps = [going, app("new", Some(T2))];
        assert_eq!(decide(limit(Plan::Free, None), &apps), Decision::default());
    }

    #[test]
    fn an_override_sets_the_limit_and_the_message_names_it() {
        let apps = [app("a", Some(T1)), app("b", Some(T2)), app("c", Some(T3))];
        // An override bounds even enterprise; zero suspends every app.
        let d = decide(limit(Plan::Enterprise, Some(2)), &apps);
        assert_eq!(suspended(&d), ["c"]);
        assert_eq!(
            d.suspension("c").unwrap().message(),
            "this sandbox's limit (spec.quotaOverrides.deployments) allows 2 deployments and this is the newest \
             of 3; it is scaled to zero until the limit allows it again (raise the limit or delete another app)"
        );
        assert_eq!(suspended(&decide(limit(Plan::Free, Some(0)), &apps)), ["a", "b", "c"]);
        assert_eq!(decide(limit(Plan::Free, Some(5)), &apps), Decision::default());
    }

    #[test]
    fn the_limit_of_a_sandbox_comes_from_its_plan_or_its_override() {
        let spec = |extra: serde_json::Value| -> UserSandboxSpec {
            let mut v = serde_json::json!({ "owner": { "userId": "alice" }, "namespace": "sandbox-alice" });
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(
            DeploymentLimit::of(&spec(serde_json::json!({}))),
            limit(Plan::Free, None)
        );
        assert_eq!(
            DeploymentLimit::of(&spec(serde_json::json!({ "plan": "enterprise" }))).most,
            None
        );
        let overridden = DeploymentLimit::of(&spec(
            serde_json::json!({ "plan": "business", "quotaOverrides": { "deployments": 3, "pods": 5 } }),
        ));
        assert_eq!((overridden.most, overridden.overridden), (Some(3), true));
        let other_override = DeploymentLimit::of(&spec(
            serde_json::json!({ "plan": "business", "quotaOverrides": { "pods": 5 } }),
        ));
        assert_eq!((other_override.most, other_override.overridden), (Some(10), false));
    }

    #[test]
    fn scaling_to_zero_touches_only_the_deployments_replicas() {
        let deployment = |replicas| Deployment {
            metadata: ObjectMeta {
                name: Some("shop-web".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            ..Default::default()
        };
        let service = Service {
            metadata: ObjectMeta {
                name: Some("shop-web".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut children = DeploymentChildren {
            deployments: vec![deployment(3), deployment(1)],
            services: vec![service.clone()],
            ..Default::default()
        };
        scale_to_zero(&mut children);
        assert_eq!(children.deployments, [deployment(0), deployment(0)]);
        assert_eq!(children.services, [service]);
    }
}
