//! Finishing a sign-in at an external identity provider (Google, a customer's OIDC or SAML
//! IdP), once the protocol layer has verified what the provider asserted.
//!
//! The rules:
//! - an external identity is keyed by (provider, subject), never by email alone;
//! - a linked person signs in when their identity is active and, for an organization's
//!   connection, their membership there is active (a removed membership cannot come back
//!   through the IdP); business roles mapped from claims are kept in step at each sign-in;
//! - an unknown person of an organization's IdP is created just in time in that organization
//!   (when the connection allows it and the email is within the organization's verified
//!   domains), with the mapped roles; through a social provider they become a lead (when a
//!   leads organization is configured) or need an invitation;
//! - an email that matches an existing account links only after that account's password is
//!   proven ([`LoginStep::LinkAccount`]), at invitation acceptance, or — when the connection
//!   says so — on the provider's verified email (for an organization's IdP, within its domains);
//! - the organization's MFA policy still applies after federation, unless the connection
//!   trusts the provider's MFA and the provider asserted it (amr then records `mfa`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::authz::{Actor, Principal};
use crate::ciam::Context;
use crate::contact::{EmailAddress, PersonName};
use crate::credentials::{Credential, CredentialKind};
use crate::events::EventKind;
use crate::identities::{Identity, IdentityStatus, Membership, MembershipStatus};
use crate::ids::{BusinessRoleId, CredentialId, IdentityId, MembershipId, OrganizationId};
use crate::invitations::{Acceptance, FederatedAcceptance, Invitations};
use crate::login::attempt::{AttemptState, FederatedPurpose, Goal, PendingLink, Stage};
use crate::login::connections::{EmailLinking, StoredConnection, connection};
use crate::login::flow::{after_first_factor, complete, open, random_id, seal};
use crate::login::throttle::FailedStep;
use crate::login::{AttemptToken, Login, LoginError, LoginStep};
use crate::organizations::Organization;
use crate::secrets::SecretToken;
use crate::services::Catalog;
use crate::sessions::AuthMethod;
use crate::store::ChangeSet;

/// The longest subject accepted from a provider (OIDC allows 255 ASCII characters).
const MAX_SUBJECT: usize = 255;

/// What an external identity provider asserted, after the protocol layer verified it
/// (signature, issuer, audience, expiry, nonce or InResponseTo).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FederatedClaims {
    /// The connection's key: the OIDC issuer or the SAML IdP's entity id.
    pub provider: String,
    /// The person's stable id at the provider (OIDC `sub`, SAML persistent NameID).
    pub subject: String,
    /// The email the provider asserted.
    pub email: Option<EmailAddress>,
    /// Whether the provider says it verified that email.
    pub email_verified: bool,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Other claims or attributes, for role mapping (`groups`, `department`, ...).
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Whether the provider asserted multi-factor authentication (OIDC: `amr` contains `mfa`;
    /// SAML: an authentication context that says so). It counts only when the connection
    /// trusts the provider's MFA.
    pub mfa: bool,
}

impl FederatedClaims {
    /// Claims with only the provider and subject set.
    pub fn new(provider: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            subject: subject.into(),
            ..Self::default()
        }
    }
}

/// What proved that an external identity and a person are the same (in
/// [`EventKind::FederatedLinkAdded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkProof {
    /// The person entered the account's password.
    Password,
    /// The person accepted an invitation (emailed token) with the provider's login.
    Invitation,
    /// The provider verified the email and the connection trusts that.
    VerifiedEmail,
    /// The person was created by this sign-in.
    NewAccount,
}

/// A federated attempt as the protocol layer needs it: where to send the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedAttempt {
    /// The connection's key (OIDC issuer or SAML entity id).
    pub provider: String,
    /// The organization whose connection it is (none for a social provider).
    pub organization: Option<OrganizationId>,
    /// The email typed at the start, if any (a login hint for the provider).
    pub login_hint: Option<String>,
}

