//! SECRETS_BACKEND=aws: AWS Secrets Manager in AWS_REGION with the default credential chain
//! (instance role, environment, ~/.aws/credentials). One Secrets Manager secret per scope, named
//! like the Vault paths (`users/{userId}/deployments/{name}`, ...), whose SecretString is a JSON
//! object of keys and values (what External Secrets `dataFrom.extract` reads); the per-key
//! descriptions are a JSON object in the secret's Description. AWS_ENDPOINT_URL overrides the
//! endpoint (tests use moto on loopback).

use std::collections::BTreeMap;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

use super::{Scope, SecretError, SecretInfo, SecretResult, SecretStore, Values, remote_path};
use crate::config::Config;

/// AWS Secrets Manager.
pub struct AwsStore {
    client: Client,
    /// Most scopes (Secrets Manager secrets) one listing reads (SECRETS_MAX_PER_USER).
    max_scopes: usize,
}

fn backend(e: impl std::fmt::Display) -> SecretError {
    SecretError::Backend(format!("AWS Secrets Manager: {e}"))
}

fn err_text<E: std::error::Error + 'static>(e: &aws_sdk_secretsmanager::error::SdkError<E>) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

impl AwsStore {
    /// From AWS_REGION (and AWS_ENDPOINT_URL), credentials from the default chain.
    pub async fn from_config(config: &Config) -> anyhow::Result<AwsStore> {
        let region = config
            .aws_region
            .clone()
            .context("AWS_REGION is required when SECRETS_BACKEND=aws")?;
        Ok(AwsStore::new(&region, config.aws_endpoint_url.as_ref().map(|u| u.as_str()), None).await)
    }

