//! The `notifications` outbox: at most one row per (message, channel), written by the notify
//! handler in the batch's transaction, claimed and settled by the dispatcher.

use crate::notifier::Notification;
use domain::citizen::{ChannelKind, CitizenKey};
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
    pub citizen: &'a CitizenKey,
    pub idempotency_key: Uuid,
    pub target: &'a str,
    pub language: Language,
    pub payload: serde_json::Value,
}

/// Queues a notification (nothing if one exists for the message and channel) and wakes the
/// dispatchers once the transaction commits.
pub async fn queue(conn: &mut PgConnection, new: NewNotification<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notifications (message_id, channel, citizen, idempotency_key, target,
                                    language, payload, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')
         ON CONFLICT (message_id, channel) DO NOTHING",
    )
    .bind(new.message_id.as_uuid())
    .bind(new.channel.as_str())
    .bind(new.citizen.as_str())
    .bind(new.idempotency_key)
    .bind(new.target)
    .bind(new.language.code())
    .bind(&new.payload)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The lease a claim takes: a dispatcher that dies mid-send leaves the row to be retried when
/// it ends. A send times out after 30 s, well within it.
const LEASE: &str = "2 minutes";

/// Claims up to `limit` due rows: counts an attempt and pushes `next_attempt_at` past the
/// lease, so no other dispatcher takes them meanwhile.
pub async fn claim_due(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Notification>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications n
            SET attempts = n.attempts + 1, next_attempt_at = now() + interval '{LEASE}'
           FROM (SELECT message_id, channel FROM notifications
                  WHERE state = 'pending' AND next_attempt_at <= now()
                  ORDER BY next_attempt_at LIMIT $1
                  FOR UPDATE SKIP LOCKED) due
          WHERE n.message_id = due.message_id AND n.channel = due.channel
      RETURNING n.message_id, n.channel, n.citizen, n.idempotency_key, n.target,
                n.language, n.payload, n.attempts"
    )))
    .bind(limit)
    .try_map(|row: PgRow| notification(&row))
    .fetch_all(conn)
    .await
}

fn notification(row: &PgRow) -> sqlx::Result<Notification> {
    let channel: String = row.try_get("channel")?;
    let language: String = row.try_get("language")?;
    Ok(Notification {
        message_id: MessageId::from_uuid(row.try_get("message_id")?),
        channel: records::vocabulary::decode(&channel, "notifications.channel")?,
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
/// and another one took the row: its word counts). A final settlement erases the partner
/// payload, which names the citizen.
pub async fn settle(
    conn: &mut PgConnection,
    notification: &Notification,
    settlement: Settlement<'_>,
) -> sqlx::Result<bool> {
    let claim = "WHERE message_id = $1 AND channel = $2 AND state = 'pending' AND attempts = $3";
    let sql = match settlement {
        Settlement::Sent => format!(
            "UPDATE notifications SET state = 'sent', sent_at = now(), last_error = NULL,
                    payload = '{{}}'::jsonb {claim}"
        ),
        Settlement::Failed { .. } => format!(
            "UPDATE notifications SET state = 'failed', last_error = $4, payload = '{{}}'::jsonb
              {claim}"
        ),
        Settlement::Retry { .. } => format!(
            "UPDATE notifications SET last_error = $4, next_attempt_at = now() + $5 {claim}"
        ),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(notification.message_id.as_uuid())
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
