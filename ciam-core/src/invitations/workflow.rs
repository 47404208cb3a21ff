//! Inviting, accepting, resending, revoking and expiring invitations.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::authz::{Action, Actor, DenyReason, Principal, Target, authorize};
use crate::ciam::{Context, WebmailPolicy};
use crate::contact::{EmailAddress, PersonName, ValidationError};
use crate::credentials::{
    Credential, CredentialKind, Password, PasswordContext, PasswordError, screen_new_password,
};
use crate::events::EventKind;
use crate::identities::{
    Identity, IdentityStatus, Mandate, Membership, MembershipStatus, StaffRole,
};
use crate::ids::{
    BatchId, BusinessRoleId, CredentialId, IdentityId, InvitationId, MembershipId, OrganizationId,
};
use crate::invitations::{Invitation, InvitationKind, InvitationStatus, InvitationTransition};
use crate::messages;
use crate::organizations::{OrgKind, Organization};
use crate::secrets::SecretToken;
use crate::services::Catalog;
use crate::store::{ChangeSet, StoreError, StoreErrorKind};

/// Invitation mails of a batch handed to the mailer at once (SMTP connections are pooled).
const BATCH_MAIL_CONCURRENCY: usize = 16;

/// Errors of invitations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvitationError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The password breaks the policy.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// No such organization.
    #[error("organization not found")]
    UnknownOrganization,
    /// The organization does not take new members now.
    #[error("the organization is not active")]
    OrganizationInactive,
    /// No such business role.
    #[error("business role {0} not found")]
    UnknownBusinessRole(String),
    /// A ServiceManager mandate names an unknown service.
    #[error("service {0} not found")]
    UnknownService(String),
    /// Staff roles only exist in the provider organization.
    #[error("staff roles can only be given in the provider organization")]
    StaffRoleOutsideProvider,
    /// The person is already an active member.
    #[error("{0} is already a member of this organization")]
    AlreadyMember(String),
    /// A live invitation for this person exists; resend it instead.
    #[error("{email} already has an open invitation to this organization")]
    AlreadyInvited {
        /// The email.
        email: String,
        /// The open invitation.
        invitation: InvitationId,
    },
    /// Lead invitations to webmail addresses are refused by policy.
    #[error("lead invitations to public webmail addresses are not allowed")]
    WebmailRefused,
    /// Too many rows in one batch.
    #[error("a batch may have at most {0} rows")]
    BatchTooLarge(usize),
    /// No invitation for this token or id.
    #[error("this invitation link is not valid")]
    NotFound,
    /// The invitation cannot do that in its state.
    #[error("this invitation is {0:?} and cannot be used")]
    NotUsable(InvitationStatus),
    /// The invitation's time ran out.
    #[error("this invitation has expired; ask for a new one")]
    Expired,
    /// The invited person's account is disabled.
    #[error("the account for this email is disabled")]
    IdentityDisabled,
    /// A name is needed to create the account.
    #[error("given and family name are required")]
    NameRequired,
    /// A password is needed to create the account.
    #[error("a password is required")]
    PasswordRequired,
    /// The identity provider account is already linked to another person.
    #[error("this login is already linked to another account")]
    FederatedLoginInUse,
    /// Used at the same moment by someone else.
    #[error("this invitation was used at the same time by another request")]
    Conflict,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for InvitationError {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict | StoreErrorKind::Unique => Self::Conflict,
            _ => Self::Store(error),
        }
    }
}

impl From<crate::services::CatalogError> for InvitationError {
    fn from(error: crate::services::CatalogError) -> Self {
        match error {
            crate::services::CatalogError::Store(store) => Self::Store(store),
            _ => Self::Conflict,
        }
    }
}

/// Whom to invite, with what.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRequest {
    /// Email address.
    pub email: String,
    /// Given name, if known.
    #[serde(default)]
    pub given_name: Option<String>,
    /// Family name, if known.
    #[serde(default)]
    pub family_name: Option<String>,
    /// Business role keys.
    #[serde(default)]
    pub business_roles: Vec<String>,
    /// Mandates.
    #[serde(default)]
    pub mandates: BTreeSet<Mandate>,
    /// Staff roles (provider organization only).
    #[serde(default)]
    pub staff_roles: BTreeSet<StaffRole>,
    /// Invite as the contact person (adds the OrgAdmin mandate).
    #[serde(default)]
    pub contact_person: bool,
    /// CRM lead id: invites a lead.
    #[serde(default)]
    pub crm_lead_id: Option<String>,
}

