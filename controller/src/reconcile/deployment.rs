//! UserDeployment → Deployments, Services, ConfigMaps, Ingress or HTTPRoute, NetworkPolicy,
//! ExternalSecret.

use std::sync::Arc;
use std::time::Duration;

use crds::conditions::{PROGRESSING, READY, reasons};
use crds::{Template, TemplateSpec, UserDeployment, UserDeploymentStatus, UserSandbox};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use policy::build::deployment::{DeploymentChildren, build, external_secret_resource};
use policy::build::{DEPLOYMENT_LABEL, MANAGED_BY, MANAGER, SERVICE_LABEL, fnv_hash};
use policy::names;
use policy::templates;
use policy::validate::{Invalid, ValidatedDeployment, validate_deployment};

use super::{
    Context, DEPLOYMENT_FINALIZER, Error, FIELD_MANAGER, object_path, same_conditions, status, status_params, suspend,
};
use crate::child_cache::{RolloutState, key_of};
use crate::children;
use crate::conflict::{self, NamespaceOwner};
use crate::diagnose::{self, Diagnosis, diagnose};
use crate::gateway::HTTPRoute;

const KIND: &str = "UserDeployment";

/// How often every UserDeployment is reconciled anyway (drift the watches missed): one timer for
/// all of them (`Controller::reconcile_all_on`), not one scheduled entry per object, which at
/// 10,000 objects held megabytes.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// How soon a UserDeployment that is still rolling out is looked at again (a safety net: the
/// Deployment watch normally triggers sooner).
const PROGRESS_RECHECK: Duration = Duration::from_secs(30);
/// How long a rollout may make no progress before the controller looks at its pods for a reason
/// (image not found, crash, refusal); also the recheck interval until it has found one.
const DIAGNOSE_AFTER: Duration = Duration::from_secs(10);
/// How soon an app whose sandbox has not provisioned its namespace yet is looked at again.
const SANDBOX_RECHECK: Duration = Duration::from_secs(2);
/// How long a new UserDeployment's first status waits for its rollout after the children were
/// first applied: an app that starts within it gets `Ready` as its first status, one write
/// instead of two (`Provisioning`, then `Ready`). One that does not gets `Provisioning` then.
/// Until the first status, the app reads as Pending (no status).
pub const FIRST_STATUS_GRACE: Duration = Duration::from_secs(3);

/// Reconciles one UserDeployment.
pub async fn reconcile(ud: Arc<UserDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.timed(KIND, ud_key(&ud), reconcile_with_finalizer(ud, &ctx)).await
}

/// Retry policy for failed reconciles.
pub fn error_policy(ud: Arc<UserDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.on_error(KIND, &ud.name_any(), error)
}

async fn reconcile_with_finalizer(ud: Arc<UserDeployment>, ctx: &Context) -> Result<Action, Error> {
    ctx.ensure_leader()?;
    let ns = ud.namespace().unwrap_or_default();
    let sandboxes = ctx.all_sandboxes.state();
    let owner = conflict::namespace_owner(&sandboxes, &ns);
    let ours = match owner.sandbox() {
        Some(sb) => ctx.manages(sb),
        // With SANDBOX_SELECTOR, a namespace of no sandbox is no shard's: left alone, except
        // for the cleanup of an app being deleted (its sandbox went first; any shard may).
        None => ctx.config.sandbox_selector.is_empty() || ud.metadata.deletion_timestamp.is_some(),
    };
    if !ours {
        // Another controller's sandbox (SANDBOX_SELECTOR shards): not ours to touch at all.
        return Ok(Action::await_change());
    }
    let api: Api<UserDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, DEPLOYMENT_FINALIZER, ud, |event| async {
        match event {
            Finalizer::Apply(ud) => apply(&ud, ctx, &sandboxes, &owner).await,
            Finalizer::Cleanup(ud) => cleanup(&ud, ctx).await,
        }
    })
    .await
    .or_else(|e| match e {
        // Its last finalizer was removed and the object went before the removal's own patch
        // answered (another replica, or an earlier try): cleanup is done.
        kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(s)) if s.code == 404 => {
            Ok(Action::await_change())
        }
        e => Err(e),
    })
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        // The finalizer patch tests the finalizer list it read from the cache: a 422 means the
        // cache was behind, like a conflict.
        kube::runtime::finalizer::Error::AddFinalizer(kube::Error::Api(s))
        | kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(s))
            if s.code == 422 =>
        {
            Error::StaleCache
        }
        kube::runtime::finalizer::Error::AddFinalizer(e) | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
            Error::Kube(e)
        }
        other => Error::Finalizer(other.to_string()),
    })
}