    /// A store in `region`, at `endpoint` when given, with static credentials when given.
    pub async fn new(region: &str, endpoint: Option<&str>, static_credentials: Option<(&str, &str)>) -> AwsStore {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .http_client(http);
        if let Some(e) = endpoint {
            loader = loader.endpoint_url(e.trim_end_matches('/'));
        }
        if let Some((id, secret)) = static_credentials {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "static"));
        }
        AwsStore {
            client: Client::new(&loader.load().await),
            max_scopes: super::DEFAULT_MAX_PER_USER,
        }
    }

    /// Reads at most `n` scopes per listing (SECRETS_MAX_PER_USER).
    pub fn with_max_scopes(mut self, n: usize) -> AwsStore {
        self.max_scopes = n.max(1);
        self
    }

    /// The JSON map of a secret, and its descriptions; None when it does not exist.
    async fn read(&self, name: &str) -> SecretResult<Option<(Values, BTreeMap<String, String>)>> {
        let got = match self.client.get_secret_value().secret_id(name).send().await {
            Ok(v) => v,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(backend(format!("reading {name}: {}", err_text(&e)))),
        };
        let values: Values = serde_json::from_str(got.secret_string().unwrap_or("{}"))
            .map_err(|_| backend(format!("{name} is not a JSON object of strings")))?;
        let described = match self.client.describe_secret().secret_id(name).send().await {
            Ok(d) => d
                .description()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
            Err(e) => return Err(backend(format!("describing {name}: {}", err_text(&e)))),
        };
        Ok(Some((values, described)))
    }

    async fn write(
        &self,
        name: &str,
        exists: bool,
        values: &Values,
        descriptions: &BTreeMap<String, String>,
    ) -> SecretResult<()> {
        if values.is_empty() {
            if exists {
                self.client
                    .delete_secret()
                    .secret_id(name)
                    .force_delete_without_recovery(true)
                    .send()
                    .await
                    .map_err(|e| backend(format!("deleting {name}: {}", err_text(&e))))?;
            }
            return Ok(());
        }
        let body = serde_json::to_string(values).map_err(backend)?;
        let description = serde_json::to_string(descriptions).map_err(backend)?;
        if exists {
            self.client
                .update_secret()
                .secret_id(name)
                .secret_string(body)
                .description(description)
                .send()
                .await
                .map_err(|e| backend(format!("writing {name}: {}", err_text(&e))))?;
        } else {
            self.client
                .create_secret()
                .name(name)
                .secret_string(body)
                .description(description)
                .send()
                .await
                .map_err(|e| backend(format!("creating {name}: {}", err_text(&e))))?;
        }
        Ok(())
    }

    /// Names and change times of the secrets under `prefix`: pages of 100, and no further page
    /// once `max_scopes` names are known.
    async fn names(&self, prefix: &str) -> SecretResult<Vec<(String, i64)>> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            if out.len() >= self.max_scopes {
                tracing::warn!(
                    prefix,
                    limit = self.max_scopes,
                    "more AWS secrets than SECRETS_MAX_PER_USER; the rest is not read"
                );
                break;
            }
            let filter = Filter::builder().key(FilterNameStringType::Name).values(prefix).build();
            let page = self
                .client
                .list_secrets()
                .filters(filter)
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| backend(format!("listing {prefix}: {}", err_text(&e))))?;
            for s in page.secret_list() {
                if let Some(n) = s.name().filter(|n| n.starts_with(prefix)) {
                    let changed = s
                        .last_changed_date()
                        .or(s.created_date())
                        .map(|d| d.secs())
                        .unwrap_or(0);
                    out.push((n.to_string(), changed));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl SecretStore for AwsStore {
    async fn put(&self, owner: &str, scope: &Scope, key: &str, value: &str, description: &str) -> SecretResult<bool> {
        let name = remote_path(owner, scope);
        let existing = self.read(&name).await?;
        let exists = existing.is_some();
        let (mut values, mut descriptions) = existing.unwrap_or_default();
        let created = values.insert(key.to_string(), value.to_string()).is_none();
        descriptions.insert(key.to_string(), description.to_string());
        self.write(&name, exists, &values, &descriptions).await?;
        Ok(created)
    }

    async fn values(&self, owner: &str, scope: &Scope) -> SecretResult<Values> {
        Ok(self
            .read(&remote_path(owner, scope))
            .await?
            .map(|(v, _)| v)
            .unwrap_or_default())
    }

    async fn list(&self, owner: &str) -> SecretResult<Vec<SecretInfo>> {
        let prefix = format!("users/{owner}/");
        let scopes: Vec<(Scope, String, i64)> = self
            .names(&prefix)
            .await?
            .into_iter()
            .filter_map(|(name, changed)| Some((Scope::from_path(&name[prefix.len()..])?, name, changed)))
            .collect();
        // Two calls per scope (value and description), scopes bounded by SECRETS_MAX_PER_USER and
        // read LIST_CONCURRENCY at a time.
        let per_scope = super::bounded(
            "AWS secrets",
            scopes,
            self.max_scopes,
            |(scope, name, changed)| async move {
                let Some((values, descriptions)) = self.read(&name).await? else {
                    return Ok(vec![]);
                };
                Ok(SecretInfo::of_scope(
                    &scope,
                    values.keys(),
                    |k| descriptions.get(k).cloned(),
                    changed,
                ))
            },
        )
        .await?;
        let mut out: Vec<SecretInfo> = per_scope.into_iter().flatten().collect();
        out.sort_by(|a, b| (&a.scope, &a.deployment, &a.name).cmp(&(&b.scope, &b.deployment, &b.name)));
        Ok(out)
    }

    async fn delete(&self, owner: &str, scope: &Scope, key: &str) -> SecretResult<bool> {
        let name = remote_path(owner, scope);
        let Some((mut values, mut descriptions)) = self.read(&name).await? else {
            return Ok(false);
        };
        if values.remove(key).is_none() {
            return Ok(false);
        }
        descriptions.remove(key);
        self.write(&name, true, &values, &descriptions).await?;
        Ok(true)
    }

    async fn delete_deployment(&self, owner: &str, deployment: &str) -> SecretResult<usize> {
        let own = remote_path(owner, &Scope::Deployment(deployment.into()));
        let mut n = 0;
        for (name, _) in self.names(&own).await? {
            if name == own || name.starts_with(&format!("{own}/services/")) {
                if let Some((values, _)) = self.read(&name).await? {
                    n += values.len();
                }
                self.write(&name, true, &Values::new(), &BTreeMap::new()).await?;
            }
        }
        Ok(n)
    }
}
