//! The durable email outbox: messages are stored in the database (`email_outbox`, migration
//! 0005) before anything is sent, and workers send them with retries.
//!
//! # Guarantees
//!
//! - **Nothing is lost.** [`Outbox::enqueue`] returns once the row is committed; a mail server
//!   or API that is down only delays it: transient failures are retried with exponential
//!   backoff and jitter (see [`WorkerOptions`]) until [`WorkerOptions::max_attempts`] (31 to 63
//!   hours of trying by default), after which the row is marked `failed` with the last error.
//!   Permanent refusals (a bad address) are marked `failed` at once.
//! - **Nothing is queued twice.** Each row has the caller's deduplication key (e.g. an
//!   invitation id and the kind of mail); enqueueing the same key again does nothing, so a
//!   retried HTTP request does not send a second invitation.
//! - **One sender at a time.** A worker claims a due row with a lease (`claimed_until`, a
//!   compare-and-set `UPDATE`, portable between SQLite and PostgreSQL), so two workers, in one
//!   process or on two replicas, never send the same row at once; a worker that dies mid-send
//!   leaves the lease to expire, and the row is retried then. The lease is longer than the send
//!   timeout, so a live worker's lease never runs out under it.
//! - **At least once, not exactly once.** No mail protocol lets a client make a send and a
//!   database write atomic. The row is marked `sent` right after the provider accepts the
//!   message (retried a few times should the database hiccup); only if the process dies, or the
//!   database stays unreachable, in the moment between the provider's acceptance and that write
//!   is the message sent again after the lease. A send that times out on our side although the
//!   provider did accept it is the same window. A restart never resends a row already marked
//!   `sent`. Stopping a worker through its shutdown future (not by aborting its task) lets a send
//!   in flight finish and be recorded.
//! - **Bounded.** Once a row is `sent` or `failed` its bodies are emptied (an invitation link's
//!   token does not stay in the database), and the row itself is deleted
//!   [`WorkerOptions::keep_sent`] (7 days) or [`WorkerOptions::keep_failed`] (30 days) later;
//!   until then its key still deduplicates. Error texts are bounded and carry no secrets.
//!
//! Times in the table are Unix milliseconds.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::FutureExt;
use sqlx::Row;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Message, SendError, Sender, error_text};
use crate::db::Db;

/// Longest deduplication key, in bytes.
pub const MAX_DEDUPE_KEY_BYTES: usize = 200;

/// Where a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting to be sent (or being sent, or waiting for a retry).
    Pending,
    /// Accepted by the provider.
    Sent,
    /// Refused for good, or still failing after the last attempt; `last_error` says why.
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "sent" => Status::Sent,
            "failed" => Status::Failed,
            _ => Status::Pending,
        }
    }
}

/// A row of the outbox, as callers and tests see it (without the bodies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Row id.
    pub id: String,
    /// The caller's deduplication key.
    pub dedupe_key: String,
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Where it is.
    pub status: Status,
    /// Sends started so far.
    pub attempts: u32,
    /// Why the last attempt failed, if it did (bounded, without secrets).
    pub last_error: Option<String>,
    /// Unix milliseconds of the enqueue.
    pub created_at_ms: i64,
    /// Unix milliseconds before which it is not sent (again).
    pub next_attempt_at_ms: i64,
    /// Unix milliseconds when it became sent or failed.
    pub finished_at_ms: Option<i64>,
}

/// The outbox over the server's database. Clones share the wake-up signal that tells this
/// process's workers a message was just queued.
#[derive(Clone, Debug)]
pub struct Outbox {
    db: Db,
    wake: Arc<Notify>,
}

/// A row a worker holds the lease of.
struct Claimed {
    id: String,
    dedupe_key: String,
    token: String,
    attempts: u32,
    message: Message,
}

