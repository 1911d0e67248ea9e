//! UserSandbox → Namespace, ResourceQuota, LimitRange, NetworkPolicies, default ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use crds::conditions::{DEGRADED, READY, reasons};
use crds::sandbox::SandboxUsage;
use crds::{UserSandbox, UserSandboxStatus};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, Error, condition, same_conditions, status_params};
use crate::conflict;
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
        ctx.apply(KIND, rb).await?;
    }

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
            format!("namespace {ns_name} with quota and policies is in place"),
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
    if !counted {
        // Quotas are not watched: look again soon (the quota controller counts within seconds).
        return Ok(Action::requeue(QUOTA_RECHECK));
    }
    // Usage is refreshed on this resync (usage updates alone do not trigger a reconcile).
    Ok(Action::requeue(Duration::from_secs(300)))
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
