//! The checks several self-service forms share (invitation acceptance, registration, password
//! change): a person's name, a new password with its confirmation, and the password policy in
//! plain words. Each check adds a message to the form's [`FieldErrors`] instead of failing,
//! so that a page shows every problem at once.

use ciam_core::contact::PersonName;
use ciam_core::credentials::{Password, PasswordPolicy};
use ciam_core::identities::Identity;
use ciam_core::login::SecondFactor;

use crate::state::AppState;
use crate::web::{FieldErrors, WebError};

/// The password policy in plain words, for the hint under a new-password field.
pub fn password_rules(policy: &PasswordPolicy) -> String {
    let mut text = format!(
        "Use at least {} characters (at most {}).",
        policy.min_len, policy.max_len
    );
    if policy.reject_common {
        text.push_str(
            " Passwords that many people use, such as \"password1\" or \"qwerty123\", are refused.",
        );
    }
    text.push_str(
        " Leave out the name of the service, your own name, your email address and your organization's name.",
    );
    text.push_str(" A few unrelated words make a password that is long and easy to remember.");
    text
}

/// Checks a given and family name; messages go to `given_name` and `family_name`.
pub fn check_name(errors: &mut FieldErrors, given: &str, family: &str) -> Option<PersonName> {
    let mut ok = true;
    if given.trim().is_empty() {
        errors.add("given_name", "enter your given name");
        ok = false;
    } else if given.chars().count() > PersonName::MAX_LEN {
        errors.add(
            "given_name",
            format!(
                "the given name may have at most {} characters",
                PersonName::MAX_LEN
            ),
        );
        ok = false;
    }
    if family.trim().is_empty() {
        errors.add("family_name", "enter your family name");
        ok = false;
    } else if family.chars().count() > PersonName::MAX_LEN {
        errors.add(
            "family_name",
            format!(
                "the family name may have at most {} characters",
                PersonName::MAX_LEN
            ),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    match PersonName::parse(given, family) {
        Ok(name) => Some(name),
        Err(error) => {
            errors.add("given_name", error.to_string());
            None
        }
    }
}

/// Checks a new password against the policy and its confirmation; messages go to `field` and
/// `confirmation_field`.
pub fn check_new_password(
    policy: &PasswordPolicy,
    errors: &mut FieldErrors,
    (field, password): (&str, &str),
    (confirmation_field, confirmation): (&str, &str),
) -> Option<Password> {
    if password.is_empty() {
        errors.add(field, "choose a password");
        return None;
    }
    let password = Password::new(password);
    if let Err(error) = policy.check(&password) {
        errors.add(field, error.to_string());
        return None;
    }
    if !crate::web::same(password.expose(), confirmation) {
        errors.add(
            confirmation_field,
            "the two passwords are not the same; type the new password twice",
        );
        return None;
    }
    Some(password)
}

/// Whether `identity` belongs to an active organization that requires a second factor while
/// having none yet (no verified phone, no confirmed authenticator app).
pub async fn second_factor_missing(
    state: &AppState,
    identity: &Identity,
) -> Result<bool, WebError> {
    if !second_factor_required(state, identity).await? {
        return Ok(false);
    }
    Ok(second_factors(state, identity).await?.is_empty())
}

/// Whether `identity` must use a second factor: the deployment's `[security] require_mfa` or an
/// active organization's policy.
pub async fn second_factor_required(
    state: &AppState,
    identity: &Identity,
) -> Result<bool, WebError> {
    let deployment = state.config.security.require_mfa;
    if deployment == crate::config::MfaRequirement::All {
        return Ok(true);
    }
    for membership in state.store.memberships_of_identity(identity.id).await? {
        if !membership.is_active() {
            continue;
        }
        if let Some(organization) = state.store.organization(membership.organization).await?
            && organization.is_active()
            && (organization.policy.require_mfa
                || (deployment == crate::config::MfaRequirement::Staff
                    && organization.kind == ciam_core::organizations::OrgKind::Provider))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The second factors `identity` has: a verified phone, a confirmed authenticator app.
pub async fn second_factors(
    state: &AppState,
    identity: &Identity,
) -> Result<Vec<SecondFactor>, WebError> {
    let mut factors = Vec::new();
    if identity.phone.is_some() && identity.phone_verified {
        factors.push(SecondFactor::Sms);
    }
    let credentials = state.store.credentials_of_identity(identity.id).await?;
    if credentials.iter().any(|credential| {
        matches!(
            credential.kind,
            ciam_core::credentials::CredentialKind::Totp {
                confirmed_at: Some(_),
                ..
            }
        )
    }) {
        factors.push(SecondFactor::Totp);
    }
    Ok(factors)
}
