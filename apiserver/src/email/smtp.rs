//! SMTP delivery with lettre over tokio and rustls (`EMAIL_PROVIDER=smtp`).
//!
//! TLS is never optional: port 465 speaks TLS from the first byte (implicit TLS, "SMTPS"), every
//! other port must upgrade with STARTTLS before lettre sends credentials or mail, so a server
//! (or someone in between) that does not offer STARTTLS gets neither. Certificates are checked
//! against the system's roots plus SMTP_CA_FILE.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Message, SendError, Sender, error_text};

/// Timeout of each SMTP command (connect, TLS, AUTH, DATA...). The outbox's send timeout and
/// lease are longer (see `WorkerOptions`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (port 465, RFC 8314).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is required (587, 25, others).
    StartTls,
}

impl TlsMode {
    /// The mode of SMTP_PORT, as the configuration reference's ports mean it: 465 implicit TLS,
    /// anything else STARTTLS.
    pub fn for_port(port: u16) -> TlsMode {
        if port == 465 {
            TlsMode::Implicit
        } else {
            TlsMode::StartTls
        }
    }
}

/// What an [`SmtpSender`] needs.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// Server host name (or IP address); the certificate must name it.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Implicit TLS or STARTTLS.
    pub tls: TlsMode,
    /// User name; `None`: no authentication.
    pub username: Option<String>,
    /// Password (with `username`).
    pub password: Option<SecretString>,
    /// PEM CA certificates trusted besides the system's.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Sender of every message.
    pub from: Mailbox,
    /// Timeout of each SMTP command.
    pub timeout: Duration,
}

/// Sends through an SMTP server (a pool of connections, reused between messages).
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    password: Option<SecretString>,
}

impl SmtpSender {
    /// A sender for `settings`; an error when the CA file holds no certificate or TLS cannot be
    /// set up. Nothing is connected yet. Must run inside the Tokio runtime (the connection pool
    /// starts a task).
    pub fn new(settings: SmtpSettings) -> Result<SmtpSender> {
        let mut tls = TlsParameters::builder(settings.host.clone());
        if let Some(pem) = &settings.extra_ca_pem {
            // lettre takes a file without any certificate silently; an operator who set
            // SMTP_CA_FILE meant one.
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("SMTP_CA_FILE: not a PEM certificate file: {e}"))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "SMTP_CA_FILE: no PEM certificate in it (-----BEGIN CERTIFICATE-----)"
            );
            for der in certs {
                tls = tls.add_root_certificate(Certificate::from_der(der.to_vec()).context("SMTP_CA_FILE")?);
            }
        }
        let tls = tls
            .build_rustls()
            .context("setting up TLS for the SMTP server (SMTP_HOST, SMTP_CA_FILE)")?;
        let tls = match settings.tls {
            TlsMode::Implicit => Tls::Wrapper(tls),
            TlsMode::StartTls => Tls::Required(tls),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let Some(user) = settings.username {
            let password = settings
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_string())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(SmtpSender {
            transport: builder.build(),
            from: settings.from,
            password: settings.password,
        })
    }

    fn error(&self, e: &lettre::transport::smtp::Error) -> SendError {
        let secret = self.password.as_ref().map(|p| p.expose_secret()).unwrap_or("");
        let reason = error_text(&format!("SMTP: {}", error_chain(e)), &[secret]);
        if is_permanent(e) {
            SendError::permanent(reason)
        } else {
            SendError::transient(reason)
        }
    }
}

/// Whether an SMTP error would repeat for this message: a 5xx reply, except those about our
/// authentication (530 required, 534 mechanism too weak, 535 credentials invalid, 538
/// encryption required), which an operator fixes in the configuration, after which the queued
/// mail should still go out. Connection, TLS and timeout errors are transient.
fn is_permanent(e: &lettre::transport::smtp::Error) -> bool {
    match e.status() {
        Some(code) if e.is_permanent() => !matches!(code.to_string().as_str(), "530" | "534" | "535" | "538"),
        _ => false,
    }
}

/// An error and its sources, `a: b: c` (lettre's Display alone hides the TLS or I/O cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[async_trait::async_trait]
impl Sender for SmtpSender {
    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let to = msg.recipient().map_err(|e| SendError::permanent(e.to_string()))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .multipart(MultiPart::alternative_plain_html(msg.text.clone(), msg.html.clone()))
            .map_err(|e| SendError::permanent(format!("building the message: {e}")))?;
        self.transport.send(email).await.map_err(|e| self.error(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_465_is_implicit_tls_and_every_other_port_starttls() {
        assert_eq!(TlsMode::for_port(465), TlsMode::Implicit);
        for port in [25, 587, 2525, 1025] {
            assert_eq!(TlsMode::for_port(port), TlsMode::StartTls);
        }
    }

    #[tokio::test]
    async fn a_ca_file_without_a_certificate_is_refused() {
        let settings = SmtpSettings {
            host: "smtp.example.com".into(),
            port: 587,
            tls: TlsMode::StartTls,
            username: None,
            password: None,
            extra_ca_pem: Some(b"not a certificate".to_vec()),
            from: "noreply@example.com".parse().unwrap(),
            timeout: DEFAULT_TIMEOUT,
        };
        let err = format!("{:#}", SmtpSender::new(settings).err().unwrap());
        assert!(err.contains("SMTP_CA_FILE"), "{err}");
    }
}
