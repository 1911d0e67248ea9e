//! The web UI end to end.
//!
//! - The server binary serves the UI embedded in it (no Node.js at run time): `index.html` for the
//!   app's own paths, hashed assets cached as immutable, API paths still JSON 404s, and nothing
//!   with `REACT_UI=false`.
//! - The Playwright suite of `web/e2e/` (Debian's Chromium, headless) against the server binary
//!   and a controller on the local control plane, in DEV_MODE: sign in, browse the catalog, deploy
//!   the guestbook template with its secret parameter, watch it become Ready without reloading,
//!   view its YAML, restart and delete it, create and revoke an API token. Screenshots of every
//!   page land in `web/test-results/screenshots/` (or `UI_SCREENSHOT_DIR`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crds::{Template, UserSandbox};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use e2e::browser::{playwright, web_dir};

use e2e::apiserver::free_port;

/// An `apiserver` process; killed when dropped.
struct ServerProcess {
    child: Child,
    log: PathBuf,
    url: String,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(e2e::unique_name(prefix));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Server variables that must not leak in from the environment of the test run.
const SCRUB: &[&str] = &[
    "DATABASE_DSN",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_REDIRECT_URL",
    "OIDC_ISSUER_URL",
    "SESSION_BACKEND",
    "REDIS_ADDR",
    "COOKIE_SECURE",
    "KUBECONFIG",
    "RUST_LOG",
];

impl ServerProcess {
    /// Starts the server binary with `env` on top of DEV_MODE, SQLite in a temporary directory,
    /// memory sessions and a loopback port; returns once `/readyz` answers 200.
    async fn start(env: &[(&str, &str)]) -> Result<ServerProcess> {
        let bin = e2e::operator::workspace_binary("apiserver")?;
        let dir = TempDir::new("ui-server")?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.0.join("server.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        for k in SCRUB {
            cmd.env_remove(k);
        }
        cmd.env("DEV_MODE", "true")
            .env("REACT_UI", "true")
            .env("KUBERNETES_ENABLED", "false")
            .env("SERVER_ADDR", format!("127.0.0.1:{port}"))
            // Metrics on a port of their own, so that servers started side by side do not clash.
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("BASE_URL", &url)
            .env("SQLITE_PATH", dir.0.join("server.db"))
            .env("SESSION_BACKEND", "memory")
            .env("SECRETS_BACKEND", "database")
            .env("SECRETS_ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .env("RUST_LOG", "info,sqlx=warn,kube=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting the apiserver binary")?;
        let mut server = ServerProcess {
            child,
            log,
            url,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("the server exited ({status}) before it was ready:\n{}", server.logs());
            }
            if let Ok(r) = client.get(server.url("/readyz")).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the server was not ready within 90 s:\n{}", server.logs());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The paths of the hashed assets `index.html` loads.
fn asset_paths(index: &str) -> Vec<String> {
    index
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_binary_serves_the_embedded_ui() -> Result<()> {
    let _turn = e2e::suite::turn("ui").await;
    let server = ServerProcess::start(&[]).await?;
    let http = reqwest::Client::new();

    let index = http.get(server.url("/")).send().await?;
    let status = index.status();
    let body = index.text().await?;
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        bail!("{body} (hack/test builds the UI before the binaries)");
    }
    let index = http.get(server.url("/")).send().await?;
    assert_eq!(index.status(), 200, "{body}");
    assert!(header(&index, "content-type").starts_with("text/html"));
    assert_eq!(header(&index, "cache-control"), "no-cache");
    assert!(body.contains(r#"<div id="root"></div>"#), "{body}");

    let assets = asset_paths(&body);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{assets:?}"
    );
    for a in &assets {
        let r = http.get(server.url(a)).send().await?;
        assert_eq!(r.status(), 200, "{a}");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable",
            "{a}"
        );
        let ct = header(&r, "content-type");
        assert!(ct.contains("javascript") || ct.starts_with("text/css"), "{a}: {ct}");
        // Revalidation by ETag.
        let etag = header(&r, "etag");
        let again = http.get(server.url(a)).header("if-none-match", &etag).send().await?;
        assert_eq!(again.status(), 304, "{a}");
    }
    let missing = http.get(server.url("/assets/index-00000000.js")).send().await?;
    assert_eq!(missing.status(), 404);

    // The app's own routes load index.html.
    for path in ["/deployments/x", "/templates?q=web", "/signin", "/tokens"] {
        let r = http.get(server.url(path)).send().await?;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        assert!(header(&r, "content-security-policy").contains("default-src 'self'"));
        assert_eq!(r.text().await?, body, "{path}");
    }
    // The server's paths stay the server's.
    for path in ["/api/nope", "/api", "/dev/nope", "/oauth2/nope", "/login/x"] {
        let r = http.get(server.url(path)).send().await?;
        assert_eq!(r.status(), 404, "{path}");
        assert!(header(&r, "content-type").starts_with("application/json"), "{path}");
        let v: Value = r.json().await?;
        assert!(v["error"].as_str().is_some_and(|e| e.contains(path)), "{path}: {v}");
    }
    assert_eq!(http.get(server.url("/health")).send().await?.text().await?, "ok");
    let config: Value = http.get(server.url("/api/config")).send().await?.json().await?;
    assert_eq!(config["reactUi"], true);
    assert_eq!(config["devMode"], true);

    // REACT_UI=false: no UI at all.
    let plain = ServerProcess::start(&[("REACT_UI", "false")]).await?;
    for path in ["/", "/deployments/x", &assets[0]] {
        let r = http.get(plain.url(path)).send().await?;
        assert_eq!(r.status(), 404, "{path}");
    }
    let config: Value = http.get(plain.url("/api/config")).send().await?.json().await?;
    assert_eq!(config["reactUi"], false);
    Ok(())
}

/// Per-test names and cleanup of everything labelled with the run.
struct Run {
    client: Client,
    run: String,
    platform: String,
}

impl Run {
    async fn new() -> Result<Run> {
        let client = e2e::client().await?;
        e2e::operator::ensure_crds(&client).await?;
        let run = e2e::unique_name("ui");
        // Not `<run>-<something>`: the sandbox pattern `<run>-%s` must not be able to yield it.
        let platform = format!("platform-{run}");
        let r = Run { client, run, platform };
        r.namespace(&r.platform).await?;
        for yaml in [
            include_str!("../../../examples/20-template-hello-web.yaml"),
            include_str!("../../../examples/21-template-guestbook.yaml"),
        ] {
            let mut t: Template = serde_yaml::from_str(yaml).context("template")?;
            t.metadata.namespace = Some(r.platform.clone());
            Api::<Template>::namespaced(r.client.clone(), &r.platform)
                .create(&PostParams::default(), &t)
                .await?;
        }
        Ok(r)
    }

    fn label(&self) -> String {
        format!("{}={}", e2e::operator::RUN_LABEL, self.run)
    }

    async fn namespace(&self, name: &str) -> Result<()> {
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { e2e::cluster::TEST_NAMESPACE_LABEL: "true", e2e::operator::RUN_LABEL: self.run } }
        }))?;
        match Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes this run's sandboxes and namespaces (by label, and the dev user's by name).
    async fn cleanup(&self) {
        let lp = ListParams::default().labels(&self.label());
        let sandboxes: Api<UserSandbox> = Api::all(self.client.clone());
        if let Ok(list) = sandboxes.list(&lp).await {
            for sb in list {
                let _ = sandboxes.delete(&sb.name_any(), &DeleteParams::background()).await;
            }
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let mut names: Vec<String> = namespaces
            .list(&lp)
            .await
            .map(|l| l.items.iter().map(|n| n.name_any()).collect())
            .unwrap_or_default();
        names.push(format!("{}-dev", self.run));
        for ns in names {
            let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
        }
    }
}

#[tokio::test]
async fn playwright_scenario_against_the_server_and_the_controller() -> Result<()> {
    let _turn = e2e::suite::turn("ui").await;
    let run = Run::new().await?;
    let ns = format!("{}-dev", run.run);
    let mut controller = e2e::operator::ControllerProcess::start(&[
        ("WATCH_NAMESPACE", &ns),
        ("PLATFORM_NAMESPACE", &run.platform),
        ("SANDBOX_SELECTOR", &run.label()),
        ("DEPLOYMENT_DOMAIN", "apps.test"),
        ("LEADER_ELECT", "false"),
        ("HEALTH_PROBE_ADDR", "127.0.0.1:0"),
        ("DISABLE_NETWORK_POLICIES", "true"),
    ])?;
    let result = scenario(&run, &ns, &controller).await;
    // Clean up while the controller still runs: it removes the finalizers of what it owns.
    run.cleanup().await;
    let namespaces: Api<Namespace> = Api::all(run.client.clone());
    let gone = e2e::wait_until_gone(&namespaces, &ns, e2e::cluster::NAMESPACE_DELETE_TIMEOUT).await;
    controller.kill();
    result?;
    gone.with_context(|| format!("namespace {ns} left behind"))
}

async fn scenario(run: &Run, ns: &str, controller: &e2e::operator::ControllerProcess) -> Result<()> {
    let kubeconfig = e2e::cluster::kubeconfig_path();
    let pattern = format!("{}-%s", run.run);
    let server = ServerProcess::start(&[
        ("KUBERNETES_ENABLED", "true"),
        ("KUBECONFIG_PATH", &kubeconfig.to_string_lossy()),
        ("KUBERNETES_NAMESPACE", &pattern),
        ("PLATFORM_NAMESPACE", &run.platform),
        ("SANDBOX_LABELS", &run.label()),
        ("DEPLOYMENT_DOMAIN", "apps.test"),
        ("KUBERNETES_RECONCILE_INTERVAL", "20s"),
    ])
    .await?;

    let screenshots = std::env::var_os("UI_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| web_dir().join("test-results/screenshots"));
    std::fs::create_dir_all(&screenshots)?;
    let failures = std::env::temp_dir().join(format!("{}-playwright", run.run));
    let base = server.url.clone();
    let (dir, out) = (screenshots.clone(), failures.clone());
    let (ok, output) = tokio::task::spawn_blocking(move || playwright("ui.spec.ts", &base, &dir, &out, &[])).await??;
    println!("{output}");
    println!("screenshots: {}", screenshots.display());
    if !ok {
        bail!(
            "the Playwright suite failed (output above; traces in {})\n--- server log ---\n{}\n--- controller log ---\n{}",
            failures.display(),
            tail(&server.logs(), 80),
            tail(&controller.logs(), 80)
        );
    }
    let _ = std::fs::remove_dir_all(&failures);
    assert!(
        output.contains("3 passed"),
        "expected the 3 Playwright tests of ui.spec.ts to pass: {output}"
    );
    // The deployment is gone from the cluster too.
    let uds: Api<crds::UserDeployment> = Api::namespaced(run.client.clone(), ns);
    e2e::wait::poll(Duration::from_secs(60), "no UserDeployments left", || async {
        Ok(uds.list(&ListParams::default()).await?.items.is_empty().then_some(()))
    })
    .await?;
    Ok(())
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Mailpit variable of hack/test; missing, the test fails saying how to get it.
fn mailpit(name: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{name} is not set: run the tests with hack/test, which starts Mailpit"))
}

/// Teams in two browsers (`web/e2e/teams.spec.ts`): the server signs people in through the test
/// OpenID provider (not DEV_MODE), mails invitations through hack/test's Mailpit (STARTTLS,
/// authentication) and gives new organizations the business plan (ORG_DEFAULT_PLAN); the
/// controller provisions the team's sandbox and runs its app on the kwok node.
#[tokio::test]
async fn teams_in_two_browsers_invite_accept_switch_and_viewer_rules() -> Result<()> {
    // A turn of its own: beside the DEV_MODE scenario (two servers, two controllers, two
    // Chromiums on two cores) both Playwright runs timed out now and then.
    let _turn = e2e::suite::turn("teams_ui").await;
    let (smtp, api) = (mailpit("E2E_MAILPIT_SMTP")?, mailpit("E2E_MAILPIT_API")?);
    let (host, port) = smtp.rsplit_once(':').context("E2E_MAILPIT_SMTP is host:port")?;
    let (user, password, ca) = (
        mailpit("E2E_MAILPIT_USERNAME")?,
        mailpit("E2E_MAILPIT_PASSWORD")?,
        mailpit("E2E_MAILPIT_CA")?,
    );
    let run = Run::new().await?;
    let mut controller = e2e::operator::ControllerProcess::start(&[
        ("PLATFORM_NAMESPACE", &run.platform),
        ("SANDBOX_SELECTOR", &run.label()),
        ("DEPLOYMENT_DOMAIN", "apps.test"),
        ("LEADER_ELECT", "false"),
        ("HEALTH_PROBE_ADDR", "127.0.0.1:0"),
        ("DISABLE_NETWORK_POLICIES", "true"),
    ])?;
    let result = async {
        let server_port = free_port()?;
        let base = format!("http://127.0.0.1:{server_port}");
        let client = e2e::oidc::OidcClient {
            client_id: "teams-ui".into(),
            client_secret: "teams-ui-secret".into(),
            redirect_uris: vec![format!("{base}/oauth2/callback")],
        };
        let provider = e2e::oidc::OidcProvider::start(&[client]).await?;
        let pattern = format!("{}-%s", run.run);
        let redirect = format!("{base}/oauth2/callback");
        let server = e2e::apiserver::ServerProcess::start_at(
            server_port,
            &[
                ("REACT_UI", "true"),
                ("KUBERNETES_NAMESPACE", &pattern),
                ("PLATFORM_NAMESPACE", &run.platform),
                ("SANDBOX_LABELS", &run.label()),
                ("DEPLOYMENT_DOMAIN", "apps.test"),
                ("OIDC_ISSUER_URL", provider.issuer()),
                ("GOOGLE_CLIENT_ID", "teams-ui"),
                ("GOOGLE_CLIENT_SECRET", "teams-ui-secret"),
                ("GOOGLE_REDIRECT_URL", &redirect),
                ("ORG_DEFAULT_PLAN", "business"),
                ("EMAIL_PROVIDER", "smtp"),
                ("SMTP_HOST", host),
                ("SMTP_PORT", port),
                ("SMTP_USERNAME", &user),
                ("SMTP_PASSWORD", &password),
                ("SMTP_CA_FILE", &ca),
            ],
        )
        .await?;
        let screenshots = web_dir().join("test-results/screenshots");
        std::fs::create_dir_all(&screenshots)?;
        let failures = std::env::temp_dir().join(format!("{}-playwright-teams", run.run));
        let (dir, out, b, id) = (screenshots.clone(), failures.clone(), base.clone(), run.run.clone());
        let (ok, output) = tokio::task::spawn_blocking(move || {
            playwright("teams.spec.ts", &b, &dir, &out, &[("MAILPIT_API", &api), ("TEAMS_RUN_ID", &id)])
        })
        .await??;
        println!("{output}");
        if !ok || !output.contains("1 passed") {
            bail!(
                "the Playwright teams test failed (output above; traces in {})\n--- server log ---\n{}\n--- controller log ---\n{}\n--- provider log ---\n{}",
                failures.display(),
                tail(&server.logs(), 80),
                tail(&controller.logs(), 40),
                tail(&provider.log(), 20)
            );
        }
        let _ = std::fs::remove_dir_all(&failures);
        Ok(())
    }
    .await;
    run.cleanup().await;
    controller.kill();
    result
}
