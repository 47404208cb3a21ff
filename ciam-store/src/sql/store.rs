//! The `Store` implementation of [`SqlStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ciam_core::contact::{EmailAddress, EmailDomain};
use ciam_core::credentials::Credential;
use ciam_core::events::DomainEvent;
use ciam_core::identities::{Identity, Membership};
use ciam_core::ids::{
    BusinessRoleId, ContractId, EventId, IdentityId, InvitationId, JoinRequestId, MembershipId,
    OrgRegistrationId, OrganizationId, ServiceId,
};
use ciam_core::invitations::{Invitation, InvitationStatus};
use ciam_core::organizations::{Contract, Organization};
use ciam_core::registrations::{JoinRequest, OrgRegistration};
use ciam_core::secrets::TokenHash;
use ciam_core::services::{BusinessRole, Service};
use ciam_core::sessions::Session;
use ciam_core::settings::{Setting, SettingKind};
use ciam_core::store::{
    ChangeSet, EventQuery, IdempotencyRecord, IdentityAccess, Member, MembershipAccess,
    OutboxEntry, Page, PageRequest, Record, ReleaseOutcome, SessionAccess, Store, StoreError,
    StoredEvent,
};
use serde::de::DeserializeOwned;

use super::SqlStore;
use super::db::{Arg, Backend, DbRow, Pool, Reads, Tx, args};
use super::records::{
    PENDING_APPROVAL, RowSpec, deletion_of, from_json, invitation_status, row_of, to_json, ts,
};

/// Most items of a members page.
const MAX_PAGE: usize = 500;
/// Most items of a list.
const MAX_LIST: usize = 500;
/// Most events or outbox entries at once.
const MAX_EVENTS: usize = 1000;
/// Most rows in one multi-row `INSERT` (keeps the bound parameters under every limit).
const INSERT_CHUNK: usize = 200;
/// Most values in one `IN (...)` list of a batch read (longer lists take several queries).
const IN_CHUNK: usize = 500;

/// The distinct normalized forms of `emails`, sorted (so chunked results come out in order).
fn normalized_emails(emails: &[EmailAddress]) -> Vec<&str> {
    let mut keys: Vec<&str> = emails.iter().map(EmailAddress::normalized).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn limit_of(limit: usize, cap: usize) -> i64 {
    i64::try_from(limit.min(cap)).unwrap_or(0)
}

fn version_of(version: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::conflict(what))
}

fn placeholders(n: usize) -> String {
    let mut out = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out
}

/// The smallest string greater than every string starting with `prefix` (bytewise), for a
/// range scan on an index.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    end.push(char::MAX);
    end
}

/// `%text%` for `LIKE ... ESCAPE '\'`, with the wildcards of `text` escaped.
fn contains_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Whether the SQLite FTS5 trigram table can answer a name search for `query`: at least three
/// characters and no LIKE wildcards (FTS5 does not take an ESCAPE clause).
fn uses_trigram_table(backend: Backend, query: &str) -> bool {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => query.chars().count() >= 3 && !query.contains(['%', '_', '\\']),
        #[cfg(feature = "postgres")]
        Backend::Postgres => false,
    }
}

/// The name half of `search_identities`: on PostgreSQL the trigram index serves the LIKE; on
/// SQLite the FTS5 trigram table does, when it can.
fn name_search_sql(backend: Backend, query: &str) -> &'static str {
    if uses_trigram_table(backend, query) {
        "SELECT email_normalized, data FROM identities WHERE seq IN \
         (SELECT rowid FROM identity_names WHERE name_lower LIKE ?) \
         ORDER BY email_normalized LIMIT ?"
    } else {
        "SELECT email_normalized, data FROM identities \
         WHERE name_lower LIKE ? ESCAPE '\\' ORDER BY email_normalized LIMIT ?"
    }
}

fn parse_rows<T: DeserializeOwned>(rows: Vec<DbRow>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(|row| from_json(&row.text(0)?)).collect()
}

fn outbox_entry(row: &DbRow) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        event: from_json(&row.text(0)?)?,
        sequence: row.int(1)?,
        attempts: u32::try_from(row.int(2)?).unwrap_or(u32::MAX),
        last_error: row.opt_text(3)?,
    })
}

/// A record prepared for writing.
struct Prepared {
    expected: i64,
    version: i64,
    describe: String,
    spec: RowSpec,
    extra: Extra,
}

/// Side effects of writing some record kinds.
enum Extra {
    None,
    /// The organization's verified email domains (side table).
    Domains(String, Vec<String>),
    /// The identity's email, copied to its memberships for keyset pagination.
    MemberEmail(String, String),
}

/// An event prepared for writing.
struct PreparedEvent {
    id: String,
    at: i64,
    organization: Option<String>,
    identity: Option<String>,
    ordering_key: String,
    data: String,
}

impl SqlStore {
    fn read(&self) -> &Reads {
        &self.inner.read
    }

    fn write(&self) -> &Pool {
        &self.inner.write
    }

    async fn one<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<T>, StoreError> {
        match self.read().fetch_optional(sql, args).await? {
            Some(row) => Ok(Some(from_json(&row.text(0)?)?)),
            None => Ok(None),
        }
    }

