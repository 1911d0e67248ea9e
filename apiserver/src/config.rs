//! Server configuration: every server variable of the configuration reference
//! (`shared/seed/configuration-reference.txt`), with its documented default, parsed in one place.
//! A wrong or missing value stops start-up with a message that names the variable.
//! Secret values are wrapped in [`SecretString`], whose `Debug` prints `[REDACTED]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Where sessions are kept.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionBackend {
    /// In memory, lost on restart (local development).
    Memory,
    /// In the PostgreSQL database of `DATABASE_DSN`.
    Postgres,
    /// In Redis at `REDIS_ADDR`.
    Redis,
}

/// Where secret values are kept.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretsBackend {
    /// Encrypted (AES-256-GCM) in the database; needs `SECRETS_ENCRYPTION_KEY`.
    Database,
    /// HashiCorp Vault (or OpenBao) KV v2; needs `VAULT_ADDR` and a token.
    Vault,
    /// AWS Secrets Manager; needs `AWS_REGION`.
    Aws,
}

/// How invitation emails are sent.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailProvider {
    /// An SMTP relay (`SMTP_HOST`, `SMTP_PORT`, `SMTP_USERNAME`, `SMTP_PASSWORD`).
    Smtp,
    /// SendGrid's HTTP API (`SENDGRID_API_KEY`).
    Sendgrid,
}

/// The k8s-scheduler HTTP server: sign-in, sessions, API tokens, templates and deployments.
#[derive(Parser, Debug, Clone)]
#[command(name = "apiserver", version, about)]
// The controller requires DEPLOYMENT_DOMAIN; the server has the reference's default.
#[command(mut_arg("deployment_domain", |a| a.required(false).default_value("example.com")))]
pub struct Config {
    /// PostgreSQL connection string; empty: an embedded SQLite file (see `SQLITE_PATH`).
    #[arg(long, env = "DATABASE_DSN", value_parser = parse_secret, hide_env_values = true)]
    pub database_dsn: Option<SecretString>,

    /// File of the embedded SQLite database used when `DATABASE_DSN` is empty.
    #[arg(long, env = "SQLITE_PATH", default_value = "k8s-scheduler.db")]
    pub sqlite_path: PathBuf,

    /// Google OAuth2 client ID (required unless `DEV_MODE`).
    #[arg(long, env = "GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,

    /// Google OAuth2 client secret (required unless `DEV_MODE`).
    #[arg(long, env = "GOOGLE_CLIENT_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub google_client_secret: Option<SecretString>,

    /// OAuth callback URL; must match the authorized redirect URI (required unless `DEV_MODE`).
    #[arg(long, env = "GOOGLE_REDIRECT_URL", value_parser = parse_url)]
    pub google_redirect_url: Option<Url>,

    /// OpenID Connect issuer whose discovery document gives the sign-in endpoints and keys.
    /// Google by default; tests point it at an OIDC provider on loopback.
    #[arg(long, env = "OIDC_ISSUER_URL", default_value = "https://accounts.google.com", value_parser = parse_url)]
    pub oidc_issuer_url: Url,

    /// Local development: no OAuth, every request is signed in as dev@localhost. Never in production.
    #[arg(long, env = "DEV_MODE", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub dev_mode: bool,

    /// Serve the embedded React SPA.
    #[arg(long, env = "REACT_UI", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub react_ui: bool,

    /// HTTP listen address (`:8081` = every interface, port 8081). With DEV_MODE the default is
    /// loopback only (127.0.0.1:8081); an explicit SERVER_ADDR is honoured.
    #[arg(long, env = "SERVER_ADDR", default_value = ":8081", value_parser = parse_listen_addr)]
    pub server_addr: SocketAddr,

    /// Listen address of the Prometheus `/metrics` endpoint (never served on SERVER_ADDR). The
    /// controller's variable of the same name has its own default (`127.0.0.1:8080`).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9090", value_parser = parse_listen_addr)]
    pub metrics_addr: SocketAddr,

    /// Public URL of the application, for OAuth redirects, email links and the CSRF origin check.
    #[arg(long, env = "BASE_URL", default_value = "http://localhost:8081", value_parser = parse_url)]
    pub base_url: Url,

    /// The values the controller reads too (DEPLOYMENT_DOMAIN, PLATFORM_NAMESPACE,
    /// CLUSTER_SECRET_STORE, ALLOWED_REGISTRIES, APP_URL_SCHEME, APP_URL_PORT), with its parsers,
    /// so that the API refuses what the controller would.
    #[command(flatten)]
    pub settings: policy::Settings,

    /// Write UserSandbox and UserDeployment resources to Kubernetes. Off: deployments are kept in
    /// the database and rendered, with status Pending (reason KubernetesDisabled).
    #[arg(long, env = "KUBERNETES_ENABLED", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub kubernetes_enabled: bool,

    /// Namespace pattern of user sandboxes; `%s` is replaced with the user id.
    #[arg(long, env = "KUBERNETES_NAMESPACE", default_value = "sandbox-%s", value_parser = parse_namespace_pattern)]
    pub kubernetes_namespace: String,

    /// Resync period of the status caches (the watches are re-listed this often).
    #[arg(long, env = "KUBERNETES_RECONCILE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub kubernetes_reconcile_interval: Duration,

    /// Labels put on the UserSandboxes the server creates (`key=value,...`), e.g. to match a
    /// controller's SANDBOX_SELECTOR when several installations share a cluster.
    #[arg(long, env = "SANDBOX_LABELS", default_value = "", value_parser = parse_labels)]
    pub sandbox_labels: Labels,

