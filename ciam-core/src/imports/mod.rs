//! The initial user import: people from the systems ciam-rs replaces, into their organizations.
//!
//! A host reads a file row by row ([`files`] reads CSV, JSON Lines and JSON arrays without
//! holding the file in memory) and hands the rows to [`Imports::import_chunk`] a chunk at a
//! time (1 000 rows is a good size). Each row either lands completely (the identity, its
//! membership with its business roles, and its imported password hash) or not at all, and the
//! chunk reports one [`RowReport`] per row:
//!
//! - a new email creates an active identity (email taken as verified, as the old system held
//!   it) with an active membership in the organization named by its CRM account id;
//! - an email that already exists gains a membership in that organization if it had none, and
//!   is otherwise left unchanged: running the same file twice changes nothing the second time,
//!   so an import cut off half-way is finished by running it again;
//! - a bad row (invalid email, name or phone, an unknown organization or business role, a
//!   password hash in a format this library cannot verify, a role the caller may not grant) is
//!   rejected with the reason and changes nothing.
//!
//! A chunk is written in one commit when none of its emails exist yet (the fast path of a
//! first import), and row by row otherwise. [`Imports::import_chunk`] checks and writes a
//! chunk; a host that wants both cores busy calls [`Imports::check_chunk`] for the next chunk
//! while [`PendingChunk::finish`] writes the previous one (as `smartplan import` does). Password hashes (argon2, PBKDF2-SHA256 PHC strings,
//! bcrypt) are stored as they are and replaced by argon2id with the current parameters at the
//! person's first sign-in. Each committed chunk writes one [`EventKind::UsersImported`] event
//! (the audit trail) instead of one event per row, so an import does not flood the CRM.

pub mod files;

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::authz::{Action, DenyReason, OrgTarget, Principal, Target, authorize};
use crate::ciam::Context;
use crate::contact::{EmailAddress, PersonName, PhoneNumber, ValidationError};
use crate::credentials::{Credential, CredentialKind, PasswordHashString};
use crate::events::EventKind;
use crate::identities::{Identity, IdentityStatus, Membership, MembershipStatus};
use crate::ids::{
    BusinessRoleId, CredentialId, IdentityId, MembershipId, OrganizationId, ServiceId,
};
use crate::store::{ChangeSet, StoreError, StoreErrorKind};

/// One row of an import file, as read (nothing validated yet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// The row's line (CSV, JSON Lines) or item number (JSON array), for the report.
    #[serde(skip)]
    pub line: u64,
    /// Email address.
    pub email: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Phone number in E.164 form, if any (imported unverified).
    #[serde(default)]
    pub phone: Option<String>,
    /// The CRM account id of the organization.
    pub organization: String,
    /// Business role keys to give in that organization.
    #[serde(default)]
    pub business_roles: Vec<String>,
    /// A password hash from the old system: argon2 or `pbkdf2-sha256` PHC string, or bcrypt.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// Why a row was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// The row could not be read (a CSV or JSON syntax error, a missing column).
    #[error("unreadable row: {0}")]
    Unreadable(String),
    /// A field is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No organization has this CRM account id.
    #[error("no organization has the CRM account id {0}")]
    UnknownOrganization(String),
    /// The organization is not active.
    #[error("organization {0} is not active")]
    InactiveOrganization(String),
    /// No business role has this key.
    #[error("no business role has the key {0}")]
    UnknownBusinessRole(String),
    /// The password hash is not in a format this library verifies.
    #[error("the password hash is not an argon2, pbkdf2-sha256 or bcrypt hash")]
    PasswordHash,
    /// The caller may not add this person with these roles.
    #[error("not allowed: {0}")]
    Denied(DenyReason),
    /// The identity exists but is disabled: it is not re-enabled by an import.
    #[error("the identity exists and is disabled")]
    DisabledIdentity,
    /// Another writer changed the same records at the same time; running the import again
    /// settles it.
    #[error("changed concurrently; run the import again")]
    Conflict,
}

