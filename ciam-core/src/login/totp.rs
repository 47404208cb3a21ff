//! TOTP (authenticator apps, RFC 6238 via totp-rs) and recovery codes.
//!
//! Enrollment returns the `otpauth://` URI and a QR code (SVG); it takes effect when the person
//! confirms it with a first code. Codes are 6 digits over 30-second steps, accepted one step
//! either side; a time step once used cannot be used again by that person (single-use key in
//! the store). The secret is kept sealed with the configured key (XChaCha20-Poly1305), never
//! in clear. Confirmation gives 10 recovery codes, shown once, kept as SHA-256 hashes, each
//! usable once.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

use crate::authz::{Action, Actor, Principal, Target, authorize};
use crate::ciam::Context;
use crate::credentials::{Credential, CredentialKind, Purpose};
use crate::events::EventKind;
use crate::ids::{CredentialId, IdentityId};
use crate::login::attempt::Stage;
use crate::login::flow::{complete, ensure_not_ended, open, second_factor_failed};
use crate::login::throttle::FailedStep;
use crate::login::{AttemptToken, Login, LoginError, LoginStep};
use crate::secrets::TokenHash;
use crate::sessions::AuthMethod;
use crate::store::{ChangeSet, RecordRef, StoreErrorKind};

const STEP_SECONDS: i64 = 30;
const DIGITS: usize = 6;
const SECRET_BYTES: usize = 20;
/// Recovery codes given at enrollment.
pub const RECOVERY_CODES: usize = 10;

/// What the person needs to set up their authenticator app. Redacted `Debug`.
#[derive(Clone)]
pub struct TotpEnrollment {
    /// The `otpauth://totp/...` URI (holds the secret).
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
    /// The secret in base32, for typing in by hand.
    pub secret_base32: String,
}

impl fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrollment(<redacted>)")
    }
}

/// A recovery code, shown once. Redacted `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// Wraps a code typed by the person (spaces and dashes are ignored, case too).
    pub fn from_presented(code: &str) -> Self {
        Self(
            code.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        )
    }

    /// The code text, to show once. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> TokenHash {
        crate::secrets::SecretToken::from_presented(self.0.clone()).hash()
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// The confirmed TOTP credential among `credentials`.
pub(crate) fn confirmed_totp(credentials: &[Credential]) -> Option<&Credential> {
    credentials.iter().find(|c| {
        matches!(
            &c.kind,
            CredentialKind::Totp {
                confirmed_at: Some(_),
                ..
            }
        )
    })
}

fn pending_totp(credentials: &[Credential]) -> Option<&Credential> {
    pending_totps(credentials).next()
}

/// Every unconfirmed TOTP credential among `credentials` (a setup started on the account page
/// and not confirmed).
fn pending_totps(credentials: &[Credential]) -> impl Iterator<Item = &Credential> {
    credentials.iter().filter(|c| {
        matches!(
            &c.kind,
            CredentialKind::Totp {
                confirmed_at: None,
                ..
            }
        )
    })
}

/// Adds to `changes` the removal of every unconfirmed TOTP secret among `credentials`: a
/// second factor set up another way leaves none behind.
pub(crate) fn remove_pending_totps(credentials: &[Credential], changes: &mut ChangeSet) {
    for pending in pending_totps(credentials) {
        changes.delete(RecordRef::Credential(pending.id, pending.version));
    }
}

/// Where the secret being confirmed is kept.
#[derive(Clone, Copy)]
pub(crate) enum PendingSecret<'a> {
    /// Stored, unconfirmed ([`Login::enroll_totp`] on the account page).
    Stored,
    /// Sealed inside a sign-in attempt ([`Login::enrolment_totp`]): nothing stored yet.
    Sealed(&'a str),
}

fn recovery_credential(credentials: &[Credential]) -> Option<&Credential> {
    credentials
        .iter()
        .find(|c| matches!(&c.kind, CredentialKind::RecoveryCodes { .. }))
}

/// Unused recovery codes among `credentials`.
pub(crate) fn recovery_codes_left(credentials: &[Credential]) -> usize {
    match recovery_credential(credentials).map(|c| &c.kind) {
        Some(CredentialKind::RecoveryCodes { hashes }) => hashes.len(),
        _ => 0,
    }
}

fn totp_for(ctx: &Context, secret: Vec<u8>, account: &str) -> Result<TOTP, LoginError> {
    let issuer = ctx
        .policy
        .login
        .totp_issuer
        .clone()
        .unwrap_or_else(|| ctx.policy.product_name.clone());
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECONDS as u64,
        secret,
        Some(issuer.replace(':', " ")),
        account.replace(':', " "),
    )
    .map_err(|_| LoginError::NoPendingEnrollment)
}

