//! `/api/events`: Server-Sent Events of changes to the caller's deployments. Every subscriber
//! reads the one broadcast fed by the platform's single deployments watch; a first `snapshot`
//! event carries the current list so that a client never misses what happened before it came.
//!
//! Open streams are counted in [`Streams`] (`AppState::streams`): at most
//! EVENTS_MAX_STREAMS_PER_USER per user and EVENTS_MAX_STREAMS in all (429 beyond), and each
//! stream ends when the session or API token that opened it is signed out or revoked, or its user
//! deactivated. Besides, every open stream checks every 30 seconds ([`Streams::set_recheck`]) that
//! its token is still valid (not expired, revoked on another replica) and its user still active
//! (`apiserver --deactivate-user` runs in a process of its own, which cannot reach the streams).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt, stream};
use kube::ResourceExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use tokio::sync::oneshot;
use tower_sessions::Session;

use crate::AppState;
use crate::auth::{Principal, Scope, Via};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::platform::Change;
use crate::views::DeploymentView;

/// Who holds an open stream, and the sender whose drop ends it.
struct Holder {
    user: String,
    session: Option<String>,
    token: Option<String>,
    _stop: oneshot::Sender<()>,
}

/// What a [`Streams`] registry counts, as its 429 messages say it.
#[derive(Clone, Copy, Debug)]
pub struct StreamNames {
    /// The streams, in the plural ("event streams").
    pub what: &'static str,
    /// The variable of the per-user cap.
    pub per_user_var: &'static str,
    /// The variable of the server-wide cap.
    pub total_var: &'static str,
}

/// The names of the `/api/events` streams.
pub const EVENT_STREAMS: StreamNames = StreamNames {
    what: "event streams",
    per_user_var: "EVENTS_MAX_STREAMS_PER_USER",
    total_var: "EVENTS_MAX_STREAMS",
};

/// Open long-lived streams of one kind (`/api/events`, followed logs): caps and ending them by
/// session, token or user.
pub struct Streams {
    max_per_user: usize,
    max_total: usize,
    names: StreamNames,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Holder>>,
    /// Milliseconds between two checks of an open stream's token and user.
    recheck_ms: AtomicU64,
}

/// Default time between two checks of an open stream's token and user.
pub const STREAM_RECHECK: Duration = Duration::from_secs(30);

/// One open stream's place in [`Streams`]; dropping it (the stream ended or the client went away)
/// frees the place.
pub struct StreamTicket {
    id: u64,
    streams: Arc<Streams>,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
    }
}

impl Streams {
    /// A registry of `/api/events` streams allowing `max_per_user` streams per user and
    /// `max_total` in all.
    pub fn new(max_per_user: usize, max_total: usize) -> Arc<Streams> {
        Streams::with_names(max_per_user, max_total, EVENT_STREAMS)
    }

    /// A registry of streams called `names` allowing `max_per_user` per user and `max_total` in
    /// all.
    pub fn with_names(max_per_user: usize, max_total: usize, names: StreamNames) -> Arc<Streams> {
        Arc::new(Streams {
            max_per_user,
            max_total,
            names,
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            recheck_ms: AtomicU64::new(STREAM_RECHECK.as_millis() as u64),
        })
    }

