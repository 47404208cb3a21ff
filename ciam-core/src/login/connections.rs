//! Identity provider connections: Google and the OIDC or SAML identity providers customer
//! organizations bring, stored as [`Setting`]s of kind [`SettingKind::IdentityProvider`].
//!
//! A connection's key is the provider's OIDC issuer or SAML entity id; a customer's connection
//! belongs to that organization (its people are created just in time there and discovered by
//! their email domain), a social one (Google) to none. Client secrets are sealed with the
//! configured secret key before they are stored and only opened to talk to the provider.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::credentials::{Purpose, SealError};
use crate::events::EventKind;
use crate::ids::{OrganizationId, SettingId};
use crate::login::federation::FederationProtocol;
use crate::organizations::{OrgKind, Organization};
use crate::settings::{Setting, SettingChange, SettingError, SettingKind};
use crate::store::{ChangeSet, RecordRef, StoreError, StoreErrorKind};

/// Google's OIDC issuer, the key of the Google connection.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The longest display name of a connection, in characters.
const MAX_DISPLAY_NAME: usize = 200;

/// An OIDC client secret as given by the provider's console. Redacted `Debug`, no `Display`,
/// constant-time comparison; sealed before it is stored ([`Federation::seal_client_secret`]).
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret text, to send to the provider's token endpoint. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for ClientSecret {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for ClientSecret {}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A client secret sealed (XChaCha20-Poly1305) with the configured secret key: what is stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedClientSecret(String);

impl fmt::Debug for SealedClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedClientSecret(<sealed>)")
    }
}

/// A signature algorithm an OIDC provider's ID tokens may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Google's).
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

/// How a customer's or a social OIDC provider is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcClientSettings {
    /// The issuer URL (discovery at `{issuer}/.well-known/openid-configuration`); equal to the
    /// connection's key.
    pub issuer: String,
    /// Our client id at the provider (the ID token's audience).
    pub client_id: String,
    /// Our client secret, sealed.
    pub client_secret: SealedClientSecret,
    /// ID-token signature algorithms accepted from this provider (default: RS256 only).
    #[serde(default = "default_algorithms")]
    pub allowed_algs: Vec<SigningAlgorithm>,
    /// Scopes asked for besides `openid` (default: `email`, `profile`).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_algorithms() -> Vec<SigningAlgorithm> {
    vec![SigningAlgorithm::Rs256]
}

fn default_scopes() -> Vec<String> {
    vec!["email".to_owned(), "profile".to_owned()]
}

impl OidcClientSettings {
    /// A provider by issuer URL, client id and sealed secret; RS256 only, scopes
    /// `email profile`.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SealedClientSecret,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret,
            allowed_algs: default_algorithms(),
            scopes: default_scopes(),
        }
    }

    /// The Google preset: issuer `https://accounts.google.com`, RS256.
    pub fn google(client_id: impl Into<String>, client_secret: SealedClientSecret) -> Self {
        Self::new(GOOGLE_ISSUER, client_id, client_secret)
    }
}

/// A customer's SAML identity provider (the SAML layer builds its connection from the
/// metadata).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlIdpSettings {
    /// The IdP's metadata XML (entity id, SSO endpoints, signing certificates).
    pub metadata_xml: String,
    /// Accept responses that answer no request of ours (IdP-initiated sign-in).
    #[serde(default)]
    pub allow_unsolicited: bool,
}

/// A business role given to people whose claim (OIDC) or attribute (SAML) has a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRoleMapping {
    /// The claim or attribute name (for example `groups`).
    pub claim: String,
    /// The value it must have (compared exactly; one of the values of a multi-valued claim).
    pub value: String,
    /// The business role's key.
    pub business_role: String,
}

/// When a provider's verified email matches an existing account without a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailLinking {
    /// The person proves the account's password once, then the link is kept (the default).
    /// Accepting an invitation with the provider also links.
    #[default]
    ProvePassword,
    /// Link at once when the provider says the email is verified (for a customer's own IdP,
    /// only within the organization's verified email domains).
    TrustVerifiedEmail,
}