/// A created invitation and, when it was sent, its token (shown once; the link is in the
/// mail).
#[derive(Debug)]
pub struct IssuedInvitation {
    /// The invitation.
    pub invitation: Invitation,
    /// The token, unless held for review.
    pub token: Option<SecretToken>,
    /// The link sent, unless held for review.
    pub link: Option<String>,
    /// Whether the mail was handed over.
    pub mail_sent: bool,
}

/// The outcome of one row of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum BatchRowOutcome {
    /// Invited; the mail is on its way.
    Invited {
        /// The invitation.
        invitation: InvitationId,
    },
    /// Created and held for review (a lead at a webmail address).
    HeldForReview {
        /// The invitation.
        invitation: InvitationId,
    },
    /// Already an active member.
    AlreadyMember,
    /// Already has an open invitation.
    AlreadyInvited {
        /// The open invitation.
        invitation: InvitationId,
    },
    /// The same email appears earlier in the batch.
    DuplicateInBatch {
        /// The earlier row (0-based).
        first_row: usize,
    },
    /// The email is not valid.
    InvalidEmail {
        /// Why.
        reason: String,
    },
    /// Another field is not valid (name, role, mandate).
    Invalid {
        /// Why.
        reason: String,
    },
    /// The inviter may not give what the row asks for.
    NotAllowed {
        /// Why.
        reason: String,
    },
}

/// What the invitee provides when accepting.
#[derive(Clone, Debug, Default)]
pub struct Acceptance {
    /// Given name (required unless the invitation or the account has one).
    pub given_name: Option<String>,
    /// Family name (required unless the invitation or the account has one).
    pub family_name: Option<String>,
    /// The new password (required for a new account without a federated login).
    pub password: Option<Password>,
}

/// The external identity that accepts an invitation instead of a new password.
#[derive(Clone, Debug)]
pub(crate) struct FederatedAcceptance {
    pub(crate) provider: String,
    pub(crate) subject: String,
}

/// An accepted invitation.
#[derive(Clone, Debug)]
pub struct AcceptedInvitation {
    /// The invitation.
    pub invitation: Invitation,
    /// The person (created or linked).
    pub identity: Identity,
    /// The membership activated.
    pub membership: Membership,
    /// Whether the identity was created now.
    pub created: bool,
}

/// Invitations. Get one from [`crate::Ciam::invitations`].
pub struct Invitations<'a> {
    pub(crate) ctx: &'a Context,
}

struct Prepared {
    email: EmailAddress,
    name: Option<PersonName>,
    kind: InvitationKind,
    business_roles: BTreeSet<BusinessRoleId>,
    mandates: BTreeSet<Mandate>,
    staff_roles: BTreeSet<StaffRole>,
}

enum RowCheck {
    Ready(Prepared),
    Outcome(BatchRowOutcome),
}

