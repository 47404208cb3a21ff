-- ciam-store schema 1 (SQLite).
--
-- One table per record kind. `data` holds the record as JSON (serde_json of the ciam-core type);
-- the other columns are extracted from it for lookups, unique constraints and ordering.
-- Instants are stored as nanoseconds since the Unix epoch (INTEGER), so that SQLite and
-- PostgreSQL compare them the same way. Unique indexes are named `uq_<table>_<field>`: the store
-- maps a violation of one back to the field name of the port (`ciam_core::store::unique_fields`).

CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    name_lower TEXT NOT NULL,
    name TEXT NOT NULL,
    parent_id TEXT,
    crm_account_id TEXT,
    join_code TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_organizations_crm_account_id ON organizations (crm_account_id);
CREATE UNIQUE INDEX uq_organizations_join_code ON organizations (join_code);
CREATE INDEX ix_organizations_parent ON organizations (parent_id);
CREATE INDEX ix_organizations_name ON organizations (name, id);

CREATE TABLE organization_email_domains (
    domain TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX uq_organization_email_domains_domain ON organization_email_domains (domain);
CREATE INDEX ix_organization_email_domains_org ON organization_email_domains (organization_id);

CREATE TABLE contracts (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    crm_contract_id TEXT NOT NULL,
    -- access_ended_at, else valid_until: when the contract stops (or stopped) giving access
    access_end_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_contracts_crm_contract_id ON contracts (crm_contract_id);
CREATE INDEX ix_contracts_org ON contracts (organization_id, created_at);
CREATE INDEX ix_contracts_access_end ON contracts (access_end_at);

-- `seq` is a stable integer key for the full-text name index below.
CREATE TABLE identities (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    crm_contact_id TEXT,
    name_lower TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_identities_id ON identities (id);
CREATE UNIQUE INDEX uq_identities_email ON identities (email_normalized);
CREATE UNIQUE INDEX uq_identities_crm_contact_id ON identities (crm_contact_id);

-- Substring search in names: an FTS5 trigram index over identities.name_lower, kept in step by
-- triggers (external content: the names live only in `identities`).
CREATE VIRTUAL TABLE identity_names USING fts5 (
    name_lower, content = 'identities', content_rowid = 'seq', tokenize = 'trigram'
);
CREATE TRIGGER identities_names_insert AFTER INSERT ON identities BEGIN
    INSERT INTO identity_names (rowid, name_lower) VALUES (new.seq, new.name_lower);
END;
CREATE TRIGGER identities_names_delete AFTER DELETE ON identities BEGIN
    INSERT INTO identity_names (identity_names, rowid, name_lower)
    VALUES ('delete', old.seq, old.name_lower);
END;
CREATE TRIGGER identities_names_update AFTER UPDATE OF name_lower ON identities
WHEN old.name_lower IS NOT new.name_lower BEGIN
    INSERT INTO identity_names (identity_names, rowid, name_lower)
    VALUES ('delete', old.seq, old.name_lower);
    INSERT INTO identity_names (rowid, name_lower) VALUES (new.seq, new.name_lower);
END;

CREATE TABLE memberships (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    -- the member's email_normalized, kept in step with identities for keyset pagination
    member_email TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_memberships_membership ON memberships (identity_id, organization_id);
CREATE INDEX ix_memberships_org_email ON memberships (organization_id, member_email);

CREATE TABLE services (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    key TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_services_key ON services (key);

CREATE TABLE business_roles (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    key TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_business_roles_key ON business_roles (key);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    status TEXT NOT NULL,
    token_hash TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_invitations_token ON invitations (token_hash);
CREATE INDEX ix_invitations_org ON invitations (organization_id, created_at);
CREATE INDEX ix_invitations_status ON invitations (status, created_at);
CREATE INDEX ix_invitations_email ON invitations (email_normalized);

CREATE TABLE org_registrations (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX ix_org_registrations_status ON org_registrations (status, created_at);

CREATE TABLE join_requests (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX ix_join_requests_org ON join_requests (organization_id, status, created_at);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    provider TEXT,
    subject TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_credentials_federated_link ON credentials (provider, subject);
CREATE INDEX ix_credentials_identity ON credentials (identity_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_sessions_token ON sessions (token_hash);
CREATE INDEX ix_sessions_identity ON sessions (identity_id, created_at);

-- The event log (audit) and the outbox that feeds consumers, written in the same transaction as
-- the records.
CREATE TABLE events (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    at INTEGER NOT NULL,
    organization_id TEXT,
    identity_id TEXT,
    ordering_key TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_events_id ON events (id);
CREATE INDEX ix_events_org ON events (organization_id, at, sequence);
CREATE INDEX ix_events_identity ON events (identity_id, at, sequence);
CREATE INDEX ix_events_at ON events (at, sequence);

CREATE TABLE outbox (
    sequence INTEGER PRIMARY KEY NOT NULL REFERENCES events (sequence),
    event_id TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    lease_owner TEXT,
    lease_until INTEGER,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX uq_outbox_event_id ON outbox (event_id);
CREATE INDEX ix_outbox_key ON outbox (ordering_key, sequence);
CREATE INDEX ix_outbox_due ON outbox (dead, next_attempt_at);

CREATE TABLE single_use (
    key TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE counters (
    key TEXT PRIMARY KEY NOT NULL,
    count INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
