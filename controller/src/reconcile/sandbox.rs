//! UserSandbox → Namespace, ResourceQuota, LimitRange, NetworkPolicies, default ServiceAccount,
//! the server's RoleBinding and the members' RoleBindings (`MEMBER_IDENTITY`).

use std::sync::Arc;
use std::time::Duration;

use crds::conditions::{DEGRADED, READY, reasons};
use crds::sandbox::SandboxUsage;
use crds::{UserSandbox, UserSandboxStatus};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, Error, condition, same_conditions, status_params};
use crate::conflict;
use policy::build::sandbox::MEMBER_ROLE_LABEL;
use policy::build::{self, MANAGED_BY, MANAGER, SANDBOX_LABEL};

const KIND: &str = "UserSandbox";
/// How soon a sandbox whose quota Kubernetes has not counted yet is looked at again.
const QUOTA_RECHECK: Duration = Duration::from_secs(1);

/// Reconciles one UserSandbox.
pub async fn reconcile(sb: Arc<UserSandbox>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.timed(KIND, sb.name_any(), reconcile_inner(&sb, &ctx)).await
}

/// Retry policy for failed sandbox reconciles.
pub fn error_policy(sb: Arc<UserSandbox>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.on_error(KIND, &sb.name_any(), error)
}

async fn reconcile_inner(sb: &UserSandbox, ctx: &Context) -> Result<Action, Error> {
    ctx.ensure_leader()?;
    if sb.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes the namespace.
        return Ok(Action::await_change());
    }
    let name = sb.name_any();
    let ns_name = &sb.spec.namespace;
    let generation = sb.metadata.generation;
    let previous = sb.status.clone().unwrap_or_default();

    // A system or platform namespace is never a sandbox's.
    if let Some(message) = ctx.config.namespace_refusal(ns_name) {
        refuse(ctx, sb, &previous, reasons::NAMESPACE_NOT_ALLOWED, message).await?;
        return Ok(Action::await_change());
    }
    // One owner id, one sandbox: the oldest holds it (hosts are `<owner id>-<app>`).
    if !conflict::holds_owner_id(&ctx.all_sandboxes.state(), sb) {
        let message = format!(
            "owner id {} already has an older sandbox: one owner id, one sandbox; this one gets no namespace",
            sb.spec.owner.user_id
        );
        refuse(ctx, sb, &previous, reasons::OWNER_CONFLICT, message).await?;
        // The older sandbox's deletion triggers a reconcile; this is a safety net.
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    // Never adopt a namespace that belongs to someone else: the controller creates sandbox
    // namespaces with its label, and takes only a namespace that carries it for this sandbox
    // (a platform admin may create one so labelled, as `examples/` does).
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if let Some(existing) = namespaces.get_metadata_opt(ns_name).await? {
        let owner = existing.labels().get(SANDBOX_LABEL);
        if owner != Some(&name) {
            let message = match owner {
                Some(other) => format!("namespace {ns_name} belongs to sandbox {other}"),
                None => format!("namespace {ns_name} already exists and is not managed by k8s-scheduler"),
            };
            refuse(ctx, sb, &previous, reasons::NAMESPACE_CONFLICT, message).await?;
            return Ok(Action::await_change());
        }
    }

    let children = build::sandbox::build(sb, &ctx.config.build);
    ctx.apply(KIND, &children.namespace).await?;
    let quota = ctx.apply(KIND, &children.quota).await?;
    ctx.apply(KIND, &children.limit_range).await?;
    let keep: Vec<String> = children.network_policies.iter().map(|p| p.name_any()).collect();
    for policy in &children.network_policies {
        ctx.apply(KIND, policy).await?;
    }
    ctx.prune::<NetworkPolicy>(
        KIND,
        ns_name,
        &format!("{MANAGED_BY}={MANAGER},{SANDBOX_LABEL}={name}"),
        &keep,
    )
    .await?;
    ctx.apply(KIND, &children.service_account).await?;
    if let Some(rb) = &children.server_role_binding {
        apply_role_binding(ctx, rb).await?;
    }
    let unbound = sync_members(ctx, sb).await?;

    // Ready means usable: until the quota controller has counted the new quota, Kubernetes
    // refuses every app created in the namespace ("status unknown for quota"), so a sandbox is
    // not Ready before that (about 20 s after its creation on a busy cluster). Its namespace is
    // published only then too (apps wait for it); a sandbox that had one keeps it.
    let counted = quota
        .status
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .is_some_and(|h| !h.is_empty());
    let (namespace, ready, reason, message) = if counted {
        (
            Some(ns_name.clone()),
            true,
            reasons::PROVISIONED,
            format!(
                "namespace {ns_name} with quota and policies is in place{}",
                unbound_note(&unbound)
            ),
        )
    } else {
        (
            previous.namespace.clone(),
            false,
            reasons::QUOTA_PENDING,
            format!("namespace {ns_name} is in place; waiting for Kubernetes to count its quota"),
        )
    };
    let status = UserSandboxStatus {
        namespace,
        observed_generation: generation,
        usage: Some(usage(&quota)),
        conditions: vec![
            condition(&previous.conditions, READY, ready, reason, message, generation),
            condition(
                &previous.conditions,
                DEGRADED,
                false,
                reasons::AS_EXPECTED,
                String::new(),
                generation,
            ),
        ],
    };
    write_status(ctx, sb, &previous, status).await?;
    if previous.observed_generation != generation {
        // A new spec may bring a new deployment limit: its apps are suspended or resumed. The
        // apps were triggered by the change already, but through another watch than the
        // sandbox cache they read, which may have been behind. After this reconcile's API calls
        // it has caught up in practice; the hourly resync covers what is left.
        super::suspend::retrigger_namespace(ctx, sb);
    }
    if !counted {
        // Quotas are not watched: look again soon (the quota controller counts within seconds).
        return Ok(Action::requeue(QUOTA_RECHECK));
    }
    // Usage is refreshed on this resync (usage updates alone do not trigger a reconcile).
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Applies the members' RoleBindings (`MEMBER_IDENTITY`) and deletes those no longer wanted (a
/// role left without members; all of them with `none`). Returns the user ids of the members
/// bound to nothing for want of an email address.
pub(crate) async fn sync_members(ctx: &Context, sb: &UserSandbox) -> Result<Vec<String>, Error> {
    let members = build::sandbox::member_bindings(sb, &ctx.config.member_identity, &ctx.config.sandbox_role_prefix);
    for rb in &members.role_bindings {
        apply_role_binding(ctx, rb).await?;
    }
    let keep: Vec<String> = members.role_bindings.iter().map(|rb| rb.name_any()).collect();
    // Only the members' bindings carry the role label: the server's is not pruned here.
    ctx.prune::<RoleBinding>(
        KIND,
        &sb.spec.namespace,
        &format!(
            "{MANAGED_BY}={MANAGER},{SANDBOX_LABEL}={},{MEMBER_ROLE_LABEL}",
            sb.name_any()
        ),
        &keep,
    )
    .await?;
    Ok(members.unbound)
}

/// Applies a RoleBinding. Kubernetes refuses to change a RoleBinding's roleRef, so one bound to
/// another ClusterRole (SANDBOX_ROLE_PREFIX or SERVER_SANDBOX_CLUSTER_ROLE changed, e.g. with the
/// release name) is deleted and made again; otherwise the sandbox would fail to reconcile for good.
async fn apply_role_binding(ctx: &Context, rb: &RoleBinding) -> Result<(), Error> {
    let refused = match ctx.apply(KIND, rb).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let role_ref_changed = matches!(
        refused.kube(),
        Some(kube::Error::Api(s)) if s.code == 422 && s.message.contains("roleRef")
    );
    if !role_ref_changed {
        return Err(refused);
    }
    let name = rb.name_any();
    let ns = rb.namespace().unwrap_or_default();
    tracing::info!(
        rolebinding = %format!("{ns}/{name}"),
        role = %rb.role_ref.name,
        "the RoleBinding is bound to another ClusterRole; making it again"
    );
    let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
    match ctx
        .write(
            KIND,
            format!("delete RoleBinding {ns}/{name} (roleRef changed)"),
            api.delete(&name, &kube::api::DeleteParams::background()),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    ctx.apply(KIND, rb).await.map(|_| ())
}

/// The Ready message's note about members bound to nothing (empty when there are none).
fn unbound_note(unbound: &[String]) -> String {
    const SHOWN: usize = 5;
    match unbound.len() {
        0 => String::new(),
        n => {
            let mut ids = unbound[..n.min(SHOWN)].join(", ");
            if n > SHOWN {
                ids.push_str(&format!(" and {} more", n - SHOWN));
            }
            format!("; members without an email address have no Kubernetes RoleBinding: {ids}")
        }
    }
}

/// Reports why the sandbox gets no namespace: Ready false and Degraded with `reason`, no
/// `status.namespace` (so its apps get no children either), and a Warning event.
async fn refuse(
    ctx: &Context,
    sb: &UserSandbox,
    previous: &UserSandboxStatus,
    reason: &'static str,
    message: String,
) -> Result<(), Error> {
    let generation = sb.metadata.generation;
    let status = UserSandboxStatus {
        namespace: None,
        observed_generation: generation,
        usage: None,
        conditions: vec![
            condition(&previous.conditions, READY, false, reason, message.clone(), generation),
            condition(
                &previous.conditions,
                DEGRADED,
                true,
                reason,
                message.clone(),
                generation,
            ),
        ],
    };
    if previous.conditions.iter().all(|c| c.reason != reason) {
        ctx.warn(sb, reason, message).await;
    }
    write_status(ctx, sb, previous, status).await
}

fn usage(quota: &ResourceQuota) -> SandboxUsage {
    let used = quota.status.as_ref().and_then(|s| s.used.clone()).unwrap_or_default();
    SandboxUsage {
        deployments: used
            .get("count/userdeployments.k8s-scheduler.io")
            .and_then(|q| q.0.parse().ok())
            .unwrap_or(0),
        cpu: used.get("requests.cpu").map(|q| q.0.clone()),
        memory: used.get("requests.memory").map(|q| q.0.clone()),
    }
}

async fn write_status(
    ctx: &Context,
    sb: &UserSandbox,
    previous: &UserSandboxStatus,
    status: UserSandboxStatus,
) -> Result<(), Error> {
    if previous.namespace == status.namespace
        && previous.observed_generation == status.observed_generation
        && previous.usage == status.usage
        && same_conditions(&previous.conditions, &status.conditions)
    {
        return Ok(());
    }
    let api: Api<UserSandbox> = Api::all(ctx.client.clone());
    // A merge patch keeps fields it does not name: `null` clears the namespace of a sandbox that
    // lost it (apps are placed only in the namespace its status names).
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    if status.namespace.is_none() {
        body["namespace"] = serde_json::Value::Null;
    }
    if status.usage.is_none() {
        body["usage"] = serde_json::Value::Null;
    }
    let name = sb.name_any();
    let patch = Patch::Merge(json!({ "status": body }));
    ctx.write(
        KIND,
        format!("status of {KIND} {name}"),
        api.patch_status(&name, &status_params(), &patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child_cache::ChildCache;
    use crate::config::Config;
    use crate::fake_api::FakeApi;
    use crate::leader::Leader;
    use crate::metrics::Metrics;
    use crate::reconcile::{Conflicts, Stores};
    use kube::runtime::reflector;
    use policy::build::sandbox::{MemberIdentity, SERVER_ROLE_BINDING};

    const NS: &str = "sandbox-team";

    fn context(api: &FakeApi, identity: MemberIdentity) -> Arc<Context> {
        let mut config = Config::for_tests();
        config.member_identity = identity;
        let (sandboxes, _) = reflector::store();
        let (all_sandboxes, _) = reflector::store();
        let (templates, _) = reflector::store();
        let (deployments, _) = reflector::store();
        let (retrigger, _) = futures::channel::mpsc::unbounded();
        Context::new(
            api.client(),
            config,
            Leader::always(),
            Metrics::default(),
            Stores {
                sandboxes,
                all_sandboxes,
                templates,
                deployments,
            },
            Arc::new(ChildCache::default()),
            Conflicts::new(retrigger),
        )
    }

    fn team(members: serde_json::Value) -> UserSandbox {
        serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
            "metadata": { "name": "team", "uid": "uid-team" },
            "spec": { "owner": { "userId": "tmabc" }, "members": members, "namespace": NS },
        }))
        .expect("sandbox")
    }

    fn subjects(api: &FakeApi, name: &str) -> Option<Vec<String>> {
        let rb: RoleBinding = api.get(NS, name)?;
        Some(rb.subjects.unwrap_or_default().into_iter().map(|s| s.name).collect())
    }

    /// `METHOD resource/name` of the requests that changed something.
    fn changes(api: &FakeApi) -> Vec<String> {
        api.take_calls()
            .into_iter()
            .filter(|c| c.is_write() && c.changed)
            .map(|c| format!("{} {}/{}", c.method, c.resource, c.name))
            .collect()
    }

    #[tokio::test]
    async fn member_bindings_follow_the_members_and_go_with_them() {
        let api = FakeApi::default();
        // The server's RoleBinding carries the sandbox's labels too: it must never be pruned here.
        let mut server = RoleBinding::default();
        server.metadata.name = Some(SERVER_ROLE_BINDING.into());
        server.metadata.namespace = Some(NS.into());
        server.metadata.labels = Some(
            [(MANAGED_BY, MANAGER), (SANDBOX_LABEL, "team")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        api.insert(&server);
        let ctx = context(&api, MemberIdentity::Email);

        let sb = team(json!([
            { "userId": "alice", "email": "alice@example.com", "role": "admin" },
            { "userId": "carol", "email": "carol@example.com", "role": "viewer" },
            { "userId": "dave", "role": "developer" },
        ]));
        assert_eq!(sync_members(&ctx, &sb).await.expect("sync"), ["dave"]);
        assert_eq!(subjects(&api, "k8s-scheduler-admins").unwrap(), ["alice@example.com"]);
        assert_eq!(subjects(&api, "k8s-scheduler-viewers").unwrap(), ["carol@example.com"]);
        assert_eq!(subjects(&api, "k8s-scheduler-developers"), None, "dave has no email");
        api.take_calls();

        // Nothing changed: nothing written.
        sync_members(&ctx, &sb).await.expect("sync");
        assert_eq!(changes(&api), Vec::<String>::new());

        // Carol becomes a developer: her binding moves, the viewers' goes.
        let sb = team(json!([
            { "userId": "alice", "email": "alice@example.com", "role": "admin" },
            { "userId": "carol", "email": "carol@example.com", "role": "developer" },
        ]));
        assert!(sync_members(&ctx, &sb).await.expect("sync").is_empty());
        assert_eq!(
            changes(&api),
            [
                "PATCH rolebindings/k8s-scheduler-developers",
                "DELETE rolebindings/k8s-scheduler-viewers"
            ]
        );
        assert_eq!(
            subjects(&api, "k8s-scheduler-developers").unwrap(),
            ["carol@example.com"]
        );

        // MEMBER_IDENTITY=none: every member binding goes, the server's stays.
        let ctx = context(&api, MemberIdentity::None);
        sync_members(&ctx, &sb).await.expect("sync");
        let mut deleted = changes(&api);
        deleted.sort();
        assert_eq!(
            deleted,
            [
                "DELETE rolebindings/k8s-scheduler-admins",
                "DELETE rolebindings/k8s-scheduler-developers"
            ]
        );
        assert!(api.get::<RoleBinding>(NS, SERVER_ROLE_BINDING).is_some());
    }

    #[test]
    fn the_note_names_a_few_unbound_members() {
        assert_eq!(unbound_note(&[]), "");
        let ids: Vec<String> = (1..=7).map(|i| format!("u{i}")).collect();
        assert_eq!(
            unbound_note(&ids[..1]),
            "; members without an email address have no Kubernetes RoleBinding: u1"
        );
        assert!(unbound_note(&ids).ends_with(": u1, u2, u3, u4, u5 and 2 more"));
    }
}
