//! The reconciler's write discipline, pinned against a recording fake of the API
//! ([`crate::fake_api`]), in milliseconds and without a cluster:
//! - a new app gets its children and exactly one status write (Ready: the fake rolls out at once);
//! - a repeat reconcile with nothing changed makes no write at all;
//! - a restart (new caches) over the existing objects makes no changing write;
//! - a changed parameter re-applies only the Deployment it reaches.
//!
//! `hack/bench` measures the same at scale on a real API server; these catch a regression in CI.

use std::sync::Arc;

use crds::{Template, UserDeployment, UserSandbox};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::{Conflicts, Context, Stores, deployment};
use crate::child_cache::ChildCache;
use crate::config::Config;
use crate::fake_api::{Call, FakeApi};
use crate::leader::Leader;
use crate::metrics::Metrics;

const NS: &str = "sandbox-alice";

fn sandbox() -> UserSandbox {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
        "metadata": { "name": "alice", "uid": "uid-sandbox", "creationTimestamp": "2026-01-01T00:00:00Z" },
        "spec": { "owner": { "userId": "alice", "email": "alice@example.com" }, "plan": "business", "namespace": NS },
        "status": { "namespace": NS, "conditions": [{ "type": "Ready", "status": "True", "reason": "Provisioned",
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" }] },
    }))
    .expect("sandbox")
}

fn template() -> Template {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "Template",
        "metadata": { "name": "shop", "namespace": NS },
        "spec": { "displayName": "Shop", "visibility": "private",
                  "parameters": [{ "name": "GREETING", "default": "hello" }],
                  "services": [
                      { "name": "web", "image": "ghcr.io/example/web:1", "port": 8080, "healthCheckPath": "/healthz" },
                      { "name": "db", "image": "ghcr.io/example/db:1", "port": 5432, "replicas": 2 },
                  ],
                  "ingress": { "service": "web" } },
    }))
    .expect("template")
}

fn app(greeting: &str) -> UserDeployment {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
        "metadata": { "name": "shop", "namespace": NS, "uid": "uid-shop", "generation": 1,
                      "creationTimestamp": "2026-01-01T00:00:01Z", "finalizers": [super::DEPLOYMENT_FINALIZER] },
        "spec": { "templateRef": { "name": "shop" }, "parameters": { "GREETING": greeting } },
    }))
    .expect("deployment")
}

/// A controller's context over `api`, with fresh caches (a process start) filled with `sandbox`
/// and `template` as its watches would.
fn context(api: &FakeApi) -> Arc<Context> {
    let (sandboxes, mut sb_writer) = reflector::store();
    sb_writer.apply_watcher_event(&Event::Apply(sandbox()));
    let (templates, mut t_writer) = reflector::store();
    t_writer.apply_watcher_event(&Event::Apply(template()));
    let (deployments, _) = reflector::store();
    let (retrigger, _) = futures::channel::mpsc::unbounded();
    Context::new(
        api.client(),
        Config::for_tests(),
        Leader::always(),
        Metrics::default(),
        Stores {
            sandboxes: sandboxes.clone(),
            all_sandboxes: sandboxes,
            templates,
            deployments,
        },
        children(),
        Conflicts::new(retrigger),
    )
}

/// A child cache whose watches have listed every kind (nothing there yet), as in a controller
/// that runs: it counts each app's children from then on.
fn children() -> Arc<ChildCache> {
    let cache = ChildCache::default();
    macro_rules! listed {
        ($($k:ty),*) => {$( cache.unwatched::<$k>(); )*};
    }
    crate::children::each_child_kind!(listed);
    Arc::new(cache)
}

/// Reconciles the stored `shop` as the controller would after a watch event; returns the
/// requests it made.
async fn reconcile(api: &FakeApi, ctx: &Arc<Context>) -> Vec<Call> {
    let ud: UserDeployment = api.get(NS, "shop").expect("the app is stored");
    deployment::reconcile(Arc::new(ud), ctx.clone())
        .await
        .expect("reconcile");
    api.take_calls()
}

fn writes(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.is_write()).collect()
}

fn changing(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.is_write() && c.changed).collect()
}

/// `resource/name` of every object a DELETE removed.
fn deleted(calls: &[Call]) -> Vec<String> {
    changing(calls)
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| format!("{}/{}", c.resource, c.name))
        .collect()
}

fn status_writes(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| c.is_write() && c.resource == "userdeployments/status")
        .count()
}

