//! CRM webhook endpoints: from configuration (`[[webhooks]]`) and stored with
//! `smartplan webhook add` (a `Setting` of kind `WebhookEndpoint`, key: the name, the signing
//! secret sealed with AES-256-GCM under a key derived from the server secret), and the CRM
//! dispatchers (one per endpoint, each its own outbox consumer) that run inside the server.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciam_core::clock::RandomSource;
use ciam_core::ids::SettingId;
use ciam_core::settings::{Setting, SettingKind};
use ciam_core::store::{RecordRef, SharedStore};
use ciam_core::{ChangeSet, Ciam};
use ciam_crm::webhook::{WebhookConnector, WebhookSecret};
use ciam_crm::{Dispatcher, DispatcherConfig};
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::{Redacted, ServerSecret, WebhookConfig};

/// What is stored for an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEndpoint {
    /// Where events are posted.
    pub url: String,
    /// The signing secret, sealed (base64 of nonce, ciphertext and tag).
    pub sealed_secret: String,
}

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookSetupError {
    /// The name is not usable.
    #[error("the name must be 1 to 64 of letters, digits, '-' and '_'")]
    InvalidName,
    /// The URL is not usable.
    #[error("the URL must be https (http only to a loopback address): {0}")]
    InvalidUrl(String),
    /// The secret is not a Standard Webhooks secret.
    #[error("the secret must be a Standard Webhooks secret (whsec_ followed by base64)")]
    InvalidSecret,
    /// No such endpoint.
    #[error("no webhook endpoint named {0}")]
    NotFound(String),
    /// Sealing or opening failed (a different server secret).
    #[error("the stored secret of {0} cannot be opened with this server secret")]
    Sealing(String),
    /// The connector or dispatcher refused its configuration.
    #[error("webhook {name}: {reason}")]
    Connector {
        /// The endpoint.
        name: String,
        /// Why.
        reason: String,
    },
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] ciam_core::StoreError),
    /// A stored endpoint could not be read or written.
    #[error("setting: {0}")]
    Setting(#[from] ciam_core::settings::SettingError),
}

fn sealing_key(secret: &ServerSecret) -> [u8; 32] {
    secret.derive("smartplan webhook secrets")
}

