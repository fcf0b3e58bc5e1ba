//! The `notifications` outbox: at most one row per (message, channel, kind), written by the
//! notify handler in the batch's transaction (`newDocument`) or by the reminders job
//! ([`crate::reminders`]: `newDocumentReminder`, `documentExpirationAlert`), claimed and
//! settled by the dispatcher, re-queued by `ebox notifications retry`.
//!
//! A row is retried until its *retry window* closes: the window opens at `retry_from` (when the
//! row was queued or last re-queued) and lasts the dispatcher's `retry_for`. The window is
//! computed here, in SQL, from the database's clock, so a test moves `retry_from` back rather
//! than waiting.

use crate::notifier::Notification;
use chrono::{DateTime, Utc};
use domain::citizen::{ChannelKind, CitizenKey};
use domain::events::EventType;
use domain::ids::MessageId;
use domain::translated::Language;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use std::time::Duration;
use uuid::Uuid;

/// The PostgreSQL notification channel that wakes the dispatcher.
pub const WAKE_CHANNEL: &str = "ebox_notifications";

/// What the handler queues.
pub struct NewNotification<'a> {
    pub message_id: MessageId,
    pub channel: ChannelKind,
    pub kind: EventType,
    pub citizen: &'a CitizenKey,
    pub idempotency_key: Uuid,
    pub target: &'a str,
    pub language: Language,
    pub payload: serde_json::Value,
}

/// Queues a notification (nothing if one exists for the message, channel and kind) and wakes
/// the dispatchers once the transaction commits.
pub async fn queue(conn: &mut PgConnection, new: NewNotification<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notifications (message_id, channel, citizen, idempotency_key, target,
                                    language, payload, state, kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)
         ON CONFLICT (message_id, channel, kind) DO NOTHING",
    )
    .bind(new.message_id.as_uuid())
    .bind(new.channel.as_str())
    .bind(new.citizen.as_str())
    .bind(new.idempotency_key)
    .bind(new.target)
    .bind(new.language.code())
    .bind(&new.payload)
    .bind(new.kind.as_str())
    .execute(&mut *conn)
    .await?;
    wake(conn).await
}

/// Wakes the dispatchers when the transaction commits.
pub async fn wake(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// The outbox's backlog: how many notifications are pending (not yet sent nor abandoned), and
/// since when the oldest of them waits (when it was queued, or last re-queued).
pub async fn backlog(conn: &mut PgConnection) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query_as("SELECT count(*), min(retry_from) FROM notifications WHERE state = 'pending'")
        .fetch_one(conn)
        .await
}

/// The lease a claim takes: a dispatcher that dies mid-send leaves the row to be retried when
/// it ends. A send times out after 30 s, well within it.
const LEASE: &str = "2 minutes";

/// A notification a dispatcher claimed.
pub struct Claimed {
    pub notification: Notification,
    /// Its retry window had closed when it was claimed: if this attempt fails, it is abandoned.
    pub window_closed: bool,
}

/// Claims up to `limit` due rows: counts an attempt and pushes `next_attempt_at` past the
/// lease (recorded in `leased_until`), so no other dispatcher takes them meanwhile. Says for
/// each whether its retry window, `retry_for` from its `retry_from`, has closed.
pub async fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    retry_for: Duration,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications n
            SET attempts = n.attempts + 1, next_attempt_at = now() + interval '{LEASE}',
                leased_until = now() + interval '{LEASE}'
           FROM (SELECT idempotency_key FROM notifications
                  WHERE state = 'pending' AND next_attempt_at <= now()
                  ORDER BY next_attempt_at LIMIT $1
                  FOR UPDATE SKIP LOCKED) due
          WHERE n.idempotency_key = due.idempotency_key
      RETURNING n.message_id, n.channel, n.kind, n.citizen, n.idempotency_key, n.target,
                n.language, n.payload, n.attempts, n.retry_from + $2 <= now() AS window_closed"
    )))
    .bind(limit)
    .bind(retry_for)
    .try_map(|row: PgRow| {
        Ok(Claimed {
            notification: notification(&row)?,
            window_closed: row.try_get("window_closed")?,
        })
    })
    .fetch_all(conn)
    .await
}

fn notification(row: &PgRow) -> sqlx::Result<Notification> {
    let channel: String = row.try_get("channel")?;
    let language: String = row.try_get("language")?;
    let kind: String = row.try_get("kind")?;
    Ok(Notification {
        message_id: MessageId::from_uuid(row.try_get("message_id")?),
        channel: records::vocabulary::decode(&channel, "notifications.channel")?,
        kind: records::vocabulary::decode(&kind, "notifications.kind")?,
        citizen: CitizenKey::from_stored(row.try_get("citizen")?),
        idempotency_key: row.try_get("idempotency_key")?,
        target: row.try_get("target")?,
        language: Language::ALL
            .into_iter()
            .find(|l| l.code() == language)
            .unwrap_or(Language::Nl),
        payload: row.try_get("payload")?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
    })
}

