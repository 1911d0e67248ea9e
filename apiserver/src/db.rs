//! The database: PostgreSQL when `DATABASE_DSN` is set, an embedded SQLite file otherwise.
//!
//! One implementation serves both through sqlx's `Any` driver: the schema (`migrations/`) and every
//! query are portable SQL with `$n` parameters, so there is no second copy of each query per backend;
//! the store test suite (`tests/store.rs`) runs against both. Only what is not a cluster object lives
//! here: users, API tokens (hashed), sessions (postgres backend) and, without Kubernetes, deployments.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Which database engine is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (`DATABASE_DSN`).
    Postgres,
    /// The embedded SQLite file.
    Sqlite,
}

/// A connection pool and its engine.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

/// A signed-in person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// DNS-safe id used for the sandbox namespace and app hosts, e.g. `alice` or `user-123`.
    pub id: String,
    /// Email address from the identity provider.
    pub email: String,
    /// Display name.
    pub name: String,
}

/// An API token as listed (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Token id (used to revoke it).
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Unix seconds of creation.
    pub created_at: i64,
    /// Unix seconds of the last use, if any.
    pub last_used_at: Option<i64>,
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Db {
    /// Connects to PostgreSQL (`dsn`) or opens/creates the SQLite file, and applies migrations.
    pub async fn connect(dsn: Option<&str>, sqlite_path: &Path) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let (url, engine, max) = match dsn {
            Some(dsn) => (dsn.to_string(), Engine::Postgres, 16),
            None => {
                if let Some(dir) = sqlite_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating the directory of SQLITE_PATH {}", dir.display()))?;
                }
                tracing::info!(path = %sqlite_path.display(), "using the embedded SQLite database");
                (
                    format!("sqlite://{}?mode=rwc", sqlite_path.display()),
                    Engine::Sqlite,
                    4,
                )
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await
            .with_context(|| match engine {
                Engine::Postgres => "connecting to DATABASE_DSN (is PostgreSQL running and the DSN right?)".to_string(),
                Engine::Sqlite => format!("opening SQLITE_PATH {}", sqlite_path.display()),
            })?;
        if engine == Engine::Sqlite {
            // Concurrent readers with one writer; wait instead of failing on a busy file.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
            sqlx::query("PRAGMA busy_timeout = 5000").execute(&pool).await?;
            sqlx::query("PRAGMA foreign_keys = ON").execute(&pool).await?;
        }
        let db = Db { pool, engine };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the migrations under `apiserver/migrations/` (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .context("applying database migrations")?;
        Ok(())
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The user of an identity-provider subject, created on first sign-in with a fresh DNS-safe id
    /// derived from the email address (`alice`, then `alice-2`, ...). Returns the user and whether
    /// it was created now.
    pub async fn upsert_user(&self, subject: &str, email: &str, name: &str) -> Result<(User, bool)> {
        if let Some(u) = self.user_by_subject(subject).await? {
            if u.email != email || u.name != name {
                sqlx::query("UPDATE users SET email = $1, name = $2 WHERE subject = $3")
                    .bind(email)
                    .bind(name)
                    .bind(subject)
                    .execute(&self.pool)
                    .await?;
            }
            return Ok((
                User {
                    email: email.into(),
                    name: name.into(),
                    ..u
                },
                false,
            ));
        }
        let base = user_id_base(email);
        for n in 1..1000 {
            let id = if n == 1 { base.clone() } else { format!("{base}-{n}") };
            let res = sqlx::query(
                "INSERT INTO users (id, subject, email, name, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(subject)
            .bind(email)
            .bind(name)
            .bind(now())
            .execute(&self.pool)
            .await?;
            if res.rows_affected() == 1 {
                return Ok((
                    User {
                        id,
                        email: email.into(),
                        name: name.into(),
                    },
                    true,
                ));
            }
            // Either the id is taken, or this subject was inserted concurrently.
            if let Some(u) = self.user_by_subject(subject).await? {
                return Ok((u, false));
            }
        }
        anyhow::bail!("no free user id for {base}")
    }

    /// The user with this subject.
    pub async fn user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, email, name FROM users WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| user(&r)))
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, email, name FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| user(&r)))
    }

    /// Stores a new token (by hash) and returns its listing.
    pub async fn insert_token(&self, user_id: &str, name: &str, hash: &str, scopes: &[String]) -> Result<TokenInfo> {
        let id = crate::auth::random_token(12);
        let created_at = now();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(scopes.join(" "))
        .bind(created_at)
        .execute(&self.pool)
        .await?;
        Ok(TokenInfo {
            id,
            name: name.into(),
            scopes: scopes.to_vec(),
            created_at,
            last_used_at: None,
        })
    }

    /// The tokens of a user, newest first.
    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, last_used_at FROM api_tokens WHERE user_id = $1 \
             ORDER BY created_at DESC, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo {
                id: r.get("id"),
                name: r.get("name"),
                scopes: scopes(r.get("scopes")),
                created_at: r.get("created_at"),
                last_used_at: r.get("last_used_at"),
            })
            .collect())
    }

    /// Revokes (deletes) a token of this user; false when the user has no such token.
    pub async fn revoke_token(&self, user_id: &str, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The user and scopes of a token hash, recording the use.
    pub async fn token_user(&self, hash: &str) -> Result<Option<(User, Vec<String>)>> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, t.scopes FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now())
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(Some((user(&r), scopes(r.get("scopes")))))
    }

    /// Without Kubernetes: stores a deployment manifest; false when the name is taken.
    pub async fn insert_offline_deployment(&self, namespace: &str, name: &str, manifest: &str) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO offline_deployments (namespace, name, manifest, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(namespace)
        .bind(name)
        .bind(manifest)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Without Kubernetes: replaces a stored manifest; false when there is none.
    pub async fn update_offline_deployment(&self, namespace: &str, name: &str, manifest: &str) -> Result<bool> {
        let res = sqlx::query("UPDATE offline_deployments SET manifest = $1 WHERE namespace = $2 AND name = $3")
            .bind(manifest)
            .bind(namespace)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Without Kubernetes: the manifests of a namespace, by name.
    pub async fn list_offline_deployments(&self, namespace: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT manifest FROM offline_deployments WHERE namespace = $1 ORDER BY name")
            .bind(namespace)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get("manifest")).collect())
    }

    /// Without Kubernetes: deletes a stored deployment; false when there is none.
    pub async fn delete_offline_deployment(&self, namespace: &str, name: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM offline_deployments WHERE namespace = $1 AND name = $2")
            .bind(namespace)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }
}

