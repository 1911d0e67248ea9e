//! What the benchmarks share: the HTTP server process they start, and server-side apply of the
//! baseline objects they write directly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use e2e::operator::workspace_binary;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The `apiserver` release binary in DEV_MODE against the cluster under test, killed (and its
/// SQLite file removed) when dropped, also on error.
pub struct DevServer {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    sqlite: PathBuf,
}

impl DevServer {
    /// Starts the server with only the variables below (a DATABASE_DSN or SESSION_BACKEND of the
    /// caller must not leak in): its own SQLite file and log in the temp directory, named after
    /// `tag` and `run`; sandbox namespaces `<run>-<user>`; Templates in `platform_ns`; app hosts
    /// under `domain`; metrics on a port of their own, so that servers never clash.
    pub fn start(tag: &str, run: &str, platform_ns: &str, domain: &str) -> Result<DevServer> {
        let bin = workspace_binary("apiserver")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base_url = format!("http://127.0.0.1:{port}");
        let tmp = std::env::temp_dir();
        let log = tmp.join(format!("{tag}-apiserver-{run}.log"));
        let sqlite = tmp.join(format!("{tag}-apiserver-{run}.db"));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.env_clear();
        for keep in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        let child = cmd
            .env("DEV_MODE", "true")
            .env("KUBERNETES_ENABLED", "true")
            .env("KUBECONFIG_PATH", e2e::cluster::kubeconfig_path())
            .env("SERVER_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("BASE_URL", &base_url)
            .env("SQLITE_PATH", &sqlite)
            .env("KUBERNETES_NAMESPACE", format!("{run}-%s"))
            .env("PLATFORM_NAMESPACE", platform_ns)
            .env("DEPLOYMENT_DOMAIN", domain)
            .env("SECRETS_BACKEND", "database")
            .env("SECRETS_ENCRYPTION_KEY", random_key())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting the apiserver")?;
        Ok(DevServer {
            child,
            base_url,
            log,
            sqlite,
        })
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills it and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.stop();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.sqlite.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A fresh SECRETS_ENCRYPTION_KEY: base64 of 32 random bytes (the database is thrown away).
pub fn random_key() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    match serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("ByteString did not serialize to a string: {other:?}"),
    }
}

/// Server-side applies `obj` (forcing ownership) as `field_manager`.
pub async fn apply<K>(client: &Client, obj: &K, field_manager: &str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(obj),
    )
    .await
    .with_context(|| format!("applying {} {}", K::kind(&()), obj.name_any()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_is_32_bytes_of_base64() {
        let k = super::random_key();
        assert_eq!(k.len(), 44, "{k}");
        assert!(k.ends_with('=') && !k.ends_with("=="), "{k}");
        let bytes: k8s_openapi::ByteString = serde_json::from_value(serde_json::json!(k)).unwrap();
        assert_eq!(bytes.0.len(), 32);
        assert_ne!(super::random_key(), k);
    }
}
