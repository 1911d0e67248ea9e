//! SECRETS_BACKEND=vault: HashiCorp Vault (or OpenBao) KV v2 through `vaultrs`, at VAULT_ADDR,
//! mount VAULT_MOUNT_PATH. One KV secret per scope (`users/{userId}/deployments/{name}`, ...)
//! holding the scope's keys and values, so that an External Secrets `dataFrom.extract` of the
//! scopes in merge order yields the merged values. Descriptions live in the KV custom metadata.
//!
//! The token comes from VAULT_TOKEN_FILE (preferred: Vault Agent keeps it fresh) or VAULT_TOKEN.
//! The file is re-read when it changes and whenever Vault refuses a call (403).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use vaultrs::api::kv2::requests::SetSecretMetadataRequest;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use vaultrs::kv2;

use super::{Scope, SecretError, SecretInfo, SecretResult, SecretStore, Values, remote_path};
use crate::config::Config;

/// Where the token comes from.
#[derive(Clone)]
enum TokenSource {
    Static(SecretString),
    File(PathBuf),
}

struct Cached {
    client: std::sync::Arc<VaultClient>,
    file_mtime: Option<SystemTime>,
}

/// Vault KV v2.
pub struct VaultStore {
    addr: String,
    mount: String,
    token: TokenSource,
    cached: Mutex<Option<Cached>>,
    /// Most scopes one listing visits (SECRETS_MAX_PER_USER).
    max_scopes: usize,
}

fn backend(e: impl std::fmt::Display) -> SecretError {
    SecretError::Backend(format!("Vault: {e}"))
}

fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 404, .. })
}

impl VaultStore {
    /// From VAULT_ADDR, VAULT_MOUNT_PATH and VAULT_TOKEN_FILE or VAULT_TOKEN.
    pub fn from_config(config: &Config) -> anyhow::Result<VaultStore> {
        let addr = config
            .vault_addr
            .as_ref()
            .context("VAULT_ADDR is required when SECRETS_BACKEND=vault")?;
        let token = match (&config.vault_token_file, &config.vault_token) {
            (Some(f), _) => TokenSource::File(f.clone()),
            (None, Some(t)) => TokenSource::Static(t.clone()),
            (None, None) => anyhow::bail!("VAULT_TOKEN_FILE or VAULT_TOKEN is required when SECRETS_BACKEND=vault"),
        };
        Ok(VaultStore::new(addr.as_str(), &config.vault_mount_path, token))
    }

    /// A store at `addr` with a static token (tests) or a token file.
    pub fn with_token(addr: &str, mount: &str, token: &str) -> VaultStore {
        VaultStore::new(addr, mount, TokenSource::Static(SecretString::from(token.to_string())))
    }

    /// A store reading its token from `path`.
    pub fn with_token_file(addr: &str, mount: &str, path: PathBuf) -> VaultStore {
        VaultStore::new(addr, mount, TokenSource::File(path))
    }

    fn new(addr: &str, mount: &str, token: TokenSource) -> VaultStore {
        VaultStore {
            addr: addr.trim_end_matches('/').to_string(),
            mount: mount.trim_matches('/').to_string(),
            token,
            cached: Mutex::new(None),
            max_scopes: super::DEFAULT_MAX_PER_USER,
        }
    }

    /// Visits at most `n` scopes per listing (SECRETS_MAX_PER_USER).
    pub fn with_max_scopes(mut self, n: usize) -> VaultStore {
        self.max_scopes = n.max(1);
        self
    }

