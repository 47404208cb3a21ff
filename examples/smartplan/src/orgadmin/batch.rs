//! The CSV batch invitation: `POST /admin/orgs/{id}/invitations/batch` with the CSV text
//! (`email,given_name,family_name,business_roles`; a header line is optional; several roles
//! separated by `;`). Every line gets its own result; ciam-core's `invite_batch` invites the
//! readable lines in one call (checked against the store and written 500 rows at a time, the
//! same path as the CRM API's batches), and lines it could not read are reported as such. The
//! mail is queued, so the page answers without waiting for the mail server.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ciam_core::invitations::{BatchRowOutcome, InvitationRequest};
use ciam_core::services::BusinessRole;
use serde::Deserialize;

use super::{BatchResultRow, InvitationsView, catalog, invitation_access, invitations_page};
use crate::state::AppState;
use crate::web::{Form, PageContext, SignedIn, WebError};

/// The most lines one upload may have (the page says so).
pub const MAX_ROWS: usize = 5_000;

/// The batch form.
#[derive(Debug, Deserialize)]
pub(super) struct BatchForm {
    #[serde(default)]
    csv: String,
}

/// A line of the file: what was read, or why not.
enum Line {
    Row(InvitationRequest),
    Unreadable { email: String, reason: String },
}

/// Finds a business role by key or by name (case-insensitive).
fn role_key(roles: &[BusinessRole], text: &str) -> String {
    roles
        .iter()
        .find(|role| role.key.eq_ignore_ascii_case(text) || role.name.eq_ignore_ascii_case(text))
        .map_or_else(|| text.to_owned(), |role| role.key.clone())
}

/// Reads the CSV text into lines (1-based line numbers).
fn read(csv_text: &str, roles: &[BusinessRole]) -> Vec<(usize, Line)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let mut lines = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let number = index + 1;
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error
                    .position()
                    .map_or(number, |position| position.line() as usize);
                lines.push((
                    line,
                    Line::Unreadable {
                        email: String::new(),
                        reason: format!("this line could not be read: {error}"),
                    },
                ));
                continue;
            }
        };
        let line = record
            .position()
            .map_or(number, |position| position.line() as usize);
        let cell = |i: usize| record.get(i).unwrap_or("").to_owned();
        let email = cell(0);
        if index == 0 && email.eq_ignore_ascii_case("email") {
            continue; // the header
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() > 4 {
            lines.push((
                line,
                Line::Unreadable {
                    email,
                    reason:
                        "too many columns: expected email, given name, family name, business roles"
                            .to_owned(),
                },
            ));
            continue;
        }
        let optional = |text: String| Some(text).filter(|text| !text.is_empty());
        lines.push((
            line,
            Line::Row(InvitationRequest {
                email,
                given_name: optional(cell(1)),
                family_name: optional(cell(2)),
                business_roles: cell(3)
                    .split(';')
                    .map(str::trim)
                    .filter(|role| !role.is_empty())
                    .map(|role| role_key(roles, role))
                    .collect(),
                ..InvitationRequest::default()
            }),
        ));
    }
    lines
}

fn describe(outcome: &BatchRowOutcome, lines: &[usize]) -> (bool, String) {
    match outcome {
        BatchRowOutcome::Invited { .. } => (true, "Invited".to_owned()),
        BatchRowOutcome::HeldForReview { .. } => (true, "Held for review by SmartPlan".to_owned()),
        BatchRowOutcome::AlreadyMember => (false, "Already a member".to_owned()),
        BatchRowOutcome::AlreadyInvited { .. } => (
            false,
            "Already invited (resend the open invitation instead)".to_owned(),
        ),
        BatchRowOutcome::DuplicateInBatch { first_row } => (
            false,
            format!(
                "The same email is on line {}",
                lines.get(*first_row).copied().unwrap_or(*first_row + 1)
            ),
        ),
        BatchRowOutcome::InvalidEmail { reason } => (false, format!("Invalid email: {reason}")),
        BatchRowOutcome::Invalid { reason } => (false, format!("Not valid: {reason}")),
        BatchRowOutcome::NotAllowed { reason } => (false, format!("Not allowed: {reason}")),
    }
}

/// `POST /admin/orgs/{id}/invitations/batch`.
pub(super) async fn invite_batch(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<BatchForm>,
) -> Result<Response, WebError> {
    let access = invitation_access(&state, &me, &id).await?;
    let (_, roles) = catalog(&state).await?;
    let lines = read(&form.csv, &roles);
    let refuse = |message: String| InvitationsView {
        csv: form.csv.clone(),
        csv_error: message,
        ..InvitationsView::default()
    };
    let refusal = if lines.is_empty() {
        Some("the file has no lines to invite; give one person per line: email, given name, family name, business roles".to_owned())
    } else if lines.len() > MAX_ROWS {
        Some(format!(
            "the file has {} lines; at most {MAX_ROWS} at a time",
            lines.len()
        ))
    } else {
        None
    };
    if let Some(message) = refusal {
        let page = invitations_page(&state, &ctx, &access, refuse(message)).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let mut requests = Vec::new();
    let mut request_lines = Vec::new();
    for (line, read) in &lines {
        if let Line::Row(request) = read {
            requests.push(request.clone());
            request_lines.push(*line);
        }
    }
    let outcomes = if requests.is_empty() {
        Vec::new()
    } else {
        state
            .ciam
            .invitations()
            .invite_batch(&me.principal, access.id(), requests.clone())
            .await?
            .1
    };
    let mut results = Vec::new();
    let mut next_outcome = outcomes.iter().zip(requests.iter());
    for (line, read) in &lines {
        match read {
            Line::Unreadable { email, reason } => results.push(BatchResultRow {
                line: *line,
                email: email.clone(),
                ok: false,
                outcome: reason.clone(),
            }),
            Line::Row(_) => {
                if let Some((outcome, request)) = next_outcome.next() {
                    let (ok, text) = describe(outcome, &request_lines);
                    results.push(BatchResultRow {
                        line: *line,
                        email: request.email.clone(),
                        ok,
                        outcome: text,
                    });
                }
            }
        }
    }
    let invited = results.iter().filter(|row| row.ok).count();
    let mut summary = format!(
        "{invited} of {} lines invited; {} not",
        results.len(),
        results.len() - invited
    );
    // The mail is queued (the page does not wait for the mail server); say when it is late.
    if invited > 0 && state.outgoing.as_ref().is_some_and(|o| o.mail.delayed()) {
        summary.push_str(
            "; mail is delayed right now and goes out as soon as the mail server answers",
        );
    }
    let page = invitations_page(
        &state,
        &ctx,
        &access,
        InvitationsView {
            batch: Some(results),
            batch_summary: summary,
            ..InvitationsView::default()
        },
    )
    .await?;
    Ok(page.into_response())
}
