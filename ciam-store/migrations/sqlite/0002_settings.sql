-- ciam-store schema 2 (SQLite): stored configuration (`ciam_core::settings::Setting`).
CREATE TABLE settings (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    organization_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX uq_settings_key ON settings (kind, key);
CREATE INDEX ix_settings_org ON settings (kind, organization_id, key);