fn user(r: &AnyRow) -> User {
    User {
        id: r.get("id"),
        email: r.get("email"),
        name: r.get("name"),
    }
}

fn scopes(s: String) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// A DNS-safe user id from an email address: its local part, lower-cased, other characters
/// turned into dashes, at most 20 characters (leaving room for `-N` and the host label).
pub fn user_id_base(email: &str) -> String {
    let local = email.split('@').next().unwrap_or("");
    let mut id = String::new();
    for c in local.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (id.is_empty() || id.ends_with('-'))) {
            id.push(c);
        }
        if id.len() >= 20 {
            break;
        }
    }
    let id = id.trim_matches('-').to_string();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        format!("user-{id}").trim_end_matches('-').to_string()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::user_id_base;

    #[test]
    fn user_ids_are_dns_labels() {
        assert_eq!(user_id_base("alice@example.com"), "alice");
        assert_eq!(user_id_base("Bob.Smith+x@example.com"), "bob-smith-x");
        assert_eq!(user_id_base("dev@localhost"), "dev");
        assert_eq!(user_id_base("123@example.com"), "user-123");
        assert_eq!(user_id_base("__@example.com"), "user");
        assert_eq!(user_id_base(&format!("{}@x", "a".repeat(50))).len(), 20);
        for e in ["ÄÖ@x", "-a-@x", "a..b@x"] {
            assert!(crds::is_dns_label(&user_id_base(e), 30), "{e}");
        }
    }
}