fn secret_of(ctx: &Context, credential: &Credential) -> Result<Vec<u8>, LoginError> {
    match &credential.kind {
        CredentialKind::Totp { sealed_secret, .. } => Ok(ctx
            .auth
            .sealer
            .open_bytes(Purpose::TotpSecret, sealed_secret)?),
        _ => Err(LoginError::NoPendingEnrollment),
    }
}

/// Checks a code at `now`, ±1 step, and consumes its time step for this person. `true` when it
/// matched a step not used before.
async fn check_code(
    ctx: &Context,
    totp: &TOTP,
    identity: IdentityId,
    code: &str,
    now: DateTime<Utc>,
) -> Result<bool, LoginError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let step = now.timestamp().div_euclid(STEP_SECONDS);
    for candidate in [step - 1, step, step + 1] {
        let Ok(at) = u64::try_from(candidate * STEP_SECONDS) else {
            continue;
        };
        let expected = totp.generate(at);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            // A used step cannot be used again (kept past the ±1 window).
            return Ok(ctx
                .store
                .consume_once(
                    &format!("totp:{identity}:{candidate}"),
                    now,
                    now + Duration::seconds(STEP_SECONDS * 4),
                )
                .await?);
        }
    }
    Ok(false)
}

fn generate_recovery_codes(ctx: &Context) -> Vec<RecoveryCode> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let text: String = (0..12)
                .map(|_| {
                    let index = ctx.random.below(ALPHABET.len() as u32) as usize;
                    char::from(ALPHABET.get(index).copied().unwrap_or(b'a'))
                })
                .collect();
            RecoveryCode(text)
        })
        .collect()
}

fn authorize_self(principal: &Principal, identity: IdentityId) -> Result<(), LoginError> {
    authorize(
        principal,
        &Action::ManageOwnProfile,
        &Target::Identity(identity),
    )
    .into_result()?;
    Ok(())
}

