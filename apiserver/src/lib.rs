//! The k8s-scheduler HTTP server: a thin layer that authenticates people (Google OpenID Connect,
//! DEV_MODE, API tokens), keeps users, sessions and tokens in a database, and turns API calls into
//! custom-resource writes in the caller's sandbox namespace. Reads come from watch caches.
//!
//! - [`config`]: every server variable of the configuration reference.
//! - [`db`]: PostgreSQL or embedded SQLite.
//! - [`sessions`]: session stores (memory, postgres, redis) behind tower-sessions.
//! - [`auth`]: who is calling, sign-in, CSRF.
//! - [`platform`]: templates, sandboxes and deployments (Kubernetes, or the database without it).
//! - [`http`]: the routes; [`openapi`]: their description.
#![forbid(unsafe_code)]

pub mod auth;
pub mod billing;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod platform;
pub mod secrets;
pub mod sessions;
pub mod teams;
pub mod usage;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::db::{Db, User};
use crate::metrics::Metrics;
use crate::platform::Platform;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// Templates, sandboxes, deployments.
    pub platform: Arc<dyn Platform>,
    /// Secret values (SECRETS_BACKEND).
    pub secrets: Arc<dyn secrets::SecretStore>,
    /// The OpenID provider (discovered at the first sign-in).
    pub oidc: Arc<auth::oidc::Provider>,
    /// Metrics.
    pub metrics: Metrics,
    /// The DEV_MODE user, once created.
    pub dev_user: Arc<tokio::sync::OnceCell<User>>,
    /// Open `/api/events` streams: their caps, and ending them at sign-out, revocation or
    /// deactivation.
    pub streams: Arc<http::events::Streams>,
    /// Open followed log streams (`/api/deployments/{name}/logs?follow=true`): their caps
    /// (LOGS_MAX_FOLLOWS_PER_USER, LOGS_MAX_FOLLOWS), and ending them like the event streams.
    pub log_follows: Arc<http::events::Streams>,
    /// The apps' CPU and memory over the last hour ([`usage`]).
    pub usage: Arc<usage::History>,
    /// Outgoing email (invitations), sent by a worker with retries; None without EMAIL_PROVIDER
    /// (invitation links are then handed to the inviting admin instead).
    pub outbox: Option<email::Outbox>,
    /// Stripe billing (BILLING_ENABLED); None: plans are set by administrators.
    pub billing: Option<billing::Billing>,
}

/// The assembled application.
pub struct App {
    /// The router with all middleware.
    pub router: Router,
    /// Its state.
    pub state: AppState,
    /// Background tasks (session cleanup) that live as long as the app.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Installs ring as the process's TLS crypto provider. The AWS SDK links aws-lc too, and rustls
/// refuses to guess between two; `app` and `run` call this first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A Kubernetes client from `KUBECONFIG_PATH`, else `KUBECONFIG` or the in-cluster account.
pub async fn kube_client(config: &Config) -> Result<kube::Client> {
    let kc = match &config.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("KUBECONFIG_PATH {}: cannot read it", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("KUBECONFIG_PATH {}: invalid", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found (set KUBECONFIG, or run in a cluster), or set KUBERNETES_ENABLED=false",
        )?,
    };
    Ok(kube::Client::try_from(kc)?)
}

/// Connects the database and the platform and builds the router.
pub async fn app(config: Config) -> Result<App> {
    install_crypto_provider();
    let config = Arc::new(config);
    let db = Db::connect(config.postgres_dsn(), &config.sqlite_path).await?;
    let metrics = Metrics::new();
    let platform: Arc<dyn Platform> = if config.kubernetes_enabled {
        let client = kube_client(&config).await?;
        platform::kube::KubePlatform::start(client, config.clone(), metrics.clone()).await?
    } else {
        tracing::warn!("KUBERNETES_ENABLED=false: deployments are stored and rendered, not run");
        Arc::new(platform::offline::OfflinePlatform::new(db.clone(), config.clone())?)
    };
    app_with(config, db, platform, metrics).await
}

/// Builds the router over given parts (tests substitute the platform).
pub async fn app_with(config: Arc<Config>, db: Db, platform: Arc<dyn Platform>, metrics: Metrics) -> Result<App> {
    let store = sessions::build(&config, &db).await?;
    let mut tasks = vec![];
    if let Some(t) = sessions::spawn_cleanup(&store, config.session_cleanup_interval) {
        tasks.push(t);
    }
    platform.set_installation(&db.installation_id().await?);
    let secret_store = secrets::build(&config, &db).await?;
    let usage = usage::History::new(std::time::Duration::from_secs(config.app_metrics_interval_seconds));
    tasks.push(usage::spawn_sampler(platform.clone(), usage.clone()));
    // Mail goes through the outbox table; the worker sends it with retries, so a mail server that
    // is down delays an invitation and never loses it.
    let outbox = match email::from_config(&config)? {
        Some(sender) => {
            let outbox = email::Outbox::new(db.clone());
            tasks.push(email::spawn_worker(
                outbox.clone(),
                sender,
                email::WorkerOptions::default(),
                std::future::pending(),
            ));
            Some(outbox)
        }
        None => None,
    };
    let billing = billing::Billing::from_config(&config, &db)?;
    let state = AppState {
        usage,
        outbox,
        billing: billing.clone(),
        secrets: secret_store,
        config: config.clone(),
        db,
        platform,
        oidc: Arc::new(auth::oidc::Provider::new()?),
        metrics: metrics.clone(),
        dev_user: Default::default(),
        streams: http::events::Streams::new(
            config.events_max_streams_per_user as usize,
            config.events_max_streams as usize,
        ),
        log_follows: http::events::Streams::with_names(
            config.logs_max_follows_per_user as usize,
            config.logs_max_follows as usize,
            http::logs::FOLLOW_STREAMS,
        ),
    };
    if config.kubernetes_enabled {
        tasks.push(http::teams::spawn_resync(state.clone()));
    }
    if let Some(b) = &billing {
        tasks.push(billing::service::spawn_worker(state.clone(), b.clone()));
        tasks.push(billing::metering::spawn(
            state.clone(),
            b.stripe.clone(),
            billing::metering::Meters {
                cpu: config.stripe_meter_cpu.clone(),
                memory: config.stripe_meter_memory.clone(),
            },
            std::time::Duration::from_secs(config.usage_sample_seconds),
        ));
    }
    let mut router = http::router(&state);
    if let Some(b) = &billing {
        // Stripe signs its deliveries; no session, so CSRF does not apply (the middleware
        // exempts this path).
        router = router.merge(billing::webhook::router(b.webhook.clone()));
    }
    let router = router
        .route_layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::csrf::protect))
        .layer(sessions::layer(store, &config))
        // A span per request: its method and route (the matched pattern, never the query, which
        // can carry an OAuth code), so what a handler logs says which request it served.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or("unmatched", |p| p.as_str());
                tracing::info_span!("request", method = %req.method(), route)
            }),
        )
        .with_state(state.clone());
    Ok(App { router, state, tasks })
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    app: &App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, app.router.clone())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Starts `app` on a loopback port in the background (tests and benchmarks).
pub async fn spawn(app: &App) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = app.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,kube=warn,tower_sessions=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        let _ = builder.try_init();
    } else {
        let _ = builder.json().try_init();
    }
}

