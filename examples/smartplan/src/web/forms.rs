//! Forms: [`Form`] (urlencoded, rejections become a plain [`WebError`]) and [`FieldErrors`],
//! the per-field messages a page shows next to its inputs so that a form re-rendered after an
//! error keeps what was typed and says what is wrong where (tie each message to its input with
//! `aria-describedby="{{ errors.id_for("email") }}"`).

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::web::WebError;

/// An urlencoded form body; a malformed one is answered with a plain 400 page.
#[derive(Clone, Debug)]
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                let error = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    WebError::new(status, "payload_too_large", "the form is too large")
                } else {
                    WebError::bad_request(
                        "bad_form",
                        "the form could not be read; go back, reload the page and try again",
                    )
                };
                Err(error.into_response())
            }
        }
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
