//! Organization self-registration and join requests.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::authz::{Action, Actor, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::contact::{
    EmailAddress, EmailDomain, PersonName, PhoneNumber, ValidationError, bounded_text, key_text,
};
use crate::credentials::{
    Credential, CredentialKind, Password, PasswordContext, PasswordError, screen_new_password,
};
use crate::delivery::{MessagePurpose, SmsMessage};
use crate::events::EventKind;
use crate::identities::{Identity, IdentityStatus, Mandate, Membership, MembershipStatus};
use crate::ids::{
    CredentialId, IdentityId, JoinRequestId, MembershipId, OrgRegistrationId, OrganizationId,
};
use crate::messages;
use crate::organizations::{Branding, OrgKind, OrgPolicy, OrgStatus, Organization};
use crate::registrations::{Applicant, JoinRequest, OrgRegistration, RequestStatus};
use crate::secrets::{CodeChallenge, CodeCheck, OneTimeCode};
use crate::store::{ChangeSet, PageRequest, StoreError, StoreErrorKind};

/// Codes sent per request at most (first send included).
const MAX_CODE_SENDS: u32 = 4;

/// Errors of registrations and join requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The password breaks the policy.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// No such request.
    #[error("registration not found")]
    NotFound,
    /// No organization matches the join code or email domain.
    #[error("no organization matches; check the code or ask your organization for an invitation")]
    NoMatchingOrganization,
    /// The organization does not accept join requests.
    #[error("this organization does not accept requests to join; ask for an invitation")]
    JoinRequestsClosed,
    /// An account with this email exists.
    #[error("an account with this email already exists; sign in instead")]
    AccountExists,
    /// Another organization already verified this email domain.
    #[error("an organization with this email domain is already registered; ask to join it")]
    DomainTaken,
    /// The code is wrong; tries remain.
    #[error("the code is not correct")]
    WrongCode,
    /// The code expired or its tries are used up; ask for a new one.
    #[error("the code has expired or was entered wrongly too often; ask for a new code")]
    CodeExhausted,
    /// Too many codes sent.
    #[error("too many codes were sent; start again later")]
    TooManyCodes,
    /// The request is not waiting for this step.
    #[error("the request is not waiting for this step")]
    WrongState,
    /// A rejection needs a reason.
    #[error("a reason is required to reject")]
    ReasonRequired,
    /// Changed concurrently.
    #[error("the request was changed at the same time by someone else")]
    Conflict,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RegistrationError {
    fn from(error: StoreError) -> Self {
        match (error.kind(), error.field()) {
            (StoreErrorKind::Unique, Some("email")) => Self::AccountExists,
            (StoreErrorKind::Unique, Some("email_domain")) => Self::DomainTaken,
            (StoreErrorKind::Conflict | StoreErrorKind::Unique, _) => Self::Conflict,
            _ => Self::Store(error),
        }
    }
}

/// An automatic approval from the CRM: the registering organization has an active contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractConfirmation {
    /// The CRM account id to record on the new organization.
    pub crm_account_id: String,
}

/// Asks the CRM whether a registering organization already has an active contract (then the
/// registration is approved without waiting for back office). The host provides it.
#[async_trait]
pub trait ContractLookup: Send + Sync {
    /// The CRM's confirmation for this registration, if it has an active contract.
    async fn active_contract_for(
        &self,
        registration: &OrgRegistration,
    ) -> Result<Option<ContractConfirmation>, StoreError>;
}

/// A [`ContractLookup`] that never confirms: every registration waits for back office.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoContractLookup;

#[async_trait]
impl ContractLookup for NoContractLookup {
    async fn active_contract_for(
        &self,
        _registration: &OrgRegistration,
    ) -> Result<Option<ContractConfirmation>, StoreError> {
        Ok(None)
    }
}

/// What an SME submits to register.
#[derive(Clone, Debug)]
pub struct OrgRegistrationForm {
    /// Organization name.
    pub organization_name: String,
    /// Business id or CRM account id, if known.
    pub business_id: Option<String>,
    /// Contact person's email.
    pub email: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Phone (optional; verified by SMS when given).
    pub phone: Option<String>,
    /// Password.
    pub password: Password,
}

