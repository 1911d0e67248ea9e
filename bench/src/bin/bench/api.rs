//! `bench api [--count N]`: latency of the HTTP server (`apiserver`, release build) with N
//! deployments present, against baselines measured in the same run:
//!
//! - `GET /api/deployments` (N items, served from the watch cache) next to `GET /health`, a trivial
//!   route of the same binary, over one keep-alive connection, requests alternating;
//! - `POST /api/deployments` next to a direct Kubernetes create of the same object, alternating,
//!   so that the difference is what the server adds.
//!
//! No controller runs: the benchmark creates the DEV_MODE user's sandbox (plan enterprise, named
//! after its namespace `<run>-dev` as the server names sandboxes, so runs never collide), the
//! namespace, a public template in a platform namespace and the N UserDeployments itself, each with
//! a Ready status as the controller would write it, so that the listed objects have their real size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crds::{Template, UserDeployment, UserSandbox};
use e2e::operator::RUN_LABEL;
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::{Args, create_namespace, proc_status, progress};

/// The DEV_MODE user's id (from dev@localhost).
const DEV_USER: &str = "dev";
/// Prefix of this mode's run ids (the RUN_LABEL value and the namespaces).
pub const RUN_PREFIX: &str = "bapi";
const TEMPLATE: &str = "bench-web";
/// Field manager the server writes with; the direct creates use it too.
const FIELD_MANAGER: &str = "k8s-scheduler-server";
const GETS: usize = 2_000;
const GET_WARMUP: usize = 200;
const CREATES: usize = 100;
const CREATE_WARMUP: usize = 10;
const SETUP_CONCURRENCY: usize = 16;
const LIST_P99_TARGET_MS: f64 = 5.0;