    /// Session storage: memory, postgres or redis.
    #[arg(
        long,
        env = "SESSION_BACKEND",
        value_enum,
        default_value = "memory",
        ignore_case = true
    )]
    pub session_backend: SessionBackend,

    /// Session lifetime after the last change (e.g. `1h`, `24h`, `168h`); at most 720h (30 days).
    #[arg(long, env = "SESSION_DURATION", default_value = "24h", value_parser = parse_session_duration)]
    pub session_duration: Duration,

    /// Absolute session lifetime: a session ends this long after sign-in however active it is;
    /// at least SESSION_DURATION, at most 720h (30 days).
    #[arg(long, env = "SESSION_MAX_LIFETIME", default_value = "168h", value_parser = parse_session_duration)]
    pub session_max_lifetime: Duration,

    /// Name of the session cookie.
    #[arg(long, env = "SESSION_COOKIE_NAME", default_value = "session_id", value_parser = parse_cookie_name)]
    pub session_cookie_name: String,

    /// How often expired sessions are removed (memory and postgres backends).
    #[arg(long, env = "SESSION_CLEANUP_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub session_cleanup_interval: Duration,

    /// Domain attribute of the session cookie (e.g. `.platform.example.com`); empty: the host only.
    /// Must not be DEPLOYMENT_DOMAIN, a parent of it or a name under it (tenant apps would get the
    /// cookie).
    #[arg(long, env = "SESSION_COOKIE_DOMAIN", value_parser = parse_cookie_domain)]
    pub session_cookie_domain: Option<String>,

    /// Name of the cookie that carries the OAuth state during sign-in.
    #[arg(long, env = "STATE_COOKIE_NAME", default_value = "oauth_state", value_parser = parse_cookie_name)]
    pub state_cookie_name: String,

    /// Send cookies over HTTPS only. Enable in production.
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub cookie_secure: bool,

    /// Redis address (`host:port` or a `redis://` URL); required when SESSION_BACKEND=redis.
    #[arg(long, env = "REDIS_ADDR", value_parser = parse_secret, hide_env_values = true)]
    pub redis_addr: Option<SecretString>,

    /// Secrets storage: database, vault or aws.
    #[arg(
        long,
        env = "SECRETS_BACKEND",
        value_enum,
        default_value = "database",
        ignore_case = true
    )]
    pub secrets_backend: SecretsBackend,

    /// Base64 of a 32-byte key (`openssl rand -base64 32`); required when SECRETS_BACKEND=database.
    #[arg(long, env = "SECRETS_ENCRYPTION_KEY", value_parser = parse_encryption_key, hide_env_values = true)]
    pub secrets_encryption_key: Option<SecretString>,

    /// Previous encryption keys (comma-separated base64), still accepted for reading during a key
    /// rotation; new writes use SECRETS_ENCRYPTION_KEY (see `--reencrypt-secrets`).
    #[arg(long, env = "SECRETS_PREVIOUS_KEYS", value_parser = parse_key_list, hide_env_values = true)]
    pub secrets_previous_keys: Option<SecretKeys>,

    /// Vault server address.
    #[arg(long, env = "VAULT_ADDR", value_parser = parse_url)]
    pub vault_addr: Option<Url>,

    /// Vault access token.
    #[arg(long, env = "VAULT_TOKEN", value_parser = parse_secret, hide_env_values = true)]
    pub vault_token: Option<SecretString>,

    /// File holding the Vault token (Vault Agent); preferred over VAULT_TOKEN.
    #[arg(long, env = "VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,

    /// Vault KV v2 mount path.
    #[arg(long, env = "VAULT_MOUNT_PATH", default_value = "secret")]
    pub vault_mount_path: String,

    /// AWS region of Secrets Manager.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// Secrets Manager endpoint override (e.g. a local moto server); empty: AWS's.
    #[arg(long, env = "AWS_ENDPOINT_URL", value_parser = parse_url)]
    pub aws_endpoint_url: Option<Url>,

    /// Most secrets (keys, over all scopes) one user may store; a write of a new one beyond is
    /// refused with 403.
    #[arg(long, env = "SECRETS_MAX_PER_USER", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub secrets_max_per_user: u32,

    /// Largest secret value in bytes (at most 1 MiB, a Kubernetes Secret's limit); a larger one is
    /// refused with 413.
    #[arg(long, env = "SECRETS_MAX_VALUE_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub secrets_max_value_bytes: u32,

    /// Key of the label that tracks a delivered Secret's content (HMAC-SHA256): base64 of 32
    /// bytes. Empty: derived from SECRETS_ENCRYPTION_KEY, else random per process start.
    #[arg(long, env = "SECRETS_HASH_KEY", value_parser = parse_encryption_key, hide_env_values = true)]
    pub secrets_hash_key: Option<SecretString>,

    /// Most `/api/events` streams one user may hold open; more are answered 429.
    #[arg(long, env = "EVENTS_MAX_STREAMS_PER_USER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub events_max_streams_per_user: u32,

    /// Most `/api/events` streams open at once on this server; more are answered 429.
    #[arg(long, env = "EVENTS_MAX_STREAMS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub events_max_streams: u32,

    /// Most bytes of log output one `GET /api/deployments/{name}/logs` response carries (passed to
    /// Kubernetes as `limitBytes`, and enforced by the server); the response then ends with a line
    /// naming this variable. Default 4 MiB.
    #[arg(long, env = "LOGS_MAX_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1024 * 1024 * 1024))]
    pub logs_max_bytes: u64,

    /// Seconds a followed log stream (`follow=true`) stays open; it then ends with a line naming
    /// this variable, and the client reconnects if it still wants more.
    #[arg(long, env = "LOGS_FOLLOW_MAX_SECONDS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub logs_follow_max_seconds: u64,

    /// Most followed log streams one user may hold open; more are answered 429.
    #[arg(long, env = "LOGS_MAX_FOLLOWS_PER_USER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub logs_max_follows_per_user: u32,

    /// Most followed log streams open at once on this server; more are answered 429.
    #[arg(long, env = "LOGS_MAX_FOLLOWS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub logs_max_follows: u32,

    /// Seconds between samples of the apps' CPU and memory (one cluster-wide read of the metrics
    /// API, metrics.k8s.io); the deployment page shows the last hour of them. 10-600.
    #[arg(long, env = "APP_METRICS_INTERVAL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(10..=600))]
    pub app_metrics_interval_seconds: u64,

    /// Enable Stripe billing.
    #[arg(long, env = "BILLING_ENABLED", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub billing_enabled: bool,

    /// Stripe secret key (sk_test_... or sk_live_...).
    #[arg(long, env = "STRIPE_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub stripe_api_key: Option<SecretString>,

    /// Stripe webhook signing secret (whsec_...).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub stripe_webhook_secret: Option<SecretString>,

    /// The previous webhook signing secret, still accepted while the endpoint's secret is rolled
    /// (whsec_...); unset it once Stripe signs with the new one only.
    #[arg(long, env = "STRIPE_WEBHOOK_PREVIOUS_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub stripe_webhook_previous_secret: Option<SecretString>,

    /// Origin of Stripe's API; change it only to point at a Stripe test double (stripe-mock).
    #[arg(long, env = "STRIPE_API_BASE", default_value = "https://api.stripe.com", value_parser = parse_origin)]
    pub stripe_api_base: url::Url,

    /// The Stripe Price (price_...) of the business plan's subscription; unset: the plan cannot be
    /// bought (an administrator can still set it).
    #[arg(long, env = "STRIPE_PRICE_BUSINESS", value_parser = parse_price)]
    pub stripe_price_business: Option<String>,

    /// The Stripe Price (price_...) of the enterprise plan's subscription; unset: not for sale.
    #[arg(long, env = "STRIPE_PRICE_ENTERPRISE", value_parser = parse_price)]
    pub stripe_price_enterprise: Option<String>,

    /// Hours a paid plan is kept after a payment failed (subscription past_due or unpaid) before
    /// the account is moved to the free plan. 0-2160.
    #[arg(long, env = "BILLING_GRACE_PERIOD_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(0..=2160))]
    pub billing_grace_period_hours: u64,

    /// The Stripe billing meter (its event name) that receives CPU use in core-minutes requested
    /// by running apps; empty: CPU use is not reported. The price per unit is the meter's Price in
    /// Stripe.
    #[arg(long, env = "STRIPE_METER_CPU", default_value = "app_cpu_core_minutes", value_parser = parse_meter)]
    pub stripe_meter_cpu: String,

    /// The Stripe billing meter that receives memory use in GiB-minutes requested by running
    /// apps; empty: memory use is not reported.
    #[arg(long, env = "STRIPE_METER_MEMORY", default_value = "app_memory_gib_minutes", value_parser = parse_meter)]
    pub stripe_meter_memory: String,

    /// Seconds between samples of the running apps' requested CPU and memory for usage billing
    /// (with BILLING_ENABLED). 10-600.
    #[arg(long, env = "USAGE_SAMPLE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(10..=600))]
    pub usage_sample_seconds: u64,

    /// Email provider for invitations: smtp or sendgrid; empty: no email is sent (an invitation's
    /// answer then carries its link for the inviting admin to pass on).
    #[arg(long, env = "EMAIL_PROVIDER", value_enum, ignore_case = true)]
    pub email_provider: Option<EmailProvider>,

    /// SMTP server host name; required when EMAIL_PROVIDER=smtp.
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// SMTP server port. 465: TLS from the first byte (implicit TLS); any other port: STARTTLS,
    /// required (mail and credentials are never sent over a connection that did not upgrade).
    #[arg(long, env = "SMTP_PORT", default_value_t = 587, value_parser = clap::value_parser!(u16).range(1..))]
    pub smtp_port: u16,

    /// SMTP user name; with SMTP_PASSWORD, the server is signed in to (AUTH PLAIN/LOGIN, over
    /// TLS only). Empty: no authentication.
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    /// SMTP password; required with SMTP_USERNAME.
    #[arg(long, env = "SMTP_PASSWORD", value_parser = parse_secret, hide_env_values = true)]
    pub smtp_password: Option<SecretString>,

    /// PEM file of CA certificates trusted for the SMTP server in addition to the system's (a
    /// relay with a private CA; the tests' Mailpit).
    #[arg(long, env = "SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,

    /// SendGrid API key; required when EMAIL_PROVIDER=sendgrid.
    #[arg(long, env = "SENDGRID_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub sendgrid_api_key: Option<SecretString>,

    /// Base URL of SendGrid's API, for tests (a fake on loopback); `/v3/mail/send` is appended.
    #[arg(long, env = "SENDGRID_API_URL", default_value = "https://api.sendgrid.com", value_parser = parse_url)]
    pub sendgrid_api_url: Url,

    /// Sender of the platform's emails: `noreply@example.com` or `Name <noreply@example.com>`.
    /// Empty: `k8s-scheduler <noreply@HOST>` with BASE_URL's host. SendGrid and most relays
    /// accept only a sender they have verified: set it to one.
    #[arg(long, env = "EMAIL_FROM", value_parser = parse_email_from)]
    pub email_from: Option<String>,

    /// Anthropic API key; enables AI-assisted template drafts.
    #[arg(long, env = "ANTHROPIC_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub anthropic_api_key: Option<SecretString>,

    /// Path of a kubeconfig file (default: KUBECONFIG, then in-cluster).
    #[arg(long, env = "KUBECONFIG_PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Apply the database migrations and exit (for a Helm pre-upgrade Job).
    #[arg(long)]
    pub migrate_only: bool,

    /// Re-encrypt every stored secret under SECRETS_ENCRYPTION_KEY, report how many remain under
    /// previous keys, and exit.
    #[arg(long)]
    pub reencrypt_secrets: bool,

    /// Print the OpenAPI document and exit.
    #[arg(long)]
    pub print_openapi: bool,

    /// Most API tokens one user may hold; creating more answers 409.
    #[arg(long, env = "API_TOKENS_MAX_PER_USER", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub api_tokens_max_per_user: u32,

    /// Deactivate the user with this id or email and exit: their sessions and API tokens stop
    /// working and their sandbox is not recreated.
    #[arg(long, value_name = "ID_OR_EMAIL", conflicts_with = "reactivate_user")]
    pub deactivate_user: Option<String>,

    /// Reactivate a deactivated user (id or email) and exit.
    #[arg(long, value_name = "ID_OR_EMAIL")]
    pub reactivate_user: Option<String>,

    /// The plan a new organization starts on (free, business or enterprise): its teams and
    /// members per team. Free unless an installation without billing gives its teams more.
    #[arg(long, env = "ORG_DEFAULT_PLAN", default_value = "free", value_parser = parse_plan)]
    pub org_default_plan: crds::Plan,

    /// Most organizations one user may own; creating more answers 403 (each can hold a team, and
    /// each team is a sandbox with its own quota).
    #[arg(long, env = "ORGS_MAX_PER_USER", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub orgs_max_per_user: u32,

    /// Set an organization's plan and exit: `<organization id>=<free|business|enterprise>` (an
    /// administrator's command until billing sets plans).
    #[arg(long, value_name = "ORG=PLAN", value_parser = parse_org_plan)]
    pub set_org_plan: Option<(String, crds::Plan)>,
}