/// How the person finds the organization to join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinTarget {
    /// The organization's join code.
    JoinCode(String),
    /// The organization that verified the domain of the person's email.
    EmailDomain,
}

/// What a person submits to join an organization.
#[derive(Clone, Debug)]
pub struct JoinRequestForm {
    /// How to find the organization.
    pub target: JoinTarget,
    /// Email.
    pub email: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Phone (optional; not verified at this step).
    pub phone: Option<String>,
    /// Password.
    pub password: Password,
}

/// A decision on a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Approve.
    Approve,
    /// Reject, with a reason the applicant sees.
    Reject {
        /// The reason.
        reason: String,
    },
}

/// Registrations and join requests. Get one from [`crate::Ciam::registrations`].
pub struct Registrations<'a> {
    pub(crate) ctx: &'a Context,
}

impl Registrations<'_> {
    async fn applicant(
        &self,
        email: &str,
        given: &str,
        family: &str,
        phone: Option<&str>,
        password: &Password,
        organization: &str,
    ) -> Result<(Applicant, OneTimeCode, Option<OneTimeCode>), RegistrationError> {
        let email = EmailAddress::parse(email)?;
        let name = PersonName::parse(given, family)?;
        let phone = phone
            .filter(|p| !p.trim().is_empty())
            .map(PhoneNumber::parse)
            .transpose()?;
        let about = PasswordContext::new()
            .email(&email)
            .name(&name)
            .organization(organization);
        screen_new_password(self.ctx, password, &about).await?;
        if self.ctx.store.identity_by_email(&email).await?.is_some() {
            return Err(RegistrationError::AccountExists);
        }
        let password_hash = self
            .ctx
            .hasher
            .hash(password, self.ctx.random.as_ref())
            .await?;
        let expires = self.ctx.now() + self.ctx.policy.code_lifetime;
        let email_code = OneTimeCode::generate(self.ctx.random.as_ref());
        let phone_code = phone
            .as_ref()
            .map(|_| OneTimeCode::generate(self.ctx.random.as_ref()));
        Ok((
            Applicant {
                email,
                name,
                phone,
                password_hash,
                email_challenge: Some(CodeChallenge::new(&email_code, expires)),
                phone_challenge: phone_code
                    .as_ref()
                    .map(|code| CodeChallenge::new(code, expires)),
                codes_sent: 1,
            },
            email_code,
            phone_code,
        ))
    }

    async fn send_codes(
        &self,
        applicant: &Applicant,
        email_code: &OneTimeCode,
        phone_code: Option<&OneTimeCode>,
    ) {
        let minutes = self.ctx.policy.code_lifetime.num_minutes();
        let product = &self.ctx.policy.product_name;
        self.ctx
            .send_mail(messages::email_code(
                product,
                &applicant.email,
                email_code.expose(),
                minutes,
            ))
            .await;
        if let (Some(phone), Some(code)) = (&applicant.phone, phone_code) {
            self.ctx
                .send_sms(SmsMessage {
                    to: phone.clone(),
                    text: messages::sms_code(product, code.expose(), minutes),
                    purpose: MessagePurpose::VerificationCode,
                })
                .await;
        }
    }

    /// Registers an organization and its contact person. A code goes to the email (and one to
    /// the phone, when given); the registration waits for them.
    pub async fn register_organization(
        &self,
        principal: &Principal,
        form: OrgRegistrationForm,
    ) -> Result<OrgRegistration, RegistrationError> {
        authorize(principal, &Action::SelfService, &Target::Global).into_result()?;
        let organization_name = bounded_text("organization name", &form.organization_name, 200)?;
        let business_id = form
            .business_id
            .as_deref()
            .filter(|id| !id.trim().is_empty())
            .map(|id| key_text("business id", id, 128))
            .transpose()?;
        let (applicant, email_code, phone_code) = self
            .applicant(
                &form.email,
                &form.given_name,
                &form.family_name,
                form.phone.as_deref(),
                &form.password,
                &organization_name,
            )
            .await?;
        let domain = applicant.email.domain().to_owned();
        let email_domain = if self.ctx.policy.is_webmail(&domain) {
            None
        } else {
            if self.ctx.domain_owner(&domain).await?.is_some() {
                return Err(RegistrationError::DomainTaken);
            }
            EmailDomain::parse(&domain).ok()
        };
        let now = self.ctx.now();
        let registration = OrgRegistration {
            id: OrgRegistrationId::generate(self.ctx.random.as_ref()),
            version: 0,
            organization_name,
            business_id,
            email_domain,
            applicant,
            status: RequestStatus::AwaitingVerification,
            organization: None,
            created_at: now,
            updated_at: now,
        };
        let mut changes = ChangeSet::new();
        changes.put(registration.clone());
        self.ctx.store.commit(changes).await?;
        self.send_codes(&registration.applicant, &email_code, phone_code.as_ref())
            .await;
        Ok(OrgRegistration {
            version: 1,
            ..registration
        })
    }

    /// Sends new codes for a registration waiting for verification (limited).
    pub async fn resend_registration_codes(
        &self,
        id: OrgRegistrationId,
    ) -> Result<(), RegistrationError> {
        let registration = self
            .ctx
            .store
            .org_registration(id)
            .await?
            .ok_or(RegistrationError::NotFound)?;
        if registration.status != RequestStatus::AwaitingVerification {
            return Err(RegistrationError::WrongState);
        }
        let mut registration = registration;
        let (email_code, phone_code) = self.renew_codes(&mut registration.applicant)?;
        registration.updated_at = self.ctx.now();
        let mut changes = ChangeSet::new();
        changes.put(registration.clone());
        self.ctx.store.commit(changes).await?;
        self.send_codes(&registration.applicant, &email_code, phone_code.as_ref())
            .await;
        Ok(())
    }

    fn renew_codes(
        &self,
        applicant: &mut Applicant,
    ) -> Result<(OneTimeCode, Option<OneTimeCode>), RegistrationError> {
        if applicant.codes_sent >= MAX_CODE_SENDS {
            return Err(RegistrationError::TooManyCodes);
        }
        applicant.codes_sent += 1;
        let expires = self.ctx.now() + self.ctx.policy.code_lifetime;
        let email_code = OneTimeCode::generate(self.ctx.random.as_ref());
        let phone_code = applicant
            .phone
            .as_ref()
            .map(|_| OneTimeCode::generate(self.ctx.random.as_ref()));
        applicant.email_challenge = Some(CodeChallenge::new(&email_code, expires));
        applicant.phone_challenge = phone_code
            .as_ref()
            .map(|code| CodeChallenge::new(code, expires));
        Ok((email_code, phone_code))
    }

    /// Checks the codes; a wrong code is counted (and saved) and refused.
    fn check_codes(
        applicant: &mut Applicant,
        email_code: &OneTimeCode,
        phone_code: Option<&OneTimeCode>,
        now: DateTime<Utc>,
    ) -> Result<(), RegistrationError> {
        let mut results = Vec::new();
        if let Some(challenge) = applicant.email_challenge.as_mut() {
            results.push(challenge.check(email_code, now));
        }
        if let Some(challenge) = applicant.phone_challenge.as_mut() {
            let presented = phone_code
                .cloned()
                .unwrap_or_else(|| OneTimeCode::from_presented(""));
            results.push(challenge.check(&presented, now));
        }
        if results.contains(&CodeCheck::Exhausted) {
            return Err(RegistrationError::CodeExhausted);
        }
        if results.contains(&CodeCheck::Wrong) {
            return Err(RegistrationError::WrongCode);
        }
        applicant.email_challenge = None;
        applicant.phone_challenge = None;
        Ok(())
    }

    /// Verifies the codes of a registration. Once verified it waits for back office, or is
    /// approved at once when the CRM confirms an active contract.
    pub async fn verify_registration(
        &self,
        id: OrgRegistrationId,
        email_code: &OneTimeCode,
        phone_code: Option<&OneTimeCode>,
    ) -> Result<OrgRegistration, RegistrationError> {
        let mut registration = self
            .ctx
            .store
            .org_registration(id)
            .await?
            .ok_or(RegistrationError::NotFound)?;
        if registration.status != RequestStatus::AwaitingVerification {
            return Err(RegistrationError::WrongState);
        }
        let now = self.ctx.now();
        if let Err(error) =
            Self::check_codes(&mut registration.applicant, email_code, phone_code, now)
        {
            // Save the counted try so that guessing is bounded.
            let mut changes = ChangeSet::new();
            registration.updated_at = now;
            changes.put(registration);
            self.ctx.store.commit(changes).await?;
            return Err(error);
        }
        registration.status = RequestStatus::PendingApproval;
        registration.updated_at = now;
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &Actor::Anonymous,
            None,
            None,
            EventKind::OrgRegistrationSubmitted {
                registration: registration.id,
                organization_name: registration.organization_name.clone(),
                email: registration.applicant.email.to_string(),
            },
            now,
        ));
        changes.put(registration.clone());
        self.ctx.store.commit(changes).await?;
        registration.version += 1;
        if let Some(confirmation) = self
            .ctx
            .contracts
            .active_contract_for(&registration)
            .await?
        {
            return self
                .approve_registration(&Actor::System, registration, Some(confirmation))
                .await;
        }
        Ok(registration)
    }

    /// A registration by id (back office, or the applicant's own flow by id).
    pub async fn registration(
        &self,
        id: OrgRegistrationId,
    ) -> Result<OrgRegistration, RegistrationError> {
        self.ctx
            .store
            .org_registration(id)
            .await?
            .ok_or(RegistrationError::NotFound)
    }

    /// Registrations waiting for back office.
    pub async fn pending_registrations(
        &self,
        principal: &Principal,
        limit: usize,
    ) -> Result<Vec<OrgRegistration>, RegistrationError> {
        authorize(principal, &Action::DecideOrgRegistration, &Target::Global).into_result()?;
        Ok(self.ctx.store.pending_org_registrations(limit).await?)
    }

    /// Back office approves or rejects a registration.
    pub async fn decide_registration(
        &self,
        principal: &Principal,
        id: OrgRegistrationId,
        decision: Decision,
    ) -> Result<OrgRegistration, RegistrationError> {
        authorize(principal, &Action::DecideOrgRegistration, &Target::Global).into_result()?;
        let registration = self
            .ctx
            .store
            .org_registration(id)
            .await?
            .ok_or(RegistrationError::NotFound)?;
        if registration.status != RequestStatus::PendingApproval {
            return Err(RegistrationError::WrongState);
        }
        match decision {
            Decision::Approve => {
                self.approve_registration(&principal.actor(), registration, None)
                    .await
            }
            Decision::Reject { reason } => {
                let reason = bounded_text("reason", &reason, 1000)
                    .map_err(|_| RegistrationError::ReasonRequired)?;
                let now = self.ctx.now();
                let actor = principal.actor();
                let rejected = OrgRegistration {
                    status: RequestStatus::Rejected {
                        by: actor.clone(),
                        at: now,
                        reason: reason.clone(),
                    },
                    updated_at: now,
                    ..registration
                };
                let mut changes = ChangeSet::new();
                changes.event(self.ctx.event(
                    &actor,
                    None,
                    None,
                    EventKind::OrgRegistrationRejected {
                        registration: rejected.id,
                        reason: reason.clone(),
                    },
                    now,
                ));
                changes.put(rejected.clone());
                self.ctx.store.commit(changes).await?;
                self.ctx
                    .send_mail(messages::decision(
                        &self.ctx.policy.product_name,
                        &rejected.applicant.email,
                        "organization registration",
                        false,
                        Some(&reason),
                        &self.ctx.link("/"),
                    ))
                    .await;
                Ok(OrgRegistration {
                    version: rejected.version + 1,
                    ..rejected
                })
            }
        }
    }

    async fn approve_registration(
        &self,
        actor: &Actor,
        registration: OrgRegistration,
        confirmation: Option<ContractConfirmation>,
    ) -> Result<OrgRegistration, RegistrationError> {
        let now = self.ctx.now();
        let automatic = confirmation.is_some();
        let org = Organization {
            id: OrganizationId::generate(self.ctx.random.as_ref()),
            version: 0,
            kind: OrgKind::Customer,
            status: OrgStatus::Active,
            name: registration.organization_name.clone(),
            parent: None,
            crm_account_id: confirmation.map(|c| c.crm_account_id),
            email_domains: registration.email_domain.iter().cloned().collect(),
            join_code: None,
            branding: Branding::default(),
            policy: OrgPolicy::default(),
            created_at: now,
            updated_at: now,
        };
        let mut changes = ChangeSet::new();
        let (identity, membership) = self.create_member(
            actor,
            &org,
            &registration.applicant,
            BTreeSet::from([Mandate::OrgAdmin]),
            now,
            &mut changes,
        );
        changes.event(self.ctx.event(
            actor,
            Some(org.id),
            None,
            EventKind::OrganizationCreated {
                name: org.name.clone(),
                crm_account_id: org.crm_account_id.clone(),
            },
            now,
        ));
        changes.event(self.ctx.event(
            actor,
            Some(org.id),
            Some(identity.id),
            EventKind::OrgRegistrationApproved {
                registration: registration.id,
                automatic,
            },
            now,
        ));
        let approved = OrgRegistration {
            status: RequestStatus::Approved {
                by: actor.clone(),
                at: now,
            },
            organization: Some(org.id),
            updated_at: now,
            ..registration
        };
        changes.put(org);
        changes.put(identity);
        changes.put(membership);
        changes.put(approved.clone());
        self.ctx.store.commit(changes).await?;
        self.ctx
            .send_mail(messages::decision(
                &self.ctx.policy.product_name,
                &approved.applicant.email,
                "organization registration",
                true,
                None,
                &self.ctx.link("/login"),
            ))
            .await;
        Ok(OrgRegistration {
            version: approved.version + 1,
            ..approved
        })
    }

    /// Adds a new active identity, its password and an active membership to `changes`.
    fn create_member(
        &self,
        actor: &Actor,
        org: &Organization,
        applicant: &Applicant,
        mandates: BTreeSet<Mandate>,
        now: DateTime<Utc>,
        changes: &mut ChangeSet,
    ) -> (Identity, Membership) {
        let identity = Identity {
            id: IdentityId::generate(self.ctx.random.as_ref()),
            version: 0,
            email: applicant.email.clone(),
            email_verified: true,
            phone: applicant.phone.clone(),
            phone_verified: applicant.phone.is_some() && applicant.phone_challenge.is_none(),
            name: applicant.name.clone(),
            status: IdentityStatus::Active,
            crm_contact_id: None,
            pending_email: None,
            pending_phone: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        let membership = Membership {
            id: MembershipId::generate(self.ctx.random.as_ref()),
            version: 0,
            identity: identity.id,
            organization: org.id,
            status: MembershipStatus::Active,
            business_roles: BTreeSet::new(),
            mandates,
            staff_roles: BTreeSet::new(),
            crm_lead_id: None,
            created_at: now,
            updated_at: now,
        };
        changes.put(Credential {
            id: CredentialId::generate(self.ctx.random.as_ref()),
            version: 0,
            identity: identity.id,
            kind: CredentialKind::Password {
                hash: applicant.password_hash.clone(),
            },
            created_at: now,
            updated_at: now,
        });
        let org_id = Some(org.id);
        let who = Some(identity.id);
        changes.event(self.ctx.event(
            actor,
            org_id,
            who,
            EventKind::CustomerUserRegistered {
                email: identity.email.to_string(),
                given_name: identity.name.given.clone(),
                family_name: identity.name.family.clone(),
            },
            now,
        ));
        changes.event(
            self.ctx
                .event(actor, org_id, who, EventKind::MembershipActivated, now),
        );
        if !membership.mandates.is_empty() {
            changes.event(self.ctx.event(
                actor,
                org_id,
                who,
                EventKind::MandatesChanged {
                    before: BTreeSet::new(),
                    after: membership.mandates.clone(),
                },
                now,
            ));
        }
        (identity, membership)
    }

    /// A person asks to join an existing organization (found by join code or by the verified
    /// domain of their email). A code goes to their email.
    pub async fn request_to_join(
        &self,
        principal: &Principal,
        form: JoinRequestForm,
    ) -> Result<JoinRequest, RegistrationError> {
        authorize(principal, &Action::SelfService, &Target::Global).into_result()?;
        let email = EmailAddress::parse(&form.email)?;
        let org = match &form.target {
            JoinTarget::JoinCode(code) => {
                let code = key_text("join code", code, 64)?;
                self.ctx.store.organization_by_join_code(&code).await?
            }
            JoinTarget::EmailDomain => self.ctx.domain_owner(email.domain()).await?,
        }
        .ok_or(RegistrationError::NoMatchingOrganization)?;
        if !org.is_active() || org.kind == OrgKind::Provider {
            return Err(RegistrationError::NoMatchingOrganization);
        }
        if !org.policy.allow_join_requests {
            return Err(RegistrationError::JoinRequestsClosed);
        }
        let (applicant, email_code, _) = self
            .applicant(
                &form.email,
                &form.given_name,
                &form.family_name,
                None,
                &form.password,
                &org.name,
            )
            .await?;
        let phone = form
            .phone
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(PhoneNumber::parse)
            .transpose()?;
        let now = self.ctx.now();
        let request = JoinRequest {
            id: JoinRequestId::generate(self.ctx.random.as_ref()),
            version: 0,
            organization: org.id,
            applicant: Applicant { phone, ..applicant },
            status: RequestStatus::AwaitingVerification,
            identity: None,
            created_at: now,
            updated_at: now,
        };
        let mut changes = ChangeSet::new();
        changes.put(request.clone());
        self.ctx.store.commit(changes).await?;
        self.send_codes(&request.applicant, &email_code, None).await;
        Ok(JoinRequest {
            version: 1,
            ..request
        })
    }

    /// A join request by id.
    pub async fn join_request(&self, id: JoinRequestId) -> Result<JoinRequest, RegistrationError> {
        self.ctx
            .store
            .join_request(id)
            .await?
            .ok_or(RegistrationError::NotFound)
    }

    /// Verifies the email code of a join request; then it waits for the organization's
    /// contact person or a user manager, who are told by email.
    pub async fn verify_join_request(
        &self,
        id: JoinRequestId,
        email_code: &OneTimeCode,
    ) -> Result<JoinRequest, RegistrationError> {
        let mut request = self
            .ctx
            .store
            .join_request(id)
            .await?
            .ok_or(RegistrationError::NotFound)?;
        if request.status != RequestStatus::AwaitingVerification {
            return Err(RegistrationError::WrongState);
        }
        let now = self.ctx.now();
        // The phone of a join request is not verified here (it becomes an unverified phone).
        let phone_challenge = request.applicant.phone_challenge.take();
        if let Err(error) = Self::check_codes(&mut request.applicant, email_code, None, now) {
            request.applicant.phone_challenge = phone_challenge;
            let mut changes = ChangeSet::new();
            request.updated_at = now;
            changes.put(request);
            self.ctx.store.commit(changes).await?;
            return Err(error);
        }
        request.status = RequestStatus::PendingApproval;
        request.updated_at = now;
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &Actor::Anonymous,
            Some(request.organization),
            None,
            EventKind::JoinRequestSubmitted {
                request: request.id,
                email: request.applicant.email.to_string(),
            },
            now,
        ));
        changes.put(request.clone());
        self.ctx.store.commit(changes).await?;
        self.notify_approvers(request.organization).await?;
        Ok(JoinRequest {
            version: request.version + 1,
            ..request
        })
    }

    async fn notify_approvers(&self, organization: OrganizationId) -> Result<(), StoreError> {
        let members = self
            .ctx
            .store
            .members_of_organization(organization, PageRequest::first(500))
            .await?;
        let link = self.ctx.link("/admin/approvals");
        for member in members.items {
            let approver = member.membership.is_active()
                && member.identity.is_active()
                && (member.membership.mandates.contains(&Mandate::OrgAdmin)
                    || member.membership.mandates.contains(&Mandate::UserManager));
            if approver {
                self.ctx
                    .send_mail(messages::request_waiting(
                        &self.ctx.policy.product_name,
                        &member.identity.email,
                        "request to join",
                        &link,
                    ))
                    .await;
            }
        }
        Ok(())
    }

    /// Join requests of an organization waiting for a decision.
    pub async fn pending_join_requests(
        &self,
        principal: &Principal,
        organization: OrganizationId,
        limit: usize,
    ) -> Result<Vec<JoinRequest>, RegistrationError> {
        let org = self
            .ctx
            .store
            .organization(organization)
            .await?
            .ok_or(RegistrationError::NoMatchingOrganization)?;
        self.ctx
            .authorize_on(principal, Action::DecideJoinRequest, &org)
            .await??;
        Ok(self.ctx.store.pending_join_requests(org.id, limit).await?)
    }

    /// The organization's contact person or a user manager approves or rejects a join
    /// request. Approval creates the person's account and an active membership.
    pub async fn decide_join_request(
        &self,
        principal: &Principal,
        id: JoinRequestId,
        decision: Decision,
    ) -> Result<JoinRequest, RegistrationError> {
        let request = self
            .ctx
            .store
            .join_request(id)
            .await?
            .ok_or(RegistrationError::NotFound)?;
        let org = self
            .ctx
            .store
            .organization(request.organization)
            .await?
            .ok_or(RegistrationError::NoMatchingOrganization)?;
        self.ctx
            .authorize_on(principal, Action::DecideJoinRequest, &org)
            .await??;
        if request.status != RequestStatus::PendingApproval {
            return Err(RegistrationError::WrongState);
        }
        let now = self.ctx.now();
        let actor = principal.actor();
        let mut changes = ChangeSet::new();
        let (decided, approved, reason) = match decision {
            Decision::Approve => {
                if self
                    .ctx
                    .store
                    .identity_by_email(&request.applicant.email)
                    .await?
                    .is_some()
                {
                    return Err(RegistrationError::AccountExists);
                }
                let (identity, membership) = self.create_member(
                    &actor,
                    &org,
                    &request.applicant,
                    BTreeSet::new(),
                    now,
                    &mut changes,
                );
                changes.event(self.ctx.event(
                    &actor,
                    Some(org.id),
                    Some(identity.id),
                    EventKind::JoinRequestApproved {
                        request: request.id,
                    },
                    now,
                ));
                let decided = JoinRequest {
                    status: RequestStatus::Approved {
                        by: actor.clone(),
                        at: now,
                    },
                    identity: Some(identity.id),
                    updated_at: now,
                    ..request
                };
                changes.put(identity);
                changes.put(membership);
                (decided, true, None)
            }
            Decision::Reject { reason } => {
                let reason = bounded_text("reason", &reason, 1000)
                    .map_err(|_| RegistrationError::ReasonRequired)?;
                changes.event(self.ctx.event(
                    &actor,
                    Some(org.id),
                    None,
                    EventKind::JoinRequestRejected {
                        request: request.id,
                        reason: reason.clone(),
                    },
                    now,
                ));
                let decided = JoinRequest {
                    status: RequestStatus::Rejected {
                        by: actor.clone(),
                        at: now,
                        reason: reason.clone(),
                    },
                    updated_at: now,
                    ..request
                };
                (decided, false, Some(reason))
            }
        };
        changes.put(decided.clone());
        self.ctx.store.commit(changes).await?;
        self.ctx
            .send_mail(messages::decision(
                &self.ctx.policy.product_name,
                &decided.applicant.email,
                &format!("request to join {}", org.name),
                approved,
                reason.as_deref(),
                &self.ctx.link("/login"),
            ))
            .await;
        Ok(JoinRequest {
            version: decided.version + 1,
            ..decided
        })
    }
}
