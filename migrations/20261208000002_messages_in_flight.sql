-- Each sender's messages in flight (issue #10, fairness): intake counts, once per batch, the
-- messages of the batch's senders that were accepted and have no final status yet, and takes
-- no more from a sender's lane past EBOX_INTAKE_IN_FLIGHT_PER_SENDER. A partial index: it
-- holds only the messages still in the pipeline, however many a sender has.
CREATE INDEX messages_in_flight ON messages (sender_id) WHERE status = 'accepted';
