-- ciam-store schema 2 (PostgreSQL): stored configuration (`ciam_core::settings::Setting`).
CREATE TABLE settings (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    organization_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uq_settings_key ON settings (kind, key);
CREATE INDEX ix_settings_org ON settings (kind, organization_id, key);