pub async fn api(client: &Client, run: &str, a: &Args) -> Result<()> {
    let n = a.count;
    let namespace = format!("{run}-{DEV_USER}");
    // Not `<run>-<something>`: the server refuses a sandbox pattern (`<run>-%s`) that can yield it.
    let platform_ns = format!("platform-{run}");
    progress(format!(
        "api: {n} UserDeployments in namespace {namespace} (user {DEV_USER}), template in {platform_ns}"
    ));
    create_namespace(client, &namespace, run).await?;
    create_namespace(client, &platform_ns, run).await?;
    let sandbox: UserSandbox = serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
        "metadata": { "name": namespace, "labels": { RUN_LABEL: run } },
        "spec": { "owner": { "userId": DEV_USER, "email": "dev@localhost" }, "plan": "enterprise", "namespace": namespace },
    }))?;
    Api::<UserSandbox>::all(client.clone())
        .create(&PostParams::default(), &sandbox)
        .await
        .with_context(|| format!("creating the UserSandbox {namespace}"))?;
    let template: Template = serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "Template",
        "metadata": { "name": TEMPLATE, "namespace": platform_ns },
        "spec": {
            "displayName": "Benchmark web app", "visibility": "public",
            "parameters": [{ "name": "GREETING", "default": "hello" }],
            "services": [{ "name": "web", "image": "ghcr.io/example/web:1", "port": 8080,
                "resources": { "requests": { "cpu": "1m", "memory": "1Mi" }, "limits": { "cpu": "10m", "memory": "8Mi" } } }],
            "ingress": { "service": "web" },
        },
    }))?;
    Api::<Template>::namespaced(client.clone(), &platform_ns)
        .create(&PostParams::default(), &template)
        .await
        .context("creating the template")?;
    create_ready_deployments(client, &namespace, &platform_ns, n).await?;

    let mut server = Server::start(run, &platform_ns)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    server.wait_ready(&http, n).await?;
    let rss_before = server.rss_kib();

    progress(format!(
        "GET /health and GET /api/deployments alternating: {GET_WARMUP} warm-up + {GETS} each, one keep-alive connection"
    ));
    let health_url = format!("{}/health", server.base_url);
    let list_url = format!("{}/api/deployments", server.base_url);
    let (mut health, mut list) = (Vec::with_capacity(GETS), Vec::with_capacity(GETS));
    let (mut health_size, mut list_size) = (0, 0);
    let mut sched_before = (0, 0);
    for i in 0..GET_WARMUP + GETS {
        // Alternate which one goes first, so that neither always follows the other.
        let (h, l) = if i % 2 == 0 {
            let h = timed_get(&http, &health_url).await?;
            (h, timed_get(&http, &list_url).await?)
        } else {
            let l = timed_get(&http, &list_url).await?;
            (timed_get(&http, &health_url).await?, l)
        };
        if i + 1 == GET_WARMUP {
            sched_before = server.sched_ns();
        }
        if i >= GET_WARMUP {
            health.push(h.0);
            list.push(l.0);
            (health_size, list_size) = (h.1, l.1);
        }
        if (i + 1) % 500 == 0 {
            progress(format!("  {}/{} pairs", i + 1, GET_WARMUP + GETS));
        }
    }

    let sched_after = server.sched_ns();
    // Per measured pair (one list and one health request; the health route costs microseconds).
    let cpu_per_pair = sched_after.0.saturating_sub(sched_before.0) as f64 / 1e6 / GETS as f64;
    let wait_per_pair = sched_after.1.saturating_sub(sched_before.1) as f64 / 1e6 / GETS as f64;
    progress(format!(
        "creates: {CREATE_WARMUP} warm-up + {CREATES} through POST /api/deployments and {CREATES} direct, alternating"
    ));
    let uds: Api<UserDeployment> = Api::namespaced(client.clone(), &namespace);
    let post_url = format!("{}/api/deployments", server.base_url);
    let (mut via_api, mut direct, mut added) = (vec![], vec![], vec![]);
    for i in 0..CREATE_WARMUP + CREATES {
        let (api_name, direct_name) = if i < CREATE_WARMUP {
            (format!("warm-api-{i}"), format!("warm-direct-{i}"))
        } else {
            let j = i - CREATE_WARMUP;
            (format!("api-{j}"), format!("direct-{j}"))
        };
        let (x, d) = if i % 2 == 0 {
            let x = timed_api_create(&http, &post_url, &server.base_url, &api_name).await?;
            (
                x,
                timed_direct_create(&uds, &namespace, &platform_ns, &direct_name).await?,
            )
        } else {
            let d = timed_direct_create(&uds, &namespace, &platform_ns, &direct_name).await?;
            (
                timed_api_create(&http, &post_url, &server.base_url, &api_name).await?,
                d,
            )
        };
        if i >= CREATE_WARMUP {
            via_api.push(x);
            direct.push(d);
            added.push(ms(x) - ms(d));
        }
    }
    let rss = server.rss_kib();
    let peak = server.rss_peak_kib();
    server.stop();

    for v in [&mut health, &mut list, &mut via_api, &mut direct] {
        v.sort();
    }
    added.sort_by(f64::total_cmp);
    let q = |v: &[Duration], p: f64| ms(v[rank(v.len(), p)]);
    let (h50, h99, hmax) = (q(&health, 0.5), q(&health, 0.99), q(&health, 1.0));
    let (l50, l99, lmax) = (q(&list, 0.5), q(&list, 0.99), q(&list, 1.0));
    let (a50, a99) = (q(&via_api, 0.5), q(&via_api, 0.99));
    let (d50, d99) = (q(&direct, 0.5), q(&direct, 0.99));
    let paired50 = added[rank(added.len(), 0.5)];
    let met = if l99 <= LIST_P99_TARGET_MS { "met" } else { "not met" };

    println!("## api: {n} UserDeployments in one sandbox, server release build (DEV_MODE, SQLite, memory sessions)");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| `GET /health` (trivial route), {GETS} requests: p50 / p99 / max | {h50:.3} ms / {h99:.3} ms / {hmax:.3} ms ({health_size} B) |"
    );
    println!(
        "| `GET /api/deployments` ({n} items), {GETS} requests: p50 / p99 / max | {l50:.3} ms / {l99:.3} ms / {lmax:.3} ms ({:.1} KiB) |",
        list_size as f64 / 1024.0
    );
    println!(
        "| ratio list / health: p50 / p99 | {:.1}× / {:.1}× |",
        l50 / h50,
        l99 / h99
    );
    println!(
        "| server CPU time / run-queue wait per list + health pair | {cpu_per_pair:.3} ms / {wait_per_pair:.3} ms |"
    );
    println!("| **list p99** | **{l99:.2} ms** (target ≤ {LIST_P99_TARGET_MS} ms: {met}) |");
    println!("| `POST /api/deployments`, {CREATES} creates: p50 / p99 | {a50:.2} ms / {a99:.2} ms |");
    println!(
        "| direct Kubernetes create of the same object, {CREATES} creates: p50 / p99 | {d50:.2} ms / {d99:.2} ms |"
    );
    println!(
        "| **added by the server (API − direct)**: at p50 / at p99 | **{:.2} ms / {:.2} ms** ({:.2}× / {:.2}×) |",
        a50 - d50,
        a99 - d99,
        a50 / d50,
        a99 / d99
    );
    println!("| added by the server, median of the {CREATES} paired differences | {paired50:.2} ms |");
    println!(
        "| server RSS with {n} cached, after the GETs / after the creates (peak) | {:.1} MiB / {:.1} MiB ({:.1} MiB) |",
        rss_before as f64 / 1024.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Index of quantile `p` in a sorted sample of `len` (nearest rank).
fn rank(len: usize, p: f64) -> usize {
    ((p * len as f64).ceil() as usize).clamp(1, len) - 1
}

/// The object the server's create builds from `{"template": TEMPLATE, "name": name}`.
fn deployment(name: &str, namespace: &str, platform_ns: &str) -> UserDeployment {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "templateRef": { "name": TEMPLATE, "namespace": platform_ns },
            "parameters": {},
            "secretRefs": [],
            "visibility": crds::Visibility::default(),
            "replicas": null,
        },
    }))
    .expect("deployment")
}