/// What happened to a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowOutcome {
    /// A new identity was created in the organization.
    Created(IdentityId),
    /// The identity existed and was added to the organization.
    AddedToOrganization(IdentityId),
    /// The identity was already a member of the organization: nothing changed.
    Unchanged(IdentityId),
    /// A dry run: this is what would happen (`Created` or `AddedToOrganization`, `Unchanged`).
    WouldCreate,
    /// A dry run: the identity exists and would be added to the organization.
    WouldAdd,
    /// Rejected; nothing changed.
    Rejected(RowError),
}

impl RowOutcome {
    /// A short stable name for reports (`created`, `added`, `unchanged`, `would_create`,
    /// `would_add`, `rejected`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created(_) => "created",
            Self::AddedToOrganization(_) => "added",
            Self::Unchanged(_) => "unchanged",
            Self::WouldCreate => "would_create",
            Self::WouldAdd => "would_add",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// The result of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowReport {
    /// The row's line or item number.
    pub line: u64,
    /// The email as written in the row.
    pub email: String,
    /// What happened.
    pub outcome: RowOutcome,
}

/// Whether to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Validate and write.
    Apply,
    /// Validate and report what would happen; write nothing.
    DryRun,
}

/// Errors that stop an import (a row's problems are in its [`RowReport`] instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The caller may not import at all.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// A chunk is larger than [`MAX_CHUNK_ROWS`].
    #[error("an import chunk holds at most {MAX_CHUNK_ROWS} rows")]
    ChunkTooLarge,
    /// Storage failed; rows already reported as written stay written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most rows one chunk may hold.
pub const MAX_CHUNK_ROWS: usize = 5_000;

/// A row that passed validation.
struct ValidRow {
    line: u64,
    email: EmailAddress,
    name: PersonName,
    phone: Option<PhoneNumber>,
    organization: OrganizationId,
    roles: BTreeSet<BusinessRoleId>,
    password: Option<PasswordHashString>,
}

/// What the store holds for a row's email.
enum Existing {
    /// No identity has it.
    None,
    /// An identity that is not a member of the row's organization yet.
    NotMember(IdentityId),
    /// Nothing to write: the outcome is already known.
    Settled(RowOutcome),
}

/// What the importer knows about an organization (cached for the whole import).
#[derive(Clone)]
enum OrgEntry {
    Active(OrganizationId, Box<OrgTarget>),
    Inactive,
    Unknown,
}

/// The initial user import. Get one from [`crate::Ciam::imports`]; keep it for the whole file so
/// that organizations and roles are looked up once.
pub struct Imports<'a> {
    pub(crate) ctx: &'a Context,
    organizations: HashMap<String, OrgEntry>,
    roles: HashMap<String, Option<(BusinessRoleId, BTreeSet<ServiceId>)>>,
    chunk: u64,
}

impl<'a> Imports<'a> {
    pub(crate) fn new(ctx: &'a Context) -> Self {
        Self {
            ctx,
            organizations: HashMap::new(),
            roles: HashMap::new(),
            chunk: 0,
        }
    }

    /// Imports one chunk of rows (at most [`MAX_CHUNK_ROWS`]) and reports each row, in order.
    /// The principal needs, for every row, the right to add a member with those business
    /// roles to that organization (staff administrators and customer service, the system).
    ///
    /// The same as [`Imports::check_chunk`] followed by [`PendingChunk::finish`].
    pub async fn import_chunk(
        &mut self,
        principal: &Principal,
        rows: Vec<Result<ImportRow, (u64, String)>>,
        mode: ImportMode,
    ) -> Result<Vec<RowReport>, ImportError> {
        self.check_chunk(principal, rows, mode)
            .await?
            .finish()
            .await
    }

