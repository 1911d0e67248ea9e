//! `GET /api/deployments/{name}/logs` through the router, without a cluster: the offline platform
//! answers 409, and a platform whose pods and pod log API are played by the test shows the route's
//! contract: the pod chosen and named in `X-Pod-Name`, what is asked of Kubernetes, the query's
//! refusals, another user's app answering 404, the scope, and the caps (bytes, duration,
//! followed streams per user and in all, ended by revocation). The real pod log API is exercised
//! on a real node by `e2e/tests/real_node/logs.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{call, get, json, json_with_token, offline_config};
use anyhow::{Context, Result, bail};
use apiserver::App;
use apiserver::config::Config;
use apiserver::db::{Db, User};
use apiserver::error::ApiResult;
use apiserver::platform::{Change, LogRequest, LogStream, Platform, PodSummary, SandboxInfo};
use apiserver::views::EventView;
use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use crds::{Template, UserDeployment};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tower::ServiceExt;

/// The offline platform, with pods and a pod log API played by the test.
struct FakePods {
    inner: Arc<dyn Platform>,
    /// The pods every service has.
    pods: Mutex<Vec<PodSummary>>,
    /// What a log request returns at once.
    log: Mutex<String>,
    /// Lines written later (sent to followed streams).
    later: broadcast::Sender<Bytes>,
    /// The requests made: (namespace, pod, request).
    asked: Mutex<Vec<(String, String, LogRequest)>>,
}

#[async_trait]
impl Platform for FakePods {
    async fn ensure_sandbox(&self, user: &User) -> ApiResult<()> {
        self.inner.ensure_sandbox(user).await
    }
    fn set_installation(&self, id: &str) {
        self.inner.set_installation(id)
    }
    fn sandbox(&self, user: &User) -> SandboxInfo {
        self.inner.sandbox(user)
    }
    fn templates(&self, namespace: &str) -> Vec<Arc<Template>> {
        self.inner.templates(namespace)
    }
    async fn deployments(&self, namespace: &str) -> ApiResult<Vec<Arc<UserDeployment>>> {
        self.inner.deployments(namespace).await
    }
    async fn deployment(&self, namespace: &str, name: &str) -> ApiResult<Option<Arc<UserDeployment>>> {
        self.inner.deployment(namespace, name).await
    }
    async fn create(&self, ud: UserDeployment) -> ApiResult<Arc<UserDeployment>> {
        self.inner.create(ud).await
    }
    async fn replace_spec(
        &self,
        current: &UserDeployment,
        spec: crds::UserDeploymentSpec,
    ) -> ApiResult<Arc<UserDeployment>> {
        self.inner.replace_spec(current, spec).await
    }
    async fn delete(&self, namespace: &str, name: &str) -> ApiResult<bool> {
        self.inner.delete(namespace, name).await
    }
    async fn events(&self, namespace: &str, name: &str) -> ApiResult<Vec<EventView>> {
        self.inner.events(namespace, name).await
    }
    fn manifests(&self, ud: &UserDeployment) -> Option<Vec<Value>> {
        self.inner.manifests(ud)
    }
    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.subscribe()
    }
    async fn deliver_secrets(
        &self,
        ud: &UserDeployment,
        values: &apiserver::secrets::Values,
        per_service: &std::collections::BTreeMap<String, apiserver::secrets::Values>,
        services: &[String],
        roll: bool,
    ) -> ApiResult<bool> {
        self.inner
            .deliver_secrets(ud, values, per_service, services, roll)
            .await
    }
    async fn ready(&self) -> Result<(), String> {
        self.inner.ready().await
    }
    async fn service_pods(&self, _namespace: &str, _deployment: &str, _service: &str) -> ApiResult<Vec<PodSummary>> {
        Ok(self.pods.lock().unwrap().clone())
    }
    async fn logs(&self, namespace: &str, pod: &str, request: &LogRequest) -> ApiResult<LogStream> {
        self.asked
            .lock()
            .unwrap()
            .push((namespace.to_string(), pod.to_string(), request.clone()));
        // Like the pod log API: at most limitBytes.
        let mut now = self.log.lock().unwrap().clone().into_bytes();
        now.truncate(request.limit_bytes as usize);
        let first = futures::stream::once(async move { Ok(Bytes::from(now)) });
        if !request.follow {
            return Ok(first.boxed());
        }
        let later = tokio_stream::wrappers::BroadcastStream::new(self.later.subscribe())
            .filter_map(|b| async move { b.ok().map(Ok) });
        Ok(first.chain(later).boxed())
    }
}

