//! API keys of integrations (the CRM): created by `smartplan api-key create`, shown once,
//! stored only as a SHA-256 hash in a `Setting` of kind `ApiKey` (key: the public id), and
//! presented as `Authorization: Bearer spk_<id>_<secret>`.
//!
//! A key has 256 random bits, so one SHA-256 is the right hash (a slow password hash would only
//! slow every API call); the comparison is constant-time.

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ciam_core::authz::IntegrationScope;
use ciam_core::clock::RandomSource;
use ciam_core::ids::SettingId;
use ciam_core::settings::{Setting, SettingKind};
use ciam_core::store::{RecordRef, SharedStore};
use ciam_core::{ChangeSet, Principal};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::AppState;
use crate::web::{ApiError, WebError};

/// The prefix of every key.
pub const KEY_PREFIX: &str = "spk_";

/// What is stored for a key (the body of its `Setting`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    /// The integration's name (recorded as the actor of what it does).
    pub name: String,
    /// What the key may do.
    pub scopes: BTreeSet<IntegrationScope>,
    /// SHA-256 of the whole key, hex.
    pub key_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A key as listed (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// The public id.
    pub id: String,
    /// The integration's name.
    pub name: String,
    /// Scopes.
    pub scopes: BTreeSet<IntegrationScope>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A key just created: the only time the secret is seen.
pub struct CreatedKey {
    /// The public id.
    pub id: String,
    /// The whole key to hand to the integration.
    pub key: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The name is empty, too long or has control characters.
    #[error("the name must be 1 to 100 characters without control characters")]
    InvalidName,
    /// No scope was given.
    #[error("give at least one scope (provisioning, invitations, leads, read)")]
    NoScope,
    /// No such key.
    #[error("no API key with id {0}")]
    NotFound(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] ciam_core::StoreError),
    /// A stored key could not be read or written.
    #[error("setting: {0}")]
    Setting(#[from] ciam_core::settings::SettingError),
}

/// Parses a scope name (`provisioning`, `invitations`, `leads`, `read`).
pub fn parse_scope(text: &str) -> Option<IntegrationScope> {
    match text.trim() {
        "provisioning" => Some(IntegrationScope::Provisioning),
        "invitations" => Some(IntegrationScope::Invitations),
        "leads" => Some(IntegrationScope::Leads),
        "read" => Some(IntegrationScope::Read),
        _ => None,
    }
}

fn hash_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key for `name` with `scopes`.
pub async fn create(
    store: &SharedStore,
    random: &dyn RandomSource,
    now: DateTime<Utc>,
    name: &str,
    scopes: BTreeSet<IntegrationScope>,
) -> Result<CreatedKey, ApiKeyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiKeyError::InvalidName);
    }
    if scopes.is_empty() {
        return Err(ApiKeyError::NoScope);
    }
    let mut id_bytes = [0u8; 9];
    random.fill(&mut id_bytes);
    let id = URL_SAFE_NO_PAD.encode(id_bytes).replace(['-', '_'], "x");
    let mut secret = [0u8; 32];
    random.fill(&mut secret);
    let key = format!("{KEY_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let record = ApiKeyRecord {
        name: name.to_owned(),
        scopes,
        key_hash: hash_hex(&key),
        created_at: now,
    };
    let setting = Setting::new(
        SettingId::generate(random),
        SettingKind::ApiKey,
        id.clone(),
        None,
        &record,
        now,
    )?;
    let mut changes = ChangeSet::new();
    changes.put(setting);
    store.commit(changes).await?;
    Ok(CreatedKey { id, key })
}

/// Every key, by id.
pub async fn list(store: &SharedStore) -> Result<Vec<ApiKeyInfo>, ApiKeyError> {
    let settings = store.settings(SettingKind::ApiKey, None).await?;
    settings
        .into_iter()
        .map(|setting| {
            let record: ApiKeyRecord = setting.body_as()?;
            Ok(ApiKeyInfo {
                id: setting.key,
                name: record.name,
                scopes: record.scopes,
                created_at: record.created_at,
            })
        })
        .collect()
}

/// Revokes (deletes) the key `id`.
pub async fn revoke(store: &SharedStore, id: &str) -> Result<(), ApiKeyError> {
    let setting = store
        .setting(SettingKind::ApiKey, id)
        .await?
        .ok_or_else(|| ApiKeyError::NotFound(id.to_owned()))?;
    let mut changes = ChangeSet::new();
    changes.delete(RecordRef::Setting(setting.id, setting.version));
    store.commit(changes).await?;
    Ok(())
}

/// Checks a presented key; the stored record when it is valid.
pub async fn verify(
    store: &SharedStore,
    presented: &str,
) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
    let Some(rest) = presented.strip_prefix(KEY_PREFIX) else {
        return Ok(None);
    };
    let Some((id, _)) = rest.split_once('_') else {
        return Ok(None);
    };
    if id.is_empty() || id.len() > 32 {
        return Ok(None);
    }
    let Some(setting) = store.setting(SettingKind::ApiKey, id).await? else {
        return Ok(None);
    };
    let record: ApiKeyRecord = setting.body_as()?;
    let presented_hash = hash_hex(presented);
    Ok(crate::web::same(&presented_hash, &record.key_hash).then_some(record))
}

/// The integration calling the API, authenticated by its bearer key.
#[derive(Clone, Debug)]
pub struct ApiCaller {
    /// The integration's name.
    pub name: String,
    /// The principal to act as (an integration with the key's scopes).
    pub principal: Principal,
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                WebError::unauthorized("an API key is required: Authorization: Bearer spk_...")
            })?
            .to_str()
            .map_err(|_| WebError::unauthorized("the API key is not valid"))?;
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                WebError::unauthorized("use the Bearer scheme: Authorization: Bearer spk_...")
            })?
            .trim();
        let record = verify(&state.store, presented)
            .await
            .map_err(|error| match error {
                ApiKeyError::Store(error) => WebError::from(error),
                other => WebError::internal(other),
            })?
            .ok_or_else(|| WebError::unauthorized("the API key is not valid"))?;
        Ok(Self {
            principal: state
                .ciam
                .principals()
                .integration(record.name.clone(), record.scopes.iter().copied()),
            name: record.name,
        })
    }
}
