-- What the Message Registry contract lets a sender organisation and an application show the
-- citizen besides their names (`ebox registry load` writes it from the registry file): a long
-- name, a URL, helpdesk contacts, and logos, whose bytes the API serves.

ALTER TABLE senders
    ADD COLUMN long_name         jsonb,   -- TranslatedString: organizationLongName
    ADD COLUMN url               jsonb,   -- TranslatedString: organizationUrl
    ADD COLUMN contact_business  text,
    ADD COLUMN contact_technical text;

ALTER TABLE sender_applications
    ADD COLUMN description       jsonb,   -- TranslatedString: applicationDescription
    ADD COLUMN url               jsonb,   -- TranslatedString: applicationUrl
    ADD COLUMN contact_business  text,
    ADD COLUMN contact_technical text;

-- A sender's logos (organizationLogos), replaced on each load. A withdrawn sender's stay: its
-- reference data is still shown while its documents are (`reference_senders` below).
CREATE TABLE sender_logos (
    sender_id  text NOT NULL REFERENCES senders (id),
    image_id   text NOT NULL,
    position   integer NOT NULL,                  -- the registry file's order
    media_type text NOT NULL CHECK (media_type IN ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml')),
    language   text CHECK (language IN ('nl', 'fr', 'de')),
    sha256     bytea NOT NULL,                    -- of content: the ETag
    content    bytea NOT NULL,
    PRIMARY KEY (sender_id, image_id)
);

-- An application's logos (applicationLogos), replaced with the sender's applications.
CREATE TABLE application_logos (
    sender_id      text NOT NULL,
    application_id text NOT NULL,
    image_id       text NOT NULL,
    position       integer NOT NULL,
    media_type     text NOT NULL CHECK (media_type IN ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml')),
    language       text CHECK (language IN ('nl', 'fr', 'de')),
    sha256         bytea NOT NULL,
    content        bytea NOT NULL,
    PRIMARY KEY (sender_id, application_id, image_id),
    FOREIGN KEY (sender_id, application_id) REFERENCES sender_applications (sender_id, id)
);

-- The senders whose reference data the API shows: those the registry lists, and those it no
-- longer lists (withdrawn: `active` false, they may not publish) while a document of theirs is
-- still in a citizen's eBox, so that the portal can still name the sender of a message the
-- citizen can open. Retention deletes expired documents, so the look-up finds a live one
-- first (the (sender_id, sender_reference) index).
CREATE VIEW reference_senders AS
    SELECT s.*
      FROM senders s
     WHERE s.active
        OR EXISTS (SELECT FROM documents d
                    WHERE d.sender_id = s.id AND d.expiration_date > now());
