//! Google-style sign-in end to end against a real OpenID provider on loopback (panva's
//! oidc-provider, `hack/oidc`), and the session matrix (memory, postgres, redis): sign-in,
//! expiry, logout and cleanup behave the same on every backend.

use std::time::Duration;

use crate::common::{Server, server_with_provider, sign_in, sign_in_with_jar, start_login};
use anyhow::Result;
use apiserver::config::SessionBackend;
use reqwest::{Method, StatusCode};

async fn me(server: &Server, browser: &reqwest::Client) -> Result<(StatusCode, serde_json::Value)> {
    let resp = browser.get(server.url("/api/me")).send().await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(serde_json::Value::Null)))
}

#[tokio::test]
async fn sign_in_creates_the_user_and_a_fresh_session() -> Result<()> {
    let (provider, server) = server_with_provider(|_| {}).await?;
    let (browser, jar) = server.browser_with_jar();
    assert_eq!(me(&server, &browser).await?.0, StatusCode::UNAUTHORIZED);

    let login = browser.get(server.url("/login?redirect=/after")).send().await?;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let state_cookie = cookies
        .iter()
        .find(|c| c.starts_with("oauth_state="))
        .expect("state cookie set");
    assert!(
        state_cookie.contains("HttpOnly") && state_cookie.contains("SameSite=Lax"),
        "{state_cookie}"
    );
    let to = login.headers()["location"].to_str()?.to_string();
    assert!(to.starts_with(provider.issuer()), "{to}");
    for part in [
        "code_challenge=",
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "scope=openid",
    ] {
        assert!(to.contains(part), "authorize URL lacks {part}: {to}");
    }
    assert!(
        server.cookie(&jar, "session_id").is_none(),
        "a sign-in in progress holds no server-side session"
    );

    let callback = provider.authorize(&to, "alice").await?;
    let done = browser.get(&callback).send().await?;
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{}", done.text().await?);
    assert_eq!(done.headers()["location"], "/after");
    let before = server.cookie(&jar, "session_id").expect("session cookie");

    let (status, body) = me(&server, &browser).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "alice@example.com");
    let id = body["user"]["id"].as_str().unwrap_or("");
    assert!(
        id.starts_with("alice") && !id.contains('-'),
        "the id is alice + an identity hash: {id}"
    );
    assert_eq!(body["authenticatedBy"], "session");

    // Signing in again from the same browser issues a new session id and ends the old one.
    let callback = start_login(&server, &provider, &browser, "alice").await?;
    assert_eq!(browser.get(&callback).send().await?.status(), StatusCode::SEE_OTHER);
    let after = server.cookie(&jar, "session_id").expect("session cookie");
    assert_ne!(before, after, "sign-in issues a new session id");
    assert_eq!(
        server.get_with_cookie("/api/me", "session_id", &before).await?,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(&server, &browser).await?.0, StatusCode::OK);
    Ok(())
}

/// Issue 15 item 9: `GET /login` keeps nothing on the server. A thousand anonymous callers leave
/// the session table empty and get no session cookie; sign-in still works; a state cookie not made
/// by the server, or a return path that would not fit in it, is refused.
#[tokio::test]
async fn anonymous_logins_store_no_sessions() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let (provider, server) = server_with_provider(|c| {
        c.session_backend = SessionBackend::Postgres;
        c.database_dsn = Some(secrecy::SecretString::from(pg.url.clone()));
    })
    .await?;
    let sessions = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions")
            .fetch_one(server.app.state.db.pool())
            .await
    };
    // No cookie jar: every request is a new anonymous caller.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for i in 0..1000 {
        let resp = anonymous
            .get(server.url(&format!("/login?redirect=/page/{i}")))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "login {i}");
        let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
        assert!(
            cookies
                .iter()
                .all(|c| !c.to_str().unwrap_or("").starts_with("session_id=")),
            "login {i} set a session cookie: {cookies:?}"
        );
        assert!(
            cookies.iter().any(|c| {
                let c = c.to_str().unwrap_or("");
                c.starts_with("oauth_state=") && c.contains("Max-Age=600")
            }),
            "login {i}: a 10-minute state cookie: {cookies:?}"
        );
    }
    assert_eq!(sessions().await?, 0, "anonymous /login stored sessions");

    // The whole flow still works, and only the signed-in browser has a session.
    let browser = sign_in(&server, &provider, "alice").await?;
    assert_eq!(me(&server, &browser).await?.0, StatusCode::OK);
    assert_eq!(sessions().await?, 1);

    // A state cookie the server did not seal is refused, even with a matching state in the query.
    let thief = server.browser();
    let callback = start_login(&server, &provider, &thief, "alice").await?;
    let state = url::Url::parse(&callback)?
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string())
        .expect("state in the callback");
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(&callback)
        .header("cookie", format!("oauth_state={state}"))
        .send()
        .await?;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert!(forged.text().await?.contains("state cookie"));

    // A return path too long for the cookie is refused up front.
    let long = format!("/{}", "a".repeat(2000));
    let resp = anonymous
        .get(server.url(&format!("/login?redirect={long}")))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sessions().await?, 1);
    Ok(())
}

