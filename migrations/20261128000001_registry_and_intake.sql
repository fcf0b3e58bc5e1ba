-- Reference data (loaded by `ebox registry load`), the intake record of accepted messages, and
-- the append-only audit trail.

CREATE TABLE senders (
    id              text PRIMARY KEY,              -- the sender's broker user name
    organization_id text NOT NULL,                 -- CBE number
    name            jsonb NOT NULL,                -- TranslatedString
    active          boolean NOT NULL DEFAULT true, -- false once it left the registry file
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sender_applications (
    sender_id  text NOT NULL REFERENCES senders (id),
    id         text NOT NULL,
    name       jsonb NOT NULL,
    PRIMARY KEY (sender_id, id)
);

CREATE TABLE message_types (
    id              text PRIMARY KEY,
    name            jsonb NOT NULL,
    description     jsonb,
    validity_number integer NOT NULL CHECK (validity_number > 0),
    validity_unit   text NOT NULL CHECK (validity_unit IN ('day', 'month', 'year')),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sender_message_types (
    sender_id       text NOT NULL REFERENCES senders (id),
    message_type_id text NOT NULL REFERENCES message_types (id),
    PRIMARY KEY (sender_id, message_type_id)
);

-- One row per accepted message; the sender-visible status lives here and every later stage
-- moves it forward. The primary key is the UUIDv5 of (sender, reference), and the unique
-- constraint states the same rule in the sender's words.
CREATE TABLE messages (
    id               uuid PRIMARY KEY,
    sender_id        text NOT NULL REFERENCES senders (id),
    sender_reference text NOT NULL,
    content_sha256   bytea NOT NULL,
    correlation_id   text,
    expiration_date  timestamptz NOT NULL,
    status           text NOT NULL,
    status_code      text NOT NULL,
    status_message   text NOT NULL,
    status_at        timestamptz NOT NULL DEFAULT now(),
    accepted_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sender_id, sender_reference)
);

-- The audit trail: every provision and consultation, kept at least ten years from the 1 January
-- after the action (the federation's rule), never modified, never deleted before then.
CREATE TABLE audit_events (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    retain_until     date NOT NULL,
    stage            text NOT NULL,   -- intake, consent-check, store, notify, read-receipt, api
    action           text NOT NULL,   -- accepted, rejected, dead-lettered, ...
    code             text,            -- the stable code given to the sender, if any
    sender_id        text,
    message_id       uuid,
    sender_reference text,
    ssin_hash        text,            -- HMAC-SHA256 of the national number, never the number
    details          jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_events_message_id ON audit_events (message_id);
CREATE INDEX audit_events_ssin_hash ON audit_events (ssin_hash);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE FUNCTION audit_events_retain_until() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.retain_until := make_date(extract(year FROM NEW.at AT TIME ZONE 'Europe/Brussels')::int + 11, 1, 1);
    RETURN NEW;
END $$;

CREATE TRIGGER audit_events_retain_until BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_retain_until();

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.retain_until <= current_date THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_early_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
