-- Sender limits and lanes (issue #9): each sender may have a limit on the publications intake
-- takes per second and on their bytes per day (the registry file's `limits`); over one, intake
-- waits before it takes more from the sender's lane, and nothing is refused
-- (docs/operations.md, "Sender lanes and limits").

ALTER TABLE senders
    ADD COLUMN messages_per_second integer CHECK (messages_per_second > 0),
    ADD COLUMN bytes_per_day       bigint  CHECK (bytes_per_day > 0);

-- What each limited sender has used, shared by every intake replica: one row per sender,
-- charged once per batch.
--   paced_until: the pace (the generic cell rate algorithm's theoretical arrival time): each
--                publication taken moves it 1/messages_per_second later, from now when it is
--                past; a sender whose pace is more than a second ahead waits until it is not.
--   day, bytes:  the bytes taken on that UTC day; past bytes_per_day, the lane waits for the
--                next day.
CREATE TABLE sender_usage (
    sender_id   text PRIMARY KEY REFERENCES senders (id),
    paced_until timestamptz NOT NULL,
    day         date NOT NULL,
    bytes       bigint NOT NULL CHECK (bytes >= 0)
);
