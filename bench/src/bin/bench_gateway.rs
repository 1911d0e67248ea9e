//! `bench_gateway`: time from `POST /api/deployments` to the first HTTP 200 through the gateway on
//! a real node, against the same children applied directly, in one run (a command, not a test).
//!
//! Needs a cluster with a real node (`hack/cluster up --real`): the kubeconfig of
//! `E2E_KUBECONFIG` (or `K8S_SCHEDULER_STATE`), the gateway's loopback port in `E2E_GATEWAY_PORT`
//! and the hello-web image on the node. Run it through `hack/bench gateway`, which builds the
//! release binaries (controller, apiserver, this) and finds both from `hack/cluster paths`.
//!
//! What it does:
//!
//! 1. A run of its own: a platform namespace `platform-<run>` holding the shipped hello-web
//!    Template (`examples/20-template-hello-web.yaml`, moved there), a UserSandbox `<run>-dev` for
//!    the DEV_MODE user (plan enterprise, so the quota never refuses an app), a release controller
//!    routing with HTTPRoutes on the real node's Gateway (the settings of `e2e/tests/real_node/apps.rs`) and
//!    a release server in DEV_MODE on a temporary SQLite database whose sandbox pattern is
//!    `<run>-%s`, so that it adopts that sandbox.
//! 2. Per app, one at a time, so that each time is one app's own:
//!    - **platform**: `POST /api/deployments {template: hello-web, name: app-<i>, parameters:
//!      {GREETING: <unique>}}`, then `GET /api/deployments/app-<i>` every 50 ms until it has a URL,
//!      then `GET <url>` through the gateway every 50 ms until an HTTP 200 whose body has the
//!      greeting;
//!    - **direct**: the same children (Deployment, ClusterIP Service, NetworkPolicy, HTTPRoute on
//!      the same Gateway) applied with server-side apply by the benchmark into the same sandbox
//!      namespace: copies of what the controller made for a warm-up app, with new names and
//!      labels, their own greeting and a fresh host `<name>-<run>.localhost`; then the same
//!      polling of the URL.
//!
//!    Platform and direct apps alternate (which goes first alternates too), so that both samples
//!    see the same cluster: a local cluster slows down over a run (docs/benchmarks.md). After each
//!    measurement the app is deleted (through `DELETE /api/deployments/<name>`, or the direct
//!    objects by the benchmark) and its pods are waited out, so that the next app starts on the
//!    same quiet node. One warm-up app of each kind comes first and is not counted (the first pod
//!    of an image on a node pays for unpacking it).
//! 3. A watch on the sandbox's Deployments notes when each becomes Available, for the breakdown.
//!
//! It prints p50/p90/p99/max per phase, the ratio platform/direct at p50 and p99, the overhead in
//! milliseconds and the median of the paired differences. Progress goes to stderr, the results
//! (markdown) to stdout. Everything it made is deleted at the end, also after a failure or Ctrl-C.
//!
//! `bench_gateway [--count N] [--warmup W] [--timeout SECONDS]` (defaults 20, 1, 180).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use controller::gateway::HTTPRoute;
use crds::{Template, UserDeployment, UserSandbox};
use e2e::operator::{ControllerProcess, RUN_LABEL, ensure_crds, is_ready_condition};
use e2e::real_node::{GATEWAY_NAME, GATEWAY_NAMESPACE, loopback_client};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ResourceQuota, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use policy::build::{DEPLOYMENT_LABEL, VISIBILITY_LABEL};
use serde_json::{Value, json};

/// The shipped template the apps are made from.
const TEMPLATE_FILE: &str = "examples/20-template-hello-web.yaml";
const TEMPLATE: &str = "hello-web";
/// The parameter each app gets a unique value of; its answer must contain it.
const GREETING: &str = "GREETING";
/// The DEV_MODE user of the server (id and email).
const DEV_USER: &str = "dev";
const DEV_EMAIL: &str = "dev@localhost";
/// Label of the directly applied objects: the name of the direct app they belong to.
const DIRECT_LABEL: &str = "bench.k8s-scheduler.io/direct";
/// Field manager of the direct applies.
const FIELD_MANAGER: &str = "bench-gateway";
/// How often the app's URL (and, until it has one, the app through the API) is asked.
const POLL: Duration = Duration::from_millis(50);
/// How often, while polling, the benchmark looks for a failure that waiting will not fix.
const CHECK_EVERY: u32 = 20;
/// How long a deleted app may take to be gone with its pods.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);
/// An app Available later than this missed its first readiness probe (the controller's probe
/// period is 10 s; the others take well under 2 s here).
const LATE_AVAILABLE: Duration = Duration::from_secs(5);
/// Container waiting reasons that do not go away by waiting.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