fn pod(name: &str, running: bool, created: i64) -> PodSummary {
    PodSummary {
        name: name.into(),
        running,
        created: Some(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()),
        deleting: false,
    }
}

/// A DEV_MODE server over [`FakePods`] (configured by `configure`).
async fn start(configure: impl FnOnce(&mut Config)) -> Result<(App, Arc<FakePods>)> {
    let mut config = offline_config();
    configure(&mut config);
    let config = Arc::new(config);
    let db = Db::connect(None, &config.sqlite_path).await?;
    let offline = apiserver::platform::offline::OfflinePlatform::new(db.clone(), config.clone())?;
    let fake = Arc::new(FakePods {
        inner: Arc::new(offline),
        pods: Mutex::new(vec![
            pod("app-web-old", true, 100),
            pod("app-web-new", true, 200),
            pod("app-web-starting", false, 300),
        ]),
        log: Mutex::new("line 1\nline 2\n".into()),
        later: broadcast::channel(16).0,
        asked: Mutex::new(vec![]),
    });
    let app = apiserver::app_with(config, db, fake.clone(), apiserver::metrics::Metrics::new()).await?;
    Ok((app, fake))
}

async fn send(app: &App, req: Request<Body>) -> axum::response::Response {
    app.router.clone().oneshot(req).await.expect("router answers")
}

async fn text(resp: axum::response::Response) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The dev user's hello-web deployment `app` (one service, `web`).
async fn create_app(app: &App) -> Result<()> {
    let (status, body) = call(
        app,
        json(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "app" }),
        ),
    )
    .await;
    if status != StatusCode::CREATED {
        bail!("create: {status} {body}");
    }
    Ok(())
}

/// A user with an API token of `scopes`.
async fn user_with_token(app: &App, name: &str, scopes: &[&str]) -> Result<String> {
    let db = &app.state.db;
    let (user, _) = db
        .upsert_user(&format!("test|{name}"), &format!("{name}@example.com"), name)
        .await?;
    let token = apiserver::auth::new_api_token();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    db.insert_token(&user.id, "t", &apiserver::auth::hash_token(&token), &scopes)
        .await?;
    Ok(token)
}

/// Reads the next chunk of a streamed body within 5 s.
async fn next_chunk(body: &mut Body) -> Result<String> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .context("no data within 5 s")?
        .context("the stream ended")??;
    Ok(String::from_utf8_lossy(frame.data_ref().context("a data frame")?).into_owned())
}

