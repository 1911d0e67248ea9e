//! The secret stores: one shared suite that the database backend (on SQLite and PostgreSQL), the
//! Vault backend (a real Vault-compatible dev server) and the AWS backend (moto on loopback) all
//! pass; plus the database backend's tamper and rotation tests. PostgreSQL, Vault and moto are
//! started by `hack/test` (E2E_POSTGRES_URL, E2E_VAULT_ADDR/E2E_VAULT_TOKEN, E2E_AWS_ENDPOINT);
//! without them these tests fail.

use crate::common;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use apiserver::db::Db;
use apiserver::secrets::aws::AwsStore;
use apiserver::secrets::database::{DatabaseStore, Keyring};
use apiserver::secrets::vault::VaultStore;
use apiserver::secrets::{Scope, SecretStore, merged};

fn env(name: &str) -> Result<String> {
    std::env::var(name)
        .with_context(|| format!("{name} is not set: run the tests with hack/test, which starts the service"))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn suite(store: &dyn SecretStore) -> Result<()> {
    // Fresh owners per run: remote backends keep data between runs.
    let alice = e2e::unique_name("alice");
    let bob = e2e::unique_name("bob");
    let dep = Scope::Deployment("web".into());
    let svc = Scope::Service {
        deployment: "web".into(),
        service: "db".into(),
    };
    let tpl = Scope::Template("guestbook".into());

    assert!(
        store.put(&alice, &Scope::User, "SHARED", "user", "user-wide").await?,
        "created"
    );
    assert!(store.put(&alice, &Scope::User, "ONLY_USER", "u", "").await?);
    assert!(store.put(&alice, &tpl, "SHARED", "template", "").await?);
    assert!(store.put(&alice, &dep, "SHARED", "deployment", "").await?);
    assert!(store.put(&alice, &dep, "PASSWORD", "first", "db password").await?);
    assert!(
        !store
            .put(&alice, &dep, "PASSWORD", "p@ss w/ ünïcode", "db password")
            .await?,
        "updated"
    );
    assert!(store.put(&alice, &svc, "SHARED", "service", "").await?);
    assert!(store.put(&bob, &dep, "PASSWORD", "bobs", "").await?);

    assert_eq!(
        store.values(&alice, &dep).await?,
        map(&[("PASSWORD", "p@ss w/ ünïcode"), ("SHARED", "deployment")])
    );
    assert_eq!(
        store.values(&bob, &dep).await?,
        map(&[("PASSWORD", "bobs")]),
        "owners are apart"
    );
    assert!(store.values(&bob, &Scope::User).await?.is_empty());

    // Merge order: user, template, deployment; service on top for its service.
    let (all, per_service) = merged(
        store,
        &alice,
        Some("guestbook"),
        "web",
        &["web".to_string(), "db".to_string()],
    )
    .await?;
    assert_eq!(all["SHARED"], "deployment");
    assert_eq!(all["ONLY_USER"], "u");
    assert_eq!(all["PASSWORD"], "p@ss w/ ünïcode");
    assert_eq!(per_service.get("db"), Some(&map(&[("SHARED", "service")])));
    assert!(!per_service.contains_key("web"));
    let (no_template, _) = merged(store, &alice, None, "web", &[]).await?;
    assert_eq!(no_template["SHARED"], "deployment");

    // Listing: names, scopes and descriptions, never values.
    let list = store.list(&alice).await?;
    let shown = serde_json::to_string(&list)?;
    assert!(
        !shown.contains("p@ss") && !shown.contains("ünïcode") && !shown.contains("\"first\""),
        "{shown}"
    );
    let mut entries: Vec<(String, Option<String>, Option<String>, String)> = list
        .iter()
        .map(|i| (i.scope.clone(), i.deployment.clone(), i.service.clone(), i.name.clone()))
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 6, "{entries:?}");
    let password = list.iter().find(|i| i.name == "PASSWORD").unwrap();
    assert_eq!(
        (password.scope.as_str(), password.description.as_str()),
        ("deployment", "db password")
    );
    assert!(!password.updated_at.is_empty());
    assert_eq!(store.list(&bob).await?.len(), 1);

    // Deletes.
    assert!(store.delete(&alice, &Scope::User, "ONLY_USER").await?);
    assert!(!store.delete(&alice, &Scope::User, "ONLY_USER").await?, "already gone");
    assert!(
        !store.delete(&bob, &Scope::User, "SHARED").await?,
        "bob cannot delete alice's"
    );
    assert_eq!(store.values(&alice, &Scope::User).await?, map(&[("SHARED", "user")]));

    // Deleting a deployment removes its deployment- and service-scoped values only.
    assert_eq!(store.delete_deployment(&alice, "web").await?, 3);
    assert!(store.values(&alice, &dep).await?.is_empty());
    assert!(store.values(&alice, &svc).await?.is_empty());
    assert_eq!(store.values(&alice, &tpl).await?, map(&[("SHARED", "template")]));
    assert_eq!(store.values(&bob, &dep).await?, map(&[("PASSWORD", "bobs")]));
    Ok(())
}

fn key(b: u8) -> Vec<u8> {
    vec![b; 32]
}

#[tokio::test]
async fn database_store_on_sqlite() -> Result<()> {
    let db = Db::connect(None, &common::temp_sqlite()).await?;
    suite(&DatabaseStore::new(db, Keyring::new(&key(1), &[])?)).await
}