    /// Checks one chunk of rows (at most [`MAX_CHUNK_ROWS`]): parses and validates every row
    /// and authorizes it, without writing or looking up the people. The returned
    /// [`PendingChunk`] writes it. A host may check chunk n + 1 while chunk n is being
    /// written (`tokio::join!`), as long as it finishes the chunks in file order: a row is
    /// looked up against the store only when its chunk is finished, so a person repeated
    /// across chunks is still found.
    pub async fn check_chunk(
        &mut self,
        principal: &Principal,
        rows: Vec<Result<ImportRow, (u64, String)>>,
        mode: ImportMode,
    ) -> Result<PendingChunk<'a>, ImportError> {
        if rows.len() > MAX_CHUNK_ROWS {
            return Err(ImportError::ChunkTooLarge);
        }
        if matches!(principal, Principal::Anonymous) {
            return Err(ImportError::Denied(DenyReason::NotSignedIn));
        }
        self.chunk += 1;
        let mut reports: Vec<RowReport> = Vec::with_capacity(rows.len());
        let mut valid: Vec<(usize, ValidRow)> = Vec::with_capacity(rows.len());
        for row in rows {
            let index = reports.len();
            match row {
                Err((line, message)) => reports.push(RowReport {
                    line,
                    email: String::new(),
                    outcome: RowOutcome::Rejected(RowError::Unreadable(message)),
                }),
                Ok(row) => {
                    let line = row.line;
                    let email = row.email.clone();
                    match self.validate(principal, row).await? {
                        Ok(parsed) => {
                            reports.push(RowReport {
                                line,
                                email,
                                outcome: RowOutcome::WouldCreate,
                            });
                            valid.push((index, parsed));
                        }
                        Err(error) => reports.push(RowReport {
                            line,
                            email,
                            outcome: RowOutcome::Rejected(error),
                        }),
                    }
                }
            }
        }
        Ok(PendingChunk {
            writer: ChunkWriter {
                ctx: self.ctx,
                principal: principal.clone(),
                chunk: self.chunk,
            },
            reports,
            valid,
            mode,
        })
    }

    /// Parses and checks one row; the outer error is a storage failure.
    async fn validate(
        &mut self,
        principal: &Principal,
        row: ImportRow,
    ) -> Result<Result<ValidRow, RowError>, ImportError> {
        let email = match EmailAddress::parse(&row.email) {
            Ok(email) => email,
            Err(error) => return Ok(Err(error.into())),
        };
        let name = match PersonName::parse(&row.given_name, &row.family_name) {
            Ok(name) => name,
            Err(error) => return Ok(Err(error.into())),
        };
        let phone = match row
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            None => None,
            Some(text) => match PhoneNumber::parse(text) {
                Ok(phone) => Some(phone),
                Err(error) => return Ok(Err(error.into())),
            },
        };
        let password = match row
            .password_hash
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            None => None,
            Some(hash) => match PasswordHashString::parse(hash) {
                Ok(hash) => Some(hash),
                Err(_) => return Ok(Err(RowError::PasswordHash)),
            },
        };
        let crm_account = row.organization.trim();
        let (organization, target) = match self.organization(crm_account).await? {
            OrgEntry::Active(id, target) => (id, target),
            OrgEntry::Inactive => {
                return Ok(Err(RowError::InactiveOrganization(crm_account.to_owned())));
            }
            OrgEntry::Unknown => {
                return Ok(Err(RowError::UnknownOrganization(crm_account.to_owned())));
            }
        };
        let mut roles = BTreeSet::new();
        let mut role_services = BTreeSet::new();
        for key in row
            .business_roles
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
        {
            match self.role(key).await? {
                Some((id, services)) => {
                    roles.insert(id);
                    role_services.extend(services);
                }
                None => return Ok(Err(RowError::UnknownBusinessRole(key.to_owned()))),
            }
        }
        let action = Action::InviteMember {
            role_services,
            mandates: BTreeSet::new(),
        };
        if let Err(reason) =
            authorize(principal, &action, &Target::Organization(*target)).into_result()
        {
            return Ok(Err(RowError::Denied(reason)));
        }
        Ok(Ok(ValidRow {
            line: row.line,
            email,
            name,
            phone,
            organization,
            roles,
            password,
        }))
    }

    async fn organization(&mut self, crm_account: &str) -> Result<OrgEntry, StoreError> {
        if let Some(entry) = self.organizations.get(crm_account) {
            return Ok(entry.clone());
        }
        let entry = match self
            .ctx
            .store
            .organization_by_crm_account(crm_account)
            .await?
        {
            None => OrgEntry::Unknown,
            Some(org) if !org.is_active() => OrgEntry::Inactive,
            Some(org) => OrgEntry::Active(org.id, Box::new(self.ctx.org_target(&org).await?)),
        };
        self.organizations
            .insert(crm_account.to_owned(), entry.clone());
        Ok(entry)
    }

    async fn role(
        &mut self,
        key: &str,
    ) -> Result<Option<(BusinessRoleId, BTreeSet<ServiceId>)>, StoreError> {
        if let Some(entry) = self.roles.get(key) {
            return Ok(entry.clone());
        }
        let entry = self
            .ctx
            .store
            .business_role_by_key(key)
            .await?
            .map(|role| (role.id, role.services()));
        self.roles.insert(key.to_owned(), entry.clone());
        Ok(entry)
    }
}