#[tokio::test]
async fn tampered_state_is_refused() -> Result<()> {
    let (provider, server) = server_with_provider(|_| {}).await?;
    let browser = server.browser();
    let callback = start_login(&server, &provider, &browser, "alice").await?;
    let mut url = url::Url::parse(&callback)?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "state" { format!("{v}x") } else { v.to_string() },
            )
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let resp = browser.get(url.as_str()).send().await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await?.contains("state"));
    assert_eq!(me(&server, &browser).await?.0, StatusCode::UNAUTHORIZED);
    // The real callback no longer works either: the attempt was used up.
    assert_eq!(browser.get(&callback).send().await?.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn replayed_code_is_refused() -> Result<()> {
    let (provider, server) = server_with_provider(|_| {}).await?;
    let browser = server.browser();
    let callback = start_login(&server, &provider, &browser, "alice").await?;
    assert_eq!(browser.get(&callback).send().await?.status(), StatusCode::SEE_OTHER);
    // Same browser, same code: refused.
    assert_eq!(browser.get(&callback).send().await?.status(), StatusCode::BAD_REQUEST);
    // Someone else holding the code and state: refused, and not signed in.
    let thief = server.browser();
    assert_eq!(thief.get(&callback).send().await?.status(), StatusCode::BAD_REQUEST);
    assert_eq!(me(&server, &thief).await?.0, StatusCode::UNAUTHORIZED);
    Ok(())
}

async fn refused_token(rewrite: serde_json::Value, login: &str, needle: &str) -> Result<()> {
    let (provider, server) = server_with_provider(|_| {}).await?;
    provider.set_next_token(rewrite.clone()).await?;
    let browser = server.browser();
    let callback = start_login(&server, &provider, &browser, login).await?;
    let resp = browser.get(&callback).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{rewrite} / {login}: {body}");
    assert!(
        body.to_lowercase().contains(needle),
        "{rewrite} / {login}: {body} should mention {needle}"
    );
    assert_eq!(me(&server, &browser).await?.0, StatusCode::UNAUTHORIZED);
    assert!(
        server.app.state.db.user_by_id(login).await?.is_none(),
        "no user was created"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_audience_is_refused() -> Result<()> {
    refused_token(serde_json::json!({ "aud": "another-app" }), "alice", "audience").await
}

#[tokio::test]
async fn expired_id_token_is_refused() -> Result<()> {
    refused_token(serde_json::json!({ "exp_offset_seconds": -3600 }), "alice", "expired").await
}

#[tokio::test]
async fn unverified_email_is_refused() -> Result<()> {
    refused_token(serde_json::json!({}), "unverified-carol", "not verified").await
}

/// The same session behaviour on every backend: sign-in, logout revokes server-side, expiry,
/// and cleanup of expired sessions.
async fn session_matrix(backend: SessionBackend) -> Result<()> {
    let pg = match backend {
        SessionBackend::Postgres => Some(e2e::services::fresh_postgres().await?),
        _ => None,
    };
    let redis = match backend {
        SessionBackend::Redis => Some(e2e::services::fresh_redis().await?),
        _ => None,
    };
    let (provider, server) = server_with_provider(|c| {
        c.session_backend = backend;
        c.session_duration = Duration::from_secs(3);
        c.session_cleanup_interval = Duration::from_secs(1);
        if let Some(pg) = &pg {
            c.database_dsn = Some(secrecy::SecretString::from(pg.url.clone()));
        }
        if let Some(r) = &redis {
            c.redis_addr = Some(secrecy::SecretString::from(r.url.clone()));
        }
    })
    .await?;

    // Logout revokes the session on the server: the old cookie value no longer works.
    let (browser, jar) = sign_in_with_jar(&server, &provider, "alice").await?;
    assert_eq!(me(&server, &browser).await?.0, StatusCode::OK, "{backend:?}");
    let id = server.cookie(&jar, "session_id").unwrap();
    let out = server.send(&browser, Method::POST, "/logout").send().await?;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        server.get_with_cookie("/api/me", "session_id", &id).await?,
        StatusCode::UNAUTHORIZED,
        "{backend:?}"
    );

    // Expiry after SESSION_DURATION, checked on the server (the cookie is replayed by hand).
    let (_, jar) = sign_in_with_jar(&server, &provider, "alice").await?;
    let id = server.cookie(&jar, "session_id").unwrap();
    assert_eq!(
        server.get_with_cookie("/api/me", "session_id", &id).await?,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        server.get_with_cookie("/api/me", "session_id", &id).await?,
        StatusCode::UNAUTHORIZED,
        "{backend:?}"
    );

    // Cleanup: expired sessions are removed from the store.
    tokio::time::sleep(Duration::from_secs(2)).await;
    match backend {
        SessionBackend::Postgres => {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
                .fetch_one(server.app.state.db.pool())
                .await?;
            assert_eq!(n, 0, "expired sessions are deleted every SESSION_CLEANUP_INTERVAL");
        }
        SessionBackend::Redis => {
            let mut conn = redis.as_ref().unwrap().conn.clone();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", apiserver::sessions::DEFAULT_REDIS_PREFIX))
                .query_async(&mut conn)
                .await?;
            let mut live = 0;
            for k in keys {
                let ttl: i64 = redis::cmd("TTL").arg(&k).query_async(&mut conn).await?;
                assert!(ttl > 0, "every session key expires in Redis ({k}: {ttl})");
                live += 1;
            }
            // Sessions of concurrent tests may exist; none of ours outlives its expiry.
            let _ = live;
        }
        SessionBackend::Memory => {} // covered by the store suite (tests/session_stores.rs)
    }
    drop(provider);
    Ok(())
}

#[tokio::test]
async fn sessions_in_memory() -> Result<()> {
    session_matrix(SessionBackend::Memory).await
}

#[tokio::test]
async fn sessions_in_postgres() -> Result<()> {
    session_matrix(SessionBackend::Postgres).await
}

#[tokio::test]
async fn sessions_in_redis() -> Result<()> {
    session_matrix(SessionBackend::Redis).await
}

#[tokio::test]
async fn sign_in_needs_no_dev_mode_login_route() -> Result<()> {
    let (_provider, server) = server_with_provider(|_| {}).await?;
    let resp = server.browser().get(server.url("/dev/login")).send().await?;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "/dev/login exists only in DEV_MODE"
    );
    let b = sign_in(&server, &_provider, "bob@corp.test").await?;
    let id = me(&server, &b).await?.1["user"]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        id.starts_with("bob") && !id.contains('-'),
        "the id is bob + an identity hash: {id}"
    );
    Ok(())
}

