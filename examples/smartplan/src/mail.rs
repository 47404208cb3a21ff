//! Mail through SMTP with lettre: [`SmtpMailer`] implements ciam-core's `Mailer`, sending every
//! message with a plain-text body and an HTML body (the message's own HTML, or the text laid
//! out in the SmartPlan mail template with its links made clickable).

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use async_trait::async_trait;
use ciam_core::delivery::{DeliveryError, EmailMessage, Mailer};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpSecurity};
use crate::ops::Metrics;

/// Parses a `From` address (`Name <address>` or `address`).
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    text.trim()
        .parse::<Mailbox>()
        .map_err(|error| format!("{text:?} is not a mail address: {error}"))
}

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailSetupError {
    /// The sender address is not valid.
    #[error("smtp.from: {0}")]
    From(String),
    /// The transport could not be configured (TLS setup, host name).
    #[error("smtp: {0}")]
    Transport(String),
}

/// Sends mail through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `config`; counts sent and failed mail in `metrics` when given.
    pub fn new(config: &SmtpConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, MailSetupError> {
        let from = parse_mailbox(&config.from).map_err(MailSetupError::From)?;
        let builder = match config.security {
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                    .map_err(|e| MailSetupError::Transport(e.to_string()))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
                .map_err(|e| MailSetupError::Transport(e.to_string()))?,
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            }
        };
        // As many pooled connections as the mail queue hands messages over at once.
        let mut builder =
            builder
                .port(config.port)
                .timeout(Some(Duration::from_secs(20)))
                .pool_config(PoolConfig::new().max_size(
                    u32::try_from(crate::outgoing::DEFAULT_CONCURRENCY).unwrap_or(u32::MAX),
                ));
        if let Some((user, password)) = &config.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            metrics,
        })
    }

    /// Builds the MIME message (text and HTML alternatives).
    pub fn message(&self, message: &EmailMessage) -> Result<Message, DeliveryError> {
        let to = parse_mailbox(&message.to.to_string()).map_err(DeliveryError::Rejected)?;
        let html = match &message.html {
            Some(html) => html.clone(),
            None => html_body(&message.subject, &message.text)
                .map_err(|e| DeliveryError::Unavailable(format!("mail template failed: {e}")))?,
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                html,
            ))
            .map_err(|e| DeliveryError::Rejected(e.to_string()))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: EmailMessage) -> Result<(), DeliveryError> {
        let mime = self.message(&message)?;
        let result = self.transport.send(mime).await;
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(DeliveryError::Rejected(error.to_string())),
            Err(error) => Err(DeliveryError::Unavailable(error.to_string())),
        };
        if let Some(metrics) = &self.metrics {
            metrics.mail(if outcome.is_ok() { "sent" } else { "failed" });
        }
        if let Err(error) = &outcome {
            tracing::warn!(%error, purpose = ?message.purpose, "mail not sent");
        }
        outcome
    }
}

/// A piece of a mail line: text or a link.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Plain text.
    Text(String),
    /// A link (shown as itself).
    Link(String),
}

/// The mail layout.
#[derive(Template)]
#[template(path = "mail/message.html")]
struct MailHtml<'a> {
    subject: &'a str,
    paragraphs: Vec<Vec<Vec<Piece>>>,
}

/// The HTML body for a plain-text message: paragraphs, lines, and clickable links.
pub fn html_body(subject: &str, text: &str) -> Result<String, askama::Error> {
    let paragraphs = text
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|paragraph| paragraph.lines().map(pieces).collect())
        .collect();
    MailHtml {
        subject,
        paragraphs,
    }
    .render()
}

/// Splits a line into text and `http(s)://` links.
pub fn pieces(line: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("https://").or_else(|| rest.find("http://")) {
        if start > 0 {
            out.push(Piece::Text(rest[..start].to_owned()));
        }
        let after = &rest[start..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            .unwrap_or(after.len());
        let link = after[..end].trim_end_matches(['.', ',', ')', ';']);
        out.push(Piece::Link(link.to_owned()));
        rest = &after[link.len()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_become_pieces() {
        assert_eq!(
            pieces("Open https://x.example/a?token=1. Then"),
            vec![
                Piece::Text("Open ".into()),
                Piece::Link("https://x.example/a?token=1".into()),
                Piece::Text(". Then".into()),
            ]
        );
    }

    #[test]
    fn html_body_escapes_text_and_links() {
        let html = html_body("Hi", "Hello <b>\n\nhttp://127.0.0.1:8080/x?a=1&b=2").unwrap();
        assert!(!html.contains("Hello <b>"), "{html}");
        assert!(
            html.contains("Hello &lt;b&gt;") || html.contains("Hello &#60;b&#62;"),
            "{html}"
        );
        assert!(
            html.contains("href=\"http://127.0.0.1:8080/x?a=1&#38;b=2\"")
                || html.contains("href=\"http://127.0.0.1:8080/x?a=1&amp;b=2\""),
            "{html}"
        );
    }
}
