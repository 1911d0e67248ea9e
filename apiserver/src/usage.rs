//! CPU and memory of every app over the last hour, sampled from the cluster's metrics API
//! (`metrics.k8s.io`, served by metrics-server) and kept in memory.
//!
//! One cluster-wide LIST of the platform's PodMetrics (label `app.kubernetes.io/managed-by`) every
//! APP_METRICS_INTERVAL_SECONDS, whatever the number of sandboxes; each pod's usage is summed into
//! its app's service (the pods' `k8s-scheduler.io/deployment` and `.../service` labels, set by the
//! controller's build step). A series keeps the samples of the last [`WINDOW`] only, and a series
//! without a sample in that window is dropped, so what the server keeps is bounded by the apps the
//! cluster runs (themselves bounded by the sandboxes' quotas), never by requests; [`MAX_SERIES`]
//! caps it anyway.
//!
//! Every server replica samples on its own: the history of a replica started 10 minutes ago
//! covers 10 minutes. Nothing is written to the database or to Kubernetes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::platform::Platform;

/// How far back samples go.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// Most series (service of an app) kept; beyond it new series are not recorded (and a warning is
/// logged once per sample).
pub const MAX_SERIES: usize = 100_000;

/// One pod's usage, as the metrics API reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    /// The pod's namespace.
    pub namespace: String,
    /// Its app (`k8s-scheduler.io/deployment`).
    pub deployment: String,
    /// Its service (`k8s-scheduler.io/service`).
    pub service: String,
    /// CPU, in millicores, summed over its containers.
    pub cpu_millicores: f64,
    /// Memory (working set), in bytes, summed over its containers.
    pub memory_bytes: u64,
}

/// What one read of the metrics API gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampled {
    /// The usage of the platform's pods.
    Pods(Vec<PodUsage>),
    /// No usage: one sentence why (no metrics API in the cluster, no permission, an error).
    Unavailable(String),
}

/// One point of a series: the usage of a service's pods, summed, at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// CPU in millicores.
    pub cpu_millicores: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// The last read of the metrics API: None before the first, else Ok or why it gave nothing.
pub type Outcome = Option<Result<(), String>>;

#[derive(Default)]
struct Inner {
    status: Outcome,
    /// Samples by (namespace, app), then service, oldest first.
    apps: HashMap<(String, String), BTreeMap<String, VecDeque<Sample>>>,
    series: usize,
}

/// The samples of the last [`WINDOW`], for every app.
pub struct History {
    interval: Duration,
    inner: Mutex<Inner>,
}

impl History {
    /// An empty history sampled every `interval`.
    pub fn new(interval: Duration) -> Arc<History> {
        Arc::new(History {
            interval,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Time between samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Most samples one series holds.
    fn capacity(&self) -> usize {
        (WINDOW.as_secs() / self.interval.as_secs().max(1)) as usize + 1
    }

    /// Records what a read at `at` (Unix seconds) gave and drops samples older than the window.
    pub fn record(&self, at: i64, sampled: Sampled) {
        let capacity = self.capacity();
        let oldest = at - WINDOW.as_secs() as i64;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let pods = match sampled {
            Sampled::Pods(p) => {
                inner.status = Some(Ok(()));
                p
            }
            Sampled::Unavailable(why) => {
                inner.status = Some(Err(why));
                vec![]
            }
        };
        // Summed by service: an app with 3 replicas uses what its 3 pods use.
        let mut sums: BTreeMap<(String, String, String), (f64, u64)> = BTreeMap::new();
        for p in pods {
            let e = sums.entry((p.namespace, p.deployment, p.service)).or_default();
            e.0 += p.cpu_millicores;
            e.1 = e.1.saturating_add(p.memory_bytes);
        }
        let mut refused = 0usize;
        for ((ns, app, service), (cpu, memory)) in sums {
            let known = inner
                .apps
                .get(&(ns.clone(), app.clone()))
                .is_some_and(|s| s.contains_key(&service));
            if !known && inner.series >= MAX_SERIES {
                refused += 1;
                continue;
            }
            if !known {
                inner.series += 1;
            }
            let series = inner.apps.entry((ns, app)).or_default().entry(service).or_default();
            series.push_back(Sample {
                at,
                cpu_millicores: cpu,
                memory_bytes: memory,
            });
            while series.len() > capacity {
                series.pop_front();
            }
        }
        if refused > 0 {
            tracing::warn!(
                refused,
                max = MAX_SERIES,
                "app usage: too many series; new ones are not recorded"
            );
        }
        // Age out; a series (and an app) without samples in the window goes.
        let mut dropped = 0usize;
        inner.apps.retain(|_, services| {
            services.retain(|_, series| {
                while series.front().is_some_and(|s| s.at < oldest) {
                    series.pop_front();
                }
                let keep = !series.is_empty();
                if !keep {
                    dropped += 1;
                }
                keep
            });
            !services.is_empty()
        });
        inner.series -= dropped;
    }

    /// The last read's outcome (None before the first) and the samples of app `name` in
    /// `namespace`, by service, oldest first.
    pub fn app(&self, namespace: &str, name: &str) -> (Outcome, BTreeMap<String, Vec<Sample>>) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let series = inner
            .apps
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| {
                s.iter()
                    .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
                    .collect()
            })
            .unwrap_or_default();
        (inner.status.clone(), series)
    }

    /// Series kept now (for tests and the bound).
    pub fn series_count(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).series
    }
}

