//! The façade: [`Ciam`], built once by the host and cheap to clone.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::audit::Audit;
use crate::authz::{Action, Actor, DenyReason, OrgTarget, Principal, Target, authorize};
use crate::clock::{Clock, OsRandom, RandomSource, SystemClock};
use crate::contact::EmailDomain;
use crate::credentials::{
    BreachedPasswords, PasswordError, PasswordHasher, PasswordParams, PasswordPolicy,
};
use crate::credentials::{Sealer, SecretKey};
use crate::delivery::{DevMailbox, DevSmsOutbox, EmailMessage, Mailer, SmsMessage, SmsSender};
use crate::events::{DomainEvent, EventKind};
use crate::identities::{Administration, Profile};
use crate::ids::{EventId, IdentityId, OrganizationId};
use crate::invitations::Invitations;
use crate::login::{
    AuthRuntime, Federation, FederationDirectory, Login, LoginPolicy, StoreFederation,
};
use crate::organizations::{Organization, Provisioning};
use crate::principals::Principals;
use crate::registrations::{ContractLookup, NoContractLookup, Registrations};
use crate::services::{Catalog, CatalogCache, RoleResolution};
use crate::sessions::{SessionPolicy, Sessions};
use crate::store::{Store, StoreError};

/// What to do with a lead invitation to a public webmail address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebmailPolicy {
    /// Hold it for back-office review before sending (the default).
    HoldForReview,
    /// Send it like any other.
    Allow,
    /// Refuse it.
    Refuse,
}

/// Rules a host can tune. `Policy::default()` is safe.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long an invitation link works (default 7 days).
    pub invitation_lifetime: Duration,
    /// How long an emailed or texted verification code works (default 5 minutes).
    pub code_lifetime: Duration,
    /// The shortest wait between two email verification codes of one person's email change
    /// (default 30 seconds).
    pub email_code_resend_interval: Duration,
    /// Email verification codes per clock hour, per person and per address (default 5).
    pub email_codes_per_hour: u32,
    /// How long after a contract stops giving access its users who have no access left are
    /// disabled (default 30 days).
    pub access_grace_period: Duration,
    /// Public webmail domains (lower case).
    pub webmail_domains: BTreeSet<String>,
    /// What lead invitations to webmail addresses do.
    pub webmail_policy: WebmailPolicy,
    /// Password length rules.
    pub password: PasswordPolicy,
    /// argon2id parameters (OWASP by default).
    pub password_params: PasswordParams,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// The public base URL of the pages, for links in messages (no trailing slash).
    pub public_base_url: String,
    /// The product name used in messages.
    pub product_name: String,
    /// Rows accepted in one batch invitation.
    pub max_batch_rows: usize,
    /// Sign-in rules (attempts, codes, throttling).
    pub login: LoginPolicy,
    /// How long services, business roles and SAML service-provider registrations read from the
    /// store are reused before they are read again (default zero: read every time). Changes
    /// made through this [`Ciam`] take effect at once; changes made by another process on the
    /// same store (another node) within this time. See `docs/performance.md`.
    pub catalog_max_age: Duration,
}

/// The default list of public webmail domains.
pub const DEFAULT_WEBMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "mail.com",
    "proton.me",
    "protonmail.com",
    "yandex.com",
    "zoho.com",
];

impl Default for Policy {
    fn default() -> Self {
        Self {
            invitation_lifetime: Duration::days(7),
            code_lifetime: Duration::minutes(5),
            email_code_resend_interval: Duration::seconds(30),
            email_codes_per_hour: 5,
            access_grace_period: Duration::days(30),
            webmail_domains: DEFAULT_WEBMAIL_DOMAINS
                .iter()
                .map(|d| (*d).to_owned())
                .collect(),
            webmail_policy: WebmailPolicy::HoldForReview,
            password: PasswordPolicy::default(),
            password_params: PasswordParams::OWASP,
            sessions: SessionPolicy::default(),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            product_name: "MySmartPlan".to_owned(),
            max_batch_rows: 50_000,
            login: LoginPolicy::default(),
            catalog_max_age: Duration::zero(),
        }
    }
}

impl Policy {
    /// Whether `domain` is a public webmail domain.
    pub fn is_webmail(&self, domain: &str) -> bool {
        self.webmail_domains.contains(&domain.to_lowercase())
    }
}

/// Errors of [`CiamBuilder::build`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No store was given.
    #[error("a store is required")]
    MissingStore,
    /// The password parameters are out of range.
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// Builds a [`Ciam`].
pub struct CiamBuilder {
    store: Option<Arc<dyn Store>>,
    mailer: Option<Arc<dyn Mailer>>,
    sms: Option<Arc<dyn SmsSender>>,
    clock: Option<Arc<dyn Clock>>,
    random: Option<Arc<dyn RandomSource>>,
    contracts: Option<Arc<dyn ContractLookup>>,
    secret_key: Option<SecretKey>,
    federation: Option<Arc<dyn FederationDirectory>>,
    breached: Option<Arc<dyn BreachedPasswords>>,
    policy: Policy,
}