fn parse_price(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || (s.starts_with("price_") && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Ok(s.to_string());
    }
    Err(format!(
        "{s:?} is not a Stripe Price id (price_...); copy it from the product's price in Stripe's dashboard"
    ))
}

fn parse_meter(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Ok(s.to_string());
    }
    Err(format!(
        "{s:?} is not a Stripe meter event name: letters, digits, '_' and '-', at most 100 characters"
    ))
}

fn parse_origin(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() || u.path() != "/" || u.query().is_some() {
        return Err(format!(
            "{s:?} must be an origin such as https://api.stripe.com (scheme and host, no path)"
        ));
    }
    Ok(u)
}

fn parse_plan(s: &str) -> Result<crds::Plan, String> {
    crds::Plan::parse(s.trim()).ok_or_else(|| format!("{s:?} is not a plan: use free, business or enterprise"))
}

fn parse_org_plan(s: &str) -> Result<(String, crds::Plan), String> {
    let (org, plan) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected <organization id>=<plan>, e.g. orgabc123=business"))?;
    Ok((org.trim().to_string(), parse_plan(plan)?))
}

impl Config {
    /// Parses flags and environment and checks the rules that span several variables.
    pub fn load() -> Result<Config, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Config::command().get_matches();
        let mut config = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if config.dev_mode && matches.value_source("server_addr") == Some(clap::parser::ValueSource::DefaultValue) {
            // DEV_MODE signs every caller in: unless SERVER_ADDR says otherwise, only this machine.
            config.server_addr = SocketAddr::from(([127, 0, 0, 1], config.server_addr.port()));
        }
        if config.print_openapi
            || config.migrate_only
            || config.reencrypt_secrets
            || config.deactivate_user.is_some()
            || config.reactivate_user.is_some()
            || config.set_org_plan.is_some()
        {
            // One-shot commands need no sign-in or session settings.
            return Ok(config);
        }
        config
            .check()
            .map_err(|m| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{m}\n")))?;
        Ok(config)
    }

