-- The federation's events (`newDocument`, `readDocument`) in a transactional outbox: each is
-- written in the transaction of its cause — store's publication of a document, the API's read
-- mark — so that an event exists exactly when its cause committed. The event relay pushes them
-- to the event engine (`ebox worker event-relay`); the API serves them as a feed
-- (`GET /ebox/citizen/document/events`). docs/pipeline.md, "The federation's events".
--
-- Sequence numbers (`eventSequenceNbr`) are gap-free in commit order: a row is written without
-- one, and numbered only after its transaction committed, by one sequencer at a time (a
-- transaction-scoped advisory lock), from the high-water mark kept in `event_outbox_sequence`
-- (never from max(sequence_nbr): rows leave with their document, and a number is never given
-- twice). A reader paging with `lastSequenceNbr` therefore never skips an event that
-- committed late: it gets the next number when it commits.
--
-- The event names the citizen by national number (the federation needs it, and the database
-- keeps it nowhere else but in pending partner notifications): a row lives as long as its
-- document and leaves with it when retention deletes the expired document (C.10).
--
-- Privileges: the default privileges of 20261130000005_least_privilege.sql give ebox_runtime
-- SELECT, INSERT, UPDATE and DELETE on both tables, which the services need (the sequencer and
-- the relay update rows, `ebox events retry` too); neither is an audit table.

CREATE TABLE event_outbox (
    -- Insertion order: numbers follow it among rows numbered by the same sequencer pass.
    id               bigserial PRIMARY KEY,
    -- eventSequenceNbr: NULL until the sequencer numbers the committed row.
    sequence_nbr     bigint UNIQUE,
    -- eventCorrelationId: stable (derived from the event type and the message id), so an
    -- event is recorded once however often its cause is replayed.
    correlation_id   uuid NOT NULL UNIQUE,
    event_type       text NOT NULL,
    message_id       uuid NOT NULL REFERENCES documents (message_id) ON DELETE CASCADE,
    event_time       timestamptz NOT NULL,
    provider_id      text NOT NULL,
    -- The EboxCitizenDocumentEvent as the federation receives it (api/openapi.yaml).
    event_data       jsonb NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    numbered_at      timestamptz,
    -- Push: when the event engine took it (2xx, or 409: it already had it).
    delivered_at     timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    -- Push: refused for good (400): kept for the operators (`ebox events parked|retry`), and
    -- the later events of the same message wait behind it.
    parked_at        timestamptz,
    parked_reason    text,
    CHECK (sequence_nbr IS NOT NULL OR delivered_at IS NULL)
);

-- The sequencer's work, the relay's work, the cascade from documents.
CREATE INDEX event_outbox_unnumbered ON event_outbox (id) WHERE sequence_nbr IS NULL;
CREATE INDEX event_outbox_undelivered ON event_outbox (sequence_nbr)
    WHERE delivered_at IS NULL AND parked_at IS NULL;
CREATE INDEX event_outbox_parked ON event_outbox (message_id, sequence_nbr)
    WHERE parked_at IS NOT NULL;
CREATE INDEX event_outbox_message ON event_outbox (message_id);

-- Wakes the event relay (LISTEN ebox_event_outbox) when a transaction that recorded events
-- commits; PostgreSQL folds a transaction's repeats into one notification.
CREATE FUNCTION event_outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ebox_event_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER event_outbox_wake AFTER INSERT ON event_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_wake();

-- The last sequence number given: one row, moved only by the sequencer.
CREATE TABLE event_outbox_sequence (
    only_row          boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_sequence_nbr bigint NOT NULL CHECK (last_sequence_nbr >= 0)
);
INSERT INTO event_outbox_sequence (only_row, last_sequence_nbr) VALUES (true, 0);
