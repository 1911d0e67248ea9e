//! Email delivery (issue 16): invitations go out through SMTP or SendGrid's HTTP API
//! (`EMAIL_PROVIDER`), always through a durable outbox in the database.
//!
//! - [`Message`]: one email with a plain-text and an HTML part, to one recipient.
//! - [`Sender`]: something that hands a message to a mail provider, telling a failure worth
//!   retrying ([`SendError::Transient`]) from one that would fail the same way again
//!   ([`SendError::Permanent`]). [`smtp::SmtpSender`] (lettre) and [`sendgrid::SendgridSender`]
//!   (reqwest) implement it; [`from_config`] builds the configured one.
//! - [`Outbox`]: [`Outbox::enqueue`] stores a message under a caller's deduplication key, and
//!   [`spawn_worker`] sends due messages with retries, backoff and a lease, so that a mail server
//!   that is down delays a message but never loses it, and two replicas never send the same row
//!   at once. See [`outbox`] for the delivery guarantee (at least once; a duplicate only in the
//!   short window between the provider's acceptance and the row being marked sent).
//!
//! Wiring (in `app_with`): `let outbox = Outbox::new(db.clone());` for whoever enqueues, and
//! when [`from_config`] gives a sender, `tasks.push(spawn_worker(outbox.clone(), sender,
//! WorkerOptions::default(), std::future::pending()))`. Without `EMAIL_PROVIDER` nothing is
//! spawned and enqueued messages wait in the table until a provider is configured.

pub mod outbox;
pub mod sendgrid;
pub mod smtp;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use secrecy::ExposeSecret;

use crate::config::{Config, EmailProvider};

pub use outbox::{Entry, Outbox, Status, WorkerOptions, spawn_worker};

/// One email to one recipient, with a plain-text and an HTML part (both are always sent, as a
/// `multipart/alternative`, so every client shows something readable).
///
/// Never put a secret in a message: no password, API key, secret value or session. Mail crosses
/// servers the platform does not control and is kept in mailboxes for years, and the outbox
/// stores the message in the database until it is sent. The one credential an email of this
/// platform may carry is an invitation link's token, which is single-use, expires, is stored
/// hashed by the invitation code, and is removed from the outbox (both bodies are emptied) once
/// the message is sent or has failed for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The recipient: `bob@example.com` or `Bob <bob@example.com>`.
    pub to: String,
    /// The subject line (one line).
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part (escape whatever user input goes into it).
    pub html: String,
}

/// Largest subject of a [`Message`], in bytes.
pub const MAX_SUBJECT_BYTES: usize = 998;
/// Largest part (text or HTML) of a [`Message`], in bytes. Invitations are a few KiB.
pub const MAX_PART_BYTES: usize = 512 * 1024;

impl Message {
    /// The recipient as a mailbox; an error names the problem.
    pub fn recipient(&self) -> Result<Mailbox> {
        self.to
            .trim()
            .parse::<Mailbox>()
            .map_err(|e| anyhow::anyhow!("the recipient {:?} is not an email address: {e}", self.to))
    }

    /// Checks what a provider would refuse anyway, so that a bad message is refused when it is
    /// queued, not days later: the recipient, a one-line subject of at most
    /// [`MAX_SUBJECT_BYTES`], parts of at most [`MAX_PART_BYTES`].
    pub fn validate(&self) -> Result<()> {
        self.recipient()?;
        if self.subject.trim().is_empty() {
            anyhow::bail!("the subject is empty");
        }
        if self.subject.contains(['\r', '\n']) {
            anyhow::bail!("the subject has a line break; it must be one line");
        }
        if self.subject.len() > MAX_SUBJECT_BYTES {
            anyhow::bail!(
                "the subject is {} bytes long, more than {MAX_SUBJECT_BYTES}",
                self.subject.len()
            );
        }
        for (name, part) in [("text", &self.text), ("HTML", &self.html)] {
            if part.trim().is_empty() {
                anyhow::bail!("the {name} part is empty; every email has a text and an HTML part");
            }
            if part.len() > MAX_PART_BYTES {
                anyhow::bail!(
                    "the {name} part is {} bytes long, more than {MAX_PART_BYTES}",
                    part.len()
                );
            }
        }
        Ok(())
    }
}

/// Why a message was not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the provider is unreachable, overloaded, rate-limiting, or refuses our
    /// credentials (an operator can fix those without losing the queued mail).
    #[error("{reason}")]
    Transient {
        /// What happened (bounded, without secrets).
        reason: String,
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The provider refused this message for good (a bad address, a rejected body): sending it
    /// again would fail the same way.
    #[error("{reason}")]
    Permanent {
        /// What happened (bounded, without secrets).
        reason: String,
    },
}

