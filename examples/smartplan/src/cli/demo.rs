//! `smartplan demo`: SQLite in a data directory, keys created on first run, the cast seeded
//! (idempotently), the dev mailbox and SMS outbox, the server on 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ciam_core::clock::{OsRandom, RandomSource, SystemClock};
use ciam_saml::idp::{ServiceProviderOptions, ServiceProviderRegistrations};
use ciam_store::SqlStore;
use url::Url;

use crate::config::{Config, ServerSecret};
use crate::demo::{self, SeedOptions};
use crate::state::{Assembly, Delivery, assemble};

/// Options of `smartplan demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the database, keys and secret are kept (kept between runs).
    #[arg(long, default_value = "smartplan-data")]
    pub data_dir: PathBuf,
    /// Where the server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where SmartPlan Application (the demo SAML service provider) listens.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub app_listen: SocketAddr,
    /// Seed no KOKO Media registration (the browser story registers KOKO Media itself).
    #[arg(long)]
    pub without_koko_registration: bool,
    /// The database (`sqlite://PATH` or `postgres://...`); default: `smartplan.db` in the data
    /// directory.
    #[arg(long)]
    pub database_url: Option<String>,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key file.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyFileError),
    /// The database.
    #[error("database: {0}")]
    Store(#[from] ciam_core::StoreError),
    /// Assembling the state.
    #[error(transparent)]
    Assemble(#[from] crate::state::AssembleError),
    /// Seeding the cast.
    #[error(transparent)]
    Seed(#[from] demo::SeedError),
    /// Serving.
    #[error(transparent)]
    Serve(#[from] super::server::ServeError),
    /// SmartPlan Application could not be set up.
    #[error("SmartPlan Application: {0}")]
    App(String),
    /// The listen address does not make a base URL.
    #[error("cannot make a base URL from {0}")]
    BaseUrl(SocketAddr),
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    super::init_tracing();
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| DemoError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let random: Arc<dyn RandomSource> = Arc::new(OsRandom);
    let secret_hex =
        crate::keys::ensure_secret_file(&data_dir.join("secret.key"), random.as_ref())?;
    let secret =
        ServerSecret::from_hex(&secret_hex).ok_or_else(|| crate::keys::KeyFileError::Invalid {
            path: data_dir.join("secret.key").display().to_string(),
            reason: "expected 64 hexadecimal characters".into(),
        })?;
    let saml_key = crate::keys::ensure_signing_key(
        &data_dir.join("saml-idp.key.pem"),
        &data_dir.join("saml-idp.crt.pem"),
        "SmartPlan demo IdP",
        random.as_ref(),
    )?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("smartplan.db").display()));
    let store = Arc::new(SqlStore::open(&database_url).await?);
    let base = Url::parse(&format!("http://{}", args.listen))
        .map_err(|_| DemoError::BaseUrl(args.listen))?;
    let mut config = Config::new(base, database_url, secret);
    config.listen = args.listen;
    config.demo = true;
    let state = assemble(Assembly {
        config,
        store,
        clock: Arc::new(SystemClock),
        random,
        saml_key,
        saml_registry: None,
        delivery: Delivery::Dev,
    })?;
    let mailbox = state
        .dev_mailbox
        .clone()
        .unwrap_or_else(|| Arc::new(ciam_core::delivery::DevMailbox::default()));
    let seed = SeedOptions {
        city_group_requires_mfa: true,
        without_koko_registration: args.without_koko_registration,
        ..SeedOptions::default()
    };
    demo::seed(&state.ciam, &mailbox, seed).await?;

    let application = smartplan_application(&state, args.app_listen).await?;
    let app_listener = super::server::bind(args.app_listen).await?;
    let listener = super::server::bind(args.listen).await?;
    let base = state.config.base_url();
    println!(
        "SmartPlan demo is running (data in {}).",
        data_dir.display()
    );
    println!();
    println!("  Sign in:        {base}/signin");
    println!(
        "  (Demo: staff sign in without a second factor; `smartplan serve` requires one for staff by default, [security] require_mfa.)"
    );
    println!("  Dev mailbox:    {base}/dev/mail");
    println!("  SMS outbox:     {base}/dev/sms");
    println!("  Back office:    {base}/backoffice");
    println!("  API document:   {base}/api/openapi.json");
    println!(
        "  SmartPlan Application (SAML SP): {}",
        application.base_url()
    );
    println!();
    println!("  Demo sign-ins (password {}):", demo::DEMO_PASSWORD);
    println!("    Scott Long, account manager   {}", demo::SCOTT);
    println!("    Betty Office, back office     {}", demo::BETTY);
    println!("    Karl Kearnes (after approval) {}", demo::KARL);
    println!();
    println!(
        "  The story: sign in as Scott, invite Jeremy Mills ({}) as City Group's",
        demo::JEREMY
    );
    println!("  contact person, then open the invitation from the dev mailbox.");
    println!();
    println!("Press Ctrl-C to stop.");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let app_task = tokio::spawn(async move {
        let _ = axum::serve(app_listener, smartplan_app::app(application))
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await;
    });
    let result = super::server::serve(
        listener,
        crate::app(state),
        super::server::shutdown_signal(),
    )
    .await;
    let _ = stop.send(true);
    let _ = app_task.await;
    result?;
    Ok(())
}

/// Sets up SmartPlan Application (the demo SAML SP) on `listen` against this server's IdP,
/// and registers it (idempotently) as a service provider for the service `smartplan-app`.
pub async fn smartplan_application(
    state: &crate::AppState,
    listen: SocketAddr,
) -> Result<smartplan_app::AppState, DemoError> {
    let idp_metadata = state
        .saml
        .metadata(false, None)
        .map_err(|e| DemoError::App(e.to_string()))?;
    let mut config = smartplan_app::AppConfig::new(format!("http://{listen}"), idp_metadata);
    // "Open SmartPlan Application" on MySmartPlan signs in by IdP-initiated sign-on.
    config.allow_idp_initiated = true;
    let application =
        smartplan_app::AppState::new(config, Arc::new(SystemClock), Arc::new(OsRandom))
            .map_err(|e| DemoError::App(e.to_string()))?;
    let registrations = ServiceProviderRegistrations::new(state.ciam.clone());
    let options = ServiceProviderOptions {
        service_key: Some(demo::APP_SERVICE.to_owned()),
        allow_idp_initiated: true,
        ..ServiceProviderOptions::default()
    };
    let metadata = application.sp_metadata();
    let system = ciam_core::Principal::System;
    match registrations
        .register(&system, &metadata, options.clone())
        .await
    {
        Ok(_) => {}
        Err(ciam_saml::idp::RegistrationError::AlreadyRegistered(entity_id)) => {
            registrations
                .update(&system, &entity_id, Some(&metadata), options)
                .await
                .map_err(|e| DemoError::App(e.to_string()))?;
        }
        Err(other) => return Err(DemoError::App(other.to_string())),
    }
    Ok(application)
}
