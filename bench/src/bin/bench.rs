//! Controller benchmark against the local control plane (a command, not a test).
//!
//! `bench throughput [--count N] [--sandboxes K] [--concurrency C]`:
//!
//! 1. raw ceiling: the same child objects the controller would write, applied directly with
//!    server-side apply at the best of several concurrencies, until every Deployment is Available;
//! 2. the controller: N UserDeployments created at once, until every one is Ready;
//! 3. the raw ceiling again at the best concurrency: the cluster slows down over a run, so the
//!    controller is compared with the mean of the ceiling before and after it.
//!
//! It prints time, throughput, ratio, reconcile p50/p99, peak RSS, API writes per deployment, CPU
//! seconds per process and the apiserver's requests and watch events per app, by phase.
//!
//! `bench scale [--count N]`: N suspended UserDeployments (no pods: the cluster's own controllers
//! are not the bottleneck), the controller's RSS once all are Ready, then a restart that
//! re-reconciles all of them while a watch counts every write that changed an object (target:
//! zero).
//!
//! `bench latency [--count N] [--rate R]`: create→Ready latency with an unsaturated, paced load
//! (R apps per second, default 4): the children applied directly (until the Deployment is
//! Available) against UserDeployments through the controller (until `Ready`). Each app's time is
//! split into pick-up (until its Deployment is seen), rollout (until Available) and report (until
//! `Ready`); the controller's overhead is pick-up + report against the direct pick-up (target:
//! ≤ 250 ms at p99). `BENCH_CONTROLLER_LOG` sets the controller's RUST_LOG for a timeline.
//!
//! `bench rss [--count N]`: a development loop for the controller's memory. The first run creates
//! N suspended UserDeployments and keeps them (label `run=rss-N`); every run then starts a fresh
//! controller, waits until it has reconciled all of them and prints its RSS. `bench rss --clean 1`
//! deletes them.
//!
//! `bench api [--count N]`: the HTTP server with N deployments present: list latency next to a
//! trivial route, create latency next to a direct Kubernetes create (see [`api`]).
//!
//! Run it through `hack/bench`, which builds the release binaries and brings up the cluster.

#[path = "bench/api.rs"]
mod api;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use controller::config::Config;
use crds::{Template, UserDeployment};
use e2e::operator::{RUN_LABEL, create_deployment, ensure_crds, is_ready_condition, workspace_binary};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use policy::validate::validate_deployment;
use serde::de::DeserializeOwned;
use serde_json::json;

struct Args {
    mode: String,
    count: usize,
    sandboxes: usize,
    concurrency: usize,
    clean: bool,
    rate: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1).peekable();
    // The mode is optional: `bench --count 500` is `bench throughput --count 500`.
    let mode = match args.peek() {
        Some(a) if !a.starts_with("--") => args.next().unwrap_or_default(),
        _ => "throughput".into(),
    };
    if !["throughput", "latency", "scale", "rss", "api"].contains(&mode.as_str()) {
        bail!(
            "unknown mode {mode:?}: use `bench throughput`, `bench latency`, `bench scale`, `bench rss` or `bench api`"
        );
    }
    let mut a = Args {
        count: match mode.as_str() {
            "scale" | "rss" => 10_000,
            "api" => 1_000,
            "latency" => 300,
            _ => 2_000,
        },
        mode,
        sandboxes: 10,
        // Throughput tries C/2 and C; in namespaces with a quota, 64 was slower than 32 (the
        // quota object is a point of contention), so 32 it is.
        concurrency: 32,
        clean: false,
        rate: 4,
    };
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value.parse().with_context(|| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--count" => a.count = n,
            "--sandboxes" => a.sandboxes = n.max(1),
            "--concurrency" => a.concurrency = n.max(1),
            "--clean" => a.clean = n != 0,
            "--rate" => a.rate = n.max(1),
            other => bail!("unknown flag {other}; flags: --count N --sandboxes K --concurrency C --rate R --clean 1"),
        }
    }
    Ok(a)
}

fn progress(msg: impl AsRef<str>) {
    eprintln!(
        "[bench {:>7.1}s] {}",
        START.get_or_init(Instant::now).elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn template(ns: &str) -> Template {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "Template",
        "metadata": { "name": "bench-web", "namespace": ns },
        "spec": {
            "displayName": "Benchmark web app",
            "parameters": [{ "name": "GREETING", "default": "hello" }],
            "services": [{ "name": "web", "image": "ghcr.io/example/web:1", "port": 8080,
                "resources": { "requests": { "cpu": "1m", "memory": "1Mi" }, "limits": { "cpu": "10m", "memory": "8Mi" } } }],
            "ingress": { "service": "web" },
        },
    }))
    .expect("template")
}

fn user_deployment(name: &str, ns: &str, suspend: bool) -> UserDeployment {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "templateRef": { "name": "bench-web" }, "parameters": { "GREETING": name }, "suspend": suspend },
    }))
    .expect("deployment")
}

/// A plain namespace labelled with the run.
async fn create_namespace(client: &Client, name: &str, run: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": name, "labels": { RUN_LABEL: run } },
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Follows objects of kind `K` with one watch (a poll of thousands of objects every half second
/// would itself load the apiserver) until `want` of them satisfy `done`; returns the elapsed time.
async fn wait_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    keep: impl Fn(&K) -> bool,
    done: impl Fn(&K) -> bool,
    want: usize,
    what: &str,
    started: Instant,
) -> Result<Duration>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
{
    let mut state: std::collections::HashMap<(String, String), bool> = std::collections::HashMap::new();
    let mut count = 0usize;
    let mut last_print = Instant::now();
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let observe =
        |obj: &K, present: bool, state: &mut std::collections::HashMap<(String, String), bool>, count: &mut usize| {
            let key = (obj.namespace().unwrap_or_default(), obj.name_any());
            let now = present && keep(obj) && done(obj);
            let before = if present {
                state.insert(key, now)
            } else {
                state.remove(&key)
            };
            match (before.unwrap_or(false), now) {
                (false, true) => *count += 1,
                (true, false) => *count -= 1,
                _ => {}
            }
        };
    loop {
        if count >= want {
            progress(format!("  {count}/{want} {what}"));
            return Ok(started.elapsed());
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            progress(format!("  {count}/{want} {what}"));
            last_print = Instant::now();
        }
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        match next {
            Err(_) => {}
            Ok(None) => bail!("the watch of {what} ended"),
            Ok(Some(Err(e))) => progress(format!("  watch error (retrying): {e}")),
            Ok(Some(Ok(ev))) => match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => observe(&o, true, &mut state, &mut count),
                watcher::Event::Delete(o) => observe(&o, false, &mut state, &mut count),
                watcher::Event::Init | watcher::Event::InitDone => {}
            },
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("only {count}/{want} {what} in 30 minutes");
        }
    }
}