impl CiamBuilder {
    /// The breached-password corpus every new password is looked up in (default: none; only
    /// the shipped common list), such as [`crate::credentials::PwnedPasswordsFile`].
    pub fn breached_passwords(mut self, list: Arc<dyn BreachedPasswords>) -> Self {
        self.breached = Some(list);
        self
    }

    /// The secret key (from configuration) that seals TOTP secrets at rest, login attempts and
    /// password-reset links. Without one, a random key is drawn at start: attempts and links
    /// then die with the process, and TOTP cannot be set up.
    pub fn secret_key(mut self, key: SecretKey) -> Self {
        self.secret_key = Some(key);
        self
    }

    /// Which organizations sign in at their own identity provider (default: the stored
    /// connections, [`StoreFederation`]).
    pub fn federation(mut self, directory: Arc<dyn FederationDirectory>) -> Self {
        self.federation = Some(directory);
        self
    }

    /// The store (required).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The mailer (default: an in-memory [`DevMailbox`]).
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// The SMS sender (default: an in-memory [`DevSmsOutbox`]).
    pub fn sms(mut self, sms: Arc<dyn SmsSender>) -> Self {
        self.sms = Some(sms);
        self
    }

    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The randomness (default: [`OsRandom`]).
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// How to ask the CRM whether a registering organization has an active contract (default:
    /// never; every registration waits for back office).
    pub fn contract_lookup(mut self, lookup: Arc<dyn ContractLookup>) -> Self {
        self.contracts = Some(lookup);
        self
    }

    /// The policy (default: [`Policy::default`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Builds the façade.
    pub fn build(self) -> Result<Ciam, BuildError> {
        let store = self.store.ok_or(BuildError::MissingStore)?;
        let hasher = PasswordHasher::new(self.policy.password_params)?;
        let random: Arc<dyn RandomSource> = self.random.unwrap_or_else(|| Arc::new(OsRandom));
        let sealer = match self.secret_key {
            Some(key) => Sealer::new(key, true),
            None => Sealer::new(SecretKey::generate(random.as_ref()), false),
        };
        let auth = AuthRuntime::new(
            sealer,
            self.federation
                .unwrap_or_else(|| Arc::new(StoreFederation::new(store.clone()))),
        );
        Ok(Ciam {
            ctx: Arc::new(Context {
                store,
                mailer: self
                    .mailer
                    .unwrap_or_else(|| Arc::new(DevMailbox::default())),
                sms: self
                    .sms
                    .unwrap_or_else(|| Arc::new(DevSmsOutbox::default())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                random,
                contracts: self.contracts.unwrap_or_else(|| Arc::new(NoContractLookup)),
                hasher,
                auth,
                breached: self.breached,
                catalog_cache: CatalogCache::new(self.policy.catalog_max_age),
                policy: self.policy,
            }),
        })
    }
}

/// The ciam-rs façade: every operation, grouped by area. Each takes the acting [`Principal`]
/// and authorizes it before changing anything.
#[derive(Clone)]
pub struct Ciam {
    pub(crate) ctx: Arc<Context>,
}

impl std::fmt::Debug for Ciam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ciam")
            .field("policy", &self.ctx.policy)
            .finish_non_exhaustive()
    }
}

impl Ciam {
    /// Starts building.
    pub fn builder() -> CiamBuilder {
        CiamBuilder {
            store: None,
            mailer: None,
            sms: None,
            clock: None,
            random: None,
            contracts: None,
            secret_key: None,
            federation: None,
            breached: None,
            policy: Policy::default(),
        }
    }