#[tokio::test]
async fn without_kubernetes_logs_answer_409() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    let (status, body) = call(&app, get("/api/deployments/app/logs", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such deployment: {body}");
    create_app(&app).await?;
    let (status, body) = call(&app, get("/api/deployments/app/logs", None)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let e = body["error"].as_str().unwrap_or("");
    assert!(
        e.contains("logs need a cluster") && e.contains("KUBERNETES_ENABLED=false"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn the_newest_running_pod_is_read_as_asked() -> Result<()> {
    let (app, fake) = start(|c| c.logs_max_bytes = 1000).await?;
    create_app(&app).await?;
    let ns = app.state.config.namespace_for("dev");

    let resp = send(&app, get("/api/deployments/app/logs", None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(h["x-pod-name"], "app-web-new", "the newest Running pod");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(text(resp).await, "line 1\nline 2\n");
    {
        let asked = fake.asked.lock().unwrap();
        let (asked_ns, asked_pod, request) = asked.last().context("a log request")?;
        assert_eq!((asked_ns.as_str(), asked_pod.as_str()), (ns.as_str(), "app-web-new"));
        assert_eq!(
            request,
            &LogRequest {
                container: "web".into(),
                previous: false,
                tail_lines: 500,
                follow: false,
                limit_bytes: 1001,
            },
            "the service's container, the defaults, one byte beyond LOGS_MAX_BYTES"
        );
    }

    let resp = send(
        &app,
        get("/api/deployments/app/logs?service=web&previous=true&tail=20", None),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    {
        let asked = fake.asked.lock().unwrap();
        let request = &asked.last().context("a log request")?.2;
        assert!(
            request.previous && request.tail_lines == 20 && !request.follow,
            "{request:?}"
        );
    }

    // Refusals name the parameter; an unknown service lists the app's services.
    for (query, says) in [
        ("tail=0", "query parameter tail"),
        ("tail=5001", "query parameter tail"),
        ("follow=maybe", "query parameter follow"),
        ("previous=yes", "query parameter previous"),
        ("service=db", "no service \"db\"; its services: web"),
        ("lines=3", "unknown query parameter \"lines\""),
    ] {
        let (status, body) = call(&app, get(&format!("/api/deployments/app/logs?{query}"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(says), "{query}: {body}");
    }
    let (status, body) = call(&app, get("/api/deployments/App/logs", None)).await;
    assert!(status == StatusCode::BAD_REQUEST && body["error"].as_str().unwrap_or("").contains("path parameter name"));

    // No pod (yet): 404 naming the service.
    fake.pods.lock().unwrap().clear();
    let (status, body) = call(&app, get("/api/deployments/app/logs", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("service web has no pod yet"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn another_users_app_is_not_found_and_the_scope_is_checked() -> Result<()> {
    let (app, _fake) = start(|_| {}).await?;
    let alice = user_with_token(&app, "alice", &["deployments:read", "deployments:write"]).await?;
    let bob = user_with_token(&app, "bob", &["deployments:read"]).await?;
    let alice_templates_only = user_with_token(&app, "alice", &["templates:read"]).await?;
    let (status, body) = call(
        &app,
        json_with_token(
            "POST",
            "/api/deployments",
            json!({ "template": "hello-web", "name": "mine" }),
            &alice,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let resp = send(&app, get("/api/deployments/mine/logs", Some(&alice))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Bob's sandbox has no app "mine": the same 404 as a missing one.
    let (status, body) = call(&app, get("/api/deployments/mine/logs", Some(&bob))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "deployment \"mine\" not found");
    let (status, body) = call(&app, get("/api/deployments/mine/logs", Some(&alice_templates_only))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("deployments:read"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn the_byte_cap_cuts_the_log_and_says_so() -> Result<()> {
    let (app, fake) = start(|c| c.logs_max_bytes = 10).await?;
    create_app(&app).await?;
    *fake.log.lock().unwrap() = "0123456789abcdef\n".into();
    let resp = send(&app, get("/api/deployments/app/logs", None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        text(resp).await,
        "0123456789\n[k8s-scheduler: log output cut at 10 bytes (LOGS_MAX_BYTES)]\n"
    );
    // A log of exactly the cap is not cut.
    *fake.log.lock().unwrap() = "012345678\n".into();
    let resp = send(&app, get("/api/deployments/app/logs", None)).await;
    assert_eq!(text(resp).await, "012345678\n");
    Ok(())
}

#[tokio::test]
async fn followed_streams_get_new_lines_and_end_after_their_time() -> Result<()> {
    let (app, fake) = start(|c| c.logs_follow_max_seconds = 2).await?;
    create_app(&app).await?;
    let resp = send(&app, get("/api/deployments/app/logs?follow=true", None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let started = tokio::time::Instant::now();
    let mut body = resp.into_body();
    assert_eq!(next_chunk(&mut body).await?, "line 1\nline 2\n");
    fake.later.send(Bytes::from_static(b"line 3\n"))?;
    assert_eq!(
        next_chunk(&mut body).await?,
        "line 3\n",
        "a line written after the stream opened"
    );
    assert_eq!(
        next_chunk(&mut body).await?,
        "\n[k8s-scheduler: log stream ended after 2 s (LOGS_FOLLOW_MAX_SECONDS)]\n"
    );
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(body.frame().await.is_none(), "the stream ends after its last line");
    assert_eq!(
        app.state.log_follows.count("dev"),
        (0, 0),
        "an ended stream frees its place"
    );
    Ok(())
}

#[tokio::test]
async fn followed_streams_are_capped_and_end_at_revocation() -> Result<()> {
    let (app, _fake) = start(|c| {
        c.logs_max_follows_per_user = 2;
        c.logs_max_follows = 3;
    })
    .await?;
    let alice = user_with_token(&app, "alice", &["deployments:read", "deployments:write"]).await?;
    let bob = user_with_token(&app, "bob", &["deployments:read", "deployments:write"]).await?;
    for (token, name) in [(&alice, "a"), (&bob, "b")] {
        let (status, body) = call(
            &app,
            json_with_token(
                "POST",
                "/api/deployments",
                json!({ "template": "hello-web", "name": name }),
                token,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let follow = |token: &str, name: &str| get(&format!("/api/deployments/{name}/logs?follow=true"), Some(token));
    let a1 = send(&app, follow(&alice, "a")).await;
    let a2 = send(&app, follow(&alice, "a")).await;
    assert!(a1.status() == StatusCode::OK && a2.status() == StatusCode::OK);
    let (status, body) = call(&app, follow(&alice, "a")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let e = body["error"].as_str().unwrap_or("");
    assert!(e.contains("LOGS_MAX_FOLLOWS_PER_USER (2)"), "{e}");
    // Reads without follow are not counted.
    let resp = send(&app, get("/api/deployments/a/logs", Some(&alice))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Bob: one fits in the total of three, the next does not.
    let b1 = send(&app, follow(&bob, "b")).await;
    assert_eq!(b1.status(), StatusCode::OK);
    let (status, body) = call(&app, follow(&bob, "b")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let e = body["error"].as_str().unwrap_or("");
    assert!(e.contains("LOGS_MAX_FOLLOWS (3)") && !e.contains("PER_USER"), "{e}");
    // A client that goes away frees its place.
    drop(a1);
    let a3 = send(&app, follow(&alice, "a")).await;
    assert_eq!(a3.status(), StatusCode::OK);

    // Ending the token's streams (what revoking it does) ends them with a last line.
    let mut b1 = b1.into_body();
    assert_eq!(next_chunk(&mut b1).await?, "line 1\nline 2\n");
    let ended = app.state.log_follows.end_token(&apiserver::auth::hash_token(&bob));
    assert_eq!(ended, 1);
    let last = next_chunk(&mut b1).await?;
    assert!(last.contains("its API token revoked"), "{last}");
    assert!(b1.frame().await.is_none());
    drop((a2, a3));
    Ok(())
}

#[tokio::test]
async fn a_client_that_goes_away_from_a_quiet_stream_frees_its_place() -> Result<()> {
    // Over a real connection: the app writes nothing more, so only the connection's close can
    // tell the server that the reader left (a closed browser tab must not hold a place until
    // LOGS_FOLLOW_MAX_SECONDS).
    let (app, _fake) = start(|_| {}).await?;
    create_app(&app).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{base}/api/deployments/app/logs?follow=true"))
        .send()
        .await?;
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let mut chunks = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), chunks.next())
        .await?
        .context("a first chunk")??;
    assert_eq!(&first[..], b"line 1\nline 2\n");
    assert_eq!(app.state.log_follows.count("dev"), (1, 1));
    drop(chunks);
    drop(http);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.state.log_follows.count("dev") != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place of a stream whose client left is still taken after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
