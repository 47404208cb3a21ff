-- ciam-store schema 1 (PostgreSQL).
--
-- One table per record kind. `data` holds the record as JSON (serde_json of the ciam-core type);
-- the other columns are extracted from it for lookups, unique constraints and ordering.
-- Instants are stored as nanoseconds since the Unix epoch (BIGINT), so that SQLite and
-- PostgreSQL compare them the same way. Unique indexes are named `uq_<table>_<field>`: the store
-- maps a violation of one back to the field name of the port (`ciam_core::store::unique_fields`).

CREATE TABLE organizations (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    name_lower TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    parent_id TEXT,
    crm_account_id TEXT COLLATE "C",
    join_code TEXT COLLATE "C",
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_organizations_crm_account_id ON organizations (crm_account_id);
CREATE UNIQUE INDEX uq_organizations_join_code ON organizations (join_code);
CREATE INDEX ix_organizations_parent ON organizations (parent_id);
CREATE INDEX ix_organizations_name ON organizations (name, id);

CREATE TABLE organization_email_domains (
    domain TEXT COLLATE "C" NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX uq_organization_email_domains_domain ON organization_email_domains (domain);
CREATE INDEX ix_organization_email_domains_org ON organization_email_domains (organization_id);

CREATE TABLE contracts (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    crm_contract_id TEXT COLLATE "C" NOT NULL,
    -- access_ended_at, else valid_until: when the contract stops (or stopped) giving access
    access_end_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_contracts_crm_contract_id ON contracts (crm_contract_id);
CREATE INDEX ix_contracts_org ON contracts (organization_id, created_at);
CREATE INDEX ix_contracts_access_end ON contracts (access_end_at);

CREATE TABLE identities (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    email_normalized TEXT COLLATE "C" NOT NULL,
    crm_contact_id TEXT COLLATE "C",
    name_lower TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_identities_email ON identities (email_normalized);
CREATE UNIQUE INDEX uq_identities_crm_contact_id ON identities (crm_contact_id);
-- Substring search in names (LIKE '%...%'): a trigram index. pg_trgm ships with PostgreSQL and
-- is a trusted extension: the database owner may create it. It goes to (and is named from) the
-- schema `public`, so that stores in several schemas of one database share it.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE INDEX ix_identities_name_trgm ON identities USING gin (name_lower public.gin_trgm_ops);

CREATE TABLE memberships (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    -- the member's email_normalized, kept in step with identities for keyset pagination
    member_email TEXT COLLATE "C",
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_memberships_membership ON memberships (identity_id, organization_id);
CREATE INDEX ix_memberships_org_email ON memberships (organization_id, member_email);

CREATE TABLE services (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX uq_services_key ON services (key);

CREATE TABLE business_roles (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX uq_business_roles_key ON business_roles (key);

CREATE TABLE invitations (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    email_normalized TEXT COLLATE "C" NOT NULL,
    status TEXT NOT NULL,
    token_hash TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_invitations_token ON invitations (token_hash);
CREATE INDEX ix_invitations_org ON invitations (organization_id, created_at);
CREATE INDEX ix_invitations_status ON invitations (status, created_at);
CREATE INDEX ix_invitations_email ON invitations (email_normalized);

CREATE TABLE org_registrations (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ix_org_registrations_status ON org_registrations (status, created_at);

CREATE TABLE join_requests (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ix_join_requests_org ON join_requests (organization_id, status, created_at);

CREATE TABLE credentials (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    provider TEXT,
    subject TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_credentials_federated_link ON credentials (provider, subject);
CREATE INDEX ix_credentials_identity ON credentials (identity_id);

CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_sessions_token ON sessions (token_hash);
CREATE INDEX ix_sessions_identity ON sessions (identity_id, created_at);

-- The event log (audit) and the outbox that feeds consumers, written in the same transaction as
-- the records.
CREATE TABLE events (
    sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL,
    at BIGINT NOT NULL,
    organization_id TEXT,
    identity_id TEXT,
    ordering_key TEXT COLLATE "C" NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_events_id ON events (id);
CREATE INDEX ix_events_org ON events (organization_id, at, sequence);
CREATE INDEX ix_events_identity ON events (identity_id, at, sequence);
CREATE INDEX ix_events_at ON events (at, sequence);

CREATE TABLE outbox (
    sequence BIGINT PRIMARY KEY NOT NULL REFERENCES events (sequence),
    event_id TEXT NOT NULL,
    ordering_key TEXT COLLATE "C" NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    dead BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX uq_outbox_event_id ON outbox (event_id);
CREATE INDEX ix_outbox_key ON outbox (ordering_key, sequence);
CREATE INDEX ix_outbox_due ON outbox (dead, next_attempt_at);

CREATE TABLE single_use (
    key TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE counters (
    key TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    count BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
