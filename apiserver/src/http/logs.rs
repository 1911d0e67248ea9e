//! `GET /api/deployments/{name}/logs`: the log of one service of the caller's deployment, streamed
//! from the Kubernetes pod log API as it comes (`text/plain`, chunked), never stored or logged by
//! the server.
//!
//! Query: `service` (optional when the app has one service), `previous` (the terminated
//! container's log), `tail` (lines from the end, default 500, 1-5000), `follow` (keep the stream
//! open for new lines). The pod is the service's newest, a Running one first; the response names
//! it in `X-Pod-Name`.
//!
//! Caps, each ending the stream with a last line that names its variable:
//! - LOGS_MAX_BYTES: log bytes one response carries (Kubernetes is asked for one byte more, so
//!   that the server knows whether the log was longer and cut);
//! - LOGS_FOLLOW_MAX_SECONDS: how long a followed stream stays open;
//! - LOGS_MAX_FOLLOWS_PER_USER and LOGS_MAX_FOLLOWS: followed streams open at once (429 beyond),
//!   counted in [`super::events::Streams`] like `/api/events`, so that a followed stream also ends when its
//!   session is signed out, its API token revoked or expired, or its user deactivated.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use crds::UserDeployment;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::ResourceExt;
use tower_sessions::Session;

use super::NameKind;
use super::events::{StreamNames, stream_owner, until_invalid};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::platform::{LogRequest, LogStream, PodSummary};

/// The names of the followed log streams, as their 429 messages say them.
pub const FOLLOW_STREAMS: StreamNames = StreamNames {
    what: "followed log streams",
    per_user_var: "LOGS_MAX_FOLLOWS_PER_USER",
    total_var: "LOGS_MAX_FOLLOWS",
};

/// Lines from the end of the log without `tail`.
pub const DEFAULT_TAIL: u32 = 500;
/// Most lines `tail` may ask for.
pub const MAX_TAIL: u32 = 5000;
/// Response header naming the pod whose log is shown.
pub const POD_HEADER: &str = "x-pod-name";

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/deployments/{name}/logs", get(deployment_logs))
}

/// The query of a log request, for the OpenAPI document (the handler parses the raw query itself,
/// so that every refusal names its parameter).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LogQuery {
    /// The service whose log is shown; optional when the app has exactly one service.
    service: Option<String>,
    /// The previous (terminated) container's log, e.g. after a crash. Default false.
    previous: Option<bool>,
    /// Lines from the end of the log, 1-5000. Default 500.
    #[param(minimum = 1, maximum = 5000)]
    tail: Option<u32>,
    /// Keep the stream open and send new lines as they are written, until the app's container
    /// stops, the client goes away or LOGS_FOLLOW_MAX_SECONDS pass. Default false.
    follow: Option<bool>,
}

/// A log request's query, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// `service`, when given.
    pub service: Option<String>,
    /// `previous`.
    pub previous: bool,
    /// `tail`.
    pub tail: u32,
    /// `follow`.
    pub follow: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            service: None,
            previous: false,
            tail: DEFAULT_TAIL,
            follow: false,
        }
    }
}

/// The longest part of a refused value a message repeats.
const SHOWN: usize = 80;

fn shown(value: &str) -> String {
    let s: String = value.chars().take(SHOWN).collect();
    if s.len() < value.len() {
        format!("{s:?}... ({} bytes)", value.len())
    } else {
        format!("{s:?}")
    }
}

fn bad(param: &str, value: &str, rule: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "query parameter {param}: {} is not valid; it must be {rule}",
        shown(value)
    ))
}

fn parse_bool(param: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(param, value, "true or false")),
    }
}

