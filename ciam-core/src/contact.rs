//! Validated contact data at the edge of the model: email addresses, E.164 phone numbers, names
//! and bounded free text. Parse once, then only the validated types travel inside.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

/// Why a value was refused at the edge of the model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The email address is not of the form `local@domain.tld`.
    #[error("invalid email address: {reason}")]
    Email {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The phone number is not in E.164 form (`+` and 8 to 15 digits).
    #[error("invalid phone number: expected E.164 such as +358401234567")]
    Phone,
    /// A required text field is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A text field is longer than allowed.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The maximum length in characters.
        max: usize,
    },
    /// A text field contains control characters.
    #[error("{field} contains control characters")]
    ControlCharacters {
        /// The field.
        field: &'static str,
    },
    /// A key (service, role or CRM id) uses characters outside `[A-Za-z0-9._:-]`.
    #[error("{field} may only contain letters, digits, '.', '_', ':' and '-'")]
    KeyCharacters {
        /// The field.
        field: &'static str,
    },
    /// An email domain is not a valid host name.
    #[error("invalid email domain")]
    Domain,
}

/// An email address, validated; compared case-insensitively.
///
/// The address keeps the spelling the person typed for display; [`EmailAddress::normalized`]
/// (all lower case) is what uniqueness and lookups use.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    display: String,
    normalized: String,
}

impl EmailAddress {
    /// Maximum length of an address (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Parses and validates an address. Surrounding white space is removed.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ValidationError::Email { reason: "empty" });
        }
        if text.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::Email {
                reason: "longer than 254 characters",
            });
        }
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(ValidationError::Email {
                reason: "missing '@'",
            });
        };
        if local.is_empty() || local.len() > 64 {
            return Err(ValidationError::Email {
                reason: "the part before '@' must have 1 to 64 characters",
            });
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(ValidationError::Email {
                reason: "the part before '@' has characters that are not allowed",
            });
        }
        validate_domain(domain).map_err(|_| ValidationError::Email {
            reason: "the domain is not valid",
        })?;
        if !domain.contains('.') {
            return Err(ValidationError::Email {
                reason: "the domain needs a dot, as in example.com",
            });
        }
        Ok(Self {
            display: text.to_owned(),
            normalized: text.to_lowercase(),
        })
    }

    /// The address as typed.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The lower-cased address used for comparison and lookup.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The lower-cased domain (after the `@`).
    pub fn domain(&self) -> &str {
        self.normalized
            .rsplit_once('@')
            .map_or("", |(_, domain)| domain)
    }

    /// Whether two addresses are the same mailbox (case-insensitive).
    pub fn same_as(&self, other: &EmailAddress) -> bool {
        self.normalized == other.normalized
    }
}

fn validate_domain(domain: &str) -> Result<(), ValidationError> {
    if domain.is_empty() || domain.len() > 253 {
        return Err(ValidationError::Domain);
    }
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !ok {
            return Err(ValidationError::Domain);
        }
    }
    Ok(())
}

/// An email domain an organization has verified (for example `citygroup.example`), lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailDomain(String);

impl EmailDomain {
    /// Parses a domain name such as `citygroup.example`.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let text = input.trim().trim_start_matches('@').to_lowercase();
        validate_domain(&text)?;
        if !text.contains('.') {
            return Err(ValidationError::Domain);
        }
        Ok(Self(text))
    }

    /// The domain text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EmailDomain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(D::Error::custom)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.display)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(D::Error::custom)
    }
}

/// A phone number in E.164 form (`+` followed by 8 to 15 digits, the first not zero).
///
/// Spaces, dashes, dots and parentheses typed by a person are removed before validation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a phone number such as `+358 40 123 4567`.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let compact: String = input
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let Some(digits) = compact.strip_prefix('+') else {
            return Err(ValidationError::Phone);
        };
        let valid = (8..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(Self(compact))
        } else {
            Err(ValidationError::Phone)
        }
    }

    /// The number in E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(D::Error::custom)
    }
}

/// Checks free text: trimmed, not empty, at most `max` characters, no control characters.
pub fn bounded_text(
    field: &'static str,
    input: &str,
    max: usize,
) -> Result<String, ValidationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if text.chars().count() > max {
        return Err(ValidationError::TooLong { field, max });
    }
    if text.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacters { field });
    }
    Ok(text.to_owned())
}

/// Checks a machine key (service key, role key, CRM id): 1 to `max` characters of
/// `[A-Za-z0-9._:-]`.
pub fn key_text(field: &'static str, input: &str, max: usize) -> Result<String, ValidationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if text.len() > max {
        return Err(ValidationError::TooLong { field, max });
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err(ValidationError::KeyCharacters { field });
    }
    Ok(text.to_owned())
}

/// A person's name: given and family name, each 1 to 100 characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    /// Given (first) name.
    pub given: String,
    /// Family (last) name.
    pub family: String,
}

impl PersonName {
    /// Maximum length of each part.
    pub const MAX_LEN: usize = 100;

    /// Validates both parts.
    pub fn parse(given: &str, family: &str) -> Result<Self, ValidationError> {
        Ok(Self {
            given: bounded_text("given name", given, Self::MAX_LEN)?,
            family: bounded_text("family name", family, Self::MAX_LEN)?,
        })
    }

    /// "Given Family".
    pub fn full(&self) -> String {
        format!("{} {}", self.given, self.family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_compare_case_insensitively() {
        let a = EmailAddress::parse(" Jeremy.Mills@CityGroup.example ").unwrap();
        let b = EmailAddress::parse("jeremy.mills@citygroup.example").unwrap();
        assert!(a.same_as(&b));
        assert_eq!(a.as_str(), "Jeremy.Mills@CityGroup.example");
        assert_eq!(a.domain(), "citygroup.example");
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a..b@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            ".a@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long).is_err());
    }

    #[test]
    fn phones_must_be_e164() {
        assert_eq!(
            PhoneNumber::parse("+358 40 123-4567").unwrap().as_str(),
            "+358401234567"
        );
        for bad in [
            "0401234567",
            "+0401234567",
            "+12",
            "+1234567890123456",
            "+35840abc",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn text_is_bounded() {
        assert!(bounded_text("name", "  ", 10).is_err());
        assert!(bounded_text("name", &"x".repeat(11), 10).is_err());
        assert!(bounded_text("name", "a\u{0}b", 10).is_err());
        assert_eq!(bounded_text("name", " ok ", 10).unwrap(), "ok");
        assert!(key_text("key", "smartplan-app", 64).is_ok());
        assert!(key_text("key", "bad key", 64).is_err());
    }
}
