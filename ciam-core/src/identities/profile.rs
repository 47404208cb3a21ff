//! A person's own profile: name, and email and phone changes that take effect only once the
//! code sent to the new address or number is confirmed.

use chrono::{DateTime, Duration, Utc};

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::contact::{EmailAddress, PersonName, PhoneNumber, ValidationError};
use crate::delivery::{MessagePurpose, SmsMessage};
use crate::events::{ContactField, EventKind};
use crate::identities::{Identity, Membership, PendingContactChange};
use crate::ids::IdentityId;
use crate::messages;
use crate::secrets::{CodeChallenge, CodeCheck, OneTimeCode};
use crate::store::{ChangeSet, StoreError, StoreErrorKind};

/// Errors of profile changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No such person.
    #[error("person not found")]
    UnknownIdentity,
    /// Another account uses that email.
    #[error("this email is already used by another account")]
    EmailTaken,
    /// Nothing is waiting for a code.
    #[error("no change is waiting for a code")]
    NothingPending,
    /// The code is wrong; tries remain.
    #[error("the code is not correct")]
    WrongCode,
    /// The code expired or its tries are used up.
    #[error("the code has expired or was entered wrongly too often; ask for a new code")]
    CodeExhausted,
    /// A code was sent moments ago, or too many this hour (to this person or this address).
    #[error("no new code can be sent now; try again in {} seconds", retry_after.num_seconds().max(1))]
    CodesThrottled {
        /// How long to wait at most.
        retry_after: Duration,
    },
    /// The same as now.
    #[error("this is already your current value")]
    Unchanged,
    /// Changed concurrently.
    #[error("your profile was changed at the same time elsewhere; reload and retry")]
    Conflict,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ProfileError {
    fn from(error: StoreError) -> Self {
        match (error.kind(), error.field()) {
            (StoreErrorKind::Unique, Some("email")) => Self::EmailTaken,
            (StoreErrorKind::Conflict | StoreErrorKind::Unique, _) => Self::Conflict,
            _ => Self::Store(error),
        }
    }
}

/// A person's own profile. Get one from [`crate::Ciam::profile`].
pub struct Profile<'a> {
    pub(crate) ctx: &'a Context,
}

