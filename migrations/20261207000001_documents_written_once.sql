-- Documents written once, by intake, in the transaction that accepts the message; the later
-- stages act on what is recorded, never on what arrives on their queue (docs/pipeline.md,
-- "Recorded state, not messages"). Between stages travels only the message id and its
-- recipient, which each stage checks against the recipient intake recorded.

-- The recipient intake accepted (the keyed hash of the national number), kept with the
-- message for as long as the message's record: every stage checks a hand-off against it,
-- also after the document itself is gone.
ALTER TABLE messages ADD COLUMN citizen text;
UPDATE messages m SET citizen = d.citizen FROM documents d WHERE d.message_id = m.id;

-- A document is written unpublished (invisible to the citizen) and published by store once
-- consent is confirmed: only then does it get its receipt date and event sequence number.
-- Rows that exist are published.
ALTER TABLE documents
    ADD COLUMN published boolean NOT NULL DEFAULT true,
    ALTER COLUMN receipt_date DROP NOT NULL,
    ALTER COLUMN event_sequence_nbr DROP NOT NULL;
ALTER TABLE documents ALTER COLUMN published SET DEFAULT false;
ALTER TABLE documents ADD CONSTRAINT documents_published_has_receipt
    CHECK (published = (receipt_date IS NOT NULL AND event_sequence_nbr IS NOT NULL));

-- Reads the read-receipt stage has not yet confirmed to the sender (its recovery pass).
CREATE INDEX documents_read_unconfirmed ON documents (read_at) WHERE read_at IS NOT NULL;