/// A new app: its children applied once each, then exactly one status write, Ready.
async fn new_app(api: &FakeApi, ctx: &Arc<Context>) {
    api.insert(&app("hi"));
    let calls = reconcile(api, ctx).await;
    let applied: Vec<String> = writes(&calls)
        .iter()
        .filter(|c| c.resource != "userdeployments/status")
        .map(|c| format!("{} {}/{}", c.method, c.resource, c.name))
        .collect();
    assert_eq!(
        applied,
        [
            "PATCH deployments/shop-web",
            "PATCH deployments/shop-db",
            "PATCH services/shop-web",
            "PATCH services/shop-db",
            "PATCH poddisruptionbudgets/shop-db",
            "PATCH networkpolicies/shop",
            "PATCH ingresses/shop",
        ],
        "{calls:#?}"
    );
    assert_eq!(status_writes(&calls), 1, "one status write for a new app: {calls:#?}");
    let ud: UserDeployment = api.get(NS, "shop").unwrap();
    let status = ud.status.expect("status written");
    assert_eq!(status.phase, crds::DeploymentPhase::Ready, "{status:?}");
    assert_eq!(status.url.as_deref(), Some("https://alice-shop.example.com"));
}

#[tokio::test]
async fn a_new_app_gets_one_status_write_and_a_repeat_reconcile_writes_nothing() {
    let api = FakeApi::default();
    let ctx = context(&api);
    new_app(&api, &ctx).await;
    for round in 0..3 {
        let calls = reconcile(&api, &ctx).await;
        assert!(
            writes(&calls).is_empty(),
            "round {round}: a reconcile with nothing changed wrote {:#?}",
            writes(&calls)
        );
    }
}

#[tokio::test]
async fn a_restart_over_existing_objects_makes_no_changing_write() {
    let api = FakeApi::default();
    new_app(&api, &context(&api)).await;
    // A new process: empty child cache, no notes of its own writes.
    let restarted = context(&api);
    let calls = reconcile(&api, &restarted).await;
    assert!(changing(&calls).is_empty(), "after a restart: {:#?}", changing(&calls));
    assert_eq!(status_writes(&calls), 0, "{calls:#?}");
    // And once it has applied everything, nothing more at all.
    let calls = reconcile(&api, &restarted).await;
    assert!(writes(&calls).is_empty(), "{:#?}", writes(&calls));
}

#[tokio::test]
async fn a_changed_parameter_reapplies_what_it_reaches() {
    let api = FakeApi::default();
    let ctx = context(&api);
    new_app(&api, &ctx).await;
    let mut ud: UserDeployment = api.get(NS, "shop").unwrap();
    ud.spec.parameters = [("GREETING".to_string(), "bye".to_string())].into_iter().collect();
    ud.metadata.generation = Some(2);
    api.insert(&ud);
    let calls = reconcile(&api, &ctx).await;
    let changed: Vec<String> = changing(&calls)
        .iter()
        .map(|c| format!("{}/{}", c.resource, c.name))
        .collect();
    // Parameters reach every container's env; the status follows the new generation.
    assert_eq!(
        changed,
        [
            "deployments/shop-web",
            "deployments/shop-db",
            "userdeployments/status/shop"
        ],
        "{calls:#?}"
    );
    assert!(
        writes(&calls).len() == changed.len(),
        "unchanged children are not re-applied: {:#?}",
        writes(&calls)
    );
}

/// 1 → 2 → 1 replicas faster than the status write of "2" reaches the cache: the reconcile of "1"
/// reads the status of the first "1" (the same children hash as now), yet the budget made for
/// "2" goes, because the child cache counts one child too many (seen in e2e as a budget left
/// behind).
#[tokio::test]
async fn a_child_left_by_a_change_the_cache_has_not_shown_is_pruned() {
    let api = FakeApi::default();
    let ctx = context(&api);
    api.insert(&app("hi"));
    let mut one: UserDeployment = api.get(NS, "shop").unwrap();
    one.spec.replicas = Some(1);
    api.insert(&one);
    reconcile(&api, &ctx).await;
    let first_status = api.get::<UserDeployment>(NS, "shop").unwrap().status;
    let mut two: UserDeployment = api.get(NS, "shop").unwrap();
    two.spec.replicas = Some(2);
    two.metadata.generation = Some(2);
    api.insert(&two);
    let calls = reconcile(&api, &ctx).await;
    assert!(
        calls
            .iter()
            .any(|c| c.method == "PATCH" && c.resource == "poddisruptionbudgets"),
        "{calls:#?}"
    );
    // Back to one, with the status the cache had before the write of "2".
    let mut stale: UserDeployment = api.get(NS, "shop").unwrap();
    stale.spec.replicas = Some(1);
    stale.metadata.generation = Some(3);
    stale.status = first_status;
    api.insert(&stale);
    let calls = reconcile(&api, &ctx).await;
    let deleted = deleted(&calls);
    assert_eq!(
        deleted,
        ["poddisruptionbudgets/shop-db", "poddisruptionbudgets/shop-web"],
        "{calls:#?}"
    );
}

