//! The record of accepted messages (table `messages`): one row per (sender, reference), with
//! the status the sender last heard. Intake creates it; each later stage moves the status on.

use crate::vocabulary;
use chrono::{DateTime, Utc};
use domain::citizen::CitizenKey;
use domain::ids::{MessageId, SenderId, SenderReference};
use domain::publication::Publication;
use domain::status::{Code, Status, StatusEvent};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub id: MessageId,
    pub sender_id: String,
    pub sender_reference: String,
    /// The recipient intake accepted, as the keyed hash of their national number (absent only
    /// for messages accepted before it was kept).
    pub citizen: Option<String>,
    pub content_sha256: Vec<u8>,
    pub correlation_id: Option<String>,
    pub expiration_date: DateTime<Utc>,
    pub status: Status,
    pub status_code: Code,
    pub status_message: String,
    pub status_at: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
    pub proof_of_deposit: Option<String>,
    pub proof_of_reading: Option<String>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for MessageRecord {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        use sqlx::Row as _;
        Ok(Self {
            id: MessageId::from_uuid(row.try_get::<Uuid, _>("id")?),
            sender_id: row.try_get("sender_id")?,
            sender_reference: row.try_get("sender_reference")?,
            citizen: row.try_get("citizen")?,
            content_sha256: row.try_get("content_sha256")?,
            correlation_id: row.try_get("correlation_id")?,
            expiration_date: row.try_get("expiration_date")?,
            status: vocabulary::decode(row.try_get("status")?, "messages.status")?,
            status_code: vocabulary::decode(row.try_get("status_code")?, "messages.status_code")?,
            status_message: row.try_get("status_message")?,
            status_at: row.try_get("status_at")?,
            accepted_at: row.try_get("accepted_at")?,
            proof_of_deposit: row.try_get("proof_of_deposit")?,
            proof_of_reading: row.try_get("proof_of_reading")?,
        })
    }
}

impl MessageRecord {
    /// The status event that tells the sender where this message stands now.
    pub fn current_status(&self, correlation_id: Option<String>) -> StatusEvent {
        StatusEvent {
            sender_reference: Some(self.sender_reference.clone()),
            message_id: Some(self.id),
            status: self.status,
            code: self.status_code,
            message: self.status_message.clone(),
            at: self.status_at,
            expiration_date: Some(self.expiration_date),
            read_at: None,
            correlation_id: correlation_id.or_else(|| self.correlation_id.clone()),
            proof_of_deposit: self.proof_of_deposit.clone(),
            proof_of_reading: self.proof_of_reading.clone(),
        }
    }
}

const COLUMNS: &str = "id, sender_id, sender_reference, citizen, content_sha256, correlation_id,
                       expiration_date, status, status_code, status_message, status_at,
                       accepted_at, proof_of_deposit, proof_of_reading";

pub async fn find(conn: &mut PgConnection, id: MessageId) -> sqlx::Result<Option<MessageRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM messages WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await
}

/// The record, locked (`FOR UPDATE`) until the transaction ends: what a stage reads before it
/// moves the message on, so that a withdrawal ([`withdraw`]) and a stage's decision about the
/// same message take turns, each seeing what the other committed.
pub async fn lock(conn: &mut PgConnection, id: MessageId) -> sqlx::Result<Option<MessageRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM messages WHERE id = $1 FOR UPDATE"
    )))
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await
}

pub const ACCEPTED_MESSAGE: &str = "the message is valid and goes on to delivery";

