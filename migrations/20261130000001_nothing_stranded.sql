-- Messages a stage committed the effects of but the broker would not take (a sender's status
-- queue deleted or full, a queue leader failing over, an unconfirmed publish), parked so the
-- batch can be acknowledged and the stage go on for everyone else. A background job in every
-- worker process publishes them again until the broker confirms, then deletes them.
CREATE TABLE parked_publishes (
    id              bigserial PRIMARY KEY,
    exchange        text NOT NULL,
    routing_key     text NOT NULL,
    kind            text NOT NULL,          -- the AMQP type
    message_id      text NOT NULL,          -- the AMQP message_id
    correlation_id  text,
    made_at         bigint NOT NULL,        -- the AMQP timestamp (Unix seconds)
    body            bytea NOT NULL,
    parked_by       text NOT NULL,          -- the queue whose stage parked it
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_publishes_due ON parked_publishes (next_attempt_at);

-- Messages still at `accepted`, for the stuck-message check (a small partial index: a message
-- normally leaves `accepted` within a second).
CREATE INDEX messages_unsettled ON messages (status_at) WHERE status = 'accepted';
