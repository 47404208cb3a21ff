-- ciam-store schema 3 (SQLite): memberships stored before their identity (no email yet),
-- found by identity without scanning every membership (a partial index: only those rows).
CREATE INDEX ix_memberships_without_email ON memberships (identity_id) WHERE member_email IS NULL;
