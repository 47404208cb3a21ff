//! `smartplan-app`: runs SmartPlan Application, a SAML service provider for the SmartPlan IdP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use smartplan_app::{AppConfig, AppState, app, fetch_metadata};

/// SmartPlan Application: shows who signed in through SmartPlan and their application roles.
#[derive(Debug, Parser)]
#[command(name = "smartplan-app", version)]
struct Cli {
    /// Where to listen.
    #[arg(long, env = "SMARTPLAN_APP_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The public base URL of this application.
    #[arg(
        long,
        env = "SMARTPLAN_APP_BASE_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    base_url: String,
    /// The SP entity id (default: BASE_URL/saml/metadata).
    #[arg(long, env = "SMARTPLAN_APP_ENTITY_ID")]
    entity_id: Option<String>,
    /// The IdP metadata: an http(s) URL or a file.
    #[arg(
        long,
        env = "SMARTPLAN_APP_IDP_METADATA",
        default_value = "http://127.0.0.1:8080/saml/metadata"
    )]
    idp_metadata: String,
    /// Accept IdP-initiated (unsolicited) responses.
    #[arg(long, env = "SMARTPLAN_APP_ALLOW_IDP_INITIATED")]
    allow_idp_initiated: bool,
    /// A PEM private key to sign requests with (with --signing-cert).
    #[arg(long, env = "SMARTPLAN_APP_SIGNING_KEY", requires = "signing_cert")]
    signing_key: Option<PathBuf>,
    /// The PEM certificate of the signing key.
    #[arg(long, env = "SMARTPLAN_APP_SIGNING_CERT", requires = "signing_key")]
    signing_cert: Option<PathBuf>,
    /// Print this application's SP metadata and exit (to register it with the IdP).
    #[arg(long)]
    print_metadata: bool,
}

async fn run(cli: Cli) -> Result<(), String> {
    let metadata =
        if cli.idp_metadata.starts_with("http://") || cli.idp_metadata.starts_with("https://") {
            fetch_metadata(&cli.idp_metadata)
                .await
                .map_err(|e| e.to_string())?
        } else {
            std::fs::read_to_string(&cli.idp_metadata)
                .map_err(|e| format!("cannot read {}: {e}", cli.idp_metadata))?
        };
    let mut config = AppConfig::new(cli.base_url, metadata);
    config.entity_id = cli.entity_id;
    config.allow_idp_initiated = cli.allow_idp_initiated;
    if let (Some(key), Some(cert)) = (&cli.signing_key, &cli.signing_cert) {
        let key_pem = std::fs::read_to_string(key)
            .map_err(|e| format!("cannot read {}: {e}", key.display()))?;
        let cert_pem = std::fs::read_to_string(cert)
            .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        config.signing_key = Some(
            ciam_saml::SigningKey::from_pem(&key_pem, &cert_pem)
                .map_err(|e| format!("the signing key was refused: {e}"))?,
        );
    }
    let state = AppState::new(
        config,
        Arc::new(ciam_core::SystemClock),
        Arc::new(ciam_core::OsRandom),
    )
    .map_err(|e| e.to_string())?;
    if cli.print_metadata {
        println!("{}", state.sp_metadata());
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    println!(
        "SmartPlan Application on {} (SP entity id {}, IdP {})",
        state.base_url(),
        state.entity_id(),
        state.idp_entity_id()
    );
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("the server stopped: {e}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("smartplan-app: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smartplan-app: {error}");
            ExitCode::FAILURE
        }
    }
}
