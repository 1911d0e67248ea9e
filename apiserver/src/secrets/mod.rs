//! Secret values: one [`SecretStore`] trait, three backends (SECRETS_BACKEND):
//! - [`database`]: AES-256-GCM in the server's database (PostgreSQL or SQLite);
//! - [`vault`]: HashiCorp Vault / OpenBao KV v2;
//! - [`aws`]: AWS Secrets Manager.
//!
//! A secret belongs to a user and a [`Scope`]: user-wide, a template, a deployment, or one service
//! of a deployment. When a deployment runs, values are merged in that order, later wins: user, then
//! template, then deployment; service-scoped values override them for that service only.
//! Remote layout (Vault paths, AWS secret names), one key/value map per scope:
//! `users/{userId}/secrets`, `users/{userId}/templates/{name}`,
//! `users/{userId}/deployments/{name}`, `users/{userId}/deployments/{name}/services/{svc}`.
//! Names are validated ([`validate_key`], DNS labels for scope names) so no value can leave its
//! owner's prefix. Values are write-only through the API: listings carry names, never values.

pub mod aws;
pub mod database;
pub mod vault;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{Config, SecretsBackend};
use crate::db::Db;

/// Where a secret applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every deployment of the user.
    User,
    /// Deployments made from this template.
    Template(String),
    /// One deployment.
    Deployment(String),
    /// One service of one deployment.
    Service {
        /// The deployment.
        deployment: String,
        /// The service.
        service: String,
    },
}

impl Scope {
    /// The scope's path under `users/{userId}/` (also its key in the database).
    pub fn path(&self) -> String {
        match self {
            Scope::User => "secrets".into(),
            Scope::Template(t) => format!("templates/{t}"),
            Scope::Deployment(d) => format!("deployments/{d}"),
            Scope::Service { deployment, service } => format!("deployments/{deployment}/services/{service}"),
        }
    }

    /// Parses [`Scope::path`].
    pub fn from_path(path: &str) -> Option<Scope> {
        let parts: Vec<&str> = path.split('/').collect();
        let scope = match parts.as_slice() {
            ["secrets"] => Scope::User,
            ["templates", t] => Scope::Template(t.to_string()),
            ["deployments", d] => Scope::Deployment(d.to_string()),
            ["deployments", d, "services", s] => Scope::Service {
                deployment: d.to_string(),
                service: s.to_string(),
            },
            _ => return None,
        };
        scope.validate().ok()?;
        Some(scope)
    }

    /// Checks the names in the scope (DNS labels).
    pub fn validate(&self) -> Result<(), String> {
        let names: Vec<&str> = match self {
            Scope::User => vec![],
            Scope::Template(t) | Scope::Deployment(t) => vec![t],
            Scope::Service { deployment, service } => vec![deployment, service],
        };
        for n in names {
            if !crds::is_dns_label(n, 63) {
                return Err(format!(
                    "{n:?} is not a valid name (lower-case letters, digits and dashes)"
                ));
            }
        }
        Ok(())
    }

    /// The wire name of the kind of scope.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Template(_) => "template",
            Scope::Deployment(_) => "deployment",
            Scope::Service { .. } => "service",
        }
    }
}

/// Checks a secret key: an environment variable name.
pub fn validate_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let ok = key.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "secret name {key:?} must match ^[A-Za-z_][A-Za-z0-9_]*$ (at most 128 characters)"
        ))
    }
}

/// The remote path of a user's scope: `users/{owner}/{scope path}`.
pub fn remote_path(owner: &str, scope: &Scope) -> String {
    format!("users/{owner}/{}", scope.path())
}

/// A secret as listed: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    /// user, template, deployment or service.
    pub scope: String,
    /// Template of a template-scoped secret.
    pub template: Option<String>,
    /// Deployment of a deployment- or service-scoped secret.
    pub deployment: Option<String>,
    /// Service of a service-scoped secret.
    pub service: Option<String>,
    /// The key (environment variable name).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// When it was last written (RFC 3339).
    pub updated_at: String,
}

impl SecretInfo {
    /// A listing entry.
    pub fn new(scope: &Scope, name: &str, description: &str, updated_at_unix: i64) -> SecretInfo {
        let (template, deployment, service) = match scope {
            Scope::User => (None, None, None),
            Scope::Template(t) => (Some(t.clone()), None, None),
            Scope::Deployment(d) => (None, Some(d.clone()), None),
            Scope::Service { deployment, service } => (None, Some(deployment.clone()), Some(service.clone())),
        };
        let updated_at = k8s_openapi::jiff::Timestamp::from_second(updated_at_unix)
            .map(|t| t.to_string())
            .unwrap_or_default();
        SecretInfo {
            scope: scope.kind().into(),
            template,
            deployment,
            service,
            name: name.into(),
            description: description.into(),
            updated_at,
        }
    }

    /// The listing entries of one scope's `keys`, each with the description `describe` gives it
    /// (empty when none), all updated at `updated_at_unix`.
    pub fn of_scope<K: AsRef<str>>(
        scope: &Scope,
        keys: impl IntoIterator<Item = K>,
        describe: impl Fn(&str) -> Option<String>,
        updated_at_unix: i64,
    ) -> Vec<SecretInfo> {
        keys.into_iter()
            .map(|key| {
                let key = key.as_ref();
                SecretInfo::new(scope, key, &describe(key).unwrap_or_default(), updated_at_unix)
            })
            .collect()
    }
}

/// Errors of the secret stores.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A stored value cannot be decrypted (tampered, moved, or an unknown key).
    #[error("secret {0} cannot be decrypted: {1}")]
    Decrypt(String, String),
    /// The backend failed.
    #[error("{0}")]
    Backend(String),
}

