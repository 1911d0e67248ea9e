//! A real OpenID Connect provider on loopback for sign-in tests.
//!
//! [`OidcProvider::start`] runs `hack/oidc/provider.mjs` (panva's certified `oidc-provider`; install
//! its dependencies once with `hack/oidc/install`) with the given clients, on a free port of
//! 127.0.0.1. It supports the authorization code flow with PKCE (S256, required), the scopes
//! `openid email profile`, and `client_secret_basic` and `client_secret_post`. Any login name is an
//! account: `sub` and `name` are the login, `email` is the login when it contains `@` and
//! `<login>@example.com` otherwise, and `email_verified` is false only for logins starting with
//! `unverified`. These claims are in the ID token.
//!
//! [`OidcProvider::authorize`] plays the browser: it takes an authorization URL, signs in and
//! returns the redirect to the client's `redirect_uri` (with `code` and `state`).
//! [`OidcProvider::set_next_token`] makes the next token response carry an ID token with a wrong
//! claim (audience, expiry, nonce, …), still validly signed by the provider's key.
//!
//! The provider process is killed when the [`OidcProvider`] is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use reqwest::header::LOCATION;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects `authorize` follows within the provider before giving up.
const MAX_HOPS: usize = 20;
/// How much of a response body or of the provider's log goes into an error message.
const MAX_SNIPPET: usize = 4000;

/// A client registered at the provider.
#[derive(Debug, Clone, Serialize)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

