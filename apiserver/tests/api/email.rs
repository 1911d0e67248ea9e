//! Email delivery (issue 16): SMTP against a real Mailpit (STARTTLS or implicit TLS, with
//! authentication), SendGrid against a fake of its HTTP API, and the outbox's promises (nothing
//! lost while the mail server is down, nothing sent twice: not after a restart, not by two
//! workers). `hack/test` builds and starts Mailpit and exports E2E_MAILPIT_* (its SMTP and API
//! addresses, the CA of its certificate, its binary, certificate, key and password file for the
//! Mailpits these tests start and stop themselves); without them the Mailpit tests fail.
//! E2E_POSTGRES_URL runs the two-worker test on PostgreSQL too.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use apiserver::config::{Config, EmailProvider};
use apiserver::db::Db;
use apiserver::email::smtp::{SmtpSender, SmtpSettings, TlsMode};
use apiserver::email::{self, Message, Outbox, SendError, Sender, Status, WorkerOptions, spawn_worker};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub(crate) fn env(name: &str) -> Result<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).with_context(|| {
        format!("{name} is not set: run the tests with hack/test, which builds and starts Mailpit (hack/services)")
    })
}

/// Configures `config` to send through hack/test's Mailpit (STARTTLS, authentication, its CA).
pub(crate) fn use_mailpit(config: &mut apiserver::config::Config) -> Result<()> {
    let smtp = env("E2E_MAILPIT_SMTP")?;
    let (host, port) = smtp.rsplit_once(':').context("E2E_MAILPIT_SMTP is host:port")?;
    config.email_provider = Some(EmailProvider::Smtp);
    config.smtp_host = Some(host.into());
    config.smtp_port = port.parse()?;
    config.smtp_username = Some(env("E2E_MAILPIT_USERNAME")?);
    config.smtp_password = Some(SecretString::from(env("E2E_MAILPIT_PASSWORD")?));
    config.smtp_ca_file = Some(env("E2E_MAILPIT_CA")?.into());
    Ok(())
}

/// Retries `check` until it gives `Some`, for at most `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker's pace for tests: quick retries and polls; a send timeout and lease long enough for
/// a TLS handshake on a loaded machine.
fn fast() -> WorkerOptions {
    WorkerOptions {
        poll_interval: Duration::from_millis(200),
        send_timeout: Duration::from_secs(20),
        lease: Duration::from_secs(40),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        max_attempts: 1000,
        ..WorkerOptions::default()
    }
}

fn message(to: &str, subject: &str) -> Message {
    Message {
        to: to.into(),
        subject: subject.into(),
        text: format!("Plain text of {subject}.\nJoin: http://app.test/invitations/accept"),
        html: format!("<p>HTML of <b>{subject}</b>. <a href=\"http://app.test/invitations/accept\">Join</a></p>"),
    }
}

fn address() -> String {
    format!("{}@example.com", e2e::unique_name("invitee"))
}

async fn sqlite() -> Result<Db> {
    Db::connect(None, &common::temp_sqlite()).await
}

/// Waits until the row of `key` has `status`.
async fn until_status(outbox: &Outbox, key: &str, status: Status) -> Result<email::Entry> {
    eventually(
        &format!("email {key} to be {status:?}"),
        Duration::from_secs(30),
        || async { Ok(outbox.entry(key).await?.filter(|e| e.status == status)) },
    )
    .await
}