/// The user id apps in `ns` run as (their hosts' prefix), or why no workload may run there:
/// only a namespace the controller provisioned for an active sandbox it manages takes workloads.
/// `Ok(None)`: the sandbox has not been reconciled yet; its status change triggers this again.
fn placement(ns: &str, owner: &NamespaceOwner, ctx: &Context) -> Result<Option<String>, Invalid> {
    if let Some(message) = ctx.config.namespace_refusal(ns) {
        return Err(Invalid {
            reason: reasons::NAMESPACE_NOT_ALLOWED,
            message,
        });
    }
    match owner {
        NamespaceOwner::Active(sb) => Ok(Some(sb.spec.owner.user_id.clone())),
        NamespaceOwner::NoSandbox => Err(Invalid {
            reason: reasons::SANDBOX_NOT_FOUND,
            message: format!("namespace {ns} belongs to no UserSandbox; create one whose spec.namespace is {ns}"),
        }),
        NamespaceOwner::OwnerConflict(sb) => Err(Invalid {
            reason: reasons::OWNER_CONFLICT,
            message: format!(
                "sandbox {} is not active: an older sandbox has its owner id {} (one owner id, one sandbox); apps in {ns} get no children",
                sb.name_any(),
                sb.spec.owner.user_id
            ),
        }),
        NamespaceOwner::NotProvisioned(sb) => {
            let refused = sb
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY && c.status == "False"));
            match refused {
                // A known refusal: NamespaceConflict, NamespaceNotAllowed, OwnerConflict. Not
                // a transient state (an API error, a quota not counted yet): the app waits.
                Some(c) if c.reason != reasons::API_ERROR && c.reason != reasons::QUOTA_PENDING => Err(Invalid {
                    reason: match c.reason.as_str() {
                        reasons::OWNER_CONFLICT => reasons::OWNER_CONFLICT,
                        reasons::NAMESPACE_NOT_ALLOWED => reasons::NAMESPACE_NOT_ALLOWED,
                        _ => reasons::NAMESPACE_CONFLICT,
                    },
                    message: format!(
                        "sandbox {} has no namespace {ns} provisioned ({}): apps there get no children",
                        sb.name_any(),
                        c.reason
                    ),
                }),
                _ => Ok(None),
            }
        }
    }
}

/// Finds the Template a UserDeployment refers to: the named namespace, else its own namespace,
/// else the platform namespace. A private or team template of another sandbox is not visible.
async fn find_template(ud: &UserDeployment, ctx: &Context) -> Result<Option<Template>, Error> {
    let Some(r) = &ud.spec.template_ref else {
        return Ok(None);
    };
    let own = ud.namespace().unwrap_or_default();
    let platform = &ctx.config.settings.platform_namespace;
    for ns in templates::search_order(r, &own, platform) {
        let cached = ctx
            .templates
            .get(&ObjectRef::new(&r.name).within(ns))
            .map(|t| (*t).clone());
        let found = match cached {
            Some(t) => Some(t),
            // Not cached: the namespace may be outside WATCH_NAMESPACE. Ask the API.
            None if !ctx.config.watch_namespace.is_empty() && ns != ctx.config.watch_namespace => {
                Api::<Template>::namespaced(ctx.client.clone(), ns)
                    .get_opt(&r.name)
                    .await?
            }
            None => None,
        };
        if let Some(t) = found {
            let dir = sandboxes_for(ctx, ns, &own);
            return Ok(templates::usable(&t, &own, platform, &dir).then_some(t));
        }
    }
    Ok(None)
}

