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
    /// DNS-safe id used for the sandbox namespace and app hosts: the email's local part and an
    /// identity hash, no dash, e.g. `alice4k2q7z`; the DEV_MODE user's is `dev`.
    pub id: String,
    /// Email address from the identity provider.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `<issuer>|<sub>` of the identity provider (never shown).
    #[serde(skip)]
    pub subject: String,
}

impl User {
    /// Whether this is the DEV_MODE user (dev@localhost), whose sessions and tokens work only
    /// while DEV_MODE is on.
    pub fn is_dev_mode(&self) -> bool {
        self.subject == crate::auth::DEV_SUBJECT
    }

    /// A hash of the identity (issuer and subject), put on the user's UserSandbox to tie it to
    /// this person without naming them: [`identity_hash`].
    pub fn identity(&self) -> String {
        identity_hash(&self.subject)
    }
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
    /// Unix seconds from which the token no longer works; null: it does not expire.
    pub expires_at: Option<i64>,
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

    /// The user of an identity-provider subject (`<issuer>|<sub>`), created on first sign-in with
    /// the id [`user_id_for`] gives (the DEV_MODE user: `dev`). Should that id belong to another
    /// subject already, the identity hash in it is extended one character at a time
    /// (deterministically). Returns the user and whether it was created now.
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
        let dev = (subject == crate::auth::DEV_SUBJECT).then(|| "dev".to_string());
        let candidates = dev
            .into_iter()
            .chain((USER_ID_HASH_LEN..=MAX_USER_ID_HASH_LEN).map(|n| user_id_for(subject, email, n)));
        for id in candidates {
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
                        subject: subject.into(),
                    },
                    true,
                ));
            }
            // Either the id is taken, or this subject was inserted concurrently.
            if let Some(u) = self.user_by_subject(subject).await? {
                return Ok((u, false));
            }
        }
        anyhow::bail!("no free user id for {email}: every extension of its identity hash is taken")
    }

    /// This installation's id: a random value created with the database, the same for every
    /// replica and after a restart (and after a restore of the database).
    pub async fn installation_id(&self) -> Result<String> {
        sqlx::query("INSERT INTO installation (singleton, id, created_at) VALUES (1, $1, $2) ON CONFLICT DO NOTHING")
            .bind(crate::auth::hash_token(&crate::auth::random_token(32))[..32].to_string())
            .bind(now())
            .execute(&self.pool)
            .await
            .context("creating the installation id")?;
        let id: String = sqlx::query_scalar("SELECT id FROM installation WHERE singleton = 1")
            .fetch_one(&self.pool)
            .await
            .context("reading the installation id")?;
        Ok(id)
    }

    /// The user with this subject.
    pub async fn user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, email, name, subject FROM users WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| user(&r)))
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, email, name, subject FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| user(&r)))
    }

    /// Stores a new token (by hash) that does not expire and returns its listing.
    pub async fn insert_token(&self, user_id: &str, name: &str, hash: &str, scopes: &[String]) -> Result<TokenInfo> {
        self.insert_token_limited(user_id, name, hash, scopes, None, u32::MAX)
            .await?
            .context("a token without a limit is always stored")
    }

    /// Stores a new token (by hash), expiring at `expires_at` (Unix seconds) if given, unless the
    /// user already holds `max` tokens that have not expired: then `None` and nothing is stored.
    pub async fn insert_token_limited(
        &self,
        user_id: &str,
        name: &str,
        hash: &str,
        scopes: &[String],
        expires_at: Option<i64>,
        max: u32,
    ) -> Result<Option<TokenInfo>> {
        let id = crate::auth::random_token(12);
        let created_at = now();
        // One statement: the count and the insert see the same rows.
        let res = sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COUNT(*) FROM api_tokens WHERE user_id = $2 AND (expires_at IS NULL OR expires_at > $6)) < $8",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(scopes.join(" "))
        .bind(created_at)
        .bind(expires_at)
        .bind(i64::from(max))
        .execute(&self.pool)
        .await?;
        if res.rows_affected() != 1 {
            return Ok(None);
        }
        Ok(Some(TokenInfo {
            id,
            name: name.into(),
            scopes: scopes.to_vec(),
            created_at,
            last_used_at: None,
            expires_at,
        }))
    }

    /// The tokens of a user, newest first (expired ones included, with their expiry).
    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, last_used_at, expires_at FROM api_tokens WHERE user_id = $1 \
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
                expires_at: r.get("expires_at"),
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
        let found = self.find_token(hash).await?;
        if found.is_some() {
            self.touch_token(hash).await?;
        }
        Ok(found)
    }

    /// Records a use of the token with this hash.
    pub async fn touch_token(&self, hash: &str) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now())
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user and scopes of a token hash, without recording a use; `None` also when the token
    /// expired or its user is deactivated.
    pub async fn find_token(&self, hash: &str) -> Result<Option<(User, Vec<String>)>> {
        Ok(self.find_token_and_team(hash).await?.map(|(u, s, _)| (u, s)))
    }

    /// [`Db::find_token`] and the team the token acts in (None: its user's own sandbox), in one
    /// query: every API request asks.
    pub async fn find_token_and_team(&self, hash: &str) -> Result<Option<(User, Vec<String>, Option<String>)>> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.subject, t.scopes, t.team_id FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.deactivated_at IS NULL",
        )
        .bind(hash)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (user(&r), scopes(r.get("scopes")), r.get::<Option<String>, _>("team_id"))))
    }

    /// Whether the user with this id exists and is not deactivated.
    pub async fn user_is_active(&self, id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id = $1 AND deactivated_at IS NULL")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n == 1)
    }

    /// Deactivates (`active` false) or reactivates the user whose id, or else whose email address
    /// (case-insensitive), is `who`; returns that user. An error names `who` when no user or more
    /// than one user (same email, other identities) matches; nothing is changed then.
    pub async fn set_user_active(&self, who: &str, active: bool) -> Result<User> {
        let who = who.trim();
        let mut rows = sqlx::query("SELECT id, email, name, subject FROM users WHERE id = $1")
            .bind(who)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            rows = sqlx::query("SELECT id, email, name, subject FROM users WHERE LOWER(email) = LOWER($1) ORDER BY id")
                .bind(who)
                .fetch_all(&self.pool)
                .await?;
        }
        let users: Vec<User> = rows.iter().map(user).collect();
        let user = match users.as_slice() {
            [] => anyhow::bail!("no user has the id or email address {who:?}"),
            [one] => one.clone(),
            many => anyhow::bail!(
                "{} users have the email address {who:?} ({}); name one by its id",
                many.len(),
                many.iter().map(|u| u.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        };
        sqlx::query("UPDATE users SET deactivated_at = $1 WHERE id = $2")
            .bind((!active).then(now))
            .bind(&user.id)
            .execute(&self.pool)
            .await?;
        Ok(user)
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
        subject: r.get("subject"),
    }
}

