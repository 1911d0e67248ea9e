//! Tests of the test OpenID provider itself (`hack/oidc`, `e2e::oidc`), without the app server: the
//! authorization code flow with PKCE done by hand, the claims of the ID token, single-use codes
//! and the rewrite of the next ID token.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::oidc::{OidcClient, OidcProvider};
use rand::RngCore;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "k8s-scheduler-test";
const CLIENT_SECRET: &str = "test-secret-not-real";
const REDIRECT_URI: &str = "http://127.0.0.1:9/auth/callback";

async fn provider() -> Result<OidcProvider> {
    OidcProvider::start(&[OidcClient {
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        redirect_uris: vec![REDIRECT_URI.to_owned()],
    }])
    .await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

async fn discovery(provider: &OidcProvider) -> Result<Value> {
    let url = format!("{}/.well-known/openid-configuration", provider.issuer());
    let response = http().get(&url).send().await?;
    ensure!(response.status() == StatusCode::OK, "GET {url}: {}", response.status());
    Ok(response.json().await?)
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// One authorization request: PKCE verifier, state and nonce.
struct Request {
    verifier: String,
    state: String,
    nonce: String,
}

impl Request {
    fn new() -> Self {
        Request {
            verifier: random_b64(32),
            state: random_b64(16),
            nonce: random_b64(16),
        }
    }

    fn url(&self, provider: &OidcProvider) -> Result<String> {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()));
        let url = Url::parse_with_params(
            &format!("{}/auth", provider.issuer()),
            [
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid email"),
                ("state", self.state.as_str()),
                ("nonce", self.nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )?;
        Ok(url.into())
    }

    /// Signs in as `login` and returns the code of the callback, checking its state.
    async fn code(&self, provider: &OidcProvider, login: &str) -> Result<String> {
        let callback = Url::parse(&provider.authorize(&self.url(provider)?, login).await?)?;
        ensure!(
            callback.as_str().starts_with(REDIRECT_URI),
            "callback {callback} is not the redirect URI"
        );
        let param = |name: &str| {
            callback
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        ensure!(param("error").is_none(), "callback carries an error: {callback}");
        ensure!(
            param("state").as_deref() == Some(self.state.as_str()),
            "state of {callback}"
        );
        param("code").with_context(|| format!("no code in {callback}"))
    }
}

enum ClientAuth {
    Basic,
    Post,
}

/// Exchanges a code at the token endpoint; returns the status and the JSON body.
async fn exchange(
    provider: &OidcProvider,
    code: &str,
    verifier: &str,
    auth: ClientAuth,
) -> Result<(StatusCode, Value)> {
    let token_endpoint = discovery(provider).await?["token_endpoint"]
        .as_str()
        .context("token_endpoint")?
        .to_owned();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ];
    let request = match auth {
        ClientAuth::Basic => http().post(&token_endpoint).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)),
        ClientAuth::Post => {
            form.extend([("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
            http().post(&token_endpoint)
        }
    };
    let response = request.form(&form).send().await?;
    let status = response.status();
    let body = response.text().await?;
    let json = serde_json::from_str(&body).with_context(|| format!("token response {status} is not JSON: {body}"))?;
    Ok((status, json))
}

/// The payload of a JWT (signature not checked: these tests are about the claims).
fn jwt_payload(jwt: &str) -> Result<Value> {
    let payload = jwt.split('.').nth(1).context("JWT without payload")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

/// A full sign-in as `login`: the claims of the ID token.
async fn id_token_claims(provider: &OidcProvider, login: &str, auth: ClientAuth) -> Result<(Request, Value)> {
    let request = Request::new();
    let code = request.code(provider, login).await?;
    let (status, body) = exchange(provider, &code, &request.verifier, auth).await?;
    ensure!(status == StatusCode::OK, "token exchange: {status} {body}");
    let claims = jwt_payload(body["id_token"].as_str().context("no id_token")?)?;
    Ok((request, claims))
}

#[tokio::test]
async fn discovery_document_names_issuer_and_keys() -> Result<()> {
    let _turn = e2e::suite::turn("oidc_provider").await;
    let provider = provider().await?;
    let doc = discovery(&provider).await?;
    assert_eq!(doc["issuer"], provider.issuer());
    assert!(
        provider.issuer().starts_with("http://127.0.0.1:"),
        "{}",
        provider.issuer()
    );
    let jwks_uri = doc["jwks_uri"].as_str().context("jwks_uri")?;
    let jwks: Value = http().get(jwks_uri).send().await?.json().await?;
    let keys = jwks["keys"].as_array().context("keys")?;
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0].get("d").is_none(), "the JWKS must not publish the private key");
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    let auth_methods = doc["token_endpoint_auth_methods_supported"].to_string();
    assert!(auth_methods.contains("client_secret_basic") && auth_methods.contains("client_secret_post"));
    Ok(())
}

#[tokio::test]
async fn code_flow_yields_id_token_with_email_and_code_is_single_use() -> Result<()> {
    let _turn = e2e::suite::turn("oidc_provider").await;
    let provider = provider().await?;
    let request = Request::new();
    let code = request.code(&provider, "alice").await?;

    let (status, body) = exchange(&provider, &code, &request.verifier, ClientAuth::Basic).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = jwt_payload(body["id_token"].as_str().context("no id_token")?)?;
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["nonce"], request.nonce.as_str());

    let (status, body) = exchange(&provider, &code, &request.verifier, ClientAuth::Basic).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn unverified_login_and_client_secret_post() -> Result<()> {
    let _turn = e2e::suite::turn("oidc_provider").await;
    let provider = provider().await?;
    let (_, claims) = id_token_claims(&provider, "unverified-bob", ClientAuth::Post).await?;
    assert_eq!(claims["email"], "unverified-bob@example.com");
    assert_eq!(claims["email_verified"], false);
    let (_, claims) = id_token_claims(&provider, "carol@corp.test", ClientAuth::Post).await?;
    assert_eq!(claims["email"], "carol@corp.test");
    assert_eq!(claims["email_verified"], true);
    Ok(())
}

#[tokio::test]
async fn pkce_is_required_and_checked() -> Result<()> {
    let _turn = e2e::suite::turn("oidc_provider").await;
    let provider = provider().await?;
    let url = Url::parse_with_params(
        &format!("{}/auth", provider.issuer()),
        [
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid email"),
            ("state", "s"),
        ],
    )?;
    let callback = provider.authorize(url.as_str(), "alice").await?;
    assert!(callback.contains("error=invalid_request"), "{callback}");

    let request = Request::new();
    let code = request.code(&provider, "alice").await?;
    let (status, body) = exchange(&provider, &code, &random_b64(32), ClientAuth::Basic).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn next_token_rewrite_applies_once() -> Result<()> {
    let _turn = e2e::suite::turn("oidc_provider").await;
    let provider = provider().await?;
    provider.set_next_token(serde_json::json!({ "aud": "x" })).await?;
    let (request, claims) = id_token_claims(&provider, "alice", ClientAuth::Basic).await?;
    assert_eq!(claims["aud"], "x");
    assert_eq!(claims["nonce"], request.nonce.as_str(), "only aud is rewritten");
    assert_eq!(claims["email"], "alice@example.com");

    let (_, claims) = id_token_claims(&provider, "alice", ClientAuth::Basic).await?;
    assert_eq!(claims["aud"], CLIENT_ID, "the rewrite applies to one token only");

    provider
        .set_next_token(serde_json::json!({ "exp_offset_seconds": -3600 }))
        .await?;
    let (_, claims) = id_token_claims(&provider, "alice", ClientAuth::Basic).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let exp = claims["exp"].as_i64().context("exp")?;
    let iat = claims["iat"].as_i64().context("iat")?;
    assert!(exp < now - 2000, "exp {exp} is not well in the past (now {now})");
    assert!(iat < now - 3000, "iat {iat} is not shifted (now {now})");
    assert_eq!(claims["aud"], CLIENT_ID);
    Ok(())
}

#[tokio::test]
async fn a_provider_that_cannot_start_fails_with_its_stderr() -> Result<()> {
    let _turn = e2e::suite::turn("oidc_provider").await;
    let err = OidcProvider::start(&[OidcClient {
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        redirect_uris: vec![],
    }])
    .await
    .expect_err("a client without redirect URIs is refused");
    let message = format!("{err:#}");
    assert!(message.contains("exited before listening"), "{message}");
    assert!(message.contains("redirect_uris must be a non-empty array"), "{message}");
    Ok(())
}