/// What the visibility rule must know of the sandboxes for a template of `template_namespace`
/// used from `own`: nothing for one's own or the platform's (the common case, without a pass over
/// every sandbox), the sandboxes' owners, members and organizations for another sandbox's.
fn sandboxes_for(ctx: &Context, template_namespace: &str, own: &str) -> templates::Sandboxes {
    if template_namespace == own || template_namespace == ctx.config.settings.platform_namespace {
        return templates::Sandboxes::default();
    }
    let all = ctx.all_sandboxes.state();
    templates::Sandboxes::from_sandboxes(all.iter().map(|s| s.as_ref()))
}

/// The service names of another app of the namespace, from the caches (its inline services, or
/// its Template's when cached and visible); none when unknown.
fn cached_services(ud: &UserDeployment, ctx: &Context) -> Vec<String> {
    if let Some(services) = &ud.spec.services {
        return services.iter().map(|s| s.name.clone()).collect();
    }
    let Some(r) = &ud.spec.template_ref else {
        return vec![];
    };
    let own = ud.namespace().unwrap_or_default();
    let dir = sandboxes_for(ctx, r.namespace.as_deref().unwrap_or(&own), &own);
    templates::resolve(r, &own, &ctx.config.settings.platform_namespace, &dir, |ns, name| {
        ctx.templates.get(&ObjectRef::new(name).within(ns))
    })
    .map(|t| t.spec.services.iter().map(|s| s.name.clone()).collect())
    .unwrap_or_default()
}

/// Whether a name this app's children or Secrets take is one an older app of its namespace
/// (`neighbours`: the cached apps there) takes too (or one reserved for the sandbox): the newer
/// app is refused (see `policy::names`).
fn name_conflict(
    ud: &UserDeployment,
    vd: &ValidatedDeployment,
    ctx: &Context,
    neighbours: &[Arc<UserDeployment>],
) -> Option<Invalid> {
    let services: Vec<&str> = vd.services.iter().map(|s| s.spec.name.as_str()).collect();
    let mine = names::claimed(&vd.name, &services, ud.spec.secret_name.as_deref());
    if let Some((kind, name)) = names::reserved(&mine) {
        return Some(Invalid {
            reason: reasons::NAME_CONFLICT,
            message: format!("the {kind} {name} belongs to the sandbox; choose another app name"),
        });
    }
    let me = conflict::age_key(&ud.metadata);
    let mut older: Vec<&Arc<UserDeployment>> = neighbours
        .iter()
        .filter(|o| {
            o.metadata.name != ud.metadata.name
                && (names::may_collide(&vd.name, &o.name_any())
                    || o.spec.secret_name.is_some()
                    || ud.spec.secret_name.is_some())
                && conflict::age_key(&o.metadata) < me
        })
        .collect();
    older.sort_by(|a, b| conflict::age_key(&a.metadata).cmp(&conflict::age_key(&b.metadata)));
    older.iter().find_map(|o| {
        let theirs_services = cached_services(o, ctx);
        let services: Vec<&str> = theirs_services.iter().map(String::as_str).collect();
        let theirs = names::claimed(&o.name_any(), &services, o.spec.secret_name.as_deref());
        names::collision(&mine, &theirs).map(|(kind, name)| Invalid {
            reason: reasons::NAME_CONFLICT,
            message: format!(
                "the {kind} {name} of this app is also one of the older app {}; rename this app",
                o.name_any()
            ),
        })
    })
}