/// N UserDeployments, each with the status the controller writes once the app runs.
async fn create_ready_deployments(client: &Client, namespace: &str, platform_ns: &str, n: usize) -> Result<()> {
    progress(format!(
        "creating {n} UserDeployments with a Ready status (concurrency {SETUP_CONCURRENCY})"
    ));
    let api: Api<UserDeployment> = Api::namespaced(client.clone(), namespace);
    let done = Arc::new(AtomicUsize::new(0));
    let step = (n / 10).max(1);
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (api, done) = (api.clone(), done.clone());
            async move {
                let name = format!("app-{i:04}");
                let created = api
                    .create(&PostParams::default(), &deployment(&name, namespace, platform_ns))
                    .await
                    .with_context(|| format!("creating UserDeployment {name}"))?;
                let generation = created.metadata.generation.unwrap_or(1);
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let condition = |type_: &str, status: &str, reason: &str, message: &str| {
                    json!({ "type": type_, "status": status, "reason": reason, "message": message,
                        "observedGeneration": generation, "lastTransitionTime": now })
                };
                let status = json!({ "status": {
                    "phase": "Ready",
                    "url": format!("https://{DEV_USER}-{name}.example.com"),
                    "services": [{ "name": "web", "replicas": 1, "readyReplicas": 1 }],
                    "observedGeneration": generation,
                    "conditions": [
                        condition("Ready", "True", "Available", "all services are available"),
                        condition("Progressing", "False", "RolloutComplete", "the rollout is complete"),
                        condition("Degraded", "False", "AsExpected", ""),
                    ],
                    "childrenHash": format!("{:016x}", i as u64 * 0x9e37_79b9_7f4a_7c15),
                }});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .with_context(|| format!("writing the status of {name}"))?;
                let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                if k % step == 0 || k == n {
                    progress(format!("  {k}/{n} created ({:.1}s)", started.elapsed().as_secs_f64()));
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// One sequential GET; the time includes reading the whole body.
async fn timed_get(http: &reqwest::Client, url: &str) -> Result<(Duration, usize)> {
    let t = Instant::now();
    let response = http.get(url).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    let elapsed = t.elapsed();
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok((elapsed, body.len()))
}

async fn timed_api_create(http: &reqwest::Client, url: &str, origin: &str, name: &str) -> Result<Duration> {
    let t = Instant::now();
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ORIGIN, origin)
        .body(json!({ "template": TEMPLATE, "name": name }).to_string())
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    let elapsed = t.elapsed();
    if status != reqwest::StatusCode::CREATED {
        bail!("POST {url} ({name}): {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(elapsed)
}

async fn timed_direct_create(
    api: &Api<UserDeployment>,
    namespace: &str,
    platform_ns: &str,
    name: &str,
) -> Result<Duration> {
    let ud = deployment(name, namespace, platform_ns);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let t = Instant::now();
    api.create(&pp, &ud)
        .await
        .with_context(|| format!("direct create of {name}"))?;
    Ok(t.elapsed())
}

/// The `apiserver` release binary (see [`bench::DevServer`]).
struct Server(bench::DevServer);

impl std::ops::Deref for Server {
    type Target = bench::DevServer;
    fn deref(&self) -> &bench::DevServer {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut bench::DevServer {
        &mut self.0
    }
}

impl Server {
    fn start(run: &str, platform_ns: &str) -> Result<Server> {
        let server = bench::DevServer::start("bench", run, platform_ns, "example.com")?;
        progress(format!(
            "apiserver pid {} on {} (log {})",
            server.child.id(),
            server.base_url,
            server.log.display()
        ));
        Ok(Server(server))
    }

    /// Until `/readyz` answers 200 and the list holds all `n` deployments (the cache is filled).
    async fn wait_ready(&mut self, http: &reqwest::Client, n: usize) -> Result<()> {
        let started = Instant::now();
        let mut ready = false;
        let mut last = usize::MAX;
        loop {
            if !self.running() {
                bail!(
                    "the apiserver exited; its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            if !ready {
                ready = http
                    .get(format!("{}/readyz", self.base_url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    progress(format!("  /readyz ok after {:.1}s", started.elapsed().as_secs_f64()));
                }
            }
            if ready {
                let r = http.get(format!("{}/api/deployments", self.base_url)).send().await?;
                let status = r.status();
                let body = r.bytes().await?;
                if !status.is_success() {
                    bail!("GET /api/deployments: {status}: {}", String::from_utf8_lossy(&body));
                }
                let items: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
                if items.len() != last {
                    progress(format!("  GET /api/deployments lists {}/{n}", items.len()));
                    last = items.len();
                }
                if items.len() == n {
                    return Ok(());
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!(
                    "the apiserver was not ready with {n} deployments listed within 120 s; its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// CPU time and run-queue wait of all the server's threads so far, in ns (`/proc/*/schedstat`).
    fn sched_ns(&self) -> (u64, u64) {
        let mut total = (0, 0);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return total;
        };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
            total.0 += fields.next().unwrap_or(0);
            total.1 += fields.next().unwrap_or(0);
        }
        total
    }

    fn rss_kib(&self) -> u64 {
        proc_status(self.child.id(), "VmRSS:")
    }

    fn rss_peak_kib(&self) -> u64 {
        proc_status(self.child.id(), "VmHWM:")
    }

    fn stop(self) {
        drop(self);
    }
}
