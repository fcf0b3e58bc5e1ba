//! The record of accepted messages (table `messages`): one row per (sender, reference), with
//! the status the sender last heard. Intake creates it; each later stage moves the status on.

use crate::publication::Publication;
use crate::status::{Code, Status, StatusEvent};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRecord {
    pub id: Uuid,
    pub sender_id: String,
    pub sender_reference: String,
    pub content_sha256: Vec<u8>,
    pub correlation_id: Option<String>,
    pub expiration_date: DateTime<Utc>,
    pub status: String,
    pub status_code: String,
    pub status_message: String,
    pub status_at: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
}

impl MessageRecord {
    /// The status event that tells the sender where this message stands now.
    pub fn current_status(&self, correlation_id: Option<String>) -> StatusEvent {
        StatusEvent {
            sender_reference: Some(self.sender_reference.clone()),
            message_id: Some(self.id),
            status: Status::parse(&self.status).unwrap_or(Status::Accepted),
            code: self.status_code.clone(),
            message: self.status_message.clone(),
            at: self.status_at,
            expiration_date: Some(self.expiration_date),
            read_at: None,
            correlation_id: correlation_id.or_else(|| self.correlation_id.clone()),
        }
    }
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<MessageRecord>> {
    sqlx::query_as(
        "SELECT id, sender_id, sender_reference, content_sha256, correlation_id, expiration_date,
                status, status_code, status_message, status_at, accepted_at
         FROM messages WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub const ACCEPTED_MESSAGE: &str = "the message is valid and goes on to delivery";

/// Records an accepted message; `false` when a message with this id was already there (a
/// concurrent duplicate), in which case nothing changed.
pub async fn insert_accepted(
    conn: &mut PgConnection,
    publication: &Publication,
    content_sha256: &[u8],
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO messages (id, sender_id, sender_reference, content_sha256, correlation_id,
                               expiration_date, status, status_code, status_message, status_at,
                               accepted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT DO NOTHING",
    )
    .bind(publication.message_id)
    .bind(&publication.sender_id)
    .bind(&publication.sender_reference)
    .bind(content_sha256)
    .bind(&publication.correlation_id)
    .bind(publication.expiration_date)
    .bind(Status::Accepted.as_str())
    .bind(Code::Accepted.as_str())
    .bind(ACCEPTED_MESSAGE)
    .bind(publication.accepted_at)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The order statuses move in; a status never moves back (a late replay cannot turn `expired`
/// into `published`).
const RANK: &str =
    "CASE {} WHEN 'accepted' THEN 0 WHEN 'published' THEN 1 WHEN 'no-digital-user' THEN 1
                    WHEN 'read' THEN 2 WHEN 'expired' THEN 3 WHEN 'failed' THEN 3 ELSE 0 END";

/// Moves the sender-visible status forward (never back); returns the record when it moved.
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: Status,
    code: Code,
    message: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<MessageRecord>> {
    let sql = format!(
        "UPDATE messages SET status = $2, status_code = $3, status_message = $4, status_at = $5
         WHERE id = $1 AND {} < {}
         RETURNING id, sender_id, sender_reference, content_sha256, correlation_id, expiration_date,
                   status, status_code, status_message, status_at, accepted_at",
        RANK.replace("{}", "status"),
        RANK.replace("{}", "$2"),
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(status.as_str())
        .bind(code.as_str())
        .bind(message)
        .bind(at)
        .fetch_optional(conn)
        .await
}
