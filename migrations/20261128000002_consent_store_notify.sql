-- Consent and notification preferences of citizens, the stored documents, stage progress and
-- the notification outbox. Citizens are identified everywhere by the keyed hash of their
-- national number (`citizen`), never by the number itself.

-- Every consent change ever received; the current state is the change with the latest `at`, so
-- updates arriving out of order are safe, and the state at any past moment can be told.
CREATE TABLE consent_changes (
    id          bigserial PRIMARY KEY,
    citizen     text NOT NULL,
    consent     text NOT NULL CHECK (consent IN ('granted', 'withdrawn')),
    at          timestamptz NOT NULL,
    source      text NOT NULL,          -- portal (the consent-updates queue) or cli
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (citizen, at, consent)       -- a redelivered update is recorded once
);
CREATE INDEX consent_changes_latest ON consent_changes (citizen, at DESC, id DESC);

-- The notification preference of a citizen; the latest `at` wins.
CREATE TABLE citizen_preferences (
    citizen    text PRIMARY KEY,
    language   text NOT NULL CHECK (language IN ('nl', 'fr', 'de')),
    channel    text NOT NULL CHECK (channel IN ('email', 'partner', 'none')),
    email      text,
    partner_id text,
    at         timestamptz NOT NULL,
    CHECK (channel <> 'email' OR email IS NOT NULL),
    CHECK (channel <> 'partner' OR partner_id IS NOT NULL)
);

-- Service providers' interfaces (partner apps) a citizen may choose, from the registry file.
-- The secret itself is never stored: `secret_env` names the environment variable holding it.
CREATE TABLE partners (
    id          text PRIMARY KEY,
    name        jsonb NOT NULL,
    webhook_url text NOT NULL,
    secret_env  text NOT NULL,
    active      boolean NOT NULL DEFAULT true
);

-- What a stage decided for a message, so that a redelivery replays the same decision instead of
-- deciding again (the consent may have changed in between).
CREATE TABLE stage_decisions (
    message_id uuid NOT NULL REFERENCES messages (id),
    stage      text NOT NULL,
    decision   text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    decided_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, stage)
);

CREATE SEQUENCE event_sequence_nbr;

-- A message kept in a citizen's eBox until its expiration date.
CREATE TABLE documents (
    message_id             uuid PRIMARY KEY REFERENCES messages (id),
    sender_id              text NOT NULL,
    sender_reference       text NOT NULL,
    citizen                text NOT NULL,
    sender_organization_id text NOT NULL,
    sender_application_id  text,
    message_type_id        text NOT NULL,
    subject                jsonb NOT NULL,
    body_main_content      boolean NOT NULL,
    body_content           jsonb,
    reply_authorized       boolean NOT NULL,
    registered_mail        boolean NOT NULL,
    business_data_list     jsonb,
    payment_data           jsonb,
    for_the_attention_of   jsonb,
    original_message_id    text,
    receipt_date           timestamptz NOT NULL,
    expiration_date        timestamptz NOT NULL,
    event_sequence_nbr     bigint NOT NULL,
    read_at                timestamptz,
    visible                boolean NOT NULL DEFAULT true,
    UNIQUE (sender_id, sender_reference)
);
CREATE INDEX documents_citizen ON documents (citizen, receipt_date DESC);
CREATE INDEX documents_expiration ON documents (expiration_date);

CREATE TABLE document_attachments (
    message_id       uuid NOT NULL REFERENCES documents (message_id) ON DELETE CASCADE,
    attachment_id    uuid NOT NULL,
    position         integer NOT NULL,
    file_name        text NOT NULL,
    media_type       text NOT NULL,
    main_content     boolean NOT NULL,
    attachment_title jsonb,
    attachment_signed boolean NOT NULL,
    size             bigint NOT NULL,
    sha256           bytea NOT NULL,
    content          bytea NOT NULL,
    PRIMARY KEY (message_id, attachment_id),
    UNIQUE (message_id, position)
);

-- The notification outbox: the intent is recorded with the decision, a dispatcher sends it and
-- marks it sent. At most one row per message and channel.
CREATE TABLE notifications (
    message_id      uuid NOT NULL REFERENCES messages (id),
    channel         text NOT NULL CHECK (channel IN ('email', 'partner')),
    citizen         text NOT NULL,
    idempotency_key uuid NOT NULL UNIQUE,
    target          text NOT NULL,     -- the e-mail address or the partner id
    language        text NOT NULL,
    payload         jsonb NOT NULL,    -- the newDocument event, for the partner
    state           text NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    PRIMARY KEY (message_id, channel)
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