/// A running `hack/oidc/provider.mjs`; killed on drop.
pub struct OidcProvider {
    issuer: String,
    http: reqwest::Client,
    log_path: PathBuf,
    _child: Child,
    // Held open so that the provider never writes to a closed pipe (it writes nothing after the
    // `listening` line).
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// `hack/oidc` of the workspace (the parent of this crate's directory).
fn oidc_dir() -> PathBuf {
    crate::repo_path("hack/oidc")
}

fn snippet(text: &str) -> &str {
    let text = text.trim();
    if text.len() <= MAX_SNIPPET {
        return text;
    }
    let mut start = text.len() - MAX_SNIPPET;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl OidcProvider {
    /// Starts the provider with these clients on a free loopback port and waits until it listens.
    pub async fn start(clients: &[OidcClient]) -> Result<OidcProvider> {
        Self::start_on("127.0.0.1", clients).await
    }

    /// Like [`OidcProvider::start`], listening on `host` (an address of this machine, e.g. a real
    /// node's bridge address that pods can reach); the issuer URL names that address.
    pub async fn start_on(host: &str, clients: &[OidcClient]) -> Result<OidcProvider> {
        let dir = oidc_dir();
        ensure!(
            dir.join("node_modules")
                .join("oidc-provider")
                .join("package.json")
                .is_file(),
            "the test OpenID provider's dependencies are not installed ({} is missing): run hack/oidc/install",
            dir.join("node_modules").display()
        );
        let log_path = std::env::temp_dir().join(format!("oidc-provider-{}.log", crate::unique_name("e2e")));
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let clients_json = serde_json::to_string(clients).context("serializing the OIDC clients")?;

        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("OIDC_PORT", "0")
            .env("OIDC_HOST", host)
            .env("OIDC_CLIENTS", clients_json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::fs::remove_file(&log_path).ok();
                let advice = if e.kind() == std::io::ErrorKind::NotFound {
                    " (node is not installed: install Node.js 20.19+ and npm, then run hack/oidc/install)"
                } else {
                    ""
                };
                anyhow::anyhow!("starting `node {}/provider.mjs`: {e}{advice}", dir.display())
            })?;
        let mut stdout = BufReader::new(child.stdout.take().context("provider stdout")?).lines();

        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = stdout.next_line().await? {
                if let Some(issuer) = line.strip_prefix("listening ") {
                    return Ok(Some(issuer.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let issuer = match listening {
            Ok(Ok(Some(issuer))) => issuer,
            outcome => {
                let why = match outcome {
                    Err(_) => format!("did not print `listening …` within {START_TIMEOUT:?}"),
                    Ok(Err(e)) => format!("reading its stdout failed: {e}"),
                    _ => "exited before listening".to_owned(),
                };
                child.start_kill().ok();
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
                std::fs::remove_file(&log_path).ok();
                bail!(
                    "the test OpenID provider (node {}/provider.mjs) {why} ({status}); if its dependencies are \
                     missing or stale, run hack/oidc/install. stderr:\n{}",
                    dir.display(),
                    snippet(&stderr)
                );
            }
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building an HTTP client")?;
        Ok(OidcProvider {
            issuer,
            http,
            log_path,
            _child: child,
            _stdout: stdout,
        })
    }

    /// The issuer URL, `http://<host>:<port>` (discovery at `<issuer>/.well-known/openid-configuration`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// What the provider has written to stderr so far (notices and errors; nothing secret).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Makes the next successful token response carry a rewritten ID token, re-signed with the
    /// provider's own key and `kid`: each key of `rewrite` sets that claim (`null` removes it), and
    /// `exp_offset_seconds` shifts `exp` and `iat`. E.g. `{"aud": "someone-else"}` or
    /// `{"exp_offset_seconds": -3600}`. Later responses are not rewritten.
    pub async fn set_next_token(&self, rewrite: serde_json::Value) -> Result<()> {
        let url = format!("{}/__harness/next-token", self.issuer);
        let response = self
            .http
            .post(&url)
            .json(&rewrite)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        if status != StatusCode::NO_CONTENT {
            let body = response.text().await.unwrap_or_default();
            bail!("POST {url} answered {status}: {}", snippet(&body));
        }
        Ok(())
    }

    /// Signs in as `login` like a browser would: GETs `authorize_url`, follows the provider's
    /// redirects, submits the sign-in form and returns the first redirect that leaves the provider,
    /// i.e. the client's `redirect_uri` with `code` and `state` (or `error`).
    ///
    /// Every call has its own cookie jar, so it starts without a provider session.
    pub async fn authorize(&self, authorize_url: &str, login: &str) -> Result<String> {
        let issuer = Url::parse(&self.issuer).context("parsing the issuer URL")?;
        let mut url =
            Url::parse(authorize_url).with_context(|| format!("invalid authorization URL {authorize_url}"))?;
        ensure!(
            url.origin() == issuer.origin(),
            "authorization URL {authorize_url} is not at the provider {}",
            self.issuer
        );
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building an HTTP client")?;

        let mut submitted = false;
        let mut form: Option<Url> = None;
        for _ in 0..MAX_HOPS {
            let (method, response) = match form.take() {
                Some(action) => {
                    url = action;
                    let response = browser.post(url.clone()).form(&[("login", login)]).send().await;
                    ("POST", response)
                }
                None => ("GET", browser.get(url.clone()).send().await),
            };
            let response = response.with_context(|| format!("{method} {url}"))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .with_context(|| format!("{method} {url} answered {status} without a Location"))?;
                let next = url
                    .join(location)
                    .with_context(|| format!("invalid Location {location} from {url}"))?;
                if next.origin() != issuer.origin() {
                    return Ok(next.to_string());
                }
                url = next;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            if status == StatusCode::OK && method == "GET" && !submitted && url.path().starts_with("/interaction/") {
                let action = form_action(&body).unwrap_or_else(|| url.path().to_owned());
                form = Some(
                    url.join(&action)
                        .with_context(|| format!("invalid form action {action}"))?,
                );
                submitted = true;
                continue;
            }
            bail!(
                "unexpected answer to {method} {url} during sign-in as {login}: {status}\n{}\nprovider log:\n{}",
                snippet(&body),
                snippet(&self.log())
            );
        }
        bail!("sign-in as {login} did not leave the provider after {MAX_HOPS} requests (last: {url})")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        // The process itself is killed by `kill_on_drop`.
        std::fs::remove_file(&self.log_path).ok();
    }
}

/// The `action` of the first `<form>` of a page, HTML entities of `&` decoded.
fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    let form = &form[..form.find('>')?];
    let start = form.find("action=\"")? + "action=\"".len();
    let end = start + form[start..].find('"')?;
    Some(form[start..end].replace("&amp;", "&"))
}

#[cfg(test)]
mod tests {
    use super::form_action;

    #[test]
    fn finds_the_form_action() {
        let html = r#"<h1>x</h1><form method="post" action="/interaction/abc?x=1&amp;y=2"><input name="login"></form>"#;
        assert_eq!(form_action(html).as_deref(), Some("/interaction/abc?x=1&y=2"));
        assert_eq!(form_action("<p>no form</p>"), None);
    }
}
