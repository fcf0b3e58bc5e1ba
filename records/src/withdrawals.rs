//! Withdrawals (table `withdrawals`): a sender takes back a message it published by mistake.
//!
//! Intake does it in the batch's transaction, with the message's record locked
//! ([`crate::messages::lock`]): [`remove_document`] deletes the document — metadata, every
//! attachment's bytes, its events in the events outbox and its reminders — and says what was
//! removed; [`cancel_notifications`] cancels what the notification outbox had not sent yet;
//! [`record`] keeps the tombstone: who withdrew, when, why, and the digests, never the content.
//! The message's status moves to `withdrawn` ([`crate::messages::withdraw`]).

use crate::documents::{self, AttachmentDigest};
use crate::vocabulary;
use chrono::{DateTime, Utc};
use domain::ids::MessageId;
use domain::status::Status;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// What a withdrawal keeps of a message.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub message_id: MessageId,
    pub sender_id: String,
    pub sender_reference: String,
    /// The recipient's keyed hash, as the message's record has it.
    pub citizen: Option<String>,
    /// The sender that asked.
    pub withdrawn_by: String,
    pub withdrawn_at: DateTime<Utc>,
    pub reason: Option<String>,
    /// `accepted`, `published` or `read`.
    pub status_before: Status,
    /// When the document had reached the citizen's eBox; `None` when it never had.
    pub receipt_date: Option<DateTime<Utc>>,
    /// When the citizen had opened it.
    pub read_at: Option<DateTime<Utc>>,
    /// The removed attachments' ids, media types, sizes and digests.
    pub attachments: serde_json::Value,
    /// The document's events the event engine had already taken.
    pub events_delivered: i32,
    pub notifications_cancelled: i32,
}

impl<'r> sqlx::FromRow<'r, PgRow> for Tombstone {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        use sqlx::Row as _;
        Ok(Self {
            message_id: MessageId::from_uuid(row.try_get::<Uuid, _>("message_id")?),
            sender_id: row.try_get("sender_id")?,
            sender_reference: row.try_get("sender_reference")?,
            citizen: row.try_get("citizen")?,
            withdrawn_by: row.try_get("withdrawn_by")?,
            withdrawn_at: row.try_get("withdrawn_at")?,
            reason: row.try_get("reason")?,
            status_before: vocabulary::decode(
                row.try_get("status_before")?,
                "withdrawals.status_before",
            )?,
            receipt_date: row.try_get("receipt_date")?,
            read_at: row.try_get("read_at")?,
            attachments: row.try_get("attachments")?,
            events_delivered: row.try_get("events_delivered")?,
            notifications_cancelled: row.try_get("notifications_cancelled")?,
        })
    }
}

/// The tombstone of a withdrawn message, if it was withdrawn.
pub async fn find(conn: &mut PgConnection, id: MessageId) -> sqlx::Result<Option<Tombstone>> {
    sqlx::query_as(
        "SELECT message_id, sender_id, sender_reference, citizen, withdrawn_by, withdrawn_at,
                reason, status_before, receipt_date, read_at, attachments, events_delivered,
                notifications_cancelled
           FROM withdrawals WHERE message_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await
}

/// Keeps the tombstone; written once per message (a second one is a unique violation: the
/// caller holds the message's lock and withdraws only what is not withdrawn yet).
pub async fn record(conn: &mut PgConnection, tombstone: &Tombstone) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO withdrawals (message_id, sender_id, sender_reference, citizen, withdrawn_by,
                                  withdrawn_at, reason, status_before, receipt_date, read_at,
                                  attachments, events_delivered, notifications_cancelled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(tombstone.message_id.as_uuid())
    .bind(&tombstone.sender_id)
    .bind(&tombstone.sender_reference)
    .bind(&tombstone.citizen)
    .bind(&tombstone.withdrawn_by)
    .bind(tombstone.withdrawn_at)
    .bind(&tombstone.reason)
    .bind(tombstone.status_before.as_str())
    .bind(tombstone.receipt_date)
    .bind(tombstone.read_at)
    .bind(&tombstone.attachments)
    .bind(tombstone.events_delivered)
    .bind(tombstone.notifications_cancelled)
    .execute(conn)
    .await?;
    Ok(())
}

/// What [`remove_document`] took away.
#[derive(Debug, Clone)]
pub struct Removed {
    /// When the document had reached the citizen's eBox (`None`: it was still unpublished).
    pub receipt_date: Option<DateTime<Utc>>,
    /// When the citizen had opened it, as committed when the deletion ran.
    pub read_at: Option<DateTime<Utc>>,
    pub attachments: Vec<AttachmentDigest>,
    /// How many of its events the event engine had already taken.
    pub events_delivered: i32,
}

impl Removed {
    /// The attachments as the tombstone and the audit keep them: no file name, no bytes.
    pub fn attachment_digests(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.attachments
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "attachmentId": a.attachment_id,
                        "mediaType": a.media_type,
                        "mainContent": a.main_content,
                        "size": a.size,
                        "digest": {"digestMethod": "sha_256", "digestValue": a.sha256.to_base64url()},
                    })
                })
                .collect(),
        )
    }
}

/// Deletes the document of `id`, published or not, with its attachments' bytes, its events in
/// the events outbox (delivered or not: the document they describe is gone) and its reminders;
/// `None` when there was no document (nothing is then deleted).
///
/// A read mark committing meanwhile holds the document's row: the deletion waits for it and
/// reports the `read_at` it committed, so a reading is never lost from the tombstone.
pub async fn remove_document(
    conn: &mut PgConnection,
    id: MessageId,
) -> sqlx::Result<Option<Removed>> {
    let attachments = documents::digests(conn, id).await?;
    let events_delivered: i64 = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM event_outbox WHERE message_id = $1 RETURNING delivered_at)
         SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) FROM gone",
    )
    .bind(id.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    // The attachments, the reminders and any event recorded since leave by cascade.
    type Dates = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let deleted: Option<Dates> = sqlx::query_as(
        "DELETE FROM documents WHERE message_id = $1 RETURNING receipt_date, read_at",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(deleted.map(|(receipt_date, read_at)| Removed {
        receipt_date,
        read_at,
        attachments,
        events_delivered: i32::try_from(events_delivered).unwrap_or(i32::MAX),
    }))
}

/// Cancels the message's notifications not yet sent (pending, or abandoned and waiting for
/// `ebox notifications retry --failed`), of every kind — `newDocument`, its reminder, its expiry
/// alert — and erases their partner payload, which names the citizen; returns how many. The
/// dispatcher claims and settles only pending rows (`notify::outbox`), so a cancelled one is
/// never sent; one it is sending at this very moment may still leave.
pub async fn cancel_notifications(conn: &mut PgConnection, id: MessageId) -> sqlx::Result<i32> {
    let cancelled = sqlx::query(
        "UPDATE notifications SET state = 'cancelled', payload = '{}'::jsonb, leased_until = NULL
          WHERE message_id = $1 AND state IN ('pending', 'failed')",
    )
    .bind(id.as_uuid())
    .execute(conn)
    .await?;
    Ok(i32::try_from(cancelled.rows_affected()).unwrap_or(i32::MAX))
}
