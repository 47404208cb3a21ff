//! The dev mailbox and SMS outbox (demo mode only): `GET /dev/mail` lists the mail the server
//! "sent", newest first; `GET /dev/mail/{n}` shows one message with its links clickable;
//! `GET /dev/sms` lists the text messages. Outside demo mode every one of them is a 404.
//!
//! A message's HTML body is never put into the page: the page shows the plain-text body with
//! its `http(s)://` links made into anchors (escaped by the template), and the HTML source as
//! escaped text for whoever wants to check it.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use ciam_core::delivery::{DevMailbox, DevSmsOutbox, EmailMessage, Kept, SmsMessage};

use crate::mail::{Piece, pieces};
use crate::state::AppState;
use crate::web::{self, Page, PageContext, WebError};

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dev/mail", get(mailbox))
        .route("/dev/mail/{number}", get(message))
        .route("/dev/sms", get(sms_outbox))
}

fn mailbox_of(state: &AppState) -> Result<&DevMailbox, WebError> {
    match (&state.dev_mailbox, state.config.demo) {
        (Some(mailbox), true) => Ok(mailbox),
        _ => Err(WebError::not_found("there is no page at this address")),
    }
}

fn outbox_of(state: &AppState) -> Result<&DevSmsOutbox, WebError> {
    match (&state.dev_sms, state.config.demo) {
        (Some(outbox), true) => Ok(outbox),
        _ => Err(WebError::not_found("there is no page at this address")),
    }
}

/// One line of the mailbox list.
struct MailRow {
    number: u64,
    to: String,
    subject: String,
    received: String,
}

impl MailRow {
    fn href(&self) -> String {
        format!("/dev/mail/{}", self.number)
    }
}

fn received_text(kept_at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    kept_at.map_or_else(String::new, |at| {
        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

#[derive(askama::Template)]
#[template(path = "devmail/mailbox.html")]
struct MailboxPage {
    page: Page,
    rows: Vec<MailRow>,
}

async fn mailbox(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    let mailbox = mailbox_of(&state)?;
    let rows = mailbox
        .messages()
        .into_iter()
        .rev()
        .map(|kept: Kept<EmailMessage>| MailRow {
            number: kept.number,
            to: kept.message.to.to_string(),
            subject: kept.message.subject.clone(),
            received: received_text(kept.received_at),
        })
        .collect();
    web::render(&MailboxPage {
        page: ctx.page("Dev mailbox"),
        rows,
    })
}

#[derive(askama::Template)]
#[template(path = "devmail/message.html")]
struct MessagePage {
    page: Page,
    number: u64,
    to: String,
    subject: String,
    received: String,
    paragraphs: Vec<Vec<Vec<Piece>>>,
    html_source: Option<String>,
}

async fn message(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(number): Path<String>,
) -> Result<Html<String>, WebError> {
    let mailbox = mailbox_of(&state)?;
    let not_found = || WebError::not_found("there is no message with this number in the mailbox");
    let number: u64 = number.parse().map_err(|_| not_found())?;
    let kept = mailbox
        .messages()
        .into_iter()
        .find(|kept| kept.number == number)
        .ok_or_else(not_found)?;
    let paragraphs = kept
        .message
        .text
        .split("\n\n")
        .filter(|paragraph| !paragraph.trim().is_empty())
        .map(|paragraph| paragraph.lines().map(pieces).collect())
        .collect();
    web::render(&MessagePage {
        page: ctx.page(kept.message.subject.clone()),
        number: kept.number,
        to: kept.message.to.to_string(),
        subject: kept.message.subject.clone(),
        received: received_text(kept.received_at),
        paragraphs,
        html_source: kept.message.html.clone(),
    })
}

/// One line of the SMS outbox.
struct SmsRow {
    number: u64,
    to: String,
    text: String,
    received: String,
}

#[derive(askama::Template)]
#[template(path = "devmail/sms.html")]
struct SmsPage {
    page: Page,
    rows: Vec<SmsRow>,
}

async fn sms_outbox(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Html<String>, WebError> {
    let outbox = outbox_of(&state)?;
    let rows = outbox
        .messages()
        .into_iter()
        .rev()
        .map(|kept: Kept<SmsMessage>| SmsRow {
            number: kept.number,
            to: kept.message.to.as_str().to_owned(),
            text: kept.message.text.clone(),
            received: received_text(kept.received_at),
        })
        .collect();
    web::render(&SmsPage {
        page: ctx.page("SMS outbox"),
        rows,
    })
}
