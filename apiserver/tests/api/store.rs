//! The store suite, run against SQLite and PostgreSQL (started by `hack/test`; without it the
//! PostgreSQL test fails).

use crate::common;

use anyhow::Result;
use apiserver::db::Db;

async fn suite(db: &Db) -> Result<()> {
    // Users: ids from the email and the identity, unique, stable per subject.
    let (alice, created) = db.upsert_user("google|1", "alice@example.com", "Alice").await?;
    assert!(created);
    assert_eq!(alice.id, apiserver::db::user_id_for("google|1", "alice@example.com", 6));
    let (again, created) = db.upsert_user("google|1", "alice@example.com", "Alice A.").await?;
    assert!(!created);
    assert_eq!(again.id, alice.id);
    assert_eq!(db.user_by_id(&alice.id).await?.unwrap().name, "Alice A.");
    let (other, _) = db.upsert_user("google|2", "alice@corp.example", "Other Alice").await?;
    assert_ne!(other.id, alice.id, "a second alice gets another id");
    assert_eq!(db.user_by_subject("google|2").await?.unwrap().id, other.id);
    assert!(db.user_by_id("nobody").await?.is_none());
    // The id a subject would get is taken by another subject (say, kept from an older release):
    // the identity hash is extended, deterministically.
    let wanted = apiserver::db::user_id_for("google|3", "carol@example.com", 6);
    sqlx::query("INSERT INTO users (id, subject, email, name, created_at) VALUES ($1, 'legacy|x', 'x@x', '', 0)")
        .bind(&wanted)
        .execute(db.pool())
        .await?;
    let (carol, _) = db.upsert_user("google|3", "carol@example.com", "Carol").await?;
    assert_eq!(carol.id, apiserver::db::user_id_for("google|3", "carol@example.com", 7));

    // Tokens: stored by hash, listed without values, revocable by their owner only.
    let (a, b) = (alice.id.as_str(), other.id.as_str());
    let scopes = vec!["deployments:read".to_string()];
    let t = db.insert_token(a, "ci", "hash-1", &scopes).await?;
    assert_eq!(db.list_tokens(a).await?, vec![t.clone()]);
    assert!(db.list_tokens(b).await?.is_empty());
    let (u, s) = db.token_user("hash-1").await?.expect("token found");
    assert_eq!((u.id.as_str(), s), (a, scopes));
    assert!(db.list_tokens(a).await?[0].last_used_at.is_some(), "use is recorded");
    assert!(db.token_user("hash-2").await?.is_none());
    assert!(!db.revoke_token(b, &t.id).await?, "another user cannot revoke it");
    assert!(db.revoke_token(a, &t.id).await?);
    assert!(db.token_user("hash-1").await?.is_none());

    // Deployments without Kubernetes.
    assert!(
        db.insert_offline_deployment("sandbox-alice", "web", "{\"a\":1}")
            .await?
    );
    assert!(
        !db.insert_offline_deployment("sandbox-alice", "web", "{}").await?,
        "names are unique"
    );
    assert!(
        db.update_offline_deployment("sandbox-alice", "web", "{\"a\":2}")
            .await?
    );
    assert!(!db.update_offline_deployment("sandbox-bob", "web", "{}").await?);
    assert_eq!(
        db.list_offline_deployments("sandbox-alice").await?,
        vec!["{\"a\":2}".to_string()]
    );
    assert!(db.list_offline_deployments("sandbox-bob").await?.is_empty());
    assert!(!db.delete_offline_deployment("sandbox-bob", "web").await?);
    assert!(db.delete_offline_deployment("sandbox-alice", "web").await?);

    // Migrations are idempotent.
    db.migrate().await?;
    db.ping().await?;
    Ok(())
}

#[tokio::test]
async fn sqlite_passes_the_store_suite() -> Result<()> {
    let path = common::temp_sqlite();
    let db = Db::connect(None, &path).await?;
    suite(&db).await?;
    assert!(path.exists());
    Ok(())
}

#[tokio::test]
async fn postgres_passes_the_store_suite() -> Result<()> {
    let pg = e2e::services::fresh_postgres().await?;
    let db = Db::connect(Some(&pg.url), std::path::Path::new("unused")).await?;
    assert_eq!(db.engine(), apiserver::db::Engine::Postgres);
    suite(&db).await
}
