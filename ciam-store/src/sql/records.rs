//! How each record kind maps to its table: the extracted columns and the JSON `data`.

use chrono::{DateTime, Utc};
use ciam_core::credentials::CredentialKind;
use ciam_core::invitations::InvitationStatus;
use ciam_core::registrations::RequestStatus;
use ciam_core::store::{Record, RecordRef, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::db::Arg;

/// Nanoseconds since the Unix epoch, clamped to the `i64` range (years 1677 to 2262).
pub(crate) fn ts(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// Serializes a record or event for the `data` column.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::corrupt(format!("cannot serialize a record: {e}")))
}

/// Reads a record or event back from the `data` column.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(format!("cannot decode a stored record: {e}")))
}

/// A column value: a bound argument, or the member's email looked up from `identities`.
pub(crate) enum Value {
    /// A bound argument.
    Arg(Arg),
    /// `(SELECT email_normalized FROM identities WHERE id = ?)`.
    EmailOfIdentity(String),
}

impl Value {
    fn sql(&self) -> &'static str {
        match self {
            Self::Arg(_) => "?",
            Self::EmailOfIdentity(_) => "(SELECT email_normalized FROM identities WHERE id = ?)",
        }
    }

    fn arg(&self) -> Arg {
        match self {
            Self::Arg(arg) => arg.clone(),
            Self::EmailOfIdentity(id) => Arg::from(id.clone()),
        }
    }
}

fn v(arg: impl Into<Arg>) -> Value {
    Value::Arg(arg.into())
}

/// One record as a row.
pub(crate) struct RowSpec {
    /// The table.
    pub(crate) table: &'static str,
    /// The id.
    pub(crate) id: String,
    /// The record as JSON (with its new version).
    pub(crate) data: String,
    /// Extracted columns.
    pub(crate) columns: Vec<(&'static str, Value)>,
}

impl RowSpec {
    /// `INSERT ... ON CONFLICT (id) DO NOTHING` with its arguments (0 rows: the id exists).
    pub(crate) fn insert(&self, version: i64) -> (String, Vec<Arg>) {
        let mut names = String::from("id, version, data");
        let mut values = String::from("?, ?, ?");
        let mut args = vec![
            Arg::from(self.id.clone()),
            Arg::from(version),
            Arg::from(self.data.clone()),
        ];
        for (name, value) in &self.columns {
            names.push_str(", ");
            names.push_str(name);
            values.push_str(", ");
            values.push_str(value.sql());
            args.push(value.arg());
        }
        let sql = format!(
            "INSERT INTO {} ({names}) VALUES ({values}) ON CONFLICT (id) DO NOTHING",
            self.table
        );
        (sql, args)
    }

    /// `UPDATE ... WHERE id = ? AND version = ?` with its arguments (0 rows: stale or absent).
    pub(crate) fn update(&self, expected: i64, version: i64) -> (String, Vec<Arg>) {
        let mut sets = String::from("version = ?, data = ?");
        let mut args = vec![Arg::from(version), Arg::from(self.data.clone())];
        for (name, value) in &self.columns {
            sets.push_str(", ");
            sets.push_str(name);
            sets.push_str(" = ");
            sets.push_str(value.sql());
            args.push(value.arg());
        }
        args.push(Arg::from(self.id.clone()));
        args.push(Arg::from(expected));
        let sql = format!(
            "UPDATE {} SET {sets} WHERE id = ? AND version = ?",
            self.table
        );
        (sql, args)
    }
}

/// The status column of an invitation.
pub(crate) fn invitation_status(status: InvitationStatus) -> &'static str {
    match status {
        InvitationStatus::HeldForReview => "held_for_review",
        InvitationStatus::Pending => "pending",
        InvitationStatus::Accepted => "accepted",
        InvitationStatus::Revoked => "revoked",
        InvitationStatus::Expired => "expired",
    }
}

/// The status column of a registration or join request.
pub(crate) fn request_status(status: &RequestStatus) -> &'static str {
    match status {
        RequestStatus::AwaitingVerification => "awaiting_verification",
        RequestStatus::PendingApproval => PENDING_APPROVAL,
        RequestStatus::Approved { .. } => "approved",
        RequestStatus::Rejected { .. } => "rejected",
    }
}