/// Current Unix time in milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Outbox {
    /// The outbox of `db` (its migrations create the table).
    pub fn new(db: Db) -> Outbox {
        Outbox {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Queues `msg` under `dedupe_key`: true when queued now, false when a row with this key
    /// exists already (then nothing changes, whatever `msg` says). An invalid message or key is
    /// refused with an error naming the problem. A worker of this process is woken at once.
    pub async fn enqueue(&self, msg: &Message, dedupe_key: &str) -> Result<bool> {
        msg.validate()?;
        if dedupe_key.is_empty() || dedupe_key.len() > MAX_DEDUPE_KEY_BYTES {
            anyhow::bail!(
                "the outbox deduplication key must have 1 to {MAX_DEDUPE_KEY_BYTES} bytes, not {}",
                dedupe_key.len()
            );
        }
        let now = now_ms();
        let res = sqlx::query(
            "INSERT INTO email_outbox (id, dedupe_key, recipient, subject, body_text, body_html, status, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) ON CONFLICT DO NOTHING",
        )
        .bind(crate::auth::random_token(16))
        .bind(dedupe_key)
        .bind(msg.to.trim())
        .bind(&msg.subject)
        .bind(&msg.text)
        .bind(&msg.html)
        .bind(now)
        .execute(self.db.pool())
        .await
        .context("queueing an email in the outbox")?;
        let queued = res.rows_affected() == 1;
        if queued {
            // A permit is stored when no worker waits right now: the next wait returns at once.
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// The row of `dedupe_key`, if any.
    pub async fn entry(&self, dedupe_key: &str) -> Result<Option<Entry>> {
        let row = sqlx::query(
            "SELECT id, dedupe_key, recipient, subject, status, attempts, last_error, created_at, next_attempt_at, \
             finished_at FROM email_outbox WHERE dedupe_key = $1",
        )
        .bind(dedupe_key)
        .fetch_optional(self.db.pool())
        .await
        .context("reading the email outbox")?;
        Ok(row.map(|r| Entry {
            id: r.get("id"),
            dedupe_key: r.get("dedupe_key"),
            to: r.get("recipient"),
            subject: r.get("subject"),
            status: Status::parse(&r.get::<String, _>("status")),
            attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
            last_error: r.get("last_error"),
            created_at_ms: r.get("created_at"),
            next_attempt_at_ms: r.get("next_attempt_at"),
            finished_at_ms: r.get("finished_at"),
        }))
    }

    /// Withdraws the message of `dedupe_key` if it is still waiting and no worker holds it (a
    /// revoked invitation, or one resent with a new link): it becomes failed with the reason
    /// `reason` and its bodies are emptied. Returns whether it was withdrawn (false: already sent,
    /// failed, being sent right now, or never queued).
    pub async fn cancel(&self, dedupe_key: &str, reason: &str) -> Result<bool> {
        let now = now_ms();
        let res = sqlx::query(
            "UPDATE email_outbox SET status = 'failed', last_error = $2, body_text = '', body_html = '', \
             finished_at = $3 WHERE dedupe_key = $1 AND status = 'pending' \
             AND (claimed_until IS NULL OR claimed_until < $3)",
        )
        .bind(dedupe_key)
        .bind(reason)
        .bind(now)
        .execute(self.db.pool())
        .await
        .context("withdrawing a message from the email outbox")?;
        Ok(res.rows_affected() == 1)
    }

    /// Deletes sent rows finished more than `keep_sent` ago and failed rows finished more than
    /// `keep_failed` ago; returns how many. Workers call it every
    /// [`WorkerOptions::purge_interval`].
    pub async fn purge(&self, keep_sent: Duration, keep_failed: Duration) -> Result<u64> {
        let now = now_ms();
        let res = sqlx::query(
            "DELETE FROM email_outbox WHERE (status = $1 AND finished_at < $2) OR (status = $3 AND finished_at < $4)",
        )
        .bind(Status::Sent.as_str())
        .bind(now - ms(keep_sent))
        .bind(Status::Failed.as_str())
        .bind(now - ms(keep_failed))
        .execute(self.db.pool())
        .await
        .context("deleting old rows of the email outbox")?;
        Ok(res.rows_affected())
    }

    /// Claims the most overdue pending row that no live lease holds, for `lease`; counts the
    /// attempt now, so that a message that kills its worker does not loop forever.
    async fn claim(&self, lease: Duration) -> Result<Option<Claimed>> {
        loop {
            let now = now_ms();
            let id: Option<String> = sqlx::query_scalar(
                "SELECT id FROM email_outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until <= $1) ORDER BY next_attempt_at, id LIMIT 1",
            )
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
            .context("looking for due emails")?;
            let Some(id) = id else { return Ok(None) };
            let token = crate::auth::random_token(16);
            // Compare-and-set: the conditions are checked again on the row being updated (a
            // PostgreSQL UPDATE re-reads a row another transaction changed; SQLite has one
            // writer), so of two workers that saw the same row only one claims it.
            let res = sqlx::query(
                "UPDATE email_outbox SET claimed_until = $1, claim_token = $2, attempts = attempts + 1 \
                 WHERE id = $3 AND status = 'pending' AND (claimed_until IS NULL OR claimed_until <= $4)",
            )
            .bind(now + ms(lease))
            .bind(&token)
            .bind(&id)
            .bind(now)
            .execute(self.db.pool())
            .await
            .context("claiming an email")?;
            if res.rows_affected() != 1 {
                // Another worker got it first; the set of unclaimed due rows shrank, look again.
                continue;
            }
            let r = sqlx::query(
                "SELECT dedupe_key, recipient, subject, body_text, body_html, attempts FROM email_outbox \
                 WHERE id = $1 AND claim_token = $2",
            )
            .bind(&id)
            .bind(&token)
            .fetch_optional(self.db.pool())
            .await
            .context("reading a claimed email")?;
            let Some(r) = r else { continue };
            return Ok(Some(Claimed {
                id,
                dedupe_key: r.get("dedupe_key"),
                token,
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
                message: Message {
                    to: r.get("recipient"),
                    subject: r.get("subject"),
                    text: r.get("body_text"),
                    html: r.get("body_html"),
                },
            }));
        }
    }

    /// Records that the provider accepted the row. Whoever holds the lease now: the mail went
    /// out, and marking it keeps any other worker from sending it again.
    async fn mark_sent(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE email_outbox SET status = 'sent', finished_at = $1, claimed_until = NULL, claim_token = NULL, \
             last_error = NULL, body_text = '', body_html = '' WHERE id = $2 AND status = 'pending'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(self.db.pool())
        .await
        .context("marking an email sent")?;
        Ok(())
    }

    /// Marks the row failed for good, if this claim still holds it.
    async fn mark_failed(&self, c: &Claimed, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE email_outbox SET status = 'failed', finished_at = $1, last_error = $2, claimed_until = NULL, \
             claim_token = NULL, body_text = '', body_html = '' WHERE id = $3 AND claim_token = $4",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(&c.id)
        .bind(&c.token)
        .execute(self.db.pool())
        .await
        .context("marking an email failed")?;
        Ok(())
    }

    /// Releases the claim and schedules the next attempt at `at_ms`, if this claim still holds
    /// the row.
    async fn reschedule(&self, c: &Claimed, at_ms: i64, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE email_outbox SET next_attempt_at = $1, last_error = $2, claimed_until = NULL, claim_token = NULL \
             WHERE id = $3 AND claim_token = $4",
        )
        .bind(at_ms)
        .bind(reason)
        .bind(&c.id)
        .bind(&c.token)
        .execute(self.db.pool())
        .await
        .context("scheduling a retry of an email")?;
        Ok(())
    }

    /// Unix milliseconds when the next pending row becomes claimable (its retry time, or the
    /// end of the lease holding it), if there is one.
    async fn next_due_ms(&self) -> Result<Option<i64>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at \
             THEN claimed_until ELSE next_attempt_at END) FROM email_outbox WHERE status = 'pending'",
        )
        .fetch_one(self.db.pool())
        .await
        .context("reading when the next email is due")?;
        Ok(due)
    }
}

