-- Retention of the status callbacks' outbox (issue #11): the notify process deletes the rows
-- sent longer ago than EBOX_STATUS_CALLBACK_RETENTION_DAYS (docs/operations.md). This index
-- keeps each pass to the rows it deletes, however large the outbox grows.
CREATE INDEX status_callbacks_sent ON status_callbacks (sent_at) WHERE state = 'sent';
