-- Status callbacks (issue #11): a sender may ask for its status events to be POSTed to an
-- HTTPS endpoint of its own, in addition to its status queue, signed like the partners'
-- webhooks (docs/sender-contract.md, "Status callbacks").

-- Where, and with which secret (the variable that holds it, named EBOX_PARTNER_<NAME>_SECRET).
ALTER TABLE senders
    ADD COLUMN status_webhook_url text,
    ADD COLUMN status_secret_env  text,
    ADD CONSTRAINT senders_status_webhook_signed
        CHECK ((status_webhook_url IS NULL) = (status_secret_env IS NULL));

-- The callbacks' outbox: one row per status event to call back, written by the
-- status-callbacks stage (queue `ebox.status-callbacks`), sent and settled by its dispatcher in
-- the notify process. The idempotency key is derived from (sender, messageId or sender
-- reference, status): a redelivered status event finds its row and adds none, and the
-- endpoint gets the same `Idempotency-Key` on every attempt. No foreign key to `messages`: a
-- publication rejected before it had a message id is called back too.
CREATE TABLE status_callbacks (
    idempotency_key  uuid PRIMARY KEY,
    sender_id        text NOT NULL REFERENCES senders (id),
    message_id       uuid,
    sender_reference text,
    status           text NOT NULL,
    -- The status event's bytes exactly as published on `ebox.status`: the request's body
    -- (not jsonb, which would reorder it). Emptied once sent.
    body             bytea NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,
    -- The retry window (EBOX_NOTIFY_RETRY_FOR) opens here: when queued, or re-queued.
    retry_from       timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX status_callbacks_due ON status_callbacks (next_attempt_at) WHERE state = 'pending';
