//! SECRETS_BACKEND=database: values encrypted with AES-256-GCM (RustCrypto `aes-gcm`) in the
//! `secrets` table of the server's database (PostgreSQL or SQLite).
//!
//! Stored form, versioned and self-describing: `v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`,
//! with a fresh random 96-bit nonce per write. The associated data binds the ciphertext to its
//! owner, scope, name and key id, so a value copied to another row, renamed, or altered fails to
//! decrypt. The key id is the first 8 bytes (hex) of SHA-256 of the key. Rotation: new writes use
//! SECRETS_ENCRYPTION_KEY; SECRETS_PREVIOUS_KEYS are accepted for reading; [`DatabaseStore::reencrypt`]
//! rewrites every row under the current key and reports how many remain under other keys.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use anyhow::{Context, bail};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Scope, SecretError, SecretInfo, SecretResult, SecretStore, Values};
use crate::config::Config;
use crate::db::{Db, now};

/// Format version prefix.
const VERSION: &str = "v1";

/// One AES-256 key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    fn new(bytes: &[u8]) -> anyhow::Result<Key> {
        if bytes.len() != 32 {
            bail!("an encryption key must be 32 bytes, not {}", bytes.len());
        }
        let digest = Sha256::digest(bytes);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Key {
            id,
            cipher: Aes256Gcm::new_from_slice(bytes).map_err(|e| anyhow::anyhow!("{e}"))?,
        })
    }
}

/// The current key and the previous ones.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// From raw 32-byte keys: the current one, then previous ones.
    pub fn new(current: &[u8], previous: &[&[u8]]) -> anyhow::Result<Keyring> {
        Ok(Keyring {
            current: Key::new(current)?,
            previous: previous.iter().map(|k| Key::new(k)).collect::<anyhow::Result<_>>()?,
        })
    }

    /// From SECRETS_ENCRYPTION_KEY and SECRETS_PREVIOUS_KEYS.
    pub fn from_config(config: &Config) -> anyhow::Result<Keyring> {
        let decode = |name: &str, s: &str| {
            STANDARD
                .decode(s.trim())
                .with_context(|| format!("{name} must be base64 (openssl rand -base64 32)"))
        };
        let current = config
            .secrets_encryption_key
            .as_ref()
            .context("SECRETS_ENCRYPTION_KEY is required when SECRETS_BACKEND=database")?;
        let current = decode("SECRETS_ENCRYPTION_KEY", current.expose_secret())?;
        let previous: Vec<Vec<u8>> = match &config.secrets_previous_keys {
            Some(keys) => keys
                .0
                .iter()
                .map(|k| decode("SECRETS_PREVIOUS_KEYS", k.expose_secret()))
                .collect::<anyhow::Result<_>>()?,
            None => vec![],
        };
        let previous: Vec<&[u8]> = previous.iter().map(Vec::as_slice).collect();
        Keyring::new(&current, &previous).context("SECRETS_ENCRYPTION_KEY")
    }

    /// Id of the key new writes use.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn aad(owner: &str, scope: &str, name: &str, key_id: &str) -> Vec<u8> {
        format!("k8s-scheduler-secret/{VERSION}\0{owner}\0{scope}\0{name}\0{key_id}").into_bytes()
    }

    /// Encrypts `value` for the row (owner, scope, name) under the current key.
    pub fn encrypt(&self, owner: &str, scope: &str, name: &str, value: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = Self::aad(owner, scope, name, &self.current.id);
        let ct = self
            .current
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{VERSION}.{}.{}", self.current.id, STANDARD.encode(blob))
    }

    /// Decrypts a stored value of the row (owner, scope, name).
    pub fn decrypt(&self, owner: &str, scope: &str, name: &str, stored: &str) -> Result<String, String> {
        let mut parts = stored.splitn(3, '.');
        let (Some(version), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("not in the v1.<key id>.<data> format".into());
        };
        if version != VERSION {
            return Err(format!("unknown format version {version:?}"));
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| {
                format!("it was encrypted with key {key_id}, which is neither SECRETS_ENCRYPTION_KEY nor in SECRETS_PREVIOUS_KEYS")
            })?;
        let blob = STANDARD
            .decode(data)
            .map_err(|_| "the data is not base64".to_string())?;
        if blob.len() < 12 + 16 {
            return Err("the data is truncated".into());
        }
        let (nonce, ct) = blob.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "the nonce is malformed".to_string())?;
        let aad = Self::aad(owner, scope, name, key_id);
        let plain = key
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| "authentication failed: the value was altered or belongs to another secret".to_string())?;
        String::from_utf8(plain).map_err(|_| "the value is not UTF-8".into())
    }
}