async fn apply(
    ud: &UserDeployment,
    ctx: &Context,
    sandboxes: &[Arc<UserSandbox>],
    owner: &NamespaceOwner,
) -> Result<Action, Error> {
    let ns = ud.namespace().unwrap_or_default();
    let user_id = match placement(&ns, owner, ctx) {
        Ok(Some(user_id)) => user_id,
        // The sandbox is not reconciled yet: its status write triggers this again; the recheck
        // covers an app the trigger missed (applied together with its sandbox, the app can reach
        // the cache after the sandbox's status event: seen in CI as an app with no status).
        Ok(None) => return Ok(Action::requeue(SANDBOX_RECHECK)),
        Err(invalid) => return refuse(ud, ctx, invalid).await,
    };
    let me = ObjectRef::from_obj(ud);
    // The apps of the namespace, from the cache (one pass over it per reconcile, shared by the
    // name and suspension rules).
    let mut neighbours = ctx
        .deployments
        .state_filter(|o| o.metadata.namespace == ud.metadata.namespace);
    if !neighbours.iter().any(|o| o.metadata.name == ud.metadata.name) {
        // The cache has not shown this app yet: it counts all the same.
        neighbours.push(Arc::new(ud.clone()));
    }
    // Over the sandbox's deployment limit, the newest apps are suspended. Decided (and noted)
    // before any refusal below, so that a refused app's neighbours do not keep waking it.
    let suspension = match owner.sandbox() {
        Some(sb) => {
            let decision = suspend::decision(sb, &neighbours);
            let mine = decision.suspension(&ud.name_any()).cloned();
            ctx.suspended.note(&me, mine.is_some());
            suspend::retrigger_changed(ctx, &ns, &decision, Some(&me));
            mine
        }
        None => None,
    };
    // The host `<user-id>-<name>` goes to the oldest app that resolves to it, in any sandbox.
    let label = policy::names::host_label(&user_id, &ud.name_any());
    let claimants = conflict::host_claimants(sandboxes, &label, |ns, name| {
        ctx.deployments.get(&ObjectRef::new(name).within(ns))
    });
    match claimants.first() {
        Some(holder) if ObjectRef::from_obj(&**holder) != me => {
            let message = format!(
                "host {label}.{} is already used by another app; choose another name",
                ctx.config.settings.deployment_domain
            );
            return refuse(
                ud,
                ctx,
                Invalid {
                    reason: reasons::HOST_CONFLICT,
                    message,
                },
            )
            .await;
        }
        _ => {
            // Others that claim the host and do not know they lost (this app was not active
            // when they were reconciled) are told now.
            for other in claimants.iter().skip(1) {
                let r = ObjectRef::from_obj(&**other);
                if !ctx.conflicts.is_loser(&r) {
                    ctx.conflicts.retrigger(r);
                }
            }
        }
    }
    let template = find_template(ud, ctx).await?;
    if let (Some(r), None) = (&ud.spec.template_ref, &template) {
        let msg = format!("template {:?} not found (or not visible from namespace {ns})", r.name);
        return refuse(
            ud,
            ctx,
            Invalid {
                reason: reasons::TEMPLATE_NOT_FOUND,
                message: msg,
            },
        )
        .await;
    }
    let spec: Option<&TemplateSpec> = template.as_ref().map(|t| &t.spec);
    let vd = match validate_deployment(ud, spec, &user_id, &ctx.config.settings) {
        Ok(vd) => vd,
        Err(invalid) => return refuse(ud, ctx, invalid).await,
    };
    if let Some(invalid) = name_conflict(ud, &vd, ctx, &neighbours) {
        return refuse(ud, ctx, invalid).await;
    }
    // Not kept across the API calls below: at a thousand apps per sandbox it is the largest
    // thing a reconcile holds.
    drop(neighbours);
    let mut children = build(&vd, &ctx.config.settings, &ctx.config.build);
    if suspension.is_some() {
        // Only the Deployments' replicas change: the spec and every other child stay.
        policy::suspend::scale_to_zero(&mut children);
    }
    let names = child_names(&children);
    let hash = fnv_hash(&names.iter().map(String::as_str).collect::<Vec<_>>());

    children::apply_all(ctx, KIND, &children).await?;
    // Known from the apply's answer, else from the Deployment watch.
    let rollouts: Vec<RolloutState> = children
        .deployments
        .iter()
        .map(|d| ctx.children.rollout(&key_of(d)).unwrap_or_default())
        .collect();
    for es in &children.external_secrets {
        apply_external_secret(ctx, &ns, es).await?;
    }

    ctx.conflicts.settled(&me);
    if may_have_orphans(ud, ctx, &children, &hash) {
        prune(ud, ctx, &children).await?;
    }

    let ready = rollouts.iter().all(RolloutState::available);
    // What the Gateway made of the route (from the HTTPRoute watch): reported, not waited for.
    let route_refusal = children
        .http_route
        .as_ref()
        .and_then(|r| ctx.children.refusal(&key_of(r)));
    if !ready
        && suspension.is_none()
        && ud.status.is_none()
        && unseen_write(ctx, ud).is_none()
        && let Some(wait) = first_status_wait(ctx, &ud_key(ud))
    {
        // The Deployment watch triggers a reconcile as soon as the rollout is done.
        return Ok(Action::requeue(wait));
    }
    let problems = if ready || suspension.is_some() {
        Vec::new()
    } else {
        problems(ud, ctx, &vd, &children.deployments, &rollouts).await?
    };
    let recheck = if problems.iter().any(Option::is_some) {
        PROGRESS_RECHECK
    } else {
        DIAGNOSE_AFTER
    };
    let observed = status::Observed {
        app: &vd,
        rollouts: &rollouts,
        problems,
        route_refusal,
        children_hash: hash,
        suspension: suspension.as_ref(),
    };
    write_status(ud, ctx, status::running(ud, observed, &now())).await?;
    // A suspended app waits for its limit to change (the sandbox and UserDeployment watches).
    Ok(if ready || suspension.is_some() {
        Action::await_change()
    } else {
        Action::requeue(recheck)
    })
}

