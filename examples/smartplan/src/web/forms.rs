//! Forms: [`Form`] (urlencoded, rejections become a plain [`WebError`]), [`Query`] (the same
//! for query strings) and [`FieldErrors`], the per-field messages a page shows next to its
//! inputs so that a form re-rendered after an error keeps what was typed and says what is wrong
//! where (tie each message to its input with `aria-describedby="{{ errors.id_for("email") }}"`).
//!
//! A field or parameter sent more than once is refused with 400 (`repeated_field`,
//! `repeated_parameter`) before anything reads the values: no page takes a list under one name,
//! so a repeat is never merged, and the first and the last value cannot mean different things
//! to two layers (ASVS 15.3.7).

use std::collections::{BTreeMap, HashSet};

use axum::extract::{FromRequest, FromRequestParts, RawForm, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::web::WebError;

/// The longest name quoted back in a refusal.
const NAME_SHOWN: usize = 64;

/// The first name that occurs more than once in an urlencoded text (a form body or a query
/// string), decoded.
pub fn repeated_name(encoded: &[u8]) -> Option<String> {
    let mut seen = HashSet::new();
    url::form_urlencoded::parse(encoded)
        .map(|(name, _)| name)
        .find(|name| !seen.insert(name.clone()))
        .map(|name| name.chars().take(NAME_SHOWN).collect())
}

/// The refusal of a form with a repeated field.
pub fn repeated_field_error(name: &str) -> WebError {
    WebError::bad_request(
        "repeated_field",
        format!("the field {name:?} was sent more than once; send each field once"),
    )
}

/// The refusal of a query string with a repeated parameter.
pub fn repeated_parameter_error(name: &str) -> WebError {
    WebError::bad_request(
        "repeated_parameter",
        format!("the parameter {name:?} was given more than once; give each parameter once"),
    )
}

/// An urlencoded form body; a malformed one, or one with a repeated field, is answered with a
/// plain 400 page.
#[derive(Clone, Debug)]
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let unreadable = || {
            WebError::bad_request(
                "bad_form",
                "the form could not be read; go back, reload the page and try again",
            )
            .into_response()
        };
        let bytes = match RawForm::from_request(request, state).await {
            Ok(RawForm(bytes)) => bytes,
            Err(rejection) => {
                let status = rejection.status();
                return Err(if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    WebError::new(status, "payload_too_large", "the form is too large")
                        .into_response()
                } else {
                    unreadable()
                });
            }
        };
        if let Some(name) = repeated_name(&bytes) {
            return Err(repeated_field_error(&name).into_response());
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| unreadable())
    }
}

/// A query string of a page; a malformed one, or one with a repeated parameter, is answered
/// with a plain 400 page.
#[derive(Clone, Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let raw = parts.uri.query().unwrap_or_default();
        if let Some(name) = repeated_name(raw.as_bytes()) {
            return Err(repeated_parameter_error(&name).into_response());
        }
        serde_urlencoded::from_str(raw).map(Self).map_err(|_| {
            WebError::bad_request(
                "bad_query",
                "the address could not be read; go back and follow the link again",
            )
            .into_response()
        })
    }
}

/// Messages by field name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    /// No errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a message for `field` (the first one per field is kept).
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message for `field`, or an empty string.
    pub fn get(&self, field: &str) -> &str {
        self.0.get(field).map_or("", String::as_str)
    }

    /// Whether `field` has a message.
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// The id of the element holding `field`'s message (`error-{field}`).
    pub fn id_for(&self, field: &str) -> String {
        format!("error-{field}")
    }

    /// All messages, by field.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
