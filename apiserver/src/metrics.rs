//! Prometheus metrics of the server, served at `/metrics` on their own listener (`METRICS_ADDR`,
//! never the public port): request duration by route, browsers subscribed to `/api/events`, and
//! upstream watch streams by kind (one each, however many browsers listen).
//!
//! Nothing a caller sends becomes a label as sent: the method is one of a fixed set (or `other`),
//! the route is the matched route template (or `unmatched`), so the number of series is bounded
//! by the routes, whatever arrives.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
    status: u16,
}

struct Inner {
    registry: Registry,
    sse_clients: Gauge,
    watches: Family<KindLabel, Gauge>,
    requests: Family<RouteLabels, Histogram>,
}

/// The server's metrics.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements a gauge when dropped.
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("k8s_scheduler_server");
        let sse_clients = Gauge::default();
        registry.register("sse_clients", "Browsers subscribed to /api/events", sse_clients.clone());
        let watches = Family::<KindLabel, Gauge>::default();
        registry.register(
            "upstream_watches",
            "Open Kubernetes watch streams by kind",
            watches.clone(),
        );
        let requests = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by route",
            requests.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            sse_clients,
            watches,
            requests,
        }))
    }

    /// Counts an open upstream watch of `kind` until the guard drops.
    pub fn watch_started(&self, kind: &str) -> GaugeGuard {
        let g = self.0.watches.get_or_create(&KindLabel { kind: kind.into() }).clone();
        g.inc();
        GaugeGuard(g)
    }

    /// Counts a subscribed browser until the guard drops.
    pub fn sse_client(&self) -> GaugeGuard {
        self.0.sse_clients.inc();
        GaugeGuard(self.0.sse_clients.clone())
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

/// The method as a label: one of a fixed set, `other` for anything else a caller invents.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware recording request durations by matched route template (`unmatched` without one).
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = RouteLabels {
        method,
        route,
        status: resp.status().as_u16(),
    };
    metrics
        .0
        .requests
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// The router of the metrics listener (`METRICS_ADDR`): `GET /metrics` only.
pub fn router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = metrics.encode();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
                    .into_response()
            }
        }),
    )
}