/// Counts Deployments with label `selector` that are Available, until `want`.
async fn wait_available(client: &Client, selector: &str, want: usize, started: Instant) -> Result<Duration> {
    wait_watch(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default().labels(selector),
        |_| true,
        |d: &Deployment| {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            d.status
                .as_ref()
                .is_some_and(|s| s.available_replicas.unwrap_or(0) >= want)
        },
        want,
        "Deployments available",
        started,
    )
    .await
}

/// Counts UserDeployments in `namespaces` with `Ready=True`, until `want`.
async fn wait_ready(client: &Client, namespaces: &[String], want: usize, started: Instant) -> Result<Duration> {
    let namespaces: std::collections::HashSet<String> = namespaces.iter().cloned().collect();
    wait_watch(
        Api::<UserDeployment>::all(client.clone()),
        watcher::Config::default(),
        move |u: &UserDeployment| u.namespace().is_some_and(|ns| namespaces.contains(&ns)),
        |u| is_ready_condition(Some(u)),
        want,
        "UserDeployments Ready",
        started,
    )
    .await
}

/// A namespace set up exactly like a benchmark sandbox (Pod Security labels, the same quota,
/// limit range, network policies and service account), made by applying the sandbox children
/// directly, so that the raw ceiling pays the same admission and quota costs as the controller.
async fn create_sandbox_namespace(client: &Client, ns: &str, run: &str, per_sandbox: usize) -> Result<()> {
    let mut sb = sandbox_object(ns, run, ns, "raw", per_sandbox)?;
    sb.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let children = policy::build::sandbox::build(&sb, &Config::for_tests().build);
    let mut namespace = children.namespace;
    namespace.metadata.owner_references = None;
    namespace
        .metadata
        .labels
        .get_or_insert_default()
        .insert(RUN_LABEL.into(), run.into());
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::apply("bench-raw").force(), &Patch::Apply(&namespace))
        .await?;
    let mut quota = children.quota;
    quota.metadata.owner_references = None;
    bench::apply(client, &quota, "bench-raw").await?;
    let mut limits = children.limit_range;
    limits.metadata.owner_references = None;
    bench::apply(client, &limits, "bench-raw").await?;
    for mut np in children.network_policies {
        np.metadata.owner_references = None;
        bench::apply(client, &np, "bench-raw").await?;
    }
    let mut sa = children.service_account;
    sa.metadata.owner_references = None;
    bench::apply(client, &sa, "bench-raw").await?;
    wait_quota_known(client, ns, &quota.name_any()).await
}

/// Waits until the quota `name` in `ns` reports usage for every resource it limits: until then
/// the apiserver refuses objects it counts ("status unknown for quota"), and a retried create
/// would be measured as latency.
async fn wait_quota_known(client: &Client, ns: &str, name: &str) -> Result<()> {
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> = Api::namespaced(client.clone(), ns);
    e2e::wait_for(
        &quotas,
        name,
        Duration::from_secs(120),
        "quota usage known for every limited resource",
        |q: Option<&k8s_openapi::api::core::v1::ResourceQuota>| {
            q.and_then(|q| q.status.as_ref())
                .is_some_and(|s| match (&s.hard, &s.used) {
                    (Some(hard), Some(used)) => hard.keys().all(|k| used.contains_key(k)),
                    _ => false,
                })
        },
    )
    .await?;
    Ok(())
}

/// Applies the children of app `i` directly (what the controller would write for a
/// UserDeployment `app-<i>` of the benchmark template), labelling the Deployment `run_label`.
async fn apply_raw_app(
    client: &Client,
    config: &Config,
    t: &Template,
    ns: &str,
    i: usize,
    run_label: &str,
) -> Result<()> {
    let mut ud = user_deployment(&format!("app-{i}"), ns, false);
    ud.metadata.uid = Some(format!("00000000-0000-0000-0000-{i:012}"));
    let vd =
        validate_deployment(&ud, Some(&t.spec), "bench", &config.settings).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut children = policy::build::deployment::build(&vd, &config.settings, &config.build);
    // No owner: the UserDeployment does not exist in this mode.
    for d in &mut children.deployments {
        d.metadata.owner_references = None;
        d.metadata
            .labels
            .get_or_insert_default()
            .insert(RUN_LABEL.into(), run_label.into());
        bench::apply(client, d, "bench-raw").await?;
    }
    for s in &mut children.services {
        s.metadata.owner_references = None;
        bench::apply(client, s, "bench-raw").await?;
    }
    if let Some(mut np) = children.network_policy {
        np.metadata.owner_references = None;
        bench::apply(client, &np, "bench-raw").await?;
    }
    if let Some(mut ing) = children.ingress {
        ing.metadata.owner_references = None;
        bench::apply(client, &ing, "bench-raw").await?;
    }
    Ok(())
}

/// The raw ceiling: children applied directly, at concurrency `c`.
/// One measured raw-ceiling run: its time, the CPU each process used and the apiserver's counters
/// before and after.
struct RawRow {
    c: usize,
    elapsed: Duration,
    cpu: BTreeMap<String, f64>,
    api: (BTreeMap<String, f64>, BTreeMap<String, f64>),
}