/// Why each service of a rollout that has not progressed for [`DIAGNOSE_AFTER`] is stuck (in
/// the order of `vd.services`), from its pods (one LIST), its Deployment's conditions (one GET per
/// service not available: the watch cache keeps only whether ReplicaFailure is True, not
/// Kubernetes' text) and, when a container runs or ran but is not ready, the namespace's probe
/// Warning events (one LIST). Only for apps not Ready that long: empty while young.
async fn problems(
    ud: &UserDeployment,
    ctx: &Context,
    vd: &ValidatedDeployment,
    deployments: &[Deployment],
    rollouts: &[RolloutState],
) -> Result<Vec<Option<Diagnosis>>, Error> {
    let since = ud
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == PROGRESSING && c.status == "True")
        })
        .map(|c| c.last_transition_time.0);
    let Some(since) = since else { return Ok(Vec::new()) };
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(since);
    if age < k8s_openapi::jiff::SignedDuration::try_from(DIAGNOSE_AFTER).unwrap_or_default() {
        return Ok(Vec::new());
    }
    let ns = ud.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{DEPLOYMENT_LABEL}={}", vd.name)))
        .await
        .map_err(|source| Error::Api {
            step: format!("list the pods of {}", object_path(Some(&ns), &vd.name)),
            source,
        })?;
    let deployment_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let mut events: Option<Vec<Event>> = None;
    let mut out = Vec::with_capacity(vd.services.len());
    for ((r, s), d) in rollouts.iter().zip(&vd.services).zip(deployments) {
        if r.available() {
            out.push(None);
            continue;
        }
        let mine: Vec<Pod> = list
            .items
            .iter()
            .filter(|p| p.labels().get(SERVICE_LABEL).map(String::as_str) == Some(s.spec.name.as_str()))
            .cloned()
            .collect();
        let name = d.name_any();
        let conditions = deployment_api
            .get_opt(&name)
            .await
            .map_err(|source| Error::Api {
                step: format!("get Deployment {}", object_path(Some(&ns), &name)),
                source,
            })?
            .and_then(|d| d.status)
            .and_then(|s| s.conditions)
            .unwrap_or_default();
        let failure = conditions
            .iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .and_then(|c| c.message.clone());
        let deadline_exceeded = conditions
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
        if events.is_none() && failure.is_none() && mine.iter().any(may_fail_probes) {
            let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
            let listed = api
                .list(&ListParams::default().fields("type=Warning,reason=Unhealthy").limit(500))
                .await
                .map_err(|source| Error::Api {
                    step: format!("list the Warning events of namespace {ns}"),
                    source,
                })?;
            events = Some(listed.items);
        }
        out.push(diagnose(&diagnose::Observed {
            replica_failure: failure.as_deref(),
            deadline_exceeded,
            pods: &mine,
            events: events.as_deref().unwrap_or_default(),
        }));
    }
    Ok(out)
}