/// Samples `platform` into `history` every interval, the first at once, until aborted.
pub fn spawn_sampler(platform: Arc<dyn Platform>, history: Arc<History>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(history.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_problem: Option<String> = None;
        loop {
            tick.tick().await;
            let sampled = platform.pod_usage().await;
            // A missing metrics API is said once, not every minute.
            match &sampled {
                Sampled::Unavailable(why) if last_problem.as_deref() != Some(why) => {
                    tracing::info!(reason = %why, "app CPU and memory are not available");
                    last_problem = Some(why.clone());
                }
                Sampled::Pods(p) if last_problem.is_some() => {
                    tracing::info!(pods = p.len(), "app CPU and memory are available again");
                    last_problem = None;
                }
                _ => {}
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            history.record(now, sampled);
        }
    })
}

/// A Kubernetes quantity (`250m`, `1.5`, `64Mi`, `123456n`, `1e3`) as a number, None when it is
/// not one. Written here because the quantity crates pin other k8s-openapi versions; the metrics
/// API and resource limits use only these forms.
pub fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let v = value * scale;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, app: &str, service: &str, cpu: f64, memory: u64) -> PodUsage {
        PodUsage {
            namespace: ns.into(),
            deployment: app.into(),
            service: service.into(),
            cpu_millicores: cpu,
            memory_bytes: memory,
        }
    }

    #[test]
    fn quantities_in_the_forms_kubernetes_uses() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1.5"), Some(1.5));
        assert_eq!(quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("12345Ki"), Some(12345.0 * 1024.0));
        assert_eq!(quantity("1G"), Some(1e9));
        assert_eq!(quantity("1e3"), Some(1000.0));
        let n = quantity("1234567n").unwrap();
        assert!((n - 0.001234567).abs() < 1e-12, "{n}");
        assert_eq!(quantity("0"), Some(0.0));
        for bad in ["", "m", "12x", "1.2.3", "Mi", "1e", "5 Mi"] {
            assert_eq!(quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pods_are_summed_by_service_and_kept_per_app() {
        let h = History::new(Duration::from_secs(60));
        h.record(
            1000,
            Sampled::Pods(vec![
                pod("sandbox-a", "shop", "web", 2.0, 100),
                pod("sandbox-a", "shop", "web", 3.0, 50),
                pod("sandbox-a", "shop", "db", 1.0, 10),
                pod("sandbox-b", "shop", "web", 7.0, 70),
            ]),
        );
        let (status, a) = h.app("sandbox-a", "shop");
        assert_eq!(status, Some(Ok(())));
        assert_eq!(a.keys().collect::<Vec<_>>(), ["db", "web"]);
        assert_eq!(
            a["web"],
            [Sample {
                at: 1000,
                cpu_millicores: 5.0,
                memory_bytes: 150
            }]
        );
        // Another sandbox's app of the same name is its own series.
        let (_, b) = h.app("sandbox-b", "shop");
        assert_eq!(b["web"][0].cpu_millicores, 7.0);
        assert_eq!(h.series_count(), 3);
        assert!(h.app("sandbox-c", "shop").1.is_empty());
    }

    #[test]
    fn samples_older_than_the_window_go_and_empty_series_are_dropped() {
        let h = History::new(Duration::from_secs(60));
        let hour = WINDOW.as_secs() as i64;
        h.record(
            0,
            Sampled::Pods(vec![pod("ns", "old", "web", 1.0, 1), pod("ns", "live", "web", 1.0, 1)]),
        );
        for i in 1..=70 {
            h.record(i * 60, Sampled::Pods(vec![pod("ns", "live", "web", i as f64, 1)]));
        }
        let (_, live) = h.app("ns", "live");
        let web = &live["web"];
        // At most an hour's worth (and the capacity: window / interval + 1).
        assert_eq!(web.len(), 61);
        assert!(web.first().unwrap().at >= 70 * 60 - hour);
        assert_eq!(web.last().unwrap().at, 70 * 60);
        assert!(h.app("ns", "old").1.is_empty(), "an app gone for an hour is forgotten");
        assert_eq!(h.series_count(), 1);
    }

    #[test]
    fn an_unavailable_metrics_api_is_reported_and_keeps_what_was_sampled() {
        let h = History::new(Duration::from_secs(60));
        assert_eq!(h.app("ns", "app").0, None);
        h.record(100, Sampled::Pods(vec![pod("ns", "app", "web", 1.0, 1)]));
        h.record(160, Sampled::Unavailable("no metrics API".into()));
        let (status, series) = h.app("ns", "app");
        assert_eq!(status, Some(Err("no metrics API".into())));
        assert_eq!(series["web"].len(), 1);
    }

    #[test]
    fn the_series_are_bounded() {
        let h = History::new(Duration::from_secs(60));
        let many: Vec<_> = (0..MAX_SERIES + 10)
            .map(|i| pod("ns", &format!("app{i}"), "web", 1.0, 1))
            .collect();
        h.record(0, Sampled::Pods(many));
        assert_eq!(h.series_count(), MAX_SERIES);
        // A known series still gets its samples.
        h.record(60, Sampled::Pods(vec![pod("ns", "app0", "web", 2.0, 1)]));
        assert_eq!(h.app("ns", "app0").1["web"].len(), 2);
    }
}
