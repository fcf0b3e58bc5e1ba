//! The audit seals' records (`audit_seals`, `audit_seal_members`) and the canonical lines of
//! the audit records they cover. The lines are made by PostgreSQL, so that the sealer and
//! `ebox audit verify` read them the same way, whatever the session's time zone.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};
use std::time::Duration;

/// One audit record as a JSON array: id, time (Unix microseconds), retention date, stage,
/// action, code, sender, message id, sender reference, citizen hash, details.
const CANONICAL_LINE: &str = "jsonb_build_array(e.id, (extract(epoch FROM e.at) * 1000000)::bigint,
    e.retain_until::text, e.stage, e.action, e.code, e.sender_id, e.message_id::text,
    e.sender_reference, e.ssin_hash, e.details)::text";

/// Only one sealer at a time: seals form one chain.
const SEALING_LOCK: i64 = 0x6562_6f78_7365_616c; // "eboxseal"

/// A stored seal.
#[derive(Debug, Clone)]
pub struct SealRow {
    pub seq: i64,
    pub sealed_at: DateTime<Utc>,
    pub record_count: i32,
    pub first_record: i64,
    pub last_record: i64,
    pub records_sha256: String,
    pub previous_seal: String,
    pub seal_sha256: String,
    pub jws: String,
}

/// Takes the sealing lock for this transaction; `false` when another sealer holds it.
pub async fn lock_sealing(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SEALING_LOCK)
        .fetch_one(conn)
        .await
}

/// The newest seal, if any.
pub async fn last_seal(conn: &mut PgConnection) -> sqlx::Result<Option<SealRow>> {
    let rows = select_seals(conn, "ORDER BY seq DESC LIMIT 1").await?;
    Ok(rows.into_iter().next())
}

/// Every seal, in order.
pub async fn all_seals(conn: &mut PgConnection) -> sqlx::Result<Vec<SealRow>> {
    select_seals(conn, "ORDER BY seq").await
}

async fn select_seals(conn: &mut PgConnection, tail: &str) -> sqlx::Result<Vec<SealRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT seq, sealed_at, record_count, first_record, last_record, records_sha256,
                previous_seal, seal_sha256, jws
           FROM audit_seals {tail}"
    )))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SealRow {
                seq: row.try_get("seq")?,
                sealed_at: row.try_get("sealed_at")?,
                record_count: row.try_get("record_count")?,
                first_record: row.try_get("first_record")?,
                last_record: row.try_get("last_record")?,
                records_sha256: row.try_get("records_sha256")?,
                previous_seal: row.try_get("previous_seal")?,
                seal_sha256: row.try_get("seal_sha256")?,
                jws: row.try_get("jws")?,
            })
        })
        .collect()
}

/// Records no seal covers yet, older than `settle` (so that the transactions writing records
/// now have committed), in id order, at most `limit`. Only ids above `floor` are looked at (a
/// record commits at most a few seconds after its id was taken).
pub async fn unsealed(
    conn: &mut PgConnection,
    floor: i64,
    settle: Duration,
    limit: i64,
) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT e.id, {CANONICAL_LINE} FROM audit_events e
          WHERE e.id > $1 AND e.at < now() - $2
            AND NOT EXISTS (SELECT 1 FROM audit_seal_members m WHERE m.record_id = e.id)
          ORDER BY e.id LIMIT $3"
    )))
    .bind(floor)
    .bind(settle)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Stores a seal and the records it covers.
pub async fn insert_seal(
    conn: &mut PgConnection,
    seal: &SealRow,
    record_ids: &[i64],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_seals (seq, sealed_at, record_count, first_record, last_record,
             records_sha256, previous_seal, seal_sha256, jws)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(seal.seq)
    .bind(seal.sealed_at)
    .bind(seal.record_count)
    .bind(seal.first_record)
    .bind(seal.last_record)
    .bind(&seal.records_sha256)
    .bind(&seal.previous_seal)
    .bind(&seal.seal_sha256)
    .bind(&seal.jws)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO audit_seal_members (record_id, seal_seq) SELECT unnest($1::bigint[]), $2",
    )
    .bind(record_ids)
    .bind(seal.seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// The records a seal covers, in id order: (id, canonical line), the line `None` when the
/// record is gone.
pub async fn member_lines(
    conn: &mut PgConnection,
    seq: i64,
) -> sqlx::Result<Vec<(i64, Option<String>)>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT m.record_id, CASE WHEN e.id IS NULL THEN NULL ELSE {CANONICAL_LINE} END
           FROM audit_seal_members m LEFT JOIN audit_events e ON e.id = m.record_id
          WHERE m.seal_seq = $1 ORDER BY m.record_id"
    )))
    .bind(seq)
    .fetch_all(conn)
    .await
}