/// A pod with a container that is not ready but runs or has run (a readiness or liveness probe
/// may be failing).
fn may_fail_probes(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| !c.ready && (c.restart_count > 0 || c.state.as_ref().is_some_and(|s| s.running.is_some())))
        })
}

/// Whether children no longer desired may exist, so that [`prune`] must list every child kind:
/// - the child watches count more children of the app than the build makes (whatever the status
///   says: a status read from the cache can predate this process's last write, e.g. replicas 1 →
///   2 → 1 in quick succession shows the hash of "1" while the budget made for "2" still exists);
/// - a new UserDeployment (no status yet) whose children the watches cannot count yet (an
///   earlier, interrupted reconcile may have left some; when they count exactly the children
///   just applied there is nothing to prune: six LIST calls saved per new UserDeployment);
/// - the names of the children changed since the status was written (also for ExternalSecrets,
///   which are not counted).
fn may_have_orphans(ud: &UserDeployment, ctx: &Context, c: &DeploymentChildren, hash: &str) -> bool {
    let ns = ud.namespace().unwrap_or_default();
    let counted = ctx.children.count_children(&ns, &ud.name_any());
    if counted.is_some_and(|n| n > children::count(c)) {
        return true;
    }
    match ud.status.as_ref().and_then(|s| s.children_hash.as_deref()) {
        None => counted.is_none(),
        Some(previous) => previous != hash,
    }
}

fn ud_key(ud: &UserDeployment) -> String {
    format!("{}/{}", ud.namespace().unwrap_or_default(), ud.name_any())
}

/// How much longer the first status of a new UserDeployment may wait ([`FIRST_STATUS_GRACE`]
/// from its first apply); `None` once the grace is over.
fn first_status_wait(ctx: &Context, key: &str) -> Option<Duration> {
    let mut pending = ctx.first_status.lock().unwrap_or_else(|e| e.into_inner());
    let since = *pending.entry(key.to_string()).or_insert_with(std::time::Instant::now);
    FIRST_STATUS_GRACE.checked_sub(since.elapsed()).filter(|d| !d.is_zero())
}

/// `Kind/name` of every child, for the status's `childrenHash`.
fn child_names(c: &DeploymentChildren) -> Vec<String> {
    let mut names = children::names(c);
    names.extend(
        c.external_secrets
            .iter()
            .map(|o| format!("ExternalSecret/{}", o.name_any())),
    );
    names
}

async fn apply_external_secret(ctx: &Context, ns: &str, es: &DynamicObject) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &external_secret_resource());
    let name = es.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    ctx.write(
        KIND,
        format!("apply ExternalSecret {ns}/{name}"),
        api.patch(&name, &params, &Patch::Apply(es)),
    )
    .await?;
    Ok(())
}

/// Deletes the app's routes (an app refused for a conflict: its host is someone else's):
/// Ingresses, and HTTPRoutes where the cluster serves them.
async fn remove_routes(ud: &UserDeployment, ctx: &Context) -> Result<(), Error> {
    let ns = ud.namespace().unwrap_or_default();
    let sel = selector(ud);
    ctx.prune::<Ingress>(KIND, &ns, &sel, &[]).await?;
    if ctx.config.http_routes_served {
        ctx.prune::<HTTPRoute>(KIND, &ns, &sel, &[]).await?;
    }
    Ok(())
}

/// Deletes children that are no longer desired (a service removed from the template, the
/// route of an app turned internal, the Ingress of an app now routed by an HTTPRoute, ...).
async fn prune(ud: &UserDeployment, ctx: &Context, c: &DeploymentChildren) -> Result<(), Error> {
    let ns = ud.namespace().unwrap_or_default();
    let sel = selector(ud);
    children::prune_all(ctx, KIND, &ns, &sel, Some(c)).await?;
    let keep: Vec<String> = c.external_secrets.iter().map(|o| o.name_any()).collect();
    prune_external_secrets(ctx, &ns, &sel, &keep).await
}

