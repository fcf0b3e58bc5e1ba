-- The audit trail, sealed: a background job takes the records no seal covers yet, in id order,
-- computes the SHA-256 over their canonical lines, chains it to the previous seal and signs
-- the seal (Ed25519, the proofs' key). `ebox audit verify` recomputes everything, so an edited,
-- deleted, inserted or reordered record is found even when a superuser disabled the triggers.
CREATE TABLE audit_seals (
    seq            bigint PRIMARY KEY,           -- 1, 2, 3 … in sealing order
    sealed_at      timestamptz NOT NULL,
    record_count   integer NOT NULL,
    first_record   bigint NOT NULL,
    last_record    bigint NOT NULL,
    records_sha256 text NOT NULL,                -- hex, over the records' canonical lines
    previous_seal  text NOT NULL,                -- the previous seal's seal_sha256 ('' for seq 1)
    seal_sha256    text NOT NULL,                -- hex, over this seal's canonical JSON
    jws            text NOT NULL                 -- the canonical JSON, signed (compact JWS)
);

-- Which seal covers which record (a record committed late is covered by a later seal).
CREATE TABLE audit_seal_members (
    record_id bigint PRIMARY KEY,
    seal_seq  bigint NOT NULL REFERENCES audit_seals (seq)
);
CREATE INDEX audit_seal_members_seal ON audit_seal_members (seal_seq);

-- Seals are evidence too: never changed, never deleted.
CREATE FUNCTION audit_seals_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_seals_no_change BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_seals_append_only();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seals_append_only();
CREATE TRIGGER audit_seal_members_no_change BEFORE UPDATE OR DELETE ON audit_seal_members
    FOR EACH ROW EXECUTE FUNCTION audit_seals_append_only();
CREATE TRIGGER audit_seal_members_no_truncate BEFORE TRUNCATE ON audit_seal_members
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seals_append_only();