    /// Sets how often open streams check their token and user (default [`STREAM_RECHECK`]);
    /// tests shorten it.
    pub fn set_recheck(&self, every: Duration) {
        self.recheck_ms
            .store(every.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// How often open streams check their token and user.
    pub fn recheck(&self) -> Duration {
        Duration::from_millis(self.recheck_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Holder>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a stream of `user`, opened by session id `session` or API token hash `token`: its
    /// ticket and a future that resolves when the stream must end. 429 beyond a cap.
    pub fn open(
        self: &Arc<Self>,
        user: &str,
        session: Option<String>,
        token: Option<String>,
    ) -> ApiResult<(StreamTicket, oneshot::Receiver<()>)> {
        let mut open = self.lock();
        let StreamNames {
            what,
            per_user_var,
            total_var,
        } = self.names;
        if open.len() >= self.max_total {
            return Err(ApiError::TooManyRequests(format!(
                "the server has {} {what} open, the most {total_var} ({}) allows; retry later",
                open.len(),
                self.max_total
            )));
        }
        let mine = open.values().filter(|h| h.user == user).count();
        if mine >= self.max_per_user {
            return Err(ApiError::TooManyRequests(format!(
                "you have {mine} {what} open, the most {per_user_var} ({}) allows; \
                 close one (another tab or script) first",
                self.max_per_user
            )));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        open.insert(
            id,
            Holder {
                user: user.to_string(),
                session,
                token,
                _stop: tx,
            },
        );
        Ok((
            StreamTicket {
                id,
                streams: self.clone(),
            },
            rx,
        ))
    }

    fn end_where(&self, pred: impl Fn(&Holder) -> bool) -> usize {
        let mut open = self.lock();
        let before = open.len();
        // Dropping a holder drops its sender: the stream's `take_until` sees it and ends.
        open.retain(|_, h| !pred(h));
        before - open.len()
    }

    /// Ends the streams opened with session `id` (sign-out); returns how many.
    pub fn end_session(&self, id: &str) -> usize {
        self.end_where(|h| h.session.as_deref() == Some(id))
    }

    /// Ends the streams opened with the API token whose hash is `hash` (revocation).
    pub fn end_token(&self, hash: &str) -> usize {
        self.end_where(|h| h.token.as_deref() == Some(hash))
    }

    /// Ends every stream of `user` (deactivation).
    pub fn end_user(&self, user: &str) -> usize {
        self.end_where(|h| h.user == user)
    }

    /// Streams open now, in all and of `user`.
    pub fn count(&self, user: &str) -> (usize, usize) {
        let open = self.lock();
        (open.len(), open.values().filter(|h| h.user == user).count())
    }
}

/// The stored hash of the caller's API token `id` (None when there is none), so that its streams
/// can be ended when it is revoked.
pub async fn token_hash(state: &AppState, user: &str, id: &str) -> ApiResult<Option<String>> {
    use sqlx::Row;
    let row = sqlx::query("SELECT token_hash FROM api_tokens WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .fetch_optional(state.db.pool())
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("reading an API token")))?;
    Ok(row.map(|r| r.get::<String, _>("token_hash")))
}

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/events", get(events))
}

fn json_event(name: &str, data: serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// Stream of deployment changes: events `snapshot` (`{"deployments": [...]}`), `deployment`
/// (`{"type": "applied", "deployment": {...}}` or `{"type": "deleted", "name": "..."}`) and
/// `resync` (the client fell behind and should reload).
#[utoipa::path(get, path = "/api/events", tag = "deployments",
    responses((status = 200, description = "text/event-stream of deployment changes", content_type = "text/event-stream"),
        (status = 429, description = "too many streams open (EVENTS_MAX_STREAMS_PER_USER, EVENTS_MAX_STREAMS)", body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    p: Principal,
    session: Session,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    p.require(Scope::DeploymentsRead)?;
    let (session_id, token) = stream_owner(&p, &session, &headers);
    let (ticket, stop) = state.streams.open(&p.user.id, session_id, token.clone())?;
    let team = p.tenant.team.as_ref().map(|t| t.id.clone());
    let revoked = until_invalid(state.clone(), p.user.id.clone(), token, team, state.streams.recheck());
    let ns = p.sandbox(&state).namespace;
    // Subscribe before the snapshot so that nothing falls between them.
    let rx = state.platform.subscribe();
    let snapshot: Vec<DeploymentView> = state
        .platform
        .deployments(&ns)
        .await?
        .iter()
        .map(|d| DeploymentView::of(d))
        .collect();
    let guard = state.metrics.sse_client();
    let first = stream::once(async move { json_event("snapshot", serde_json::json!({ "deployments": snapshot })) });
    let changes = BroadcastStream::new(rx).filter_map(move |item| {
        let _held = (&guard, &ticket);
        let out = match item {
            Ok(change) if change.namespace() == ns => Some(match change {
                Change::Applied(ud) => json_event(
                    "deployment",
                    serde_json::json!({ "type": "applied", "deployment": DeploymentView::of(&ud), "name": ud.name_any() }),
                ),
                Change::Deleted { name, .. } => {
                    json_event("deployment", serde_json::json!({ "type": "deleted", "name": name }))
                }
            }),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(json_event("resync", serde_json::json!({ "missed": n }))),
        };
        async move { out }
    });
    // Ends when the session or token is signed out or revoked (the ticket's sender is dropped),
    // or a periodic check finds the token or the user no longer valid.
    let end = async move {
        tokio::select! {
            _ = stop => {}
            _ = revoked => {}
        }
    };
    let stream = first.chain(changes).take_until(end);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What opened a stream: the session id (signed in with a cookie) or the hash of the API token,
/// so that signing out or revoking the token ends it.
pub fn stream_owner(p: &Principal, session: &Session, headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let session_id = (p.via == Via::Session)
        .then(|| session.id().map(|i| i.to_string()))
        .flatten();
    let token = (p.via == Via::Token)
        .then(|| {
            let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
            Some(crate::auth::hash_token(value.strip_prefix("Bearer ")?.trim()))
        })
        .flatten();
    (session_id, token)
}

/// Resolves once the stream's API token (by hash) no longer authenticates (expired, revoked,
/// its user deactivated) or, for a session's stream, its user is deactivated; checked every
/// `every`. A database error keeps the stream open (logged): the next check decides.
pub async fn until_invalid(
    state: AppState,
    user: String,
    token: Option<String>,
    team: Option<String>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: the stream was just authenticated
    loop {
        tick.tick().await;
        let valid = match &token {
            Some(hash) => state.db.find_token(hash).await.map(|t| t.is_some()),
            None => state.db.user_is_active(&user).await,
        };
        // A stream on a team's sandbox ends when its user leaves the team (removed, the team
        // deleted, an organization admin demoted).
        let valid = match (valid, &team) {
            (Ok(true), Some(team)) => crate::teams::store::team_role(&state.db, team, &user)
                .await
                .map(|r| r.is_some()),
            (other, _) => other,
        };
        match valid {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(error = %e, "checking a stream's token or user failed; it stays open"),
        }
    }
}
