//! Stored configuration: SAML service provider registrations, customer identity provider
//! connections, API keys, webhook endpoints.
//!
//! Each piece of configuration is one [`Setting`]: a kind, a key unique within that kind, the
//! organization it belongs to (if any) and a JSON body that the owning module defines and reads
//! back with [`Setting::body_as`]. Settings are written like every other record, through
//! [`ChangeSet::put`](crate::store::ChangeSet::put) with version checks, so several server nodes
//! sharing one database see the same configuration and never lose an update.
//!
//! Secrets never go into a body in clear: their owner seals them (a client secret, a webhook
//! secret) or stores only a hash (an API key).

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::{OrganizationId, SettingId};

/// The longest key a setting may have, in characters.
pub const MAX_SETTING_KEY_CHARS: usize = 1024;

/// The largest body a setting may have once serialized, in bytes (SAML metadata included).
pub const MAX_SETTING_BODY_BYTES: usize = 256 * 1024;

/// What a setting configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SettingKind {
    /// A SAML service provider that signs its users in at our identity provider (key: its
    /// entity id).
    ServiceProvider,
    /// A customer's (or a social) identity provider that signs people in for us (key: the
    /// provider's OIDC issuer or SAML entity id).
    IdentityProvider,
    /// An API key of an integration such as the CRM (key: the key's public id).
    ApiKey,
    /// A webhook endpoint that receives domain events (key: its name).
    WebhookEndpoint,
}

impl SettingKind {
    /// Every kind, in a stable order.
    pub const ALL: [SettingKind; 4] = [
        Self::ServiceProvider,
        Self::IdentityProvider,
        Self::ApiKey,
        Self::WebhookEndpoint,
    ];

    /// The stable name stores use (`service_provider`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceProvider => "service_provider",
            Self::IdentityProvider => "identity_provider",
            Self::ApiKey => "api_key",
            Self::WebhookEndpoint => "webhook_endpoint",
        }
    }

    /// The kind with this stable name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// How a setting changed, for [`EventKind::SettingChanged`](crate::events::EventKind::SettingChanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingChange {
    /// Stored for the first time.
    Created,
    /// Its body changed.
    Updated,
    /// Deleted.
    Removed,
}

/// Why a setting could not be built or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingError {
    /// The key is empty, too long, or has control characters.
    #[error(
        "a setting key must be 1 to {MAX_SETTING_KEY_CHARS} characters without control characters"
    )]
    InvalidKey,
    /// The body is larger than [`MAX_SETTING_BODY_BYTES`].
    #[error("a setting body must be at most {MAX_SETTING_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// The body could not be turned into JSON, or the stored JSON is not the expected shape.
    #[error("setting body: {0}")]
    Body(String),
}

/// One piece of stored configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// Identifier.
    pub id: SettingId,
    /// Version as stored (0 for a record not yet stored); see [`crate::store::ChangeSet`].
    pub version: u64,
    /// What it configures.
    pub kind: SettingKind,
    /// Unique within the kind (an entity id, an issuer, a key id, a name).
    pub key: String,
    /// The organization it belongs to, if any (a customer's identity provider).
    pub organization: Option<OrganizationId>,
    /// The configuration itself, in the shape its owning module defines.
    pub body: serde_json::Value,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl Setting {
    /// A new setting (version 0) with `body` serialized to JSON.
    pub fn new<T: Serialize>(
        id: SettingId,
        kind: SettingKind,
        key: impl Into<String>,
        organization: Option<OrganizationId>,
        body: &T,
        now: DateTime<Utc>,
    ) -> Result<Self, SettingError> {
        let key = key.into();
        check_key(&key)?;
        Ok(Self {
            id,
            version: 0,
            kind,
            key,
            organization,
            body: to_body(body)?,
            created_at: now,
            updated_at: now,
        })
    }

    /// The body read as `T`.
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, SettingError> {
        T::deserialize(&self.body).map_err(|error| SettingError::Body(error.to_string()))
    }

    /// Replaces the body (the version stays: the store checks it at commit).
    pub fn replace_body<T: Serialize>(
        &mut self,
        body: &T,
        now: DateTime<Utc>,
    ) -> Result<(), SettingError> {
        self.body = to_body(body)?;
        self.updated_at = now;
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), SettingError> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_SETTING_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(SettingError::InvalidKey);
    }
    Ok(())
}

fn to_body<T: Serialize>(body: &T) -> Result<serde_json::Value, SettingError> {
    let value =
        serde_json::to_value(body).map_err(|error| SettingError::Body(error.to_string()))?;
    let size = serde_json::to_vec(&value)
        .map_err(|error| SettingError::Body(error.to_string()))?
        .len();
    if size > MAX_SETTING_BODY_BYTES {
        return Err(SettingError::BodyTooLarge);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Endpoint {
        url: String,
        enabled: bool,
    }

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }

    #[test]
    fn a_body_round_trips() {
        let random = SeededRandom::new(1);
        let body = Endpoint {
            url: "https://crm.example/hooks".into(),
            enabled: true,
        };
        let setting = Setting::new(
            SettingId::generate(&random),
            SettingKind::WebhookEndpoint,
            "crm",
            None,
            &body,
            now(),
        )
        .unwrap();
        assert_eq!(setting.body_as::<Endpoint>().unwrap(), body);
        assert!(matches!(
            setting.body_as::<Vec<u8>>(),
            Err(SettingError::Body(_))
        ));
    }

    #[test]
    fn keys_and_bodies_are_bounded() {
        let random = SeededRandom::new(2);
        let id = SettingId::generate(&random);
        for key in ["", "a\nb", &"k".repeat(MAX_SETTING_KEY_CHARS + 1)] {
            assert_eq!(
                Setting::new(id, SettingKind::ApiKey, key, None, &1, now()),
                Err(SettingError::InvalidKey)
            );
        }
        let big = "x".repeat(MAX_SETTING_BODY_BYTES);
        assert_eq!(
            Setting::new(id, SettingKind::ApiKey, "key", None, &big, now()),
            Err(SettingError::BodyTooLarge)
        );
    }

    #[test]
    fn kinds_have_stable_names() {
        for kind in SettingKind::ALL {
            assert_eq!(SettingKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SettingKind::parse("nope"), None);
    }
}