/// A shutdown future for `spawn_worker` and the switch that resolves it.
fn shutdown_switch() -> (oneshot::Sender<()>, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

// ---------------------------------------------------------------------------------------------
// Mailpit

/// Mailpit's HTTP API.
pub(crate) struct MailpitApi {
    base: String,
    http: reqwest::Client,
}

impl MailpitApi {
    pub(crate) fn new(base: &str) -> MailpitApi {
        MailpitApi {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Summaries of the received messages addressed to `to`.
    async fn messages_to(&self, to: &str) -> Result<Vec<Value>> {
        let url = format!("{}/api/v1/messages?limit=1000", self.base);
        let all: Value = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}: is Mailpit running?"))?
            .error_for_status()?
            .json()
            .await?;
        Ok(all["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| {
                m["To"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|a| a["Address"].as_str() == Some(to)))
            })
            .collect())
    }

    /// Subjects received for `to`, with how often each arrived.
    async fn subjects_to(&self, to: &str) -> Result<BTreeMap<String, usize>> {
        let mut out = BTreeMap::new();
        for m in self.messages_to(to).await? {
            *out.entry(m["Subject"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        Ok(out)
    }

    /// One whole message (Text, HTML, From, To, Subject...).
    async fn message(&self, id: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}/api/v1/message/{id}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits until a message with `subject` arrived for `to`; returns the whole message.
    pub(crate) async fn wait_for(&self, to: &str, subject: &str) -> Result<Value> {
        let summary = eventually(
            &format!("{subject:?} to arrive for {to} in Mailpit"),
            Duration::from_secs(30),
            || async {
                Ok(self
                    .messages_to(to)
                    .await?
                    .into_iter()
                    .find(|m| m["Subject"].as_str() == Some(subject)))
            },
        )
        .await?;
        self.message(summary["ID"].as_str().context("message without ID")?)
            .await
    }
}

/// How a Mailpit of a test's own speaks SMTP.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MailpitTls {
    /// STARTTLS required, authentication against hack/test's password file.
    StartTls,
    /// TLS from the first byte, authentication as above.
    Implicit,
    /// No TLS at all; any credentials accepted over plain text.
    None,
}

/// A Mailpit process of one test, on its own loopback ports, stopped and started at will; its
/// messages live in a database file of its own, so they survive a restart.
struct OwnMailpit {
    command: Vec<String>,
    child: Option<tokio::process::Child>,
    smtp_port: u16,
    api: MailpitApi,
    dir: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl OwnMailpit {
    async fn start(tls: MailpitTls) -> Result<OwnMailpit> {
        let bin = env("E2E_MAILPIT_BIN")?;
        let dir = std::env::temp_dir().join(e2e::unique_name("mailpit"));
        std::fs::create_dir_all(&dir)?;
        let (smtp_port, http_port) = (free_port()?, free_port()?);
        let mut command = vec![
            bin,
            "--listen".into(),
            format!("127.0.0.1:{http_port}"),
            "--smtp".into(),
            format!("127.0.0.1:{smtp_port}"),
            "--database".into(),
            dir.join("mailpit.db").display().to_string(),
            "--smtp-disable-rdns".into(),
            "--disable-version-check".into(),
        ];
        match tls {
            MailpitTls::StartTls | MailpitTls::Implicit => {
                command.extend([
                    "--smtp-tls-cert".into(),
                    env("E2E_MAILPIT_CERT")?,
                    "--smtp-tls-key".into(),
                    env("E2E_MAILPIT_KEY")?,
                    "--smtp-auth-file".into(),
                    env("E2E_MAILPIT_AUTH_FILE")?,
                ]);
                command.push(if tls == MailpitTls::Implicit {
                    "--smtp-require-tls".into()
                } else {
                    "--smtp-require-starttls".into()
                });
            }
            MailpitTls::None => {
                command.extend(["--smtp-auth-accept-any".into(), "--smtp-auth-allow-insecure".into()]);
            }
        }
        let mut mp = OwnMailpit {
            command,
            child: None,
            smtp_port,
            api: MailpitApi::new(&format!("http://127.0.0.1:{http_port}")),
            dir,
        };
        mp.resume().await?;
        Ok(mp)
    }

    /// Starts the process (again, on the same ports and database).
    async fn resume(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mailpit.log"))?;
        let mut child = tokio::process::Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.command[0]))?;
        let ready = format!("{}/readyz", self.api.base);
        let smtp = format!("127.0.0.1:{}", self.smtp_port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Mailpit exited with {status}: {}",
                    std::fs::read_to_string(self.dir.join("mailpit.log")).unwrap_or_default()
                );
            }
            let http_ok = self
                .api
                .http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if http_ok && tokio::net::TcpStream::connect(&smtp).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("Mailpit did not answer on {ready} and {smtp} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the process (as a crash would).
    async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }
}

impl Drop for OwnMailpit {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An SMTP sender to 127.0.0.1:`port` that trusts hack/test's CA and signs in with its
/// account (or `password` instead).
fn smtp_sender(port: u16, tls: TlsMode, password: Option<&str>, trust_ca: bool) -> Result<SmtpSender> {
    let password = match password {
        Some(p) => p.to_string(),
        None => env("E2E_MAILPIT_PASSWORD")?,
    };
    SmtpSender::new(SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        tls,
        username: Some(env("E2E_MAILPIT_USERNAME")?),
        password: Some(SecretString::from(password)),
        extra_ca_pem: if trust_ca {
            Some(std::fs::read(env("E2E_MAILPIT_CA")?)?)
        } else {
            None
        },
        from: "Platform <noreply@app.test>".parse()?,
        timeout: Duration::from_secs(20),
    })
}

#[tokio::test]
async fn smtp_with_starttls_and_authentication_delivers_text_and_html_to_mailpit() -> Result<()> {
    let api = MailpitApi::new(&env("E2E_MAILPIT_API")?);

    // Through the configuration, as the server builds it.
    let mut config = common::offline_config();
    use_mailpit(&mut config)?;
    config.email_from = Some("Platform <noreply@app.test>".into());
    config.check().map_err(anyhow::Error::msg)?;
    let sender = email::from_config(&config)?.context("EMAIL_PROVIDER=smtp gives a sender")?;

    let outbox = Outbox::new(sqlite().await?);
    let to = address();
    let msg = message(&to, "You are invited to team Alpha");
    assert!(outbox.enqueue(&msg, "inv-1:invite").await?);
    let (stop, shutdown) = shutdown_switch();
    let worker = spawn_worker(outbox.clone(), sender, fast(), shutdown);

    let got = api.wait_for(&to, &msg.subject).await?;
    assert_eq!(got["From"]["Address"], "noreply@app.test");
    assert_eq!(got["From"]["Name"], "Platform");
    assert_eq!(got["To"][0]["Address"], to.as_str());
    // Mail has CRLF line ends on the wire.
    let part = |name: &str| {
        got[name]
            .as_str()
            .map(|t| t.replace("\r\n", "\n").trim_end().to_string())
    };
    assert_eq!(part("Text").as_deref(), Some(msg.text.as_str()));
    assert_eq!(part("HTML").as_deref(), Some(msg.html.as_str()));

    let entry = until_status(&outbox, "inv-1:invite", Status::Sent).await?;
    assert_eq!(entry.attempts, 1);
    assert_eq!(entry.last_error, None);
    stop.send(()).ok();
    tokio::time::timeout(Duration::from_secs(10), worker).await??;
    assert_eq!(api.subjects_to(&to).await?.get(&msg.subject), Some(&1));
    Ok(())
}

#[tokio::test]
async fn smtp_refusals_are_transient_and_never_show_the_password() -> Result<()> {
    let smtp = env("E2E_MAILPIT_SMTP")?;
    let port: u16 = smtp.rsplit_once(':').context("host:port")?.1.parse()?;
    let api = MailpitApi::new(&env("E2E_MAILPIT_API")?);
    let to = address();

    // A wrong password: 535, which an operator fixes in the configuration; the queued mail is
    // kept for then.
    let wrong = "wrong-password-4711";
    let err = smtp_sender(port, TlsMode::StartTls, Some(wrong), true)?
        .send(&message(&to, "wrong password"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
    assert!(err.reason().contains("535"), "{err:?}");
    assert!(!err.reason().contains(wrong), "{err:?}");

    // A certificate nobody vouches for: refused before any credential is sent.
    let err = smtp_sender(port, TlsMode::StartTls, None, false)?
        .send(&message(&to, "untrusted"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
    assert!(
        err.reason().to_lowercase().contains("certificate") || err.reason().contains("UnknownIssuer"),
        "{err:?}"
    );
    assert!(!err.reason().contains(&env("E2E_MAILPIT_PASSWORD")?), "{err:?}");

    // A recipient the server refuses for good is a permanent error; Mailpit accepts every
    // address, so an address no server takes stands in: it never reaches the wire.
    let err = smtp_sender(port, TlsMode::StartTls, None, true)?
        .send(&Message {
            to: "no address".into(),
            ..message(&to, "bad")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");

    assert!(api.messages_to(&to).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn smtp_implicit_tls_as_on_port_465_delivers() -> Result<()> {
    let mp = OwnMailpit::start(MailpitTls::Implicit).await?;
    let to = address();
    let msg = message(&to, "over implicit TLS");
    smtp_sender(mp.smtp_port, TlsMode::Implicit, None, true)?
        .send(&msg)
        .await?;
    let got = mp.api.wait_for(&to, &msg.subject).await?;
    assert_eq!(got["HTML"].as_str().map(str::trim_end), Some(msg.html.as_str()));
    Ok(())
}

#[tokio::test]
async fn smtp_without_starttls_gets_neither_credentials_nor_mail() -> Result<()> {
    // A server that offers no STARTTLS (as one in the middle could pretend): lettre must refuse
    // to go on in plain text.
    let mp = OwnMailpit::start(MailpitTls::None).await?;
    let to = address();
    let err = smtp_sender(mp.smtp_port, TlsMode::StartTls, None, true)?
        .send(&message(&to, "must not arrive"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
    assert!(mp.api.messages_to(&to).await?.is_empty());
    let log = std::fs::read_to_string(mp.dir.join("mailpit.log")).unwrap_or_default();
    assert!(!log.contains(&env("E2E_MAILPIT_PASSWORD")?), "{log}");
    Ok(())
}

#[tokio::test]
async fn mail_server_down_queues_then_delivers_once_and_a_restarted_worker_resends_nothing() -> Result<()> {
    let mut mp = OwnMailpit::start(MailpitTls::StartTls).await?;
    let sender: Arc<dyn Sender> = Arc::new(smtp_sender(mp.smtp_port, TlsMode::StartTls, None, true)?);
    let outbox = Outbox::new(sqlite().await?);
    let to = address();
    let (stop, shutdown) = shutdown_switch();
    let worker = spawn_worker(outbox.clone(), sender.clone(), fast(), shutdown);

    outbox.enqueue(&message(&to, "A"), "a").await?;
    mp.api.wait_for(&to, "A").await?;
    until_status(&outbox, "a", Status::Sent).await?;

    // The mail server goes away: the invitation is queued, attempts are counted, the error kept.
    mp.stop().await?;
    outbox.enqueue(&message(&to, "B"), "b").await?;
    let queued = eventually("B to fail twice", Duration::from_secs(30), || async {
        Ok(outbox
            .entry("b")
            .await?
            .filter(|e| e.attempts >= 2 && e.last_error.is_some()))
    })
    .await?;
    assert_eq!(queued.status, Status::Pending);
    let error = queued.last_error.unwrap_or_default();
    assert!(error.starts_with("SMTP:"), "{error}");
    assert!(!error.contains(&env("E2E_MAILPIT_PASSWORD")?), "{error}");

    // Back again: delivered by the same worker, no restart of anything else.
    mp.resume().await?;
    mp.api.wait_for(&to, "B").await?;
    until_status(&outbox, "b", Status::Sent).await?;
    // Later work done proves the worker went past B: it sent B once.
    outbox.enqueue(&message(&to, "C"), "c").await?;
    mp.api.wait_for(&to, "C").await?;
    until_status(&outbox, "c", Status::Sent).await?;

    // A restart of the worker (stopped through its shutdown future, a new one on the same
    // outbox, as after a server restart) sends only what is new.
    stop.send(()).ok();
    tokio::time::timeout(Duration::from_secs(30), worker).await??;
    let (stop, shutdown) = shutdown_switch();
    let worker = spawn_worker(Outbox::new(outbox.db().clone()), sender, fast(), shutdown);
    outbox.enqueue(&message(&to, "D"), "d").await?;
    mp.api.wait_for(&to, "D").await?;
    until_status(&outbox, "d", Status::Sent).await?;
    stop.send(()).ok();
    tokio::time::timeout(Duration::from_secs(30), worker).await??;

    let expected: BTreeMap<String, usize> = ["A", "B", "C", "D"].iter().map(|s| (s.to_string(), 1)).collect();
    assert_eq!(mp.api.subjects_to(&to).await?, expected);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SendGrid, against a fake of its API

#[derive(Clone, Debug)]
struct Recorded {
    at: tokio::time::Instant,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Value,
}

/// A fake SendGrid: records every request and answers from a script (then 202).
#[derive(Clone, Default)]
struct FakeSendgrid {
    requests: Arc<Mutex<Vec<Recorded>>>,
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
}

async fn fake_handler(
    State(fake): State<FakeSendgrid>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    fake.requests.lock().unwrap().push(Recorded {
        at: tokio::time::Instant::now(),
        method,
        uri,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let (status, body) = fake.answers.lock().unwrap().pop_front().unwrap_or((202, String::new()));
    let mut headers = HeaderMap::new();
    if status == 429 {
        headers.insert("retry-after", "1".parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), headers, body)
}

impl FakeSendgrid {
    async fn start(answers: &[(u16, &str)]) -> Result<(FakeSendgrid, String)> {
        let fake = FakeSendgrid::default();
        fake.answers
            .lock()
            .unwrap()
            .extend(answers.iter().map(|(s, b)| (*s, b.to_string())));
        let router = axum::Router::new().fallback(fake_handler).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((fake, base))
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

const SENDGRID_KEY: &str = "SG.test-key-0123456789";

fn sendgrid_config(base: &str) -> Config {
    let mut config = common::offline_config();
    config.email_provider = Some(EmailProvider::Sendgrid);
    config.sendgrid_api_key = Some(SecretString::from(SENDGRID_KEY.to_string()));
    config.sendgrid_api_url = base.parse().unwrap();
    config.email_from = Some("Platform <noreply@app.test>".into());
    config
}

async fn sendgrid_outbox(answers: &[(u16, &str)]) -> Result<(FakeSendgrid, Outbox, oneshot::Sender<()>)> {
    let (fake, base) = FakeSendgrid::start(answers).await?;
    let config = sendgrid_config(&base);
    config.check().map_err(anyhow::Error::msg)?;
    let sender = email::from_config(&config)?.context("EMAIL_PROVIDER=sendgrid gives a sender")?;
    let outbox = Outbox::new(sqlite().await?);
    let (stop, shutdown) = shutdown_switch();
    spawn_worker(outbox.clone(), sender, fast(), shutdown);
    Ok((fake, outbox, stop))
}

#[tokio::test]
async fn sendgrid_gets_the_exact_request() -> Result<()> {
    let (fake, outbox, _stop) = sendgrid_outbox(&[]).await?;
    let msg = Message {
        to: "Bob Smith <bob@example.com>".into(),
        ..message("x@example.com", "You are invited to team Alpha")
    };
    outbox.enqueue(&msg, "inv-2:invite").await?;
    let entry = until_status(&outbox, "inv-2:invite", Status::Sent).await?;
    assert_eq!(entry.attempts, 1);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.uri.path(), "/v3/mail/send");
    assert_eq!(r.uri.query(), None);
    assert_eq!(r.headers["authorization"], format!("Bearer {SENDGRID_KEY}").as_str());
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.body,
        json!({
            "personalizations": [{ "to": [{ "email": "bob@example.com", "name": "Bob Smith" }] }],
            "from": { "email": "noreply@app.test", "name": "Platform" },
            "subject": "You are invited to team Alpha",
            "content": [
                { "type": "text/plain", "value": msg.text },
                { "type": "text/html", "value": msg.html },
            ],
            "tracking_settings": {
                "click_tracking": { "enable": false, "enable_text": false },
                "open_tracking": { "enable": false },
            },
        })
    );
    Ok(())
}

#[tokio::test]
async fn sendgrid_500_is_retried_until_accepted() -> Result<()> {
    let (fake, outbox, _stop) = sendgrid_outbox(&[(500, "oops"), (503, "busy")]).await?;
    outbox.enqueue(&message("bob@example.com", "retried"), "k").await?;
    let entry = until_status(&outbox, "k", Status::Sent).await?;
    assert_eq!(entry.attempts, 3);
    assert_eq!(entry.last_error, None);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.windows(2).all(|w| w[0].body == w[1].body),
        "the same message each time"
    );
    Ok(())
}

#[tokio::test]
async fn sendgrid_400_is_marked_failed_with_the_reason_and_without_the_key() -> Result<()> {
    let refusal = format!(
        r#"{{"errors":[{{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}}],"echo":"{SENDGRID_KEY}"}}"#
    );
    let (fake, outbox, _stop) = sendgrid_outbox(&[(400, &refusal)]).await?;
    outbox.enqueue(&message("bob@example.com", "refused"), "k").await?;
    let entry = until_status(&outbox, "k", Status::Failed).await?;
    assert_eq!(entry.attempts, 1);
    let error = entry.last_error.unwrap_or_default();
    assert!(
        error.contains("400") && error.contains("Does not contain a valid address."),
        "{error}"
    );
    assert!(!error.contains(SENDGRID_KEY), "{error}");
    assert!(error.contains("[REDACTED]"), "{error}");
    // Refused for good: not tried again.
    outbox.enqueue(&message("carol@example.com", "after"), "after").await?;
    until_status(&outbox, "after", Status::Sent).await?;
    assert_eq!(fake.requests().len(), 2);
    Ok(())
}

#[tokio::test]
async fn sendgrid_429_waits_as_its_retry_after_says() -> Result<()> {
    // The fake answers 429 with `Retry-After: 1`, longer than the test backoff's first delay
    // (100 to 200 ms).
    let (fake, outbox, _stop) = sendgrid_outbox(&[(429, "rate limited")]).await?;
    outbox.enqueue(&message("bob@example.com", "limited"), "k").await?;
    let entry = until_status(&outbox, "k", Status::Sent).await?;
    assert_eq!(entry.attempts, 2);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(950), "retried after {waited:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The outbox, with a recording sender

/// Records what it sends; answers from a script (then Ok); each send takes `delay`.
#[derive(Default)]
struct Recording {
    sent: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Result<(), SendError>>>,
    delay: Duration,
}

impl Recording {
    fn new(delay: Duration, script: Vec<Result<(), SendError>>) -> Arc<Recording> {
        Arc::new(Recording {
            sent: Mutex::new(vec![]),
            script: Mutex::new(script.into()),
            delay,
        })
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Sender for Recording {
    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        tokio::time::sleep(self.delay).await;
        let answer = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        if answer.is_ok() {
            self.sent.lock().unwrap().push(msg.subject.clone());
        }
        answer
    }
}

/// Never answers (a provider that hangs, or a worker killed mid-send).
struct Hanging;

#[async_trait::async_trait]
impl Sender for Hanging {
    async fn send(&self, _: &Message) -> Result<(), SendError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn enqueue_is_idempotent_per_key_and_refuses_bad_messages() -> Result<()> {
    let outbox = Outbox::new(sqlite().await?);
    assert!(
        outbox
            .enqueue(&message("bob@example.com", "one"), "inv-3:invite")
            .await?
    );
    assert!(
        !outbox
            .enqueue(&message("bob@example.com", "two"), "inv-3:invite")
            .await?
    );
    let entry = outbox.entry("inv-3:invite").await?.context("queued")?;
    assert_eq!(
        (entry.subject.as_str(), entry.status, entry.attempts),
        ("one", Status::Pending, 0)
    );

    let err = outbox
        .enqueue(&message("not an address", "x"), "k2")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an email address"), "{err}");
    let err = outbox
        .enqueue(&message("bob@example.com", "x"), "")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("deduplication key"), "{err}");
    assert!(
        outbox.entry("k2").await?.is_none(),
        "nothing stored for a refused message"
    );

    // Sent: bodies emptied (an invitation token does not stay in the database).
    let sender = Recording::new(Duration::ZERO, vec![]);
    let (_stop, shutdown) = shutdown_switch();
    spawn_worker(outbox.clone(), sender.clone(), fast(), shutdown);
    until_status(&outbox, "inv-3:invite", Status::Sent).await?;
    let bodies: (String, String) =
        sqlx::query_as("SELECT body_text, body_html FROM email_outbox WHERE dedupe_key = 'inv-3:invite'")
            .fetch_one(outbox.db().pool())
            .await?;
    assert_eq!(bodies, (String::new(), String::new()));
    assert_eq!(sender.sent(), ["one"]);
    Ok(())
}

async fn two_workers_send_each_message_once(a: Db, b: Db) -> Result<()> {
    // Two outboxes over one database: two server replicas.
    let (one, two) = (Outbox::new(a), Outbox::new(b));
    let sender = Recording::new(Duration::from_millis(15), vec![]);
    let keys: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let outbox = if i % 2 == 0 { &one } else { &two };
        outbox.enqueue(&message("bob@example.com", key), key).await?;
    }
    let (_s1, d1) = shutdown_switch();
    let (_s2, d2) = shutdown_switch();
    spawn_worker(one.clone(), sender.clone(), fast(), d1);
    spawn_worker(two.clone(), sender.clone(), fast(), d2);
    for key in &keys {
        let e = until_status(&one, key, Status::Sent).await?;
        assert_eq!(e.attempts, 1, "{key} was claimed once");
    }
    let mut sent = sender.sent();
    sent.sort();
    assert_eq!(sent, keys, "each message sent exactly once");
    Ok(())
}

#[tokio::test]
async fn two_workers_send_each_message_once_on_sqlite() -> Result<()> {
    let path = common::temp_sqlite();
    let a = Db::connect(None, &path).await?;
    let b = Db::connect(None, &path).await?;
    two_workers_send_each_message_once(a, b).await
}

#[tokio::test]
async fn two_workers_send_each_message_once_on_postgres() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let a = Db::connect(Some(&pg.url), std::path::Path::new("unused")).await?;
    let b = Db::connect(Some(&pg.url), std::path::Path::new("unused")).await?;
    two_workers_send_each_message_once(a, b).await
}

#[tokio::test]
async fn a_worker_that_died_mid_send_leaves_the_row_to_another_after_its_lease() -> Result<()> {
    let outbox = Outbox::new(sqlite().await?);
    outbox.enqueue(&message("bob@example.com", "orphan"), "k").await?;
    // The first worker is aborted right after its claim, long before its send timeout.
    let lease = WorkerOptions {
        send_timeout: Duration::from_secs(2),
        lease: Duration::from_secs(4),
        ..fast()
    };
    let (_s1, d1) = shutdown_switch();
    let dying = spawn_worker(outbox.clone(), Arc::new(Hanging), lease.clone(), d1);
    eventually("the first worker to claim", Duration::from_secs(10), || async {
        Ok(outbox.entry("k").await?.filter(|e| e.attempts == 1))
    })
    .await?;
    dying.abort(); // as a process killed mid-send

    let sender = Recording::new(Duration::ZERO, vec![]);
    let (_s2, d2) = shutdown_switch();
    spawn_worker(outbox.clone(), sender.clone(), lease, d2);
    let entry = until_status(&outbox, "k", Status::Sent).await?;
    assert_eq!(entry.attempts, 2);
    // Not before the lease ran out.
    let finished = entry.finished_at_ms.context("finished")?;
    assert!(finished - entry.created_at_ms >= 4000, "{entry:?}");
    assert_eq!(sender.sent(), ["orphan"]);
    Ok(())
}

#[tokio::test]
async fn transient_failures_give_up_after_the_last_attempt_and_permanent_ones_at_once() -> Result<()> {
    let outbox = Outbox::new(sqlite().await?);
    let sender = Recording::new(
        Duration::ZERO,
        vec![
            Err(SendError::transient("421 try later")),
            Err(SendError::transient("421 try later")),
            Err(SendError::transient("421 still later")),
            Err(SendError::permanent("550 no such mailbox")),
        ],
    );
    let options = WorkerOptions {
        max_attempts: 3,
        ..fast()
    };
    outbox.enqueue(&message("bob@example.com", "doomed"), "doomed").await?;
    let (_stop, shutdown) = shutdown_switch();
    spawn_worker(outbox.clone(), sender.clone(), options, shutdown);
    let entry = until_status(&outbox, "doomed", Status::Failed).await?;
    assert_eq!(entry.attempts, 3);
    assert_eq!(
        entry.last_error.as_deref(),
        Some("gave up after 3 attempts; the last one: 421 still later")
    );

    outbox
        .enqueue(&message("nobody@example.com", "bounced"), "bounced")
        .await?;
    let entry = until_status(&outbox, "bounced", Status::Failed).await?;
    assert_eq!(entry.attempts, 1);
    assert_eq!(entry.last_error.as_deref(), Some("550 no such mailbox"));
    assert!(sender.sent().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_enqueue_wakes_the_worker_at_once() -> Result<()> {
    let outbox = Outbox::new(sqlite().await?);
    let sender = Recording::new(Duration::ZERO, vec![]);
    let options = WorkerOptions {
        poll_interval: Duration::from_secs(3600),
        ..fast()
    };
    let (_stop, shutdown) = shutdown_switch();
    spawn_worker(outbox.clone(), sender.clone(), options, shutdown);
    // Let the worker find the outbox empty and go to sleep for its (hour-long) poll interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    outbox.enqueue(&message("bob@example.com", "now"), "now").await?;
    let entry = eventually("the wake-up", Duration::from_secs(5), || async {
        Ok(outbox.entry("now").await?.filter(|e| e.status == Status::Sent))
    })
    .await?;
    assert!(entry.finished_at_ms.unwrap_or(i64::MAX) - entry.created_at_ms < 5000);
    Ok(())
}

#[tokio::test]
async fn the_shutdown_future_stops_the_worker_and_old_rows_are_purged() -> Result<()> {
    let outbox = Outbox::new(sqlite().await?);
    let sender = Recording::new(Duration::ZERO, vec![Err(SendError::permanent("550 gone"))]);
    outbox.enqueue(&message("bob@example.com", "failed"), "failed").await?;
    outbox.enqueue(&message("bob@example.com", "sent"), "sent").await?;
    let (stop, shutdown) = shutdown_switch();
    let worker = spawn_worker(outbox.clone(), sender.clone(), fast(), shutdown);
    until_status(&outbox, "failed", Status::Failed).await?;
    until_status(&outbox, "sent", Status::Sent).await?;
    stop.send(()).ok();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .context("the worker stops when its shutdown future resolves")??;

    // Within their keeping time rows stay (and deduplicate); after it they go.
    assert_eq!(outbox.purge(Duration::from_secs(60), Duration::from_secs(60)).await?, 0);
    assert!(!outbox.enqueue(&message("bob@example.com", "sent"), "sent").await?);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(outbox.purge(Duration::ZERO, Duration::from_secs(60)).await?, 1);
    assert!(outbox.entry("sent").await?.is_none());
    assert_eq!(outbox.purge(Duration::ZERO, Duration::ZERO).await?, 1);
    assert!(outbox.entry("failed").await?.is_none());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Start-up

/// Runs the server binary with only `env` (plus DEV_MODE and a database); returns whether it
/// failed and its stderr. A configuration wrongly accepted starts a server, stopped after 20 s.
fn start_up(env: &[(&str, &str)]) -> (bool, String) {
    let dir = std::env::temp_dir().join(e2e::unique_name("apiserver-email-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_apiserver"));
    cmd.env_clear()
        .env("SQLITE_PATH", dir.join("db.sqlite"))
        .env("SERVER_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("DEV_MODE", "true")
        .env("SECRETS_ENCRYPTION_KEY", "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("the apiserver binary runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().is_some_and(|c| c != 0),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_variables_of_the_chosen_provider_stop_start_up_naming_them() {
    for (env, named) in [
        (
            vec![("EMAIL_PROVIDER", "smtp")],
            "SMTP_HOST is required when EMAIL_PROVIDER=smtp",
        ),
        (
            vec![
                ("EMAIL_PROVIDER", "smtp"),
                ("SMTP_HOST", "smtp.example.com"),
                ("SMTP_USERNAME", "mailer"),
            ],
            "SMTP_PASSWORD is required when SMTP_USERNAME is set",
        ),
        (
            vec![
                ("EMAIL_PROVIDER", "smtp"),
                ("SMTP_HOST", "smtp.example.com"),
                ("SMTP_PASSWORD", "pw"),
            ],
            "SMTP_USERNAME is required when SMTP_PASSWORD is set",
        ),
        (
            vec![
                ("EMAIL_PROVIDER", "smtp"),
                ("SMTP_HOST", "smtp.example.com"),
                ("SMTP_CA_FILE", "/nonexistent/ca.pem"),
            ],
            "SMTP_CA_FILE /nonexistent/ca.pem",
        ),
        (
            vec![("EMAIL_PROVIDER", "sendgrid")],
            "SENDGRID_API_KEY is required when EMAIL_PROVIDER=sendgrid",
        ),
        (
            vec![("EMAIL_PROVIDER", "sendgrid"), ("SENDGRID_API_KEY", "")],
            "SENDGRID_API_KEY",
        ),
        (vec![("EMAIL_FROM", "not an address")], "EMAIL_FROM"),
    ] {
        let (failed, stderr) = start_up(&env);
        assert!(failed, "{env:?} should stop start-up; stderr: {stderr}");
        assert!(stderr.contains(named), "{env:?} should name {named:?}: {stderr}");
    }
}

/// A revoked or resent invitation's email that has not gone out yet is withdrawn: failed with
/// the reason, its bodies (with the dead link) emptied; a sent one cannot be withdrawn.
#[tokio::test]
async fn a_waiting_message_can_be_withdrawn_and_a_sent_one_cannot() -> Result<()> {
    let db = sqlite().await?;
    let outbox = Outbox::new(db.clone());
    assert!(outbox.enqueue(&message(&address(), "Revoked"), "inv-9:1").await?);
    assert!(outbox.cancel("inv-9:1", "the invitation was revoked").await?);
    let entry = outbox.entry("inv-9:1").await?.context("the row")?;
    assert_eq!(entry.status, Status::Failed);
    assert_eq!(entry.last_error.as_deref(), Some("the invitation was revoked"));
    let bodies: (String, String) =
        sqlx::query_as("SELECT body_text, body_html FROM email_outbox WHERE dedupe_key = $1")
            .bind("inv-9:1")
            .fetch_one(db.pool())
            .await?;
    assert_eq!(bodies, (String::new(), String::new()), "the dead link is not kept");
    assert!(!outbox.cancel("inv-9:1", "again").await?, "withdrawn once");
    assert!(!outbox.cancel("never-queued", "x").await?);
    // Sent: stays sent.
    sqlx::query("UPDATE email_outbox SET status = 'sent' WHERE dedupe_key = $1")
        .bind("inv-9:1")
        .execute(db.pool())
        .await?;
    assert!(!outbox.cancel("inv-9:1", "too late").await?);
    assert_eq!(outbox.entry("inv-9:1").await?.context("the row")?.status, Status::Sent);
    Ok(())
}