/// A stored identity provider connection: the body of a [`Setting`] of kind
/// [`SettingKind::IdentityProvider`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProviderConnection {
    /// The name on the sign-in button ("Google", "City Group login").
    pub display_name: String,
    /// OIDC or SAML.
    pub protocol: FederationProtocol,
    /// The OIDC client, for an OIDC connection.
    #[serde(default)]
    pub oidc: Option<OidcClientSettings>,
    /// The SAML IdP, for a SAML connection.
    #[serde(default)]
    pub saml: Option<SamlIdpSettings>,
    /// Business roles from claims (organization connections).
    #[serde(default)]
    pub role_mapping: Vec<ClaimRoleMapping>,
    /// Create people unknown here in the organization at their first sign-in (organization
    /// connections). Without it they need an invitation.
    #[serde(default)]
    pub just_in_time: bool,
    /// Send people of the organization's email domains here when they type their email.
    #[serde(default = "yes")]
    pub home_realm_discovery: bool,
    /// Count the provider's multi-factor authentication (OIDC `amr` containing `mfa`; SAML's
    /// assertion of it) as the second factor the organization's policy asks for. Off by
    /// default: our own second factor is asked for.
    #[serde(default)]
    pub trust_idp_mfa: bool,
    /// Linking to an existing account with the same email.
    #[serde(default)]
    pub email_linking: EmailLinking,
    /// Social connections: new people become leads in this organization. Without it they join
    /// by invitation only.
    #[serde(default)]
    pub leads_organization: Option<OrganizationId>,
}

fn yes() -> bool {
    true
}

impl IdentityProviderConnection {
    /// An OIDC connection with safe defaults: no just-in-time creation, home realm discovery
    /// on, the provider's MFA not trusted, linking by password proof, no leads.
    pub fn oidc(display_name: impl Into<String>, client: OidcClientSettings) -> Self {
        Self {
            oidc: Some(client),
            ..Self::base(display_name.into(), FederationProtocol::Oidc)
        }
    }

    /// A SAML connection with the same safe defaults.
    pub fn saml(display_name: impl Into<String>, idp: SamlIdpSettings) -> Self {
        Self {
            saml: Some(idp),
            ..Self::base(display_name.into(), FederationProtocol::Saml)
        }
    }

    fn base(display_name: String, protocol: FederationProtocol) -> Self {
        Self {
            display_name,
            protocol,
            oidc: None,
            saml: None,
            role_mapping: Vec::new(),
            just_in_time: false,
            home_realm_discovery: true,
            trust_idp_mfa: false,
            email_linking: EmailLinking::ProvePassword,
            leads_organization: None,
        }
    }
}

/// A connection as stored, with its key and owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConnection {
    /// The key: OIDC issuer or SAML entity id.
    pub key: String,
    /// The organization it belongs to (none for a social provider).
    pub organization: Option<OrganizationId>,
    /// The configuration.
    pub connection: IdentityProviderConnection,
    /// The version as stored (for updates).
    pub version: u64,
}

impl StoredConnection {
    pub(crate) fn from_setting(setting: &Setting) -> Result<Self, StoreError> {
        let connection = setting
            .body_as::<IdentityProviderConnection>()
            .map_err(|error| {
                StoreError::corrupt(format!("identity provider {}: {error}", setting.key))
            })?;
        Ok(Self {
            key: setting.key.clone(),
            organization: setting.organization,
            connection,
            version: setting.version,
        })
    }
}

/// Errors of managing connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// The connection is not valid.
    #[error("invalid identity provider connection: {0}")]
    Invalid(String),
    /// No such organization.
    #[error("organization not found")]
    UnknownOrganization,
    /// A role mapping names an unknown business role.
    #[error("business role {0} not found")]
    UnknownBusinessRole(String),
    /// No connection with this key.
    #[error("identity provider connection not found")]
    NotFound,
    /// A connection with this key exists.
    #[error("an identity provider connection with this key exists")]
    AlreadyExists,
    /// Changed at the same time by someone else.
    #[error("the connection was changed at the same time; reload and try again")]
    Conflict,
    /// No secret key is configured (client secrets cannot be sealed).
    #[error("no secret key is configured")]
    NoSecretKey,
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for FederationError {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict => Self::Conflict,
            StoreErrorKind::Unique => Self::AlreadyExists,
            _ => Self::Store(error),
        }
    }
}

impl From<SettingError> for FederationError {
    fn from(error: SettingError) -> Self {
        Self::Invalid(error.to_string())
    }
}

/// Identity provider connections. Get one from [`crate::Ciam::federation`].
pub struct Federation<'a> {
    pub(crate) ctx: &'a Context,
}