    /// The client, rebuilt when the token file changed (or `force`).
    fn client(&self, force: bool) -> SecretResult<std::sync::Arc<VaultClient>> {
        let mtime = match &self.token {
            TokenSource::File(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok(),
            TokenSource::Static(_) => None,
        };
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached.as_ref()
            && !force
            && c.file_mtime == mtime
        {
            return Ok(c.client.clone());
        }
        let token = match &self.token {
            TokenSource::Static(t) => t.expose_secret().to_string(),
            TokenSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| backend(format!("reading VAULT_TOKEN_FILE {}: {e}", p.display())))?
                .trim()
                .to_string(),
        };
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.addr)
            .token(token)
            .build()
            .map_err(|e| backend(format!("VAULT_ADDR {}: {e}", self.addr)))?;
        let client = std::sync::Arc::new(VaultClient::new(settings).map_err(backend)?);
        *cached = Some(Cached {
            client: client.clone(),
            file_mtime: mtime,
        });
        Ok(client)
    }

    /// Runs `op`, retrying once with a re-read token when Vault answers 403. The outer error is
    /// a failure to build the client; the inner one is Vault's answer.
    async fn call<T, F, Fut>(&self, op: F) -> SecretResult<Result<T, ClientError>>
    where
        F: Fn(std::sync::Arc<VaultClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        match op(self.client(false)?).await {
            Err(ClientError::APIError { code: 403, .. }) => Ok(op(self.client(true)?).await),
            other => Ok(other),
        }
    }

    async fn read_map(&self, path: &str) -> SecretResult<Values> {
        match self
            .call(|c| async move { kv2::read::<BTreeMap<String, String>>(c.as_ref(), &self.mount, path).await })
            .await?
        {
            Ok(m) => Ok(m),
            Err(e) if not_found(&e) => Ok(Values::new()),
            Err(e) => Err(backend(format!("reading {path}: {e}"))),
        }
    }

    async fn descriptions(&self, path: &str) -> SecretResult<(HashMap<String, String>, String)> {
        match self
            .call(|c| async move { kv2::read_metadata(c.as_ref(), &self.mount, path).await })
            .await?
        {
            Ok(m) => Ok((m.custom_metadata.unwrap_or_default(), m.updated_time)),
            Err(e) if not_found(&e) => Ok((HashMap::new(), String::new())),
            Err(e) => Err(backend(format!("reading the metadata of {path}: {e}"))),
        }
    }

    async fn write(&self, path: &str, values: &Values, descriptions: HashMap<String, String>) -> SecretResult<()> {
        if values.is_empty() {
            return match self
                .call(|c| async move { kv2::delete_metadata(c.as_ref(), &self.mount, path).await })
                .await?
            {
                Ok(()) => Ok(()),
                Err(e) if not_found(&e) => Ok(()),
                Err(e) => Err(backend(format!("deleting {path}: {e}"))),
            };
        }
        self.call(|c| async move { kv2::set(c.as_ref(), &self.mount, path, values).await.map(|_| ()) })
            .await?
            .map_err(|e| backend(format!("writing {path}: {e}")))?;
        let descriptions = &descriptions;
        self.call(|c| async move {
            let mut opts = SetSecretMetadataRequest::builder();
            // Vault refuses empty custom-metadata values: keep only real descriptions.
            let described = descriptions
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()));
            opts.custom_metadata(described.collect::<HashMap<_, _>>());
            kv2::set_metadata(c.as_ref(), &self.mount, path, Some(&mut opts)).await
        })
        .await?
        .map_err(|e| backend(format!("writing the metadata of {path}: {e}")))
    }

    async fn list_dir(&self, path: &str) -> SecretResult<Vec<String>> {
        match self
            .call(|c| async move { kv2::list(c.as_ref(), &self.mount, path).await })
            .await?
        {
            Ok(keys) => Ok(keys),
            Err(e) if not_found(&e) => Ok(vec![]),
            Err(e) => Err(backend(format!("listing {path}: {e}"))),
        }
    }

    /// Every scope path (relative to `users/{owner}/`) that holds a secret. Calls: one LIST of
    /// the user, one of `templates/`, one of `deployments/`, and one per deployment with
    /// service-scoped secrets, at most `max_scopes` of those and [`super::LIST_CONCURRENCY`] at
    /// once; at most `max_scopes` scopes are returned.
    async fn scopes(&self, owner: &str) -> SecretResult<Vec<Scope>> {
        let base = format!("users/{owner}");
        let mut out = vec![];
        for entry in self.list_dir(&base).await? {
            match entry.as_str() {
                "secrets" => out.push(Scope::User),
                "templates/" => {
                    for t in self.list_dir(&format!("{base}/templates")).await? {
                        if !t.ends_with('/') {
                            out.extend(Scope::from_path(&format!("templates/{t}")));
                        }
                    }
                }
                "deployments/" => {
                    let mut with_services = vec![];
                    for d in self.list_dir(&format!("{base}/deployments")).await? {
                        match d.strip_suffix('/') {
                            None => out.extend(Scope::from_path(&format!("deployments/{d}"))),
                            // Only names that are valid scopes lead to further calls.
                            Some(d) if crds::is_dns_label(d, 63) => with_services.push(d.to_string()),
                            Some(_) => {}
                        }
                    }
                    let base = &base;
                    let services =
                        super::bounded("Vault deployments", with_services, self.max_scopes, |d| async move {
                            let listed = self.list_dir(&format!("{base}/deployments/{d}/services")).await?;
                            Ok(listed
                                .into_iter()
                                .filter_map(|s| Scope::from_path(&format!("deployments/{d}/services/{s}")))
                                .collect::<Vec<_>>())
                        })
                        .await?;
                    out.extend(services.into_iter().flatten());
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        if out.len() > self.max_scopes {
            tracing::warn!(
                owner,
                found = out.len(),
                limit = self.max_scopes,
                "more Vault scopes than SECRETS_MAX_PER_USER"
            );
            out.truncate(self.max_scopes);
        }
        Ok(out)
    }
}

#[async_trait]
impl SecretStore for VaultStore {
    async fn put(&self, owner: &str, scope: &Scope, key: &str, value: &str, description: &str) -> SecretResult<bool> {
        let path = remote_path(owner, scope);
        let mut values = self.read_map(&path).await?;
        let (mut descriptions, _) = self.descriptions(&path).await?;
        let created = values.insert(key.to_string(), value.to_string()).is_none();
        descriptions.insert(key.to_string(), description.to_string());
        descriptions.retain(|k, _| values.contains_key(k));
        self.write(&path, &values, descriptions).await?;
        Ok(created)
    }

    async fn values(&self, owner: &str, scope: &Scope) -> SecretResult<Values> {
        self.read_map(&remote_path(owner, scope)).await
    }

    async fn list(&self, owner: &str) -> SecretResult<Vec<SecretInfo>> {
        // Two reads per scope (keys and descriptions), scopes bounded by SECRETS_MAX_PER_USER and
        // read LIST_CONCURRENCY at a time: one listing makes at most ~3 × the cap calls.
        let scopes = self.scopes(owner).await?;
        let per_scope = super::bounded("Vault scopes", scopes, self.max_scopes, |scope| async move {
            let path = remote_path(owner, &scope);
            let values = self.read_map(&path).await?;
            let (descriptions, updated) = self.descriptions(&path).await?;
            let updated = updated
                .parse::<k8s_openapi::jiff::Timestamp>()
                .map(|t| t.as_second())
                .unwrap_or(0);
            Ok(SecretInfo::of_scope(
                &scope,
                values.keys(),
                |k| descriptions.get(k).cloned(),
                updated,
            ))
        })
        .await?;
        Ok(per_scope.into_iter().flatten().collect())
    }

    async fn delete(&self, owner: &str, scope: &Scope, key: &str) -> SecretResult<bool> {
        let path = remote_path(owner, scope);
        let mut values = self.read_map(&path).await?;
        if values.remove(key).is_none() {
            return Ok(false);
        }
        let (mut descriptions, _) = self.descriptions(&path).await?;
        descriptions.remove(key);
        self.write(&path, &values, descriptions).await?;
        Ok(true)
    }

    async fn delete_deployment(&self, owner: &str, deployment: &str) -> SecretResult<usize> {
        let mut n = 0;
        for scope in self.scopes(owner).await? {
            let ours = match &scope {
                Scope::Deployment(d) => d == deployment,
                Scope::Service { deployment: d, .. } => d == deployment,
                _ => false,
            };
            if ours {
                let path = remote_path(owner, &scope);
                n += self.read_map(&path).await?.len();
                self.write(&path, &Values::new(), HashMap::new()).await?;
            }
        }
        Ok(n)
    }
}