/// The `name=value` of the cookie `name` among a response's Set-Cookie headers, and its attributes.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, Vec<String>)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| {
            let mut parts = c.split(';').map(|p| p.trim().to_string());
            let pair = parts.next().unwrap_or_default();
            (pair, parts.collect())
        })
}

/// Issue 15 item 4 (cookie tossing): with COOKIE_SECURE the state and session cookies are
/// `__Host-` cookies (Secure, Path=/, no Domain), which a tenant app on a sibling host cannot set;
/// a cookie under the plain name is not a session.
#[tokio::test]
async fn secure_cookies_are_host_prefixed() -> Result<()> {
    let (provider, server) = server_with_provider(|c| c.cookie_secure = true).await?;
    let client = server.browser();
    let login = client.get(server.url("/login?redirect=/after")).send().await?;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let (state_pair, attrs) = set_cookie(&login, "__Host-oauth_state").expect("a __Host-oauth_state cookie");
    for want in ["Secure", "Path=/", "HttpOnly"] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {attrs:?}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("Domain")), "{attrs:?}");
    assert!(
        set_cookie(&login, "oauth_state").is_none(),
        "no unprefixed state cookie"
    );

    // The cookie jar does not send Secure cookies over http://, so the browser is played by hand.
    let to = login.headers()["location"].to_str()?.to_string();
    let callback = provider.authorize(&to, "alice").await?;
    let done = client.get(&callback).header("cookie", &state_pair).send().await?;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (session_pair, attrs) = set_cookie(&done, "__Host-session_id").expect("a __Host-session_id cookie");
    for want in ["Secure", "Path=/", "HttpOnly"] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {attrs:?}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("Domain")), "{attrs:?}");
    let (_, id) = session_pair.split_once('=').unwrap();
    assert_eq!(
        server.get_with_cookie("/api/me", "__Host-session_id", id).await?,
        StatusCode::OK
    );
    assert_eq!(
        server.get_with_cookie("/api/me", "session_id", id).await?,
        StatusCode::UNAUTHORIZED,
        "the unprefixed name (settable by a tenant app) is not read"
    );
    Ok(())
}