#[tokio::test]
async fn scaling_to_one_replica_removes_the_disruption_budget() {
    let api = FakeApi::default();
    let ctx = context(&api);
    new_app(&api, &ctx).await;
    let mut ud: UserDeployment = api.get(NS, "shop").unwrap();
    ud.spec.replicas = Some(1);
    ud.metadata.generation = Some(2);
    api.insert(&ud);
    let calls = reconcile(&api, &ctx).await;
    let deleted = deleted(&calls);
    assert_eq!(deleted, ["poddisruptionbudgets/shop-db"], "{calls:#?}");
}

/// An app from the `shop` template named `name`, created at `created`.
fn app_named(name: &str, created: &str) -> UserDeployment {
    let mut ud = app("hi");
    ud.metadata.name = Some(name.into());
    ud.metadata.uid = Some(format!("uid-{name}"));
    ud.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created.parse().expect("time"),
    ));
    ud
}

/// A context whose sandbox cache can change (its writer) and whose retriggers are kept (the
/// receiver), over `apps` as the UserDeployment watch would have them.
struct Harness {
    ctx: Arc<Context>,
    sandboxes: reflector::store::Writer<UserSandbox>,
    retriggered: futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<UserDeployment>>,
}

impl Harness {
    fn new(api: &FakeApi, apps: &[UserDeployment]) -> Harness {
        let (sandboxes, mut sb_writer) = reflector::store();
        sb_writer.apply_watcher_event(&Event::Apply(sandbox()));
        let (templates, mut t_writer) = reflector::store();
        t_writer.apply_watcher_event(&Event::Apply(template()));
        let (deployments, mut d_writer) = reflector::store();
        for ud in apps {
            d_writer.apply_watcher_event(&Event::Apply(ud.clone()));
        }
        let (retrigger, retriggered) = futures::channel::mpsc::unbounded();
        let ctx = Context::new(
            api.client(),
            Config::for_tests(),
            Leader::always(),
            Metrics::default(),
            Stores {
                sandboxes: sandboxes.clone(),
                all_sandboxes: sandboxes,
                templates,
                deployments,
            },
            children(),
            Conflicts::new(retrigger),
        );
        Harness {
            ctx,
            sandboxes: sb_writer,
            retriggered,
        }
    }

    /// Patches the sandbox's plan, as `kubectl patch usersandbox alice --type merge -p
    /// '{"spec":{"plan":"free"}}'` would (a new generation).
    fn set_plan(&mut self, plan: crds::Plan, generation: i64) {
        let mut sb = sandbox();
        sb.spec.plan = plan;
        sb.metadata.generation = Some(generation);
        self.sandboxes.apply_watcher_event(&Event::Apply(sb));
    }

    /// The names of the apps retriggered since last asked.
    fn retriggered(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(r) = self.retriggered.try_recv() {
            out.push(r.name);
        }
        out
    }

    /// Reconciles the stored app `name`; returns the requests it made.
    async fn reconcile(&self, api: &FakeApi, name: &str) -> Vec<Call> {
        let ud: UserDeployment = api.get(NS, name).expect("the app is stored");
        deployment::reconcile(Arc::new(ud), self.ctx.clone())
            .await
            .expect("reconcile");
        api.take_calls()
    }
}

/// `resource/name` of every changing write but Events.
fn changed_objects(calls: &[Call]) -> Vec<String> {
    changing(calls)
        .iter()
        .filter(|c| c.resource != "events")
        .map(|c| format!("{}/{}", c.resource, c.name))
        .collect()
}

fn replicas(api: &FakeApi, name: &str) -> Option<i32> {
    let d: k8s_openapi::api::apps::v1::Deployment = api.get(NS, name).expect("the Deployment exists");
    d.spec.and_then(|s| s.replicas)
}

