//! Inviting, accepting, resending, revoking and expiring invitations.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;

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
    ServiceId,
};
use crate::invitations::{Invitation, InvitationKind, InvitationStatus, InvitationTransition};
use crate::messages;
use crate::organizations::{OrgKind, Organization};
use crate::secrets::SecretToken;
use crate::services::{BusinessRole, Catalog};
use crate::store::{ChangeSet, StoreError, StoreErrorKind};

/// Invitation mails of a batch handed to the mailer at once (SMTP connections are pooled).
const BATCH_MAIL_CONCURRENCY: usize = 16;

/// Rows of a batch checked against the store together and written in one commit.
const BATCH_CHUNK: usize = 500;

/// Distinct business roles or services a request may name before they are read all at once
/// instead of one by one.
const CATALOGUE_LOOKUPS: usize = 8;

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

/// The business roles (by key) and the services that the rows of a request name.
#[derive(Default)]
struct Catalogue {
    roles: HashMap<String, BusinessRole>,
    services: BTreeSet<ServiceId>,
}

/// Who among some emails is already in an organization (by normalized email).
#[derive(Default)]
struct Existing {
    /// Active members.
    members: HashSet<String>,
    /// The oldest open (held or pending) invitation to the organization.
    invited: HashMap<String, InvitationId>,
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
    /// not hold back valid ones.
    ///
    /// Rows are handled in chunks of 500: the store is asked about a whole chunk at
    /// once (who is already a member, who already has an open invitation: one read each) and
    /// the chunk's invitations and their events are written in one commit. When that commit
    /// clashes with another writer, the chunk's rows are written one by one so that only the
    /// clashing rows fail. Should the store fail once some rows are written, the rows not
    /// written say so and the written ones keep their outcome; a failure before any row is
    /// written is an error and nothing is changed.
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
        let target = Target::Organization(self.ctx.org_target(&org).await?);
        // Fail fast when the principal may not invite here at all.
        let any_invite = if rows.iter().all(|row| row.crm_lead_id.is_some()) && !rows.is_empty() {
            Action::InviteLead
        } else {
            Action::InviteMember {
                role_services: BTreeSet::new(),
                mandates: BTreeSet::new(),
            }
        };
        authorize(principal, &any_invite, &target).into_result()?;
        let batch = BatchId::generate(self.ctx.random.as_ref());
        let catalogue = self.catalogue(&rows).await?;
        let mut outcomes: Vec<Option<BatchRowOutcome>> = vec![None; rows.len()];
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut valid: Vec<(usize, Prepared)> = Vec::new();
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
            match self.validate(principal, &org, &target, &catalogue, row) {
                Ok(prepared) => valid.push((index, prepared)),
                Err(error) => outcomes[index] = Some(row_outcome(error)?),
            }
        }
        let mut written_any = false;
        let mut valid = valid.into_iter();
        loop {
            let chunk: Vec<(usize, Prepared)> = valid.by_ref().take(BATCH_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let indexes: Vec<usize> = chunk.iter().map(|(index, _)| *index).collect();
            let result = self
                .invite_chunk(principal, &org, batch, chunk, &mut outcomes)
                .await;
            match result {
                Ok(wrote) => written_any |= wrote,
                Err(error) if !written_any => return Err(error),
                // Earlier chunks are written and their mail is on its way: report this chunk's
                // rows and the rest as not written instead of failing the whole batch.
                Err(error) => {
                    tracing::warn!(%error, "batch invitation stopped part way");
                    let reason = format!("not written ({error}); try this row again");
                    for index in indexes
                        .into_iter()
                        .chain(valid.by_ref().map(|(index, _)| index))
                    {
                        if outcomes[index].is_none() {
                            outcomes[index] = Some(BatchRowOutcome::Invalid {
                                reason: reason.clone(),
                            });
                        }
                    }
                    break;
                }
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

    /// Checks one chunk of validated rows against the store (one read per check for the whole
    /// chunk), writes the admitted rows in one commit (row by row when that clashes), sends
    /// their mail and records every row's outcome. Answers whether any row was written.
    async fn invite_chunk(
        &self,
        principal: &Principal,
        org: &Organization,
        batch: BatchId,
        chunk: Vec<(usize, Prepared)>,
        outcomes: &mut [Option<BatchRowOutcome>],
    ) -> Result<bool, InvitationError> {
        let emails: Vec<EmailAddress> = chunk
            .iter()
            .map(|(_, prepared)| prepared.email.clone())
            .collect();
        let existing = self.existing(org, &emails).await?;
        let mut ready: Vec<(usize, Invitation, Option<SecretToken>)> = Vec::new();
        for (index, prepared) in chunk {
            match self.admit(&prepared, &existing) {
                Ok(()) => {
                    let (invitation, token) = self.build(principal, org, prepared, Some(batch))?;
                    ready.push((index, invitation, token));
                }
                Err(error) => outcomes[index] = Some(row_outcome(error)?),
            }
        }
        let written = write_chunk(&ready, |rows| {
            let mut changes = ChangeSet::new();
            for (_, invitation, _) in rows {
                self.record_created(principal, invitation, &mut changes);
                changes.put(invitation.clone());
            }
            self.ctx.store.commit(changes)
        })
        .await?;
        let mut sending = Vec::with_capacity(ready.len());
        let mut wrote = false;
        for ((index, invitation, token), result) in ready.into_iter().zip(written) {
            match result {
                Ok(()) => {
                    wrote = true;
                    let invitation = Invitation {
                        version: 1,
                        ..invitation
                    };
                    sending.push(self.send_row(org, index, invitation, token));
                }
                Err(error) => {
                    outcomes[index] = Some(BatchRowOutcome::Invalid {
                        reason: if is_clash(&error) {
                            "changed concurrently; try this row again".to_owned()
                        } else {
                            format!("not written ({error}); try this row again")
                        },
                    });
                }
            }
        }
        // The mail is handed over BATCH_MAIL_CONCURRENCY at a time (a queueing mailer takes it
        // at once; a direct one is waited for group by group, not one after another).
        let sent: Vec<(usize, Invitation)> = futures::stream::iter(sending)
            .buffer_unordered(BATCH_MAIL_CONCURRENCY)
            .collect()
            .await;
        for (index, invitation) in sent {
            outcomes[index] = Some(outcome_of(&invitation));
        }
        Ok(wrote)
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

    /// The business roles and services that `requests` name, read once for all of them.
    async fn catalogue(
        &self,
        requests: &[InvitationRequest],
    ) -> Result<Catalogue, InvitationError> {
        let mut keys = BTreeSet::new();
        let mut services = BTreeSet::new();
        for request in requests {
            keys.extend(request.business_roles.iter().map(String::as_str));
            for mandate in &request.mandates {
                if let Mandate::ServiceManager(service) = mandate {
                    services.insert(*service);
                }
            }
        }
        let mut catalogue = Catalogue::default();
        if keys.len() > CATALOGUE_LOOKUPS {
            // Many distinct keys (most of them unknown, likely): one read of every role.
            for role in self.ctx.store.business_roles().await? {
                if keys.contains(role.key.as_str()) {
                    catalogue.roles.insert(role.key.clone(), role);
                }
            }
        } else {
            for key in keys {
                if let Some(role) = self.ctx.store.business_role_by_key(key).await? {
                    catalogue.roles.insert(key.to_owned(), role);
                }
            }
        }
        if services.len() > CATALOGUE_LOOKUPS {
            let known: BTreeSet<ServiceId> = self
                .ctx
                .store
                .services()
                .await?
                .into_iter()
                .map(|service| service.id)
                .collect();
            catalogue.services = services.intersection(&known).copied().collect();
        } else {
            for service in services {
                if self.ctx.store.service(service).await?.is_some() {
                    catalogue.services.insert(service);
                }
            }
        }
        Ok(catalogue)
    }

    /// Who among `emails` is an active member of `org` or has an open invitation there: three
    /// reads, whatever the number of emails.
    async fn existing(
        &self,
        org: &Organization,
        emails: &[EmailAddress],
    ) -> Result<Existing, InvitationError> {
        let mut existing = Existing::default();
        if emails.is_empty() {
            return Ok(existing);
        }
        let identities = self.ctx.store.identities_by_emails(emails).await?;
        if !identities.is_empty() {
            let ids: Vec<IdentityId> = identities.iter().map(|identity| identity.id).collect();
            let active: HashSet<IdentityId> = self
                .ctx
                .store
                .memberships_in_organization(org.id, &ids)
                .await?
                .into_iter()
                .filter(|membership| membership.status == MembershipStatus::Active)
                .map(|membership| membership.identity)
                .collect();
            existing.members = identities
                .into_iter()
                .filter(|identity| active.contains(&identity.id))
                .map(|identity| identity.email.normalized().to_owned())
                .collect();
        }
        // Oldest first: the open invitation named is the oldest one of the organization.
        for invitation in self.ctx.store.open_invitations_for_emails(emails).await? {
            if invitation.organization == org.id {
                existing
                    .invited
                    .entry(invitation.email.normalized().to_owned())
                    .or_insert(invitation.id);
            }
        }
        Ok(existing)
    }

    /// Validates a request, authorizes it, and checks that the person is not already in.
    async fn prepare(
        &self,
        principal: &Principal,
        org: &Organization,
        request: &InvitationRequest,
    ) -> Result<Prepared, InvitationError> {
        let target = Target::Organization(self.ctx.org_target(org).await?);
        let catalogue = self.catalogue(std::slice::from_ref(request)).await?;
        let prepared = self.validate(principal, org, &target, &catalogue, request)?;
        let existing = self
            .existing(org, std::slice::from_ref(&prepared.email))
            .await?;
        self.admit(&prepared, &existing)?;
        Ok(prepared)
    }

    /// Validates a request against `catalogue` and authorizes it on `target` (no store
    /// access).
    fn validate(
        &self,
        principal: &Principal,
        org: &Organization,
        target: &Target,
        catalogue: &Catalogue,
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
            let role = catalogue
                .roles
                .get(key)
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
                if !catalogue.services.contains(service) {
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
        let action = match kind {
            InvitationKind::Lead { .. } if business_roles.is_empty() && mandates.is_empty() => {
                Action::InviteLead
            }
            _ => Action::InviteMember {
                role_services,
                mandates: mandates.clone(),
            },
        };
        authorize(principal, &action, target).into_result()?;
        if !request.staff_roles.is_empty() {
            if org.kind != OrgKind::Provider {
                return Err(InvitationError::StaffRoleOutsideProvider);
            }
            authorize(principal, &Action::ManageStaff, target).into_result()?;
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

    /// Whether a validated row may be invited: not already an active member, no open
    /// invitation to this organization, and (for a lead) not a webmail address the policy
    /// refuses.
    fn admit(&self, prepared: &Prepared, existing: &Existing) -> Result<(), InvitationError> {
        let key = prepared.email.normalized();
        if existing.members.contains(key) {
            return Err(InvitationError::AlreadyMember(prepared.email.to_string()));
        }
        if let Some(invitation) = existing.invited.get(key) {
            return Err(InvitationError::AlreadyInvited {
                email: prepared.email.to_string(),
                invitation: *invitation,
            });
        }
        if matches!(prepared.kind, InvitationKind::Lead { .. })
            && self.ctx.policy.is_webmail(prepared.email.domain())
            && self.ctx.policy.webmail_policy == WebmailPolicy::Refuse
        {
            return Err(InvitationError::WebmailRefused);
        }
        Ok(())
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

/// Whether a store error is a clash with another writer (a stale version or a taken unique
/// value) rather than the store failing.
fn is_clash(error: &StoreError) -> bool {
    matches!(
        error.kind(),
        StoreErrorKind::Conflict | StoreErrorKind::Unique
    )
}

/// The outcome of a batch row that `error` refused; a failure of the store is no row's fault
/// and stays an error.
fn row_outcome(error: InvitationError) -> Result<BatchRowOutcome, InvitationError> {
    Ok(match error {
        InvitationError::Denied(reason) => BatchRowOutcome::NotAllowed {
            reason: reason.to_string(),
        },
        InvitationError::AlreadyMember(_) => BatchRowOutcome::AlreadyMember,
        InvitationError::AlreadyInvited { invitation, .. } => {
            BatchRowOutcome::AlreadyInvited { invitation }
        }
        InvitationError::Store(_) | InvitationError::Conflict => return Err(error),
        other => BatchRowOutcome::Invalid {
            reason: other.to_string(),
        },
    })
}

/// Writes the rows of a chunk with one `commit` of all of them. When that commit clashes with
/// another writer (see [`is_clash`]) nothing of it was written, and every row is committed on
/// its own instead, so that only the clashing rows fail. Answers each row's result; any other
/// failure of the first commit is an error (nothing of the chunk was written).
async fn write_chunk<R, F, Fut>(
    rows: &[R],
    commit: F,
) -> Result<Vec<Result<(), StoreError>>, StoreError>
where
    F: Fn(&[R]) -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    match commit(rows).await {
        Ok(()) => Ok(rows.iter().map(|_| Ok(())).collect()),
        Err(error) if is_clash(&error) => {
            tracing::info!(%error, rows = rows.len(), "a chunk of a batch clashed: writing its rows one by one");
            let mut results = Vec::with_capacity(rows.len());
            for row in rows {
                results.push(commit(std::slice::from_ref(row)).await);
            }
            Ok(results)
        }
        Err(error) => Err(error),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store's commit as `write_chunk` sees it: rows are numbers; a commit holding `clash`
    /// clashes (and writes nothing), one holding `down` finds the store unavailable; every
    /// successful commit is logged.
    struct FakeCommit {
        clash: u32,
        down: u32,
        log: Mutex<Vec<Vec<u32>>>,
    }

    impl FakeCommit {
        fn new(clash: u32, down: u32) -> Self {
            Self {
                clash,
                down,
                log: Mutex::new(Vec::new()),
            }
        }

        fn commit(&self, rows: &[u32]) -> std::future::Ready<Result<(), StoreError>> {
            std::future::ready(if rows.contains(&self.down) {
                Err(StoreError::unavailable("database down"))
            } else if rows.contains(&self.clash) {
                Err(StoreError::conflict("invitation"))
            } else {
                self.log.lock().unwrap().push(rows.to_vec());
                Ok(())
            })
        }

        fn written(&self) -> Vec<Vec<u32>> {
            self.log.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn a_chunk_is_written_in_one_commit() {
        let fake = FakeCommit::new(99, 98);
        let rows = vec![1, 2, 3];
        let results = write_chunk(&rows, |rows| fake.commit(rows)).await.unwrap();
        assert_eq!(results, vec![Ok(()), Ok(()), Ok(())]);
        assert_eq!(fake.written(), vec![vec![1, 2, 3]]);
        let none: &[u32] = &[];
        assert!(
            write_chunk(none, |rows| fake.commit(rows))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(fake.written().len(), 1, "an empty chunk commits nothing");
    }

    #[tokio::test]
    async fn a_clashing_chunk_is_written_row_by_row_and_only_the_clashing_row_fails() {
        let fake = FakeCommit::new(3, 98);
        let rows = vec![1, 2, 3, 4];
        let results = write_chunk(&rows, |rows| fake.commit(rows)).await.unwrap();
        assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
        let clash = results[2].as_ref().unwrap_err();
        assert!(is_clash(clash), "{clash}");
        // Nothing of the clashing chunk commit was written; every other row exactly once.
        assert_eq!(fake.written(), vec![vec![1], vec![2], vec![4]]);
    }

    #[tokio::test]
    async fn a_store_failure_of_the_chunk_is_an_error_and_writes_nothing() {
        let fake = FakeCommit::new(99, 2);
        let error = write_chunk(&[1, 2, 3], |rows| fake.commit(rows))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Unavailable);
        assert!(fake.written().is_empty());
    }

    #[test]
    fn row_outcomes_name_the_refusal_and_store_failures_stay_errors() {
        assert_eq!(
            row_outcome(InvitationError::AlreadyMember("a@b.example".into())).unwrap(),
            BatchRowOutcome::AlreadyMember
        );
        assert!(matches!(
            row_outcome(InvitationError::UnknownBusinessRole("ghost".into())).unwrap(),
            BatchRowOutcome::Invalid { reason } if reason.contains("ghost")
        ));
        assert!(row_outcome(InvitationError::Conflict).is_err());
        assert!(row_outcome(InvitationError::Store(StoreError::unavailable("down"))).is_err());
    }
}