    /// Checks the rules that span several variables; the message names the variable.
    pub fn check(&self) -> Result<(), String> {
        if self.dev_mode {
            if self.cookie_secure {
                return Err(
                    "DEV_MODE=true cannot be combined with COOKIE_SECURE=true: DEV_MODE bypasses \
                            all authentication and must never run in production; unset one of them"
                        .into(),
                );
            }
        } else {
            if self.google_client_id.as_deref().unwrap_or("").is_empty() {
                return Err("GOOGLE_CLIENT_ID is required unless DEV_MODE=true".into());
            }
            if self
                .google_client_secret
                .as_ref()
                .is_none_or(|s| s.expose_secret().is_empty())
            {
                return Err("GOOGLE_CLIENT_SECRET is required unless DEV_MODE=true".into());
            }
            if self.google_redirect_url.is_none() {
                return Err("GOOGLE_REDIRECT_URL is required unless DEV_MODE=true".into());
            }
        }
        match self.session_backend {
            SessionBackend::Redis if self.redis_addr.is_none() => {
                return Err("REDIS_ADDR is required when SESSION_BACKEND=redis".into());
            }
            SessionBackend::Postgres if self.postgres_dsn().is_none() => {
                return Err(
                    "SESSION_BACKEND=postgres requires DATABASE_DSN to name a PostgreSQL database \
                            (postgres://...); without it the server uses SQLite"
                        .into(),
                );
            }
            _ => {}
        }
        if pattern_can_yield(&self.kubernetes_namespace, &self.settings.platform_namespace) {
            return Err(format!(
                "KUBERNETES_NAMESPACE={} can yield PLATFORM_NAMESPACE={} for some user id: a user could get the \
                 platform's own namespace as a sandbox; choose a KUBERNETES_NAMESPACE prefix the platform's \
                 namespace does not start with (e.g. sandbox-%s)",
                self.kubernetes_namespace, self.settings.platform_namespace
            ));
        }
        if let Some(dsn) = &self.database_dsn {
            let dsn = dsn.expose_secret();
            if !(dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")) {
                return Err(
                    "DATABASE_DSN must be a PostgreSQL URL (postgres://user:password@host:5432/db); \
                            leave it unset for the embedded SQLite database"
                        .into(),
                );
            }
        }
        match self.secrets_backend {
            SecretsBackend::Database if self.secrets_encryption_key.is_none() => {
                return Err(
                    "SECRETS_ENCRYPTION_KEY is required when SECRETS_BACKEND=database; generate one with: \
                            openssl rand -base64 32 (there is no default key)"
                        .into(),
                );
            }
            SecretsBackend::Vault if self.vault_addr.is_none() => {
                return Err("VAULT_ADDR is required when SECRETS_BACKEND=vault".into());
            }
            SecretsBackend::Vault if self.vault_token.is_none() && self.vault_token_file.is_none() => {
                return Err(
                    "VAULT_TOKEN_FILE (preferred) or VAULT_TOKEN is required when SECRETS_BACKEND=vault".into(),
                );
            }
            SecretsBackend::Aws if self.aws_region.as_deref().unwrap_or("").is_empty() => {
                return Err("AWS_REGION is required when SECRETS_BACKEND=aws".into());
            }
            _ => {}
        }
        self.check_sessions()?;
        self.check_email()?;
        self.check_billing()?;
        Ok(())
    }