fn condition_of(ud: &UserDeployment, type_: &str) -> Option<(String, String, String)> {
    ud.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn a_downgrade_suspends_the_newest_app_and_an_upgrade_resumes_it() {
    use policy::suspend::{PLAN_LIMIT_EXCEEDED, SUSPENDED, WITHIN_PLAN_LIMIT};
    let api = FakeApi::default();
    let (shop, blog) = (
        app_named("shop", "2026-01-01T00:00:01Z"),
        app_named("blog", "2026-01-01T00:00:02Z"),
    );
    api.insert(&shop);
    api.insert(&blog);
    let mut h = Harness::new(&api, &[shop, blog]);
    // On business (10 deployments) both run.
    for name in ["shop", "blog"] {
        h.reconcile(&api, name).await;
        let ud: UserDeployment = api.get(NS, name).unwrap();
        assert_eq!(ud.status.unwrap().phase, crds::DeploymentPhase::Ready, "{name}");
    }
    assert_eq!(
        (replicas(&api, "blog-web"), replicas(&api, "blog-db")),
        (Some(1), Some(2))
    );
    assert_eq!(h.retriggered(), Vec::<String>::new(), "nothing to tell anyone");
    api.take_events();

    h.set_plan(crds::Plan::Free, 2);
    // The older app runs on: nothing written; it wakes the newer one, which now goes.
    let calls = h.reconcile(&api, "shop").await;
    assert!(writes(&calls).is_empty(), "{:#?}", writes(&calls));
    assert_eq!(h.retriggered(), ["blog"]);
    let calls = h.reconcile(&api, "blog").await;
    assert_eq!(
        changed_objects(&calls),
        [
            "deployments/blog-web",
            "deployments/blog-db",
            "userdeployments/status/blog"
        ],
        "only the Deployments' replicas and the status change; nothing is deleted: {calls:#?}"
    );
    assert_eq!(
        (replicas(&api, "blog-web"), replicas(&api, "blog-db")),
        (Some(0), Some(0))
    );
    assert_eq!(
        (replicas(&api, "shop-web"), replicas(&api, "shop-db")),
        (Some(1), Some(2))
    );
    for kept in ["blog-web", "blog-db"] {
        assert!(api.get::<k8s_openapi::api::core::v1::Service>(NS, kept).is_some());
    }
    assert!(
        api.get::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(NS, "blog-db")
            .is_some()
    );
    let suspended: UserDeployment = api.get(NS, "blog").unwrap();
    assert_eq!(suspended.spec.replicas, None, "the spec is untouched");
    let message = "the free plan allows 1 deployment and this is the newest of 2; it is scaled to zero until the \
                   plan allows it again (upgrade the plan or delete another app)";
    assert_eq!(
        condition_of(&suspended, SUSPENDED),
        Some(("True".into(), PLAN_LIMIT_EXCEEDED.into(), message.into()))
    );
    assert_eq!(
        condition_of(&suspended, crds::conditions::READY),
        Some(("False".into(), "Suspended".into(), message.into()))
    );
    let status = suspended.status.clone().unwrap();
    assert_eq!(status.phase, crds::DeploymentPhase::Error);
    assert!(status.services.iter().all(|s| s.replicas == 0), "{:?}", status.services);
    assert_eq!(api.take_events(), [("Warning".into(), "Suspended".into())]);
    assert_eq!(h.retriggered(), Vec::<String>::new());
    // Nothing changed: nothing written, no second event.
    for name in ["shop", "blog"] {
        let calls = h.reconcile(&api, name).await;
        assert!(writes(&calls).is_empty(), "{name}: {:#?}", writes(&calls));
    }
    assert_eq!(api.take_events(), []);
    // A restart (fresh caches, nothing noted) changes nothing either, and publishes nothing.
    let mut restarted = Harness::new(&api, &[api.get(NS, "shop").unwrap(), api.get(NS, "blog").unwrap()]);
    restarted.set_plan(crds::Plan::Free, 2);
    for name in ["blog", "shop"] {
        let calls = restarted.reconcile(&api, name).await;
        assert!(
            changing(&calls).is_empty(),
            "{name} after a restart: {:#?}",
            changing(&calls)
        );
    }
    assert_eq!(api.take_events(), []);

    h.set_plan(crds::Plan::Business, 3);
    let calls = h.reconcile(&api, "blog").await;
    assert_eq!(
        changed_objects(&calls),
        [
            "deployments/blog-web",
            "deployments/blog-db",
            "userdeployments/status/blog"
        ],
        "{calls:#?}"
    );
    assert_eq!(
        (replicas(&api, "blog-web"), replicas(&api, "blog-db")),
        (Some(1), Some(2))
    );
    let resumed: UserDeployment = api.get(NS, "blog").unwrap();
    assert_eq!(
        condition_of(&resumed, SUSPENDED).map(|(s, r, _)| (s, r)),
        Some(("False".into(), WITHIN_PLAN_LIMIT.into()))
    );
    assert_eq!(
        condition_of(&resumed, crds::conditions::READY).map(|(s, _, _)| s),
        Some("True".into())
    );
    assert_eq!(resumed.status.unwrap().phase, crds::DeploymentPhase::Ready);
    let events = api.take_events();
    assert!(events.contains(&("Normal".into(), "Resumed".into())), "{events:?}");
    assert!(!events.iter().any(|(t, _)| t == "Warning"), "{events:?}");
    // A second identical round writes nothing.
    for name in ["shop", "blog"] {
        let calls = h.reconcile(&api, name).await;
        assert!(writes(&calls).is_empty(), "{name}: {:#?}", writes(&calls));
    }
    assert_eq!(h.retriggered(), Vec::<String>::new());
}