/// How a worker paces itself. The defaults suit invitations; tests shorten them.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Longest idle wait: rows queued by other replicas (whose wake-up signal does not reach this
    /// process) are picked up at least this often. Default 30 s.
    pub poll_interval: Duration,
    /// Longest time one send may take before it counts as a transient failure. Default 2 min.
    pub send_timeout: Duration,
    /// How long a claim holds a row; at least twice `send_timeout` is used. Also how long a row
    /// waits after its worker died mid-send. Default 5 min.
    pub lease: Duration,
    /// First retry delay; each next one doubles, plus a random part of up to the same again
    /// (jitter, so a recovering server is not hit by every row at once). Default 10 s.
    pub min_backoff: Duration,
    /// Largest retry delay before jitter. Default 1 h.
    pub max_backoff: Duration,
    /// Attempts after which a row still failing transiently is marked failed. Default 40: the
    /// doubling delays reach the hour after 9 attempts (about 1.4 h), then it is hourly, so giving
    /// up takes 31 to 63 hours with jitter (an invitation is valid for 7 days).
    pub max_attempts: u32,
    /// How long sent rows are kept (their key still deduplicates). Default 7 days.
    pub keep_sent: Duration,
    /// How long failed rows are kept (for an operator to see why). Default 30 days.
    pub keep_failed: Duration,
    /// How often old rows are deleted. Default 1 h.
    pub purge_interval: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            poll_interval: Duration::from_secs(30),
            send_timeout: Duration::from_secs(120),
            lease: Duration::from_secs(300),
            min_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            max_attempts: 40,
            keep_sent: Duration::from_secs(7 * 24 * 3600),
            keep_failed: Duration::from_secs(30 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
        }
    }
}

impl WorkerOptions {
    /// The delay before attempt `attempts + 1`, after `attempts` (≥ 1) failed ones.
    pub fn backoff(&self, attempts: u32) -> Duration {
        ExponentialBuilder::new()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempts.max(1) as usize - 1)
            .unwrap_or(self.max_backoff)
    }

    fn lease(&self) -> Duration {
        self.lease.max(self.send_timeout * 2)
    }
}

/// Starts a worker that sends the outbox's due rows through `sender` until `shutdown`
/// resolves (then it returns after the send in flight, if any, is recorded). Several workers,
/// in this process or on other replicas, may share one outbox.
pub fn spawn_worker(
    outbox: Outbox,
    sender: Arc<dyn Sender>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(run(outbox, sender, options, shutdown))
}

