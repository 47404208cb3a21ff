//! Validation errors that name the field (a JSON path such as `items[3].email`) and the reason.

use std::fmt;

use ciam_core::contact::{EmailAddress, EmailDomain, PersonName, ValidationError, key_text};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One refused field: where it is in the request, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the field in the request, such as `items[3].email`.
    pub field: String,
    /// Why the value was refused.
    pub reason: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// All refused fields of one request (never empty when returned as an error).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One error.
    pub fn single(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            errors: vec![FieldError::new(field, reason)],
        }
    }

    /// Adds an error.
    pub fn push(&mut self, field: impl Into<String>, reason: impl fmt::Display) {
        self.errors.push(FieldError::new(field, reason));
    }

    /// Keeps the value, or records the error under `field`.
    pub(crate) fn check<T>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, ValidationError>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(field, error);
                None
            }
        }
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The refused fields.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// `Ok(())` when nothing was refused.
    pub fn into_result(self) -> Result<(), Self> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            fmt::Display::fmt(error, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Maximum length of a CRM id (account, contract, contact, lead).
pub(crate) const CRM_ID_MAX: usize = 128;

pub(crate) fn crm_id(errors: &mut ValidationErrors, field: &str, value: &str) {
    errors.check(field, key_text("value", value, CRM_ID_MAX).map(|_| ()));
}

pub(crate) fn email(errors: &mut ValidationErrors, field: &str, value: &str) {
    errors.check(field, EmailAddress::parse(value).map(|_| ()));
}

pub(crate) fn domain(errors: &mut ValidationErrors, field: &str, value: &str) {
    errors.check(field, EmailDomain::parse(value).map(|_| ()));
}

pub(crate) fn key(errors: &mut ValidationErrors, field: &str, value: &str) {
    errors.check(field, key_text("value", value, 64).map(|_| ()));
}

pub(crate) fn name(
    errors: &mut ValidationErrors,
    prefix: &str,
    given: Option<&str>,
    family: Option<&str>,
) {
    match (given, family) {
        (Some(given), Some(family)) => {
            if let Err(error) = PersonName::parse(given, "x") {
                errors.push(format!("{prefix}given_name"), error);
            }
            if let Err(error) = PersonName::parse("x", family) {
                errors.push(format!("{prefix}family_name"), error);
            }
        }
        (None, None) => {}
        (Some(_), None) => errors.push(
            format!("{prefix}family_name"),
            "required when given_name is set",
        ),
        (None, Some(_)) => errors.push(
            format!("{prefix}given_name"),
            "required when family_name is set",
        ),
    }
}
