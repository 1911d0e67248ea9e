//! SendGrid's v3 mail send API (`EMAIL_PROVIDER=sendgrid`): one `POST /v3/mail/send` per
//! message, `Authorization: Bearer SENDGRID_API_KEY`, a JSON body; 202 means accepted.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::{Message, SendError, Sender, error_text};

/// Timeout of one API request (connect included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait a 429's `Retry-After` can ask for; beyond it the outbox's own backoff is used.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Most bytes of SendGrid's error body kept in the reason (its `errors[].message` is short).
const MAX_BODY_BYTES: usize = 600;

/// Sends through SendGrid's HTTP API.
pub struct SendgridSender {
    endpoint: Url,
    key: SecretString,
    from: Mailbox,
    client: reqwest::Client,
}

impl SendgridSender {
    /// A sender posting to `<base>/v3/mail/send` (`base`: SENDGRID_API_URL, SendGrid's own
    /// API unless a test points it at a fake).
    pub fn new(mut base: Url, key: SecretString, from: Mailbox) -> Result<SendgridSender> {
        // Relative to the base's path, so a base with a path prefix keeps it.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = base
            .join("v3/mail/send")
            .with_context(|| format!("SENDGRID_API_URL {base}: cannot append /v3/mail/send"))?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A redirect would carry the API key elsewhere; SendGrid's API does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client for SendGrid")?;
        Ok(SendgridSender {
            endpoint,
            key,
            from,
            client,
        })
    }

    fn reason(&self, text: &str) -> String {
        error_text(text, &[self.key.expose_secret()])
    }
}

/// The JSON body of `POST /v3/mail/send` for `msg` (SendGrid wants text/plain before
/// text/html). Click and open tracking are off: click tracking would rewrite the invitation
/// link through SendGrid's redirect host (its token would pass through their logs, and link
/// scanners following it could spend a single-use token), and open tracking adds a pixel.
pub fn request_body(from: &Mailbox, to: &Mailbox, msg: &Message) -> Value {
    json!({
        "personalizations": [{ "to": [address(to)] }],
        "from": address(from),
        "subject": msg.subject,
        "content": [
            { "type": "text/plain", "value": msg.text },
            { "type": "text/html", "value": msg.html },
        ],
        "tracking_settings": {
            "click_tracking": { "enable": false, "enable_text": false },
            "open_tracking": { "enable": false },
        },
    })
}

/// `{"email": ..., "name": ...}` (no name when the mailbox has none).
fn address(m: &Mailbox) -> Value {
    match &m.name {
        Some(name) if !name.is_empty() => json!({ "email": m.email.to_string(), "name": name }),
        _ => json!({ "email": m.email.to_string() }),
    }
}

/// What an answer means for the outbox: 2xx sent; 429 (rate limit), 408 and 5xx transient; 401
/// and 403 transient too, as they are about our key or sender verification, which an operator
/// fixes without the queued invitations being lost; any other 4xx permanent (this message is
/// refused, e.g. 400 for an invalid address).
pub fn classify(status: StatusCode, headers: &HeaderMap, reason: String) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let transient = status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status.is_server_error()
        // 1xx/3xx: not an answer SendGrid gives to this request; try again rather than drop.
        || !status.is_client_error();
    if transient {
        Err(SendError::Transient {
            reason,
            retry_after: retry_after(headers),
        })
    } else {
        Err(SendError::permanent(reason))
    }
}

/// `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[async_trait::async_trait]
impl Sender for SendgridSender {
    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let to = msg.recipient().map_err(|e| SendError::permanent(e.to_string()))?;
        let resp = self
            .client
            .post(self.endpoint.clone())
            .bearer_auth(self.key.expose_secret())
            .json(&request_body(&self.from, &to, msg))
            .send()
            .await
            // Connection refused, TLS, timeout: transient. reqwest's error names the URL,
            // never the Authorization header.
            .map_err(|e| SendError::transient(self.reason(&format!("SendGrid: {e}"))))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let mut body = body.trim().to_string();
        if body.len() > MAX_BODY_BYTES {
            let mut end = MAX_BODY_BYTES;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
        }
        classify(
            status,
            &headers,
            self.reason(&format!("SendGrid answered {status}: {body}")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, headers: &[(&str, &str)]) -> SendError {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        classify(StatusCode::from_u16(status).unwrap(), &map, format!("status {status}")).unwrap_err()
    }

    #[test]
    fn answers_are_classified_as_the_outbox_needs() {
        assert!(classify(StatusCode::ACCEPTED, &HeaderMap::new(), String::new()).is_ok());
        for status in [400, 404, 413, 422] {
            assert!(matches!(err(status, &[]), SendError::Permanent { .. }), "{status}");
        }
        for status in [401, 403, 408, 429, 500, 502, 503] {
            assert!(matches!(err(status, &[]), SendError::Transient { .. }), "{status}");
        }
        assert_eq!(
            err(429, &[("retry-after", "7")]),
            SendError::Transient {
                reason: "status 429".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            err(429, &[("retry-after", "999999")]),
            SendError::Transient { retry_after: Some(d), .. } if d == MAX_RETRY_AFTER
        ));
        assert!(matches!(
            err(503, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            SendError::Transient { retry_after: None, .. }
        ));
    }

    #[test]
    fn the_body_names_sender_and_recipient_and_carries_both_parts() {
        let msg = Message {
            to: "Bob <bob@example.com>".into(),
            subject: "Hi".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        let body = request_body(
            &"noreply@app.example.com".parse().unwrap(),
            &msg.recipient().unwrap(),
            &msg,
        );
        assert_eq!(
            body["personalizations"],
            json!([{ "to": [{ "email": "bob@example.com", "name": "Bob" }] }])
        );
        assert_eq!(body["from"], json!({ "email": "noreply@app.example.com" }));
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert_eq!(body["content"][1]["type"], "text/html");
    }
}