    /// The PostgreSQL DSN, when DATABASE_DSN is set.
    pub fn postgres_dsn(&self) -> Option<&str> {
        self.database_dsn
            .as_ref()
            .map(|s| s.expose_secret())
            .filter(|s| !s.is_empty())
    }

    /// The sandbox namespace of a user.
    pub fn namespace_for(&self, user_id: &str) -> String {
        policy::names::sandbox_namespace(&self.kubernetes_namespace, user_id)
    }

    /// Why `namespace` can never be a sandbox's (a system namespace or PLATFORM_NAMESPACE), if it
    /// is such. Start-up refuses patterns that can yield them for the ids the server assigns; this
    /// is the check at sandbox creation, e.g. for ids kept from an older release.
    pub fn forbidden_sandbox_namespace(&self, namespace: &str) -> Option<String> {
        if namespace == self.settings.platform_namespace {
            return Some(format!(
                "the sandbox namespace {namespace} is the platform's own namespace (PLATFORM_NAMESPACE); \
                 an administrator must change KUBERNETES_NAMESPACE or this user's id"
            ));
        }
        if is_system_namespace(namespace) {
            return Some(format!(
                "the sandbox namespace {namespace} is a system namespace (default, kube-*, openshift-*, ...); \
                 an administrator must change KUBERNETES_NAMESPACE or this user's id"
            ));
        }
        None
    }

    /// The user id whose sandbox namespace is `namespace` (inverse of [`Config::namespace_for`]).
    pub fn user_for_namespace(&self, namespace: &str) -> Option<String> {
        let (prefix, suffix) = self.kubernetes_namespace.split_once("%s")?;
        let id = namespace.strip_prefix(prefix)?.strip_suffix(suffix)?;
        (!id.is_empty()).then(|| id.to_string())
    }

    /// The origin (`scheme://host[:port]`) that state-changing browser requests must come from.
    pub fn origin(&self) -> String {
        self.base_url.origin().ascii_serialization()
    }

    /// A configuration for tests: DEV_MODE, SQLite at `sqlite_path`, memory sessions, no cluster.
    pub fn for_tests(sqlite_path: PathBuf) -> Config {
        let mut c = Config::parse_from(["apiserver"]);
        // Defaults above come from the environment too; tests must not depend on the caller's.
        c.database_dsn = None;
        c.sqlite_path = sqlite_path;
        c.dev_mode = true;
        c.google_client_id = None;
        c.google_client_secret = None;
        c.google_redirect_url = None;
        c.cookie_secure = false;
        c.kubernetes_enabled = false;
        c.session_backend = SessionBackend::Memory;
        c.server_addr = "127.0.0.1:0".parse().expect("loopback address");
        c.metrics_addr = "127.0.0.1:0".parse().expect("loopback address");
        c.settings = policy::Settings::with_domain("example.com");
        c.secrets_backend = SecretsBackend::Database;
        // A fixed key for tests only (32 bytes of 0x2a).
        c.secrets_encryption_key = Some(SecretString::from(
            "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=".to_string(),
        ));
        c.secrets_previous_keys = None;
        c.billing_enabled = false;
        c.stripe_api_key = None;
        c.stripe_webhook_secret = None;
        c.stripe_webhook_previous_secret = None;
        c.stripe_price_business = None;
        c.stripe_price_enterprise = None;
        c
    }
}

// Sessions and cookies (issue 15 items 4, 14, 20).
impl Config {
    /// SESSION_COOKIE_DOMAIN without its leading dot, when set.
    pub fn cookie_domain(&self) -> Option<&str> {
        self.session_cookie_domain
            .as_deref()
            .map(|d| d.trim_start_matches('.'))
            .filter(|d| !d.is_empty())
    }

