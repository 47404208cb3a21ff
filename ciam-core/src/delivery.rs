//! Delivery ports: [`Mailer`] and [`SmsSender`], with development adapters that keep messages
//! in memory (the server's dev mailbox and SMS outbox show them in demo mode).
//!
//! Real adapters live outside the core: SMTP through lettre in the server, an HTTP SMS gateway.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::{EmailAddress, PhoneNumber};

/// Why a message could not be handed over.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The transport is down or refused; retrying later may work.
    #[error("message delivery is unavailable: {0}")]
    Unavailable(String),
    /// The recipient was refused for good.
    #[error("the recipient was refused: {0}")]
    Rejected(String),
}

/// What a message is about (for templates, metrics and the dev mailbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagePurpose {
    /// An invitation with its link.
    Invitation,
    /// A verification code.
    VerificationCode,
    /// A decision on a registration or join request.
    Decision,
    /// A notice (access ended, account disabled).
    Notice,
    /// A sign-in code.
    SignInCode,
}

/// An email to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailMessage {
    /// Recipient.
    pub to: EmailAddress,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body, when there is one.
    pub html: Option<String>,
    /// What the message is about.
    pub purpose: MessagePurpose,
}

/// A text message to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// Recipient (E.164).
    pub to: PhoneNumber,
    /// Text.
    pub text: String,
    /// What the message is about.
    pub purpose: MessagePurpose,
}

/// Sends email.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hands a message over for delivery.
    async fn send(&self, message: EmailMessage) -> Result<(), DeliveryError>;
}

/// Sends SMS.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Hands a message over for delivery.
    async fn send(&self, message: SmsMessage) -> Result<(), DeliveryError>;
}

/// A message kept by a development adapter, with when it arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept<T> {
    /// Arrival order, from 1.
    pub number: u64,
    /// When it was handed over (as read from the message's own clock by the caller, or the
    /// order only when unknown).
    pub received_at: Option<DateTime<Utc>>,
    /// The message.
    pub message: T,
}

/// An in-memory mailbox: the development [`Mailer`]. Keeps the newest `capacity` messages.
#[derive(Debug)]
pub struct DevMailbox {
    inner: Mutex<(u64, Vec<Kept<EmailMessage>>)>,
    capacity: usize,
}

impl Default for DevMailbox {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl DevMailbox {
    /// A mailbox keeping up to `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((0, Vec::new())),
            capacity: capacity.max(1),
        }
    }

    /// All kept messages, oldest first.
    pub fn messages(&self) -> Vec<Kept<EmailMessage>> {
        self.inner
            .lock()
            .map(|inner| inner.1.clone())
            .unwrap_or_default()
    }

    /// The newest message to `to` (case-insensitive).
    pub fn latest_to(&self, to: &str) -> Option<EmailMessage> {
        let to = to.to_lowercase();
        self.messages()
            .into_iter()
            .rev()
            .find(|kept| kept.message.to.normalized() == to)
            .map(|kept| kept.message)
    }

    /// Number of messages kept.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|inner| inner.1.len()).unwrap_or(0)
    }

    /// Whether the mailbox is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Mailer for DevMailbox {
    async fn send(&self, message: EmailMessage) -> Result<(), DeliveryError> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| DeliveryError::Unavailable("mailbox poisoned".into()))?;
        inner.0 += 1;
        let number = inner.0;
        inner.1.push(Kept {
            number,
            received_at: None,
            message,
        });
        if inner.1.len() > self.capacity {
            let excess = inner.1.len() - self.capacity;
            inner.1.drain(..excess);
        }
        Ok(())
    }
}

/// An in-memory SMS outbox: the development [`SmsSender`].
#[derive(Debug, Default)]
pub struct DevSmsOutbox {
    inner: Mutex<(u64, Vec<Kept<SmsMessage>>)>,
}

impl DevSmsOutbox {
    /// All kept messages, oldest first.
    pub fn messages(&self) -> Vec<Kept<SmsMessage>> {
        self.inner
            .lock()
            .map(|inner| inner.1.clone())
            .unwrap_or_default()
    }

    /// The newest message to `to`.
    pub fn latest_to(&self, to: &str) -> Option<SmsMessage> {
        self.messages()
            .into_iter()
            .rev()
            .find(|kept| kept.message.to.as_str() == to)
            .map(|kept| kept.message)
    }
}

#[async_trait]
impl SmsSender for DevSmsOutbox {
    async fn send(&self, message: SmsMessage) -> Result<(), DeliveryError> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| DeliveryError::Unavailable("outbox poisoned".into()))?;
        inner.0 += 1;
        let number = inner.0;
        inner.1.push(Kept {
            number,
            received_at: None,
            message,
        });
        if inner.1.len() > 10_000 {
            inner.1.remove(0);
        }
        Ok(())
    }
}

/// Extracts the first `https://` or `http://` link from a text (handy for tests and the demo).
pub fn first_link(text: &str) -> Option<&str> {
    let start = text.find("https://").or_else(|| text.find("http://"))?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Extracts the first run of six digits from a text (a code in a message).
pub fn first_code(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(5)).find_map(|i| {
        let window = &bytes[i..i + 6];
        let before_ok = i == 0 || !bytes[i - 1].is_ascii_digit();
        let after_ok = bytes.get(i + 6).is_none_or(|b| !b.is_ascii_digit());
        (window.iter().all(u8::is_ascii_digit) && before_ok && after_ok).then(|| &text[i..i + 6])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_links_and_codes() {
        assert_eq!(
            first_link("Open https://x.example/a?token=abc now"),
            Some("https://x.example/a?token=abc")
        );
        assert_eq!(first_code("Your code is 123456."), Some("123456"));
        assert_eq!(first_code("1234567 and 654321"), Some("654321"));
        assert_eq!(first_code("none"), None);
    }
}