/// Records an accepted message for `citizen`; `false` when a message with this id was already there (a
/// concurrent duplicate), in which case nothing changed.
pub async fn insert_accepted(
    conn: &mut PgConnection,
    publication: &Publication,
    citizen: &CitizenKey,
    content_sha256: &[u8],
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO messages (id, sender_id, sender_reference, content_sha256, correlation_id,
                               expiration_date, status, status_code, status_message, status_at,
                               accepted_at, citizen)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)
         ON CONFLICT DO NOTHING",
    )
    .bind(publication.message_id.as_uuid())
    .bind(publication.sender_id.as_str())
    .bind(publication.sender_reference.as_str())
    .bind(content_sha256)
    .bind(&publication.correlation_id)
    .bind(publication.expiration_date)
    .bind(Status::Accepted.as_str())
    .bind(Code::Accepted.as_str())
    .bind(ACCEPTED_MESSAGE)
    .bind(publication.accepted_at)
    .bind(citizen.as_str())
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The order statuses move in; a status never moves back (a late replay cannot turn `expired`
/// into `published`).
const RANK: &str =
    "CASE {} WHEN 'accepted' THEN 0 WHEN 'published' THEN 1 WHEN 'no-digital-user' THEN 1
                    WHEN 'read' THEN 2 WHEN 'expired' THEN 3 WHEN 'failed' THEN 3
                    WHEN 'withdrawn' THEN 4 ELSE 0 END";

/// Moves the sender-visible status forward (never back); returns the record when it moved.
pub async fn set_status(
    conn: &mut PgConnection,
    id: MessageId,
    status: Status,
    code: Code,
    message: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<MessageRecord>> {
    let sql = format!(
        "UPDATE messages SET status = $2, status_code = $3, status_message = $4, status_at = $5
         WHERE id = $1 AND {} < {}
         RETURNING {COLUMNS}",
        RANK.replace("{}", "status"),
        RANK.replace("{}", "$2"),
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .bind(status.as_str())
        .bind(code.as_str())
        .bind(message)
        .bind(at)
        .fetch_optional(conn)
        .await
}

/// Moves a message still at `accepted` to `failed` (`TECHNICAL_ERROR`): a stage gave up on
/// it. A message past `accepted` was delivered and keeps its status. Returns the record when
/// it moved.
pub async fn fail(
    conn: &mut PgConnection,
    id: MessageId,
    message: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<MessageRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE messages SET status = $2, status_code = $3, status_message = $4, status_at = $5
          WHERE id = $1 AND status = $6
          RETURNING {COLUMNS}"
    )))
    .bind(id.as_uuid())
    .bind(Status::Failed.as_str())
    .bind(Code::TechnicalError.as_str())
    .bind(message)
    .bind(at)
    .bind(Status::Accepted.as_str())
    .fetch_optional(conn)
    .await
}

/// The statuses a sender may withdraw a message from: it is in the citizen's eBox, or still
/// on its way there.
pub const WITHDRAWABLE: [Status; 3] = [Status::Accepted, Status::Published, Status::Read];

/// Moves a message at `accepted`, `published` or `read` to `withdrawn` (`WITHDRAWN`); returns
/// the record when it moved. Any other status is kept: a message that never reached the
/// citizen, or already left their eBox, has nothing to withdraw.
pub async fn withdraw(
    conn: &mut PgConnection,
    id: MessageId,
    message: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<MessageRecord>> {
    let from: Vec<&str> = WITHDRAWABLE.iter().map(|s| s.as_str()).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE messages SET status = $2, status_code = $3, status_message = $4, status_at = $5
          WHERE id = $1 AND status = ANY($6)
          RETURNING {COLUMNS}"
    )))
    .bind(id.as_uuid())
    .bind(Status::Withdrawn.as_str())
    .bind(Code::Withdrawn.as_str())
    .bind(message)
    .bind(at)
    .bind(&from)
    .fetch_optional(conn)
    .await
}

/// Moves every message in `ids` to `status` at once (retention's `expired`).
pub async fn set_status_of_all(
    conn: &mut PgConnection,
    ids: &[MessageId],
    status: Status,
    code: Code,
    message: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = ids.iter().map(MessageId::as_uuid).collect();
    sqlx::query(
        "UPDATE messages SET status = $2, status_code = $3, status_message = $4, status_at = $5
          WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(status.as_str())
    .bind(code.as_str())
    .bind(message)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The parsed sender id and reference of a record, as intake wrote them.
impl MessageRecord {
    pub fn sender(&self) -> Option<(SenderId, SenderReference)> {
        Some((
            SenderId::parse(&self.sender_id).ok()?,
            SenderReference::parse(&self.sender_reference).ok()?,
        ))
    }
}

/// Messages still at `accepted` since before `older_than` ago: how many, and since when the
/// oldest. A message normally leaves `accepted` within a second; one that does not is stuck
/// somewhere (a stage down, a queue not consumed).
pub async fn stuck(
    conn: &mut PgConnection,
    older_than: std::time::Duration,
) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        "SELECT count(*), min(status_at) FROM messages
          WHERE status = $1 AND status_at < now() - $2",
    )
    .bind(Status::Accepted.as_str())
    .bind(older_than)
    .fetch_one(conn)
    .await
}

/// Keeps the proof of deposit (stored) with the message.
pub async fn set_proof_of_deposit(
    conn: &mut PgConnection,
    id: MessageId,
    proof: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET proof_of_deposit = $2 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(proof)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the proof of reading with the message.
pub async fn set_proof_of_reading(
    conn: &mut PgConnection,
    id: MessageId,
    proof: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET proof_of_reading = $2 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(proof)
        .execute(conn)
        .await?;
    Ok(())
}
