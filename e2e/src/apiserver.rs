//! The HTTP server (`apiserver`) as a process against the cluster under test, for end-to-end
//! tests of its routes: KUBERNETES_ENABLED with the test kubeconfig, an embedded SQLite database
//! of its own, and users who call it with API tokens the test writes into that database (no
//! sign-in flow needed). Killed, and its files removed, when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::Digest;
use sqlx::Connection;

use crate::cluster::{kubeconfig_path, unique_name};
use crate::operator::workspace_binary;

/// A fixed SECRETS_ENCRYPTION_KEY for test servers (32 bytes of 0x2a).
const TEST_ENCRYPTION_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// The scopes of the tokens [`ServerProcess::token_for`] makes.
pub const TEST_SCOPES: &str = "deployments:read deployments:write templates:read secrets:read secrets:write";

/// A free loopback port (bound, then released for a process to take).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An `apiserver` process started for one test.
pub struct ServerProcess {
    child: Option<Child>,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// File its logs go to.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts the server binary against the cluster under test with exactly the test defaults
    /// (loopback listeners, KUBERNETES_ENABLED, SQLite in a directory of its own, placeholder
    /// Google settings that no test signs in with) and `env` on top, and waits (up to 90 s) until
    /// `/readyz` answers 200. Nothing of the caller's environment but PATH reaches it.
    pub async fn start(env: &[(&str, &str)]) -> Result<Self> {
        Self::start_at(free_port()?, env).await
    }

    /// [`ServerProcess::start`] on loopback port `port`, for a test that must name the server's
    /// address before it starts (an OpenID client's redirect URL).
    pub async fn start_at(port: u16, env: &[(&str, &str)]) -> Result<Self> {
        let name = unique_name("apiserver");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("server.log");
        let base = format!("http://127.0.0.1:{port}");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(workspace_binary("apiserver")?);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,kube=warn,sqlx=warn")
            .env("KUBERNETES_ENABLED", "true")
            .env("KUBECONFIG_PATH", kubeconfig_path())
            .env("SQLITE_PATH", dir.join("server.db"))
            .env("SERVER_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("BASE_URL", &base)
            .env("GOOGLE_CLIENT_ID", "e2e.apps.googleusercontent.com")
            .env("GOOGLE_CLIENT_SECRET", "e2e-client-secret")
            .env("GOOGLE_REDIRECT_URL", format!("{base}/oauth2/callback"))
            .env("SECRETS_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting the apiserver")?;
        let mut server = ServerProcess {
            child: Some(child),
            dir,
            base,
            log,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let mut last = String::from("no answer");
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the apiserver exited ({status}) before it was ready:\n{}", self.logs());
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                let status = r.status();
                last = format!("{status}: {}", r.text().await.unwrap_or_default());
                if status.is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the apiserver's /readyz is not ok after 90 s (last: {last}):\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes user `user_id` (email `<id>@example.com`) and an API token of [`TEST_SCOPES`] into the
    /// server's database, as signing in and `POST /api/tokens` would; returns the token. The
    /// first request with it creates the user's UserSandbox (`sandbox-<id>` with the default
    /// KUBERNETES_NAMESPACE).
    pub async fn token_for(&self, user_id: &str) -> Result<String> {
        let url = format!("sqlite://{}", self.dir.join("server.db").display());
        let mut db = sqlx::sqlite::SqliteConnection::connect(&url)
            .await
            .with_context(|| format!("opening the server's database {url}"))?;
        // The server holds the file open (WAL): wait for its locks instead of failing.
        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut db).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        sqlx::query("INSERT INTO users (id, subject, email, name, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(user_id)
            .bind(format!("e2e|{user_id}"))
            .bind(format!("{user_id}@example.com"))
            .bind(user_id)
            .bind(now)
            .execute(&mut db)
            .await
            .with_context(|| format!("adding user {user_id}"))?;
        let token = format!("kst_{}", unique_name("token").replace('-', ""));
        let hash: String = sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at) VALUES (?, ?, 'e2e', ?, ?, ?)",
        )
        .bind(unique_name("t"))
        .bind(user_id)
        .bind(hash)
        .bind(TEST_SCOPES)
        .bind(now)
        .execute(&mut db)
        .await
        .with_context(|| format!("adding an API token of {user_id}"))?;
        db.close().await.ok();
        Ok(token)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