#[tokio::test]
async fn database_store_on_postgres() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let db = Db::connect(Some(&pg.url), std::path::Path::new("unused")).await?;
    suite(&DatabaseStore::new(db, Keyring::new(&key(1), &[])?)).await
}

#[tokio::test]
async fn vault_store() -> Result<()> {
    let store = VaultStore::with_token(&env("E2E_VAULT_ADDR")?, "secret", &env("E2E_VAULT_TOKEN")?);
    suite(&store).await
}

#[tokio::test]
async fn vault_token_file_is_reread_when_it_changes() -> Result<()> {
    let (addr, token) = (env("E2E_VAULT_ADDR")?, env("E2E_VAULT_TOKEN")?);
    let file = std::env::temp_dir().join(e2e::unique_name("vault-token"));
    std::fs::write(&file, "not-a-valid-token\n")?;
    let store = VaultStore::with_token_file(&addr, "secret", file.clone());
    let owner = e2e::unique_name("tok");
    assert!(
        store.put(&owner, &Scope::User, "K", "v", "").await.is_err(),
        "a wrong token is refused"
    );
    // Vault Agent rewrites the file: the next call uses the new token.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    std::fs::write(&file, format!("{token}\n"))?;
    store.put(&owner, &Scope::User, "K", "v", "").await?;
    assert_eq!(store.values(&owner, &Scope::User).await?, map(&[("K", "v")]));
    let _ = std::fs::remove_file(file);
    Ok(())
}

#[tokio::test]
async fn aws_store() -> Result<()> {
    let store = AwsStore::new("us-east-1", Some(&env("E2E_AWS_ENDPOINT")?), Some(("test", "test"))).await;
    suite(&store).await
}

#[tokio::test]
async fn tampered_rows_fail_to_decrypt() -> Result<()> {
    let db = Db::connect(None, &common::temp_sqlite()).await?;
    let store = DatabaseStore::new(db.clone(), Keyring::new(&key(3), &[])?);
    let dep = Scope::Deployment("web".into());
    store.put("alice", &dep, "PASSWORD", "alice-secret", "").await?;
    store.put("bob", &dep, "PASSWORD", "bob-secret", "").await?;

    // Alice's ciphertext copied into Bob's row.
    sqlx::query(
        "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE owner = 'alice') WHERE owner = 'bob'",
    )
    .execute(db.pool())
    .await?;
    let e = store.values("bob", &dep).await.unwrap_err().to_string();
    assert!(
        e.contains("cannot be decrypted") && e.contains("authentication failed"),
        "{e}"
    );
    assert!(!e.contains("alice-secret"));

    // Renamed.
    sqlx::query("UPDATE secrets SET name = 'TOKEN' WHERE owner = 'alice'")
        .execute(db.pool())
        .await?;
    assert!(store.values("alice", &dep).await.is_err());

    // A flipped bit.
    store.put("carol", &dep, "K", "carol-secret", "").await?;
    let ct: String = sqlx::query_scalar("SELECT ciphertext FROM secrets WHERE owner = 'carol'")
        .fetch_one(db.pool())
        .await?;
    let (head, data) = ct.rsplit_once('.').unwrap();
    use base64::Engine;
    let mut blob = base64::engine::general_purpose::STANDARD.decode(data)?;
    blob[20] ^= 0x01;
    let bad = format!("{head}.{}", base64::engine::general_purpose::STANDARD.encode(blob));
    sqlx::query("UPDATE secrets SET ciphertext = $1 WHERE owner = 'carol'")
        .bind(bad)
        .execute(db.pool())
        .await?;
    let e = store.values("carol", &dep).await.unwrap_err().to_string();
    assert!(
        e.contains("carol/deployments/web/K") && e.contains("authentication failed"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn key_rotation_end_to_end() -> Result<()> {
    let db = Db::connect(None, &common::temp_sqlite()).await?;
    let k1 = DatabaseStore::new(db.clone(), Keyring::new(&key(1), &[])?);
    for i in 0..5 {
        k1.put("alice", &Scope::User, &format!("K{i}"), &format!("v{i}"), "")
            .await?;
    }
    // Add k2 as current, k1 as previous: everything still reads; new writes use k2.
    let both = DatabaseStore::new(db.clone(), Keyring::new(&key(2), &[&key(1)])?);
    assert_eq!(both.values("alice", &Scope::User).await?.len(), 5);
    both.put("alice", &Scope::User, "NEW", "n", "").await?;
    let (done, remaining) = both.reencrypt().await?;
    assert_eq!((done, remaining), (5, 0));
    // Drop k1: everything still reads.
    let k2 = DatabaseStore::new(db.clone(), Keyring::new(&key(2), &[])?);
    let values = k2.values("alice", &Scope::User).await?;
    assert_eq!(values.len(), 6);
    assert_eq!(values["K3"], "v3");
    // Without k2 nothing reads, with a message naming the variables.
    let k1_only = DatabaseStore::new(db, Keyring::new(&key(1), &[])?);
    let e = k1_only.values("alice", &Scope::User).await.unwrap_err().to_string();
    assert!(e.contains("SECRETS_PREVIOUS_KEYS"), "{e}");
    Ok(())
}
