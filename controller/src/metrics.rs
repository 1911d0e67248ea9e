//! Prometheus metrics and the health probe listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Resource kind.
    pub kind: String,
}

/// Labels of error metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Resource kind.
    pub kind: String,
    /// Short error category.
    pub category: String,
}

/// The controller's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Reconciles run, by kind.
    pub reconciles: Family<KindLabels, Counter>,
    /// Reconcile duration in seconds, by kind.
    pub duration: Family<KindLabels, Histogram>,
    /// Failed reconciles, by kind and category.
    pub errors: Family<ErrorLabels, Counter>,
    /// Objects in the watch caches, by kind.
    pub managed: Family<KindLabels, Gauge>,
    /// Child writes sent to the API (server-side apply, deletes, status), by kind of parent.
    pub writes: Family<KindLabels, Counter>,
    /// 1 while this replica is the leader.
    pub leader: Gauge,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("k8s_scheduler_controller");
        let reconciles = Family::<KindLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let errors = Family::<ErrorLabels, Counter>::default();
        let managed = Family::<KindLabels, Gauge>::default();
        let writes = Family::<KindLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
        registry.register("reconcile_errors", "Failed reconciles by category", errors.clone());
        registry.register("managed_objects", "Objects in the watch caches", managed.clone());
        registry.register("api_writes", "Writes sent to the Kubernetes API", writes.clone());
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        Metrics {
            reconciles,
            duration,
            errors,
            managed,
            writes,
            leader,
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Labels for one kind.
    pub fn kind(kind: &str) -> KindLabels {
        KindLabels { kind: kind.to_string() }
    }
}

/// Readiness: true once the caches have synced (or while standing by for the lease).
#[derive(Clone, Default)]
pub struct Readiness(pub Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Serves `/metrics` on one address and `/healthz`, `/readyz` on another.
pub async fn serve(
    metrics: Metrics,
    metrics_addr: SocketAddr,
    probe_addr: SocketAddr,
    ready: Readiness,
) -> anyhow::Result<()> {
    let metrics_app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics);
    let probe_app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ready);
    let m = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("METRICS_ADDR {metrics_addr}: cannot listen: {e}"))?;
    let p = tokio::net::TcpListener::bind(probe_addr)
        .await
        .map_err(|e| anyhow::anyhow!("HEALTH_PROBE_ADDR {probe_addr}: cannot listen: {e}"))?;
    tracing::info!(%metrics_addr, %probe_addr, "serving metrics and probes");
    tokio::try_join!(axum::serve(m, metrics_app), axum::serve(p, probe_app))?;
    Ok(())
}

async fn metrics_handler(State(m): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

async fn readyz(State(r): State<Readiness>) -> impl IntoResponse {
    if r.0.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}