impl LogOptions {
    /// Parses the raw query string (None: no query). Unknown or repeated parameters and bad
    /// values are a 400 naming the parameter.
    pub fn parse(query: Option<&str>) -> Result<LogOptions, ApiError> {
        let mut out = LogOptions::default();
        let mut seen: Vec<String> = vec![];
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if seen.iter().any(|k| *k == key) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {} is given more than once",
                    shown(&key)
                )));
            }
            seen.push(key.to_string());
            match key.as_ref() {
                "service" => {
                    if !crds::is_dns_label(&value, 63) {
                        return Err(bad(
                            "service",
                            &value,
                            "the name of one of the deployment's services (a DNS label)",
                        ));
                    }
                    out.service = Some(value.into_owned());
                }
                "previous" => out.previous = parse_bool("previous", &value)?,
                "follow" => out.follow = parse_bool("follow", &value)?,
                "tail" => {
                    out.tail = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_TAIL).contains(n))
                        .ok_or_else(|| bad("tail", &value, &format!("a whole number of lines from 1 to {MAX_TAIL}")))?;
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter {}; this route takes service, previous, tail and follow",
                        shown(other)
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// The services of `ud`, by name: its inline services, else its template's (the controller's
/// resolution rule), else those its status reports (the template was deleted since).
pub(crate) fn app_services(state: &AppState, ud: &UserDeployment) -> Vec<String> {
    if let Some(services) = &ud.spec.services {
        return services.iter().map(|s| s.name.clone()).collect();
    }
    let ns = ud.namespace().unwrap_or_default();
    if let Some(r) = &ud.spec.template_ref
        && let Some(t) = super::deployments::resolve_template(state, r, &ns)
    {
        return t.spec.services.iter().map(|s| s.name.clone()).collect();
    }
    ud.status
        .as_ref()
        .map(|s| s.services.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default()
}

/// The service whose log is asked for: `requested`, which must be one of `services`, or the
/// only one.
pub fn choose_service(requested: Option<&str>, services: &[String], deployment: &str) -> Result<String, ApiError> {
    let list = services.join(", ");
    match requested {
        Some(s) if services.iter().any(|x| x == s) => Ok(s.to_string()),
        Some(s) if services.is_empty() => Err(ApiError::BadRequest(format!(
            "service {s:?}: the services of deployment {deployment:?} are not known (its template no longer exists)"
        ))),
        Some(s) => Err(ApiError::BadRequest(format!(
            "deployment {deployment:?} has no service {s:?}; its services: {list}"
        ))),
        None => match services {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::Conflict(format!(
                "the services of deployment {deployment:?} are not known (its template no longer exists)"
            ))),
            _ => Err(ApiError::BadRequest(format!(
                "deployment {deployment:?} has {} services ({list}): name one with the query parameter service",
                services.len()
            ))),
        },
    }
}

/// The pod whose log is shown: the newest Running one that is not being deleted, else the newest
/// Running one, else the newest (a pod that crashed or is starting); None without pods.
pub fn choose_pod(pods: &[PodSummary]) -> Option<&PodSummary> {
    pods.iter()
        .max_by_key(|p| (p.running && !p.deleting, p.running, p.created, &p.name))
}

/// Why a log stream ended before its log did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// LOGS_MAX_BYTES were sent.
    Bytes(u64),
    /// LOGS_FOLLOW_MAX_SECONDS passed.
    Duration(Duration),
    /// The session was signed out, the API token revoked or expired, or the user deactivated.
    Revoked,
    /// Reading from Kubernetes failed.
    Failed,
}

/// The last line of a stream that a cap or an event ended, on a line of its own.
pub fn closing_line(end: StreamEnd) -> String {
    let why = match end {
        StreamEnd::Bytes(n) => format!("log output cut at {n} bytes (LOGS_MAX_BYTES)"),
        StreamEnd::Duration(d) => format!("log stream ended after {} s (LOGS_FOLLOW_MAX_SECONDS)", d.as_secs()),
        StreamEnd::Revoked => {
            "log stream ended: its session was signed out, or its API token revoked or expired".to_string()
        }
        StreamEnd::Failed => "log stream interrupted: reading the log from Kubernetes failed; reload to retry".into(),
    };
    format!("\n[k8s-scheduler: {why}]\n")
}