/// Encrypted values in SQL.
pub struct DatabaseStore {
    db: Db,
    keys: Keyring,
}

fn backend(e: impl std::fmt::Display) -> SecretError {
    SecretError::Backend(format!("secrets table: {e}"))
}

impl DatabaseStore {
    /// A store over `db` with `keys`.
    pub fn new(db: Db, keys: Keyring) -> DatabaseStore {
        DatabaseStore { db, keys }
    }

    /// Rewrites every row under the current key. Returns (rewritten, remaining under other keys):
    /// rows that cannot be decrypted with any known key stay as they are and are counted.
    pub async fn reencrypt(&self) -> SecretResult<(usize, usize)> {
        let rows = sqlx::query("SELECT owner, scope, name, ciphertext, key_id FROM secrets")
            .fetch_all(self.db.pool())
            .await
            .map_err(backend)?;
        let mut done = 0;
        for r in &rows {
            let (owner, scope, name): (String, String, String) = (r.get("owner"), r.get("scope"), r.get("name"));
            let key_id: String = r.get("key_id");
            if key_id == self.keys.current_id() {
                continue;
            }
            let Ok(value) = self
                .keys
                .decrypt(&owner, &scope, &name, &r.get::<String, _>("ciphertext"))
            else {
                tracing::warn!(owner, scope, name, key_id, "cannot decrypt; left under its old key");
                continue;
            };
            let ct = self.keys.encrypt(&owner, &scope, &name, &value);
            sqlx::query(
                "UPDATE secrets SET ciphertext = $1, key_id = $2 WHERE owner = $3 AND scope = $4 AND name = $5",
            )
            .bind(ct)
            .bind(self.keys.current_id())
            .bind(&owner)
            .bind(&scope)
            .bind(&name)
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
            done += 1;
        }
        let remaining: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE key_id <> $1")
            .bind(self.keys.current_id())
            .fetch_one(self.db.pool())
            .await
            .map_err(backend)?;
        Ok((done, remaining as usize))
    }
}