    async fn many<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<T>, StoreError> {
        parse_rows(self.read().fetch_all(sql, args).await?)
    }

    /// Runs `work` in a write transaction: committed on success, rolled back on any error.
    async fn in_transaction<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: for<'t> FnOnce(
            &'t mut Tx,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 't>,
        >,
    {
        let mut tx = self.write().begin().await?;
        match work(&mut tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(error) => {
                // Dropping rolls back too; an error here changes nothing for the caller.
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }
}

fn prepare(changes: ChangeSet) -> Result<(Vec<Prepared>, Vec<PreparedEvent>), StoreError> {
    let mut prepared = Vec::with_capacity(changes.records.len());
    for mut record in changes.records {
        let describe = record.describe();
        let expected = record.version();
        let next = expected
            .checked_add(1)
            .ok_or_else(|| StoreError::conflict(&describe))?;
        record.set_version(next);
        let extra = match &record {
            Record::Organization(org) => Extra::Domains(
                org.id.to_string(),
                org.email_domains
                    .iter()
                    .map(|d| d.as_str().to_owned())
                    .collect(),
            ),
            Record::Identity(identity) => Extra::MemberEmail(
                identity.id.to_string(),
                identity.email.normalized().to_owned(),
            ),
            _ => Extra::None,
        };
        prepared.push(Prepared {
            expected: version_of(expected, &describe)?,
            version: version_of(next, &describe)?,
            spec: row_of(&record)?,
            describe,
            extra,
        });
    }
    let mut events = Vec::with_capacity(changes.events.len());
    for event in &changes.events {
        events.push(PreparedEvent {
            id: event.id.to_string(),
            at: ts(event.at),
            organization: event.organization.map(|o| o.to_string()),
            identity: event.identity.map(|i| i.to_string()),
            ordering_key: event.ordering_key(),
            data: to_json(event)?,
        });
    }
    Ok((prepared, events))
}

/// Inserts new records of one table in one statement; fewer rows than records means an id was
/// taken (a record created concurrently, or twice).
async fn insert_group(tx: &mut Tx, group: &[&Prepared]) -> Result<(), StoreError> {
    let Some(first) = group.first() else {
        return Ok(());
    };
    let (single_sql, _) = first.spec.insert(first.version);
    // "INSERT INTO t (cols) VALUES (...) ON CONFLICT (id) DO NOTHING": repeat the VALUES tuple.
    let (head, tail) = match (
        single_sql.find(" VALUES ("),
        single_sql.rfind(") ON CONFLICT"),
    ) {
        (Some(h), Some(t)) => (h, t),
        _ => return Err(StoreError::corrupt("malformed insert statement")),
    };
    let tuple = &single_sql[head + " VALUES ".len()..=tail];
    let mut sql = String::with_capacity(single_sql.len() + tuple.len() * group.len());
    sql.push_str(&single_sql[..head]);
    sql.push_str(" VALUES ");
    let mut all_args = Vec::new();
    for (i, item) in group.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(tuple);
        all_args.extend(item.spec.insert(item.version).1);
    }
    sql.push_str(&single_sql[tail + 1..]);
    let affected = tx.execute(&sql, all_args).await?;
    if affected != group.len() as u64 {
        // Name one of the records that already existed.
        for item in group {
            let exists = tx
                .fetch_optional(
                    &format!("SELECT 1 FROM {} WHERE id = ?", item.spec.table),
                    args![item.spec.id.clone()],
                )
                .await?
                .is_some();
            if exists {
                return Err(StoreError::conflict(&item.describe));
            }
        }
        return Err(StoreError::conflict(first.describe.as_str()));
    }
    Ok(())
}

async fn apply_extra(tx: &mut Tx, item: &Prepared) -> Result<(), StoreError> {
    match &item.extra {
        Extra::None => {}
        Extra::Domains(org, domains) => {
            if item.expected != 0 {
                tx.execute(
                    "DELETE FROM organization_email_domains WHERE organization_id = ?",
                    args![org.clone()],
                )
                .await?;
            }
            for chunk in domains.chunks(INSERT_CHUNK) {
                if chunk.is_empty() {
                    continue;
                }
                let mut sql = String::from(
                    "INSERT INTO organization_email_domains (domain, organization_id) VALUES ",
                );
                let mut values = Vec::with_capacity(chunk.len() * 2);
                for (i, domain) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str("(?, ?)");
                    values.push(Arg::from(domain.clone()));
                    values.push(Arg::from(org.clone()));
                }
                tx.execute(&sql, values).await?;
            }
        }
        Extra::MemberEmail(identity, email) => {
            // An email change reaches every membership of the identity.
            tx.execute(
                "UPDATE memberships SET member_email = ? WHERE identity_id = ?",
                args![email.clone(), identity.clone()],
            )
            .await?;
        }
    }
    Ok(())
}