    /// The session cookie's name as sent: with COOKIE_SECURE, `__Host-` + SESSION_COOKIE_NAME
    /// (`__Secure-` when SESSION_COOKIE_DOMAIN is set, as `__Host-` forbids a Domain), so that a
    /// tenant app on a sibling host cannot set a cookie the server accepts.
    pub fn session_cookie(&self) -> String {
        prefixed_cookie_name(
            &self.session_cookie_name,
            self.cookie_secure,
            self.cookie_domain().is_some(),
        )
    }

    /// The OAuth state cookie's name as sent: `__Host-` + STATE_COOKIE_NAME with COOKIE_SECURE.
    pub fn state_cookie(&self) -> String {
        prefixed_cookie_name(&self.state_cookie_name, self.cookie_secure, false)
    }

    /// Warnings about a configuration that works but weakens isolation from tenant apps.
    pub fn session_warnings(&self) -> Vec<String> {
        let mut out = vec![];
        if let Some(host) = self.base_url.host_str()
            && domain_is_under(&host.to_ascii_lowercase(), &self.settings.deployment_domain)
        {
            out.push(format!(
                "BASE_URL's host {host} is under DEPLOYMENT_DOMAIN {}: tenant apps share its site and can set \
                 cookies for it (the session cookie is protected by COOKIE_SECURE's __Host- prefix, but serve the \
                 platform from a host outside DEPLOYMENT_DOMAIN where possible)",
                self.settings.deployment_domain
            ));
        }
        out
    }

    /// The session rules: SESSION_COOKIE_DOMAIN must not reach tenant apps; SESSION_DURATION
    /// fits in SESSION_MAX_LIFETIME.
    fn check_sessions(&self) -> Result<(), String> {
        if self.session_duration > self.session_max_lifetime {
            return Err(format!(
                "SESSION_DURATION ({}) is longer than SESSION_MAX_LIFETIME ({}), the absolute lifetime of a \
                 session; shorten SESSION_DURATION or raise SESSION_MAX_LIFETIME (at most 720h)",
                hours(self.session_duration),
                hours(self.session_max_lifetime)
            ));
        }
        if let Some(domain) = self.cookie_domain()
            && domain_overlaps(domain, &self.settings.deployment_domain)
        {
            return Err(format!(
                "SESSION_COOKIE_DOMAIN={domain} would send the session cookie to tenant apps under \
                 DEPLOYMENT_DOMAIN={} (it is that domain, a parent of it, or a name under it); leave \
                 SESSION_COOKIE_DOMAIN empty (the platform's host only) or use a domain outside DEPLOYMENT_DOMAIN",
                self.settings.deployment_domain
            ));
        }
        Ok(())
    }
}