    /// Organizations and contracts (CRM provisioning, contract lifecycle).
    pub fn organizations(&self) -> Provisioning<'_> {
        Provisioning { ctx: &self.ctx }
    }

    /// Services and business roles.
    pub fn catalog(&self) -> Catalog<'_> {
        Catalog { ctx: &self.ctx }
    }

    /// Invitations (single, batch, leads).
    pub fn invitations(&self) -> Invitations<'_> {
        Invitations { ctx: &self.ctx }
    }

    /// Organization registrations and join requests.
    pub fn registrations(&self) -> Registrations<'_> {
        Registrations { ctx: &self.ctx }
    }

    /// Delegated administration of members: roles, mandates, removal, disabling.
    pub fn administration(&self) -> Administration<'_> {
        Administration { ctx: &self.ctx }
    }

    /// A person's own profile: name, email and phone with verification.
    pub fn profile(&self) -> Profile<'_> {
        Profile { ctx: &self.ctx }
    }

    /// Sign-in (identifier first, password, second factors), password change and reset,
    /// second-factor enrollment.
    pub fn login(&self) -> Login<'_> {
        Login { ctx: &self.ctx }
    }

    /// Identity provider connections (Google, customers' OIDC and SAML IdPs).
    pub fn identity_providers(&self) -> Federation<'_> {
        Federation { ctx: &self.ctx }
    }

    /// Sessions.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { ctx: &self.ctx }
    }

    /// Role resolution: the application roles a person holds in a service.
    pub fn roles(&self) -> RoleResolution<'_> {
        RoleResolution { ctx: &self.ctx }
    }

    /// Building principals (a person's grants) for authorization.
    pub fn principals(&self) -> Principals<'_> {
        Principals { ctx: &self.ctx }
    }

    /// The audit log.
    pub fn audit(&self) -> Audit<'_> {
        Audit { ctx: &self.ctx }
    }

    /// The initial user import (keep one for a whole file: it caches organizations and roles).
    pub fn imports(&self) -> crate::imports::Imports<'_> {
        crate::imports::Imports::new(&self.ctx)
    }

    /// The organization as an authorization target: its id, kind and ancestors (what
    /// [`authorize`] needs to apply a grant to sub-organizations).
    pub async fn org_target(&self, org: &Organization) -> Result<OrgTarget, StoreError> {
        self.ctx.org_target(org).await
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.ctx.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.ctx.clock
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.ctx.policy
    }

    /// The password hasher.
    pub fn password_hasher(&self) -> &PasswordHasher {
        &self.ctx.hasher
    }

    /// The randomness source.
    pub fn random(&self) -> &Arc<dyn RandomSource> {
        &self.ctx.random
    }
}

/// What every operation shares.
pub(crate) struct Context {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) sms: Arc<dyn SmsSender>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) contracts: Arc<dyn ContractLookup>,
    pub(crate) hasher: PasswordHasher,
    pub(crate) auth: AuthRuntime,
    pub(crate) breached: Option<Arc<dyn BreachedPasswords>>,
    pub(crate) catalog_cache: CatalogCache,
    pub(crate) policy: Policy,
}

impl Context {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn event(
        &self,
        actor: &Actor,
        organization: Option<OrganizationId>,
        identity: Option<IdentityId>,
        kind: EventKind,
        at: DateTime<Utc>,
    ) -> DomainEvent {
        DomainEvent {
            id: EventId::generate(self.random.as_ref()),
            at,
            actor: actor.clone(),
            organization,
            identity,
            kind,
        }
    }

    /// The organization as an authorization target, with its ancestors.
    pub(crate) async fn org_target(&self, org: &Organization) -> Result<OrgTarget, StoreError> {
        let mut ancestors = Vec::new();
        let mut next = org.parent;
        while let Some(parent) = next {
            if ancestors.contains(&parent) || ancestors.len() >= 32 {
                return Err(StoreError::corrupt("organization hierarchy has a cycle"));
            }
            ancestors.push(parent);
            next = self
                .store
                .organization(parent)
                .await?
                .and_then(|parent| parent.parent);
        }
        Ok(OrgTarget {
            id: org.id,
            kind: org.kind,
            ancestors,
        })
    }

    /// Authorizes `action` on `org`.
    pub(crate) async fn authorize_on(
        &self,
        principal: &Principal,
        action: Action,
        org: &Organization,
    ) -> Result<Result<(), DenyReason>, StoreError> {
        let target = Target::Organization(self.org_target(org).await?);
        Ok(authorize(principal, &action, &target).into_result())
    }

    /// Sends an email, logging (not failing) on delivery trouble; returns whether it went out.
    pub(crate) async fn send_mail(&self, message: EmailMessage) -> bool {
        let purpose = message.purpose;
        match self.mailer.send(message).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(?purpose, %error, "email could not be handed over");
                false
            }
        }
    }

    /// Sends an SMS, logging (not failing) on delivery trouble; returns whether it went out.
    pub(crate) async fn send_sms(&self, message: SmsMessage) -> bool {
        let purpose = message.purpose;
        match self.sms.send(message).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(?purpose, %error, "sms could not be handed over");
                false
            }
        }
    }

    /// A link to a page of the server.
    pub(crate) fn link(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.policy.public_base_url.trim_end_matches('/'),
            path_and_query
        )
    }

    /// Whether the domain is verified by some organization.
    pub(crate) async fn domain_owner(
        &self,
        domain: &str,
    ) -> Result<Option<Organization>, StoreError> {
        match EmailDomain::parse(domain) {
            Ok(domain) => self.store.organization_by_email_domain(&domain).await,
            Err(_) => Ok(None),
        }
    }
}
