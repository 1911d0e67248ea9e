//! Apps over their sandbox's deployment limit (see `policy::suspend` for the rule): what the
//! controller remembers of its decisions, and who is reconciled again when they may change.
//!
//! Each app's reconcile decides for itself from the caches (its sandbox, the apps of its
//! namespace: no extra LIST). The same decision can change for another app of the namespace (a
//! tie in creation times, an app this process has not reconciled yet), so a reconcile also
//! reconciles again every neighbour whose last decision differs. Besides that, two events change
//! decisions without any reconcile of the apps concerned:
//! - a new limit (plan or override): the UserDeployment controller's sandbox watch triggers the
//!   namespace's apps, and the sandbox reconciler does it again once it has applied the new
//!   quota ([`retrigger_namespace`]), in case an app was reconciled before this process's
//!   sandbox cache had the new spec (the trigger and the cache come from two watches);
//! - an app deleted (or starting to be): the suspended apps of its namespace are reconciled
//!   again ([`Noted::in_namespace`], from the UserDeployment watch).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crds::{UserDeployment, UserSandbox};
use kube::runtime::reflector::ObjectRef;
use policy::suspend::{Decision, DeploymentLimit, decide};

use super::Context;

/// The apps this process last decided to suspend. Small (only suspended apps), filled by the
/// reconciles; after a restart the first reconcile of every app fills it again.
#[derive(Default)]
pub struct Noted(Mutex<HashSet<ObjectRef<UserDeployment>>>);

impl Noted {
    fn lock(&self) -> MutexGuard<'_, HashSet<ObjectRef<UserDeployment>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the decision for `r`.
    pub fn note(&self, r: &ObjectRef<UserDeployment>, suspended: bool) {
        let mut set = self.lock();
        if suspended {
            set.insert(r.clone());
        } else if set.remove(r) {
            set.shrink_to_fit();
        }
    }

    /// Whether `r` was last decided suspended.
    pub fn contains(&self, r: &ObjectRef<UserDeployment>) -> bool {
        self.lock().contains(r)
    }

    /// The suspended apps of `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef<UserDeployment>> {
        self.lock()
            .iter()
            .filter(|r| r.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }
}

/// The decision for the apps of `sb`'s namespace (`apps`: the cached UserDeployments there).
pub fn decision(sb: &UserSandbox, apps: &[Arc<UserDeployment>]) -> Decision {
    decide(DeploymentLimit::of(&sb.spec), apps.iter().map(|a| &a.metadata))
}

/// Reconciles again every app of `namespace` (other than `me`) whose last noted decision
/// differs from `decision`: decided suspended but not noted, or noted but no longer suspended
/// (resumed, or gone). Its cost is the number of suspended apps, not of the namespace's apps: at
/// a thousand apps per sandbox (`hack/bench`) nothing is allocated or locked per app.
pub fn retrigger_changed(ctx: &Context, namespace: &str, decision: &Decision, me: Option<&ObjectRef<UserDeployment>>) {
    let noted = ctx.suspended.in_namespace(namespace);
    if noted.is_empty() && decision.is_empty() {
        return;
    }
    let others = |r: &ObjectRef<UserDeployment>| Some(r) != me;
    for name in decision.suspended() {
        let r = ObjectRef::new(name).within(namespace);
        if others(&r) && !noted.contains(&r) {
            ctx.conflicts.retrigger(r);
        }
    }
    for r in noted {
        if others(&r) && !decision.is_suspended(&r.name) {
            ctx.conflicts.retrigger(r);
        }
    }
}

/// After a sandbox's spec changed: reconciles again the apps of its namespace whose decision
/// changes under its limit now.
pub fn retrigger_namespace(ctx: &Context, sb: &UserSandbox) {
    let ns = &sb.spec.namespace;
    let apps = ctx
        .deployments
        .state_filter(|ud| ud.metadata.namespace.as_deref() == Some(ns.as_str()));
    retrigger_changed(ctx, ns, &decision(sb, &apps), None);
}
