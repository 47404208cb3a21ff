//! Administration commands: `migrate`, `api-key create|list|revoke`,
//! `webhook add|list|remove`. They read the same configuration as `serve`.

use std::collections::BTreeSet;
use std::sync::Arc;

use ciam_core::clock::{Clock, OsRandom, SystemClock};
use ciam_core::store::SharedStore;
use clap::Subcommand;

use super::serve::{ConfigArgs, open_store};
use crate::api::keys;
use crate::config::ConfigError;

/// `smartplan api-key ...`.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and stored only as a hash.
    Create {
        /// The integration's name (recorded as the actor of what it does).
        #[arg(long)]
        name: String,
        /// Scopes: provisioning, invitations, leads, read (repeat or separate with commas).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List keys (ids, names, scopes; never secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id (the part after `spk_` and before the next `_`).
        id: String,
    },
}

/// `smartplan webhook ...`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add (or replace) an endpoint that receives CRM events.
    Add {
        /// A name for the endpoint.
        #[arg(long)]
        name: String,
        /// Where events are posted (https; http only to loopback).
        #[arg(long)]
        url: String,
        /// The Standard Webhooks secret (whsec_...); read from SMARTPLAN_WEBHOOK_ADD_SECRET
        /// when not given.
        #[arg(long, env = "SMARTPLAN_WEBHOOK_ADD_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// List stored endpoints.
    List,
    /// Remove a stored endpoint.
    Remove {
        /// The endpoint's name.
        name: String,
    },
}

/// `smartplan saml ...`.
#[derive(Debug, Subcommand)]
pub enum SamlCommand {
    /// Service providers that sign their users in at SmartPlan's IdP.
    #[command(subcommand)]
    Sp(SpCommand),
}

/// `smartplan saml sp ...`.
#[derive(Debug, Subcommand)]
pub enum SpCommand {
    /// Register a service provider from its metadata (a file, or an http(s) URL).
    Add {
        /// The metadata file or URL.
        metadata: String,
        /// The catalog service whose application roles the SP receives (and which a person
        /// needs a role in to sign in there).
        #[arg(long)]
        service: Option<String>,
        /// Allow IdP-initiated sign-on.
        #[arg(long)]
        allow_idp_initiated: bool,
    },
    /// List registered service providers.
    List,
    /// Remove a service provider by entity id.
    Remove {
        /// The SP's entity id.
        entity_id: String,
    },
}