fn scopes(s: String) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Characters of the identity hash in a new user id.
pub const USER_ID_HASH_LEN: usize = 6;
/// Most characters of the identity hash, when shorter ones are taken (16 + 14 = 30, the longest
/// user id).
pub const MAX_USER_ID_HASH_LEN: usize = crds::MAX_USER_ID_LEN - USER_ID_LOCAL_LEN;
/// Most characters of the email's local part in a user id.
pub const USER_ID_LOCAL_LEN: usize = 16;

/// The (issuer, sub) of a stored subject `<issuer>|<sub>`.
fn split_subject(subject: &str) -> (&str, &str) {
    subject.split_once('|').unwrap_or(("", subject))
}

/// SHA-256 of `issuer + "\n" + sub`.
fn identity_digest(subject: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let (issuer, sub) = split_subject(subject);
    let mut h = Sha256::new();
    h.update(issuer.as_bytes());
    h.update(b"\n");
    h.update(sub.as_bytes());
    h.finalize().into()
}

/// Hex SHA-256 of `issuer + "\n" + sub` for a stored subject `<issuer>|<sub>`: who owns a
/// UserSandbox, without naming them.
pub fn identity_hash(subject: &str) -> String {
    identity_digest(subject).iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case RFC 4648 base32 (`a-z`, `2-7`) of `bytes`, no padding.
pub(crate) fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The id of a user: the email's local part reduced to lower-case ASCII letters and digits (at
/// most 16; `u` first when it is empty or starts with a digit), then `hash_len` characters of the
/// base32 SHA-256 of `issuer + "\n" + sub`. E.g. `bob.smith@example.com` → `bobsmith` + `k3q9za`.
///
/// Ids hold no `-`, so the first `-` of a host label `<user-id>-<app>` ends the user id: two users
/// can never be given the same host, however they name their apps. The id depends only on the
/// identity (and the email at first sign-in), so a restored or another database gives the same
/// person the same id, and another person a different one.
pub fn user_id_for(subject: &str, email: &str, hash_len: usize) -> String {
    let local = email.rsplit_once('@').map_or(email, |(l, _)| l);
    let mut id: String = local
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, 'u');
    }
    id.truncate(USER_ID_LOCAL_LEN);
    let hash = base32(&identity_digest(subject));
    id.push_str(&hash[..hash_len.clamp(1, MAX_USER_ID_HASH_LEN)]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOGLE: &str = "https://accounts.google.com";

    #[test]
    fn user_ids_are_dns_labels_without_a_dash() {
        for email in [
            "alice@example.com",
            "Bob.Smith+x@example.com",
            "123@example.com",
            "__@example.com",
            "ÄÖ@x",
            "-a-@x",
            "a..b@x",
            "no-at-sign",
            &format!("{}@x", "a".repeat(50)),
        ] {
            for n in USER_ID_HASH_LEN..=MAX_USER_ID_HASH_LEN {
                let id = user_id_for(&format!("{GOOGLE}|1"), email, n);
                assert!(crds::is_dns_label(&id, crds::MAX_USER_ID_LEN), "{email}: {id}");
                assert!(!id.contains('-'), "{email}: {id}");
                assert!(id.starts_with(|c: char| c.is_ascii_lowercase()), "{email}: {id}");
            }
        }
        let id = user_id_for(&format!("{GOOGLE}|1"), "Bob.Smith+x@example.com", 6);
        assert!(id.starts_with("bobsmithx") && id.len() == "bobsmithx".len() + 6, "{id}");
        assert!(user_id_for("i|1", "123@x", 6).starts_with("u123"));
        assert!(user_id_for("i|1", "__@x", 6).starts_with('u'));
    }

    #[test]
    fn user_ids_are_deterministic_and_follow_the_identity() {
        let a = user_id_for(&format!("{GOOGLE}|1"), "bob@example.com", 6);
        assert_eq!(a, user_id_for(&format!("{GOOGLE}|1"), "bob@example.com", 6));
        // Another subject, or the same subject at another issuer, is another person.
        assert_ne!(a, user_id_for(&format!("{GOOGLE}|2"), "bob@example.com", 6));
        assert_ne!(a, user_id_for("https://other.example|1", "bob@example.com", 6));
        // Issuer and subject are separated: "a|bc" is not "ab|c".
        assert_ne!(identity_hash("a|bc"), identity_hash("ab|c"));
        // A longer hash extends the shorter one.
        let longer = user_id_for(&format!("{GOOGLE}|1"), "bob@example.com", 9);
        assert!(longer.starts_with(&a), "{longer}");
    }

    #[test]
    fn bob_and_bob_smith_cannot_share_a_host() {
        let bob = user_id_for(&format!("{GOOGLE}|1"), "bob@example.com", 6);
        let bob_smith = user_id_for(&format!("{GOOGLE}|2"), "bob.smith@example.com", 6);
        // The host label's first dash ends the user id, whatever the app names are.
        for (user, app) in [(&bob, "smith-shop"), (&bob_smith, "shop")] {
            let host = format!("{user}-{app}");
            assert_eq!(host.split_once('-').unwrap().0, user.as_str());
        }
        assert_ne!(format!("{bob}-smith-shop"), format!("{bob_smith}-shop"));
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b""), "");
    }
}
