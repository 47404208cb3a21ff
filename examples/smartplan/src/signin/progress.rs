//! What the sign-in pages remember between steps besides the sealed attempt (which only
//! ciam-core can open): the email typed (for the "Signing in as" line and the organization's
//! branding), where to go afterwards, the second factors offered, the phone hint and whether
//! a code was sent. Kept in the MAC-protected cookie `smartplan_signin`; it only steers what
//! the pages show, every decision is made by ciam-core from the attempt itself.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::state::AppState;
use crate::web::cookies::{self, SetCookie};
use crate::web::{mac_hex, same};

/// The cookie's name.
pub const PROGRESS_COOKIE: &str = "smartplan_signin";

/// A second factor as the pages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    /// A code by SMS.
    Sms,
    /// A code from an authenticator app.
    Totp,
    /// A recovery code.
    Recovery,
}

impl Factor {
    /// The page of this factor.
    pub fn path(self) -> &'static str {
        match self {
            Self::Sms => "/signin/sms",
            Self::Totp => "/signin/totp",
            Self::Recovery => "/signin/recovery",
        }
    }

    /// The link text offering this factor.
    pub fn offer(self) -> &'static str {
        match self {
            Self::Sms => "Get a code by SMS instead",
            Self::Totp => "Use your authenticator app instead",
            Self::Recovery => "Use a recovery code instead",
        }
    }

    /// From ciam-core's name.
    pub fn from_core(factor: ciam_core::login::SecondFactor) -> Self {
        match factor {
            ciam_core::login::SecondFactor::Sms => Self::Sms,
            ciam_core::login::SecondFactor::Totp => Self::Totp,
            ciam_core::login::SecondFactor::RecoveryCode => Self::Recovery,
        }
    }
}

/// The remembered state of a sign-in in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The email the person typed (or the account's email at the link step).
    pub email: String,
    /// Where to go after signing in (already checked with `safe_next`).
    #[serde(default)]
    pub next: Option<String>,
    /// The second factors offered.
    #[serde(default)]
    pub factors: Vec<Factor>,
    /// The last digits of the verified phone.
    #[serde(default)]
    pub phone_hint: Option<String>,
    /// Whether an SMS code was sent in this attempt.
    #[serde(default)]
    pub code_sent: bool,
    /// The identity provider's name at the link step.
    #[serde(default)]
    pub provider: Option<String>,
    /// Whether this is a password reset (not a sign-in).
    #[serde(default)]
    pub reset: bool,
    /// The mobile number being set up as the second factor (the enrolment step).
    #[serde(default)]
    pub enrol_phone: Option<String>,
}

impl Progress {
    /// A sign-in for `email` going to `next` afterwards.
    pub fn new(email: impl Into<String>, next: Option<String>) -> Self {
        Self {
            email: email.into(),
            next,
            ..Self::default()
        }
    }

    /// The progress in the request, if any (and not altered).
    pub fn read(state: &AppState, headers: &HeaderMap) -> Option<Self> {
        let value = cookies::get(headers, PROGRESS_COOKIE)?;
        let (payload, mac) = value.rsplit_once('.')?;
        if !same(mac, &mac_of(state, payload)) {
            return None;
        }
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The cookie holding this progress.
    pub fn cookie(&self, state: &AppState) -> SetCookie {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = mac_of(state, &payload);
        SetCookie::new(
            PROGRESS_COOKIE,
            format!("{payload}.{mac}"),
            state.config.is_https(),
        )
        .max_age(15 * 60)
    }

    /// The cookie that forgets the progress.
    pub fn clear(state: &AppState) -> SetCookie {
        SetCookie::removal(PROGRESS_COOKIE, state.config.is_https())
    }

    /// The other factors than `current`, for the "instead" links.
    pub fn other_factors(&self, current: Factor) -> Vec<Factor> {
        self.factors
            .iter()
            .copied()
            .filter(|factor| *factor != current)
            .collect()
    }
}

fn mac_of(state: &AppState, payload: &str) -> String {
    mac_hex(
        &state.web_keys.flash,
        &[b"signin progress", payload.as_bytes()],
    )
}