/// [`raw_run`] with CPU and request accounting; deletes its namespaces (and waits) afterwards, so
/// that the next phase starts from the same cluster.
async fn measured_raw_run(client: &Client, run: &str, a: &Args, c: usize, tag: &str) -> Result<RawRow> {
    let cpu_before = cpu_seconds();
    let api_before = api_counters(client).await;
    let (elapsed, _) = raw_run(client, run, a.count, a.sandboxes, c, tag).await?;
    let cpu = cpu_used(&cpu_before, &cpu_seconds());
    let api = (api_before, api_counters(client).await);
    progress(format!(
        "  raw {tag}: all available after {:.1}s",
        elapsed.as_secs_f64()
    ));
    delete_namespaces(client, &format!("{RUN_LABEL}={run}")).await?;
    Ok(RawRow { c, elapsed, cpu, api })
}

async fn raw_run(
    client: &Client,
    run: &str,
    count: usize,
    sandboxes: usize,
    c: usize,
    tag: &str,
) -> Result<(Duration, usize)> {
    let config = Config::for_tests();
    let namespaces: Vec<String> = (0..sandboxes).map(|i| format!("raw-{run}-{tag}-{i}")).collect();
    for ns in &namespaces {
        create_sandbox_namespace(client, ns, run, count / sandboxes + 1).await?;
    }
    let t = template("x");
    progress(format!("  raw c={c}: applying"));
    let writes = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let ns = namespaces[i % namespaces.len()].clone();
            let (client, config, t, writes) = (client.clone(), config.clone(), t.clone(), writes.clone());
            async move {
                apply_raw_app(&client, &config, &t, &ns, i, &format!("{run}-raw-{tag}")).await?;
                writes.fetch_add(4, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(c)
        .try_collect::<Vec<_>>()
        .await?;
    progress(format!(
        "  raw c={c}: {count} apps applied in {:.1}s; waiting for Deployments",
        started.elapsed().as_secs_f64()
    ));
    let elapsed = wait_available(client, &format!("{RUN_LABEL}={run}-raw-{tag}"), count, started).await?;
    Ok((elapsed, writes.load(Ordering::Relaxed)))
}

struct ControllerProc {
    child: Child,
    metrics: String,
}

impl ControllerProc {
    fn start(run: &str, metrics_port: u16, concurrency: usize) -> Result<Self> {
        let bin = workspace_binary("controller")?;
        let log = std::env::temp_dir().join(format!("bench-controller-{run}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(e2e::cluster::kubeconfig_path())
            .env("DEPLOYMENT_DOMAIN", "bench.example.com")
            // The raw ceiling applies Ingresses: the same route kind, also where Gateway API is served.
            .env("ROUTING", "ingress")
            .env("SANDBOX_SELECTOR", format!("{RUN_LABEL}={run}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("HEALTH_PROBE_ADDR", "127.0.0.1:0")
            .env("LEADER_ELECT", "false")
            .env("CONCURRENCY", concurrency.to_string())
            // BENCH_CONTROLLER_LOG=debug (or any RUST_LOG filter) for a timeline in the log.
            .env(
                "RUST_LOG",
                std::env::var("BENCH_CONTROLLER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        progress(format!("  controller pid {} (log {})", child.id(), log.display()));
        Ok(ControllerProc {
            child,
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        })
    }

    fn rss_peak_kib(&self) -> u64 {
        proc_status(self.child.id(), "VmHWM:")
    }

    fn rss_kib(&self) -> u64 {
        proc_status(self.child.id(), "VmRSS:")
    }

    async fn scrape(&self) -> Result<String> {
        // A plain HTTP/1.0 GET on loopback; no HTTP client dependency needed for one page.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self
            .metrics
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        Ok(body)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Sum of a counter (all label sets matching `filter`) in Prometheus text.
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A quantile from a Prometheus histogram (linear within the bucket).
fn histogram_quantile(text: &str, name: &str, filter: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")) && l.contains(filter))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    if total == 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let (mut prev_le, mut prev_count) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return prev_le;
            }
            let frac = if count > prev_count {
                (rank - prev_count) / (count - prev_count)
            } else {
                0.0
            };
            return prev_le + (le - prev_le) * frac;
        }
        (prev_le, prev_count) = (le, count);
    }
    prev_le
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The UserSandbox of the benchmark: enterprise plan, quota sized for `per_sandbox` apps.
fn sandbox_object(name: &str, run: &str, ns: &str, user: &str, per_sandbox: usize) -> Result<crds::UserSandbox> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
        "metadata": { "name": name, "labels": { RUN_LABEL: run } },
        "spec": { "owner": { "userId": user }, "plan": "enterprise", "namespace": ns,
            "quotaOverrides": { "deployments": per_sandbox + 10, "pods": per_sandbox + 10, "cpu": "1000", "memory": "1000Gi", "ephemeralStorage": "1000Gi" } },
    }))?)
}

/// Creates `k` sandboxes labelled `run`, waits until Ready; returns their namespaces.
async fn create_sandboxes(client: &Client, run: &str, k: usize, per_sandbox: usize) -> Result<Vec<String>> {
    let api: Api<crds::UserSandbox> = Api::all(client.clone());
    let mut namespaces = vec![];
    for i in 0..k {
        let name = format!("bench-{run}-{i}");
        let ns = format!("sandbox-bench-{run}-{i}");
        let sb = sandbox_object(&name, run, &ns, &format!("b{i}"), per_sandbox)?;
        api.create(&PostParams::default(), &sb).await?;
        namespaces.push(ns);
    }
    for i in 0..k {
        e2e::wait_for(
            &api,
            &format!("bench-{run}-{i}"),
            Duration::from_secs(120),
            "sandbox Ready",
            is_ready_condition::<crds::UserSandbox>,
        )
        .await?;
    }
    for ns in &namespaces {
        Api::<Template>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &template(ns))
            .await?;
        wait_quota_known(client, ns, policy::build::sandbox::QUOTA_NAME).await?;
    }
    Ok(namespaces)
}

async fn create_uds(client: &Client, namespaces: &[String], count: usize, c: usize, suspend: bool) -> Result<()> {
    let created = Arc::new(AtomicUsize::new(0));
    stream::iter(0..count)
        .map(|i| {
            let ns = namespaces[i % namespaces.len()].clone();
            let (client, created) = (client.clone(), created.clone());
            async move {
                let api: Api<UserDeployment> = Api::namespaced(client, &ns);
                create_deployment(&api, &user_deployment(&format!("app-{i}"), &ns, suspend)).await?;
                let n = created.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 1000 == 0 {
                    progress(format!("  {n}/{count} UserDeployments created"));
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(c)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until no namespace is being deleted: the clean-up of an earlier run (thousands of
/// objects) would otherwise compete with this one for the same two cores.
async fn wait_for_terminating_namespaces(client: &Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        let terminating: Vec<Namespace> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .collect();
        if terminating.is_empty() {
            return Ok(());
        }
        // After a minute, say which namespaces and what holds them (a UserDeployment's cleanup
        // finalizer waits for a controller, e.g. one a killed test run left behind).
        let detail = if started.elapsed() > Duration::from_secs(60) {
            let held: Vec<String> = terminating
                .iter()
                .map(|n| {
                    let why = n
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .and_then(|c| {
                            c.iter()
                                .find(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
                        })
                        .and_then(|c| c.message.clone())
                        .unwrap_or_else(|| "still deleting its content".into());
                    format!("{} ({why})", n.name_any())
                })
                .collect();
            format!(
                ": {}; a k8s-scheduler.io/cleanup finalizer is removed by a running controller, or by hand with `kubectl patch userdeployment NAME -n NAMESPACE --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'`",
                held.join(", ")
            )
        } else {
            String::new()
        };
        progress(format!(
            "  waiting for {} namespaces of an earlier run to finish deleting{detail}",
            terminating.len()
        ));
        if started.elapsed() > Duration::from_secs(1200) {
            bail!(
                "{} namespaces still terminating after 20 minutes{detail}; see also logs/kube-controller-manager.log next to the kubeconfig that `hack/cluster paths` names",
                terminating.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Deletes the namespaces matching `selector` and waits until they are gone.
async fn delete_namespaces(client: &Client, selector: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let list = api.list_metadata(&ListParams::default().labels(selector)).await?;
    progress(format!(
        "  deleting {} namespaces and waiting until they are gone",
        list.items.len()
    ));
    for ns in &list.items {
        let _ = api.delete(&ns.name_any(), &DeleteParams::background()).await;
    }
    for ns in &list.items {
        e2e::wait_until_gone(&api, &ns.name_any(), Duration::from_secs(900)).await?;
    }
    Ok(())
}

async fn cleanup(client: &Client, run: &str) -> Result<()> {
    progress("cleaning up (deleting benchmark sandboxes and namespaces)");
    let sel = format!("{RUN_LABEL}={run}");
    let sandboxes: Api<crds::UserSandbox> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Without a controller running, finalizers would hold the deployments: remove them first.
    for sb in sandboxes.list(&ListParams::default().labels(&sel)).await?.items {
        e2e::operator::drop_deployment_finalizers(client, &sb.spec.namespace).await;
        let _ = sandboxes.delete(&sb.name_any(), &DeleteParams::background()).await;
        let _ = namespaces.delete(&sb.spec.namespace, &DeleteParams::background()).await;
    }
    for ns in namespaces
        .list_metadata(&ListParams::default().labels(&sel))
        .await?
        .items
    {
        let _ = namespaces.delete(&ns.name_any(), &DeleteParams::background()).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    START.get_or_init(Instant::now);
    let args = parse_args()?;
    let client = e2e::client().await?;
    ensure_crds(&client).await?;
    let run = e2e::unique_name(if args.mode == "api" { api::RUN_PREFIX } else { "bench" });
    wait_for_terminating_namespaces(&client).await?;
    let result = match args.mode.as_str() {
        "throughput" => throughput(&client, &run, &args).await,
        "latency" => latency(&client, &run, &args).await,
        "api" => api::api(&client, &run, &args).await,
        // Keeps its objects between runs on purpose.
        "rss" => return rss(&client, &args).await,
        _ => scale(&client, &run, &args).await,
    };
    cleanup(&client, &run).await?;
    result
}

async fn throughput(client: &Client, run: &str, a: &Args) -> Result<()> {
    let n = a.count;
    progress(format!(
        "raw ceiling: {n} apps (Deployment, Service, NetworkPolicy, Ingress) by server-side apply"
    ));
    let mut best: Option<(usize, Duration)> = None;
    let mut raw_rows = vec![];
    for c in [a.concurrency / 2, a.concurrency].into_iter().filter(|c| *c > 0) {
        let row = measured_raw_run(client, run, a, c, &format!("c{c}")).await?;
        if best.is_none_or(|(_, b)| row.elapsed < b) {
            best = Some((c, row.elapsed));
        }
        raw_rows.push(row);
    }
    let (best_c, raw) = best.context("no raw run")?;
    let (raw_cpu, raw_api) = raw_rows
        .iter()
        .find(|r| r.c == best_c)
        .map(|r| (r.cpu.clone(), r.api.clone()))
        .unwrap_or_default();

    progress(format!("controller: {n} UserDeployments in {} sandboxes", a.sandboxes));
    let port = free_port()?;
    // The controller gets the same concurrency as the best raw run.
    let ctrl = ControllerProc::start(run, port, best_c)?;
    let namespaces = create_sandboxes(client, run, a.sandboxes, n / a.sandboxes + 1).await?;
    let before = ctrl.scrape().await.unwrap_or_default();
    let writes_before = metric_sum(&before, "k8s_scheduler_controller_api_writes_total", "UserDeployment");
    let cpu_before = cpu_seconds();
    let api_before = api_counters(client).await;
    let started = Instant::now();
    create_uds(client, &namespaces, n, best_c, false).await?;
    let elapsed = wait_ready(client, &namespaces, n, started).await?;
    let ctrl_cpu = cpu_used(&cpu_before, &cpu_seconds());
    let ctrl_api = (api_before, api_counters(client).await);
    let metrics = ctrl.scrape().await?;
    let writes = metric_sum(&metrics, "k8s_scheduler_controller_api_writes_total", "UserDeployment") - writes_before;
    let filter = "kind=\"UserDeployment\"";
    let p50 = histogram_quantile(
        &metrics,
        "k8s_scheduler_controller_reconcile_duration_seconds",
        filter,
        0.50,
    );
    let p99 = histogram_quantile(
        &metrics,
        "k8s_scheduler_controller_reconcile_duration_seconds",
        filter,
        0.99,
    );
    let reconciles = metric_sum(&metrics, "k8s_scheduler_controller_reconciles_total", filter);
    let peak = ctrl.rss_peak_kib();
    ctrl.stop();
    cleanup(client, run).await?;
    wait_for_terminating_namespaces(client).await?;
    // The cluster gets slower over a run (etcd's database and the apiserver's heap grow with every
    // phase; a later phase of the same work costs more CPU), so the ceiling is measured again at
    // the best concurrency after the controller phase, and the controller is compared with the
    // mean of the two: the phases before and after bracket it.
    progress(format!(
        "raw ceiling again at concurrency {best_c}, after the controller"
    ));
    let after = measured_raw_run(client, run, a, best_c, &format!("c{best_c}-after")).await?;

    let before_tp = n as f64 / raw.as_secs_f64();
    let after_tp = n as f64 / after.elapsed.as_secs_f64();
    let raw_tp = (before_tp + after_tp) / 2.0;
    let tp = n as f64 / elapsed.as_secs_f64();
    println!("## throughput: {n} UserDeployments, {} sandboxes", a.sandboxes);
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    for r in &raw_rows {
        println!(
            "| raw ceiling, concurrency {}: all Deployments Available | {:.1} s ({:.1} apps/s) |",
            r.c,
            r.elapsed.as_secs_f64(),
            n as f64 / r.elapsed.as_secs_f64()
        );
    }
    println!(
        "| controller (concurrency {best_c}): all UserDeployments Ready | {:.1} s |",
        elapsed.as_secs_f64()
    );
    println!(
        "| raw ceiling again after the controller, concurrency {best_c} | {:.1} s ({after_tp:.1} apps/s) |",
        after.elapsed.as_secs_f64()
    );
    println!("| controller throughput | {tp:.1} deployments/s |");
    println!("| raw ceiling throughput (concurrency {best_c}, mean of before and after) | {raw_tp:.1} apps/s |");
    println!(
        "| **ratio controller / raw** | **{:.0}%** (target ≥ 80%) |",
        100.0 * tp / raw_tp
    );
    println!(
        "| ratio against the ceiling before only / after only | {:.0}% / {:.0}% |",
        100.0 * tp / before_tp,
        100.0 * tp / after_tp
    );
    println!(
        "| reconcile p50 / p99 | {:.1} ms / {:.1} ms |",
        p50 * 1000.0,
        p99 * 1000.0
    );
    println!("| reconciles per UserDeployment | {:.2} |", reconciles / n as f64);
    println!(
        "| API writes per UserDeployment (children, status, finalizer) | {:.2} |",
        writes / n as f64
    );
    println!("| controller peak RSS | {:.1} MiB |", peak as f64 / 1024.0);
    println!();
    println!("CPU seconds used during each phase, by process (both phases share the same 2 cores):");
    println!();
    println!("| process | raw ceiling (concurrency {best_c}) | controller run | raw ceiling after |");
    println!("|---|---|---|---|");
    let mut names: Vec<&String> = raw_cpu.keys().chain(ctrl_cpu.keys()).collect();
    names.sort();
    names.dedup();
    let (mut raw_total, mut ctrl_total, mut after_total) = (0.0, 0.0, 0.0);
    for name in names {
        let (r, c, x) = (
            raw_cpu.get(name).copied().unwrap_or(0.0),
            ctrl_cpu.get(name).copied().unwrap_or(0.0),
            after.cpu.get(name).copied().unwrap_or(0.0),
        );
        raw_total += r;
        ctrl_total += c;
        after_total += x;
        println!("| {name} | {r:.1} | {c:.1} | {x:.1} |");
    }
    println!("| total | {raw_total:.1} | {ctrl_total:.1} | {after_total:.1} |");
    println!();
    let raw_label = format!("raw (c={best_c})");
    print_api_counters(
        n,
        [
            (&raw_label, &raw_api.0, &raw_api.1),
            ("controller", &ctrl_api.0, &ctrl_api.1),
        ],
    );
    Ok(())
}

/// When each app was started, when its Deployment was first seen, when that Deployment was first
/// Available and when the app was done (for UserDeployments: `Ready`), all on this process's clock.
#[derive(Clone, Copy, Default)]
struct AppTimes {
    start: Option<Instant>,
    /// When the create (or the last apply) returned.
    created: Option<Instant>,
    seen: Option<Instant>,
    available: Option<Instant>,
    done: Option<Instant>,
}

impl AppTimes {
    fn ms(a: Option<Instant>, b: Option<Instant>) -> f64 {
        match (a, b) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() * 1000.0,
            _ => f64::NAN,
        }
    }
    /// start → done.
    fn total(&self) -> f64 {
        Self::ms(self.start, self.done)
    }
    /// start → Deployment seen: the direct apply, or the controller's pick-up and apply.
    fn pickup(&self) -> f64 {
        Self::ms(self.start, self.seen)
    }
    /// start → the create (or the direct apply) returned.
    fn create(&self) -> f64 {
        Self::ms(self.start, self.created)
    }
    /// Deployment seen → Available: the cluster's own work (Deployment and ReplicaSet
    /// controllers, scheduler, kwok), the same with or without the operator.
    fn rollout(&self) -> f64 {
        Self::ms(self.seen, self.available)
    }
    /// Deployment Available → done: the controller noticing and writing `Ready`.
    fn report(&self) -> f64 {
        Self::ms(self.available, self.done)
    }
}

type Times = Arc<std::sync::Mutex<BTreeMap<String, AppTimes>>>;

/// Follows `api` with one watch, calling `on(obj, now, times)` for every object seen; returns once
/// the watch has listed what exists.
async fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    times: Times,
    on: fn(&K, Instant, &mut BTreeMap<String, AppTimes>),
) -> Result<tokio::task::JoinHandle<()>>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
{
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut synced = Some(synced_tx);
        let stream = watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    on(&o, Instant::now(), &mut times.lock().unwrap())
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = synced.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    synced_rx.await.context("a latency watch did not start")?;
    Ok(handle)
}

/// Records when each app's Deployment was first seen and first Available (apps named by the
/// `k8s-scheduler.io/deployment` label). With `done`, Available also means done (raw apps).
fn on_deployment(d: &Deployment, now: Instant, times: &mut BTreeMap<String, AppTimes>, done: bool) {
    let Some(app) = d.labels().get(policy::build::DEPLOYMENT_LABEL) else {
        return;
    };
    let t = times.entry(app.clone()).or_default();
    t.seen.get_or_insert(now);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if d.status
        .as_ref()
        .is_some_and(|s| s.available_replicas.unwrap_or(0) >= want)
    {
        t.available.get_or_insert(now);
        if done {
            t.done.get_or_insert(now);
        }
    }
}

/// Starts `n` apps at `rate` per second (`start(i)` for app `app-{i}`) while the watches fill
/// `times`, and waits until every app is done.
async fn paced<F, Fut>(times: &Times, n: usize, rate: usize, start: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let mut tasks = vec![];
    let t0 = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / rate as f64)).into()).await;
        times.lock().unwrap().entry(format!("app-{i}")).or_default().start = Some(Instant::now());
        let (fut, times) = (start(i), times.clone());
        tasks.push(tokio::spawn(async move {
            fut.await?;
            times.lock().unwrap().entry(format!("app-{i}")).or_default().created = Some(Instant::now());
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let count = times.lock().unwrap().values().filter(|t| t.done.is_some()).count();
        if count >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {count}/{n} apps were done 5 minutes after the last start");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Nearest-rank quantile of `v` (sorted in place).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// p50, p90 and p99 of `f` over every app.
fn quantiles(times: &BTreeMap<String, AppTimes>, f: impl Fn(&AppTimes) -> f64) -> [f64; 3] {
    let mut v: Vec<f64> = times.values().map(f).collect();
    [quantile(&mut v, 0.5), quantile(&mut v, 0.9), quantile(&mut v, 0.99)]
}

async fn latency(client: &Client, run: &str, a: &Args) -> Result<()> {
    let (n, rate) = (a.count, a.rate);
    progress(format!("latency: {n} apps at {rate}/s, children applied directly"));
    let raw_ns = format!("raw-{run}-latency");
    create_sandbox_namespace(client, &raw_ns, run, n + 1).await?;
    let config = Config::for_tests();
    let t = template("x");
    let label = format!("{run}-raw-latency");
    let raw: Times = Arc::default();
    let watch = follow(
        Api::<Deployment>::namespaced(client.clone(), &raw_ns),
        watcher::Config::default().labels(&format!("{RUN_LABEL}={label}")),
        raw.clone(),
        |d, now, times| on_deployment(d, now, times, true),
    )
    .await?;
    paced(&raw, n, rate, |i| {
        let (client, config, t, ns, label) = (client.clone(), config.clone(), t.clone(), raw_ns.clone(), label.clone());
        async move { apply_raw_app(&client, &config, &t, &ns, i, &label).await }
    })
    .await?;
    watch.abort();
    delete_namespaces(client, &format!("{RUN_LABEL}={run}")).await?;

    progress(format!(
        "latency: {n} UserDeployments at {rate}/s through the controller"
    ));
    let ctrl = ControllerProc::start(run, free_port()?, a.concurrency)?;
    let namespaces = create_sandboxes(client, run, 1, n + 1).await?;
    let ns = namespaces[0].clone();
    let ctl: Times = Arc::default();
    let watches = [
        follow(
            Api::<Deployment>::namespaced(client.clone(), &ns),
            watcher::Config::default(),
            ctl.clone(),
            |d, now, times| on_deployment(d, now, times, false),
        )
        .await?,
        follow(
            Api::<UserDeployment>::namespaced(client.clone(), &ns),
            watcher::Config::default(),
            ctl.clone(),
            |u, now, times| {
                if is_ready_condition(Some(u)) {
                    times.entry(u.name_any()).or_default().done.get_or_insert(now);
                }
            },
        )
        .await?,
    ];
    paced(&ctl, n, rate, |i| {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let api: Api<UserDeployment> = Api::namespaced(client, &ns);
            create_deployment(&api, &user_deployment(&format!("app-{i}"), &ns, false))
                .await
                .map(|_| ())
        }
    })
    .await?;
    for w in watches {
        w.abort();
    }
    let metrics = ctrl.scrape().await.unwrap_or_default();
    ctrl.stop();
    // Failed reconciles by category (conflicts and stale caches are retried after 200 ms).
    let errors: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("k8s_scheduler_controller_reconcile_errors_total{") && l.contains("UserDeployment"))
        .map(str::to_string)
        .collect();

    let (raw, ctl) = (raw.lock().unwrap().clone(), ctl.lock().unwrap().clone());
    let row = |what: &str, q: [f64; 3]| println!("| {what} | {:.0} ms | {:.0} ms | {:.0} ms |", q[0], q[1], q[2]);
    println!("## latency: {n} apps at {rate} per second, one sandbox");
    println!();
    println!("| per app | p50 | p90 | p99 |");
    println!("|---|---|---|---|");
    row("direct: apply → Deployment seen", quantiles(&raw, AppTimes::pickup));
    row(
        "direct: Deployment seen → Available",
        quantiles(&raw, AppTimes::rollout),
    );
    row("direct: apply → Available (total)", quantiles(&raw, AppTimes::total));
    row("operator: create request → returned", quantiles(&ctl, AppTimes::create));
    row("operator: create → Deployment seen", quantiles(&ctl, AppTimes::pickup));
    row(
        "operator: Deployment seen → Available",
        quantiles(&ctl, AppTimes::rollout),
    );
    row("operator: Available → Ready", quantiles(&ctl, AppTimes::report));
    row("operator: create → Ready (total)", quantiles(&ctl, AppTimes::total));
    // What the controller adds to an app: its pick-up and apply plus noticing Available, minus
    // what applying the children directly takes; the cluster's rollout time is the same work in
    // both phases and is left out per app.
    let added = quantiles(&ctl, |t| t.pickup() + t.report());
    let direct = quantiles(&raw, AppTimes::pickup);
    println!(
        "| **controller overhead** (pick-up + report, minus direct apply) | {:.0} ms | {:.0} ms | **{:.0} ms** (target ≤ 250 ms at p99) |",
        added[0] - direct[0],
        added[1] - direct[1],
        added[2] - direct[2]
    );
    let (c, r) = (quantiles(&ctl, AppTimes::total), quantiles(&raw, AppTimes::total));
    println!(
        "| totals compared (create → Ready minus apply → Available) | {:.0} ms | {:.0} ms | {:.0} ms |",
        c[0] - r[0],
        c[1] - r[1],
        c[2] - r[2]
    );
    println!();
    let mut slow: Vec<(&String, &AppTimes)> = ctl.iter().collect();
    slow.sort_by(|a, b| b.1.total().total_cmp(&a.1.total()));
    println!("Slowest apps through the operator (pick-up (of which the create request) / rollout / report):");
    for (name, t) in slow.iter().take(5) {
        println!(
            "- {name}: {:.0} ms = {:.0} ({:.0}) + {:.0} + {:.0} ms",
            t.total(),
            t.pickup(),
            t.create(),
            t.rollout(),
            t.report()
        );
    }
    println!();
    println!(
        "Failed UserDeployment reconciles during the controller phase: {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join("; ")
        }
    );
    Ok(())
}

/// Waits until a (fresh) controller has reconciled `n` UserDeployments.
async fn wait_reconciled(ctrl: &ControllerProc, n: usize, started: Instant) -> Result<()> {
    let mut last = 0.0;
    loop {
        let m = ctrl.scrape().await.unwrap_or_default();
        let done = metric_sum(
            &m,
            "k8s_scheduler_controller_reconciles_total",
            "kind=\"UserDeployment\"",
        );
        if done != last {
            progress(format!("  {done} of {n} reconciled"));
            last = done;
        }
        if done >= n as f64 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("only {done}/{n} reconciled in 15 minutes; see the controller log named above");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The memory development loop: N suspended UserDeployments kept between runs, a fresh
/// controller's RSS once it has reconciled them all.
async fn rss(client: &Client, a: &Args) -> Result<()> {
    let n = a.count;
    let run = format!("rss-{n}");
    if a.clean {
        return cleanup(client, &run).await;
    }
    let sel = format!("{RUN_LABEL}={run}");
    let sandboxes: Api<crds::UserSandbox> = Api::all(client.clone());
    let existing = sandboxes.list(&ListParams::default().labels(&sel)).await?.items;
    let port = free_port()?;
    let namespaces: Vec<String> = if existing.len() == a.sandboxes {
        progress(format!("reusing {n} UserDeployments of run {run}"));
        existing.iter().map(|s| s.spec.namespace.clone()).collect()
    } else {
        if !existing.is_empty() {
            bail!(
                "run {run} exists with {} sandboxes; delete it with `bench rss --count {n} --clean 1`",
                existing.len()
            );
        }
        progress(format!("creating {n} suspended UserDeployments (kept for later runs)"));
        let ctrl = ControllerProc::start(&run, port, a.concurrency)?;
        let namespaces = create_sandboxes(client, &run, a.sandboxes, n / a.sandboxes + 1).await?;
        let started = Instant::now();
        create_uds(client, &namespaces, n, a.concurrency, true).await?;
        wait_ready(client, &namespaces, n, started).await?;
        ctrl.stop();
        namespaces
    };
    let started = Instant::now();
    let ctrl = ControllerProc::start(&run, free_port()?, a.concurrency)?;
    wait_reconciled(&ctrl, n, started).await?;
    let reconciled = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_settled = ctrl.rss_kib();
    tokio::time::sleep(Duration::from_secs(25)).await;
    let rss_later = ctrl.rss_kib();
    let peak = ctrl.rss_peak_kib();
    ctrl.stop();
    println!("## rss: {n} UserDeployments in {} namespaces", namespaces.len());
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| all reconciled after start | {:.1} s |", reconciled.as_secs_f64());
    println!("| RSS 5 s later | {:.1} MiB |", rss_settled as f64 / 1024.0);
    println!(
        "| RSS 30 s later | {:.1} MiB (target ≤ 60 MiB at 10,000) |",
        rss_later as f64 / 1024.0
    );
    println!("| peak RSS | {:.1} MiB |", peak as f64 / 1024.0);
    Ok(())
}

/// CPU seconds (user + system) used so far by each process of the benchmark's world, by name.
/// The apiserver's request and watch-event counters (`apiserver_request_total` by verb, resource,
/// subresource and code; `apiserver_watch_events_total` by resource), to tell per phase what the
/// cluster was asked to do.
async fn api_counters(client: &Client) -> BTreeMap<String, f64> {
    let text = match client
        .request_text(http::Request::get("/metrics").body(vec![]).expect("request"))
        .await
    {
        Ok(t) => t,
        Err(e) => {
            progress(format!(
                "  could not read the apiserver's /metrics ({e}): no request table"
            ));
            return BTreeMap::new();
        }
    };
    let label = |l: &str, k: &str| -> String {
        l.split(&format!("{k}=\"")[..])
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else { continue };
        let key = if series.starts_with("apiserver_request_total{") {
            let sub = label(series, "subresource");
            format!(
                "{} {}{} → {}",
                label(series, "verb"),
                label(series, "resource"),
                if sub.is_empty() {
                    String::new()
                } else {
                    format!("/{sub}")
                },
                label(series, "code")
            )
        } else if series.starts_with("apiserver_watch_events_total{") {
            format!("watch events: {}", label(series, "resource"))
        } else {
            continue;
        };
        *out.entry(key).or_insert(0.0) += v;
    }
    out
}

/// Prints the requests and watch events per app of two phases, side by side (rows under 0.05
/// per app in both are left out).
/// One phase of [`print_api_counters`]: its name and the counters before and after it.
type Phase<'a> = (&'a str, &'a BTreeMap<String, f64>, &'a BTreeMap<String, f64>);

fn print_api_counters(n: usize, phases: [Phase; 2]) {
    let per_app = |(_, before, after): &Phase, k: &String| {
        (after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0)) / n as f64
    };
    let mut keys: Vec<&String> = phases.iter().flat_map(|p| p.2.keys()).collect();
    keys.sort();
    keys.dedup();
    println!("Apiserver requests and watch events per app, by phase:");
    println!();
    println!("| request → code | {} | {} |", phases[0].0, phases[1].0);
    println!("|---|---|---|");
    let (mut t0, mut t1) = (0.0, 0.0);
    for k in keys {
        let (a, b) = (per_app(&phases[0], k), per_app(&phases[1], k));
        if a < 0.05 && b < 0.05 {
            continue;
        }
        if !k.starts_with("watch events") {
            t0 += a;
            t1 += b;
        }
        println!("| {k} | {a:.2} | {b:.2} |");
    }
    println!("| requests in all | {t0:.2} | {t1:.2} |");
    println!();
}

fn cpu_seconds() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... utime stime: fields 14 and 15; comm may contain spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let name = match comm {
            "etcd" | "kube-apiserver" | "kube-scheduler" | "kwok" | "controller" | "bench" => comm,
            "kube-controller" => "kube-controller-manager",
            _ => continue,
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name.to_string()).or_default() += ticks / 100.0;
    }
    out
}

/// CPU seconds used per process between two [`cpu_seconds`] snapshots.
fn cpu_used(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), (v - before.get(k).copied().unwrap_or(0.0)).max(0.0)))
        .collect()
}

async fn scale(client: &Client, run: &str, a: &Args) -> Result<()> {
    let n = a.count;
    progress(format!(
        "scale: {n} suspended UserDeployments in {} sandboxes",
        a.sandboxes
    ));
    let port = free_port()?;
    let ctrl = ControllerProc::start(run, port, a.concurrency)?;
    let namespaces = create_sandboxes(client, run, a.sandboxes, n / a.sandboxes + 1).await?;
    let started = Instant::now();
    create_uds(client, &namespaces, n, a.concurrency, true).await?;
    let elapsed = wait_ready(client, &namespaces, n, started).await?;
    // Let the caches settle, then read memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = ctrl.rss_kib();
    let peak = ctrl.rss_peak_kib();
    ctrl.stop();
    progress(format!(
        "all Ready after {:.1}s; RSS {:.1} MiB (peak {:.1} MiB); restarting",
        elapsed.as_secs_f64(),
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    ));

    // Count every change to our objects while a fresh controller re-reconciles everything.
    let changes = Arc::new(AtomicUsize::new(0));
    let changed_kinds = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Only this run's namespaces: an earlier run's clean-up may still be deleting objects.
    let prefix = format!("sandbox-bench-{run}-");
    let mut watchers = vec![];
    macro_rules! watch_kind {
        ($k:ty, $name:expr) => {{
            let api: Api<$k> = Api::all(client.clone());
            let rv = api
                .list_metadata(&ListParams::default().limit(1))
                .await?
                .metadata
                .resource_version
                .unwrap_or_default();
            let (changes, kinds, broken, prefix) =
                (changes.clone(), changed_kinds.clone(), broken.clone(), prefix.clone());
            watchers.push(tokio::spawn(async move {
                let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &rv).await else {
                    broken.store(true, Ordering::SeqCst);
                    return;
                };
                let mut stream = Box::pin(stream);
                while let Ok(Some(ev)) = stream.try_next().await {
                    if let WatchEvent::Modified(o) | WatchEvent::Added(o) | WatchEvent::Deleted(o) = ev {
                        if o.namespace().is_some_and(|ns| ns.starts_with(&prefix)) {
                            changes.fetch_add(1, Ordering::Relaxed);
                            *kinds.lock().unwrap().entry($name.to_string()).or_default() += 1;
                        }
                    }
                }
            }));
        }};
    }
    watch_kind!(UserDeployment, "UserDeployment");
    watch_kind!(Deployment, "Deployment");
    watch_kind!(k8s_openapi::api::core::v1::Service, "Service");
    watch_kind!(k8s_openapi::api::networking::v1::Ingress, "Ingress");
    watch_kind!(k8s_openapi::api::networking::v1::NetworkPolicy, "NetworkPolicy");
    watch_kind!(k8s_openapi::api::core::v1::LimitRange, "LimitRange");

    let restarted = Instant::now();
    let ctrl = ControllerProc::start(run, port, a.concurrency)?;
    wait_reconciled(&ctrl, n, restarted).await?;
    let restart_time = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart_rss = ctrl.rss_peak_kib();
    // A canary: one deliberate change that the watches must count, so that a count of zero
    // means "nothing changed" and not "the watches saw nothing".
    let before_canary = changes.load(Ordering::Relaxed);
    let canary_ns = &namespaces[0];
    Api::<Deployment>::namespaced(client.clone(), canary_ns)
        .patch(
            "app-0-web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { "bench.k8s-scheduler.io/canary": run } } })),
        )
        .await
        .context("canary patch")?;
    let canary_deadline = Instant::now() + Duration::from_secs(30);
    while changes.load(Ordering::Relaxed) == before_canary {
        if Instant::now() > canary_deadline || broken.load(Ordering::SeqCst) {
            bail!("the change-counting watches did not see the canary change: their count cannot be trusted");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctrl.stop();
    for w in watchers {
        w.abort();
    }
    let changed = before_canary;
    println!("## scale: {n} UserDeployments (suspended), {} sandboxes", a.sandboxes);
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| all Ready after | {:.1} s |", elapsed.as_secs_f64());
    println!(
        "| controller RSS with {n} cached | {:.1} MiB (target ≤ 60 MiB) |",
        rss as f64 / 1024.0
    );
    println!("| controller peak RSS | {:.1} MiB |", peak as f64 / 1024.0);
    println!(
        "| restart: all re-reconciled after | {:.1} s |",
        restart_time.as_secs_f64()
    );
    println!("| restart: peak RSS | {:.1} MiB |", restart_rss as f64 / 1024.0);
    println!(
        "| **restart: writes that changed an object** | **{changed}** (target 0) {:?} |",
        changed_kinds.lock().unwrap()
    );
    Ok(())
}
