-- Withdrawals (docs/sender-contract.md, "Withdrawing a message"): a sender withdraws a message
-- it published by mistake with an `ebox.withdraw.v1` publication. Intake then, in one
-- transaction, deletes the document (its metadata, every attachment's bytes, its rows in the
-- events outbox and its reminders, by the existing cascades), cancels the notifications not yet
-- sent, moves the message to `withdrawn` (`WITHDRAWN`), audits it (`withdrawn`) and keeps the
-- tombstone below. The `messages` row stays, as for every message: it answers a repeated
-- withdrawal, and a re-publication of the same reference, with `withdrawn`.

-- The tombstone: who withdrew which message, when and why, what it was when it went (still in
-- the pipeline, in the citizen's eBox, read), and the digests of what was removed — never its
-- content (no subject, no body, no file names, no bytes). One per message, written once.
CREATE TABLE withdrawals (
    message_id       uuid PRIMARY KEY REFERENCES messages (id),
    sender_id        text NOT NULL,
    sender_reference text NOT NULL,
    -- The recipient, as the keyed hash of the national number (as messages.citizen).
    citizen          text,
    -- The sender that asked (the authenticated broker user: only a message's own sender can).
    withdrawn_by     text NOT NULL,
    withdrawn_at     timestamptz NOT NULL,
    -- The sender's reason as written (at most 512 characters, no control character), if any.
    reason           text,
    -- The status the withdrawal found.
    status_before    text NOT NULL CHECK (status_before IN ('accepted', 'published', 'read')),
    -- When it had reached the citizen's eBox (NULL: still in the pipeline, never visible).
    receipt_date     timestamptz,
    -- When the citizen had opened it: a withdrawal does not undo a reading.
    read_at          timestamptz,
    -- Per attachment: attachmentId, mediaType, mainContent, size and the SHA-256 digest.
    attachments      jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- How many of the document's events the event engine had already taken (its newDocument,
    -- its readDocument…): the federation's event API has no event for a removed document.
    events_delivered integer NOT NULL DEFAULT 0,
    -- How many notifications not yet sent were cancelled.
    notifications_cancelled integer NOT NULL DEFAULT 0
);
CREATE INDEX withdrawals_sender ON withdrawals (sender_id, withdrawn_at);

-- A tombstone is evidence: the services write it once and never change or remove it. (The
-- default privileges of 20261130000005_least_privilege.sql gave the runtime all four.)
REVOKE UPDATE, DELETE, TRUNCATE ON withdrawals FROM ebox_runtime;

-- A notification of a withdrawn message is cancelled, not sent: a new state beside pending,
-- sent and failed. The dispatcher claims only pending rows and settles only pending rows, so a
-- cancelled one is never sent, and `ebox notifications retry --failed` re-queues only failed
-- ones.
ALTER TABLE notifications DROP CONSTRAINT notifications_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_check
    CHECK (state IN ('pending', 'sent', 'failed', 'cancelled'));