/// Runs the server with `config` until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    install_crypto_provider();
    init_tracing();
    if config.print_openapi {
        println!("{}", openapi::document());
        return Ok(());
    }
    if config.reencrypt_secrets {
        let db = Db::connect(config.postgres_dsn(), &config.sqlite_path).await?;
        let store = secrets::database::DatabaseStore::new(db, secrets::database::Keyring::from_config(&config)?);
        let (done, remaining) = store.reencrypt().await?;
        println!("re-encrypted {done} secrets under the current key; {remaining} remain under other keys");
        if remaining > 0 {
            anyhow::bail!("{remaining} secrets could not be re-encrypted: keep their keys in SECRETS_PREVIOUS_KEYS");
        }
        return Ok(());
    }
    if let Some((who, active)) = config
        .deactivate_user
        .as_deref()
        .map(|w| (w, false))
        .or(config.reactivate_user.as_deref().map(|w| (w, true)))
    {
        // Issue 15 item 13: an administrator locks a user out (sessions and tokens answer 401,
        // sign-in 403, no sandbox is recreated) or lets them back in.
        let db = Db::connect(config.postgres_dsn(), &config.sqlite_path).await?;
        let user = db.set_user_active(who, active).await?;
        let done = if active { "reactivated" } else { "deactivated" };
        println!("{done} user {} ({})", user.id, user.email);
        return Ok(());
    }
    if let Some((org, plan)) = &config.set_org_plan {
        let db = Db::connect(config.postgres_dsn(), &config.sqlite_path).await?;
        if !teams::store::set_org_plan(&db, org, *plan).await? {
            anyhow::bail!("no organization {org:?} (GET /api/orgs lists a user's organizations and their ids)");
        }
        println!("organization {org} is on the {} plan", plan.as_str());
        return Ok(());
    }
    if config.migrate_only {
        Db::connect(config.postgres_dsn(), &config.sqlite_path).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    if config.dev_mode {
        tracing::warn!(
            "DEV_MODE=true: AUTHENTICATION IS OFF, every request is signed in as dev@localhost. \
             Never enable DEV_MODE in production."
        );
        if !config.server_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %config.server_addr,
                "DEV_MODE=true with SERVER_ADDR {}, which is not a loopback address: anyone who can reach it \
                 is signed in as dev@localhost (leave SERVER_ADDR unset to listen on 127.0.0.1 only)",
                config.server_addr
            );
        }
    }
    let addr = config.server_addr;
    let metrics_addr = config.metrics_addr;
    let base_url = config.base_url.clone();
    let app = app(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("SERVER_ADDR {addr}: cannot listen"))?;
    let metrics_listener = TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("METRICS_ADDR {metrics_addr}: cannot listen"))?;
    let metrics_router = metrics::router(app.state.metrics.clone());
    let metrics_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_router).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(%addr, %metrics_addr, url = %base_url, "k8s-scheduler server listening");
    let result = serve(&app, listener, shutdown_signal()).await;
    metrics_task.abort();
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
