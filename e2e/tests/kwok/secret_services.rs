//! Smoke tests of the secret stores `hack/test` starts on loopback: a Vault dev server (KV v2 at
//! `secret/`, `E2E_VAULT_ADDR` and `E2E_VAULT_TOKEN`) and moto's AWS Secrets Manager
//! (`E2E_AWS_ENDPOINT`). Each writes a secret over the real HTTP API and reads it back. They fail,
//! never skip, when the services are not there.

use anyhow::{Context, Result, ensure};
use e2e::unique_name;
use serde_json::{Value, json};

fn required_env(name: &str) -> Result<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).with_context(|| {
        format!("{name} is not set: run the tests with `hack/test`, which starts Vault and moto on loopback")
    })
}

/// Sends a request and returns the status and the JSON body (Null when empty).
async fn send(req: reqwest::RequestBuilder, what: &str) -> Result<(reqwest::StatusCode, Value)> {
    let resp = req
        .send()
        .await
        .with_context(|| format!("{what}: request failed; is the server running?"))?;
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("{what}: reading the body"))?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("{what}: {status}, body is not JSON: {text}"))?
    };
    Ok((status, body))
}

#[tokio::test]
async fn vault_kv_v2_write_then_read() -> Result<()> {
    let _turn = e2e::suite::turn("secret_services").await;
    let addr = required_env("E2E_VAULT_ADDR")?;
    let token = required_env("E2E_VAULT_TOKEN")?;
    let http = reqwest::Client::new();

    let (status, health) = send(http.get(format!("{addr}/v1/sys/health")), "GET /v1/sys/health").await?;
    ensure!(status == 200, "Vault health: {status} {health}");
    ensure!(
        health["sealed"] == false && health["initialized"] == true,
        "Vault health: {health}"
    );

    let path = format!("users/{}/deployments/app/DATABASE_URL", unique_name("smoke"));
    let url = format!("{addr}/v1/secret/data/{path}");
    let data = json!({"value": "postgres://u:p@db/app", "note": "é ✓"});
    let (status, written) = send(
        http.post(&url)
            .header("X-Vault-Token", &token)
            .json(&json!({ "data": data })),
        "KV v2 write",
    )
    .await?;
    ensure!(status == 200, "KV v2 write {url}: {status} {written}");
    ensure!(written["data"]["version"] == 1, "first write is version 1: {written}");

    let (status, read) = send(http.get(&url).header("X-Vault-Token", &token), "KV v2 read").await?;
    ensure!(status == 200, "KV v2 read {url}: {status} {read}");
    ensure!(read["data"]["data"] == data, "read back {read}, wrote {data}");
    ensure!(read["data"]["metadata"]["version"] == 1, "metadata: {read}");

    // The token is really checked.
    let (status, denied) = send(
        http.get(&url).header("X-Vault-Token", "wrong-token"),
        "KV v2 read, bad token",
    )
    .await?;
    ensure!(status == 403, "a wrong token must be refused: {status} {denied}");
    Ok(())
}

/// A request to moto's Secrets Manager JSON API. moto accepts any credentials, but wants a
/// SigV4-shaped Authorization header to find the region and service.
fn secretsmanager(http: &reqwest::Client, endpoint: &str, action: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(format!("{endpoint}/"))
        .header("X-Amz-Target", format!("secretsmanager.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=host, Signature=x",
        )
        .body(body.to_string())
}

#[tokio::test]
async fn aws_secrets_manager_create_then_get() -> Result<()> {
    let _turn = e2e::suite::turn("secret_services").await;
    let endpoint = required_env("E2E_AWS_ENDPOINT")?;
    let http = reqwest::Client::new();
    let name = format!("users/{}/deployments/app/API_KEY", unique_name("smoke"));
    let value = "s3cr3t ✓";

    let (status, created) = send(
        secretsmanager(
            &http,
            &endpoint,
            "CreateSecret",
            &json!({"Name": name, "SecretString": value}),
        ),
        "CreateSecret",
    )
    .await?;
    ensure!(status == 200, "CreateSecret: {status} {created}");
    ensure!(created["Name"] == name.as_str(), "CreateSecret answer: {created}");
    let arn = created["ARN"].as_str().context("CreateSecret answer has no ARN")?;
    ensure!(arn.starts_with("arn:aws:secretsmanager:us-east-1:"), "ARN {arn}");

    let (status, got) = send(
        secretsmanager(&http, &endpoint, "GetSecretValue", &json!({"SecretId": name})),
        "GetSecretValue",
    )
    .await?;
    ensure!(status == 200, "GetSecretValue: {status} {got}");
    ensure!(got["SecretString"] == value, "read back {got}");
    ensure!(got["ARN"] == arn, "same ARN: {got}");

    let (status, missing) = send(
        secretsmanager(
            &http,
            &endpoint,
            "GetSecretValue",
            &json!({"SecretId": format!("{name}-missing")}),
        ),
        "GetSecretValue (missing)",
    )
    .await?;
    // AWS answers 400, moto 404: both are the client error ResourceNotFoundException.
    ensure!(
        status.is_client_error(),
        "a missing secret must be an error: {status} {missing}"
    );
    ensure!(
        missing["__type"]
            .as_str()
            .unwrap_or_default()
            .contains("ResourceNotFoundException"),
        "error type: {missing}"
    );
    Ok(())
}