impl Profile<'_> {
    async fn load(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<Identity, ProfileError> {
        authorize(
            principal,
            &Action::ManageOwnProfile,
            &Target::Identity(identity),
        )
        .into_result()?;
        self.ctx
            .store
            .identity(identity)
            .await?
            .ok_or(ProfileError::UnknownIdentity)
    }

    /// The person's profile.
    pub async fn get(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<Identity, ProfileError> {
        self.load(principal, identity).await
    }

    /// The person's memberships.
    pub async fn memberships(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<Vec<Membership>, ProfileError> {
        self.load(principal, identity).await?;
        Ok(self.ctx.store.memberships_of_identity(identity).await?)
    }

    async fn save(
        &self,
        principal: &Principal,
        mut identity: Identity,
        event: Option<EventKind>,
    ) -> Result<Identity, ProfileError> {
        let now = self.ctx.now();
        identity.updated_at = now;
        let mut changes = ChangeSet::new();
        if let Some(kind) = event {
            changes.event(
                self.ctx
                    .event(&principal.actor(), None, Some(identity.id), kind, now),
            );
        }
        changes.put(identity.clone());
        self.ctx.store.commit(changes).await?;
        identity.version += 1;
        Ok(identity)
    }

    /// Changes the name at once.
    pub async fn change_name(
        &self,
        principal: &Principal,
        identity: IdentityId,
        given: &str,
        family: &str,
    ) -> Result<Identity, ProfileError> {
        let mut person = self.load(principal, identity).await?;
        let name = PersonName::parse(given, family)?;
        if person.name == name {
            return Err(ProfileError::Unchanged);
        }
        let before = person.name.full();
        person.name = name;
        let after = person.name.full();
        self.save(
            principal,
            person,
            Some(EventKind::ContactDetailsChanged {
                field: ContactField::Name,
                before: Some(before),
                after: Some(after),
            }),
        )
        .await
    }

    /// Starts an email change: a code goes to the new address; the old one stays until the
    /// code is confirmed. Codes are spaced and limited (no mail flooding of an address):
    /// one per [`crate::Policy::email_code_resend_interval`] per person, at most
    /// [`crate::Policy::email_codes_per_hour`] per clock hour per person and per address;
    /// beyond that [`ProfileError::CodesThrottled`], and nothing is sent or changed.
    pub async fn request_email_change(
        &self,
        principal: &Principal,
        identity: IdentityId,
        new_email: &str,
    ) -> Result<Identity, ProfileError> {
        let mut person = self.load(principal, identity).await?;
        let email = EmailAddress::parse(new_email)?;
        if email.same_as(&person.email) {
            return Err(ProfileError::Unchanged);
        }
        if self.ctx.store.identity_by_email(&email).await?.is_some() {
            return Err(ProfileError::EmailTaken);
        }
        email_code_slot(self.ctx, identity, &email).await?;
        let code = OneTimeCode::generate(self.ctx.random.as_ref());
        let expires = self.ctx.now() + self.ctx.policy.code_lifetime;
        person.pending_email = Some(PendingContactChange {
            new_value: email.clone(),
            challenge: CodeChallenge::new(&code, expires),
        });
        let person = self.save(principal, person, None).await?;
        self.ctx
            .send_mail(messages::email_code(
                &self.ctx.policy.product_name,
                &email,
                code.expose(),
                self.ctx.policy.code_lifetime.num_minutes(),
            ))
            .await;
        Ok(person)
    }

    /// Confirms an email change with the code sent to the new address.
    pub async fn confirm_email_change(
        &self,
        principal: &Principal,
        identity: IdentityId,
        code: &OneTimeCode,
    ) -> Result<Identity, ProfileError> {
        let mut person = self.load(principal, identity).await?;
        let mut pending = person
            .pending_email
            .take()
            .ok_or(ProfileError::NothingPending)?;
        match pending.challenge.check(code, self.ctx.now()) {
            CodeCheck::Valid => {
                let before = person.email.to_string();
                person.email = pending.new_value;
                person.email_verified = true;
                let after = person.email.to_string();
                self.save(
                    principal,
                    person,
                    Some(EventKind::ContactDetailsChanged {
                        field: ContactField::Email,
                        before: Some(before),
                        after: Some(after),
                    }),
                )
                .await
            }
            CodeCheck::Wrong => {
                person.pending_email = Some(pending);
                self.save(principal, person, None).await?;
                Err(ProfileError::WrongCode)
            }
            CodeCheck::Exhausted => {
                self.save(principal, person, None).await?;
                Err(ProfileError::CodeExhausted)
            }
        }
    }

    /// Starts a phone change: a code goes to the new number by SMS.
    pub async fn request_phone_change(
        &self,
        principal: &Principal,
        identity: IdentityId,
        new_phone: &str,
    ) -> Result<Identity, ProfileError> {
        let mut person = self.load(principal, identity).await?;
        let phone = PhoneNumber::parse(new_phone)?;
        if person.phone.as_ref() == Some(&phone) && person.phone_verified {
            return Err(ProfileError::Unchanged);
        }
        let code = OneTimeCode::generate(self.ctx.random.as_ref());
        let expires = self.ctx.now() + self.ctx.policy.code_lifetime;
        person.pending_phone = Some(PendingContactChange {
            new_value: phone.clone(),
            challenge: CodeChallenge::new(&code, expires),
        });
        let person = self.save(principal, person, None).await?;
        self.ctx
            .send_sms(SmsMessage {
                to: phone,
                text: messages::sms_code(
                    &self.ctx.policy.product_name,
                    code.expose(),
                    self.ctx.policy.code_lifetime.num_minutes(),
                ),
                purpose: MessagePurpose::VerificationCode,
            })
            .await;
        Ok(person)
    }

    /// Confirms a phone change with the code sent by SMS; the phone becomes verified.
    pub async fn confirm_phone_change(
        &self,
        principal: &Principal,
        identity: IdentityId,
        code: &OneTimeCode,
    ) -> Result<Identity, ProfileError> {
        let mut person = self.load(principal, identity).await?;
        let mut pending = person
            .pending_phone
            .take()
            .ok_or(ProfileError::NothingPending)?;
        match pending.challenge.check(code, self.ctx.now()) {
            CodeCheck::Valid => {
                let before = person.phone.as_ref().map(ToString::to_string);
                person.phone = Some(pending.new_value);
                person.phone_verified = true;
                let after = person.phone.as_ref().map(ToString::to_string);
                self.save(
                    principal,
                    person,
                    Some(EventKind::ContactDetailsChanged {
                        field: ContactField::Phone,
                        before,
                        after,
                    }),
                )
                .await
            }
            CodeCheck::Wrong => {
                person.pending_phone = Some(pending);
                self.save(principal, person, None).await?;
                Err(ProfileError::WrongCode)
            }
            CodeCheck::Exhausted => {
                self.save(principal, person, None).await?;
                Err(ProfileError::CodeExhausted)
            }
        }
    }

    /// Removes the phone number.
    pub async fn remove_phone(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<Identity, ProfileError> {
        let mut person = self.load(principal, identity).await?;
        let Some(before) = person.phone.take() else {
            return Err(ProfileError::Unchanged);
        };
        person.phone_verified = false;
        person.pending_phone = None;
        self.save(
            principal,
            person,
            Some(EventKind::ContactDetailsChanged {
                field: ContactField::Phone,
                before: Some(before.to_string()),
                after: None,
            }),
        )
        .await
    }
}

/// Claims the sending of an email verification code to `email` for `person`, or refuses it:
/// one per `email_code_resend_interval` per person, at most `email_codes_per_hour` per clock
/// hour per person and per address (counters in the store, shared by every node).
async fn email_code_slot(
    ctx: &Context,
    person: IdentityId,
    email: &EmailAddress,
) -> Result<(), ProfileError> {
    let now = ctx.now();
    let max = ctx.policy.email_codes_per_hour;
    let (start, end) = clock_hour(now);
    let keys = [
        format!("profile:email-codes:person:{person}:{}", start.timestamp()),
        format!(
            "profile:email-codes:address:{}:{}",
            email.normalized(),
            start.timestamp()
        ),
    ];
    let full = || ProfileError::CodesThrottled {
        retry_after: end - now,
    };
    // The hour's caps first: a refused request does not hold back the next one.
    for key in &keys {
        if ctx.store.counter(key, now).await? >= max {
            return Err(full());
        }
    }
    let gap = ctx.policy.email_code_resend_interval;
    if !ctx
        .store
        .consume_once(&format!("profile:email-gap:{person}"), now, now + gap)
        .await?
    {
        return Err(ProfileError::CodesThrottled { retry_after: gap });
    }
    for key in &keys {
        if ctx.store.increment_counter(key, now, end).await? > max {
            return Err(full());
        }
    }
    Ok(())
}

/// The clock hour containing `now`: its start and end.
fn clock_hour(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = now.timestamp() - now.timestamp().rem_euclid(3600);
    let start = DateTime::from_timestamp(start, 0).unwrap_or(now);
    (start, start + Duration::hours(1))
}