async fn run(outbox: Outbox, sender: Arc<dyn Sender>, options: WorkerOptions, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        if last_purge.is_none_or(|t| t.elapsed() >= options.purge_interval) {
            last_purge = Some(tokio::time::Instant::now());
            match outbox.purge(options.keep_sent, options.keep_failed).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "deleted old rows of the email outbox"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "deleting old rows of the email outbox failed"),
            }
        }
        match outbox.claim(options.lease()).await {
            Ok(Some(claimed)) => {
                deliver(&outbox, sender.as_ref(), &options, claimed).await;
                if shutdown.as_mut().now_or_never().is_some() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "the email outbox cannot be read; retrying"),
        }
        let wait = match outbox.next_due_ms().await {
            Ok(Some(due)) => {
                Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(options.poll_interval)
            }
            _ => options.poll_interval,
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = outbox.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sends one claimed row and records the outcome.
async fn deliver(outbox: &Outbox, sender: &dyn Sender, options: &WorkerOptions, c: Claimed) {
    let result = match tokio::time::timeout(options.send_timeout, sender.send(&c.message)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::transient(format!(
            "no answer from the mail provider within {}s",
            options.send_timeout.as_secs_f64()
        ))),
    };
    match result {
        Ok(()) => {
            // Until this write lands, the row would be sent again after its lease: retry it.
            let mut delay = Duration::from_millis(100);
            for attempt in 1..=5 {
                match outbox.mark_sent(&c.id).await {
                    Ok(()) => break,
                    Err(e) if attempt < 5 => {
                        tracing::warn!(id = %c.id, error = format!("{e:#}"), "recording a sent email failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => tracing::error!(
                        id = %c.id,
                        error = format!("{e:#}"),
                        "recording a sent email failed: it will be sent again after its lease"
                    ),
                }
            }
            tracing::info!(id = %c.id, key = %c.dedupe_key, attempts = c.attempts, "email sent");
        }
        Err(SendError::Permanent { reason }) => {
            let reason = error_text(&reason, &[]);
            tracing::warn!(id = %c.id, key = %c.dedupe_key, reason = %reason, "email refused for good");
            if let Err(e) = outbox.mark_failed(&c, &reason).await {
                tracing::warn!(id = %c.id, error = format!("{e:#}"), "recording a failed email failed");
            }
        }
        Err(SendError::Transient { reason, retry_after }) => {
            if c.attempts >= options.max_attempts {
                let reason = error_text(
                    &format!("gave up after {} attempts; the last one: {reason}", c.attempts),
                    &[],
                );
                tracing::warn!(id = %c.id, key = %c.dedupe_key, reason = %reason, "email not sent");
                if let Err(e) = outbox.mark_failed(&c, &reason).await {
                    tracing::warn!(id = %c.id, error = format!("{e:#}"), "recording a failed email failed");
                }
                return;
            }
            let reason = error_text(&reason, &[]);
            let delay = options.backoff(c.attempts).max(retry_after.unwrap_or_default());
            tracing::info!(
                id = %c.id,
                key = %c.dedupe_key,
                attempts = c.attempts,
                retry_in_ms = delay.as_millis() as u64,
                reason = %reason,
                "email not sent yet; will retry"
            );
            if let Err(e) = outbox.reschedule(&c, now_ms() + ms(delay), &reason).await {
                tracing::warn!(id = %c.id, error = format!("{e:#}"), "scheduling an email's retry failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let o = WorkerOptions {
            min_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            ..WorkerOptions::default()
        };
        for _ in 0..20 {
            for (attempts, base) in [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (40, 3600)] {
                let d = o.backoff(attempts);
                let base = Duration::from_secs(base);
                assert!(
                    d >= base && d <= base * 2,
                    "attempt {attempts}: {d:?} not in [{base:?}, 2x]"
                );
            }
        }
        // Jitter: the delays of one attempt differ.
        let delays: std::collections::BTreeSet<_> = (0..20).map(|_| o.backoff(3)).collect();
        assert!(delays.len() > 1, "{delays:?}");
    }

    #[test]
    fn the_default_gives_up_after_more_than_a_day() {
        let o = WorkerOptions::default();
        // Lower bound of the total wait (jitter only adds).
        let mut total = Duration::ZERO;
        let mut d = o.min_backoff;
        for _ in 1..o.max_attempts {
            total += d.min(o.max_backoff);
            d *= 2;
        }
        assert!(total > Duration::from_secs(24 * 3600), "{total:?}");
        assert!(total < Duration::from_secs(7 * 24 * 3600), "{total:?}");
    }

    #[test]
    fn the_lease_outlasts_a_send() {
        let o = WorkerOptions {
            lease: Duration::from_secs(1),
            send_timeout: Duration::from_secs(60),
            ..WorkerOptions::default()
        };
        assert_eq!(o.lease(), Duration::from_secs(120));
    }
}
