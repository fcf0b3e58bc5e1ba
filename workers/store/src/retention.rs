//! Retention: a document is kept until the expiration date its sender chose, then deleted
//! (the agreement's C.10), and the sender hears `expired`.
//!
//! Every store replica runs a sweeper; `FOR UPDATE SKIP LOCKED` gives each expired document to
//! one of them. The `expired` status is published (with confirms) *before* the deletion is
//! committed: a crash in between publishes it again at the next sweep, never loses it. A status
//! the broker refuses (the sender's queue was deleted) is logged and the document deleted all
//! the same.

use chrono::{DateTime, SubsecRound as _, Utc};
use common::audit::AuditEvent;
use common::status::{Code, Status, StatusEvent};
use queues::Publisher;
use queues::status::status_message;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

pub const EXPIRED_MESSAGE: &str =
    "the message reached its expiration date and was deleted from the citizen's eBox";
/// Documents deleted per transaction.
const BATCH: i64 = 100;

#[derive(sqlx::FromRow)]
struct Expired {
    message_id: Uuid,
    sender_id: String,
    sender_reference: String,
    correlation_id: Option<String>,
    expiration_date: DateTime<Utc>,
    citizen: String,
}

/// Sweeps every `interval` until `shutdown`; a sweep in progress always finishes.
pub async fn run(pool: PgPool, amqp_url: String, interval: Duration, shutdown: CancellationToken) {
    let mut publisher: Option<Publisher> = None;
    loop {
        if publisher.is_none() {
            publisher = match open(&amqp_url).await {
                Ok(p) => Some(p),
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "retention sweeper cannot reach the broker"
                    );
                    None
                }
            };
        }
        if let Some(p) = &publisher
            && let Err(e) = sweep(&pool, p).await
        {
            warn!(
                error = format!("{e:#}"),
                "retention sweep failed; retrying later"
            );
            publisher = None;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn open(amqp_url: &str) -> anyhow::Result<Publisher> {
    let connection = queues::driver::connect(amqp_url, "ebox store retention").await?;
    Ok(Publisher::open(&connection).await?)
}

/// Deletes every document past its expiration date; returns how many.
pub async fn sweep(pool: &PgPool, publisher: &Publisher) -> anyhow::Result<usize> {
    let mut deleted = 0;
    loop {
        let mut tx = pool.begin().await?;
        let expired: Vec<Expired> = sqlx::query_as(
            "SELECT d.message_id, d.sender_id, d.sender_reference, m.correlation_id,
                    d.expiration_date, d.citizen
               FROM documents d JOIN messages m ON m.id = d.message_id
              WHERE d.expiration_date <= now()
              ORDER BY d.expiration_date
              LIMIT $1
                FOR UPDATE OF d SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if expired.is_empty() {
            tx.commit().await?;
            return Ok(deleted);
        }
        let now = Utc::now().trunc_subsecs(6);
        let statuses = expired
            .iter()
            .map(|e| {
                let event = StatusEvent {
                    sender_reference: Some(e.sender_reference.clone()),
                    message_id: Some(e.message_id),
                    status: Status::Expired,
                    code: Code::Expired.as_str().to_owned(),
                    message: EXPIRED_MESSAGE.to_owned(),
                    at: now,
                    expiration_date: Some(e.expiration_date),
                    read_at: None,
                    correlation_id: e.correlation_id.clone(),
                };
                status_message(&e.sender_id, &event)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A refused status (the sender's queue is gone) must not stop the deletions of
        // everyone else: C.10 comes first. A broken connection aborts the sweep.
        for status in &statuses {
            if let Err(error) = publisher.publish_all(std::slice::from_ref(status)).await {
                if let queues::publisher::PublishError::Broker(_) = error {
                    return Err(error.into());
                }
                warn!(error = %error, routing_key = status.routing_key, "expired status refused; deleting anyway");
            }
        }

        let ids: Vec<Uuid> = expired.iter().map(|e| e.message_id).collect();
        sqlx::query("DELETE FROM documents WHERE message_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE messages SET status = $2, status_code = $3, status_message = $4, status_at = $5
              WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(Status::Expired.as_str())
        .bind(Code::Expired.as_str())
        .bind(EXPIRED_MESSAGE)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for e in &expired {
            let mut audit = AuditEvent::new("store", "deleted");
            audit.code = Some(Code::Expired.as_str().to_owned());
            audit.sender_id = Some(e.sender_id.clone());
            audit.message_id = Some(e.message_id);
            audit.sender_reference = Some(e.sender_reference.clone());
            audit.ssin_hash = Some(e.citizen.clone());
            audit.details = serde_json::json!({"expirationDate": e.expiration_date});
            audit.record(&mut tx).await?;
        }
        tx.commit().await?;
        deleted += expired.len();
        info!(count = expired.len(), "expired documents deleted");
    }
}