impl SendError {
    /// A transient error.
    pub fn transient(reason: impl Into<String>) -> SendError {
        SendError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(reason: impl Into<String>) -> SendError {
        SendError::Permanent { reason: reason.into() }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            SendError::Transient { reason, .. } | SendError::Permanent { reason } => reason,
        }
    }
}

/// Hands messages to a mail provider.
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    /// Sends `msg`; `Ok` once the provider has accepted it.
    async fn send(&self, msg: &Message) -> Result<(), SendError>;
}

/// Most bytes of an error text kept in the outbox and logs.
pub const MAX_ERROR_BYTES: usize = 1000;

/// `text` with every occurrence of each non-empty secret replaced by `[REDACTED]`, cut to
/// [`MAX_ERROR_BYTES`] on a character boundary. Senders pass their password or API key: no
/// provider is known to echo them, but an error text is stored and logged, so it is checked.
pub fn error_text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "[REDACTED]");
    }
    if out.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

/// The sender `EMAIL_PROVIDER` names, or `None` when it is unset (no email). An error names the
/// variable (e.g. an unreadable SMTP_CA_FILE). Call it inside the Tokio runtime: the SMTP
/// sender's connection pool starts a task when it is built.
pub fn from_config(config: &Config) -> Result<Option<Arc<dyn Sender>>> {
    let from = config.email_from_mailbox();
    match config.email_provider {
        None => {
            let set: Vec<&str> = [
                ("SMTP_HOST", config.smtp_host.as_deref().is_some_and(|h| !h.is_empty())),
                ("SMTP_USERNAME", config.smtp_username.is_some()),
                ("SENDGRID_API_KEY", config.sendgrid_api_key.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            if !set.is_empty() {
                tracing::warn!(
                    "{} set but EMAIL_PROVIDER is empty: no email is sent (set EMAIL_PROVIDER=smtp or sendgrid)",
                    set.join(", ")
                );
            }
            Ok(None)
        }
        Some(EmailProvider::Smtp) => {
            let host = config
                .smtp_host
                .clone()
                .filter(|h| !h.is_empty())
                .context("SMTP_HOST is required when EMAIL_PROVIDER=smtp")?;
            let extra_ca_pem = match config.smtp_ca_path() {
                Some(path) => Some(
                    std::fs::read(path).with_context(|| format!("SMTP_CA_FILE {}: cannot read it", path.display()))?,
                ),
                None => None,
            };
            let sender = smtp::SmtpSender::new(smtp::SmtpSettings {
                host,
                port: config.smtp_port,
                tls: smtp::TlsMode::for_port(config.smtp_port),
                username: config.smtp_username.clone().filter(|u| !u.is_empty()),
                password: config.smtp_password.clone(),
                extra_ca_pem,
                from,
                timeout: smtp::DEFAULT_TIMEOUT,
            })
            .context("EMAIL_PROVIDER=smtp")?;
            Ok(Some(Arc::new(sender)))
        }
        Some(EmailProvider::Sendgrid) => {
            let key = config
                .sendgrid_api_key
                .clone()
                .filter(|k| !k.expose_secret().is_empty())
                .context("SENDGRID_API_KEY is required when EMAIL_PROVIDER=sendgrid")?;
            let sender = sendgrid::SendgridSender::new(config.sendgrid_api_url.clone(), key, from)
                .context("EMAIL_PROVIDER=sendgrid")?;
            Ok(Some(Arc::new(sender)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn message() -> Message {
        Message {
            to: "bob@example.com".into(),
            subject: "You are invited".into(),
            text: "Join us".into(),
            html: "<p>Join us</p>".into(),
        }
    }

    #[test]
    fn messages_are_validated_when_queued() {
        assert!(message().validate().is_ok());
        let named = Message {
            to: "Bob Smith <bob@example.com>".into(),
            ..message()
        };
        assert_eq!(named.recipient().unwrap().email.to_string(), "bob@example.com");
        for (bad, expect) in [
            (
                Message {
                    to: "not an address".into(),
                    ..message()
                },
                "not an email address",
            ),
            (
                Message {
                    subject: "a\r\nBcc: x@evil.example".into(),
                    ..message()
                },
                "line break",
            ),
            (
                Message {
                    html: " ".into(),
                    ..message()
                },
                "HTML part is empty",
            ),
            (
                Message {
                    text: "x".repeat(MAX_PART_BYTES + 1),
                    ..message()
                },
                "text part is",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn error_texts_are_bounded_and_never_carry_the_secret() {
        let t = error_text("auth failed for hunter2: hunter2", &["hunter2", ""]);
        assert_eq!(t, "auth failed for [REDACTED]: [REDACTED]");
        let long = error_text(&"é".repeat(2000), &[]);
        assert!(long.len() <= MAX_ERROR_BYTES + '…'.len_utf8(), "{}", long.len());
        assert!(long.ends_with('…'));
    }

    fn config(provider: Option<EmailProvider>) -> Config {
        let mut c = Config::for_tests("x.db".into());
        c.email_provider = provider;
        c.smtp_host = None;
        c.smtp_username = None;
        c.smtp_password = None;
        c.sendgrid_api_key = None;
        c.smtp_ca_file = None;
        c.email_from = None;
        c
    }

    #[test]
    fn missing_variables_of_the_chosen_provider_stop_start_up_naming_them() {
        assert!(config(None).check().is_ok());

        let err = config(Some(EmailProvider::Smtp)).check().unwrap_err();
        assert!(err.contains("SMTP_HOST is required when EMAIL_PROVIDER=smtp"), "{err}");
        let mut c = config(Some(EmailProvider::Smtp));
        c.smtp_host = Some(String::new());
        assert!(c.check().unwrap_err().contains("SMTP_HOST"));

        c.smtp_host = Some("smtp.example.com".into());
        assert!(c.check().is_ok(), "no authentication is allowed");
        c.smtp_username = Some("mailer".into());
        let err = c.check().unwrap_err();
        assert!(err.contains("SMTP_PASSWORD") && err.contains("SMTP_USERNAME"), "{err}");
        c.smtp_password = Some(SecretString::from(String::new()));
        assert!(c.check().unwrap_err().contains("SMTP_PASSWORD"));
        c.smtp_password = Some(SecretString::from("pw".to_string()));
        assert!(c.check().is_ok());
        c.smtp_username = None;
        let err = c.check().unwrap_err();
        assert!(err.contains("SMTP_USERNAME is required"), "{err}");

        let mut c = config(Some(EmailProvider::Smtp));
        c.smtp_host = Some("smtp.example.com".into());
        c.smtp_port = 0;
        assert!(c.check().unwrap_err().contains("SMTP_PORT"));
        c.smtp_port = 587;
        c.smtp_ca_file = Some("/nonexistent/ca.pem".into());
        let err = c.check().unwrap_err();
        assert!(
            err.contains("SMTP_CA_FILE") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );

        let err = config(Some(EmailProvider::Sendgrid)).check().unwrap_err();
        assert!(
            err.contains("SENDGRID_API_KEY is required when EMAIL_PROVIDER=sendgrid"),
            "{err}"
        );
        let mut c = config(Some(EmailProvider::Sendgrid));
        c.sendgrid_api_key = Some(SecretString::from(String::new()));
        assert!(c.check().unwrap_err().contains("SENDGRID_API_KEY"));
        c.sendgrid_api_key = Some(SecretString::from("SG.key".to_string()));
        assert!(c.check().is_ok());
    }

    #[test]
    fn the_environment_is_parsed() {
        use clap::Parser;
        let c = Config::try_parse_from([
            "apiserver",
            "--email-provider",
            "SMTP",
            "--smtp-host",
            "smtp.example.com",
            "--smtp-port",
            "465",
            "--email-from",
            "Platform <noreply@example.com>",
        ])
        .unwrap();
        assert_eq!(c.email_provider, Some(EmailProvider::Smtp));
        assert_eq!(smtp::TlsMode::for_port(c.smtp_port), smtp::TlsMode::Implicit);
        assert_eq!(c.email_from_mailbox().to_string(), "Platform <noreply@example.com>");
        let err = Config::try_parse_from(["apiserver", "--email-from", "nobody"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("email-from") || err.contains("EMAIL_FROM"), "{err}");
        assert!(Config::try_parse_from(["apiserver", "--smtp-port", "70000"]).is_err());
        assert!(Config::try_parse_from(["apiserver", "--email-provider", "mailgun"]).is_err());
    }

    #[test]
    fn the_sender_address_defaults_to_the_base_url_host() {
        let mut c = config(None);
        c.base_url = "https://app.example.com/x".parse().unwrap();
        assert_eq!(
            c.email_from_mailbox().to_string(),
            "k8s-scheduler <noreply@app.example.com>"
        );
        c.base_url = "http://127.0.0.1:8081".parse().unwrap();
        assert_eq!(c.email_from_mailbox().email.to_string(), "noreply@localhost");
    }

    // In a runtime: the SMTP connection pool starts its task when the sender is built.
    #[tokio::test]
    async fn no_provider_no_sender() {
        assert!(from_config(&config(None)).unwrap().is_none());
        let mut c = config(Some(EmailProvider::Sendgrid));
        c.sendgrid_api_key = Some(SecretString::from("SG.key".to_string()));
        assert!(from_config(&c).unwrap().is_some());
        let mut c = config(Some(EmailProvider::Smtp));
        c.smtp_host = Some("smtp.example.com".into());
        assert!(from_config(&c).unwrap().is_some());
        c.smtp_ca_file = Some("/nonexistent/ca.pem".into());
        let err = format!("{:#}", from_config(&c).err().unwrap());
        assert!(err.contains("SMTP_CA_FILE /nonexistent/ca.pem"), "{err}");
    }
}