async fn apply_changes(
    tx: &mut Tx,
    records: &[Prepared],
    deletions: &[(&'static str, String, i64, String)],
    events: &[PreparedEvent],
) -> Result<(), StoreError> {
    let mut index = 0;
    while let Some(item) = records.get(index) {
        if item.expected == 0 {
            // A run of new records of the same table goes in one statement.
            let mut group = vec![item];
            while let Some(next) = records.get(index + group.len()) {
                if next.expected != 0
                    || next.spec.table != item.spec.table
                    || group.len() >= INSERT_CHUNK
                {
                    break;
                }
                group.push(next);
            }
            insert_group(tx, &group).await?;
            let mut new_identities = Vec::new();
            for member in &group {
                match &member.extra {
                    Extra::MemberEmail(identity, _) => {
                        new_identities.push(Arg::from(identity.clone()));
                    }
                    _ => apply_extra(tx, member).await?,
                }
            }
            if !new_identities.is_empty() {
                // Memberships written before their identity (earlier in this change set, or in
                // an earlier commit) have no email yet; they get it now, in one statement for
                // the whole group. Only such memberships are looked at, through the small
                // partial index `ix_memberships_without_email`: filtered on identity_id alone,
                // PostgreSQL chose a full scan of memberships for every group while a growing
                // table had no statistics yet, and an import slowed down with every chunk.
                let sql = format!(
                    "UPDATE memberships SET member_email = \
                     (SELECT email_normalized FROM identities WHERE identities.id = memberships.identity_id) \
                     WHERE member_email IS NULL AND identity_id IN ({})",
                    placeholders(new_identities.len())
                );
                tx.execute(&sql, new_identities).await?;
            }
            index += group.len();
        } else {
            let (sql, values) = item.spec.update(item.expected, item.version);
            if tx.execute(&sql, values).await? == 0 {
                return Err(StoreError::conflict(&item.describe));
            }
            apply_extra(tx, item).await?;
            index += 1;
        }
    }
    for (table, id, version, describe) in deletions {
        let deleted = tx
            .execute(
                &format!("DELETE FROM {table} WHERE id = ? AND version = ?"),
                args![id.clone(), *version],
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::conflict(describe));
        }
    }
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO events (id, at, organization_id, identity_id, ordering_key, data) VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 6);
        for (i, event) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, ?, ?)");
            values.extend(args![
                event.id.clone(),
                event.at,
                event.organization.clone(),
                event.identity.clone(),
                event.ordering_key.clone(),
                event.data.clone(),
            ]);
        }
        tx.execute(&sql, values).await?;
        let sql = format!(
            "INSERT INTO outbox (sequence, event_id, ordering_key, next_attempt_at) \
             SELECT sequence, id, ordering_key, ? FROM events WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut values = args![i64::MIN];
        values.extend(chunk.iter().map(|e| Arg::from(e.id.clone())));
        tx.execute(&sql, values).await?;
    }
    Ok(())
}

/// Adds the membership in column `at` of `row` (with its organization in column `at + 1`) to
/// `memberships`; a row without a membership (an identity without any) adds nothing.
fn push_membership_access(
    memberships: &mut Vec<MembershipAccess>,
    row: &DbRow,
    at: usize,
) -> Result<(), StoreError> {
    let Some(membership) = row.opt_text(at)? else {
        return Ok(());
    };
    let organization = match row.opt_text(at + 1)? {
        Some(organization) => Some(from_json::<Organization>(&organization)?),
        None => None,
    };
    memberships.push(MembershipAccess {
        membership: from_json(&membership)?,
        organization,
        contracts: Vec::new(),
    });
    Ok(())
}

