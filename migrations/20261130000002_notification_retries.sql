-- Notification retries are bounded by time, not by a count of attempts: a notification is
-- retried until its retry window — from `retry_from`, for the dispatcher's
-- EBOX_NOTIFY_RETRY_FOR — has closed, so that a relay or a partner down for hours loses nothing.
-- `retry_from` is when the notification was queued, or re-queued by `ebox notifications retry`.
ALTER TABLE notifications ADD COLUMN retry_from timestamptz NOT NULL DEFAULT now();
UPDATE notifications SET retry_from = created_at WHERE state = 'pending';

-- The end of the lease a dispatcher's claim holds, cleared when it settles: `ebox notifications
-- retry` makes waiting notifications due now, never one being sent (that would let a second
-- dispatcher send it side by side).
ALTER TABLE notifications ADD COLUMN leased_until timestamptz;

-- Abandoned notifications, for `ebox notifications retry --failed [--since T]`.
CREATE INDEX notifications_failed ON notifications (created_at) WHERE state = 'failed';