/// Seals `plain` (AES-256-GCM, random nonce, the name as associated data).
pub fn seal(
    secret: &ServerSecret,
    random: &dyn RandomSource,
    name: &str,
    plain: &str,
) -> Result<String, WebhookSetupError> {
    let mut nonce = [0u8; 12];
    random.fill(&mut nonce);
    let mut tag = [0u8; 16];
    let cipher = encrypt_aead(
        Cipher::aes_256_gcm(),
        &sealing_key(secret),
        Some(&nonce),
        name.as_bytes(),
        plain.as_bytes(),
        &mut tag,
    )
    .map_err(|_| WebhookSetupError::Sealing(name.to_owned()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&cipher);
    out.extend_from_slice(&tag);
    Ok(STANDARD.encode(out))
}

/// Opens what [`seal`] sealed.
pub fn open(secret: &ServerSecret, name: &str, sealed: &str) -> Result<String, WebhookSetupError> {
    let fail = || WebhookSetupError::Sealing(name.to_owned());
    let bytes = STANDARD.decode(sealed).map_err(|_| fail())?;
    if bytes.len() < 28 {
        return Err(fail());
    }
    let (nonce, rest) = bytes.split_at(12);
    let (cipher, tag) = rest.split_at(rest.len() - 16);
    let plain = decrypt_aead(
        Cipher::aes_256_gcm(),
        &sealing_key(secret),
        Some(nonce),
        name.as_bytes(),
        cipher,
        tag,
    )
    .map_err(|_| fail())?;
    String::from_utf8(plain).map_err(|_| fail())
}

fn check_name(name: &str) -> Result<(), WebhookSetupError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(WebhookSetupError::InvalidName)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

fn check_url(text: &str) -> Result<Url, WebhookSetupError> {
    let url = Url::parse(text.trim()).map_err(|e| WebhookSetupError::InvalidUrl(e.to_string()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(WebhookSetupError::InvalidUrl(text.to_owned())),
    }
}

/// Stores (or replaces) the endpoint `name`.
pub async fn add(
    ciam: &Ciam,
    secret: &ServerSecret,
    name: &str,
    url: &str,
    signing_secret: &str,
) -> Result<(), WebhookSetupError> {
    check_name(name)?;
    let url = check_url(url)?;
    WebhookSecret::parse(signing_secret).map_err(|_| WebhookSetupError::InvalidSecret)?;
    let body = StoredEndpoint {
        url: url.to_string(),
        sealed_secret: seal(secret, ciam.random().as_ref(), name, signing_secret)?,
    };
    let store = ciam.store();
    let now = ciam.clock().now();
    let setting = match store.setting(SettingKind::WebhookEndpoint, name).await? {
        Some(mut existing) => {
            existing.replace_body(&body, now)?;
            existing
        }
        None => Setting::new(
            SettingId::generate(ciam.random().as_ref()),
            SettingKind::WebhookEndpoint,
            name,
            None,
            &body,
            now,
        )?,
    };
    let mut changes = ChangeSet::new();
    changes.put(setting);
    store.commit(changes).await?;
    Ok(())
}

/// The stored endpoints: `(name, url)`.
pub async fn list(store: &SharedStore) -> Result<Vec<(String, String)>, WebhookSetupError> {
    store
        .settings(SettingKind::WebhookEndpoint, None)
        .await?
        .into_iter()
        .map(|setting| {
            let body: StoredEndpoint = setting.body_as()?;
            Ok((setting.key, body.url))
        })
        .collect()
}

/// Removes the stored endpoint `name`.
pub async fn remove(store: &SharedStore, name: &str) -> Result<(), WebhookSetupError> {
    let setting = store
        .setting(SettingKind::WebhookEndpoint, name)
        .await?
        .ok_or_else(|| WebhookSetupError::NotFound(name.to_owned()))?;
    let mut changes = ChangeSet::new();
    changes.delete(RecordRef::Setting(setting.id, setting.version));
    store.commit(changes).await?;
    Ok(())
}

/// Every endpoint to deliver to: configured ones, then stored ones (a stored endpoint with
/// the name of a configured one is ignored).
pub async fn endpoints(
    store: &SharedStore,
    secret: &ServerSecret,
    configured: &[WebhookConfig],
) -> Result<Vec<WebhookConfig>, WebhookSetupError> {
    let mut all = configured.to_vec();
    for setting in store.settings(SettingKind::WebhookEndpoint, None).await? {
        if all.iter().any(|endpoint| endpoint.name == setting.key) {
            continue;
        }
        let body: StoredEndpoint = setting.body_as()?;
        let url = check_url(&body.url)?;
        all.push(WebhookConfig {
            secret: Redacted::new(open(secret, &setting.key, &body.sealed_secret)?),
            name: setting.key,
            url,
        });
    }
    Ok(all)
}

/// One dispatcher per endpoint (consumer `webhook:{name}:{random hex}`, one per process).
pub fn dispatchers(
    ciam: &Ciam,
    endpoints: &[WebhookConfig],
) -> Result<Vec<(String, Arc<Dispatcher>)>, WebhookSetupError> {
    endpoints
        .iter()
        .map(|endpoint| {
            let fail = |reason: String| WebhookSetupError::Connector {
                name: endpoint.name.clone(),
                reason,
            };
            let secret = WebhookSecret::parse(endpoint.secret.expose())
                .map_err(|_| WebhookSetupError::InvalidSecret)?;
            let mut config =
                ciam_crm::webhook::WebhookConfig::new(endpoint.url.as_str(), vec![secret]);
            if is_loopback(&endpoint.url) {
                config.allow_http = true;
                config.allow_private_targets = true;
            }
            let connector = WebhookConnector::new(config, ciam.clock().clone())
                .map_err(|e| fail(e.to_string()))?;
            // The lease owner names this process too: with one name on every node, a node
            // would take an entry that another node has claimed and not yet acknowledged as
            // "already ours" and deliver it a second time.
            let mut node = [0u8; 8];
            ciam.random().fill(&mut node);
            let dispatcher = Dispatcher::from_ciam(
                ciam,
                Arc::new(connector),
                DispatcherConfig {
                    consumer: Some(format!("webhook:{}:{}", endpoint.name, hex::encode(node))),
                    ..DispatcherConfig::default()
                },
            )
            .map_err(|e| fail(e.to_string()))?;
            Ok((endpoint.name.clone(), Arc::new(dispatcher)))
        })
        .collect()
}