impl Login<'_> {
    /// Starts a sign-in at a provider the person chose ("Sign in with Google", a company
    /// login button). The connection must exist.
    pub async fn start_at_provider(
        &self,
        provider: &str,
        source: Option<&str>,
    ) -> Result<AttemptToken, LoginError> {
        let ctx = self.ctx;
        let stored = connection(ctx, provider)
            .await?
            .ok_or(LoginError::UnknownProvider)?;
        seal(
            ctx,
            &federated_state(ctx, None, &stored, FederatedPurpose::SignIn, source),
        )
    }

    /// Starts accepting an invitation with a provider's login instead of a new password
    /// ("use the company login", "continue with Google"). The provider must be a social one
    /// or belong to the inviting organization (or one above it).
    pub async fn start_invitation_at_provider(
        &self,
        token: &SecretToken,
        provider: &str,
        source: Option<&str>,
    ) -> Result<AttemptToken, LoginError> {
        let ctx = self.ctx;
        let invitation = Invitations { ctx }.preview(token).await?;
        let stored = connection(ctx, provider)
            .await?
            .ok_or(LoginError::UnknownProvider)?;
        if let Some(owner) = stored.organization {
            let org = ctx
                .store
                .organization(invitation.organization)
                .await?
                .ok_or(LoginError::UnknownProvider)?;
            if !ctx.org_target(&org).await?.is_within(owner) {
                return Err(LoginError::UnknownProvider);
            }
        }
        seal(
            ctx,
            &federated_state(
                ctx,
                Some(invitation.email.to_string()),
                &stored,
                FederatedPurpose::AcceptInvitation {
                    token: token.expose().to_owned(),
                },
                source,
            ),
        )
    }

    /// Where a federated attempt goes (for the OIDC or SAML layer starting the round trip).
    pub fn federated_attempt(
        &self,
        attempt: &AttemptToken,
    ) -> Result<FederatedAttempt, LoginError> {
        let state = open(self.ctx, attempt, self.ctx.now())?;
        match state.stage {
            Stage::Federated {
                email,
                organization,
                provider,
                ..
            } => Ok(FederatedAttempt {
                provider,
                organization,
                login_hint: email,
            }),
            _ => Err(LoginError::WrongStep),
        }
    }

    /// Finishes a federated attempt with what the provider asserted (verified by the protocol
    /// layer): signs the person in (or asks for a second factor, or for the password of the
    /// account to link), creating them just in time where the connection allows it. Each
    /// attempt completes at most once. `source` is the client's address at the callback (the
    /// attempt's own is used when `None`).
    pub async fn complete_federated(
        &self,
        attempt: &AttemptToken,
        claims: FederatedClaims,
        source: Option<&str>,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let mut state = open(ctx, attempt, now)?;
        let Stage::Federated {
            organization,
            provider,
            purpose,
            ..
        } = state.stage.clone()
        else {
            return Err(LoginError::WrongStep);
        };
        if claims.provider != provider {
            return Err(LoginError::WrongStep);
        }
        let subject = claims.subject.trim();
        if subject.is_empty() || subject != claims.subject || subject.len() > MAX_SUBJECT {
            return Err(LoginError::IncompleteClaims { missing: "subject" });
        }
        let stored = connection(ctx, &provider)
            .await?
            .ok_or(LoginError::UnknownProvider)?;
        if organization.is_some() && stored.organization != organization {
            return Err(LoginError::UnknownProvider);
        }
        if let Some(source) = source {
            state.source = Some(source.to_owned());
        }
        if !ctx
            .store
            .consume_once(&state.key("federated"), now, state.expires_at)
            .await?
        {
            return Err(LoginError::AttemptExpired);
        }
        let idp_mfa = stored.connection.trust_idp_mfa && claims.mfa;
        let outcome = match purpose {
            FederatedPurpose::SignIn => {
                sign_in(ctx, state.clone(), &stored, &claims, idp_mfa).await
            }
            FederatedPurpose::AcceptInvitation { token } => {
                accept_invitation(ctx, state.clone(), &stored, &claims, idp_mfa, &token).await
            }
        };
        if let Err(error) = &outcome {
            if refusal(error) {
                record_refusal(ctx, &state, &claims, error).await?;
            }
        }
        outcome
    }
}

fn federated_state(
    ctx: &Context,
    email: Option<String>,
    stored: &StoredConnection,
    purpose: FederatedPurpose,
    source: Option<&str>,
) -> AttemptState {
    let now = ctx.now();
    AttemptState {
        id: random_id(ctx),
        expires_at: now + ctx.policy.login.attempt_lifetime,
        source: source.map(str::to_owned),
        email: email.clone().unwrap_or_default(),
        stage: Stage::Federated {
            email,
            organization: stored.organization,
            provider: stored.key.clone(),
            purpose,
            oidc: None,
        },
    }
}