// Billing (issue 17): with BILLING_ENABLED the Stripe variables are required and checked.
impl Config {
    fn check_billing(&self) -> Result<(), String> {
        if !self.billing_enabled {
            return Ok(());
        }
        let secret = |v: &Option<SecretString>| {
            v.as_ref()
                .map(|s| s.expose_secret().trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let missing: Vec<&str> = [
            ("STRIPE_API_KEY", secret(&self.stripe_api_key).is_none()),
            ("STRIPE_WEBHOOK_SECRET", secret(&self.stripe_webhook_secret).is_none()),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        if !missing.is_empty() {
            return Err(format!(
                "BILLING_ENABLED=true requires {}: the secret key and the webhook signing secret from Stripe's \
                 dashboard (Developers > API keys, and the webhook endpoint for {}/api/billing/webhook); or set \
                 BILLING_ENABLED=false to let administrators set plans",
                missing.join(" and "),
                self.base_url.as_str().trim_end_matches('/')
            ));
        }
        let key = secret(&self.stripe_api_key).unwrap_or_default();
        if !(key.starts_with("sk_") || key.starts_with("rk_")) {
            return Err(
                "STRIPE_API_KEY must be a Stripe secret or restricted key (sk_live_..., sk_test_... or rk_...), \
                        not a publishable key (pk_...)"
                    .into(),
            );
        }
        for (name, value) in [
            ("STRIPE_WEBHOOK_SECRET", secret(&self.stripe_webhook_secret)),
            (
                "STRIPE_WEBHOOK_PREVIOUS_SECRET",
                secret(&self.stripe_webhook_previous_secret),
            ),
        ] {
            if value.is_some_and(|v| !v.starts_with("whsec_")) {
                return Err(format!(
                    "{name} must be a webhook signing secret (whsec_...), shown on the endpoint's page in Stripe's dashboard"
                ));
            }
        }
        let (business, enterprise) = (
            self.stripe_price(crds::Plan::Business),
            self.stripe_price(crds::Plan::Enterprise),
        );
        if business.is_some() && business == enterprise {
            return Err(
                "STRIPE_PRICE_BUSINESS and STRIPE_PRICE_ENTERPRISE are the same Price: a subscription could \
                        not say which plan it buys"
                    .into(),
            );
        }
        Ok(())
    }

    /// The Stripe Price of paid plan `plan`, when one is configured.
    pub fn stripe_price(&self, plan: crds::Plan) -> Option<&str> {
        match plan {
            crds::Plan::Free => None,
            crds::Plan::Business => self.stripe_price_business.as_deref(),
            crds::Plan::Enterprise => self.stripe_price_enterprise.as_deref(),
        }
        .filter(|p| !p.is_empty())
    }

    /// The plan a Stripe Price buys, if it is one of ours.
    pub fn plan_of_price(&self, price: &str) -> Option<crds::Plan> {
        [crds::Plan::Business, crds::Plan::Enterprise]
            .into_iter()
            .find(|p| self.stripe_price(*p) == Some(price))
    }
}

// Email (issue 16): the variables of the provider EMAIL_PROVIDER names (see `crate::email`).
impl Config {
    /// The variables the chosen email provider needs; empty values count as missing (a Helm
    /// ConfigMap sets every key, some to "").
    fn check_email(&self) -> Result<(), String> {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let secret_set = |v: &Option<SecretString>| v.as_ref().is_some_and(|s| !s.expose_secret().is_empty());
        match self.email_provider {
            None => {}
            Some(EmailProvider::Sendgrid) if !secret_set(&self.sendgrid_api_key) => {
                return Err("SENDGRID_API_KEY is required when EMAIL_PROVIDER=sendgrid".into());
            }
            Some(EmailProvider::Sendgrid) => {}
            Some(EmailProvider::Smtp) => {
                if !set(&self.smtp_host) {
                    return Err("SMTP_HOST is required when EMAIL_PROVIDER=smtp".into());
                }
                if self.smtp_port == 0 {
                    return Err("SMTP_PORT must be a port number (1-65535), e.g. 587 (STARTTLS) or 465 (TLS)".into());
                }
                match (set(&self.smtp_username), secret_set(&self.smtp_password)) {
                    (true, false) => {
                        return Err(
                            "SMTP_PASSWORD is required when SMTP_USERNAME is set (EMAIL_PROVIDER=smtp); \
                             unset SMTP_USERNAME for a server without authentication"
                                .into(),
                        );
                    }
                    (false, true) => {
                        return Err("SMTP_USERNAME is required when SMTP_PASSWORD is set (EMAIL_PROVIDER=smtp)".into());
                    }
                    _ => {}
                }
                if let Some(path) = self.smtp_ca_path() {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("SMTP_CA_FILE {}: cannot read it: {e}", path.display()))?;
                    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                        return Err(format!(
                            "SMTP_CA_FILE {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                            path.display()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// SMTP_CA_FILE, when set and not empty.
    pub fn smtp_ca_path(&self) -> Option<&std::path::Path> {
        self.smtp_ca_file.as_deref().filter(|p| !p.as_os_str().is_empty())
    }

    /// The sender of the platform's emails: EMAIL_FROM, else `k8s-scheduler <noreply@HOST>`
    /// with BASE_URL's host (`noreply@localhost` for an IP address: lettre cannot build an
    /// envelope from a domain literal such as `noreply@[127.0.0.1]`).
    pub fn email_from_mailbox(&self) -> lettre::message::Mailbox {
        // Validated when parsed (parse_email_from); empty means the default.
        if let Some(from) = self.email_from.as_deref().and_then(|f| f.trim().parse().ok()) {
            return from;
        }
        let domain = match self.base_url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            _ => "localhost".to_string(),
        };
        let address = lettre::Address::new("noreply", &domain)
            .or_else(|_| lettre::Address::new("noreply", "localhost"))
            .expect("noreply@localhost is an email address");
        lettre::message::Mailbox::new(Some("k8s-scheduler".into()), address)
    }
}

/// EMAIL_FROM: one mailbox, or empty for the default.
fn parse_email_from(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty() {
        s.parse::<lettre::message::Mailbox>().map_err(|e| {
            format!("{e}; expected an email address such as noreply@example.com or Name <noreply@example.com>")
        })?;
    }
    Ok(s.to_string())
}

/// A duration as the variables spell it: `168h`, or `1h30m` when not whole hours.
fn hours(d: Duration) -> String {
    if d.as_secs().is_multiple_of(3600) && d.subsec_nanos() == 0 {
        format!("{}h", d.as_secs() / 3600)
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// `name` with the `__Host-` (no domain) or `__Secure-` prefix when cookies are secure; a prefix
/// already present is not repeated.
fn prefixed_cookie_name(name: &str, secure: bool, domain: bool) -> String {
    let base = ["__Host-", "__Secure-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    match (secure, domain) {
        (false, _) => base.to_string(),
        (true, false) => format!("__Host-{base}"),
        (true, true) => format!("__Secure-{base}"),
    }
}

/// Whether `domain` is `parent` or a name under it.
fn domain_is_under(domain: &str, parent: &str) -> bool {
    domain == parent || domain.ends_with(&format!(".{parent}"))
}

/// Whether cookies for `domain` reach hosts under `deployment` or the other way round: the same
/// domain, a parent of it, or a name under it.
fn domain_overlaps(domain: &str, deployment: &str) -> bool {
    domain_is_under(domain, deployment) || domain_is_under(deployment, domain)
}

/// SESSION_COOKIE_DOMAIN: a domain name (optional leading dot, DNS labels), as it becomes a cookie
/// attribute. Empty: none.
fn parse_cookie_domain(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    let lower = s.to_ascii_lowercase();
    let name = lower.strip_prefix('.').unwrap_or(&lower);
    if name.len() <= 253 && name.split('.').all(|l| crds::is_dns_label(l, 63)) {
        Ok(lower)
    } else {
        Err(
            "expected a domain name such as platform.example.com or .platform.example.com (DNS labels \
             separated by dots, an optional leading dot; no spaces, ports or ';')"
                .into(),
        )
    }
}

/// The longest SESSION_DURATION: 30 days.
pub const MAX_SESSION_DURATION: Duration = Duration::from_secs(720 * 3600);

/// SESSION_DURATION: a duration of at most [`MAX_SESSION_DURATION`].
fn parse_session_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > MAX_SESSION_DURATION {
        return Err("must be at most 720h (30 days)".into());
    }
    Ok(d)
}

/// Kubernetes labels, `key=value` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub std::collections::BTreeMap<String, String>);

fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut out = std::collections::BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let name = k.rsplit('/').next().unwrap_or(k);
        let value_ok = v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if name.is_empty() || name.len() > 63 || !value_ok {
            return Err(format!("{pair:?} is not a valid Kubernetes label"));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(Labels(out))
}

/// Base64 32-byte keys (SECRETS_PREVIOUS_KEYS).
#[derive(Clone, Debug)]
pub struct SecretKeys(pub Vec<SecretString>);

fn parse_key_list(s: &str) -> Result<SecretKeys, String> {
    let keys: Result<Vec<_>, _> = s
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(parse_encryption_key)
        .collect();
    Ok(SecretKeys(keys?))
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_string()))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// Go-style durations of the reference: `30s`, `1h`, `168h`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 30s, 15m, 1h or 168h"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_url(s: &str) -> Result<Url, String> {
    let u = Url::parse(s).map_err(|e| format!("{e}; expected an absolute URL such as https://app.example.com"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("expected an http:// or https:// URL".into());
    }
    Ok(u)
}

fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| "expected host:port or :port, e.g. :8081 or 127.0.0.1:8081".to_string())
}

fn parse_cookie_name(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        Ok(s.to_string())
    } else {
        Err("expected a cookie name of letters, digits, '-', '_' or '.'".into())
    }
}

/// `%s` exactly once with a prefix or a suffix around it, the result is a namespace name for any
/// user id (up to 30 characters), and no user id can make it a system namespace (`default`,
/// `kube-*`, `openshift-*`, ...: [`is_system_namespace`]).
fn parse_namespace_pattern(s: &str) -> Result<String, String> {
    if s.matches("%s").count() != 1 {
        return Err("must contain %s exactly once (it is replaced with the user id), e.g. sandbox-%s".into());
    }
    if s == "%s" {
        return Err(
            "needs a prefix or a suffix around %s (e.g. sandbox-%s): alone, a user id would choose the namespace"
                .into(),
        );
    }
    let (prefix, _) = s.split_once("%s").unwrap_or_default();
    if let Some(p) = SYSTEM_NAMESPACE_PREFIXES.iter().find(|p| prefix.starts_with(*p)) {
        return Err(format!(
            "puts sandboxes under {p}, which holds system namespaces; use a prefix such as sandbox-%s"
        ));
    }
    if let Some(ns) = SYSTEM_NAMESPACES.iter().find(|ns| pattern_can_yield(s, ns)) {
        return Err(format!(
            "can yield the system namespace {ns} for some user id; use a prefix such as sandbox-%s"
        ));
    }
    for sample in ["a", &"a".repeat(crds::MAX_USER_ID_LEN)] {
        let ns = s.replacen("%s", sample, 1);
        if !crds::is_dns_label(&ns, 63) {
            return Err(format!(
                "yields {ns:?} for user id {sample:?}, which is not a namespace name (a DNS label of at most 63 \
                 lower-case letters, digits and dashes)"
            ));
        }
    }
    Ok(s.to_string())
}

// System namespaces: one list, the one the UserSandbox CRD's CEL rule is made from.
pub use crds::sandbox::{SYSTEM_NAMESPACE_PREFIXES, SYSTEM_NAMESPACES, is_system_namespace};

/// Whether namespace pattern `pattern` (`<prefix>%s<suffix>`) gives `namespace` for some
/// non-empty user id.
pub fn pattern_can_yield(pattern: &str, namespace: &str) -> bool {
    let Some((prefix, suffix)) = pattern.split_once("%s") else {
        return false;
    };
    namespace.len() > prefix.len() + suffix.len() && namespace.starts_with(prefix) && namespace.ends_with(suffix)
}

fn parse_encryption_key(s: &str) -> Result<SecretString, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| "must be base64 (generate one with: openssl rand -base64 32)".to_string())?;
    if bytes.len() != 32 {
        return Err(format!(
            "must decode to 32 bytes, not {} (openssl rand -base64 32)",
            bytes.len()
        ));
    }
    Ok(SecretString::from(s.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_the_reference_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("168h").unwrap(), Duration::from_secs(168 * 3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn namespace_pattern_needs_one_placeholder_and_valid_names() {
        assert!(parse_namespace_pattern("sandbox-%s").is_ok());
        assert!(parse_namespace_pattern("%s-sandbox").is_ok());
        assert!(parse_namespace_pattern("%s").is_err());
        assert!(parse_namespace_pattern("kube-%s").is_err());
        assert!(parse_namespace_pattern("openshift-apps-%s").is_err());
        assert!(parse_namespace_pattern("defaul%s").is_err());
        assert!(parse_namespace_pattern("%s-system").is_err(), "kube + -system");
        assert!(parse_namespace_pattern("sandbox").is_err());
        assert!(parse_namespace_pattern("%s-%s").is_err());
        assert!(parse_namespace_pattern("Sandbox_%s").is_err());
        assert!(parse_namespace_pattern(&format!("{}-%s", "x".repeat(40))).is_err());
    }

    #[test]
    fn listen_address_accepts_the_go_form() {
        assert_eq!(parse_listen_addr(":8081").unwrap(), "0.0.0.0:8081".parse().unwrap());
        assert_eq!(
            parse_listen_addr("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_listen_addr("8081").is_err());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut c = Config::for_tests("x.db".into());
        c.google_client_secret = Some(SecretString::from("top-secret-value".to_string()));
        c.database_dsn = Some(SecretString::from("postgres://u:pw-secret@h/db".to_string()));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("top-secret-value") && !shown.contains("pw-secret"),
            "{shown}"
        );
    }
}
