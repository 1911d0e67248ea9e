//! Start-up checks of the session, cookie and token variables (issue 15 items 4, 13, 14, 20): a
//! value that would expose the session cookie, inject cookie attributes or keep sessions alive too
//! long stops the binary with a message naming the variable.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The listen address of every run: on TEST-NET (192.0.2.0/24, not on this machine), so a
/// configuration that passes the checks fails right after, when listening, instead of serving.
const UNUSABLE_ADDR: &str = "192.0.2.1:1";

fn run(env: &[(&str, &str)]) -> Output {
    // One database per run: runs in parallel would race on the migrations of a shared file.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "apiserver-session-config-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apiserver"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", dir.join("db.sqlite"))
        .env("SERVER_ADDR", UNUSABLE_ADDR)
        .env("METRICS_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the apiserver binary runs");
    std::fs::remove_dir_all(&dir).ok();
    out
}

/// A configuration that passes every check: Google sign-in (not DEV_MODE, so COOKIE_SECURE may
/// be on) and a secrets key. `extra` overrides or adds variables.
fn production(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![
        ("GOOGLE_CLIENT_ID", "id"),
        ("GOOGLE_CLIENT_SECRET", "secret"),
        ("GOOGLE_REDIRECT_URL", "https://platform.example.net/oauth2/callback"),
        ("BASE_URL", "https://platform.example.net"),
        ("SECRETS_ENCRYPTION_KEY", "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="),
        ("DEPLOYMENT_DOMAIN", "apps.example.com"),
        ("COOKIE_SECURE", "true"),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k, v));
    }
    env
}

/// Asserts that start-up fails, names `variable` and says `why`.
fn refused(extra: &[(&'static str, &'static str)], variable: &str, why: &str) {
    let env = production(extra);
    let out = run(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("cannot listen"),
        "{extra:?} should be refused; stderr: {stderr}"
    );
    assert!(
        stderr.contains(variable) && stderr.contains(why),
        "the error for {extra:?} should name {variable} and say {why:?}: {stderr}"
    );
}

/// Asserts that the configuration passes the checks: start-up gets as far as listening on
/// [`UNUSABLE_ADDR`]. Returns stderr.
fn accepted(extra: &[(&'static str, &'static str)]) -> String {
    let out = run(&production(extra));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("SERVER_ADDR {UNUSABLE_ADDR}: cannot listen")),
        "{extra:?} should pass the configuration checks: {stderr}"
    );
    stderr
}

#[test]
fn the_baseline_configuration_is_accepted() {
    let stderr = accepted(&[]);
    assert!(!stderr.contains("DEPLOYMENT_DOMAIN"), "no warning expected: {stderr}");
}

/// Item 4: a cookie domain that tenant apps under DEPLOYMENT_DOMAIN receive is refused: the
/// deployment domain itself, a parent of it, or a name under it (a tenant's own host).
#[test]
fn a_session_cookie_domain_shared_with_tenant_apps_is_refused() {
    for domain in [
        "apps.example.com",
        ".apps.example.com",
        "example.com",
        ".example.com",
        "APPS.example.com",
        "alice-shop.apps.example.com",
        ".platform.apps.example.com",
    ] {
        let domain: &'static str = Box::leak(domain.to_string().into_boxed_str());
        refused(
            &[("SESSION_COOKIE_DOMAIN", domain)],
            "SESSION_COOKIE_DOMAIN",
            "DEPLOYMENT_DOMAIN",
        );
    }
    // The reference's example pair: SESSION_COOKIE_DOMAIN=.example.com with DEPLOYMENT_DOMAIN=example.com.
    refused(
        &[
            ("SESSION_COOKIE_DOMAIN", ".example.com"),
            ("DEPLOYMENT_DOMAIN", "example.com"),
        ],
        "SESSION_COOKIE_DOMAIN",
        "DEPLOYMENT_DOMAIN",
    );
    // A domain beside the deployment domain is fine.
    accepted(&[("SESSION_COOKIE_DOMAIN", ".platform.example.net")]);
    accepted(&[("SESSION_COOKIE_DOMAIN", "example.net")]);
}

/// Item 4: the platform's own host under DEPLOYMENT_DOMAIN is allowed (the reference's example does
/// it) but warned about: tenant apps can set cookies for it.
#[test]
fn a_platform_host_under_the_deployment_domain_is_warned_about() {
    let stderr = accepted(&[
        ("BASE_URL", "https://app.example.com"),
        ("GOOGLE_REDIRECT_URL", "https://app.example.com/oauth2/callback"),
        ("DEPLOYMENT_DOMAIN", "example.com"),
    ]);
    assert!(
        stderr.contains("BASE_URL") && stderr.contains("DEPLOYMENT_DOMAIN") && stderr.contains("app.example.com"),
        "a warning naming BASE_URL and DEPLOYMENT_DOMAIN: {stderr}"
    );
}

/// Item 20: SESSION_COOKIE_DOMAIN becomes a cookie attribute, so only a domain name is accepted.
#[test]
fn a_session_cookie_domain_must_be_a_domain_name() {
    for bad in [
        "evil.example; SameSite=None",
        "platform.example.net;Secure",
        "platform example.net",
        "platform..example.net",
        "-platform.example.net",
        "platform.example.net:8081",
        "https://platform.example.net",
        "..example.net",
        ".",
    ] {
        let bad: &'static str = Box::leak(bad.to_string().into_boxed_str());
        refused(&[("SESSION_COOKIE_DOMAIN", bad)], "SESSION_COOKIE_DOMAIN", "domain");
    }
}

/// Item 20: SESSION_DURATION has an upper bound of 30 days (720h).
#[test]
fn session_duration_is_bounded() {
    refused(&[("SESSION_DURATION", "721h")], "SESSION_DURATION", "720h");
    refused(&[("SESSION_DURATION", "100000d")], "SESSION_DURATION", "720h");
    accepted(&[("SESSION_DURATION", "720h"), ("SESSION_MAX_LIFETIME", "720h")]);
}

/// Item 14: the absolute session lifetime is bounded too, and SESSION_DURATION fits in it.
#[test]
fn session_max_lifetime_is_bounded_and_covers_session_duration() {
    refused(&[("SESSION_MAX_LIFETIME", "721h")], "SESSION_MAX_LIFETIME", "720h");
    refused(&[("SESSION_MAX_LIFETIME", "never")], "SESSION_MAX_LIFETIME", "duration");
    refused(
        &[("SESSION_DURATION", "48h"), ("SESSION_MAX_LIFETIME", "24h")],
        "SESSION_MAX_LIFETIME",
        "SESSION_DURATION",
    );
    // The default absolute lifetime (168h) is shorter than 200h.
    refused(&[("SESSION_DURATION", "200h")], "SESSION_MAX_LIFETIME", "168h");
    accepted(&[("SESSION_DURATION", "24h"), ("SESSION_MAX_LIFETIME", "24h")]);
}

/// Item 13: the per-user token cap is a positive number.
#[test]
fn api_tokens_max_per_user_is_a_positive_number() {
    refused(&[("API_TOKENS_MAX_PER_USER", "0")], "API_TOKENS_MAX_PER_USER", "0");
    refused(
        &[("API_TOKENS_MAX_PER_USER", "many")],
        "API_TOKENS_MAX_PER_USER",
        "many",
    );
    accepted(&[("API_TOKENS_MAX_PER_USER", "5")]);
}