/// The home-realm attempt for an organization's connection (from [`Login::start`]).
pub(crate) fn home_realm_state(
    ctx: &Context,
    email: &str,
    organization: OrganizationId,
    provider: &str,
    source: Option<&str>,
) -> AttemptState {
    let now = ctx.now();
    AttemptState {
        id: random_id(ctx),
        expires_at: now + ctx.policy.login.attempt_lifetime,
        source: source.map(str::to_owned),
        email: email.to_owned(),
        stage: Stage::Federated {
            email: Some(email.to_owned()),
            organization: Some(organization),
            provider: provider.to_owned(),
            purpose: FederatedPurpose::SignIn,
            oidc: None,
        },
    }
}

/// Refusals worth an audit event (the person authenticated at the provider but may not
/// enter here).
fn refusal(error: &LoginError) -> bool {
    matches!(
        error,
        LoginError::AccountUnavailable
            | LoginError::NotProvisioned
            | LoginError::EmailOutsideOrganization
            | LoginError::IncompleteClaims { .. }
    )
}

async fn record_refusal(
    ctx: &Context,
    state: &AttemptState,
    claims: &FederatedClaims,
    error: &LoginError,
) -> Result<(), LoginError> {
    let identity = ctx
        .store
        .credential_by_federated_link(&claims.provider, &claims.subject)
        .await?
        .map(|link| link.identity);
    tracing::info!(provider = %claims.provider, %error, "federated sign-in refused");
    let mut changes = ChangeSet::new();
    changes.event(ctx.event(
        &Actor::Anonymous,
        None,
        identity,
        EventKind::SignInFailed {
            step: FailedStep::Federated,
            source: state.source.clone(),
        },
        ctx.now(),
    ));
    ctx.store.commit(changes).await?;
    Ok(())
}

/// Whether the asserted email can be trusted as the person's: verified by a social provider,
/// or within the verified domains of the organization that owns the connection (its IdP is
/// authoritative for them and nothing else).
async fn email_trusted(
    ctx: &Context,
    stored: &StoredConnection,
    claims: &FederatedClaims,
) -> Result<bool, LoginError> {
    let Some(email) = &claims.email else {
        return Ok(false);
    };
    match stored.organization {
        None => Ok(claims.email_verified),
        Some(org) => Ok(within_domains(ctx, org, email).await?),
    }
}

async fn within_domains(
    ctx: &Context,
    organization: OrganizationId,
    email: &EmailAddress,
) -> Result<bool, LoginError> {
    Ok(ctx
        .store
        .organization(organization)
        .await?
        .is_some_and(|org| {
            org.email_domains
                .iter()
                .any(|domain| domain.as_str().eq_ignore_ascii_case(email.domain()))
        }))
}