/// The access records of `identity`: each membership whose organization exists gets that
/// organization's contracts out of `contracts` (in their order).
fn identity_access_of(
    identity: Identity,
    mut memberships: Vec<MembershipAccess>,
    contracts: &[Contract],
) -> IdentityAccess {
    for entry in &mut memberships {
        if let Some(organization) = &entry.organization {
            entry.contracts = contracts
                .iter()
                .filter(|contract| contract.organization == organization.id)
                .cloned()
                .collect();
        }
    }
    IdentityAccess {
        identity,
        memberships,
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn commit(&self, changes: ChangeSet) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let deletions = changes
            .deletions
            .iter()
            .map(|d| {
                let (table, id, version, describe) = deletion_of(d);
                Ok((table, id, version_of(version, &describe)?, describe))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (records, events) = prepare(changes)?;
        self.in_transaction(|tx| {
            Box::pin(async move { apply_changes(tx, &records, &deletions, &events).await })
        })
        .await
    }

    // ----- organizations and contracts -----

    async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>, StoreError> {
        self.one(
            "SELECT data FROM organizations WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn organization_by_crm_account(
        &self,
        crm_account_id: &str,
    ) -> Result<Option<Organization>, StoreError> {
        self.one(
            "SELECT data FROM organizations WHERE crm_account_id = ?",
            args![crm_account_id],
        )
        .await
    }

    async fn organization_by_email_domain(
        &self,
        domain: &EmailDomain,
    ) -> Result<Option<Organization>, StoreError> {
        self.one(
            "SELECT o.data FROM organization_email_domains d \
             JOIN organizations o ON o.id = d.organization_id WHERE d.domain = ?",
            args![domain.as_str()],
        )
        .await
    }

    async fn organization_by_join_code(
        &self,
        code: &str,
    ) -> Result<Option<Organization>, StoreError> {
        self.one(
            "SELECT data FROM organizations WHERE join_code = ?",
            args![code],
        )
        .await
    }

    async fn sub_organizations(
        &self,
        parent: OrganizationId,
    ) -> Result<Vec<Organization>, StoreError> {
        self.many(
            "SELECT data FROM organizations WHERE parent_id = ? ORDER BY name, id",
            args![parent.to_string()],
        )
        .await
    }

    async fn search_organizations(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Organization>, StoreError> {
        self.many(
            "SELECT data FROM organizations WHERE name_lower LIKE ? ESCAPE '\\' \
             ORDER BY name, id LIMIT ?",
            args![
                contains_pattern(&query.to_lowercase()),
                limit_of(limit, MAX_LIST)
            ],
        )
        .await
    }

    async fn contract(&self, id: ContractId) -> Result<Option<Contract>, StoreError> {
        self.one(
            "SELECT data FROM contracts WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn contract_by_crm_id(
        &self,
        crm_contract_id: &str,
    ) -> Result<Option<Contract>, StoreError> {
        self.one(
            "SELECT data FROM contracts WHERE crm_contract_id = ?",
            args![crm_contract_id],
        )
        .await
    }

    async fn contracts_of_organization(
        &self,
        organization: OrganizationId,
    ) -> Result<Vec<Contract>, StoreError> {
        self.many(
            "SELECT data FROM contracts WHERE organization_id = ? ORDER BY created_at, id",
            args![organization.to_string()],
        )
        .await
    }

    async fn contracts_with_access_ended_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<Contract>, StoreError> {
        self.many(
            "SELECT data FROM contracts WHERE access_end_at <= ? ORDER BY access_end_at, id",
            args![ts(before)],
        )
        .await
    }

    // ----- identities and memberships -----

    async fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        self.one(
            "SELECT data FROM identities WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn identity_by_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<Identity>, StoreError> {
        self.one(
            "SELECT data FROM identities WHERE email_normalized = ?",
            args![email.normalized()],
        )
        .await
    }

    async fn identities_by_emails(
        &self,
        emails: &[EmailAddress],
    ) -> Result<Vec<Identity>, StoreError> {
        let mut out = Vec::new();
        for chunk in normalized_emails(emails).chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT data FROM identities WHERE email_normalized IN ({}) \
                 ORDER BY email_normalized",
                placeholders(chunk.len())
            );
            let values = chunk.iter().map(|email| Arg::from(*email)).collect();
            out.extend(self.many::<Identity>(&sql, values).await?);
        }
        Ok(out)
    }

    async fn identity_by_crm_contact(
        &self,
        crm_contact_id: &str,
    ) -> Result<Option<Identity>, StoreError> {
        self.one(
            "SELECT data FROM identities WHERE crm_contact_id = ?",
            args![crm_contact_id],
        )
        .await
    }

    async fn search_identities(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Identity>, StoreError> {
        let query = query.to_lowercase();
        let limit = limit_of(limit, MAX_LIST);
        // Two index-friendly queries (an email range, a name scan), merged by email.
        let by_email = self
            .read()
            .fetch_all(
                "SELECT email_normalized, data FROM identities \
                 WHERE email_normalized >= ? AND email_normalized < ? \
                 ORDER BY email_normalized LIMIT ?",
                args![query.clone(), prefix_end(&query), limit],
            )
            .await?;
        let by_name = self
            .read()
            .fetch_all(name_search_sql(self.read().backend(), &query), {
                let mut values = args![contains_pattern(&query), limit];
                if uses_trigram_table(self.read().backend(), &query) {
                    values[0] = Arg::from(format!("%{query}%"));
                }
                values
            })
            .await?;
        let mut merged: Vec<(String, String)> = Vec::new();
        for row in by_email.iter().chain(by_name.iter()) {
            merged.push((row.text(0)?, row.text(1)?));
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        merged.dedup_by(|a, b| a.0 == b.0);
        merged.truncate(usize::try_from(limit).unwrap_or(0));
        merged.iter().map(|(_, data)| from_json(data)).collect()
    }

    async fn membership(&self, id: MembershipId) -> Result<Option<Membership>, StoreError> {
        self.one(
            "SELECT data FROM memberships WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn membership_of(
        &self,
        identity: IdentityId,
        organization: OrganizationId,
    ) -> Result<Option<Membership>, StoreError> {
        self.one(
            "SELECT data FROM memberships WHERE identity_id = ? AND organization_id = ?",
            args![identity.to_string(), organization.to_string()],
        )
        .await
    }

    async fn memberships_in_organization(
        &self,
        organization: OrganizationId,
        identities: &[IdentityId],
    ) -> Result<Vec<Membership>, StoreError> {
        let mut ids: Vec<String> = identities.iter().map(ToString::to_string).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT data FROM memberships WHERE organization_id = ? AND identity_id IN ({})",
                placeholders(chunk.len())
            );
            let mut values = args![organization.to_string()];
            values.extend(chunk.iter().map(Arg::from));
            out.extend(self.many::<Membership>(&sql, values).await?);
        }
        Ok(out)
    }

    async fn memberships_of_identity(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<Membership>, StoreError> {
        self.many(
            "SELECT data FROM memberships WHERE identity_id = ? ORDER BY created_at, id",
            args![identity.to_string()],
        )
        .await
    }

    async fn identity_access(&self, id: IdentityId) -> Result<Option<IdentityAccess>, StoreError> {
        // Two round trips instead of 2 + 2 per membership: the identity with its memberships
        // and their organizations, then the contracts of those organizations.
        let rows = self
            .read()
            .fetch_all(
                "SELECT i.data, m.data, o.data FROM identities i \
                 LEFT JOIN memberships m ON m.identity_id = i.id \
                 LEFT JOIN organizations o ON o.id = m.organization_id \
                 WHERE i.id = ? ORDER BY m.created_at, m.id",
                args![id.to_string()],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let identity: Identity = from_json(&first.text(0)?)?;
        let mut memberships = Vec::with_capacity(rows.len());
        for row in &rows {
            push_membership_access(&mut memberships, row, 1)?;
        }
        let contracts: Vec<Contract> = if memberships.iter().any(|m| m.organization.is_some()) {
            self.many(
                "SELECT c.data FROM contracts c WHERE c.organization_id IN \
                 (SELECT m.organization_id FROM memberships m WHERE m.identity_id = ?) \
                 ORDER BY c.created_at, c.id",
                args![id.to_string()],
            )
            .await?
        } else {
            Vec::new()
        };
        Ok(Some(identity_access_of(identity, memberships, &contracts)))
    }

    async fn members_of_organization(
        &self,
        organization: OrganizationId,
        page: PageRequest,
    ) -> Result<Page<Member>, StoreError> {
        let limit = page.limit.clamp(1, MAX_PAGE);
        let fetch = limit_of(limit + 1, MAX_PAGE + 1);
        let rows = match &page.after {
            Some(after) => {
                self.read()
                    .fetch_all(
                        "SELECT m.data, i.data, m.member_email FROM memberships m \
                         JOIN identities i ON i.id = m.identity_id \
                         WHERE m.organization_id = ? AND m.member_email > ? \
                         ORDER BY m.member_email LIMIT ?",
                        args![organization.to_string(), after.clone(), fetch],
                    )
                    .await?
            }
            None => {
                self.read()
                    .fetch_all(
                        "SELECT m.data, i.data, m.member_email FROM memberships m \
                         JOIN identities i ON i.id = m.identity_id \
                         WHERE m.organization_id = ? AND m.member_email IS NOT NULL \
                         ORDER BY m.member_email LIMIT ?",
                        args![organization.to_string(), fetch],
                    )
                    .await?
            }
        };
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        for row in rows.iter().take(limit) {
            items.push(Member {
                membership: from_json(&row.text(0)?)?,
                identity: from_json(&row.text(1)?)?,
            });
            last = Some(row.text(2)?);
        }
        Ok(Page {
            items,
            next: if more { last } else { None },
        })
    }

    // ----- services and roles -----

    async fn service(&self, id: ServiceId) -> Result<Option<Service>, StoreError> {
        self.one(
            "SELECT data FROM services WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn service_by_key(&self, key: &str) -> Result<Option<Service>, StoreError> {
        self.one("SELECT data FROM services WHERE key = ?", args![key])
            .await
    }

    async fn services(&self) -> Result<Vec<Service>, StoreError> {
        self.many("SELECT data FROM services ORDER BY key", args![])
            .await
    }

    async fn business_role(&self, id: BusinessRoleId) -> Result<Option<BusinessRole>, StoreError> {
        self.one(
            "SELECT data FROM business_roles WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn business_role_by_key(&self, key: &str) -> Result<Option<BusinessRole>, StoreError> {
        self.one("SELECT data FROM business_roles WHERE key = ?", args![key])
            .await
    }

    async fn business_roles(&self) -> Result<Vec<BusinessRole>, StoreError> {
        self.many("SELECT data FROM business_roles ORDER BY key", args![])
            .await
    }

    // ----- invitations and requests -----

    async fn invitation(&self, id: InvitationId) -> Result<Option<Invitation>, StoreError> {
        self.one(
            "SELECT data FROM invitations WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn invitation_by_token(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<Invitation>, StoreError> {
        self.one(
            "SELECT data FROM invitations WHERE token_hash = ?",
            args![token_hash.to_hex()],
        )
        .await
    }

    async fn invitations_of_organization(
        &self,
        organization: OrganizationId,
        statuses: &[InvitationStatus],
        limit: usize,
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut values = args![organization.to_string()];
        let status_filter = if statuses.is_empty() {
            String::new()
        } else {
            values.extend(statuses.iter().map(|s| Arg::from(invitation_status(*s))));
            format!(" AND status IN ({})", placeholders(statuses.len()))
        };
        values.push(Arg::from(limit_of(limit, MAX_LIST)));
        self.many(
            &format!(
                "SELECT data FROM invitations WHERE organization_id = ?{status_filter} \
                 ORDER BY created_at DESC, id DESC LIMIT ?"
            ),
            values,
        )
        .await
    }

    async fn invitations_with_status(
        &self,
        statuses: &[InvitationStatus],
        limit: usize,
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut values = Vec::new();
        let status_filter = if statuses.is_empty() {
            String::new()
        } else {
            values.extend(statuses.iter().map(|s| Arg::from(invitation_status(*s))));
            format!(" WHERE status IN ({})", placeholders(statuses.len()))
        };
        values.push(Arg::from(limit_of(limit, MAX_LIST)));
        self.many(
            &format!("SELECT data FROM invitations{status_filter} ORDER BY created_at, id LIMIT ?"),
            values,
        )
        .await
    }

    async fn open_invitations_for_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Vec<Invitation>, StoreError> {
        self.many(
            "SELECT data FROM invitations WHERE email_normalized = ? AND status IN (?, ?) \
             ORDER BY created_at, id",
            args![
                email.normalized(),
                invitation_status(InvitationStatus::HeldForReview),
                invitation_status(InvitationStatus::Pending),
            ],
        )
        .await
    }

    async fn open_invitations_for_emails(
        &self,
        emails: &[EmailAddress],
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut out = Vec::new();
        for chunk in normalized_emails(emails).chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT data FROM invitations WHERE email_normalized IN ({}) AND status IN (?, ?) \
                 ORDER BY email_normalized, created_at, id",
                placeholders(chunk.len())
            );
            let mut values: Vec<Arg> = chunk.iter().map(|email| Arg::from(*email)).collect();
            values.extend(args![
                invitation_status(InvitationStatus::HeldForReview),
                invitation_status(InvitationStatus::Pending),
            ]);
            out.extend(self.many::<Invitation>(&sql, values).await?);
        }
        Ok(out)
    }

    async fn org_registration(
        &self,
        id: OrgRegistrationId,
    ) -> Result<Option<OrgRegistration>, StoreError> {
        self.one(
            "SELECT data FROM org_registrations WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn pending_org_registrations(
        &self,
        limit: usize,
    ) -> Result<Vec<OrgRegistration>, StoreError> {
        self.many(
            "SELECT data FROM org_registrations WHERE status = ? ORDER BY created_at, id LIMIT ?",
            args![PENDING_APPROVAL, limit_of(limit, MAX_LIST)],
        )
        .await
    }

    async fn join_request(&self, id: JoinRequestId) -> Result<Option<JoinRequest>, StoreError> {
        self.one(
            "SELECT data FROM join_requests WHERE id = ?",
            args![id.to_string()],
        )
        .await
    }

    async fn pending_join_requests(
        &self,
        organization: OrganizationId,
        limit: usize,
    ) -> Result<Vec<JoinRequest>, StoreError> {
        self.many(
            "SELECT data FROM join_requests WHERE organization_id = ? AND status = ? \
             ORDER BY created_at, id LIMIT ?",
            args![
                organization.to_string(),
                PENDING_APPROVAL,
                limit_of(limit, MAX_LIST)
            ],
        )
        .await
    }

    // ----- credentials and sessions -----

    async fn credentials_of_identity(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<Credential>, StoreError> {
        self.many(
            "SELECT data FROM credentials WHERE identity_id = ? ORDER BY created_at, id",
            args![identity.to_string()],
        )
        .await
    }

    async fn credential_by_federated_link(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Credential>, StoreError> {
        self.one(
            "SELECT data FROM credentials WHERE provider = ? AND subject = ?",
            args![provider, subject],
        )
        .await
    }

    async fn session_by_token(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<Session>, StoreError> {
        self.one(
            "SELECT data FROM sessions WHERE token_hash = ?",
            args![token_hash.to_hex()],
        )
        .await
    }

    async fn session_access(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SessionAccess>, StoreError> {
        // One round trip for the session check of every request: the session, its identity
        // with memberships and organizations, and the contracts of those organizations, each
        // row tagged with its part ('s', 'i', 'c') and ordered within its part as the single
        // reads order them.
        let hash = token_hash.to_hex();
        let rows = self
            .read()
            .fetch_all(
                "SELECT 's', s.data, NULL, NULL, 0, '' FROM sessions s WHERE s.token_hash = ? \
                 UNION ALL \
                 SELECT 'i', i.data, m.data, o.data, m.created_at, m.id FROM sessions s \
                 JOIN identities i ON i.id = s.identity_id \
                 LEFT JOIN memberships m ON m.identity_id = i.id \
                 LEFT JOIN organizations o ON o.id = m.organization_id \
                 WHERE s.token_hash = ? \
                 UNION ALL \
                 SELECT 'c', c.data, NULL, NULL, c.created_at, c.id FROM sessions s \
                 JOIN memberships m ON m.identity_id = s.identity_id \
                 JOIN contracts c ON c.organization_id = m.organization_id \
                 WHERE s.token_hash = ? \
                 ORDER BY 1, 5, 6",
                args![hash.clone(), hash.clone(), hash],
            )
            .await?;
        let mut session: Option<Session> = None;
        let mut identity: Option<Identity> = None;
        let mut memberships = Vec::new();
        let mut contracts: Vec<Contract> = Vec::new();
        for row in &rows {
            match row.text(0)?.as_str() {
                "s" => session = Some(from_json(&row.text(1)?)?),
                "i" => {
                    if identity.is_none() {
                        identity = Some(from_json(&row.text(1)?)?);
                    }
                    push_membership_access(&mut memberships, row, 2)?;
                }
                "c" => contracts.push(from_json(&row.text(1)?)?),
                other => {
                    return Err(StoreError::corrupt(format_args!(
                        "session access: unknown row part {other:?}"
                    )));
                }
            }
        }
        let Some(session) = session else {
            return Ok(None);
        };
        let access = identity.map(|identity| identity_access_of(identity, memberships, &contracts));
        Ok(Some(SessionAccess { session, access }))
    }

    async fn sessions_of_identity(&self, identity: IdentityId) -> Result<Vec<Session>, StoreError> {
        self.many(
            "SELECT data FROM sessions WHERE identity_id = ? ORDER BY created_at DESC, id DESC",
            args![identity.to_string()],
        )
        .await
    }

    // ----- settings -----

    async fn setting(&self, kind: SettingKind, key: &str) -> Result<Option<Setting>, StoreError> {
        self.one(
            "SELECT data FROM settings WHERE kind = ? AND key = ?",
            args![kind.as_str(), key],
        )
        .await
    }

    async fn settings(
        &self,
        kind: SettingKind,
        organization: Option<OrganizationId>,
    ) -> Result<Vec<Setting>, StoreError> {
        match organization {
            Some(organization) => {
                self.many(
                    "SELECT data FROM settings WHERE kind = ? AND organization_id = ? ORDER BY key",
                    args![kind.as_str(), organization.to_string()],
                )
                .await
            }
            None => {
                self.many(
                    "SELECT data FROM settings WHERE kind = ? ORDER BY key",
                    args![kind.as_str()],
                )
                .await
            }
        }
    }

    // ----- audit and outbox -----

    async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let mut sql = String::from("SELECT data, sequence FROM events WHERE 1 = 1");
        let mut values = Vec::new();
        if let Some(org) = query.organization {
            sql.push_str(" AND organization_id = ?");
            values.push(Arg::from(org.to_string()));
        }
        if let Some(identity) = query.identity {
            sql.push_str(" AND identity_id = ?");
            values.push(Arg::from(identity.to_string()));
        }
        if let Some(since) = query.since {
            sql.push_str(" AND at >= ?");
            values.push(Arg::from(ts(since)));
        }
        if let Some(until) = query.until {
            sql.push_str(" AND at < ?");
            values.push(Arg::from(ts(until)));
        }
        sql.push_str(" ORDER BY at DESC, sequence DESC LIMIT ?");
        values.push(Arg::from(limit_of(query.limit, MAX_EVENTS)));
        let rows = self.read().fetch_all(&sql, values).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    event: from_json::<DomainEvent>(&row.text(0)?)?,
                    sequence: row.int(1)?,
                })
            })
            .collect()
    }

    async fn claim_outbox(
        &self,
        consumer: &str,
        limit: usize,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let limit = limit_of(limit, MAX_EVENTS);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let consumer = consumer.to_owned();
        let now = ts(now);
        let lease_until = ts(lease_until);
        // Deliverable: not dead, due, free (or already ours), and the oldest live entry of its
        // ordering key (dead letters do not hold back later events).
        let lock = match self.write().backend() {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => "",
            #[cfg(feature = "postgres")]
            Backend::Postgres => " FOR UPDATE OF o SKIP LOCKED",
        };
        let select = format!(
            "SELECT o.sequence FROM outbox o \
             WHERE o.dead = 0 AND o.next_attempt_at <= ? \
             AND (o.lease_owner IS NULL OR o.lease_owner = ? OR o.lease_until <= ?) \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ordering_key = o.ordering_key \
                             AND p.sequence < o.sequence AND p.dead = 0) \
             ORDER BY o.sequence LIMIT ?{lock}"
        );
        self.in_transaction(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .fetch_all(&select, args![now, consumer.clone(), now, limit])
                    .await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sequences = Vec::with_capacity(rows.len());
                for row in &rows {
                    sequences.push(Arg::from(row.int(0)?));
                }
                let marks = placeholders(sequences.len());
                let mut values = args![consumer, lease_until];
                values.extend(sequences.iter().cloned());
                tx.execute(
                    &format!(
                        "UPDATE outbox SET lease_owner = ?, lease_until = ? \
                         WHERE sequence IN ({marks})"
                    ),
                    values,
                )
                .await?;
                let rows = tx
                    .fetch_all(
                        &format!(
                            "SELECT e.data, o.sequence, o.attempts, o.last_error FROM outbox o \
                             JOIN events e ON e.sequence = o.sequence \
                             WHERE o.sequence IN ({marks}) ORDER BY o.sequence"
                        ),
                        sequences,
                    )
                    .await?;
                rows.iter().map(outbox_entry).collect()
            })
        })
        .await
    }

    async fn ack_outbox(&self, consumer: &str, events: &[EventId]) -> Result<(), StoreError> {
        for chunk in events.chunks(INSERT_CHUNK) {
            let mut values = args![consumer];
            values.extend(chunk.iter().map(|e| Arg::from(e.to_string())));
            self.write()
                .execute(
                    &format!(
                        "DELETE FROM outbox WHERE dead = 0 AND lease_owner = ? \
                         AND event_id IN ({})",
                        placeholders(chunk.len())
                    ),
                    values,
                )
                .await?;
        }
        Ok(())
    }

    async fn release_outbox(
        &self,
        consumer: &str,
        event: EventId,
        error: &str,
        retry_at: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<ReleaseOutcome, StoreError> {
        let consumer = consumer.to_owned();
        let error = error.to_owned();
        let retry_at = ts(retry_at);
        let event_id = event.to_string();
        self.in_transaction(move |tx| {
            Box::pin(async move {
                let lock = match tx {
                    #[cfg(feature = "sqlite")]
                    Tx::Sqlite(_) => "",
                    #[cfg(feature = "postgres")]
                    Tx::Postgres(_) => " FOR UPDATE",
                };
                let row = tx
                    .fetch_optional(
                        &format!(
                            "SELECT attempts, dead, lease_owner FROM outbox \
                             WHERE event_id = ?{lock}"
                        ),
                        args![event_id.clone()],
                    )
                    .await?;
                let Some(row) = row else {
                    return Err(StoreError::not_found(format!("outbox entry {event_id}")));
                };
                let held = row.int(1)? == 0 && row.opt_text(2)?.as_deref() == Some(&consumer);
                if !held {
                    return Err(StoreError::conflict(format!(
                        "outbox entry {event_id} (not leased by {consumer})"
                    )));
                }
                let attempts = row.int(0)?.saturating_add(1);
                let dead = attempts >= i64::from(max_attempts);
                if dead {
                    tx.execute(
                        "UPDATE outbox SET attempts = ?, last_error = ?, lease_owner = NULL, \
                         lease_until = NULL, dead = 1 WHERE event_id = ?",
                        args![attempts, error, event_id],
                    )
                    .await?;
                    Ok(ReleaseOutcome::DeadLettered)
                } else {
                    tx.execute(
                        "UPDATE outbox SET attempts = ?, last_error = ?, lease_owner = NULL, \
                         lease_until = NULL, next_attempt_at = ? WHERE event_id = ?",
                        args![attempts, error, retry_at, event_id],
                    )
                    .await?;
                    Ok(ReleaseOutcome::WillRetry)
                }
            })
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = self
            .read()
            .fetch_all(
                "SELECT e.data, o.sequence, o.attempts, o.last_error FROM outbox o \
                 JOIN events e ON e.sequence = o.sequence \
                 WHERE o.dead = 1 ORDER BY o.sequence LIMIT ?",
                args![limit_of(limit, MAX_EVENTS)],
            )
            .await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn redeliver(&self, event: EventId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let changed = self
            .write()
            .execute(
                "UPDATE outbox SET dead = 0, attempts = 0, lease_owner = NULL, \
                 lease_until = NULL, next_attempt_at = ? WHERE event_id = ? AND dead = 1",
                args![ts(now), event.to_string()],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!("dead letter {event}")));
        }
        Ok(())
    }

    async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let row = self
            .read()
            .fetch_optional("SELECT COUNT(*) FROM outbox WHERE dead = 0", args![])
            .await?;
        let count = row.map(|r| r.int(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    // ----- counters and single use -----

    async fn consume_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Inserted, or an expired use replaced: a row comes back. A live use: none.
        let row = self
            .write()
            .fetch_optional(
                "INSERT INTO single_use (key, expires_at) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE single_use.expires_at <= ? RETURNING key",
                args![key, ts(expires_at), ts(now)],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn increment_counter(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let now = ts(now);
        let row = self
            .write()
            .fetch_optional(
                "INSERT INTO counters (key, count, expires_at) VALUES (?, 1, ?) \
                 ON CONFLICT (key) DO UPDATE SET \
                 count = CASE WHEN counters.expires_at <= ? THEN 1 ELSE counters.count + 1 END, \
                 expires_at = CASE WHEN counters.expires_at <= ? THEN excluded.expires_at \
                              ELSE counters.expires_at END \
                 RETURNING count",
                args![key, ts(expires_at), now, now],
            )
            .await?;
        let count = row.map(|r| r.int(0)).transpose()?.unwrap_or(1);
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn counter(&self, key: &str, now: DateTime<Utc>) -> Result<u32, StoreError> {
        let row = self
            .read()
            .fetch_optional(
                "SELECT count FROM counters WHERE key = ? AND expires_at > ?",
                args![key, ts(now)],
            )
            .await?;
        let count = row.map(|r| r.int(0)).transpose()?.unwrap_or(0);
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn reset_counter(&self, key: &str) -> Result<(), StoreError> {
        self.write()
            .execute("DELETE FROM counters WHERE key = ?", args![key])
            .await?;
        Ok(())
    }

    async fn idempotency_record(
        &self,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let now = ts(now);
        let row = self
            .read()
            .fetch_optional(
                "SELECT request_hash, response, expires_at FROM idempotency \
                 WHERE scope = ? AND key = ?",
                args![scope, key],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        if row.int(2)? <= now {
            // Expired: forget it, so that the key can be saved again.
            self.write()
                .execute(
                    "DELETE FROM idempotency WHERE scope = ? AND key = ? AND expires_at <= ?",
                    args![scope, key, now],
                )
                .await?;
            return Ok(None);
        }
        Ok(Some(IdempotencyRecord {
            request_hash: row.text(0)?,
            response: from_json(&row.text(1)?)?,
        }))
    }

    async fn save_idempotency_record(
        &self,
        scope: &str,
        key: &str,
        record: IdempotencyRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .write()
            .execute(
                "INSERT INTO idempotency (scope, key, request_hash, response, expires_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO NOTHING",
                args![
                    scope,
                    key,
                    record.request_hash,
                    to_json(&record.response)?,
                    ts(expires_at)
                ],
            )
            .await?;
        Ok(inserted == 1)
    }
}
