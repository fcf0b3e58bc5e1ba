-- Reminders and expiry alerts: a document still unread `EBOX_REMINDER_AFTER_DAYS` after its
-- receipt gets a `newDocumentReminder`, and one still unread `EBOX_EXPIRATION_ALERT_DAYS`
-- before its expiration a `documentExpirationAlert`: each an event in the events outbox, a
-- notification on the citizen's channel (unless they opted out) and an audit record, written
-- together by the reminders job of the notify process (docs/operations.md, "Reminders").
--
-- At most once per message and kind: the job inserts the `reminders` row first, in the
-- transaction of its effects, and does nothing more when it was there already (another
-- replica fired it). The row leaves with its document.
--
-- Privileges: the default privileges of 20261130000005_least_privilege.sql give ebox_runtime
-- SELECT, INSERT, UPDATE and DELETE on `reminders`, which the job needs (it inserts; retention
-- deletes by cascade); it is not an audit table.

CREATE TABLE reminders (
    message_id  uuid NOT NULL REFERENCES documents (message_id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('newDocumentReminder', 'documentExpirationAlert')),
    -- The channel the citizen had chosen when it fired (`none`: opted out, or no preference).
    channel     text NOT NULL CHECK (channel IN ('email', 'partner', 'none')),
    -- The scheduler's clock when it fired (the event's `eventTime`).
    fired_at    timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, kind)
);

-- The notification outbox holds one row per message, channel and kind: the `newDocument`
-- notification (every row so far) and, later, its reminder and its expiry alert.
ALTER TABLE notifications
    ADD COLUMN kind text NOT NULL DEFAULT 'newDocument'
        CHECK (kind IN ('newDocument', 'newDocumentReminder', 'documentExpirationAlert'));
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
ALTER TABLE notifications ADD PRIMARY KEY (message_id, channel, kind);

-- The job's look-ups: published documents nobody read yet.
CREATE INDEX documents_unread_receipt ON documents (receipt_date)
    WHERE published AND read_at IS NULL;
CREATE INDEX documents_unread_expiration ON documents (expiration_date)
    WHERE published AND read_at IS NULL;