/// Result of a store call.
pub type SecretResult<T> = Result<T, SecretError>;

/// Values of one scope, by key.
pub type Values = BTreeMap<String, String>;

/// Where secret values are kept.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Sets a value; true when it was created (not updated).
    async fn put(&self, owner: &str, scope: &Scope, key: &str, value: &str, description: &str) -> SecretResult<bool>;
    /// The values of one scope (for delivery to pods only; never returned by the API).
    async fn values(&self, owner: &str, scope: &Scope) -> SecretResult<Values>;
    /// Every secret of a user, without values.
    async fn list(&self, owner: &str) -> SecretResult<Vec<SecretInfo>>;
    /// Deletes one value; false when there was none.
    async fn delete(&self, owner: &str, scope: &Scope, key: &str) -> SecretResult<bool>;
    /// Deletes a deployment's deployment- and service-scoped values; returns how many.
    async fn delete_deployment(&self, owner: &str, deployment: &str) -> SecretResult<usize>;
    /// How many secrets (keys over all scopes) a user has, for SECRETS_MAX_PER_USER. The remote
    /// backends count with a (bounded) listing; the database counts rows.
    async fn count(&self, owner: &str) -> SecretResult<usize> {
        Ok(self.list(owner).await?.len())
    }
}

/// Most remote calls (Vault, AWS) one listing runs at once.
pub const LIST_CONCURRENCY: usize = 8;

/// Default of SECRETS_MAX_PER_USER, for stores built without a configuration (tests).
pub const DEFAULT_MAX_PER_USER: usize = 200;

/// Runs `f` over the first `limit` of `items`, at most [`LIST_CONCURRENCY`] at a time, results
/// in the order of `items`. A listing of a remote store visits one scope per item; every scope
/// the API writes holds at least one secret, so a user has at most SECRETS_MAX_PER_USER scopes
/// and `limit` is that: the calls of one listing are bounded by the cap, whatever was written to
/// the backend behind the server's back (the rest is left out, with a warning in the log).
pub async fn bounded<T, R, F, Fut>(what: &str, items: Vec<T>, limit: usize, f: F) -> SecretResult<Vec<R>>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = SecretResult<R>>,
{
    use futures::{StreamExt, TryStreamExt};
    if items.len() > limit {
        tracing::warn!(
            what,
            found = items.len(),
            limit,
            "more entries than SECRETS_MAX_PER_USER allows; only the first are read"
        );
    }
    futures::stream::iter(items.into_iter().take(limit).map(f))
        .buffered(LIST_CONCURRENCY)
        .try_collect()
        .await
}

/// The values a deployment's containers get: user, then template, then deployment (later wins),
/// and per service the service-scoped values on top.
pub async fn merged(
    store: &dyn SecretStore,
    owner: &str,
    template: Option<&str>,
    deployment: &str,
    services: &[String],
) -> SecretResult<(Values, BTreeMap<String, Values>)> {
    let mut all = store.values(owner, &Scope::User).await?;
    if let Some(t) = template {
        all.extend(store.values(owner, &Scope::Template(t.into())).await?);
    }
    all.extend(store.values(owner, &Scope::Deployment(deployment.into())).await?);
    let mut per_service = BTreeMap::new();
    for s in services {
        let v = store
            .values(
                owner,
                &Scope::Service {
                    deployment: deployment.into(),
                    service: s.clone(),
                },
            )
            .await?;
        if !v.is_empty() {
            per_service.insert(s.clone(), v);
        }
    }
    Ok((all, per_service))
}

/// The store SECRETS_BACKEND names.
pub async fn build(config: &Config, db: &Db) -> anyhow::Result<Arc<dyn SecretStore>> {
    Ok(match config.secrets_backend {
        SecretsBackend::Database => Arc::new(database::DatabaseStore::new(
            db.clone(),
            database::Keyring::from_config(config)?,
        )),
        SecretsBackend::Vault => {
            Arc::new(vault::VaultStore::from_config(config)?.with_max_scopes(config.secrets_max_per_user as usize))
        }
        SecretsBackend::Aws => Arc::new(
            aws::AwsStore::from_config(config)
                .await?
                .with_max_scopes(config.secrets_max_per_user as usize),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_listings_cap_calls_and_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = AtomicUsize::new(0);
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..1000).collect();
        let out = bounded("test", items, 50, |i| {
            let (calls, in_flight, peak) = (&calls, &in_flight, &peak);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(i * 2)
            }
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 50, "only `limit` items are visited");
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>(), "in order");
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            peak <= LIST_CONCURRENCY && peak > 1,
            "at most {LIST_CONCURRENCY} at once, saw {peak}"
        );
        let failed = bounded("test", vec![1, 2, 3], 10, |i| async move {
            if i == 2 {
                Err(SecretError::Backend("boom".into()))
            } else {
                Ok(i)
            }
        })
        .await;
        assert!(failed.is_err());
    }

    #[test]
    fn keys_and_scopes_cannot_escape_their_prefix() {
        for bad in ["../x", "a/b", "a b", "", "1ABC", "%2e%2e", "A-B", "é"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        for good in ["A", "_x", "REDIS_PASSWORD", "a1"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["..", "a/b", "A", "x%2fy", ""] {
            assert!(Scope::Deployment(bad.into()).validate().is_err(), "{bad}");
        }
        for p in [
            "secrets",
            "templates/web",
            "deployments/web",
            "deployments/web/services/db",
        ] {
            assert_eq!(Scope::from_path(p).unwrap().path(), p);
        }
        assert!(Scope::from_path("deployments/../x").is_none());
        assert!(Scope::from_path("other").is_none());
    }
}