/// The status column value of a request waiting for a decision.
pub(crate) const PENDING_APPROVAL: &str = "pending_approval";

/// The row of a record (already carrying its new version).
pub(crate) fn row_of(record: &Record) -> Result<RowSpec, StoreError> {
    let spec = match record {
        Record::Organization(r) => RowSpec {
            table: "organizations",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("name", v(r.name.clone())),
                ("name_lower", v(r.name.to_lowercase())),
                ("parent_id", v(r.parent.map(|p| p.to_string()))),
                ("crm_account_id", v(r.crm_account_id.clone())),
                ("join_code", v(r.join_code.clone())),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::Contract(r) => RowSpec {
            table: "contracts",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("organization_id", v(r.organization.to_string())),
                ("crm_contract_id", v(r.crm_contract_id.clone())),
                (
                    "access_end_at",
                    v(r.access_ended_at.or(r.valid_until).map(ts)),
                ),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::Identity(r) => RowSpec {
            table: "identities",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("email_normalized", v(r.email.normalized())),
                ("crm_contact_id", v(r.crm_contact_id.clone())),
                ("name_lower", v(r.name.full().to_lowercase())),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::Membership(r) => RowSpec {
            table: "memberships",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("identity_id", v(r.identity.to_string())),
                ("organization_id", v(r.organization.to_string())),
                (
                    "status",
                    v(match r.status {
                        ciam_core::identities::MembershipStatus::PendingApproval => {
                            "pending_approval"
                        }
                        ciam_core::identities::MembershipStatus::Active => "active",
                        ciam_core::identities::MembershipStatus::Removed => "removed",
                    }),
                ),
                (
                    "member_email",
                    Value::EmailOfIdentity(r.identity.to_string()),
                ),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::Service(r) => RowSpec {
            table: "services",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![("key", v(r.key.clone()))],
        },
        Record::BusinessRole(r) => RowSpec {
            table: "business_roles",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![("key", v(r.key.clone()))],
        },
        Record::Invitation(r) => RowSpec {
            table: "invitations",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("organization_id", v(r.organization.to_string())),
                ("email_normalized", v(r.email.normalized())),
                ("status", v(invitation_status(r.status))),
                ("token_hash", v(r.token_hash.as_ref().map(|h| h.to_hex()))),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::OrgRegistration(r) => RowSpec {
            table: "org_registrations",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("status", v(request_status(&r.status))),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::JoinRequest(r) => RowSpec {
            table: "join_requests",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("organization_id", v(r.organization.to_string())),
                ("status", v(request_status(&r.status))),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::Credential(r) => {
            let (provider, subject) = match &r.kind {
                CredentialKind::FederatedLink { provider, subject } => {
                    (Some(provider.clone()), Some(subject.clone()))
                }
                _ => (None, None),
            };
            RowSpec {
                table: "credentials",
                id: r.id.to_string(),
                data: to_json(r)?,
                columns: vec![
                    ("identity_id", v(r.identity.to_string())),
                    ("provider", v(provider)),
                    ("subject", v(subject)),
                    ("created_at", v(ts(r.created_at))),
                ],
            }
        }
        Record::Session(r) => RowSpec {
            table: "sessions",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("identity_id", v(r.identity.to_string())),
                ("token_hash", v(r.token_hash.to_hex())),
                ("created_at", v(ts(r.created_at))),
            ],
        },
        Record::Setting(r) => RowSpec {
            table: "settings",
            id: r.id.to_string(),
            data: to_json(r)?,
            columns: vec![
                ("kind", v(r.kind.as_str())),
                ("key", v(r.key.clone())),
                (
                    "organization_id",
                    v(r.organization.map(|id| id.to_string())),
                ),
                ("created_at", v(ts(r.created_at))),
            ],
        },
    };
    Ok(spec)
}

/// The table and id of a deletion.
pub(crate) fn deletion_of(record: &RecordRef) -> (&'static str, String, u64, String) {
    match record {
        RecordRef::Credential(id, version) => (
            "credentials",
            id.to_string(),
            *version,
            format!("credential {id}"),
        ),
        RecordRef::Session(id, version) => (
            "sessions",
            id.to_string(),
            *version,
            format!("session {id}"),
        ),
        RecordRef::Setting(id, version) => (
            "settings",
            id.to_string(),
            *version,
            format!("setting {id}"),
        ),
    }
}