async fn prune_external_secrets(ctx: &Context, ns: &str, sel: &str, keep: &[String]) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &external_secret_resource());
    ctx.prune_in(KIND, &api, sel, keep).await.map(|_| ())
}

fn selector(ud: &UserDeployment) -> String {
    format!("{MANAGED_BY}={MANAGER},{DEPLOYMENT_LABEL}={}", ud.name_any())
}

/// Ordered cleanup: the route first (stop traffic), then workloads, then secrets.
async fn cleanup(ud: &UserDeployment, ctx: &Context) -> Result<Action, Error> {
    let ns = ud.namespace().unwrap_or_default();
    write_status(ud, ctx, status::deleting(ud)).await?;
    let sel = selector(ud);
    children::prune_all(ctx, KIND, &ns, &sel, None).await?;
    // Last the ExternalSecret; the Secret it fills is owned by it (creationPolicy Owner), and a
    // Secret written by the HTTP server is owned by the UserDeployment: both go with their owner,
    // so the controller needs no rights on Secrets at all.
    prune_external_secrets(ctx, &ns, &sel, &[]).await?;
    // The child watches see the deletions and drop the children from the child cache.
    tracing::info!(namespace = %ns, name = %ud.name_any(), "children removed");
    // The object goes with the finalizer: forget what was noted about its status.
    ctx.conflicts.settled(&ObjectRef::from_obj(ud));
    ctx.suspended.note(&ObjectRef::from_obj(ud), false);
    let key = ud_key(ud);
    ctx.written_status.forget(&key);
    ctx.first_status.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    Ok(Action::await_change())
}

/// Refuses to run an app: [`report_invalid`], and for a conflict (host, name, owner id,
/// namespace) also removes its route (the host is someone else's) and notes it, to be looked at
/// again when another app goes.
async fn refuse(ud: &UserDeployment, ctx: &Context, invalid: Invalid) -> Result<Action, Error> {
    let conflict = [
        reasons::HOST_CONFLICT,
        reasons::NAME_CONFLICT,
        reasons::OWNER_CONFLICT,
        reasons::NAMESPACE_CONFLICT,
        reasons::NAMESPACE_NOT_ALLOWED,
        reasons::SANDBOX_NOT_FOUND,
    ]
    .contains(&invalid.reason);
    if conflict {
        ctx.conflicts.lost(ObjectRef::from_obj(ud));
        remove_routes(ud, ctx).await?;
    } else {
        ctx.conflicts.settled(&ObjectRef::from_obj(ud));
    }
    if ctx.suspended.contains(&ObjectRef::from_obj(ud)) {
        // Over its sandbox's limit, a refused app does not keep running on the children of an
        // earlier spec (else breaking the spec would escape the limit).
        scale_to_zero(ud, ctx).await?;
    }
    report_invalid(ud, ctx, invalid).await
}

