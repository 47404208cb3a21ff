-- ciam-store schema 3 (PostgreSQL): memberships stored before their identity (no email yet),
-- found by identity without scanning every membership. The index holds only those rows, so
-- it stays tiny, and the planner picks it even before the table has statistics.
CREATE INDEX ix_memberships_without_email ON memberships (identity_id) WHERE member_email IS NULL;