impl Login<'_> {
    /// Starts setting up an authenticator app for the signed-in person. Needs a configured
    /// secret key ([`crate::CiamBuilder::secret_key`]).
    pub async fn enroll_totp(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<TotpEnrollment, LoginError> {
        authorize_self(principal, identity)?;
        self.start_totp_enrollment(identity).await
    }

    /// [`Login::enroll_totp`] after its authorization: a new secret, stored unconfirmed
    /// (replacing one started earlier).
    async fn start_totp_enrollment(
        &self,
        identity: IdentityId,
    ) -> Result<TotpEnrollment, LoginError> {
        let ctx = self.ctx;
        let (enrollment, sealed_secret) = self.new_totp_secret(identity).await?;
        let now = ctx.now();
        let credentials = ctx.store.credentials_of_identity(identity).await?;
        let mut changes = ChangeSet::new();
        remove_pending_totps(&credentials, &mut changes);
        changes.put(Credential {
            id: CredentialId::generate(ctx.random.as_ref()),
            version: 0,
            identity,
            kind: CredentialKind::Totp {
                sealed_secret,
                confirmed_at: None,
            },
            created_at: now,
            updated_at: now,
        });
        ctx.store.commit(changes).await?;
        Ok(enrollment)
    }

    /// A new authenticator-app secret for `identity`: what the person needs to set the app
    /// up, and the secret sealed with the configured key. Stores nothing. Needs a configured
    /// secret key.
    pub(crate) async fn new_totp_secret(
        &self,
        identity: IdentityId,
    ) -> Result<(TotpEnrollment, String), LoginError> {
        let ctx = self.ctx;
        if !ctx.auth.sealer.configured {
            return Err(LoginError::NoSecretKey);
        }
        let person = ctx
            .store
            .identity(identity)
            .await?
            .ok_or(LoginError::NoPendingEnrollment)?;
        let mut secret = vec![0u8; SECRET_BYTES];
        ctx.random.fill(&mut secret);
        let totp = totp_for(ctx, secret.clone(), person.email.as_str())?;
        let otpauth_uri = totp.get_url();
        let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
            .map(|qr| {
                qr.render::<qrcode::render::svg::Color<'_>>()
                    .min_dimensions(200, 200)
                    .build()
            })
            .map_err(|_| LoginError::NoPendingEnrollment)?;
        let sealed_secret =
            ctx.auth
                .sealer
                .seal_bytes(Purpose::TotpSecret, &secret, ctx.random.as_ref())?;
        Ok((
            TotpEnrollment {
                otpauth_uri,
                qr_svg,
                secret_base32: totp.get_secret_base32(),
            },
            sealed_secret,
        ))
    }

    /// Confirms the authenticator app with a first code; returns the 10 recovery codes (shown
    /// once). Replaces an earlier app and earlier recovery codes.
    pub async fn confirm_totp(
        &self,
        principal: &Principal,
        identity: IdentityId,
        code: &str,
    ) -> Result<Vec<RecoveryCode>, LoginError> {
        authorize_self(principal, identity)?;
        self.finish_totp_enrollment(&principal.actor(), identity, code, PendingSecret::Stored)
            .await
    }

    /// [`Login::confirm_totp`] after its authorization, the event recorded as `actor`'s; the
    /// secret stored unconfirmed, or sealed in a sign-in attempt. Any unconfirmed secret still
    /// stored is removed with it.
    pub(crate) async fn finish_totp_enrollment(
        &self,
        actor: &Actor,
        identity: IdentityId,
        code: &str,
        pending: PendingSecret<'_>,
    ) -> Result<Vec<RecoveryCode>, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let person = ctx
            .store
            .identity(identity)
            .await?
            .ok_or(LoginError::NoPendingEnrollment)?;
        let credentials = ctx.store.credentials_of_identity(identity).await?;
        let (sealed_secret, stored) = match pending {
            PendingSecret::Stored => {
                let stored = pending_totp(&credentials)
                    .ok_or(LoginError::NoPendingEnrollment)?
                    .clone();
                let CredentialKind::Totp { sealed_secret, .. } = &stored.kind else {
                    return Err(LoginError::NoPendingEnrollment);
                };
                (sealed_secret.clone(), Some(stored))
            }
            PendingSecret::Sealed(sealed_secret) => {
                // Set up inside a sign-in, for someone without a second factor: once they
                // have one (this attempt replayed after an app or a phone completed it),
                // nothing is set up or replaced.
                let verified_phone = person.phone.is_some() && person.phone_verified;
                if verified_phone || confirmed_totp(&credentials).is_some() {
                    return Err(LoginError::AttemptExpired);
                }
                (sealed_secret.to_owned(), None)
            }
        };
        let secret = ctx
            .auth
            .sealer
            .open_bytes(Purpose::TotpSecret, &sealed_secret)?;
        let totp = totp_for(ctx, secret, person.email.as_str())?;
        if !check_code(ctx, &totp, identity, code, now).await? {
            return Err(LoginError::WrongCode);
        }
        let codes = generate_recovery_codes(ctx);
        let mut changes = ChangeSet::new();
        if let Some(old) = confirmed_totp(&credentials) {
            changes.delete(RecordRef::Credential(old.id, old.version));
        }
        if let Some(old) = recovery_credential(&credentials) {
            changes.delete(RecordRef::Credential(old.id, old.version));
        }
        let confirmed = CredentialKind::Totp {
            sealed_secret,
            confirmed_at: Some(now),
        };
        match stored {
            Some(stored) => {
                changes.put(Credential {
                    kind: confirmed,
                    updated_at: now,
                    ..stored
                });
            }
            None => {
                remove_pending_totps(&credentials, &mut changes);
                changes.put(Credential {
                    id: CredentialId::generate(ctx.random.as_ref()),
                    version: 0,
                    identity,
                    kind: confirmed,
                    created_at: now,
                    updated_at: now,
                });
            }
        }
        changes.put(Credential {
            id: CredentialId::generate(ctx.random.as_ref()),
            version: 0,
            identity,
            kind: CredentialKind::RecoveryCodes {
                hashes: codes.iter().map(RecoveryCode::hash).collect(),
            },
            created_at: now,
            updated_at: now,
        });
        changes.event(ctx.event(
            actor,
            None,
            Some(identity),
            EventKind::SecondFactorEnrolled {
                method: AuthMethod::Otp,
                recovery_codes: codes.len(),
            },
            now,
        ));
        ctx.store.commit(changes).await?;
        Ok(codes)
    }

    /// Replaces the signed-in person's recovery codes with 10 new ones (shown once); the old
    /// ones stop working. Needs a confirmed authenticator app.
    pub async fn renew_recovery_codes(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<Vec<RecoveryCode>, LoginError> {
        authorize_self(principal, identity)?;
        let ctx = self.ctx;
        let now = ctx.now();
        let credentials = ctx.store.credentials_of_identity(identity).await?;
        if confirmed_totp(&credentials).is_none() {
            return Err(LoginError::NoPendingEnrollment);
        }
        let codes = generate_recovery_codes(ctx);
        let mut changes = ChangeSet::new();
        if let Some(old) = recovery_credential(&credentials) {
            changes.delete(RecordRef::Credential(old.id, old.version));
        }
        changes.put(Credential {
            id: CredentialId::generate(ctx.random.as_ref()),
            version: 0,
            identity,
            kind: CredentialKind::RecoveryCodes {
                hashes: codes.iter().map(RecoveryCode::hash).collect(),
            },
            created_at: now,
            updated_at: now,
        });
        changes.event(ctx.event(
            &principal.actor(),
            None,
            Some(identity),
            EventKind::RecoveryCodesRenewed { count: codes.len() },
            now,
        ));
        ctx.store.commit(changes).await?;
        Ok(codes)
    }

    /// Checks a code from the authenticator app in a login attempt.
    pub async fn verify_totp(
        &self,
        attempt: &AttemptToken,
        code: &str,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let state = open(ctx, attempt, now)?;
        ensure_not_ended(ctx, &state, now).await?;
        let Stage::SecondFactor {
            identity,
            methods,
            goal,
            ..
        } = &state.stage
        else {
            return Err(LoginError::WrongStep);
        };
        let person = ctx
            .store
            .identity(*identity)
            .await?
            .ok_or(LoginError::AttemptExpired)?;
        let credentials = ctx.store.credentials_of_identity(*identity).await?;
        let credential = confirmed_totp(&credentials).ok_or(LoginError::FactorUnavailable)?;
        let totp = totp_for(ctx, secret_of(ctx, credential)?, person.email.as_str())?;
        if !check_code(ctx, &totp, *identity, code, now).await? {
            return Err(second_factor_failed(ctx, &state, *identity, FailedStep::Totp, now).await);
        }
        let mut methods = methods.clone();
        methods.push(AuthMethod::Otp);
        complete(ctx, &state, *identity, methods, goal.clone()).await
    }

    /// Uses one recovery code in a login attempt (it is then gone).
    pub async fn verify_recovery_code(
        &self,
        attempt: &AttemptToken,
        code: &RecoveryCode,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let state = open(ctx, attempt, now)?;
        ensure_not_ended(ctx, &state, now).await?;
        let Stage::SecondFactor {
            identity,
            methods,
            goal,
            ..
        } = &state.stage
        else {
            return Err(LoginError::WrongStep);
        };
        let wanted = code.hash();
        // Version-checked removal: of two concurrent uses of one code exactly one wins.
        let mut used = None;
        for _ in 0..3 {
            let credentials = ctx.store.credentials_of_identity(*identity).await?;
            let Some(credential) = recovery_credential(&credentials) else {
                break;
            };
            let CredentialKind::RecoveryCodes { hashes } = &credential.kind else {
                break;
            };
            let Some(position) = hashes.iter().position(|h| *h == wanted) else {
                break;
            };
            let mut remaining = hashes.clone();
            remaining.remove(position);
            let left = remaining.len();
            let mut changes = ChangeSet::new();
            changes.put(Credential {
                kind: CredentialKind::RecoveryCodes { hashes: remaining },
                updated_at: now,
                ..credential.clone()
            });
            changes.event(ctx.event(
                &crate::authz::Actor::Identity(*identity),
                None,
                Some(*identity),
                EventKind::RecoveryCodeUsed { remaining: left },
                now,
            ));
            match ctx.store.commit(changes).await {
                Ok(()) => {
                    used = Some(left);
                    break;
                }
                Err(error) if error.kind() == StoreErrorKind::Conflict => continue,
                Err(error) => return Err(error.into()),
            }
        }
        if used.is_none() {
            return Err(second_factor_failed(
                ctx,
                &state,
                *identity,
                FailedStep::RecoveryCode,
                now,
            )
            .await);
        }
        let mut methods = methods.clone();
        methods.push(AuthMethod::Otp);
        complete(ctx, &state, *identity, methods, goal.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_normalized_and_redacted() {
        let code = RecoveryCode::from_presented("ABCD-efgh 2345");
        assert_eq!(code.expose(), "abcdefgh2345");
        assert_eq!(format!("{code:?}"), "RecoveryCode(<redacted>)");
        assert_eq!(
            code.hash(),
            RecoveryCode::from_presented("abcdefgh2345").hash()
        );
    }
}