/// How a claimed notification ends this attempt.
pub enum Settlement<'a> {
    Sent,
    Retry { after: Duration, error: &'a str },
    Failed { error: &'a str },
}

/// Settles a claim; `false` when the claim is no longer this dispatcher's (the lease ran out
/// and another one took the row: its word counts). Sending erases the partner payload, which
/// names the citizen; abandoning keeps it, so that `ebox notifications retry --failed` can send
/// the notification again.
pub async fn settle(
    conn: &mut PgConnection,
    notification: &Notification,
    settlement: Settlement<'_>,
) -> sqlx::Result<bool> {
    // The idempotency key names one row (one message, channel and kind).
    let claim =
        "WHERE idempotency_key = $1 AND channel = $2 AND state = 'pending' AND attempts = $3";
    let sql = match settlement {
        Settlement::Sent => format!(
            "UPDATE notifications SET state = 'sent', sent_at = now(), last_error = NULL,
                    payload = '{{}}'::jsonb, leased_until = NULL {claim}"
        ),
        Settlement::Failed { .. } => format!(
            "UPDATE notifications SET state = 'failed', last_error = $4, leased_until = NULL
              {claim}"
        ),
        Settlement::Retry { .. } => format!(
            "UPDATE notifications SET last_error = $4, next_attempt_at = now() + $5,
                    leased_until = NULL {claim}"
        ),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(notification.idempotency_key)
        .bind(notification.channel.as_str())
        .bind(i32::try_from(notification.attempts).unwrap_or(i32::MAX));
    match settlement {
        Settlement::Sent => {}
        Settlement::Failed { error } => query = query.bind(error.to_owned()),
        Settlement::Retry { after, error } => query = query.bind(error.to_owned()).bind(after),
    }
    let updated = query.execute(conn).await?;
    Ok(updated.rows_affected() == 1)
}

/// What `ebox notifications retry` re-queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Pending notifications waiting out their back-off: due now. Their retry window stays.
    Waiting,
    /// Abandoned notifications: pending again, due now, with a fresh retry window.
    Abandoned,
}

/// A notification `requeue` made due.
pub struct Requeued {
    pub message_id: MessageId,
    pub channel: ChannelKind,
    pub citizen: CitizenKey,
    pub idempotency_key: Uuid,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The partner notifications abandoned before abandoning kept the payload: nothing to send.
const PAYLOAD_ERASED: &str = "channel = 'partner' AND payload = '{}'::jsonb";

/// Makes `which` notifications, created at or after `since`, due now; returns them. A row a
/// dispatcher is sending (its lease runs) is left alone, as is an abandoned partner
/// notification whose payload was erased (see [`unsendable`]). Wake the dispatchers after.
pub async fn requeue(
    conn: &mut PgConnection,
    which: Requeue,
    since: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<Requeued>> {
    let (set, selected) = match which {
        Requeue::Waiting => (
            "next_attempt_at = now()",
            "state = 'pending' AND next_attempt_at > now() AND leased_until IS NULL".to_owned(),
        ),
        Requeue::Abandoned => (
            "state = 'pending', next_attempt_at = now(), retry_from = now()",
            format!("state = 'failed' AND NOT ({PAYLOAD_ERASED})"),
        ),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications SET {set}
          WHERE {selected} AND ($1::timestamptz IS NULL OR created_at >= $1)
      RETURNING message_id, channel, citizen, idempotency_key, attempts, last_error"
    )))
    .bind(since)
    .try_map(|row: PgRow| {
        let channel: String = row.try_get("channel")?;
        Ok(Requeued {
            message_id: MessageId::from_uuid(row.try_get("message_id")?),
            channel: records::vocabulary::decode(&channel, "notifications.channel")?,
            citizen: CitizenKey::from_stored(row.try_get("citizen")?),
            idempotency_key: row.try_get("idempotency_key")?,
            attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
            last_error: row.try_get("last_error")?,
        })
    })
    .fetch_all(conn)
    .await
}

/// How many abandoned notifications, created at or after `since`, cannot be sent again: partner
/// notifications abandoned before abandoning kept their payload (the event they must carry).
pub async fn unsendable(
    conn: &mut PgConnection,
    since: Option<DateTime<Utc>>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM notifications
          WHERE state = 'failed' AND {PAYLOAD_ERASED}
            AND ($1::timestamptz IS NULL OR created_at >= $1)"
    )))
    .bind(since)
    .fetch_one(conn)
    .await
}