/// Why an administration command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database.
    #[error("database: {0}")]
    Store(#[from] ciam_core::StoreError),
    /// API keys.
    #[error(transparent)]
    ApiKey(#[from] keys::ApiKeyError),
    /// Webhooks.
    #[error(transparent)]
    Webhook(#[from] crate::webhooks::WebhookSetupError),
    /// An unknown scope.
    #[error("unknown scope {0:?}; use provisioning, invitations, leads or read")]
    Scope(String),
    /// The façade.
    #[error(transparent)]
    Ciam(#[from] ciam_core::BuildError),
    /// SAML registrations.
    #[error("saml: {0}")]
    Saml(String),
    /// The user import.
    #[error(transparent)]
    Import(#[from] super::import::ImportCommandError),
}

/// The façade on `store` with the configuration's secret and policy (for commands that call
/// the library as the system).
pub fn ciam_for(config: &crate::Config, store: SharedStore) -> Result<ciam_core::Ciam, AdminError> {
    Ok(ciam_core::Ciam::builder()
        .store(store)
        .clock(Arc::new(SystemClock))
        .random(Arc::new(OsRandom))
        .secret_key(config.secret.sealing_key())
        .policy(config.policy())
        .build()?)
}

/// Runs `saml` commands.
pub async fn saml(
    config: &crate::Config,
    store: SharedStore,
    command: SamlCommand,
    out: &mut dyn std::io::Write,
) -> Result<(), AdminError> {
    use ciam_saml::idp::{ServiceProviderOptions, ServiceProviderRegistrations};
    let registrations = ServiceProviderRegistrations::new(ciam_for(config, store)?);
    let system = ciam_core::Principal::System;
    let SamlCommand::Sp(command) = command;
    match command {
        SpCommand::Add {
            metadata,
            service,
            allow_idp_initiated,
        } => {
            let xml = if metadata.starts_with("http://") || metadata.starts_with("https://") {
                smartplan_app::fetch_metadata(&metadata)
                    .await
                    .map_err(|e| AdminError::Saml(e.to_string()))?
            } else {
                std::fs::read_to_string(&metadata)
                    .map_err(|e| AdminError::Saml(format!("cannot read {metadata}: {e}")))?
            };
            let registered = registrations
                .register(
                    &system,
                    &xml,
                    ServiceProviderOptions {
                        service_key: service,
                        allow_idp_initiated,
                        ..ServiceProviderOptions::default()
                    },
                )
                .await
                .map_err(|e| AdminError::Saml(e.to_string()))?;
            let _ = writeln!(out, "registered service provider {:?}", registered);
        }
        SpCommand::List => {
            for registered in registrations
                .list(&system)
                .await
                .map_err(|e| AdminError::Saml(e.to_string()))?
            {
                let _ = writeln!(out, "{registered:?}");
            }
        }
        SpCommand::Remove { entity_id } => {
            registrations
                .remove(&system, &entity_id)
                .await
                .map_err(|e| AdminError::Saml(e.to_string()))?;
            let _ = writeln!(out, "removed service provider {entity_id}");
        }
    }
    Ok(())
}

/// `smartplan migrate`: applies pending migrations and prints the schema version.
pub async fn migrate(args: ConfigArgs) -> Result<(), AdminError> {
    let config = args.load()?;
    let store = open_store(&config, true).await?;
    let version = store.schema_version().await?;
    println!("database schema at version {version}");
    store.close().await;
    Ok(())
}

/// Runs `api-key` commands, writing to `out`.
pub async fn api_key(
    store: &SharedStore,
    command: ApiKeyCommand,
    out: &mut dyn std::io::Write,
) -> Result<(), AdminError> {
    match command {
        ApiKeyCommand::Create { name, scopes } => {
            let scopes = scopes
                .iter()
                .map(|s| keys::parse_scope(s).ok_or_else(|| AdminError::Scope(s.clone())))
                .collect::<Result<BTreeSet<_>, _>>()?;
            let created = keys::create(store, &OsRandom, SystemClock.now(), &name, scopes).await?;
            let _ = writeln!(out, "{}", created.key);
            let _ = writeln!(
                out,
                "# API key {} for {name}: shown only now; give it to the integration as \
                 Authorization: Bearer <key>",
                created.id
            );
        }
        ApiKeyCommand::List => {
            for key in keys::list(store).await? {
                let scopes: Vec<String> = key
                    .scopes
                    .iter()
                    .map(|s| format!("{s:?}").to_lowercase())
                    .collect();
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    key.id,
                    key.name,
                    scopes.join(","),
                    key.created_at.to_rfc3339()
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            keys::revoke(store, &id).await?;
            let _ = writeln!(out, "revoked API key {id}");
        }
    }
    Ok(())
}

/// Runs `webhook` commands.
pub async fn webhook(
    config: &crate::Config,
    store: SharedStore,
    command: WebhookCommand,
    out: &mut dyn std::io::Write,
) -> Result<(), AdminError> {
    match command {
        WebhookCommand::Add { name, url, secret } => {
            let ciam = ciam_for(config, store)?;
            crate::webhooks::add(&ciam, &config.secret, &name, &url, &secret).await?;
            let _ = writeln!(out, "webhook {name} -> {url} stored (secret sealed)");
        }
        WebhookCommand::List => {
            for (name, url) in crate::webhooks::list(&store).await? {
                let _ = writeln!(out, "{name}\t{url}");
            }
        }
        WebhookCommand::Remove { name } => {
            crate::webhooks::remove(&store, &name).await?;
            let _ = writeln!(out, "removed webhook {name}");
        }
    }
    Ok(())
}

/// Opens the configured store for an administration command.
pub async fn store_of(args: &ConfigArgs) -> Result<(crate::Config, SharedStore), AdminError> {
    let config = args.load()?;
    let store: SharedStore = open_store(&config, false).await?;
    Ok((config, store))
}
