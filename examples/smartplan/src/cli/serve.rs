//! `smartplan serve`: the server for real use. Configuration from a TOML file and `SMARTPLAN_*`
//! variables; refuses to start, naming the setting, when one is missing or wrong. Runs the CRM
//! dispatchers beside the HTTP server; on Ctrl-C or SIGTERM the server stops accepting,
//! finishes running requests, and each dispatcher stops claiming and finishes (acknowledges or
//! releases) the batch it holds, so no outbox work is lost.

use std::path::PathBuf;
use std::sync::Arc;

use ciam_core::clock::{OsRandom, SystemClock};
use ciam_core::login::{HttpSmsGateway, HttpSmsGatewayConfig};
use ciam_store::{SqlStore, SqlStoreOptions};
use tokio::sync::watch;

use crate::config::{Config, ConfigError, ConfigSource};
use crate::mail::SmtpMailer;
use crate::state::{Assembly, Delivery, assemble};

/// Options of `smartplan serve` (and of the administration commands).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// The TOML configuration file (`SMARTPLAN_*` environment variables override it).
    #[arg(long, short = 'c', env = "SMARTPLAN_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut source = ConfigSource::from_process(self.config.clone());
        source.env.remove("SMARTPLAN_CONFIG");
        source.load()
    }
}

/// Why `serve` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeCommandError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database.
    #[error("database: {0} (run `smartplan migrate` when the schema is behind)")]
    Store(#[from] ciam_core::StoreError),
    /// Keys.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyFileError),
    /// Mail.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailSetupError),
    /// SMS gateway.
    #[error("sms: {0}")]
    Sms(String),
    /// The `[google]` connection could not be stored.
    #[error("google sign-in: {0}")]
    Google(String),
    /// Webhooks.
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::WebhookSetupError),
    /// Assembling the state.
    #[error(transparent)]
    Assemble(#[from] crate::state::AssembleError),
    /// Serving.
    #[error(transparent)]
    Serve(#[from] super::server::ServeError),
}

fn require<T>(value: Option<T>, key: &'static str, hint: &'static str) -> Result<T, ConfigError> {
    value.ok_or(ConfigError::Missing {
        key,
        env: crate::config::env_name(key),
        hint,
    })
}

/// How long a request waits for a database connection before it fails with
/// `StoreErrorKind::Unavailable` (which pages and the API answer with 503): while the database
/// is down, requests answer within this bound instead of piling up.
pub const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often queued mail and SMS are retried (each message waits its own back-off too).
pub const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a graceful shutdown waits for queued mail and SMS to be handed over.
pub const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store of `config` (without migrating: `smartplan migrate` does that); waits for
/// a connection at most [`DATABASE_WAIT`].
pub async fn open_store(
    config: &Config,
    migrate: bool,
) -> Result<Arc<SqlStore>, ciam_core::StoreError> {
    Ok(Arc::new(
        SqlStore::open_with(
            SqlStoreOptions::new(config.database_url.clone())
                .migrate(migrate)
                .acquire_timeout(DATABASE_WAIT),
        )
        .await?,
    ))
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ConfigArgs) -> Result<(), ServeCommandError> {
    let config = args.load()?;
    super::init_tracing();
    let smtp = require(
        config.smtp.clone(),
        "smtp.host",
        "the SMTP server that sends mail",
    )?;
    let sms = require(
        config.sms.clone(),
        "sms.url",
        "the HTTP SMS gateway that sends codes",
    )?;
    let saml_files = require(
        config.saml_keys.clone(),
        "saml.key_file",
        "the PEM private key and certificate (saml.certificate_file) of the SAML IdP",
    )?;
    let saml_key = crate::keys::read_signing_key(&saml_files.key, &saml_files.certificate)?;
    let store = open_store(&config, false).await?;
    let metrics = Arc::new(crate::ops::Metrics::default());
    let mailer = Arc::new(SmtpMailer::new(&smtp, Some(metrics.clone()))?);
    let mut gateway = HttpSmsGatewayConfig::new(
        sms.url.as_str(),
        sms.auth_header.clone(),
        sms.auth_value.expose(),
    );
    gateway.from = sms.sender.clone();
    let sms =
        Arc::new(HttpSmsGateway::new(gateway).map_err(|e| ServeCommandError::Sms(e.to_string()))?);
    let listen = config.listen;
    let secret = config.secret.clone();
    let configured_webhooks = config.webhooks.clone();
    // An SMS carries a sign-in or verification code: kept while the longer-lived one works.
    let sms_lifetime = config
        .lifetimes
        .code
        .max(config.policy().login.sms_code_lifetime);
    let mut state = assemble(Assembly {
        config,
        store: store.clone(),
        clock: Arc::new(SystemClock),
        random: Arc::new(OsRandom),
        saml_key,
        saml_registry: None,
        delivery: Delivery::Queued(crate::outgoing::Outgoing::new(
            mailer,
            sms,
            Arc::new(SystemClock),
            sms_lifetime,
        )),
    })?;
    state.metrics = metrics;
    if let Some(google) = &state.config.google {
        let change = crate::signin::federation::store_google_connection(&state.ciam, google)
            .await
            .map_err(|e| ServeCommandError::Google(e.to_string()))?;
        tracing::info!(?change, "google sign-in configured");
    }
    let shared: ciam_core::store::SharedStore = store.clone();
    let endpoints = crate::webhooks::endpoints(&shared, &secret, &configured_webhooks).await?;
    let dispatchers = crate::webhooks::dispatchers(&state.ciam, &endpoints)?;

    let listener = super::server::bind(listen).await?;
    tracing::info!(%listen, base = %state.config.base_url(), webhooks = dispatchers.len(), "smartplan serving");
    run_with_dispatchers(
        listener,
        state,
        dispatchers,
        super::server::shutdown_signal(),
    )
    .await?;
    store.close().await;
    Ok(())
}

/// Serves `state` on `listener` with `dispatchers` running beside it, until `shutdown`
/// completes; then stops the server gracefully, lets every dispatcher finish its batch and
/// hands over the queued mail and SMS (at most [`DRAIN_WAIT`]).
pub async fn run_with_dispatchers(
    listener: tokio::net::TcpListener,
    state: crate::AppState,
    dispatchers: Vec<(String, Arc<ciam_crm::Dispatcher>)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), super::server::ServeError> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let outgoing = state.outgoing.clone();
    if let Some(outgoing) = outgoing.clone() {
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            outgoing
                .run_until(RETRY_EVERY, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
        }));
    }
    for (name, dispatcher) in dispatchers {
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let report = dispatcher
                .run_until(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
            tracing::info!(webhook = %name, ?report, "dispatcher stopped");
        }));
    }
    let server_stop = stop.clone();
    let result = super::server::serve(listener, crate::app(state), async move {
        shutdown.await;
        let _ = server_stop.send(true);
    })
    .await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    // Running requests are finished: hand over the mail and SMS they queued.
    if let Some(outgoing) = outgoing {
        let (mail, sms) = outgoing.drain(DRAIN_WAIT).await;
        tracing::info!(?mail, ?sms, "outgoing queues drained");
    }
    result
}