async fn sign_in(
    ctx: &Context,
    state: AttemptState,
    stored: &StoredConnection,
    claims: &FederatedClaims,
    idp_mfa: bool,
) -> Result<LoginStep, LoginError> {
    let mapped_roles = mapped_roles(ctx, stored, claims).await?;
    if let Some(link) = ctx
        .store
        .credential_by_federated_link(&claims.provider, &claims.subject)
        .await?
    {
        let identity = ctx
            .store
            .identity(link.identity)
            .await?
            .ok_or(LoginError::AccountUnavailable)?;
        return finish_linked(
            ctx,
            state,
            stored,
            &identity,
            &mapped_roles,
            vec![AuthMethod::Fed],
            idp_mfa,
        )
        .await;
    }
    let trusted = email_trusted(ctx, stored, claims).await?;
    if let Some(email) = &claims.email {
        if let Some(existing) = ctx.store.identity_by_email(email).await? {
            if existing.status == IdentityStatus::Disabled {
                return Err(LoginError::AccountUnavailable);
            }
            if stored.connection.email_linking == EmailLinking::TrustVerifiedEmail
                && trusted
                && existing.is_active()
            {
                let mut changes = ChangeSet::new();
                add_link(
                    ctx,
                    &existing,
                    claims,
                    LinkProof::VerifiedEmail,
                    &mut changes,
                );
                ctx.store.commit(changes).await?;
                return finish_linked(
                    ctx,
                    state,
                    stored,
                    &existing,
                    &mapped_roles,
                    vec![AuthMethod::Fed],
                    idp_mfa,
                )
                .await;
            }
            // The account's password proves that the two are the same person.
            let mut next = state;
            next.email = existing.email.to_string();
            next.stage = Stage::LinkAccount {
                identity: existing.id,
                email: existing.email.to_string(),
                link: PendingLink {
                    provider: claims.provider.clone(),
                    subject: claims.subject.clone(),
                    organization: stored.organization,
                    mapped_roles: mapped_roles.into_iter().collect(),
                    idp_mfa,
                },
            };
            return Ok(LoginStep::LinkAccount {
                attempt: seal(ctx, &next)?,
                email: existing.email.to_string(),
                provider: stored.connection.display_name.clone(),
            });
        }
    }
    // Nobody here yet.
    let (organization, lead) = match (stored.organization, stored.connection.leads_organization) {
        (Some(organization), _) if stored.connection.just_in_time => (organization, false),
        (None, Some(leads)) => (leads, true),
        _ => return Err(LoginError::NotProvisioned),
    };
    let email = claims
        .email
        .clone()
        .ok_or(LoginError::IncompleteClaims { missing: "email" })?;
    if !trusted {
        return Err(if lead {
            LoginError::IncompleteClaims {
                missing: "a verified email",
            }
        } else {
            LoginError::EmailOutsideOrganization
        });
    }
    let name = match (&claims.given_name, &claims.family_name) {
        (Some(given), Some(family)) => {
            PersonName::parse(given, family).map_err(|_| LoginError::IncompleteClaims {
                missing: "given and family name",
            })?
        }
        _ => {
            return Err(LoginError::IncompleteClaims {
                missing: "given and family name",
            });
        }
    };
    let org = active_org(ctx, organization).await?;
    let identity = create_account(ctx, &org, email, name, claims, &mapped_roles, lead).await?;
    finish_linked(
        ctx,
        state,
        stored,
        &identity,
        &mapped_roles,
        vec![AuthMethod::Fed],
        idp_mfa,
    )
    .await
}

async fn active_org(
    ctx: &Context,
    organization: OrganizationId,
) -> Result<Organization, LoginError> {
    match ctx.store.organization(organization).await? {
        Some(org) if org.is_active() => Ok(org),
        _ => Err(LoginError::AccountUnavailable),
    }
}

