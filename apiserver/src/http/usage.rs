//! `GET /api/deployments/{name}/metrics`: per service of the caller's app, its pods and container
//! restarts now (read from the pods), and its CPU and memory over the last hour (the samples of
//! [`crate::usage`], taken from the cluster's metrics API).

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use kube::ResourceExt;

use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiResult, ErrorBody};
use crate::platform::AppPod;
use crate::usage::{Outcome, Sample, WINDOW, quantity};

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/deployments/{name}/metrics", get(deployment_metrics))
}

/// The usage of an app's services.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// Whether CPU and memory are sampled: false when the cluster serves no metrics API, the
    /// server may not read it, it failed at the last sample, or the first sample is not taken yet.
    pub available: bool,
    /// Why they are not, in one sentence (absent when they are).
    pub message: Option<String>,
    /// Seconds between samples (APP_METRICS_INTERVAL_SECONDS).
    pub interval_seconds: u64,
    /// How far back samples go, in seconds.
    pub window_seconds: u64,
    /// Each service of the app.
    pub services: Vec<ServiceUsage>,
}

/// One service of an app.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUsage {
    /// The service's name.
    pub name: String,
    /// Its pods now.
    pub pods: u32,
    /// Restarts of its containers now, summed over its pods.
    pub restarts: u32,
    /// Its container's CPU limit in millicores, when it has one.
    pub cpu_limit_millicores: Option<f64>,
    /// Its container's memory limit in bytes, when it has one.
    pub memory_limit_bytes: Option<u64>,
    /// Usage summed over its pods, oldest first, at most an hour back.
    pub samples: Vec<SampleView>,
}

/// One sample.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SampleView {
    /// When it was taken (RFC 3339).
    pub at: String,
    /// CPU in millicores.
    pub cpu_millicores: f64,
    /// Memory (working set) in bytes.
    pub memory_bytes: u64,
}

/// The view of an app from its services (`declared`, in their order), its pods, and its samples
/// with the sampler's last outcome. Services that only pods or samples name (a service renamed by
/// an edit, whose old pods are still going) come after the declared ones.
pub fn view(
    declared: &[String],
    pods: &[AppPod],
    status: Outcome,
    mut samples: std::collections::BTreeMap<String, Vec<Sample>>,
    interval_seconds: u64,
) -> UsageView {
    let mut names: Vec<String> = declared.to_vec();
    let extra: BTreeSet<&String> = pods
        .iter()
        .map(|p| &p.service)
        .chain(samples.keys())
        .filter(|s| !declared.contains(s))
        .collect();
    names.extend(extra.into_iter().cloned());
    let services = names
        .into_iter()
        .map(|name| {
            let mine: Vec<&AppPod> = pods.iter().filter(|p| p.service == name).collect();
            let first = mine.first();
            ServiceUsage {
                pods: mine.len() as u32,
                restarts: mine.iter().map(|p| p.restarts).sum(),
                cpu_limit_millicores: first
                    .and_then(|p| p.cpu_limit.as_deref())
                    .and_then(quantity)
                    .map(|c| c * 1000.0),
                memory_limit_bytes: first
                    .and_then(|p| p.memory_limit.as_deref())
                    .and_then(quantity)
                    .map(|m| m as u64),
                samples: samples
                    .remove(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| SampleView {
                        at: k8s_openapi::jiff::Timestamp::from_second(s.at)
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                        cpu_millicores: s.cpu_millicores,
                        memory_bytes: s.memory_bytes,
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    let (available, message) = match status {
        Some(Ok(())) => (true, None),
        Some(Err(why)) => (false, Some(why)),
        None => (
            false,
            Some(format!(
                "CPU and memory are sampled every {interval_seconds} s; the first sample is not taken yet"
            )),
        ),
    };
    UsageView {
        available,
        message,
        interval_seconds,
        window_seconds: WINDOW.as_secs(),
        services,
    }
}

/// Pods, restarts, CPU and memory of each service of a deployment.
#[utoipa::path(get, path = "/api/deployments/{name}/metrics", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name")),
    responses(
        (status = 200, description = "Per service: pods and restarts now; CPU and memory over the last hour \
            when the cluster has a metrics API (else `available` is false and `message` says why)", body = UsageView),
        (status = 404, description = "no such deployment for the caller", body = ErrorBody)))]
pub async fn deployment_metrics(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<UsageView>> {
    p.require(Scope::DeploymentsRead)?;
    // Only in the caller's own sandbox: another user's app is not there (404).
    let ud = super::deployments::find(&state, &p, &name).await?;
    let ns = ud.namespace().unwrap_or_default();
    let declared = super::logs::app_services(&state, &ud);
    let pods = state.platform.app_pods(&ns, &name).await?;
    let (status, samples) = state.usage.app(&ns, &name);
    Ok(Json(view(
        &declared,
        &pods,
        status,
        samples,
        state.usage.interval().as_secs(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(service: &str, restarts: u32) -> AppPod {
        AppPod {
            service: service.into(),
            restarts,
            cpu_limit: Some("500m".into()),
            memory_limit: Some("64Mi".into()),
        }
    }

    #[test]
    fn services_pods_restarts_limits_and_samples() {
        let samples = [(
            "web".to_string(),
            vec![Sample {
                at: 1_800_000_000,
                cpu_millicores: 1.5,
                memory_bytes: 2048,
            }],
        )]
        .into();
        let v = view(
            &["web".into(), "db".into()],
            &[pod("web", 2), pod("web", 1), pod("old", 0)],
            Some(Ok(())),
            samples,
            60,
        );
        assert!(v.available);
        assert_eq!(v.message, None);
        assert_eq!((v.interval_seconds, v.window_seconds), (60, 3600));
        let names: Vec<_> = v.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db", "old"]);
        let web = &v.services[0];
        assert_eq!((web.pods, web.restarts), (2, 3));
        assert_eq!(web.cpu_limit_millicores, Some(500.0));
        assert_eq!(web.memory_limit_bytes, Some(64 * 1024 * 1024));
        assert_eq!(web.samples.len(), 1);
        assert_eq!(web.samples[0].at, "2027-01-15T08:00:00Z");
        let db = &v.services[1];
        assert_eq!((db.pods, db.restarts, db.cpu_limit_millicores), (0, 0, None));
        assert!(db.samples.is_empty());
    }

    #[test]
    fn unavailable_and_not_yet_sampled_say_why() {
        let v = view(
            &["web".into()],
            &[pod("web", 4)],
            Some(Err("no metrics API".into())),
            Default::default(),
            60,
        );
        assert!(!v.available);
        assert_eq!(v.message.as_deref(), Some("no metrics API"));
        assert_eq!(
            v.services[0].restarts, 4,
            "restarts come from the pods, with or without metrics"
        );
        let v = view(&["web".into()], &[], None, Default::default(), 30);
        assert!(!v.available);
        assert!(v.message.unwrap().contains("every 30 s"));
    }
}