/// A checked chunk of an import, ready to be written: see [`Imports::check_chunk`].
#[must_use = "a checked chunk writes nothing until it is finished"]
pub struct PendingChunk<'a> {
    writer: ChunkWriter<'a>,
    reports: Vec<RowReport>,
    valid: Vec<(usize, ValidRow)>,
    mode: ImportMode,
}

impl std::fmt::Debug for PendingChunk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChunk")
            .field("chunk", &self.writer.chunk)
            .field("rows", &self.reports.len())
            .field("valid", &self.valid.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl PendingChunk<'_> {
    /// Writes the chunk (or, in a dry run, looks each row up) and reports each row, in order.
    pub async fn finish(self) -> Result<Vec<RowReport>, ImportError> {
        let Self {
            writer,
            mut reports,
            valid,
            mode,
        } = self;
        match mode {
            ImportMode::DryRun => {
                for (index, row) in valid {
                    let outcome = writer.dry_run_outcome(&row).await?;
                    set_outcome(&mut reports, index, outcome);
                }
            }
            ImportMode::Apply => writer.apply(valid, &mut reports).await?,
        }
        Ok(reports)
    }
}

/// Writes the rows of one chunk.
struct ChunkWriter<'a> {
    ctx: &'a Context,
    principal: Principal,
    chunk: u64,
}