impl Invitations<'_> {
    /// Invites one person into `organization`.
    pub async fn invite(
        &self,
        principal: &Principal,
        organization: OrganizationId,
        request: InvitationRequest,
    ) -> Result<IssuedInvitation, InvitationError> {
        let org = self.active_org(organization).await?;
        let prepared = self.prepare(principal, &org, &request).await?;
        let (invitation, token) = self.build(principal, &org, prepared, None)?;
        let mut changes = ChangeSet::new();
        self.record_created(principal, &invitation, &mut changes);
        changes.put(invitation.clone());
        self.ctx.store.commit(changes).await?;
        let invitation = Invitation {
            version: 1,
            ..invitation
        };
        Ok(self.send(&org, invitation, token).await)
    }

    /// Invites many people into `organization`. Every row gets its own outcome; invalid rows do
    /// not hold back valid ones. Rows are written in chunks, each chunk in one commit.
    pub async fn invite_batch(
        &self,
        principal: &Principal,
        organization: OrganizationId,
        rows: Vec<InvitationRequest>,
    ) -> Result<(BatchId, Vec<BatchRowOutcome>), InvitationError> {
        if rows.len() > self.ctx.policy.max_batch_rows {
            return Err(InvitationError::BatchTooLarge(
                self.ctx.policy.max_batch_rows,
            ));
        }
        let org = self.active_org(organization).await?;
        // Fail fast when the principal may not invite here at all.
        let any_invite = if rows.iter().all(|row| row.crm_lead_id.is_some()) && !rows.is_empty() {
            Action::InviteLead
        } else {
            Action::InviteMember {
                role_services: BTreeSet::new(),
                mandates: BTreeSet::new(),
            }
        };
        self.ctx.authorize_on(principal, any_invite, &org).await??;
        let batch = BatchId::generate(self.ctx.random.as_ref());
        let mut outcomes: Vec<Option<BatchRowOutcome>> = vec![None; rows.len()];
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut ready: Vec<(usize, Invitation, Option<SecretToken>)> = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            match EmailAddress::parse(&row.email) {
                Ok(email) => {
                    if let Some(first_row) = seen.get(email.normalized()) {
                        outcomes[index] = Some(BatchRowOutcome::DuplicateInBatch {
                            first_row: *first_row,
                        });
                        continue;
                    }
                    seen.insert(email.normalized().to_owned(), index);
                }
                Err(error) => {
                    outcomes[index] = Some(BatchRowOutcome::InvalidEmail {
                        reason: error.to_string(),
                    });
                    continue;
                }
            }
            match self.check_row(principal, &org, row).await? {
                RowCheck::Outcome(outcome) => outcomes[index] = Some(outcome),
                RowCheck::Ready(prepared) => {
                    let (invitation, token) = self.build(principal, &org, prepared, Some(batch))?;
                    ready.push((index, invitation, token));
                }
            }
        }
        for chunk in ready.chunks(500) {
            let mut changes = ChangeSet::new();
            for (_, invitation, _) in chunk {
                self.record_created(principal, invitation, &mut changes);
                changes.put(invitation.clone());
            }
            match self.ctx.store.commit(changes).await {
                Ok(()) => {
                    // The chunk's mail is handed over BATCH_MAIL_CONCURRENCY at a time: a batch
                    // of thousands waits for the slowest hand-over of each group, not for the
                    // sum of them all.
                    let mut sending = Vec::with_capacity(chunk.len());
                    for (index, invitation, token) in chunk {
                        let invitation = Invitation {
                            version: 1,
                            ..invitation.clone()
                        };
                        sending.push(self.send_row(&org, *index, invitation, token.clone()));
                    }
                    let sent: Vec<(usize, Invitation)> = futures::stream::iter(sending)
                        .buffer_unordered(BATCH_MAIL_CONCURRENCY)
                        .collect()
                        .await;
                    for (index, invitation) in sent {
                        outcomes[index] = Some(outcome_of(&invitation));
                    }
                }
                // Something in the chunk raced with another writer: fall back to one commit
                // per row so that only the clashing rows fail.
                Err(error)
                    if matches!(
                        error.kind(),
                        StoreErrorKind::Conflict | StoreErrorKind::Unique
                    ) =>
                {
                    for (index, invitation, token) in chunk {
                        let mut changes = ChangeSet::new();
                        self.record_created(principal, invitation, &mut changes);
                        changes.put(invitation.clone());
                        outcomes[*index] = Some(match self.ctx.store.commit(changes).await {
                            Ok(()) => {
                                let invitation = Invitation {
                                    version: 1,
                                    ..invitation.clone()
                                };
                                let issued = self.send(&org, invitation, token.clone()).await;
                                outcome_of(&issued.invitation)
                            }
                            Err(_) => BatchRowOutcome::Invalid {
                                reason: "changed concurrently; try this row again".to_owned(),
                            },
                        });
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        let outcomes = outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or(BatchRowOutcome::Invalid {
                    reason: "not processed".to_owned(),
                })
            })
            .collect();
        Ok((batch, outcomes))
    }

    async fn check_row(
        &self,
        principal: &Principal,
        org: &Organization,
        row: &InvitationRequest,
    ) -> Result<RowCheck, InvitationError> {
        match self.prepare(principal, org, row).await {
            Ok(prepared) => Ok(RowCheck::Ready(prepared)),
            Err(InvitationError::Denied(reason)) => {
                Ok(RowCheck::Outcome(BatchRowOutcome::NotAllowed {
                    reason: reason.to_string(),
                }))
            }
            Err(InvitationError::AlreadyMember(_)) => {
                Ok(RowCheck::Outcome(BatchRowOutcome::AlreadyMember))
            }
            Err(InvitationError::AlreadyInvited { invitation, .. }) => {
                Ok(RowCheck::Outcome(BatchRowOutcome::AlreadyInvited {
                    invitation,
                }))
            }
            Err(InvitationError::Store(error)) => Err(InvitationError::Store(error)),
            Err(InvitationError::Conflict) => Err(InvitationError::Conflict),
            Err(other) => Ok(RowCheck::Outcome(BatchRowOutcome::Invalid {
                reason: other.to_string(),
            })),
        }
    }

    async fn active_org(&self, id: OrganizationId) -> Result<Organization, InvitationError> {
        let org = self
            .ctx
            .store
            .organization(id)
            .await?
            .ok_or(InvitationError::UnknownOrganization)?;
        if !org.is_active() {
            return Err(InvitationError::OrganizationInactive);
        }
        Ok(org)
    }

    /// Validates a request, authorizes it, and checks that the person is not already in.
    async fn prepare(
        &self,
        principal: &Principal,
        org: &Organization,
        request: &InvitationRequest,
    ) -> Result<Prepared, InvitationError> {
        let email = EmailAddress::parse(&request.email)?;
        let name = match (&request.given_name, &request.family_name) {
            (Some(given), Some(family)) => Some(PersonName::parse(given, family)?),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => return Err(InvitationError::NameRequired),
        };
        let mut business_roles = BTreeSet::new();
        let mut role_services = BTreeSet::new();
        for key in &request.business_roles {
            let role = self
                .ctx
                .store
                .business_role_by_key(key)
                .await?
                .ok_or_else(|| InvitationError::UnknownBusinessRole(key.clone()))?;
            role_services.extend(role.services());
            business_roles.insert(role.id);
        }
        let mut mandates = request.mandates.clone();
        if request.contact_person {
            mandates.insert(Mandate::OrgAdmin);
        }
        for mandate in &mandates {
            if let Mandate::ServiceManager(service) = mandate {
                if self.ctx.store.service(*service).await?.is_none() {
                    return Err(InvitationError::UnknownService(service.to_string()));
                }
            }
        }
        let kind = match (&request.crm_lead_id, request.contact_person) {
            (Some(lead), _) => InvitationKind::Lead {
                crm_lead_id: crate::contact::key_text("crm_lead_id", lead, 128)?,
            },
            (None, true) => InvitationKind::ContactPerson,
            (None, false) => InvitationKind::Member,
        };
        let target = Target::Organization(self.ctx.org_target(org).await?);
        let action = match kind {
            InvitationKind::Lead { .. } if business_roles.is_empty() && mandates.is_empty() => {
                Action::InviteLead
            }
            _ => Action::InviteMember {
                role_services,
                mandates: mandates.clone(),
            },
        };
        authorize(principal, &action, &target).into_result()?;
        if !request.staff_roles.is_empty() {
            if org.kind != OrgKind::Provider {
                return Err(InvitationError::StaffRoleOutsideProvider);
            }
            authorize(principal, &Action::ManageStaff, &target).into_result()?;
        }
        if let Some(identity) = self.ctx.store.identity_by_email(&email).await? {
            if let Some(membership) = self.ctx.store.membership_of(identity.id, org.id).await? {
                if membership.status == MembershipStatus::Active {
                    return Err(InvitationError::AlreadyMember(email.to_string()));
                }
            }
        }
        if let Some(open) = self
            .ctx
            .store
            .open_invitations_for_email(&email)
            .await?
            .into_iter()
            .find(|invitation| invitation.organization == org.id)
        {
            return Err(InvitationError::AlreadyInvited {
                email: email.to_string(),
                invitation: open.id,
            });
        }
        if matches!(kind, InvitationKind::Lead { .. })
            && self.ctx.policy.is_webmail(email.domain())
            && self.ctx.policy.webmail_policy == WebmailPolicy::Refuse
        {
            return Err(InvitationError::WebmailRefused);
        }
        Ok(Prepared {
            email,
            name,
            kind,
            business_roles,
            mandates,
            staff_roles: request.staff_roles.clone(),
        })
    }

    fn build(
        &self,
        principal: &Principal,
        org: &Organization,
        prepared: Prepared,
        batch: Option<BatchId>,
    ) -> Result<(Invitation, Option<SecretToken>), InvitationError> {
        let now = self.ctx.now();
        let held = matches!(prepared.kind, InvitationKind::Lead { .. })
            && self.ctx.policy.is_webmail(prepared.email.domain())
            && self.ctx.policy.webmail_policy == WebmailPolicy::HoldForReview;
        let token = (!held).then(|| SecretToken::generate(self.ctx.random.as_ref()));
        let invitation = Invitation {
            id: InvitationId::generate(self.ctx.random.as_ref()),
            version: 0,
            organization: org.id,
            email: prepared.email,
            name: prepared.name,
            kind: prepared.kind,
            business_roles: prepared.business_roles,
            mandates: prepared.mandates,
            staff_roles: prepared.staff_roles,
            status: if held {
                InvitationStatus::HeldForReview
            } else {
                InvitationStatus::Pending
            },
            token_hash: token.as_ref().map(SecretToken::hash),
            expires_at: now + self.ctx.policy.invitation_lifetime,
            invited_by: principal.actor(),
            batch,
            accepted_by: None,
            created_at: now,
            updated_at: now,
        };
        Ok((invitation, token))
    }

    fn record_created(
        &self,
        principal: &Principal,
        invitation: &Invitation,
        changes: &mut ChangeSet,
    ) {
        let crm_lead_id = match &invitation.kind {
            InvitationKind::Lead { crm_lead_id } => Some(crm_lead_id.clone()),
            InvitationKind::Member | InvitationKind::ContactPerson => None,
        };
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(invitation.organization),
            None,
            EventKind::InvitationCreated {
                invitation: invitation.id,
                email: invitation.email.to_string(),
                status: invitation.status,
                crm_lead_id,
            },
            invitation.created_at,
        ));
    }

    /// [`Self::send`] for row `index` of a batch.
    async fn send_row(
        &self,
        org: &Organization,
        index: usize,
        invitation: Invitation,
        token: Option<SecretToken>,
    ) -> (usize, Invitation) {
        (index, self.send(org, invitation, token).await.invitation)
    }

    async fn send(
        &self,
        org: &Organization,
        invitation: Invitation,
        token: Option<SecretToken>,
    ) -> IssuedInvitation {
        let Some(token) = token else {
            return IssuedInvitation {
                invitation,
                token: None,
                link: None,
                mail_sent: false,
            };
        };
        let link = self
            .ctx
            .link(&format!("/invitations/accept?token={}", token.expose()));
        let message = messages::invitation(
            &self.ctx.policy.product_name,
            &invitation.email,
            &org.name,
            &link,
            self.ctx.policy.invitation_lifetime.num_days(),
        );
        let mail_sent = self.ctx.send_mail(message).await;
        IssuedInvitation {
            invitation,
            token: Some(token),
            link: Some(link),
            mail_sent,
        }
    }

    /// Looks up an invitation by its token without using it (for the acceptance page).
    pub async fn preview(&self, token: &SecretToken) -> Result<Invitation, InvitationError> {
        let invitation = self
            .ctx
            .store
            .invitation_by_token(&token.hash())
            .await?
            .ok_or(InvitationError::NotFound)?;
        if invitation.status != InvitationStatus::Pending {
            return Err(InvitationError::NotUsable(invitation.status));
        }
        if self.ctx.now() >= invitation.expires_at {
            return Err(InvitationError::Expired);
        }
        Ok(invitation)
    }

    /// Accepts an invitation with its token: creates the identity (or links the existing one),
    /// sets the password, marks the email verified and activates the membership, in one
    /// commit. Of two concurrent acceptances exactly one succeeds.
    pub async fn accept(
        &self,
        principal: &Principal,
        token: &SecretToken,
        acceptance: Acceptance,
    ) -> Result<AcceptedInvitation, InvitationError> {
        self.accept_as(principal, token, acceptance, None).await
    }

    /// Accepts an invitation; with `federated`, the person signed in at that identity provider
    /// instead of choosing a password, and the external identity is linked in the same commit
    /// (used by [`crate::login::Login::complete_federated`]).
    pub(crate) async fn accept_as(
        &self,
        principal: &Principal,
        token: &SecretToken,
        acceptance: Acceptance,
        federated: Option<FederatedAcceptance>,
    ) -> Result<AcceptedInvitation, InvitationError> {
        authorize(principal, &Action::SelfService, &Target::Global).into_result()?;
        let invitation = self.preview(token).await?;
        let now = self.ctx.now();
        let status = invitation
            .status
            .transition(InvitationTransition::Accept)
            .ok_or(InvitationError::NotUsable(invitation.status))?;
        let org = self
            .ctx
            .store
            .organization(invitation.organization)
            .await?
            .ok_or(InvitationError::UnknownOrganization)?;
        if !org.is_active() {
            return Err(InvitationError::OrganizationInactive);
        }
        let actor_for_events = |identity: IdentityId| match principal {
            Principal::Anonymous => Actor::Identity(identity),
            other => other.actor(),
        };
        let mut changes = ChangeSet::new();
        let existing = self.ctx.store.identity_by_email(&invitation.email).await?;
        let created = existing.is_none();
        let identity = match existing {
            Some(identity) => {
                if identity.status == IdentityStatus::Disabled {
                    return Err(InvitationError::IdentityDisabled);
                }
                let mut identity = identity;
                let has_password = self
                    .ctx
                    .store
                    .credentials_of_identity(identity.id)
                    .await?
                    .iter()
                    .any(|c| matches!(c.kind, CredentialKind::Password { .. }));
                if !has_password && federated.is_none() {
                    let password = acceptance
                        .password
                        .as_ref()
                        .ok_or(InvitationError::PasswordRequired)?;
                    self.add_password(&identity, &org.name, password, now, &mut changes)
                        .await?;
                }
                identity.email_verified = true;
                identity.status = IdentityStatus::Active;
                identity.updated_at = now;
                identity
            }
            None => {
                let name = match (&acceptance.given_name, &acceptance.family_name) {
                    (Some(given), Some(family)) => PersonName::parse(given, family)?,
                    _ => invitation
                        .name
                        .clone()
                        .ok_or(InvitationError::NameRequired)?,
                };
                let password = match &federated {
                    Some(_) => None,
                    None => Some(
                        acceptance
                            .password
                            .as_ref()
                            .ok_or(InvitationError::PasswordRequired)?,
                    ),
                };
                let identity = Identity {
                    id: IdentityId::generate(self.ctx.random.as_ref()),
                    version: 0,
                    email: invitation.email.clone(),
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
                if let Some(password) = password {
                    self.add_password(&identity, &org.name, password, now, &mut changes)
                        .await?;
                }
                identity
            }
        };
        if let Some(federated) = &federated {
            self.add_federated_link(&identity, federated, now, &mut changes)
                .await?;
        }
        let actor = actor_for_events(identity.id);
        let mut business_roles = invitation.business_roles.clone();
        let crm_lead_id = match &invitation.kind {
            InvitationKind::Lead { crm_lead_id } => {
                let lead = Catalog { ctx: self.ctx }.lead_role().await?;
                business_roles.insert(lead.id);
                Some(crm_lead_id.clone())
            }
            InvitationKind::Member | InvitationKind::ContactPerson => None,
        };
        let mut mandates = invitation.mandates.clone();
        if invitation.kind == InvitationKind::ContactPerson {
            mandates.insert(Mandate::OrgAdmin);
        }
        let membership = match self.ctx.store.membership_of(identity.id, org.id).await? {
            Some(mut membership) => {
                membership.status = MembershipStatus::Active;
                membership.business_roles.extend(business_roles);
                membership.mandates.extend(mandates);
                membership
                    .staff_roles
                    .extend(invitation.staff_roles.iter().copied());
                if crm_lead_id.is_some() {
                    membership.crm_lead_id.clone_from(&crm_lead_id);
                }
                membership.updated_at = now;
                membership
            }
            None => Membership {
                id: MembershipId::generate(self.ctx.random.as_ref()),
                version: 0,
                identity: identity.id,
                organization: org.id,
                status: MembershipStatus::Active,
                business_roles,
                mandates,
                staff_roles: invitation.staff_roles.clone(),
                crm_lead_id: crm_lead_id.clone(),
                created_at: now,
                updated_at: now,
            },
        };
        let accepted = Invitation {
            status,
            accepted_by: Some(identity.id),
            updated_at: now,
            ..invitation.clone()
        };
        let org_id = Some(org.id);
        let who = Some(identity.id);
        changes.event(self.ctx.event(
            &actor,
            org_id,
            who,
            EventKind::InvitationAccepted {
                invitation: invitation.id,
            },
            now,
        ));
        changes.event(
            self.ctx
                .event(&actor, org_id, who, EventKind::MembershipActivated, now),
        );
        match &crm_lead_id {
            Some(crm_lead_id) => changes.event(self.ctx.event(
                &actor,
                org_id,
                who,
                EventKind::LeadRegistered {
                    crm_lead_id: crm_lead_id.clone(),
                    email: identity.email.to_string(),
                },
                now,
            )),
            None => changes.event(self.ctx.event(
                &actor,
                org_id,
                who,
                EventKind::CustomerUserRegistered {
                    email: identity.email.to_string(),
                    given_name: identity.name.given.clone(),
                    family_name: identity.name.family.clone(),
                },
                now,
            )),
        };
        changes.put(accepted.clone());
        changes.put(identity.clone());
        changes.put(membership.clone());
        self.ctx.store.commit(changes).await?;
        Ok(AcceptedInvitation {
            invitation: Invitation {
                version: accepted.version + 1,
                ..accepted
            },
            identity: Identity {
                version: identity.version + 1,
                ..identity
            },
            membership: Membership {
                version: membership.version + 1,
                ..membership
            },
            created,
        })
    }

    async fn add_federated_link(
        &self,
        identity: &Identity,
        federated: &FederatedAcceptance,
        now: DateTime<Utc>,
        changes: &mut ChangeSet,
    ) -> Result<(), InvitationError> {
        if let Some(existing) = self
            .ctx
            .store
            .credential_by_federated_link(&federated.provider, &federated.subject)
            .await?
        {
            if existing.identity != identity.id {
                return Err(InvitationError::FederatedLoginInUse);
            }
            return Ok(());
        }
        changes.put(Credential {
            id: CredentialId::generate(self.ctx.random.as_ref()),
            version: 0,
            identity: identity.id,
            kind: CredentialKind::FederatedLink {
                provider: federated.provider.clone(),
                subject: federated.subject.clone(),
            },
            created_at: now,
            updated_at: now,
        });
        changes.event(self.ctx.event(
            &Actor::Identity(identity.id),
            None,
            Some(identity.id),
            EventKind::FederatedLinkAdded {
                provider: federated.provider.clone(),
                proof: crate::login::LinkProof::Invitation,
            },
            now,
        ));
        Ok(())
    }

    async fn add_password(
        &self,
        person: &Identity,
        organization: &str,
        password: &Password,
        now: DateTime<Utc>,
        changes: &mut ChangeSet,
    ) -> Result<(), InvitationError> {
        let identity = person.id;
        let about = PasswordContext::new()
            .email(&person.email)
            .name(&person.name)
            .organization(organization);
        screen_new_password(self.ctx, password, &about).await?;
        let hash = self
            .ctx
            .hasher
            .hash(password, self.ctx.random.as_ref())
            .await?;
        changes.put(Credential {
            id: CredentialId::generate(self.ctx.random.as_ref()),
            version: 0,
            identity,
            kind: CredentialKind::Password { hash },
            created_at: now,
            updated_at: now,
        });
        changes.event(self.ctx.event(
            &Actor::Identity(identity),
            None,
            Some(identity),
            EventKind::PasswordChanged,
            now,
        ));
        Ok(())
    }

    async fn load_for_admin(
        &self,
        principal: &Principal,
        id: InvitationId,
        action: Action,
    ) -> Result<(Invitation, Organization), InvitationError> {
        let invitation = self
            .ctx
            .store
            .invitation(id)
            .await?
            .ok_or(InvitationError::NotFound)?;
        let org = self
            .ctx
            .store
            .organization(invitation.organization)
            .await?
            .ok_or(InvitationError::UnknownOrganization)?;
        self.ctx.authorize_on(principal, action, &org).await??;
        Ok((invitation, org))
    }

    /// Sends a pending invitation again with a new token and a new expiry; the old link stops
    /// working.
    pub async fn resend(
        &self,
        principal: &Principal,
        id: InvitationId,
    ) -> Result<IssuedInvitation, InvitationError> {
        let (invitation, org) = self
            .load_for_admin(principal, id, Action::ManageInvitation)
            .await?;
        if invitation.status != InvitationStatus::Pending {
            return Err(InvitationError::NotUsable(invitation.status));
        }
        let now = self.ctx.now();
        let token = SecretToken::generate(self.ctx.random.as_ref());
        let renewed = Invitation {
            token_hash: Some(token.hash()),
            expires_at: now + self.ctx.policy.invitation_lifetime,
            updated_at: now,
            ..invitation
        };
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(org.id),
            None,
            EventKind::InvitationResent {
                invitation: renewed.id,
            },
            now,
        ));
        changes.put(renewed.clone());
        self.ctx.store.commit(changes).await?;
        let renewed = Invitation {
            version: renewed.version + 1,
            ..renewed
        };
        Ok(self.send(&org, renewed, Some(token)).await)
    }

    /// Revokes a pending invitation (user management), or a held one (the back office only).
    pub async fn revoke(
        &self,
        principal: &Principal,
        id: InvitationId,
    ) -> Result<Invitation, InvitationError> {
        let (invitation, org) = self
            .load_for_admin(principal, id, Action::ManageInvitation)
            .await?;
        // An invitation held for review is the back office's to release or refuse
        // ([`Self::refuse`]), not its inviter's.
        if invitation.status == InvitationStatus::HeldForReview {
            self.ctx
                .authorize_on(principal, Action::ReviewHeldInvitation, &org)
                .await??;
        }
        self.transition(principal, invitation, &org, InvitationTransition::Revoke)
            .await
    }

    /// Declines an invitation with its token (the invitee's "Decline"): it is revoked and
    /// the link stops working. Only a pending, unexpired invitation can be declined.
    pub async fn decline(
        &self,
        principal: &Principal,
        token: &SecretToken,
    ) -> Result<Invitation, InvitationError> {
        authorize(principal, &Action::SelfService, &Target::Global).into_result()?;
        let invitation = self.preview(token).await?;
        let org = self
            .ctx
            .store
            .organization(invitation.organization)
            .await?
            .ok_or(InvitationError::UnknownOrganization)?;
        self.transition(principal, invitation, &org, InvitationTransition::Revoke)
            .await
    }

    /// Refuses an invitation held for review (back office): it is revoked without ever being
    /// sent. Only held invitations can be refused; a sent one is revoked with [`Self::revoke`].
    pub async fn refuse(
        &self,
        principal: &Principal,
        id: InvitationId,
    ) -> Result<Invitation, InvitationError> {
        let (invitation, org) = self
            .load_for_admin(principal, id, Action::ReviewHeldInvitation)
            .await?;
        if invitation.status != InvitationStatus::HeldForReview {
            return Err(InvitationError::NotUsable(invitation.status));
        }
        self.transition(principal, invitation, &org, InvitationTransition::Revoke)
            .await
    }

    /// Releases an invitation held for review and sends it (back office).
    pub async fn release(
        &self,
        principal: &Principal,
        id: InvitationId,
    ) -> Result<IssuedInvitation, InvitationError> {
        let (invitation, org) = self
            .load_for_admin(principal, id, Action::ReviewHeldInvitation)
            .await?;
        let status = invitation
            .status
            .transition(InvitationTransition::Release)
            .ok_or(InvitationError::NotUsable(invitation.status))?;
        let now = self.ctx.now();
        let token = SecretToken::generate(self.ctx.random.as_ref());
        let released = Invitation {
            status,
            token_hash: Some(token.hash()),
            expires_at: now + self.ctx.policy.invitation_lifetime,
            updated_at: now,
            ..invitation
        };
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(org.id),
            None,
            EventKind::InvitationReleased {
                invitation: released.id,
            },
            now,
        ));
        changes.put(released.clone());
        self.ctx.store.commit(changes).await?;
        let released = Invitation {
            version: released.version + 1,
            ..released
        };
        Ok(self.send(&org, released, Some(token)).await)
    }

    async fn transition(
        &self,
        principal: &Principal,
        invitation: Invitation,
        org: &Organization,
        transition: InvitationTransition,
    ) -> Result<Invitation, InvitationError> {
        let status = invitation
            .status
            .transition(transition)
            .ok_or(InvitationError::NotUsable(invitation.status))?;
        let now = self.ctx.now();
        let kind = match transition {
            InvitationTransition::Revoke => EventKind::InvitationRevoked {
                invitation: invitation.id,
            },
            InvitationTransition::Expire => EventKind::InvitationExpired {
                invitation: invitation.id,
            },
            InvitationTransition::Accept | InvitationTransition::Release => {
                return Err(InvitationError::NotUsable(invitation.status));
            }
        };
        let next = Invitation {
            status,
            token_hash: None,
            updated_at: now,
            ..invitation
        };
        let mut changes = ChangeSet::new();
        changes.event(
            self.ctx
                .event(&principal.actor(), Some(org.id), None, kind, now),
        );
        changes.put(next.clone());
        self.ctx.store.commit(changes).await?;
        Ok(Invitation {
            version: next.version + 1,
            ..next
        })
    }

    /// Marks invitations whose time ran out as expired (scheduled work; system).
    pub async fn expire_due(
        &self,
        principal: &Principal,
        limit: usize,
    ) -> Result<usize, InvitationError> {
        authorize(principal, &Action::ManageInvitation, &Target::Global).into_result()?;
        let now = self.ctx.now();
        let mut expired = 0;
        let open = self
            .ctx
            .store
            .invitations_with_status(
                &[InvitationStatus::Pending, InvitationStatus::HeldForReview],
                limit,
            )
            .await?;
        for invitation in open.into_iter().filter(|i| i.expires_at <= now) {
            let Some(org) = self.ctx.store.organization(invitation.organization).await? else {
                continue;
            };
            match self
                .transition(principal, invitation, &org, InvitationTransition::Expire)
                .await
            {
                Ok(_) => expired += 1,
                Err(InvitationError::Conflict) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(expired)
    }

    /// Invitations of an organization with one of `statuses` (all when empty).
    pub async fn list(
        &self,
        principal: &Principal,
        organization: OrganizationId,
        statuses: &[InvitationStatus],
        limit: usize,
    ) -> Result<Vec<Invitation>, InvitationError> {
        let org = self
            .ctx
            .store
            .organization(organization)
            .await?
            .ok_or(InvitationError::UnknownOrganization)?;
        self.ctx
            .authorize_on(principal, Action::ViewOrganization, &org)
            .await??;
        Ok(self
            .ctx
            .store
            .invitations_of_organization(org.id, statuses, limit)
            .await?)
    }

    /// Invitations held for review across organizations (back office).
    pub async fn held_for_review(
        &self,
        principal: &Principal,
        limit: usize,
    ) -> Result<Vec<Invitation>, InvitationError> {
        authorize(principal, &Action::ReviewHeldInvitation, &Target::Global).into_result()?;
        Ok(self
            .ctx
            .store
            .invitations_with_status(&[InvitationStatus::HeldForReview], limit)
            .await?)
    }
}

fn outcome_of(invitation: &Invitation) -> BatchRowOutcome {
    match invitation.status {
        InvitationStatus::HeldForReview => BatchRowOutcome::HeldForReview {
            invitation: invitation.id,
        },
        _ => BatchRowOutcome::Invited {
            invitation: invitation.id,
        },
    }
}
