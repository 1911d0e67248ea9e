//! `/api/events` streams (without a cluster): the caps per user and in total answer 429, a closed
//! stream frees its place, and signing out or revoking the API token ends the streams they opened.

use std::time::Duration;

use crate::common::{ORIGIN, offline_config};
use anyhow::{Context, Result, bail};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(app: &apiserver::App, req: Request<Body>) -> axum::response::Response {
    app.router.clone().oneshot(req).await.expect("router answers")
}

async fn json_of(resp: axum::response::Response) -> Value {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Opens `/api/events` with a session cookie or a token; returns the response.
async fn open(app: &apiserver::App, cookie: Option<&str>, token: Option<&str>) -> axum::response::Response {
    let mut b = Request::get("/api/events");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, b.body(Body::empty()).unwrap()).await
}

/// An open stream: it answered 200 and sent its snapshot.
async fn stream(app: &apiserver::App, cookie: Option<&str>, token: Option<&str>) -> Result<Body> {
    let resp = open(app, cookie, token).await;
    if resp.status() != StatusCode::OK {
        bail!("/api/events answered {}: {}", resp.status(), json_of(resp).await);
    }
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .context("no snapshot within 5 s")?
        .context("the stream ended at once")??;
    let text = String::from_utf8_lossy(first.data_ref().context("a data frame")?).to_string();
    assert!(text.contains("event: snapshot"), "{text}");
    Ok(body)
}

/// Whether the stream's body ends within `wait` (keep-alive comments are skipped).
async fn ends_within(body: &mut Body, wait: Duration) -> bool {
    tokio::time::timeout(wait, async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn streams_are_capped_and_end_at_sign_out_and_revocation() -> Result<()> {
    let mut config = offline_config();
    config.events_max_streams_per_user = 2;
    config.events_max_streams = 3;
    let app = apiserver::app(config).await?;

    // A DEV_MODE session (a real cookie) and an API token of the same user.
    let login = send(&app, Request::get("/dev/login").body(Body::empty())?).await;
    let cookie = login.headers()[header::SET_COOKIE]
        .to_str()?
        .split(';')
        .next()
        .context("a cookie")?
        .to_string();
    let created = send(
        &app,
        Request::post("/api/tokens")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({ "name": "ci", "scopes": ["deployments:read"] }).to_string(),
            ))?,
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json_of(created).await;
    let token = created["token"].as_str().context("token")?.to_string();
    let token_id = created["id"].as_str().context("id")?.to_string();

    // Two streams of the dev user: the per-user cap.
    let mut by_session = stream(&app, Some(&cookie), None).await?;
    let mut by_token = stream(&app, None, Some(&token)).await?;
    let third = open(&app, Some(&cookie), None).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key(header::RETRY_AFTER));
    let e = json_of(third).await;
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .contains("EVENTS_MAX_STREAMS_PER_USER"),
        "{e}"
    );

    // Another user: one more fits in the total of three, the next does not.
    let db = &app.state.db;
    let (alice, _) = db.upsert_user("test|alice", "alice@example.com", "Alice").await?;
    let alice_token = apiserver::auth::new_api_token();
    db.insert_token(
        &alice.id,
        "a",
        &apiserver::auth::hash_token(&alice_token),
        &["deployments:read".to_string()],
    )
    .await?;
    let alices = stream(&app, None, Some(&alice_token)).await?;
    let over = open(&app, None, Some(&alice_token)).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let e = json_of(over).await;
    assert!(e["error"].as_str().unwrap_or("").contains("EVENTS_MAX_STREAMS"), "{e}");
    // A closed stream frees its place.
    drop(alices);
    let alices = stream(&app, None, Some(&alice_token)).await?;

    // Revoking the token ends its stream, not the session's.
    let revoke = send(
        &app,
        Request::delete(format!("/api/tokens/{token_id}"))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())?,
    )
    .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert!(
        ends_within(&mut by_token, Duration::from_secs(5)).await,
        "the revoked token's stream is still open"
    );
    assert_eq!(
        app.state.streams.count(&alice.id),
        (2, 1),
        "the session's and Alice's stay"
    );

    // Signing out ends the session's stream.
    let logout = send(
        &app,
        Request::post("/logout")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())?,
    )
    .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(
        ends_within(&mut by_session, Duration::from_secs(5)).await,
        "the signed-out session's stream is still open"
    );
    assert_eq!(app.state.streams.count(&alice.id), (1, 1), "Alice's stays");

    // Deactivation (H2's route) ends every stream of a user.
    assert_eq!(app.state.streams.end_user(&alice.id), 1);
    drop(alices);
    assert_eq!(app.state.streams.count(&alice.id), (0, 0));
    Ok(())
}

/// What another process does (`apiserver --deactivate-user`) or time does (a token expiring)
/// reaches open streams at their next check: the stream of an expired token and the streams of a
/// deactivated user end; others stay.
#[tokio::test]
async fn streams_end_when_their_token_expires_or_their_user_is_deactivated() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    app.state.streams.set_recheck(Duration::from_millis(200));
    let db = &app.state.db;
    let mut tokens = vec![];
    for who in ["bob", "carol"] {
        let (user, _) = db
            .upsert_user(&format!("test|{who}"), &format!("{who}@example.com"), who)
            .await?;
        let token = apiserver::auth::new_api_token();
        db.insert_token(
            &user.id,
            "t",
            &apiserver::auth::hash_token(&token),
            &["deployments:read".to_string()],
        )
        .await?;
        tokens.push((user, token));
    }
    let (bob, bob_token) = &tokens[0];
    let (carol, carol_token) = &tokens[1];
    let mut bobs = stream(&app, None, Some(bob_token)).await?;
    let mut carols = stream(&app, None, Some(carol_token)).await?;

    // Bob's token expires (its expiry is written as time would make it).
    sqlx::query("UPDATE api_tokens SET expires_at = 1 WHERE user_id = $1")
        .bind(&bob.id)
        .execute(db.pool())
        .await?;
    assert!(
        ends_within(&mut bobs, Duration::from_secs(5)).await,
        "the expired token's stream is still open"
    );
    assert!(
        !ends_within(&mut carols, Duration::from_millis(600)).await,
        "a valid token's stream ended"
    );

    // Carol is deactivated by another process: the same database, not this server's registry.
    db.set_user_active(&carol.id, false).await?;
    assert!(
        ends_within(&mut carols, Duration::from_secs(5)).await,
        "a deactivated user's stream is still open"
    );
    // An ended body is dropped by the connection; then both places are free.
    drop((bobs, carols));
    assert_eq!(app.state.streams.count(&carol.id), (0, 0));
    Ok(())
}