#[async_trait]
impl SecretStore for DatabaseStore {
    async fn put(&self, owner: &str, scope: &Scope, key: &str, value: &str, description: &str) -> SecretResult<bool> {
        let path = scope.path();
        let ct = self.keys.encrypt(owner, &path, key, value);
        let existed = sqlx::query("SELECT 1 FROM secrets WHERE owner = $1 AND scope = $2 AND name = $3")
            .bind(owner)
            .bind(&path)
            .bind(key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(backend)?
            .is_some();
        sqlx::query(
            "INSERT INTO secrets (owner, scope, name, description, ciphertext, key_id, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (owner, scope, name) DO UPDATE SET description = excluded.description, \
             ciphertext = excluded.ciphertext, key_id = excluded.key_id, updated_at = excluded.updated_at",
        )
        .bind(owner)
        .bind(&path)
        .bind(key)
        .bind(description)
        .bind(ct)
        .bind(self.keys.current_id())
        .bind(now())
        .execute(self.db.pool())
        .await
        .map_err(backend)?;
        Ok(!existed)
    }

    async fn values(&self, owner: &str, scope: &Scope) -> SecretResult<Values> {
        let path = scope.path();
        let rows = sqlx::query("SELECT name, ciphertext FROM secrets WHERE owner = $1 AND scope = $2")
            .bind(owner)
            .bind(&path)
            .fetch_all(self.db.pool())
            .await
            .map_err(backend)?;
        let mut out = Values::new();
        for r in rows {
            let name: String = r.get("name");
            let value = self
                .keys
                .decrypt(owner, &path, &name, &r.get::<String, _>("ciphertext"))
                .map_err(|e| SecretError::Decrypt(format!("{owner}/{path}/{name}"), e))?;
            out.insert(name, value);
        }
        Ok(out)
    }

    async fn count(&self, owner: &str) -> SecretResult<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE owner = $1")
            .bind(owner)
            .fetch_one(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn list(&self, owner: &str) -> SecretResult<Vec<SecretInfo>> {
        let rows = sqlx::query(
            "SELECT scope, name, description, updated_at FROM secrets WHERE owner = $1 ORDER BY scope, name",
        )
        .bind(owner)
        .fetch_all(self.db.pool())
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let scope = Scope::from_path(&r.get::<String, _>("scope"))?;
                Some(SecretInfo::new(
                    &scope,
                    &r.get::<String, _>("name"),
                    &r.get::<String, _>("description"),
                    r.get("updated_at"),
                ))
            })
            .collect())
    }

    async fn delete(&self, owner: &str, scope: &Scope, key: &str) -> SecretResult<bool> {
        let res = sqlx::query("DELETE FROM secrets WHERE owner = $1 AND scope = $2 AND name = $3")
            .bind(owner)
            .bind(scope.path())
            .bind(key)
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(res.rows_affected() == 1)
    }

    async fn delete_deployment(&self, owner: &str, deployment: &str) -> SecretResult<usize> {
        let own = Scope::Deployment(deployment.into()).path();
        let res = sqlx::query("DELETE FROM secrets WHERE owner = $1 AND (scope = $2 OR scope LIKE $3)")
            .bind(owner)
            .bind(&own)
            .bind(format!("{own}/services/%"))
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(res.rows_affected() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::new(&[7u8; 32], &[]).unwrap()
    }

    #[test]
    fn round_trip_and_binding() {
        let k = ring();
        let ct = k.encrypt("alice", "deployments/web", "PASSWORD", "s3cret");
        assert!(ct.starts_with(&format!("v1.{}.", k.current_id())));
        assert!(!ct.contains("s3cret"));
        assert_eq!(
            k.decrypt("alice", "deployments/web", "PASSWORD", &ct).unwrap(),
            "s3cret"
        );
        // Moved to another owner, scope or name: refused.
        assert!(k.decrypt("bob", "deployments/web", "PASSWORD", &ct).is_err());
        assert!(k.decrypt("alice", "deployments/api", "PASSWORD", &ct).is_err());
        assert!(k.decrypt("alice", "deployments/web", "TOKEN", &ct).is_err());
    }

    #[test]
    fn a_flipped_bit_fails_with_a_clear_error() {
        let k = ring();
        let ct = k.encrypt("alice", "secrets", "K", "value");
        let (head, data) = ct.rsplit_once('.').unwrap();
        let mut blob = STANDARD.decode(data).unwrap();
        for i in [0, 12, blob.len() - 1] {
            blob[i] ^= 1;
            let bad = format!("{head}.{}", STANDARD.encode(&blob));
            let e = k.decrypt("alice", "secrets", "K", &bad).unwrap_err();
            assert!(e.contains("authentication failed"), "{e}");
            blob[i] ^= 1;
        }
        assert!(
            k.decrypt("alice", "secrets", "K", "v2.x.y")
                .unwrap_err()
                .contains("version")
        );
        assert!(k.decrypt("alice", "secrets", "K", "garbage").is_err());
    }

    #[test]
    fn nonces_never_repeat_in_100000_encryptions() {
        let k = ring();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let ct = k.encrypt("alice", "secrets", "K", "same value");
            let blob = STANDARD.decode(ct.rsplit('.').next().unwrap()).unwrap();
            assert!(seen.insert(blob[..12].to_vec()), "a nonce repeated");
        }
    }

    #[test]
    fn previous_keys_read_new_writes_use_the_current_one() {
        let old = Keyring::new(&[1u8; 32], &[]).unwrap();
        let ct = old.encrypt("a", "secrets", "K", "v");
        let rotated = Keyring::new(&[2u8; 32], &[&[1u8; 32]]).unwrap();
        assert_eq!(rotated.decrypt("a", "secrets", "K", &ct).unwrap(), "v");
        assert!(rotated.encrypt("a", "secrets", "K", "v").contains(rotated.current_id()));
        let new_only = Keyring::new(&[2u8; 32], &[]).unwrap();
        assert!(
            new_only
                .decrypt("a", "secrets", "K", &ct)
                .unwrap_err()
                .contains("SECRETS_PREVIOUS_KEYS")
        );
        assert!(Keyring::new(&[1u8; 16], &[]).is_err());
    }
}