/// Creates the person, their membership and the link in one commit.
async fn create_account(
    ctx: &Context,
    org: &Organization,
    email: EmailAddress,
    name: PersonName,
    claims: &FederatedClaims,
    mapped_roles: &BTreeSet<BusinessRoleId>,
    lead: bool,
) -> Result<Identity, LoginError> {
    let now = ctx.now();
    let identity = Identity {
        id: IdentityId::generate(ctx.random.as_ref()),
        version: 0,
        email,
        email_verified: true,
        phone: None,
        phone_verified: false,
        name,
        status: IdentityStatus::Active,
        crm_contact_id: None,
        pending_email: None,
        pending_phone: None,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    let mut business_roles = mapped_roles.clone();
    if lead {
        let role = Catalog { ctx }
            .lead_role()
            .await
            .map_err(|_| LoginError::NotProvisioned)?;
        business_roles.insert(role.id);
    }
    let membership = Membership {
        id: MembershipId::generate(ctx.random.as_ref()),
        version: 0,
        identity: identity.id,
        organization: org.id,
        status: MembershipStatus::Active,
        business_roles,
        mandates: BTreeSet::new(),
        staff_roles: BTreeSet::new(),
        crm_lead_id: None,
        created_at: now,
        updated_at: now,
    };
    let actor = Actor::Identity(identity.id);
    let mut changes = ChangeSet::new();
    changes.event(ctx.event(
        &actor,
        Some(org.id),
        Some(identity.id),
        EventKind::FederatedAccountCreated {
            provider: claims.provider.clone(),
            email: identity.email.to_string(),
            given_name: identity.name.given.clone(),
            family_name: identity.name.family.clone(),
            lead,
        },
        now,
    ));
    changes.event(ctx.event(
        &actor,
        Some(org.id),
        Some(identity.id),
        EventKind::MembershipActivated,
        now,
    ));
    if !lead {
        changes.event(ctx.event(
            &actor,
            Some(org.id),
            Some(identity.id),
            EventKind::CustomerUserRegistered {
                email: identity.email.to_string(),
                given_name: identity.name.given.clone(),
                family_name: identity.name.family.clone(),
            },
            now,
        ));
    }
    add_link(ctx, &identity, claims, LinkProof::NewAccount, &mut changes);
    changes.put(identity.clone());
    changes.put(membership);
    ctx.store.commit(changes).await?;
    Ok(Identity {
        version: 1,
        ..identity
    })
}

fn add_link(
    ctx: &Context,
    identity: &Identity,
    claims: &FederatedClaims,
    proof: LinkProof,
    changes: &mut ChangeSet,
) {
    add_link_of(
        ctx,
        identity.id,
        &claims.provider,
        &claims.subject,
        proof,
        changes,
    );
}

fn add_link_of(
    ctx: &Context,
    identity: IdentityId,
    provider: &str,
    subject: &str,
    proof: LinkProof,
    changes: &mut ChangeSet,
) {
    let now = ctx.now();
    changes.put(Credential {
        id: CredentialId::generate(ctx.random.as_ref()),
        version: 0,
        identity,
        kind: CredentialKind::FederatedLink {
            provider: provider.to_owned(),
            subject: subject.to_owned(),
        },
        created_at: now,
        updated_at: now,
    });
    changes.event(ctx.event(
        &Actor::Identity(identity),
        None,
        Some(identity),
        EventKind::FederatedLinkAdded {
            provider: provider.to_owned(),
            proof,
        },
        now,
    ));
}

/// The business roles the claims map to, under this connection.
async fn mapped_roles(
    ctx: &Context,
    stored: &StoredConnection,
    claims: &FederatedClaims,
) -> Result<BTreeSet<BusinessRoleId>, LoginError> {
    let mut roles = BTreeSet::new();
    for mapping in &stored.connection.role_mapping {
        let asserted = claims
            .attributes
            .get(&mapping.claim)
            .is_some_and(|values| values.iter().any(|value| value == &mapping.value));
        if !asserted {
            continue;
        }
        match ctx
            .store
            .business_role_by_key(&mapping.business_role)
            .await?
        {
            Some(role) => {
                roles.insert(role.id);
            }
            None => tracing::warn!(
                provider = %stored.key,
                role = %mapping.business_role,
                "a role mapping names a business role that no longer exists"
            ),
        }
    }
    Ok(roles)
}

/// Every business role the connection's mapping manages.
async fn managed_roles(
    ctx: &Context,
    stored: &StoredConnection,
) -> Result<BTreeSet<BusinessRoleId>, LoginError> {
    let mut roles = BTreeSet::new();
    for mapping in &stored.connection.role_mapping {
        if let Some(role) = ctx
            .store
            .business_role_by_key(&mapping.business_role)
            .await?
        {
            roles.insert(role.id);
        }
    }
    Ok(roles)
}

/// A linked person signs in: checks that they may, keeps the mapped roles in step, then the
/// second factor when needed.
pub(crate) async fn finish_linked(
    ctx: &Context,
    state: AttemptState,
    stored: &StoredConnection,
    identity: &Identity,
    mapped_roles: &BTreeSet<BusinessRoleId>,
    mut methods: Vec<AuthMethod>,
    idp_mfa: bool,
) -> Result<LoginStep, LoginError> {
    if !identity.is_active() {
        return Err(LoginError::AccountUnavailable);
    }
    if let Some(organization) = stored.organization {
        let org = active_org(ctx, organization).await?;
        let now = ctx.now();
        match ctx.store.membership_of(identity.id, org.id).await? {
            Some(membership) if membership.status == MembershipStatus::Active => {
                let managed = managed_roles(ctx, stored).await?;
                let mut roles: BTreeSet<BusinessRoleId> = membership
                    .business_roles
                    .difference(&managed)
                    .copied()
                    .collect();
                roles.extend(mapped_roles.iter().copied());
                if roles != membership.business_roles {
                    let mut changes = ChangeSet::new();
                    changes.event(ctx.event(
                        &Actor::System,
                        Some(org.id),
                        Some(identity.id),
                        EventKind::BusinessRolesChanged {
                            before: membership.business_roles.clone(),
                            after: roles.clone(),
                        },
                        now,
                    ));
                    changes.put(Membership {
                        business_roles: roles,
                        updated_at: now,
                        ..membership
                    });
                    ctx.store.commit(changes).await?;
                }
            }
            Some(_) => return Err(LoginError::AccountUnavailable),
            None if stored.connection.just_in_time => {
                // Known here (another organization, or linked by password) and new in this one.
                let mut changes = ChangeSet::new();
                changes.event(ctx.event(
                    &Actor::Identity(identity.id),
                    Some(org.id),
                    Some(identity.id),
                    EventKind::MembershipActivated,
                    now,
                ));
                changes.put(Membership {
                    id: MembershipId::generate(ctx.random.as_ref()),
                    version: 0,
                    identity: identity.id,
                    organization: org.id,
                    status: MembershipStatus::Active,
                    business_roles: mapped_roles.clone(),
                    mandates: BTreeSet::new(),
                    staff_roles: BTreeSet::new(),
                    crm_lead_id: None,
                    created_at: now,
                    updated_at: now,
                });
                ctx.store.commit(changes).await?;
            }
            None => return Err(LoginError::NotProvisioned),
        }
    }
    let mut state = state;
    state.email = identity.email.to_string();
    if idp_mfa {
        methods.push(AuthMethod::Mfa);
        return complete(ctx, &state, identity.id, methods, Goal::SignIn).await;
    }
    after_first_factor(ctx, state, identity, methods, Goal::SignIn).await
}

async fn accept_invitation(
    ctx: &Context,
    state: AttemptState,
    stored: &StoredConnection,
    claims: &FederatedClaims,
    idp_mfa: bool,
    token: &str,
) -> Result<LoginStep, LoginError> {
    let acceptance = Acceptance {
        given_name: claims.given_name.clone(),
        family_name: claims.family_name.clone(),
        password: None,
    };
    let accepted = Invitations { ctx }
        .accept_as(
            &Principal::Anonymous,
            &SecretToken::from_presented(token),
            acceptance,
            Some(FederatedAcceptance {
                provider: claims.provider.clone(),
                subject: claims.subject.clone(),
            }),
        )
        .await?;
    let mapped = mapped_roles(ctx, stored, claims).await?;
    // Signing in goes on as for a linked person. When the connection is the inviting
    // organization's own, its mapped roles are added to those the invitation gave (later
    // sign-ins keep the mapped ones in step); a social or parent organization's connection
    // checks no membership here.
    let own = stored.organization == Some(accepted.membership.organization);
    let stored_for_finish = StoredConnection {
        organization: stored.organization.filter(|_| own),
        ..stored.clone()
    };
    let mut roles_now = mapped;
    if own {
        roles_now.extend(accepted.invitation.business_roles.iter().copied());
    }
    finish_linked(
        ctx,
        state,
        &stored_for_finish,
        &accepted.identity,
        &roles_now,
        vec![AuthMethod::Fed],
        idp_mfa,
    )
    .await
}

/// After the password of the account to link was proven: links, then signs in as a linked
/// person would (amr: `fed` and `pwd`).
pub(crate) async fn link_after_password(
    ctx: &Context,
    state: AttemptState,
    identity: &Identity,
    link: &PendingLink,
) -> Result<LoginStep, LoginError> {
    let stored = connection(ctx, &link.provider)
        .await?
        .ok_or(LoginError::UnknownProvider)?;
    if stored.organization != link.organization {
        return Err(LoginError::UnknownProvider);
    }
    match ctx
        .store
        .credential_by_federated_link(&link.provider, &link.subject)
        .await?
    {
        Some(existing) if existing.identity != identity.id => {
            return Err(LoginError::AccountUnavailable);
        }
        Some(_) => {}
        None => {
            let mut changes = ChangeSet::new();
            add_link_of(
                ctx,
                identity.id,
                &link.provider,
                &link.subject,
                LinkProof::Password,
                &mut changes,
            );
            ctx.store.commit(changes).await?;
        }
    }
    let roles: BTreeSet<BusinessRoleId> = link.mapped_roles.iter().copied().collect();
    finish_linked(
        ctx,
        state,
        &stored,
        identity,
        &roles,
        vec![AuthMethod::Fed, AuthMethod::Pwd],
        link.idp_mfa,
    )
    .await
}