struct Capped<H> {
    upstream: LogStream,
    max_bytes: u64,
    sent: u64,
    deadline: Option<(tokio::time::Instant, Duration)>,
    stop: BoxFuture<'static, ()>,
    done: bool,
    /// Held as long as the stream (a [`super::events::StreamTicket`]): dropped when it ends or
    /// the client goes away.
    _hold: H,
}

/// `upstream` with the caps applied: at most `max_bytes` bytes of it, then a closing line if it
/// had more; for a followed stream (`follow_for`), a closing line once that much time passed;
/// a closing line when `stop` resolves. `hold` lives as long as the stream.
pub fn capped<H: Send + 'static>(
    upstream: LogStream,
    max_bytes: u64,
    follow_for: Option<Duration>,
    stop: BoxFuture<'static, ()>,
    hold: H,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let state = Capped {
        upstream,
        max_bytes,
        sent: 0,
        deadline: follow_for.map(|d| (tokio::time::Instant::now() + d, d)),
        stop,
        done: false,
        _hold: hold,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let deadline = st.deadline;
        let timer = async move {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let end = tokio::select! {
            biased;
            _ = &mut st.stop => StreamEnd::Revoked,
            _ = timer => StreamEnd::Duration(deadline.map(|(_, d)| d).unwrap_or_default()),
            item = st.upstream.next() => match item {
                None => return None,
                Some(Err(e)) => {
                    // The error says what failed on the connection, never the log's content.
                    tracing::warn!(error = %e, "reading a pod's log from Kubernetes failed; the log stream ends");
                    StreamEnd::Failed
                }
                Some(Ok(chunk)) => {
                    let room = st.max_bytes - st.sent;
                    if chunk.len() as u64 <= room {
                        st.sent += chunk.len() as u64;
                        return Some((Ok(chunk), st));
                    }
                    // More than the cap allows: what fits, then the closing line.
                    let mut out = chunk[..room as usize].to_vec();
                    out.extend_from_slice(closing_line(StreamEnd::Bytes(st.max_bytes)).as_bytes());
                    st.sent = st.max_bytes;
                    st.done = true;
                    tracing::info!(bytes = st.max_bytes, "log stream cut at LOGS_MAX_BYTES");
                    return Some((Ok(Bytes::from(out)), st));
                }
            },
        };
        st.done = true;
        if let StreamEnd::Duration(d) = end {
            tracing::info!(seconds = d.as_secs(), "log stream ended at LOGS_FOLLOW_MAX_SECONDS");
        }
        Some((Ok(Bytes::from(closing_line(end))), st))
    })
}

/// The log of one service of a deployment, as plain text, streamed as it comes.
#[utoipa::path(get, path = "/api/deployments/{name}/logs", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), LogQuery),
    responses(
        (status = 200, description = "The log as it comes (chunked). A stream that a cap ends closes with a line \
            `[k8s-scheduler: ...]` naming LOGS_MAX_BYTES or LOGS_FOLLOW_MAX_SECONDS.",
            content_type = "text/plain; charset=utf-8", body = String,
            headers(("X-Pod-Name" = String, description = "The pod whose log is shown"))),
        (status = 400, description = "a bad query parameter (the error names it), an unknown service (the error \
            lists the app's services), or no service named for an app with several", body = ErrorBody),
        (status = 404, description = "no such deployment for the caller, or the service has no pod yet", body = ErrorBody),
        (status = 409, description = "no log yet (the container has not started, or there is no previous \
            container), the server runs without Kubernetes (KUBERNETES_ENABLED=false), or the caller's sandbox \
            belongs to another identity or installation", body = ErrorBody),
        (status = 429, description = "too many followed log streams open (LOGS_MAX_FOLLOWS_PER_USER, LOGS_MAX_FOLLOWS)", body = ErrorBody)))]