/// Records older than `grace` that no seal covers: inserted behind the sealer's back (or the
/// sealer has not run).
pub async fn unsealed_older_than(
    conn: &mut PgConnection,
    grace: Duration,
    period: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT e.id FROM audit_events e
          WHERE e.at < now() - $1
            AND ($2::timestamptz IS NULL OR e.at >= $2)
            AND ($3::timestamptz IS NULL OR e.at < $3)
            AND NOT EXISTS (SELECT 1 FROM audit_seal_members m WHERE m.record_id = e.id)
          ORDER BY e.id LIMIT 100",
    )
    .bind(grace)
    .bind(period.0)
    .bind(period.1)
    .fetch_all(conn)
    .await
}

/// One line of a message's journey.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TraceRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub stage: String,
    pub action: String,
    pub code: Option<String>,
    pub sender_id: Option<String>,
    pub message_id: Option<uuid::Uuid>,
    pub sender_reference: Option<String>,
    pub details: serde_json::Value,
    pub seal: Option<i64>,
}

/// Every record about a message (by its id, or by sender and reference), in order.
pub async fn trace(
    conn: &mut PgConnection,
    message_id: Option<uuid::Uuid>,
    sender_reference: Option<(&str, &str)>,
) -> sqlx::Result<Vec<TraceRow>> {
    let (sender, reference) = sender_reference.unzip();
    // Records written before or without the reference (notify, read-receipt, the API) name the
    // message by its id: find it from the reference.
    let message_id = match (message_id, sender_reference) {
        (Some(id), _) => Some(id),
        (None, Some((sender, reference))) => {
            sqlx::query_scalar(
                "SELECT id FROM messages WHERE sender_id = $1 AND sender_reference = $2",
            )
            .bind(sender)
            .bind(reference)
            .fetch_optional(&mut *conn)
            .await?
        }
        (None, None) => None,
    };
    sqlx::query_as(
        "SELECT e.id, e.at, e.stage, e.action, e.code, e.sender_id, e.message_id,
                e.sender_reference, e.details, m.seal_seq AS seal
           FROM audit_events e LEFT JOIN audit_seal_members m ON m.record_id = e.id
          WHERE e.message_id = $1 OR (e.sender_id = $2 AND e.sender_reference = $3)
          ORDER BY e.id",
    )
    .bind(message_id)
    .bind(sender)
    .bind(reference)
    .fetch_all(conn)
    .await
}

/// One audit record as exported: every column, and the seal that covers it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub retain_until: chrono::NaiveDate,
    pub stage: String,
    pub action: String,
    pub code: Option<String>,
    pub sender_id: Option<String>,
    pub message_id: Option<uuid::Uuid>,
    pub sender_reference: Option<String>,
    pub ssin_hash: Option<String>,
    pub details: serde_json::Value,
    pub seal: Option<i64>,
}

/// The records of `from <= at < to`, in id order, limited to one sender's when `sender` is
/// given (its records, and every record about one of its messages).
pub async fn export(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sender: Option<&str>,
) -> sqlx::Result<Vec<ExportRow>> {
    sqlx::query_as(
        "SELECT e.id, e.at, e.retain_until, e.stage, e.action, e.code, e.sender_id, e.message_id,
                e.sender_reference, e.ssin_hash, e.details, m.seal_seq AS seal
           FROM audit_events e LEFT JOIN audit_seal_members m ON m.record_id = e.id
          WHERE e.at >= $1 AND e.at < $2
            AND ($3::text IS NULL OR e.sender_id = $3
                 OR e.message_id IN (SELECT id FROM messages WHERE sender_id = $3))
          ORDER BY e.id",
    )
    .bind(from)
    .bind(to)
    .bind(sender)
    .fetch_all(conn)
    .await
}

/// The last seal whose records were purged (0 when none were).
pub async fn purged_up_to(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(up_to_seal), 0) FROM audit_purges")
        .fetch_one(conn)
        .await
}

/// Deletes the records of the oldest seals whose every record is past its retention date,
/// and records the purge; returns (up to which seal, how many records). Runs as the owner:
/// the services may not delete audit records.
pub async fn purge_expired(conn: &mut PgConnection) -> sqlx::Result<(i64, u64)> {
    let already = purged_up_to(conn).await?;
    // The first seal after the last purge that still covers a record in its retention period
    // bounds the purge: seals are purged whole and in order.
    let up_to: i64 = sqlx::query_scalar(
        "SELECT coalesce(min(m.seal_seq) - 1, (SELECT coalesce(max(seq), 0) FROM audit_seals))
           FROM audit_seal_members m JOIN audit_events e ON e.id = m.record_id
          WHERE m.seal_seq > $1 AND e.retain_until > current_date",
    )
    .bind(already)
    .fetch_one(&mut *conn)
    .await?;
    if up_to <= already {
        return Ok((already, 0));
    }
    let deleted = sqlx::query(
        "DELETE FROM audit_events e USING audit_seal_members m
          WHERE m.record_id = e.id AND m.seal_seq > $1 AND m.seal_seq <= $2",
    )
    .bind(already)
    .bind(up_to)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("INSERT INTO audit_purges (up_to_seal, records) VALUES ($1, $2)")
        .bind(up_to)
        .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
        .execute(conn)
        .await?;
    Ok((up_to, deleted))
}
