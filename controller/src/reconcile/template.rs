//! Template → validated; status says valid or lists the reasons it is not.

use std::sync::Arc;

use crds::conditions::{VALID, reasons};
use crds::{Template, TemplateStatus};
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, Error, condition, same_conditions, status_params};
use policy::validate::validate_template;

const KIND: &str = "Template";

/// Reconciles one Template: validates it and writes the result to status.
pub async fn reconcile(t: Arc<Template>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.timed(
        KIND,
        format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()),
        reconcile_inner(&t, &ctx),
    )
    .await
}

/// Retry policy for failed template reconciles.
pub fn error_policy(t: Arc<Template>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.on_error(KIND, &t.name_any(), error)
}

async fn reconcile_inner(t: &Template, ctx: &Context) -> Result<Action, Error> {
    ctx.ensure_leader()?;
    let ns = t.namespace().unwrap_or_default();
    if let Some(sb) = crate::conflict::namespace_owner(&ctx.all_sandboxes.state(), &ns).sandbox()
        && !ctx.manages(sb)
    {
        // In another controller's sandbox (SANDBOX_SELECTOR shards): its to validate.
        return Ok(Action::await_change());
    }
    let problems = validate_template(&t.spec, &ctx.config.settings);
    let generation = t.metadata.generation;
    let previous = t.status.clone().unwrap_or_default();
    let valid = problems.is_empty();
    let (reason, message) = if valid {
        (reasons::VALIDATED, "the template is valid".to_string())
    } else {
        (reasons::INVALID, problems.join("; "))
    };
    let status = TemplateStatus {
        valid,
        reasons: problems,
        observed_generation: generation,
        conditions: vec![condition(
            &previous.conditions,
            VALID,
            valid,
            reason,
            message.clone(),
            generation,
        )],
    };
    if previous.valid == status.valid
        && previous.reasons == status.reasons
        && previous.observed_generation == status.observed_generation
        && same_conditions(&previous.conditions, &status.conditions)
    {
        return Ok(Action::await_change());
    }
    if !valid {
        ctx.warn(t, reasons::INVALID, message).await;
    }
    let ns = t.namespace().unwrap_or_default();
    let api: Api<Template> = Api::namespaced(ctx.client.clone(), &ns);
    let name = t.name_any();
    let patch = Patch::Merge(json!({ "status": status }));
    ctx.write(
        KIND,
        format!("status of {KIND} {ns}/{name}"),
        api.patch_status(&name, &status_params(), &patch),
    )
    .await?;
    Ok(Action::await_change())
}