pub async fn deployment_logs(
    State(state): State<AppState>,
    p: Principal,
    session: Session,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    // A read, like the deployment it belongs to.
    p.require(Scope::DeploymentsRead)?;
    super::path_name("name", &name, NameKind::Label)?;
    let opts = LogOptions::parse(query.as_deref())?;
    // Only in the caller's own sandbox: another user's app is not there (404).
    let ud = super::deployments::find(&state, &p, &name).await?;
    let ns = ud.namespace().unwrap_or_default();
    let service = choose_service(opts.service.as_deref(), &app_services(&state, &ud), &name)?;
    let pods = state.platform.service_pods(&ns, &name, &service).await?;
    let pod = choose_pod(&pods)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "service {service} has no pod yet (deployment {name:?} is starting, suspended or scaled to zero)"
            ))
        })?
        .name
        .clone();
    let pod_header =
        HeaderValue::from_str(&pod).map_err(|e| ApiError::Internal(anyhow::anyhow!("pod name {pod:?}: {e}")))?;
    // A followed stream takes a place (429 beyond a cap) before anything is asked of Kubernetes.
    let (ticket, stop): (Option<_>, BoxFuture<'static, ()>) = if opts.follow {
        let (session_id, token) = stream_owner(&p, &session, &headers);
        let (ticket, ended) = state.log_follows.open(&p.user.id, session_id, token.clone())?;
        let team = p.tenant.team.as_ref().map(|t| t.id.clone());
        let invalid = until_invalid(
            state.clone(),
            p.user.id.clone(),
            token,
            team,
            state.log_follows.recheck(),
        );
        let stop = async move {
            tokio::select! {
                _ = ended => {}
                _ = invalid => {}
            }
        };
        (Some(ticket), stop.boxed())
    } else {
        (None, std::future::pending().boxed())
    };
    let max_bytes = state.config.logs_max_bytes;
    let request = LogRequest {
        container: service.clone(),
        previous: opts.previous,
        tail_lines: i64::from(opts.tail),
        follow: opts.follow,
        // One byte more than is sent: whether the log was longer than the cap shows.
        limit_bytes: i64::try_from(max_bytes.saturating_add(1)).unwrap_or(i64::MAX),
    };
    let upstream = state.platform.logs(&ns, &pod, &request).await?;
    // Who asked for which log; never its content.
    tracing::info!(
        user = %p.user.id,
        deployment = %name,
        service = %service,
        pod = %pod,
        follow = opts.follow,
        previous = opts.previous,
        tail = opts.tail,
        "log stream opened"
    );
    let follow_for = opts
        .follow
        .then(|| Duration::from_secs(state.config.logs_follow_max_seconds));
    let body = Body::from_stream(capped(upstream, max_bytes, follow_for, stop, ticket));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // The log is the app's output: never rendered as anything but text.
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            // Proxies (nginx) pass a followed stream on at once instead of buffering it.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
            (header::HeaderName::from_static(POD_HEADER), pod_header),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::events::Streams;

    fn err(r: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
        let e = r.expect_err("an error");
        (e.status().as_u16(), e.to_string())
    }

    #[test]
    fn defaults_without_a_query() {
        assert_eq!(LogOptions::parse(None).unwrap(), LogOptions::default());
        assert_eq!(LogOptions::parse(Some("")).unwrap().tail, 500);
        let o = LogOptions::parse(Some("service=web&previous=true&tail=20&follow=true")).unwrap();
        assert_eq!(
            o,
            LogOptions {
                service: Some("web".into()),
                previous: true,
                tail: 20,
                follow: true
            }
        );
        assert_eq!(LogOptions::parse(Some("tail=1")).unwrap().tail, 1);
        assert_eq!(LogOptions::parse(Some("tail=5000")).unwrap().tail, 5000);
        assert!(!LogOptions::parse(Some("follow=false")).unwrap().follow);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, param) in [
            ("tail=0", "tail"),
            ("tail=5001", "tail"),
            ("tail=-1", "tail"),
            ("tail=ten", "tail"),
            ("tail=", "tail"),
            ("follow=yes", "follow"),
            ("follow=", "follow"),
            ("previous=1", "previous"),
            ("service=Web", "service"),
            ("service=", "service"),
            ("service=a%2Fb", "service"),
        ] {
            let (status, msg) = err(LogOptions::parse(Some(query)));
            assert_eq!(status, 400, "{query}");
            assert!(msg.contains(&format!("query parameter {param}")), "{query}: {msg}");
        }
        let (status, msg) = err(LogOptions::parse(Some("tail=5&tail=6")));
        assert!(
            status == 400 && msg.contains("\"tail\" is given more than once"),
            "{msg}"
        );
        let (status, msg) = err(LogOptions::parse(Some("lines=5")));
        assert!(
            status == 400 && msg.contains("unknown query parameter \"lines\""),
            "{msg}"
        );
        // A long value is shortened in the message.
        let (_, msg) = err(LogOptions::parse(Some(&format!("tail={}", "9".repeat(500)))));
        assert!(msg.contains("(500 bytes)") && msg.len() < 300, "{msg}");
    }

    #[test]
    fn the_service_is_named_or_the_only_one() {
        let one = vec!["web".to_string()];
        let two = vec!["web".to_string(), "redis".to_string()];
        assert_eq!(choose_service(None, &one, "app").unwrap(), "web");
        assert_eq!(choose_service(Some("web"), &one, "app").unwrap(), "web");
        assert_eq!(choose_service(Some("redis"), &two, "app").unwrap(), "redis");
        let (status, msg) = err(choose_service(None, &two, "app"));
        assert!(
            status == 400 && msg.contains("web, redis") && msg.contains("service"),
            "{msg}"
        );
        let (status, msg) = err(choose_service(Some("db"), &two, "app"));
        assert!(
            status == 400 && msg.contains("no service \"db\"") && msg.contains("web, redis"),
            "{msg}"
        );
        let (status, _) = err(choose_service(None, &[], "app"));
        assert_eq!(status, 409);
        let (status, _) = err(choose_service(Some("web"), &[], "app"));
        assert_eq!(status, 400);
    }

    fn pod(name: &str, running: bool, created: i64, deleting: bool) -> PodSummary {
        PodSummary {
            name: name.into(),
            running,
            created: Some(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()),
            deleting,
        }
    }

    #[test]
    fn the_newest_running_pod_is_chosen() {
        assert_eq!(choose_pod(&[]), None);
        let pick = |pods: &[PodSummary]| choose_pod(pods).map(|p| p.name.clone()).unwrap();
        // Newest first among Running ones.
        assert_eq!(pick(&[pod("old", true, 10, false), pod("new", true, 20, false)]), "new");
        // A Running pod before a newer one that is not running yet (rollout in progress).
        assert_eq!(
            pick(&[pod("running", true, 10, false), pod("pending", false, 20, false)]),
            "running"
        );
        // A terminating pod only when nothing else runs.
        assert_eq!(
            pick(&[pod("leaving", true, 30, true), pod("staying", true, 10, false)]),
            "staying"
        );
        assert_eq!(
            pick(&[pod("leaving", true, 10, true), pod("pending", false, 20, false)]),
            "leaving"
        );
        // Nothing running: the newest (a crash loop shows its latest pod).
        assert_eq!(pick(&[pod("a", false, 10, false), pod("b", false, 20, false)]), "b");
    }

    fn upstream(chunks: Vec<&'static str>) -> LogStream {
        futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c.as_bytes())))).boxed()
    }

    async fn collect(s: impl Stream<Item = Result<Bytes, Infallible>>) -> String {
        let parts: Vec<Result<Bytes, Infallible>> = s.collect().await;
        parts
            .into_iter()
            .map(|p| String::from_utf8(p.unwrap().to_vec()).unwrap())
            .collect()
    }

    fn never() -> BoxFuture<'static, ()> {
        std::future::pending().boxed()
    }

    #[tokio::test]
    async fn a_log_within_the_byte_cap_passes_unchanged() {
        let out = collect(capped(upstream(vec!["one\n", "two\n"]), 8, None, never(), ())).await;
        assert_eq!(out, "one\ntwo\n", "exactly the cap: nothing was cut");
    }

    #[tokio::test]
    async fn the_byte_cap_cuts_and_says_so() {
        let out = collect(capped(
            upstream(vec!["one\n", "two\n", "three\n"]),
            6,
            None,
            never(),
            (),
        ))
        .await;
        assert_eq!(out, format!("one\ntw{}", closing_line(StreamEnd::Bytes(6))));
        assert!(out.ends_with("\n[k8s-scheduler: log output cut at 6 bytes (LOGS_MAX_BYTES)]\n"));
    }

    #[tokio::test]
    async fn a_followed_stream_ends_after_its_time() {
        // A stream that sends one line and then nothing for a long time.
        let slow = futures::stream::iter([Ok(Bytes::from_static(b"first\n"))])
            .chain(futures::stream::pending())
            .boxed();
        let limit = Duration::from_millis(300);
        let started = tokio::time::Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            collect(capped(slow, 1000, Some(limit), never(), ())),
        )
        .await
        .expect("the stream ends by itself");
        assert_eq!(out, format!("first\n{}", closing_line(StreamEnd::Duration(limit))));
        assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
        assert_eq!(
            closing_line(StreamEnd::Duration(Duration::from_secs(1800))),
            "\n[k8s-scheduler: log stream ended after 1800 s (LOGS_FOLLOW_MAX_SECONDS)]\n"
        );
    }

    #[tokio::test]
    async fn stop_ends_the_stream_and_drops_what_it_holds() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let held = std::sync::Arc::new(());
        let stream = capped(
            futures::stream::pending().boxed(),
            1000,
            Some(Duration::from_secs(60)),
            async move {
                let _ = rx.await;
            }
            .boxed(),
            held.clone(),
        );
        let reader = tokio::spawn(collect(stream));
        assert_eq!(std::sync::Arc::strong_count(&held), 2, "the stream holds its ticket");
        drop(tx);
        let out = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out, closing_line(StreamEnd::Revoked));
        assert_eq!(
            std::sync::Arc::strong_count(&held),
            1,
            "an ended stream frees its ticket"
        );
    }

    #[tokio::test]
    async fn a_failed_read_ends_with_a_line() {
        let failing = futures::stream::iter([
            Ok(Bytes::from_static(b"a\n")),
            Err(std::io::Error::other("connection reset")),
            Ok(Bytes::from_static(b"never\n")),
        ])
        .boxed();
        let out = collect(capped(failing, 1000, None, never(), ())).await;
        assert_eq!(out, format!("a\n{}", closing_line(StreamEnd::Failed)));
    }

    #[test]
    fn follow_streams_are_counted_with_their_own_names() {
        let streams = Streams::with_names(1, 2, FOLLOW_STREAMS);
        let _a = streams.open("a", None, None).unwrap();
        let e = streams.open("a", None, None).err().unwrap();
        assert!(e.to_string().contains("LOGS_MAX_FOLLOWS_PER_USER (1)"), "{e}");
        let _b = streams.open("b", None, None).unwrap();
        let e = streams.open("c", None, None).err().unwrap();
        assert!(
            e.to_string().contains("LOGS_MAX_FOLLOWS (2)") && !e.to_string().contains("PER_USER"),
            "{e}"
        );
    }
}
