//! The texts ciam-rs sends to people: invitations, codes and decisions. Plain language, one
//! place, so that a host can read every message it will send.

use crate::contact::EmailAddress;
use crate::delivery::{EmailMessage, MessagePurpose};

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn email(
    to: &EmailAddress,
    subject: String,
    paragraphs: &[String],
    purpose: MessagePurpose,
) -> EmailMessage {
    let text = paragraphs.join("\n\n");
    let html = paragraphs
        .iter()
        .map(|p| {
            if p.starts_with("http://") || p.starts_with("https://") {
                format!("<p><a href=\"{0}\">{0}</a></p>", html_escape(p))
            } else {
                format!("<p>{}</p>", html_escape(p))
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    EmailMessage {
        to: to.clone(),
        subject,
        text,
        html: Some(html),
        purpose,
    }
}

/// An invitation with its link.
pub(crate) fn invitation(
    product: &str,
    to: &EmailAddress,
    organization: &str,
    link: &str,
    valid_days: i64,
) -> EmailMessage {
    email(
        to,
        format!("You are invited to {product} by {organization}"),
        &[
            "Hello,".to_owned(),
            format!(
                "{organization} invites you to use {product}. Open this link to set up your account:"
            ),
            link.to_owned(),
            format!(
                "The link works once and for {valid_days} days. If you did not expect this message, ignore it."
            ),
        ],
        MessagePurpose::Invitation,
    )
}

/// A verification code by email.
pub(crate) fn email_code(
    product: &str,
    to: &EmailAddress,
    code: &str,
    minutes: i64,
) -> EmailMessage {
    email(
        to,
        format!("Your {product} verification code"),
        &[
            format!("Your verification code is {code}."),
            format!(
                "It works for {minutes} minutes. Nobody from {product} will ever ask you for it."
            ),
        ],
        MessagePurpose::VerificationCode,
    )
}

/// A verification code by SMS.
pub(crate) fn sms_code(product: &str, code: &str, minutes: i64) -> String {
    format!("{code} is your {product} verification code. It works for {minutes} minutes.")
}

/// A decision on a request.
pub(crate) fn decision(
    product: &str,
    to: &EmailAddress,
    what: &str,
    approved: bool,
    reason: Option<&str>,
    link: &str,
) -> EmailMessage {
    let mut paragraphs = vec!["Hello,".to_owned()];
    if approved {
        paragraphs.push(format!(
            "Your {what} has been approved. You can sign in now:"
        ));
        paragraphs.push(link.to_owned());
    } else {
        paragraphs.push(format!("Your {what} has been declined."));
        if let Some(reason) = reason {
            paragraphs.push(format!("Reason: {reason}"));
        }
    }
    email(
        to,
        format!(
            "Your {what} at {product} was {}",
            if approved { "approved" } else { "declined" }
        ),
        &paragraphs,
        MessagePurpose::Decision,
    )
}

/// A notice to approvers that a request waits.
pub(crate) fn request_waiting(
    product: &str,
    to: &EmailAddress,
    what: &str,
    link: &str,
) -> EmailMessage {
    email(
        to,
        format!("A {what} waits for your decision in {product}"),
        &[
            format!("A new {what} waits for your decision:"),
            link.to_owned(),
        ],
        MessagePurpose::Notice,
    )
}
