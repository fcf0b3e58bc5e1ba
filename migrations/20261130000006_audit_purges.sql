-- Purges of audit records past their retention date (ten years after the 1 January following
-- the action). A purge removes whole seals' records only, and says up to which seal: the
-- seals themselves stay, so the chain still verifies and still states what existed.
CREATE TABLE audit_purges (
    id          bigserial PRIMARY KEY,
    purged_at   timestamptz NOT NULL DEFAULT now(),
    up_to_seal  bigint NOT NULL REFERENCES audit_seals (seq),
    records     bigint NOT NULL
);
CREATE TRIGGER audit_purges_no_change BEFORE UPDATE OR DELETE ON audit_purges
    FOR EACH ROW EXECUTE FUNCTION audit_seals_append_only();
CREATE TRIGGER audit_purges_no_truncate BEFORE TRUNCATE ON audit_purges
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seals_append_only();
-- An audit table: the services may read it only (a purge runs as the owner).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_purges FROM ebox_runtime;