impl ChunkWriter<'_> {
    async fn apply(
        &self,
        valid: Vec<(usize, ValidRow)>,
        reports: &mut [RowReport],
    ) -> Result<(), ImportError> {
        // Fast path: every email new and distinct within the chunk → one commit.
        let mut seen = HashSet::with_capacity(valid.len());
        let (fresh, repeated): (Vec<_>, Vec<_>) = valid
            .into_iter()
            .partition(|(_, row)| seen.insert(row.email.normalized().to_owned()));
        let mut slow = repeated;
        if !fresh.is_empty() {
            let now = self.ctx.now();
            let mut changes = ChangeSet::new();
            let mut created = Vec::with_capacity(fresh.len());
            let (mut identities, mut memberships, mut credentials) = (
                Vec::with_capacity(fresh.len()),
                Vec::with_capacity(fresh.len()),
                Vec::new(),
            );
            for (index, row) in &fresh {
                let (identity, membership, credential) = self.new_person(row);
                created.push((*index, identity.id));
                identities.push(identity);
                memberships.push(membership);
                credentials.extend(credential);
            }
            // Records grouped by kind: stores insert each group in one statement.
            changes
                .records
                .extend(identities.into_iter().map(Into::into));
            changes
                .records
                .extend(memberships.into_iter().map(Into::into));
            changes
                .records
                .extend(credentials.into_iter().map(Into::into));
            changes.event(self.chunk_event(fresh.len(), 0, &fresh, now));
            match self.ctx.store.commit(changes).await {
                Ok(()) => {
                    for (index, id) in created {
                        set_outcome(reports, index, RowOutcome::Created(id));
                    }
                }
                // Some email exists already (or a concurrent writer): take the slow path.
                Err(error)
                    if matches!(
                        error.kind(),
                        StoreErrorKind::Unique | StoreErrorKind::Conflict
                    ) =>
                {
                    slow.extend(fresh);
                    slow.sort_by_key(|(index, _)| *index);
                }
                Err(error) => return Err(error.into()),
            }
        }
        for (index, row) in slow {
            let outcome = self.apply_one(&row).await?;
            set_outcome(reports, index, outcome);
        }
        Ok(())
    }

    /// One row on its own: looks the email up and creates or adds as needed.
    async fn apply_one(&self, row: &ValidRow) -> Result<RowOutcome, ImportError> {
        for _ in 0..3 {
            let now = self.ctx.now();
            let mut changes = ChangeSet::new();
            let outcome = match self.existing(row).await? {
                Existing::None => {
                    let (identity, membership, credential) = self.new_person(row);
                    let id = identity.id;
                    changes.put(identity).put(membership);
                    if let Some(credential) = credential {
                        changes.put(credential);
                    }
                    changes.event(self.chunk_event(1, 0, &[], now));
                    RowOutcome::Created(id)
                }
                Existing::Settled(outcome) => return Ok(outcome),
                Existing::NotMember(identity) => {
                    changes.put(self.membership(identity, row));
                    changes.event(self.chunk_event(0, 1, &[], now));
                    RowOutcome::AddedToOrganization(identity)
                }
            };
            match self.ctx.store.commit(changes).await {
                Ok(()) => return Ok(outcome),
                Err(error)
                    if matches!(
                        error.kind(),
                        StoreErrorKind::Unique | StoreErrorKind::Conflict
                    ) =>
                {
                    // Someone wrote the same person meanwhile: look again.
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(RowOutcome::Rejected(RowError::Conflict))
    }

    async fn dry_run_outcome(&self, row: &ValidRow) -> Result<RowOutcome, ImportError> {
        Ok(match self.existing(row).await? {
            Existing::None => RowOutcome::WouldCreate,
            Existing::Settled(outcome) => outcome,
            Existing::NotMember(_) => RowOutcome::WouldAdd,
        })
    }

    /// What the store already holds for the row's email: nobody, somebody who needs the
    /// membership, or somebody for whom the row is settled (a member already; disabled).
    async fn existing(&self, row: &ValidRow) -> Result<Existing, StoreError> {
        let Some(identity) = self.ctx.store.identity_by_email(&row.email).await? else {
            return Ok(Existing::None);
        };
        if identity.status == IdentityStatus::Disabled {
            return Ok(Existing::Settled(RowOutcome::Rejected(
                RowError::DisabledIdentity,
            )));
        }
        let member = self
            .ctx
            .store
            .membership_of(identity.id, row.organization)
            .await?
            .is_some();
        Ok(if member {
            Existing::Settled(RowOutcome::Unchanged(identity.id))
        } else {
            Existing::NotMember(identity.id)
        })
    }

    fn new_person(&self, row: &ValidRow) -> (Identity, Membership, Option<Credential>) {
        let now = self.ctx.now();
        let random = self.ctx.random.as_ref();
        let identity = Identity {
            id: IdentityId::generate_at(now, random),
            version: 0,
            email: row.email.clone(),
            email_verified: true,
            phone: row.phone.clone(),
            phone_verified: false,
            name: row.name.clone(),
            status: IdentityStatus::Active,
            crm_contact_id: None,
            pending_email: None,
            pending_phone: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        let membership = self.membership(identity.id, row);
        let credential = row.password.clone().map(|hash| Credential {
            id: CredentialId::generate_at(now, random),
            version: 0,
            identity: identity.id,
            kind: CredentialKind::Password { hash },
            created_at: now,
            updated_at: now,
        });
        (identity, membership, credential)
    }

    fn membership(&self, identity: IdentityId, row: &ValidRow) -> Membership {
        let now = self.ctx.now();
        Membership {
            id: MembershipId::generate_at(now, self.ctx.random.as_ref()),
            version: 0,
            identity,
            organization: row.organization,
            status: MembershipStatus::Active,
            business_roles: row.roles.clone(),
            mandates: BTreeSet::new(),
            staff_roles: BTreeSet::new(),
            crm_lead_id: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn chunk_event(
        &self,
        created: usize,
        added: usize,
        rows: &[(usize, ValidRow)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::events::DomainEvent {
        let first_line = rows.first().map(|(_, row)| row.line);
        let last_line = rows.last().map(|(_, row)| row.line);
        self.ctx.event(
            &self.principal.actor(),
            None,
            None,
            EventKind::UsersImported {
                chunk: self.chunk,
                created: u32::try_from(created).unwrap_or(u32::MAX),
                added_to_organization: u32::try_from(added).unwrap_or(u32::MAX),
                first_line,
                last_line,
            },
            now,
        )
    }
}

fn set_outcome(reports: &mut [RowReport], index: usize, outcome: RowOutcome) {
    if let Some(report) = reports.get_mut(index) {
        report.outcome = outcome;
    }
}
