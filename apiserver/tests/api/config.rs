//! Start-up configuration: every invalid value stops the binary with a message naming the
//! variable; `--help` lists every server variable of the configuration reference.

use std::process::{Command, Output};

fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("apiserver-config-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apiserver"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", dir.join("db.sqlite"))
        .env("SERVER_ADDR", "127.0.0.1:0")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A configuration that is wrongly accepted starts a server: stop it after a while (it then
    // did not exit with an error, which the callers report).
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the apiserver binary runs");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(out) => out.expect("the apiserver binary runs"),
        Err(_) => {
            let _ = Command::new("kill").arg(id.to_string()).status();
            rx.recv().expect("the killed binary's output").expect("output")
        }
    };
    // The process is gone: its database goes too (a directory per run).
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Standard output and error together.
fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that start-up fails and names `variable`.
fn refused(env: &[(&str, &str)], variable: &str) {
    let out = run(env, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{env:?} should be refused; stderr: {stderr}");
    assert!(
        stderr.contains(variable),
        "the error for {env:?} should name {variable}: {stderr}"
    );
}

const DEV: (&str, &str) = ("DEV_MODE", "true");
/// A valid SECRETS_ENCRYPTION_KEY (32 bytes).
const KEY: (&str, &str) = ("SECRETS_ENCRYPTION_KEY", "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=");

#[test]
fn secrets_backends_need_their_settings() {
    refused(&[DEV], "SECRETS_ENCRYPTION_KEY");
    refused(&[DEV, ("SECRETS_ENCRYPTION_KEY", "c2hvcnQ=")], "SECRETS_ENCRYPTION_KEY");
    refused(
        &[DEV, ("SECRETS_ENCRYPTION_KEY", "not base64!")],
        "SECRETS_ENCRYPTION_KEY",
    );
    refused(
        &[DEV, KEY, ("SECRETS_PREVIOUS_KEYS", "c2hvcnQ=")],
        "SECRETS_PREVIOUS_KEYS",
    );
    refused(&[DEV, ("SECRETS_BACKEND", "vault")], "VAULT_ADDR");
    refused(
        &[DEV, ("SECRETS_BACKEND", "vault"), ("VAULT_ADDR", "http://127.0.0.1:1")],
        "VAULT_TOKEN",
    );
    refused(&[DEV, ("SECRETS_BACKEND", "aws")], "AWS_REGION");
}

#[test]
fn google_variables_are_required_unless_dev_mode() {
    refused(&[], "GOOGLE_CLIENT_ID");
    refused(&[("GOOGLE_CLIENT_ID", "id")], "GOOGLE_CLIENT_SECRET");
    refused(
        &[("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")],
        "GOOGLE_REDIRECT_URL",
    );
    refused(
        &[
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "s"),
            ("GOOGLE_REDIRECT_URL", "not a url"),
        ],
        "GOOGLE_REDIRECT_URL",
    );
}

#[test]
fn session_backends_need_their_stores() {
    refused(&[DEV, ("SESSION_BACKEND", "redis")], "REDIS_ADDR");
    refused(&[DEV, ("SESSION_BACKEND", "postgres")], "DATABASE_DSN");
    refused(&[DEV, ("SESSION_BACKEND", "files")], "SESSION_BACKEND");
    refused(&[DEV, ("SECRETS_BACKEND", "s3")], "SECRETS_BACKEND");
    refused(&[DEV, ("EMAIL_PROVIDER", "pigeon")], "EMAIL_PROVIDER");
    refused(&[DEV, KEY, ("EMAIL_PROVIDER", "sendgrid")], "SENDGRID_API_KEY");
    refused(&[DEV, ("DATABASE_DSN", "mysql://x@y/z")], "DATABASE_DSN");
}

#[test]
fn namespace_pattern_must_hold_one_placeholder_and_yield_namespace_names() {
    refused(&[DEV, ("KUBERNETES_NAMESPACE", "sandbox")], "KUBERNETES_NAMESPACE");
    refused(&[DEV, ("KUBERNETES_NAMESPACE", "%s-%s")], "KUBERNETES_NAMESPACE");
    refused(&[DEV, ("KUBERNETES_NAMESPACE", "Sandbox_%s")], "KUBERNETES_NAMESPACE");
    refused(
        &[DEV, ("KUBERNETES_NAMESPACE", &format!("{}-%s", "n".repeat(40)))],
        "KUBERNETES_NAMESPACE",
    );
}

#[test]
fn malformed_values_name_their_variable() {
    refused(&[DEV, ("SESSION_DURATION", "a day")], "SESSION_DURATION");
    refused(&[DEV, ("SESSION_CLEANUP_INTERVAL", "0s")], "SESSION_CLEANUP_INTERVAL");
    refused(
        &[DEV, ("KUBERNETES_RECONCILE_INTERVAL", "often")],
        "KUBERNETES_RECONCILE_INTERVAL",
    );
    refused(&[DEV, ("COOKIE_SECURE", "maybe")], "COOKIE_SECURE");
    refused(&[("DEV_MODE", "yes please")], "DEV_MODE");
    refused(&[DEV, ("SERVER_ADDR", "8081")], "SERVER_ADDR");
    refused(&[DEV, ("BASE_URL", "app.example.com")], "BASE_URL");
    refused(&[DEV, ("DEPLOYMENT_DOMAIN", "not a domain")], "DEPLOYMENT_DOMAIN");
    refused(&[DEV, ("SECRETS_ENCRYPTION_KEY", "c2hvcnQ=")], "SECRETS_ENCRYPTION_KEY");
    refused(&[DEV, ("SMTP_PORT", "smtp")], "SMTP_PORT");
}

#[test]
fn log_caps_are_bounded_and_name_their_variable() {
    for (variable, bad) in [
        ("LOGS_MAX_BYTES", "0"),
        ("LOGS_MAX_BYTES", "4MiB"),
        ("LOGS_MAX_BYTES", "1073741825"),
        ("LOGS_FOLLOW_MAX_SECONDS", "0"),
        ("LOGS_FOLLOW_MAX_SECONDS", "30m"),
        ("LOGS_FOLLOW_MAX_SECONDS", "86401"),
        ("LOGS_MAX_FOLLOWS_PER_USER", "0"),
        ("LOGS_MAX_FOLLOWS_PER_USER", "-1"),
        ("LOGS_MAX_FOLLOWS", "0"),
        ("LOGS_MAX_FOLLOWS", "many"),
    ] {
        refused(&[DEV, KEY, (variable, bad)], variable);
    }
    // The defaults, as `--help` shows them next to their variable.
    let out = run(&[], &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for (variable, default) in [
        ("LOGS_MAX_BYTES", "4194304"),
        ("LOGS_FOLLOW_MAX_SECONDS", "1800"),
        ("LOGS_MAX_FOLLOWS_PER_USER", "4"),
        ("LOGS_MAX_FOLLOWS", "256"),
    ] {
        let shown = format!("[env: {variable}=] [default: {default}]");
        assert!(help.contains(&shown), "--help does not show {shown}: {help}");
    }
    let c = apiserver::config::Config::for_tests("unused.db".into());
    assert_eq!(
        (
            c.logs_max_bytes,
            c.logs_follow_max_seconds,
            c.logs_max_follows_per_user,
            c.logs_max_follows
        ),
        (4 * 1024 * 1024, 1800, 4, 256)
    );
}

#[test]
fn dev_mode_refuses_secure_cookies_and_warns() {
    refused(&[DEV, ("COOKIE_SECURE", "true")], "COOKIE_SECURE");
    // A valid DEV_MODE configuration with an unusable listen address: it gets as far as the
    // warning, then fails on SERVER_ADDR.
    let out = run(&[DEV, KEY, ("SERVER_ADDR", "192.0.2.1:1")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("DEV_MODE=true: AUTHENTICATION IS OFF"), "{stderr}");
    assert!(stderr.contains("SERVER_ADDR"), "{stderr}");
}

#[test]
fn secret_values_never_reach_the_output() {
    let out = run(
        &[
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "client-secret-value-1"),
            ("DATABASE_DSN", "mysql://u:dsn-password-2@h/db"),
        ],
        &[],
    );
    let all = all_output(&out);
    assert!(!out.status.success());
    assert!(
        !all.contains("client-secret-value-1") && !all.contains("dsn-password-2"),
        "{all}"
    );
}

#[test]
fn help_lists_every_server_variable_of_the_reference() {
    let out = run(&[], &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for var in [
        "DATABASE_DSN",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "GOOGLE_REDIRECT_URL",
        "DEV_MODE",
        "REACT_UI",
        "SERVER_ADDR",
        "BASE_URL",
        "DEPLOYMENT_DOMAIN",
        "KUBERNETES_ENABLED",
        "KUBERNETES_NAMESPACE",
        "KUBERNETES_RECONCILE_INTERVAL",
        "SESSION_BACKEND",
        "SESSION_DURATION",
        "SESSION_COOKIE_NAME",
        "SESSION_CLEANUP_INTERVAL",
        "SESSION_COOKIE_DOMAIN",
        "STATE_COOKIE_NAME",
        "COOKIE_SECURE",
        "REDIS_ADDR",
        "SECRETS_BACKEND",
        "SECRETS_ENCRYPTION_KEY",
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_TOKEN_FILE",
        "VAULT_MOUNT_PATH",
        "AWS_REGION",
        "BILLING_ENABLED",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "EMAIL_PROVIDER",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "SENDGRID_API_KEY",
        "ANTHROPIC_API_KEY",
        "METRICS_ADDR",
    ] {
        assert!(help.contains(&format!("[env: {var}")), "--help does not list {var}");
    }
    // Documented defaults of the reference.
    for default in [
        "[default: :8081]",
        "[default: http://localhost:8081]",
        "[default: example.com]",
        "[default: sandbox-%s]",
        "[default: 30s]",
        "[default: memory]",
        "[default: 24h]",
        "[default: session_id]",
        "[default: 1h]",
        "[default: oauth_state]",
        "[default: database]",
        "[default: secret]",
        "[default: 587]",
        "[default: 127.0.0.1:9090]",
    ] {
        assert!(help.contains(default), "--help does not show {default}");
    }
}

#[test]
fn migrate_only_applies_migrations_and_exits() {
    let dir = std::env::temp_dir().join(format!("apiserver-migrate-{}", std::process::id()));
    let db = dir.join("m.sqlite");
    let _ = std::fs::remove_file(&db);
    let out = run(&[("SQLITE_PATH", db.to_str().unwrap())], &["--migrate-only"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(db.exists(), "the SQLite file was created");
}

/// A free loopback port (bound, then released for the binary to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// HTTP GET over a plain TCP connection: status code and body, or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// Issue 15 item 2: the server's metrics are served on METRICS_ADDR, not on SERVER_ADDR.
#[test]
fn metrics_are_served_on_their_own_address() {
    refused(&[DEV, KEY, ("METRICS_ADDR", "9090")], "METRICS_ADDR");
    let (public, metrics) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("apiserver-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apiserver"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", dir.join("db.sqlite"))
        .env("SERVER_ADDR", format!("127.0.0.1:{public}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics}"))
        .env(DEV.0, DEV.1)
        .env(KEY.0, KEY.1)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the apiserver binary starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http_get(public, "/health").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let on_public = http_get(public, "/metrics");
    let on_metrics = http_get(metrics, "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    let (status, _) = on_public.expect("the server answers on SERVER_ADDR");
    assert_eq!(status, 404, "/metrics must not be served on SERVER_ADDR");
    let (status, body) = on_metrics.expect("the server answers on METRICS_ADDR");
    assert_eq!(status, 200);
    assert!(
        body.contains("k8s_scheduler_server_http_request_duration_seconds"),
        "{body}"
    );
}

/// Issue 15 item 6: the sandbox namespace pattern cannot put a user's sandbox into a system or
/// the platform's namespace.
#[test]
fn namespace_pattern_cannot_reach_system_or_platform_namespaces() {
    for pattern in [
        "%s",
        "kube-%s",
        "kube-sandbox-%s",
        "openshift-%s",
        "defaul%s",
        "%sfault",
        "d%st",
    ] {
        refused(&[DEV, KEY, ("KUBERNETES_NAMESPACE", pattern)], "KUBERNETES_NAMESPACE");
    }
    // The platform's own namespace (the default k8s-scheduler, or another one).
    refused(&[DEV, KEY, ("KUBERNETES_NAMESPACE", "k8s-%s")], "KUBERNETES_NAMESPACE");
    refused(
        &[
            DEV,
            KEY,
            ("KUBERNETES_NAMESPACE", "tenant-%s"),
            ("PLATFORM_NAMESPACE", "tenant-platform"),
        ],
        "PLATFORM_NAMESPACE",
    );
    // Accepted patterns get as far as listening (on an address that cannot work).
    for pattern in ["sandbox-%s", "%s-sandbox", "u-%s-apps"] {
        let out = run(
            &[
                DEV,
                KEY,
                ("KUBERNETES_NAMESPACE", pattern),
                ("SERVER_ADDR", "192.0.2.1:1"),
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("KUBERNETES_NAMESPACE"),
            "{pattern} is refused: {stderr}"
        );
        assert!(stderr.contains("SERVER_ADDR"), "{pattern}: {stderr}");
    }
}

/// Starts the binary with `env` (SERVER_ADDR unset unless given) and returns its stderr up to the
/// "listening" line or its exit, then stops it.
fn start_and_read_log(env: &[(&str, &str)]) -> String {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("apiserver-listen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apiserver"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", dir.join("db.sqlite"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the apiserver binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("listening");
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut log = String::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

/// Issue 15 item 7: DEV_MODE listens on loopback unless SERVER_ADDR says otherwise, and warns
/// when it is told to listen elsewhere.
#[test]
fn dev_mode_listens_on_loopback_by_default() {
    let log = start_and_read_log(&[DEV, KEY]);
    assert!(
        log.contains("127.0.0.1:8081"),
        "DEV_MODE with the default SERVER_ADDR: {log}"
    );
    assert!(!log.contains("0.0.0.0:8081"), "{log}");
    let port = free_port();
    let everywhere = format!("0.0.0.0:{port}");
    let log = start_and_read_log(&[DEV, KEY, ("SERVER_ADDR", &everywhere)]);
    assert!(log.contains(&everywhere), "an explicit SERVER_ADDR is honoured: {log}");
    assert!(
        log.contains("SERVER_ADDR") && log.contains("not a loopback address"),
        "DEV_MODE on a non-loopback address warns: {log}"
    );
}

#[test]
fn organization_plans_are_checked_and_set_by_the_administrator_command() {
    refused(&[DEV, ("ORG_DEFAULT_PLAN", "gold")], "ORG_DEFAULT_PLAN");
    let out = run(&[DEV], &["--set-org-plan", "orgabc"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("<organization id>=<plan>"),
        "{stderr}"
    );
    let out = run(&[DEV], &["--set-org-plan", "orgabc=platinum"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("use free, business or enterprise"),
        "{stderr}"
    );
    // An organization that does not exist: said, nothing changes.
    let out = run(&[DEV], &["--set-org-plan", "orgnothing=business"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no organization \"orgnothing\""),
        "{stderr}"
    );
}

#[test]
fn billing_needs_its_stripe_variables_and_checks_them() {
    const ON: (&str, &str) = ("BILLING_ENABLED", "true");
    const SK: (&str, &str) = ("STRIPE_API_KEY", "sk_test_billing_key_value");
    const WH: (&str, &str) = ("STRIPE_WEBHOOK_SECRET", "whsec_billing_secret_value");
    // Both missing: both named in one message.
    let out = run(&[DEV, KEY, ON], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("STRIPE_API_KEY") && stderr.contains("STRIPE_WEBHOOK_SECRET"),
        "{stderr}"
    );
    refused(&[DEV, KEY, ON, SK], "STRIPE_WEBHOOK_SECRET");
    refused(&[DEV, KEY, ON, WH], "STRIPE_API_KEY");
    refused(&[DEV, KEY, ON, WH, ("STRIPE_API_KEY", "")], "STRIPE_API_KEY");
    refused(
        &[DEV, KEY, ON, WH, ("STRIPE_API_KEY", "pk_test_publishable")],
        "STRIPE_API_KEY",
    );
    refused(
        &[DEV, KEY, ON, SK, ("STRIPE_WEBHOOK_SECRET", "not-a-signing-secret")],
        "STRIPE_WEBHOOK_SECRET",
    );
    // Each refused value with otherwise valid billing settings: the message names its variable.
    for (variable, value) in [
        ("STRIPE_WEBHOOK_PREVIOUS_SECRET", "old"),
        ("STRIPE_PRICE_BUSINESS", "prod_123"),
        ("STRIPE_API_BASE", "api.stripe.com"),
        ("BILLING_GRACE_PERIOD_HOURS", "-1"),
        ("STRIPE_METER_CPU", "cpu minutes"),
        ("USAGE_SAMPLE_SECONDS", "1"),
    ] {
        refused(&[DEV, KEY, ON, SK, WH, (variable, value)], variable);
    }
    // One Price cannot buy two plans.
    let same = [
        ("STRIPE_PRICE_BUSINESS", "price_1"),
        ("STRIPE_PRICE_ENTERPRISE", "price_1"),
    ];
    refused(&[DEV, KEY, ON, SK, WH, same[0], same[1]], "STRIPE_PRICE_ENTERPRISE");
    // No secret reaches the output, whatever is refused.
    let out = run(&[DEV, KEY, ON, ("STRIPE_API_KEY", "pk_live_visible"), WH], &[]);
    let all = all_output(&out);
    assert!(!out.status.success());
    assert!(
        !all.contains("whsec_billing_secret_value") && !all.contains("pk_live_visible"),
        "{all}"
    );
}