#[derive(Debug, PartialEq)]
struct Args {
    count: usize,
    warmup: usize,
    timeout: Duration,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        count: 20,
        warmup: 1,
        timeout: Duration::from_secs(180),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        let n: u64 = value.parse().with_context(|| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--count" => a.count = (n as usize).max(1),
            "--warmup" => a.warmup = n as usize,
            "--timeout" => a.timeout = Duration::from_secs(n.max(1)),
            other => bail!("unknown flag {other}; flags: --count N --warmup W --timeout SECONDS"),
        }
    }
    Ok(a)
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn progress(msg: impl AsRef<str>) {
    eprintln!(
        "[bench-gateway {:>7.1}s] {}",
        START.get_or_init(Instant::now).elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

fn gateway_port() -> Result<u16> {
    let v = std::env::var("E2E_GATEWAY_PORT").context(
        "E2E_GATEWAY_PORT is not set: this benchmark needs a real node; start one with `hack/cluster up --real` \
         and run `hack/bench gateway` with the same K8S_SCHEDULER_STATE and CLUSTER_PORT_BASE (or set E2E_KUBECONFIG \
         and E2E_GATEWAY_PORT from `hack/cluster paths`)",
    )?;
    v.parse().with_context(|| format!("E2E_GATEWAY_PORT={v} is not a port"))
}

#[tokio::main]
async fn main() -> Result<()> {
    START.get_or_init(Instant::now);
    let args = parse_args(std::env::args().skip(1))?;
    let port = gateway_port()?;
    let client = e2e::client().await?;
    let template = load_template()?;
    let hosts: Vec<String> = platform_names(&args)
        .iter()
        .map(|n| format!("{DEV_USER}-{n}.localhost"))
        .collect();
    preflight(&client, &template, port, &hosts).await?;
    ensure_crds(&client).await?;
    let run = e2e::unique_name("gw");
    let names = RunNames::new(&run);
    progress(format!(
        "run {run}: {} apps through the platform and {} applied directly, one at a time ({} warm-up each, not counted); gateway on 127.0.0.1:{port}",
        args.count, args.count, args.warmup
    ));
    // Ctrl-C or SIGTERM drops the run (its controller and server are killed on drop) and still
    // cleans up the cluster.
    let outcome = tokio::select! {
        r = bench(&client, &names, &args, port, template) => r,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted ({signal})")),
    };
    let report = outcome.map(|samples| {
        print_report(&samples, &args);
    });
    let cleaned = cleanup(&client, &names).await;
    match (report, cleaned) {
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(e)) => Err(e.context("the benchmark ran, but cleaning up failed")),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => Err(e.context(format!("cleaning up failed too: {c:#}"))),
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        // Without handlers the default (exit) stays; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// The names one run uses.
struct RunNames {
    run: String,
    /// Where the template lives (the server's and the controller's PLATFORM_NAMESPACE).
    platform_ns: String,
    /// The DEV_MODE user's sandbox (UserSandbox and namespace share the name).
    sandbox_ns: String,
}

impl RunNames {
    fn new(run: &str) -> Self {
        RunNames {
            run: run.to_string(),
            // Not `<run>-<something>`: the server refuses a sandbox pattern (`<run>-%s`) that can
            // yield its platform namespace.
            platform_ns: format!("platform-{run}"),
            sandbox_ns: format!("{run}-{DEV_USER}"),
        }
    }
}

/// The shipped template, as YAML parsed to JSON.
fn load_template() -> Result<Value> {
    let path = e2e::repo_path(TEMPLATE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    ensure!(
        v["metadata"]["name"] == TEMPLATE,
        "{} is not the {TEMPLATE} template",
        path.display()
    );
    Ok(v)
}

fn template_image(template: &Value) -> Result<String> {
    template["spec"]["services"][0]["image"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{TEMPLATE_FILE} has no spec.services[0].image"))
}

/// Fails early, saying what to do, when the cluster cannot run the benchmark: no real node, the
/// image not on it, no Gateway, nothing on the gateway port, a host already taken.
async fn preflight(client: &Client, template: &Value, port: u16, hosts: &[String]) -> Result<()> {
    let image = template_image(template)?;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let is_fake = |n: &Node| n.annotations().get("kwok.x-k8s.io/node").is_some_and(|v| v == "fake");
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let real: Vec<&Node> = nodes.iter().filter(|n| !is_fake(n) && ready(n)).collect();
    if real.is_empty() {
        let listed: Vec<String> = nodes
            .iter()
            .map(|n| {
                format!(
                    "{}{}{}",
                    n.name_any(),
                    if is_fake(n) { " (kwok, fake)" } else { "" },
                    if ready(n) { "" } else { " (not Ready)" }
                )
            })
            .collect();
        bail!(
            "no Ready real node in the cluster of {} (nodes: {}); kwok's fake nodes run no containers and \
             serve no gateway: run `hack/cluster up --real` first and point the benchmark at it",
            e2e::cluster::kubeconfig_path().display(),
            if listed.is_empty() {
                "none".into()
            } else {
                listed.join(", ")
            }
        );
    }
    for node in &real {
        let images: Vec<&String> = node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .map(|i| i.iter().flat_map(|i| i.names.iter().flatten()).collect())
            .unwrap_or_default();
        // The kubelet reports at most 50 images (nodeStatusMaxImages): a short list is complete.
        let complete = node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .is_none_or(|i| i.len() < 50);
        if !images.iter().any(|n| **n == image) {
            if complete {
                bail!(
                    "the image {image} ({TEMPLATE_FILE}) is not on node {}: nothing is pulled on the real node; \
                     build it with `hack/image` and import it with `hack/cluster load-images` (same \
                     K8S_SCHEDULER_STATE), then run the benchmark again",
                    node.name_any()
                );
            }
            progress(format!(
                "  node {} lists 50 images, not {image}: the list may be cut short; going on",
                node.name_any()
            ));
        }
    }
    ensure!(
        controller::gateway::http_routes_served(client).await?,
        "the cluster does not serve gateway.networking.k8s.io/v1 HTTPRoute: is it the real node's cluster (`hack/cluster up --real`)?"
    );
    let gateways: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        GATEWAY_NAMESPACE,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            controller::gateway::GROUP,
            controller::gateway::VERSION,
            "Gateway",
        )),
    );
    ensure!(
        gateways.get_opt(GATEWAY_NAME).await?.is_some(),
        "no Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} in the cluster: `hack/cluster up --real` installs it (hack/node/traefik.yaml)"
    );
    // The platform apps' hosts are `dev-<app>.localhost` whatever the run: a route of another
    // run or of `hack/dev` holding one would answer instead of the app.
    let routes = Api::<HTTPRoute>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    for r in &routes {
        if let Some(h) = r.spec.hostnames.iter().find(|h| hosts.contains(h)) {
            bail!(
                "the host {h} this benchmark gives one of its apps is already routed by HTTPRoute {}/{}: delete that \
                 app (or its leftover sandbox) first",
                r.namespace().unwrap_or_default(),
                r.name_any()
            );
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| {
        format!(
            "nothing answers on {addr} (E2E_GATEWAY_PORT): is the real node's Traefik running? (`hack/cluster status`)"
        )
    })?;
    Ok(())
}

/// Runs the whole measurement; the controller and the server live only inside it.
async fn bench(client: &Client, names: &RunNames, args: &Args, port: u16, mut template: Value) -> Result<Vec<Pair>> {
    let run = &names.run;
    create_namespace(client, &names.platform_ns, run).await?;
    template["metadata"]["namespace"] = json!(names.platform_ns);
    template["metadata"]["labels"] = json!({ RUN_LABEL: run });
    let template: Template = serde_json::from_value(template).context("the hello-web template")?;
    Api::<Template>::namespaced(client.clone(), &names.platform_ns)
        .create(&PostParams::default(), &template)
        .await
        .context("creating the template")?;

    let env: Vec<(&str, String)> = vec![
        ("DEPLOYMENT_DOMAIN", "localhost".into()),
        ("ROUTING", "gateway".into()),
        ("GATEWAY_NAME", GATEWAY_NAME.into()),
        ("GATEWAY_NAMESPACE", GATEWAY_NAMESPACE.into()),
        ("INGRESS_NAMESPACE", GATEWAY_NAMESPACE.into()),
        ("APP_URL_SCHEME", "http".into()),
        ("APP_URL_PORT", port.to_string()),
        ("PLATFORM_NAMESPACE", names.platform_ns.clone()),
        ("SANDBOX_SELECTOR", format!("{RUN_LABEL}={run}")),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let controller = ControllerProcess::start(&env)?;
    progress(format!("controller started (log {})", controller.log.display()));
    let mut server = Server::start(names)?;
    progress(format!(
        "server started on {} (DEV_MODE; log {})",
        server.base_url,
        server.process.log.display()
    ));
    let result = async {
        create_sandbox(client, names).await?;
        server.wait_ready(TEMPLATE, Duration::from_secs(120)).await?;
        let available = AvailableWatch::start(client, &names.sandbox_ns);
        let ctx = Ctx {
            client: client.clone(),
            server: &server,
            names,
            port,
            timeout: args.timeout,
            available,
        };
        measure_all(&ctx, args).await
    }
    .await;
    if result.is_err() {
        // On stderr before the error, so that the error itself is what the run ends with.
        progress(format!(
            "controller log {} (last lines):\n{}\nserver log {} (last lines):\n{}",
            controller.log.display(),
            tail(&controller.logs(), 30),
            server.process.log.display(),
            server.log_tail(30)
        ));
    }
    server.stop();
    drop(controller);
    result
}

/// What one measurement needs.
struct Ctx<'a> {
    client: Client,
    server: &'a Server,
    names: &'a RunNames,
    port: u16,
    timeout: Duration,
    available: AvailableWatch,
}

/// One app through the platform and one applied directly, measured one after the other.
struct Pair {
    platform: Sample,
    direct: Sample,
}

/// The times of one app, from the POST (platform) or the first apply (direct).
#[derive(Clone, Debug, Default)]
struct Sample {
    name: String,
    /// The POST's answer (platform) or all the applies (direct).
    request: Duration,
    /// The URL in `GET /api/deployments/<name>` (platform only).
    url_known: Option<Duration>,
    /// The Deployment seen Available by the watch.
    available: Option<Duration>,
    /// The first HTTP 200 with the app's greeting through the gateway.
    first_ok: Duration,
}

/// The names of the platform apps: the warm-ups, then the measured ones.
fn platform_names(args: &Args) -> Vec<String> {
    (1..=args.warmup)
        .map(|w| format!("warm-{w}"))
        .chain((1..=args.count).map(|i| format!("app-{i}")))
        .collect()
}

async fn measure_all(ctx: &Ctx<'_>, args: &Args) -> Result<Vec<Pair>> {
    let mut recipe = None;
    for w in 1..=args.warmup {
        let name = format!("warm-{w}");
        progress(format!("warm-up {w}/{}: {name} through the platform", args.warmup));
        let s = measure_platform(ctx, &name).await?;
        progress(format!("  {}", s.line()));
        if recipe.is_none() {
            recipe = Some(DirectRecipe::read(ctx, &name).await?);
        }
        delete_platform(ctx, &name).await?;
        let recipe = recipe.as_ref().context("no recipe")?;
        let name = format!("direct-warm-{w}");
        progress(format!("warm-up {w}/{}: {name} applied directly", args.warmup));
        let s = measure_direct(ctx, recipe, &name).await?;
        progress(format!("  {}", s.line()));
        delete_direct(ctx, &name).await?;
    }
    let recipe = match recipe {
        Some(r) => r,
        None => {
            // No warm-up: the first platform app is read (and still counted).
            let s = measure_platform(ctx, "app-1").await?;
            let r = DirectRecipe::read(ctx, "app-1").await?;
            delete_platform(ctx, "app-1").await?;
            return measure_pairs(ctx, args, r, Some(s)).await;
        }
    };
    measure_pairs(ctx, args, recipe, None).await
}

async fn measure_pairs(ctx: &Ctx<'_>, args: &Args, recipe: DirectRecipe, first: Option<Sample>) -> Result<Vec<Pair>> {
    let mut pairs = vec![];
    let mut first = first;
    for i in 1..=args.count {
        let (app, direct) = (format!("app-{i}"), format!("direct-{i}"));
        // Alternate which goes first, so that neither always follows the other's clean-up.
        let platform_first = i % 2 == 1 || first.is_some();
        let mut platform = None;
        let mut direct_sample = None;
        for step in 0..2 {
            if (step == 0) == platform_first {
                let s = match first.take() {
                    Some(s) => s,
                    None => {
                        let s = measure_platform(ctx, &app).await?;
                        delete_platform(ctx, &app).await?;
                        s
                    }
                };
                progress(format!("{i}/{}: {}", args.count, s.line()));
                platform = Some(s);
            } else {
                let s = measure_direct(ctx, &recipe, &direct).await?;
                delete_direct(ctx, &direct).await?;
                progress(format!("{i}/{}: {}", args.count, s.line()));
                direct_sample = Some(s);
            }
        }
        pairs.push(Pair {
            platform: platform.context("no platform sample")?,
            direct: direct_sample.context("no direct sample")?,
        });
    }
    Ok(pairs)
}

impl Sample {
    fn line(&self) -> String {
        let opt = |d: Option<Duration>| d.map(|d| format!("{:.2}s", d.as_secs_f64())).unwrap_or("n/a".into());
        format!(
            "{}: first 200 after {:.2}s (request {:.0} ms, url {}, Available {})",
            self.name,
            self.first_ok.as_secs_f64(),
            ms(self.request),
            opt(self.url_known),
            opt(self.available)
        )
    }
}

/// A unique greeting: letters, digits and dashes only, so that it reaches the page unchanged.
fn greeting_for(name: &str) -> String {
    e2e::unique_name(&format!("bench-{name}"))
}

/// What is watched while an app comes up.
#[derive(Clone, Copy)]
enum Subject<'a> {
    /// A UserDeployment made through the API.
    Platform(&'a str),
    /// Objects applied by the benchmark.
    Direct(&'a str),
}

impl Subject<'_> {
    fn name(&self) -> &str {
        match self {
            Subject::Platform(n) | Subject::Direct(n) => n,
        }
    }

    /// The label selector of its Deployment and pods.
    fn selector(&self) -> String {
        match self {
            Subject::Platform(n) => format!("{DEPLOYMENT_LABEL}={n}"),
            Subject::Direct(n) => format!("{DIRECT_LABEL}={n}"),
        }
    }

    /// Key of its Deployment in [`AvailableWatch`].
    fn key(&self) -> String {
        match self {
            Subject::Platform(n) => format!("platform/{n}"),
            Subject::Direct(n) => format!("direct/{n}"),
        }
    }

    /// Name of its HTTPRoute (the controller names it after the app).
    fn route(&self) -> String {
        policy::names::app_object(self.name())
    }
}

async fn measure_platform(ctx: &Ctx<'_>, name: &str) -> Result<Sample> {
    let greeting = greeting_for(name);
    let subject = Subject::Platform(name);
    let t0 = Instant::now();
    ctx.server.create(name, &greeting).await?;
    let request = t0.elapsed();
    let url = loop {
        let view = ctx.server.detail(name).await?;
        if let Some(url) = view.as_ref().and_then(|v| v["url"].as_str()) {
            break url.to_string();
        }
        if let Some(v) = &view
            && v["phase"] == "Error"
        {
            bail!("{name} failed before it had a URL: {}", view_summary(v));
        }
        if t0.elapsed() > ctx.timeout {
            bail!(
                "{name} had no URL {:?} after the POST; last state: {}",
                ctx.timeout,
                view.as_ref().map(view_summary).unwrap_or("not listed".into())
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let url_known = t0.elapsed();
    let expected = format!("http://{DEV_USER}-{name}.localhost:{}", ctx.port);
    ensure!(
        url == expected,
        "{name}: the URL in status is {url}, expected {expected} (the controller's APP_URL_* settings)"
    );
    let first_ok = first_ok(ctx, subject, &url, &greeting, t0).await?;
    Ok(Sample {
        name: name.to_string(),
        request,
        url_known: Some(url_known),
        available: ctx.available.get(&subject.key(), t0).await,
        first_ok,
    })
}

async fn measure_direct(ctx: &Ctx<'_>, recipe: &DirectRecipe, name: &str) -> Result<Sample> {
    let greeting = greeting_for(name);
    let subject = Subject::Direct(name);
    let host = format!("{name}-{}.localhost", ctx.names.run);
    let objects = recipe.objects(&ctx.names.sandbox_ns, &ctx.names.run, name, &host, &greeting)?;
    let t0 = Instant::now();
    objects.apply(&ctx.client).await?;
    let request = t0.elapsed();
    let url = format!("http://{host}:{}", ctx.port);
    let first_ok = first_ok(ctx, subject, &url, &greeting, t0).await?;
    Ok(Sample {
        name: name.to_string(),
        request,
        url_known: None,
        available: ctx.available.get(&subject.key(), t0).await,
        first_ok,
    })
}

/// GETs `url` through the gateway every [`POLL`] until an HTTP 200 whose body has `greeting`;
/// returns the time since `t0`. Fails at once on a failure waiting will not fix, or after the
/// timeout with the last answer and the app's state.
async fn first_ok(ctx: &Ctx<'_>, subject: Subject<'_>, url: &str, greeting: &str, t0: Instant) -> Result<Duration> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    let host = parsed.host_str().context("URL without host")?.to_string();
    // `*.localhost` is this machine; the port comes from the URL.
    let http = loopback_client(&host)
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut attempts = 0u32;
    loop {
        let last = match http.get(url).send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                if status == reqwest::StatusCode::OK && body.contains(greeting) {
                    return Ok(t0.elapsed());
                }
                if status == reqwest::StatusCode::OK {
                    format!("200 without the greeting {greeting}: {}", snippet(&body))
                } else {
                    format!("{status}: {}", snippet(&body))
                }
            }
            Err(e) => format!("request failed: {:#}", anyhow::Error::from(e)),
        };
        attempts += 1;
        if attempts.is_multiple_of(CHECK_EVERY)
            && let Some(why) = failure(ctx, subject).await
        {
            bail!(
                "{} cannot come up: {why}\nits state:\n{}",
                subject.name(),
                describe(ctx, subject).await
            );
        }
        if t0.elapsed() > ctx.timeout {
            bail!(
                "{}: no HTTP 200 with its greeting from {url} through the gateway within {:?}; last answer: {last}\nits state:\n{}",
                subject.name(),
                ctx.timeout,
                describe(ctx, subject).await
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

fn view_summary(v: &Value) -> String {
    format!(
        "phase {}, reason {}, message {}",
        v["phase"],
        v["reason"].as_str().unwrap_or("-"),
        v["message"].as_str().unwrap_or("-")
    )
}

/// A failure that waiting will not fix, if there is one: the app's Error phase, a container
/// that cannot start, a Deployment that cannot make pods, a route the Gateway refuses.
async fn failure(ctx: &Ctx<'_>, subject: Subject<'_>) -> Option<String> {
    if let Subject::Platform(name) = subject
        && let Ok(Some(v)) = ctx.server.detail(name).await
        && v["phase"] == "Error"
    {
        return Some(view_summary(&v));
    }
    let ns = &ctx.names.sandbox_ns;
    let lp = ListParams::default().labels(&subject.selector());
    if let Ok(pods) = Api::<Pod>::namespaced(ctx.client.clone(), ns).list(&lp).await {
        for pod in pods.items {
            let statuses = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            for c in statuses {
                if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
                    && let Some(reason) = w.reason.as_deref()
                    && FATAL_WAITING.contains(&reason)
                {
                    return Some(format!(
                        "pod {} container {}: {reason}: {}",
                        pod.name_any(),
                        c.name,
                        w.message.as_deref().unwrap_or("")
                    ));
                }
            }
        }
    }
    if let Ok(ds) = Api::<Deployment>::namespaced(ctx.client.clone(), ns).list(&lp).await {
        for d in ds.items {
            let conditions = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            if let Some(c) = conditions
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            {
                return Some(format!(
                    "Deployment {}: {}: {}",
                    d.name_any(),
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or("")
                ));
            }
        }
    }
    if let Ok(Some(route)) = Api::<HTTPRoute>::namespaced(ctx.client.clone(), ns)
        .get_opt(&subject.route())
        .await
    {
        return route.refusal();
    }
    None
}

/// The app's state in a few lines, for a failure message.
async fn describe(ctx: &Ctx<'_>, subject: Subject<'_>) -> String {
    let ns = &ctx.names.sandbox_ns;
    let lp = ListParams::default().labels(&subject.selector());
    let mut out = vec![];
    if let Subject::Platform(name) = subject {
        match ctx.server.detail(name).await {
            Ok(Some(v)) => out.push(format!("  API: {}", view_summary(&v))),
            Ok(None) => out.push("  API: not found".into()),
            Err(e) => out.push(format!("  API: {e:#}")),
        }
    }
    match Api::<Deployment>::namespaced(ctx.client.clone(), ns).list(&lp).await {
        Ok(list) if list.items.is_empty() => out.push("  Deployment: none".into()),
        Ok(list) => {
            for d in list.items {
                let s = d.status.unwrap_or_default();
                let conditions: Vec<String> = s
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={} ({}: {})",
                            c.type_,
                            c.status,
                            c.reason.as_deref().unwrap_or(""),
                            c.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                out.push(format!(
                    "  Deployment {}: {} ready, {} available; {}",
                    d.metadata.name.unwrap_or_default(),
                    s.ready_replicas.unwrap_or(0),
                    s.available_replicas.unwrap_or(0),
                    conditions.join("; ")
                ));
            }
        }
        Err(e) => out.push(format!("  Deployment: {e}")),
    }
    match Api::<Pod>::namespaced(ctx.client.clone(), ns).list(&lp).await {
        Ok(list) if list.items.is_empty() => out.push("  pods: none".into()),
        Ok(list) => {
            for p in list.items {
                let name = p.name_any();
                let s = p.status.unwrap_or_default();
                let containers: Vec<String> = s
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        let state = match c.state.as_ref() {
                            Some(st) if st.running.is_some() => "running".to_string(),
                            Some(st) => match (&st.waiting, &st.terminated) {
                                (Some(w), _) => format!(
                                    "waiting {} {}",
                                    w.reason.as_deref().unwrap_or(""),
                                    w.message.as_deref().unwrap_or("")
                                ),
                                (_, Some(t)) => format!(
                                    "terminated {} (exit {})",
                                    t.reason.as_deref().unwrap_or(""),
                                    t.exit_code
                                ),
                                _ => "unknown".into(),
                            },
                            None => "no state".into(),
                        };
                        format!("{} {state}, ready {}, restarts {}", c.name, c.ready, c.restart_count)
                    })
                    .collect();
                out.push(format!(
                    "  pod {name}: {} {}",
                    s.phase.unwrap_or_default(),
                    containers.join("; ")
                ));
            }
        }
        Err(e) => out.push(format!("  pods: {e}")),
    }
    match Api::<HTTPRoute>::namespaced(ctx.client.clone(), ns)
        .get_opt(&subject.route())
        .await
    {
        Ok(Some(r)) => {
            let parents: Vec<String> = r
                .status
                .as_ref()
                .map(|s| {
                    s.parents
                        .iter()
                        .flat_map(|p| {
                            p.conditions
                                .iter()
                                .map(|c| format!("{}={} ({})", c.type_, c.status, c.reason))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(format!(
                "  HTTPRoute {} hosts {:?}: {}",
                r.name_any(),
                r.spec.hostnames,
                if parents.is_empty() {
                    "no status from the gateway yet".into()
                } else {
                    parents.join("; ")
                }
            ));
        }
        Ok(None) => out.push("  HTTPRoute: none".into()),
        Err(e) => out.push(format!("  HTTPRoute: {e}")),
    }
    out.join("\n")
}

/// Deletes a platform app through the API and waits until it and its pods are gone.
async fn delete_platform(ctx: &Ctx<'_>, name: &str) -> Result<()> {
    ctx.server.delete(name).await?;
    let uds: Api<UserDeployment> = Api::namespaced(ctx.client.clone(), &ctx.names.sandbox_ns);
    e2e::wait_until_gone(&uds, name, DELETE_TIMEOUT)
        .await
        .with_context(|| format!("{name} was deleted through the API"))?;
    wait_pods_gone(ctx, Subject::Platform(name)).await
}

/// Deletes a direct app's objects and waits until its pods are gone.
async fn delete_direct(ctx: &Ctx<'_>, name: &str) -> Result<()> {
    let ns = &ctx.names.sandbox_ns;
    let dp = DeleteParams::background();
    let c = &ctx.client;
    let web = DirectRecipe::child_name(name);
    ignore_missing(Api::<HTTPRoute>::namespaced(c.clone(), ns).delete(name, &dp).await)?;
    ignore_missing(Api::<NetworkPolicy>::namespaced(c.clone(), ns).delete(name, &dp).await)?;
    ignore_missing(Api::<Service>::namespaced(c.clone(), ns).delete(&web, &dp).await)?;
    ignore_missing(Api::<Deployment>::namespaced(c.clone(), ns).delete(&web, &dp).await)?;
    wait_pods_gone(ctx, Subject::Direct(name)).await
}

fn ignore_missing<T>(r: kube::Result<T>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn wait_pods_gone(ctx: &Ctx<'_>, subject: Subject<'_>) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.names.sandbox_ns);
    let lp = ListParams::default().labels(&subject.selector());
    e2e::wait::poll(DELETE_TIMEOUT, &format!("the pods of {} gone", subject.name()), || {
        let (pods, lp) = (pods.clone(), lp.clone());
        async move { Ok(pods.list_metadata(&lp).await?.items.is_empty().then_some(())) }
    })
    .await
}

/// The children the controller made for one app, as a recipe for the direct apps: the same pod
/// spec, Service ports, NetworkPolicy rules and route (parents, matches), under new names.
struct DirectRecipe {
    deployment: Deployment,
    service: Service,
    network_policy: Option<NetworkPolicy>,
    route: HTTPRoute,
}

/// The objects of one direct app.
struct DirectObjects {
    deployment: Deployment,
    service: Service,
    network_policy: Option<NetworkPolicy>,
    route: HTTPRoute,
}

impl DirectRecipe {
    /// Name of a direct app's Deployment and Service (the controller's `<app>-<service>`).
    fn child_name(app: &str) -> String {
        policy::names::child(app, "web")
    }

    /// Reads what the controller made for the platform app `app`.
    async fn read(ctx: &Ctx<'_>, app: &str) -> Result<DirectRecipe> {
        let ns = &ctx.names.sandbox_ns;
        let lp = ListParams::default().labels(&format!("{DEPLOYMENT_LABEL}={app}"));
        let one = |kind: &str, n: usize| -> Result<()> {
            ensure!(
                n == 1,
                "{app}: {n} {kind}s labelled {DEPLOYMENT_LABEL}={app}, expected one (hello-web has one service)"
            );
            Ok(())
        };
        let mut ds = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
            .list(&lp)
            .await?
            .items;
        one("Deployment", ds.len())?;
        let mut ss = Api::<Service>::namespaced(ctx.client.clone(), ns)
            .list(&lp)
            .await?
            .items;
        one("Service", ss.len())?;
        let mut rs = Api::<HTTPRoute>::namespaced(ctx.client.clone(), ns)
            .list(&lp)
            .await?
            .items;
        one("HTTPRoute", rs.len())?;
        let nps = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), ns)
            .list(&lp)
            .await?
            .items;
        Ok(DirectRecipe {
            deployment: ds.remove(0),
            service: ss.remove(0),
            network_policy: nps.into_iter().next(),
            route: rs.remove(0),
        })
    }

    /// The objects of direct app `name` in `ns`, serving `greeting` at `host`.
    fn objects(&self, ns: &str, run: &str, name: &str, host: &str, greeting: &str) -> Result<DirectObjects> {
        let web = Self::child_name(name);
        let labels = BTreeMap::from([
            (RUN_LABEL.to_string(), run.to_string()),
            (DIRECT_LABEL.to_string(), name.to_string()),
        ]);
        let meta = |obj: &str| ObjectMeta {
            name: Some(obj.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let select = BTreeMap::from([(DIRECT_LABEL.to_string(), name.to_string())]);
        // The pods keep the visibility label: the sandbox's policy for the gateway selects on it.
        let visibility = self
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(VISIBILITY_LABEL))
            .cloned();
        let mut pod_labels = select.clone();
        if let Some(v) = &visibility {
            pod_labels.insert(VISIBILITY_LABEL.to_string(), v.clone());
        }

        let mut spec = self
            .deployment
            .spec
            .clone()
            .context("the controller's Deployment has no spec")?;
        spec.selector = LabelSelector {
            match_labels: Some(select.clone()),
            ..Default::default()
        };
        spec.template.metadata = Some(ObjectMeta {
            labels: Some(pod_labels.clone()),
            ..Default::default()
        });
        let pod = spec
            .template
            .spec
            .as_mut()
            .context("the controller's Deployment has no pod spec")?;
        let mut set = 0;
        for c in &mut pod.containers {
            for e in c.env.iter_mut().flatten() {
                if e.name == GREETING {
                    e.value = Some(policy::build::deployment::escape_expansion(greeting));
                    set += 1;
                }
            }
        }
        ensure!(
            set == 1,
            "the controller's pod spec sets {GREETING} {set} times, expected once"
        );
        let deployment = Deployment {
            metadata: meta(&web),
            spec: Some(spec),
            status: None,
        };

        let ports: Vec<ServicePort> = self
            .service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            // Only what the controller sets: the rest (nodePort, appProtocol) is the cluster's.
            .map(|p| ServicePort {
                name: p.name,
                port: p.port,
                target_port: p.target_port,
                protocol: p.protocol,
                ..Default::default()
            })
            .collect();
        ensure!(!ports.is_empty(), "the controller's Service has no ports");
        let service = Service {
            metadata: meta(&web),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(select.clone()),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        };

        let network_policy = match &self.network_policy {
            Some(np) => {
                let mut spec = np.spec.clone().context("the controller's NetworkPolicy has no spec")?;
                let mut matched = select.clone();
                if let Some(v) = spec
                    .pod_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .and_then(|l| l.get(VISIBILITY_LABEL))
                {
                    matched.insert(VISIBILITY_LABEL.to_string(), v.clone());
                }
                spec.pod_selector = Some(LabelSelector {
                    match_labels: Some(matched),
                    ..Default::default()
                });
                Some(NetworkPolicy {
                    metadata: meta(name),
                    spec: Some(spec),
                })
            }
            None => None,
        };

        let mut route_spec = self.route.spec.clone();
        route_spec.hostnames = vec![host.to_string()];
        let mut backends = 0;
        for rule in &mut route_spec.rules {
            for b in &mut rule.backend_refs {
                b.name = web.clone();
                backends += 1;
            }
        }
        ensure!(backends > 0, "the controller's HTTPRoute has no backend");
        let mut route = HTTPRoute::new(name, route_spec);
        route.metadata = meta(name);
        Ok(DirectObjects {
            deployment,
            service,
            network_policy,
            route,
        })
    }
}

impl DirectObjects {
    /// Server-side applies all of them, one after the other.
    async fn apply(&self, client: &Client) -> Result<()> {
        bench::apply(client, &self.deployment, FIELD_MANAGER).await?;
        bench::apply(client, &self.service, FIELD_MANAGER).await?;
        if let Some(np) = &self.network_policy {
            bench::apply(client, np, FIELD_MANAGER).await?;
        }
        bench::apply(client, &self.route, FIELD_MANAGER).await
    }
}

/// When each Deployment of the sandbox was first seen Available, by [`Subject::key`].
struct AvailableWatch {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AvailableWatch {
    fn start(client: &Client, ns: &str) -> Self {
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let (watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = (match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        progress(format!("  Deployment watch error (retrying): {e}"));
                        continue;
                    }
                }) else {
                    continue;
                };
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(1);
                let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
                if available < want {
                    continue;
                }
                let labels = d.labels();
                let key = match (labels.get(DEPLOYMENT_LABEL), labels.get(DIRECT_LABEL)) {
                    (Some(app), _) => Subject::Platform(app).key(),
                    (_, Some(app)) => Subject::Direct(app).key(),
                    _ => continue,
                };
                record.lock().expect("lock").entry(key).or_insert_with(Instant::now);
            }
        });
        AvailableWatch { seen, task }
    }

    /// When `key` became Available, since `t0`; waits a little for the watch to catch up (the
    /// first 200 can come before the watch event).
    async fn get(&self, key: &str, t0: Instant) -> Option<Duration> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = self.seen.lock().expect("lock").get(key) {
                return Some(at.saturating_duration_since(t0));
            }
            if Instant::now() > deadline {
                progress(format!(
                    "  {key}: not seen Available by the watch within 10 s of its first 200"
                ));
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for AvailableWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn create_namespace(client: &Client, name: &str, run: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_string(), run.to_string())])),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// The DEV_MODE user's sandbox, made by the benchmark (plan enterprise, labelled with the run
/// for the controller's selector) and named after its namespace, as the server names them, so
/// that the server adopts it; waits until it is Ready and its quota's usage is known.
async fn create_sandbox(client: &Client, names: &RunNames) -> Result<()> {
    let ns = &names.sandbox_ns;
    let sandbox: UserSandbox = serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
        "metadata": { "name": ns, "labels": { RUN_LABEL: names.run } },
        "spec": { "owner": { "userId": DEV_USER, "email": DEV_EMAIL }, "plan": "enterprise", "namespace": ns },
    }))?;
    let api: Api<UserSandbox> = Api::all(client.clone());
    api.create(&PostParams::default(), &sandbox)
        .await
        .with_context(|| format!("creating the UserSandbox {ns}"))?;
    progress(format!("sandbox {ns}: waiting until Ready"));
    e2e::wait_for(
        &api,
        ns,
        Duration::from_secs(120),
        "UserSandbox Ready",
        is_ready_condition::<UserSandbox>,
    )
    .await?;
    // Until the quota's usage is known the apiserver refuses the objects it counts.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    e2e::wait_for(
        &quotas,
        policy::build::sandbox::QUOTA_NAME,
        Duration::from_secs(120),
        "quota usage known for every limited resource",
        |q: Option<&ResourceQuota>| {
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

/// Deletes what the run made: the sandbox and its namespace, the platform namespace; waits
/// until they are gone so that the next run starts on a quiet cluster. Runs after the
/// controller stopped, so the deployments' cleanup finalizers are removed first.
async fn cleanup(client: &Client, names: &RunNames) -> Result<()> {
    progress("cleaning up (sandbox, its namespace, the platform namespace)");
    e2e::operator::drop_deployment_finalizers(client, &names.sandbox_ns).await;
    let sandboxes: Api<UserSandbox> = Api::all(client.clone());
    ignore_missing(sandboxes.delete(&names.sandbox_ns, &DeleteParams::background()).await)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [&names.sandbox_ns, &names.platform_ns] {
        ignore_missing(namespaces.delete(ns, &DeleteParams::background()).await)?;
    }
    e2e::wait_until_gone(&sandboxes, &names.sandbox_ns, Duration::from_secs(120)).await?;
    for ns in [&names.sandbox_ns, &names.platform_ns] {
        e2e::wait_until_gone(&namespaces, ns, Duration::from_secs(300)).await?;
    }
    progress("cleaned up");
    Ok(())
}

/// The `apiserver` release binary in DEV_MODE (see [`bench::DevServer`]), with a client.
struct Server {
    process: bench::DevServer,
    base_url: String,
    http: reqwest::Client,
}

impl Server {
    fn start(names: &RunNames) -> Result<Server> {
        let process = bench::DevServer::start("bench-gateway", &names.run, &names.platform_ns, "localhost")?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Server {
            base_url: process.base_url.clone(),
            process,
            http,
        })
    }

    /// Until `/readyz` answers 200 and `GET /api/templates` lists `template` (its cache is filled).
    async fn wait_ready(&mut self, template: &str, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if !self.process.running() {
                bail!(
                    "the apiserver exited; its log ({}):\n{}",
                    self.process.log.display(),
                    self.log_tail(30)
                );
            }
            let ready = self
                .http
                .get(format!("{}/readyz", self.base_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                let r = self.http.get(format!("{}/api/templates", self.base_url)).send().await?;
                let status = r.status();
                let body = r.text().await?;
                ensure!(status.is_success(), "GET /api/templates: {status}: {body}");
                let listed: Vec<Value> = serde_json::from_str(&body).context("GET /api/templates")?;
                if listed.iter().any(|t| t["name"] == template) {
                    progress(format!("server ready after {:.1}s", started.elapsed().as_secs_f64()));
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                bail!(
                    "the apiserver was not ready with the template {template} listed within {timeout:?}; its log ({}):\n{}",
                    self.process.log.display(),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `POST /api/deployments` as the README's curl does (JSON, with the Origin of BASE_URL).
    async fn create(&self, name: &str, greeting: &str) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/api/deployments", self.base_url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ORIGIN, &self.base_url)
            .body(json!({ "template": TEMPLATE, "name": name, "parameters": { GREETING: greeting } }).to_string())
            .send()
            .await
            .with_context(|| format!("POST /api/deployments ({name})"))?;
        let status = r.status();
        if status != reqwest::StatusCode::CREATED {
            bail!(
                "POST /api/deployments ({name}): {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// `GET /api/deployments/<name>`; `None` when it is not (or no longer) there.
    async fn detail(&self, name: &str) -> Result<Option<Value>> {
        let r = self
            .http
            .get(format!("{}/api/deployments/{name}", self.base_url))
            .send()
            .await
            .with_context(|| format!("GET /api/deployments/{name}"))?;
        let status = r.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = r.text().await?;
        ensure!(status.is_success(), "GET /api/deployments/{name}: {status}: {body}");
        Ok(Some(
            serde_json::from_str(&body).with_context(|| format!("GET /api/deployments/{name}"))?,
        ))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let r = self
            .http
            .delete(format!("{}/api/deployments/{name}", self.base_url))
            .header(reqwest::header::ORIGIN, &self.base_url)
            .send()
            .await
            .with_context(|| format!("DELETE /api/deployments/{name}"))?;
        let status = r.status();
        ensure!(
            status == reqwest::StatusCode::NO_CONTENT,
            "DELETE /api/deployments/{name}: {status}: {}",
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }

    fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }

    fn stop(&mut self) {
        self.process.stop();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p90, p99 and max of `v` (nearest rank; with 20 samples p99 is the largest).
fn quantiles(v: &[f64]) -> [f64; 4] {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    [at(0.5), at(0.9), at(0.99), at(1.0)]
}

fn print_report(pairs: &[Pair], args: &Args) {
    let n = pairs.len();
    let col = |f: &dyn Fn(&Pair) -> Option<Duration>| -> Vec<f64> { pairs.iter().filter_map(f).map(ms).collect() };
    let row = |what: &str, v: Vec<f64>| {
        let [p50, p90, p99, max] = quantiles(&v);
        let missing = if v.len() < n {
            format!(" ({} of {n} seen)", v.len())
        } else {
            String::new()
        };
        println!("| {what}{missing} | {p50:.0} ms | {p90:.0} ms | {p99:.0} ms | {max:.0} ms |");
    };
    let platform = col(&|p| Some(p.platform.first_ok));
    let direct = col(&|p| Some(p.direct.first_ok));
    let [pp50, _, pp99, _] = quantiles(&platform);
    let [dp50, _, dp99, _] = quantiles(&direct);
    let paired: Vec<f64> = platform.iter().zip(&direct).map(|(p, d)| p - d).collect();
    let [paired50, _, _, paired_max] = quantiles(&paired);
    let gap = |s: &Sample| s.available.map(|a| ms(s.first_ok) - ms(a));
    let platform_gap: Vec<f64> = pairs.iter().filter_map(|p| gap(&p.platform)).collect();
    let direct_gap: Vec<f64> = pairs.iter().filter_map(|p| gap(&p.direct)).collect();

    println!(
        "## gateway: POST /api/deployments → first HTTP 200 through the gateway, {n} apps one at a time, real node"
    );
    println!();
    println!(
        "Run of {} (UTC), commit {}. {} warm-up app(s) of each kind not counted; platform and direct apps alternate; \
         each app is deleted and its pods are gone before the next starts.",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M"),
        commit(),
        args.warmup
    );
    println!();
    println!("| phase | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    row("platform: POST answered (201)", col(&|p| Some(p.platform.request)));
    row(
        "platform: POST → URL in `GET /api/deployments/<name>`",
        col(&|p| p.platform.url_known),
    );
    row(
        "platform: POST → Deployment Available (watch)",
        col(&|p| p.platform.available),
    );
    row("**platform: POST → first 200 through the gateway**", platform.clone());
    row(
        "direct: apply Deployment, Service, NetworkPolicy, HTTPRoute",
        col(&|p| Some(p.direct.request)),
    );
    row(
        "direct: apply → Deployment Available (watch)",
        col(&|p| p.direct.available),
    );
    row("**direct: apply → first 200 through the gateway**", direct.clone());
    println!();
    println!("| comparison | value |");
    println!("|---|---|");
    println!(
        "| **ratio platform / direct** at p50 / p99 | **{:.2}× / {:.2}×** |",
        pp50 / dp50,
        pp99 / dp99
    );
    println!(
        "| overhead (platform − direct) at p50 / p99 | {:.0} ms / {:.0} ms |",
        pp50 - dp50,
        pp99 - dp99
    );
    println!("| paired difference (app i − direct i): median / largest | {paired50:.0} ms / {paired_max:.0} ms |");
    println!(
        "| Deployment Available → first 200 (gateway and endpoints), median: platform / direct | {:.0} ms / {:.0} ms |",
        quantiles(&platform_gap)[0],
        quantiles(&direct_gap)[0]
    );
    // A pod whose first readiness probe comes before the app listens is Ready only a probe
    // period (10 s) later: such apps make the p90/p99 of both kinds, so they are counted.
    let late = |f: &dyn Fn(&Pair) -> &Sample| {
        pairs
            .iter()
            .filter(|p| f(p).available.is_some_and(|a| a > LATE_AVAILABLE))
            .count()
    };
    println!(
        "| apps Available only after {} s (a readiness probe period late): platform / direct | {} / {} of {n} |",
        LATE_AVAILABLE.as_secs(),
        late(&|p| &p.platform),
        late(&|p| &p.direct)
    );
    // Which kind draws the late probes is chance, and with 20 samples one late app is the p99:
    // the same quantiles without them compare what the platform itself adds.
    let on_time = |f: &dyn Fn(&Pair) -> &Sample| -> Vec<f64> {
        pairs
            .iter()
            .map(f)
            .filter(|s| s.available.is_some_and(|a| a <= LATE_AVAILABLE))
            .map(|s| ms(s.first_ok))
            .collect()
    };
    let (po, d_o) = (on_time(&|p| &p.platform), on_time(&|p| &p.direct));
    let ([po50, _, po99, _], [do50, _, do99, _]) = (quantiles(&po), quantiles(&d_o));
    println!(
        "| without the late apps ({} / {}): first 200 p50 / p99, platform | {po50:.0} ms / {po99:.0} ms |",
        po.len(),
        d_o.len()
    );
    println!("| without the late apps: first 200 p50 / p99, direct | {do50:.0} ms / {do99:.0} ms |");
    println!(
        "| **without the late apps: ratio platform / direct** at p50 / p99 | **{:.2}× / {:.2}×** |",
        po50 / do50,
        po99 / do99
    );
    println!();
    println!("Per pair (first 200 after): platform / direct");
    println!();
    for p in pairs {
        println!(
            "- {}: {:.2} s / {}: {:.2} s",
            p.platform.name,
            p.platform.first_ok.as_secs_f64(),
            p.direct.name,
            p.direct.first_ok.as_secs_f64()
        );
    }
}

/// The checkout's commit (with `+changes` when the work tree differs), or `unknown`.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(e2e::repo_path(""))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(sha) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{sha}+changes"),
            _ => sha,
        },
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::config::{Config, Routing};
    use policy::validate::validate_deployment;

    #[test]
    fn flags_have_defaults_and_unknown_ones_are_refused() {
        let a = parse_args(Vec::<String>::new()).unwrap();
        assert_eq!(
            a,
            Args {
                count: 20,
                warmup: 1,
                timeout: Duration::from_secs(180)
            }
        );
        let a = parse_args(["--count", "5", "--warmup", "0", "--timeout", "60"].map(String::from)).unwrap();
        assert_eq!((a.count, a.warmup, a.timeout), (5, 0, Duration::from_secs(60)));
        let err = parse_args(["--apps", "5"].map(String::from)).unwrap_err().to_string();
        assert!(err.contains("unknown flag --apps"), "{err}");
        let err = parse_args(["--count"].map(String::from)).unwrap_err().to_string();
        assert!(err.contains("needs a value"), "{err}");
    }

    #[test]
    fn platform_apps_are_the_warm_ups_then_the_measured_ones() {
        let a = parse_args(["--count", "2", "--warmup", "1"].map(String::from)).unwrap();
        assert_eq!(platform_names(&a), ["warm-1", "app-1", "app-2"]);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantiles(&v), [10.0, 18.0, 20.0, 20.0]);
        assert_eq!(quantiles(&[3.0, 1.0, 2.0]), [2.0, 3.0, 3.0, 3.0]);
        assert!(quantiles(&[])[0].is_nan());
    }

    /// What the controller builds for hello-web with gateway routing, read back as it would be
    /// from the cluster.
    fn recipe() -> DirectRecipe {
        let mut config = Config::for_tests();
        config.build.routing = Routing::Gateway;
        config.settings.deployment_domain = "localhost".into();
        let template: Value =
            serde_yaml::from_str(&std::fs::read_to_string(e2e::repo_path(TEMPLATE_FILE)).unwrap()).unwrap();
        let template: Template = serde_json::from_value(template).unwrap();
        let ud: UserDeployment = serde_json::from_value(json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
            "metadata": { "name": "warm-1", "namespace": "gw-x-dev", "uid": "00000000-0000-0000-0000-000000000001" },
            "spec": { "templateRef": { "name": TEMPLATE }, "parameters": { GREETING: "warm greeting" } },
        }))
        .unwrap();
        let vd = validate_deployment(&ud, Some(&template.spec), DEV_USER, &config.settings).unwrap();
        let mut children = policy::build::deployment::build(&vd, &config.settings, &config.build);
        // The cluster fills in a ClusterIP; the recipe must not copy it.
        children.services[0].spec.as_mut().unwrap().cluster_ip = Some("10.96.0.99".into());
        DirectRecipe {
            deployment: children.deployments.remove(0),
            service: children.services.remove(0),
            network_policy: children.network_policy,
            route: children.http_route.expect("a route with ROUTING=gateway"),
        }
    }

    #[test]
    fn direct_objects_copy_the_controllers_children_under_new_names() {
        let r = recipe();
        let o = r
            .objects("gw-x-dev", "gw-x", "direct-3", "direct-3-gw-x.localhost", "hi-there")
            .unwrap();
        let own = BTreeMap::from([(DIRECT_LABEL.to_string(), "direct-3".to_string())]);

        let d = &o.deployment;
        assert_eq!(d.metadata.name.as_deref(), Some("direct-3-web"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("gw-x-dev"));
        assert_eq!(d.metadata.owner_references, None, "no owner: no UserDeployment");
        assert_eq!(d.labels().get(RUN_LABEL).map(String::as_str), Some("gw-x"));
        assert!(
            !d.labels().contains_key(DEPLOYMENT_LABEL),
            "the controller must not take it for an app's"
        );
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.selector.match_labels.as_ref(), Some(&own));
        let pod_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(pod_labels.get(DIRECT_LABEL).map(String::as_str), Some("direct-3"));
        assert_eq!(pod_labels.get(VISIBILITY_LABEL).map(String::as_str), Some("public"));
        assert!(!pod_labels.contains_key(DEPLOYMENT_LABEL));
        let pod = spec.template.spec.as_ref().unwrap();
        let original = r.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].image, original.containers[0].image);
        assert_eq!(pod.containers[0].resources, original.containers[0].resources);
        assert_eq!(
            pod.containers[0].readiness_probe,
            original.containers[0].readiness_probe
        );
        assert_eq!(pod.security_context, original.security_context);
        let greeting = pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == GREETING)
            .unwrap();
        assert_eq!(greeting.value.as_deref(), Some("hi-there"));

        let s = o.service.spec.as_ref().unwrap();
        assert_eq!(o.service.metadata.name.as_deref(), Some("direct-3-web"));
        assert_eq!(s.selector.as_ref(), Some(&own));
        assert_eq!(s.cluster_ip, None, "the cluster's ClusterIP is not copied");
        assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(s.ports.as_ref().unwrap()[0].port, 8080);

        let np = o
            .network_policy
            .as_ref()
            .expect("a NetworkPolicy as the controller makes one");
        let selected = np
            .spec
            .as_ref()
            .unwrap()
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .clone()
            .unwrap();
        assert_eq!(selected.get(DIRECT_LABEL).map(String::as_str), Some("direct-3"));
        assert_eq!(selected.get(VISIBILITY_LABEL).map(String::as_str), Some("public"));
        assert_eq!(
            np.spec.as_ref().unwrap().ingress,
            r.network_policy.as_ref().unwrap().spec.as_ref().unwrap().ingress,
            "the same rules"
        );

        assert_eq!(o.route.metadata.name.as_deref(), Some("direct-3"));
        assert_eq!(o.route.spec.hostnames, vec!["direct-3-gw-x.localhost".to_string()]);
        assert_eq!(o.route.spec.parent_refs, r.route.spec.parent_refs, "the same Gateway");
        assert_eq!(o.route.spec.rules[0].backend_refs[0].name, "direct-3-web");
        assert_eq!(o.route.spec.rules[0].backend_refs[0].port, Some(8080));
        assert_eq!(o.route.spec.rules[0].matches, r.route.spec.rules[0].matches);
        let v = serde_json::to_value(&o.route).unwrap();
        assert_eq!(v["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(v["kind"], "HTTPRoute");
    }

    #[test]
    fn a_pod_spec_without_the_greeting_is_refused() {
        let mut r = recipe();
        let pod = r.deployment.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        pod.containers[0].env = None;
        let err = r
            .objects("ns", "run", "direct-1", "h.localhost", "g")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("GREETING 0 times"), "{err}");
    }
}