/// Scales the app's existing Deployments to zero, without a build (its spec cannot be built):
/// a merge patch of `spec.replicas` only, where it is not zero yet. Only for apps both refused
/// and suspended (rare): one LIST per such reconcile.
async fn scale_to_zero(ud: &UserDeployment, ctx: &Context) -> Result<(), Error> {
    let ns = ud.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let sel = selector(ud);
    let list = api
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|source| Error::Api {
            step: format!("list Deployments ({sel})"),
            source,
        })?;
    let patch = Patch::Merge(json!({ "spec": { "replicas": 0 } }));
    for d in list.items {
        if d.spec.as_ref().and_then(|s| s.replicas) == Some(0) {
            continue;
        }
        let name = d.name_any();
        let step = format!("scale Deployment {} to zero", object_path(Some(&ns), &name));
        match ctx.write(KIND, step, api.patch(&name, &status_params(), &patch)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reports an invalid spec in status (phase Error, Degraded with the reason) and waits for a
/// change: no retry storm. Running children are left as they are.
async fn report_invalid(ud: &UserDeployment, ctx: &Context, invalid: Invalid) -> Result<Action, Error> {
    let status = status::refused(ud, &invalid, &now());
    if needs_write(ctx, ud, &ud.status.clone().unwrap_or_default(), &status) {
        tracing::info!(namespace = ?ud.namespace(), name = %ud.name_any(), reason = invalid.reason, message = %invalid.message, "spec cannot be run");
        ctx.warn(ud, invalid.reason, invalid.message).await;
        patch_status(ud, ctx, &status).await?;
    }
    // Template and sandbox changes trigger a new reconcile through their watches.
    Ok(Action::await_change())
}

/// Writes `status` unless the API has it already.
async fn write_status(ud: &UserDeployment, ctx: &Context, status: UserDeploymentStatus) -> Result<(), Error> {
    if needs_write(ctx, ud, &ud.status.clone().unwrap_or_default(), &status) {
        patch_status(ud, ctx, &status).await?;
        for (warning, reason, note) in status::transitions(ud.status.as_ref(), &status) {
            let type_ = if warning { EventType::Warning } else { EventType::Normal };
            ctx.event(ud, type_, &reason, note).await;
        }
    }
    Ok(())
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// The fingerprint of this process's last status write to `ud`, if the cached `ud` does not show
/// that write yet (see `Context::written_status`). Drops the entry once the cache has moved on.
fn unseen_write(ctx: &Context, ud: &UserDeployment) -> Option<u64> {
    ctx.written_status
        .unseen(&ud_key(ud), ud.metadata.resource_version.as_deref())
}

/// Whether `status` differs from what the API has, as far as this process knows: its own last
/// write while the cache has not caught up with it, else the cached status (`previous`).
fn needs_write(
    ctx: &Context,
    ud: &UserDeployment,
    previous: &UserDeploymentStatus,
    status: &UserDeploymentStatus,
) -> bool {
    match unseen_write(ctx, ud) {
        Some(written) => written != status_fingerprint(status),
        None => status_changed(previous, status),
    }
}

/// A hash of everything [`status_changed`] compares (transition times left out).
fn status_fingerprint(status: &UserDeploymentStatus) -> u64 {
    let mut s = status.clone();
    for c in &mut s.conditions {
        c.last_transition_time =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    }
    crate::child_cache::content_hash(&serde_json::to_string(&s).unwrap_or_default())
}

fn status_changed(a: &UserDeploymentStatus, b: &UserDeploymentStatus) -> bool {
    a.phase != b.phase
        || a.url != b.url
        || a.services != b.services
        || a.observed_generation != b.observed_generation
        || a.children_hash != b.children_hash
        || !same_conditions(&a.conditions, &b.conditions)
}

async fn patch_status(ud: &UserDeployment, ctx: &Context, status: &UserDeploymentStatus) -> Result<(), Error> {
    let first_applied = ctx
        .first_status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&ud_key(ud));
    let api: Api<UserDeployment> = Api::namespaced(ctx.client.clone(), &ud.namespace().unwrap_or_default());
    tracing::debug!(
        namespace = ?ud.namespace(),
        name = %ud.name_any(),
        phase = ?status.phase,
        since_first_apply_ms = first_applied.map(|t| t.elapsed().as_millis() as u64),
        "writing status"
    );
    // The status is replaced whole (conditions are a list), so `null` clears an absent url.
    let mut body = serde_json::to_value(status).unwrap_or_default();
    if status.url.is_none() {
        body["url"] = serde_json::Value::Null;
    }
    let name = ud.name_any();
    let step = format!("status of {KIND} {}", ud_key(ud));
    let patch = Patch::Merge(json!({ "status": body }));
    match ctx
        .write(KIND, step, api.patch_status(&name, &status_params(), &patch))
        .await
    {
        Ok(_) => {
            ctx.written_status.note(
                ud_key(ud),
                ud.metadata.resource_version.as_deref(),
                status_fingerprint(status),
            );
            Ok(())
        }
        // Deleted meanwhile: nothing to report on.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