impl Federation<'_> {
    /// Seals an OIDC client secret with the configured secret key, to put in
    /// [`OidcClientSettings::client_secret`].
    pub fn seal_client_secret(
        &self,
        secret: &ClientSecret,
    ) -> Result<SealedClientSecret, FederationError> {
        if !self.ctx.auth.sealer.configured {
            return Err(FederationError::NoSecretKey);
        }
        Ok(SealedClientSecret(self.ctx.auth.sealer.seal_bytes(
            Purpose::ClientSecret,
            secret.expose().as_bytes(),
            self.ctx.random.as_ref(),
        )?))
    }

    /// Whether `sealed` holds `secret` (constant-time; false when it cannot be opened with
    /// this deployment's key). Lets a host that configures a provider from a file tell whether
    /// the stored secret is still the configured one without ever reading it out.
    pub fn sealed_client_secret_is(
        &self,
        sealed: &SealedClientSecret,
        secret: &ClientSecret,
    ) -> bool {
        Self::open_client_secret(self.ctx, sealed).is_ok_and(|stored| &stored == secret)
    }

    /// Opens a sealed client secret (to call the provider's token endpoint).
    pub(crate) fn open_client_secret(
        ctx: &Context,
        sealed: &SealedClientSecret,
    ) -> Result<ClientSecret, SealError> {
        let bytes = ctx
            .auth
            .sealer
            .open_bytes(Purpose::ClientSecret, &sealed.0)?;
        String::from_utf8(bytes)
            .map(ClientSecret)
            .map_err(|_| SealError::Invalid)
    }

    /// Adds a connection under `key` (the OIDC issuer or SAML entity id), owned by
    /// `organization` (a customer's IdP) or by nobody (a social provider). Allowed to staff
    /// administrators, and to an organization's administrator for their own organization.
    pub async fn add_connection(
        &self,
        principal: &Principal,
        key: &str,
        organization: Option<OrganizationId>,
        connection: IdentityProviderConnection,
    ) -> Result<StoredConnection, FederationError> {
        let ctx = self.ctx;
        let org = self.authorize(principal, organization).await?;
        self.validate(key, org.as_ref(), &connection).await?;
        if ctx
            .store
            .setting(SettingKind::IdentityProvider, key)
            .await?
            .is_some()
        {
            return Err(FederationError::AlreadyExists);
        }
        let now = ctx.now();
        let setting = Setting::new(
            SettingId::generate(ctx.random.as_ref()),
            SettingKind::IdentityProvider,
            key,
            organization,
            &connection,
            now,
        )?;
        let mut changes = ChangeSet::new();
        changes.put(setting);
        changes.event(ctx.event(
            &principal.actor(),
            organization,
            None,
            EventKind::SettingChanged {
                setting: SettingKind::IdentityProvider,
                key: key.to_owned(),
                change: SettingChange::Created,
            },
            now,
        ));
        ctx.store.commit(changes).await?;
        Ok(StoredConnection {
            key: key.to_owned(),
            organization,
            connection,
            version: 1,
        })
    }

    /// Replaces a connection's configuration (the owner stays); `expected_version` is the
    /// version read, so that concurrent edits never overwrite each other.
    pub async fn update_connection(
        &self,
        principal: &Principal,
        key: &str,
        expected_version: u64,
        connection: IdentityProviderConnection,
    ) -> Result<StoredConnection, FederationError> {
        let ctx = self.ctx;
        let mut setting = ctx
            .store
            .setting(SettingKind::IdentityProvider, key)
            .await?
            .ok_or(FederationError::NotFound)?;
        let org = self.authorize(principal, setting.organization).await?;
        if setting.version != expected_version {
            return Err(FederationError::Conflict);
        }
        self.validate(key, org.as_ref(), &connection).await?;
        let now = ctx.now();
        setting.replace_body(&connection, now)?;
        let organization = setting.organization;
        let version = setting.version;
        let mut changes = ChangeSet::new();
        changes.put(setting);
        changes.event(ctx.event(
            &principal.actor(),
            organization,
            None,
            EventKind::SettingChanged {
                setting: SettingKind::IdentityProvider,
                key: key.to_owned(),
                change: SettingChange::Updated,
            },
            now,
        ));
        ctx.store.commit(changes).await?;
        Ok(StoredConnection {
            key: key.to_owned(),
            organization,
            connection,
            version: version + 1,
        })
    }

    /// Removes a connection. Links of people to it stay (they sign in again if it is added
    /// back) but nobody can sign in through it meanwhile.
    pub async fn remove_connection(
        &self,
        principal: &Principal,
        key: &str,
    ) -> Result<(), FederationError> {
        let ctx = self.ctx;
        let setting = ctx
            .store
            .setting(SettingKind::IdentityProvider, key)
            .await?
            .ok_or(FederationError::NotFound)?;
        self.authorize(principal, setting.organization).await?;
        let mut changes = ChangeSet::new();
        changes.delete(RecordRef::Setting(setting.id, setting.version));
        changes.event(ctx.event(
            &principal.actor(),
            setting.organization,
            None,
            EventKind::SettingChanged {
                setting: SettingKind::IdentityProvider,
                key: key.to_owned(),
                change: SettingChange::Removed,
            },
            ctx.now(),
        ));
        ctx.store.commit(changes).await?;
        Ok(())
    }

    /// The connections of an organization (or the social ones, for `None`: staff only).
    pub async fn connections(
        &self,
        principal: &Principal,
        organization: Option<OrganizationId>,
    ) -> Result<Vec<StoredConnection>, FederationError> {
        self.authorize(principal, organization).await?;
        let settings = self
            .ctx
            .store
            .settings(SettingKind::IdentityProvider, organization)
            .await?;
        settings
            .iter()
            .filter(|setting| setting.organization == organization)
            .map(|setting| StoredConnection::from_setting(setting).map_err(FederationError::from))
            .collect()
    }

    /// The connection with `key`, for sign-in (no principal: the key comes from the login
    /// flow, and nothing secret is returned in clear).
    pub async fn connection(&self, key: &str) -> Result<Option<StoredConnection>, StoreError> {
        connection(self.ctx, key).await
    }

    async fn authorize(
        &self,
        principal: &Principal,
        organization: Option<OrganizationId>,
    ) -> Result<Option<Organization>, FederationError> {
        match organization {
            None => {
                authorize(principal, &Action::ManageIdentityProviders, &Target::Global)
                    .into_result()?;
                Ok(None)
            }
            Some(id) => {
                let org = self
                    .ctx
                    .store
                    .organization(id)
                    .await?
                    .ok_or(FederationError::UnknownOrganization)?;
                self.ctx
                    .authorize_on(principal, Action::ManageIdentityProviders, &org)
                    .await??;
                Ok(Some(org))
            }
        }
    }

    async fn validate(
        &self,
        key: &str,
        org: Option<&Organization>,
        connection: &IdentityProviderConnection,
    ) -> Result<(), FederationError> {
        let invalid = |why: &str| Err(FederationError::Invalid(why.to_owned()));
        let name = connection.display_name.trim();
        if name.is_empty() || name.chars().count() > MAX_DISPLAY_NAME {
            return invalid("the display name must be 1 to 200 characters");
        }
        if key.trim() != key || key.is_empty() || key.chars().any(char::is_control) {
            return invalid("the key must be the issuer or entity id without spaces around it");
        }
        match connection.protocol {
            FederationProtocol::Oidc => {
                let Some(oidc) = &connection.oidc else {
                    return invalid("an OIDC connection needs its client settings");
                };
                if connection.saml.is_some() {
                    return invalid("an OIDC connection has no SAML settings");
                }
                if oidc.issuer != key {
                    return invalid("the key of an OIDC connection is its issuer");
                }
                let issuer = url::Url::parse(&oidc.issuer)
                    .map_err(|_| FederationError::Invalid("the issuer is not a URL".into()))?;
                let loopback =
                    matches!(issuer.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
                    return invalid("the issuer must be an https URL");
                }
                if oidc.client_id.trim().is_empty() {
                    return invalid("the client id is required");
                }
                if oidc.allowed_algs.is_empty() {
                    return invalid("at least one signature algorithm must be allowed");
                }
                if Federation::open_client_secret(self.ctx, &oidc.client_secret).is_err() {
                    return invalid("the client secret is not sealed with this deployment's key");
                }
            }
            FederationProtocol::Saml => {
                let Some(saml) = &connection.saml else {
                    return invalid("a SAML connection needs the IdP's metadata");
                };
                if connection.oidc.is_some() {
                    return invalid("a SAML connection has no OIDC settings");
                }
                if !saml.metadata_xml.contains("EntityDescriptor") {
                    return invalid("the metadata is not SAML metadata");
                }
            }
        }
        match org {
            Some(org) => {
                if org.kind == OrgKind::Provider {
                    return invalid("the provider organization signs in with passwords");
                }
                if connection.leads_organization.is_some() {
                    return invalid("only social connections turn new people into leads");
                }
            }
            None => {
                if connection.just_in_time || !connection.role_mapping.is_empty() {
                    return invalid(
                        "a social connection belongs to no organization: no just-in-time creation or role mapping",
                    );
                }
                if let Some(leads) = connection.leads_organization {
                    let leads = self
                        .ctx
                        .store
                        .organization(leads)
                        .await?
                        .ok_or(FederationError::UnknownOrganization)?;
                    if leads.kind == OrgKind::Provider {
                        return invalid("leads join a customer organization");
                    }
                }
            }
        }
        for mapping in &connection.role_mapping {
            if mapping.claim.trim().is_empty() {
                return invalid("a role mapping needs a claim name");
            }
            if self
                .ctx
                .store
                .business_role_by_key(&mapping.business_role)
                .await?
                .is_none()
            {
                return Err(FederationError::UnknownBusinessRole(
                    mapping.business_role.clone(),
                ));
            }
        }
        Ok(())
    }
}

pub(crate) async fn connection(
    ctx: &Context,
    key: &str,
) -> Result<Option<StoredConnection>, StoreError> {
    match ctx
        .store
        .setting(SettingKind::IdentityProvider, key)
        .await?
    {
        Some(setting) => StoredConnection::from_setting(&setting).map(Some),
        None => Ok(None),
    }
}
