//! The command line: `smartplan demo | serve | story | migrate | import | api-key | webhook |
//! saml`.
//! Each subcommand has its own module; [`main`] parses and dispatches.

pub mod admin;
pub mod demo;
pub mod import;
pub mod serve;
pub mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SmartPlan: the reference server of ciam-rs.
#[derive(Debug, Parser)]
#[command(name = "smartplan", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo: SQLite in a data directory, the cast seeded, dev mailbox and SMS outbox.
    Demo(demo::DemoArgs),
    /// Run the server for real use (configuration: TOML file and SMARTPLAN_* variables).
    Serve(serve::ConfigArgs),
    /// Apply pending database migrations.
    Migrate(serve::ConfigArgs),
    /// Import users from a CSV or JSON file (streaming; a per-row report; nothing half-imported).
    Import {
        /// The configuration.
        #[command(flatten)]
        config: serve::ConfigArgs,
        /// What to import.
        #[command(flatten)]
        import: import::ImportArgs,
    },
    /// Manage API keys of integrations (the CRM).
    #[command(name = "api-key")]
    ApiKey {
        /// The configuration.
        #[command(flatten)]
        config: serve::ConfigArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::ApiKeyCommand,
    },
    /// Manage the webhook endpoints that receive CRM events.
    Webhook {
        /// The configuration.
        #[command(flatten)]
        config: serve::ConfigArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::WebhookCommand,
    },
    /// Manage SAML service providers of SmartPlan's identity provider.
    Saml {
        /// The configuration.
        #[command(flatten)]
        config: serve::ConfigArgs,
        /// What to do.
        #[command(subcommand)]
        command: admin::SamlCommand,
    },
    /// Walk the SmartPlan story through the library and print each step (no web server).
    Story {
        /// Where the story's SQLite database goes (created afresh each run).
        #[arg(long, default_value = "smartplan-data")]
        data_dir: PathBuf,
    },
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("smartplan: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Demo(args) => report(demo::run(args).await),
        Command::Serve(args) => report(serve::run(args).await),
        Command::Migrate(args) => report(admin::migrate(args).await),
        Command::Import { config, import } => {
            let result = async {
                let (config, store) = admin::store_of(&config).await?;
                let ciam = admin::ciam_for(&config, store)?;
                import::run(&ciam, &import, &mut std::io::stdout())
                    .await
                    .map_err(admin::AdminError::from)
            }
            .await;
            report(result.map(|_| ()))
        }
        Command::ApiKey { config, command } => {
            let result = async {
                let (_, store) = admin::store_of(&config).await?;
                admin::api_key(&store, command, &mut std::io::stdout()).await
            }
            .await;
            report(result)
        }
        Command::Webhook { config, command } => {
            let result = async {
                let (config, store) = admin::store_of(&config).await?;
                admin::webhook(&config, store, command, &mut std::io::stdout()).await
            }
            .await;
            report(result)
        }
        Command::Saml { config, command } => {
            let result = async {
                let (config, store) = admin::store_of(&config).await?;
                admin::saml(&config, store, command, &mut std::io::stdout()).await
            }
            .await;
            report(result)
        }
        Command::Story { data_dir } => match crate::story::run(&data_dir).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("smartplan: the story stopped: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smartplan: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the log subscriber (`RUST_LOG`, default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
