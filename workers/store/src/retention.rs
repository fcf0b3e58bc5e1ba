//! Retention: a document is kept until the expiration date its sender chose, then deleted
//! (the agreement's C.10), and the sender hears `expired`.
//!
//! Every store replica runs a sweeper; `FOR UPDATE SKIP LOCKED` gives each expired document to
//! one of them. The `expired` status is published (with confirms) *before* the deletion is
//! committed: a crash in between publishes it again at the next sweep, never loses it. A status
//! the broker refuses (the sender's queue was deleted) is logged and the document deleted all
//! the same.

use chrono::{DateTime, SubsecRound as _, Utc};
use domain::audit::{Action, Stage};
use domain::citizen::CitizenKey;
use domain::ids::MessageId;
use domain::status::{Code, Status, StatusEvent};
use queues::Publisher;
use queues::publisher::PublishError;
use queues::status::status_message;
use records::audit::AuditEvent;
use records::messages;
use runtime::jobs::{Job, Pass};
use sqlx::{PgConnection, PgPool};
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

/// The retention job: every pass deletes what has expired (see [`sweep`]).
pub struct Sweeper {
    pool: PgPool,
    amqp_url: String,
    /// Opened on the first pass and after a broker fault.
    publisher: Option<Publisher>,
}

impl Sweeper {
    pub fn new(pool: PgPool, amqp_url: String) -> Self {
        Self {
            pool,
            amqp_url,
            publisher: None,
        }
    }
}

impl Job for Sweeper {
    fn name(&self) -> &'static str {
        "retention"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let publisher = match self.publisher.take() {
            Some(publisher) => publisher,
            None => {
                let connection =
                    queues::driver::connect(&self.amqp_url, "ebox store retention").await?;
                Publisher::open(&connection).await?
            }
        };
        // A fault drops the publisher, so the next pass reconnects.
        sweep(&self.pool, &publisher).await?;
        self.publisher = Some(publisher);
        Ok(Pass::Idle)
    }
}

/// Deletes every document past its expiration date; returns how many.
pub async fn sweep(pool: &PgPool, publisher: &Publisher) -> anyhow::Result<usize> {
    let mut deleted = 0;
    loop {
        let mut tx = pool.begin().await?;
        let expired = lock_expired(&mut tx).await?;
        if expired.is_empty() {
            tx.commit().await?;
            return Ok(deleted);
        }
        let now = Utc::now().trunc_subsecs(6);
        tell_senders(publisher, &expired, now).await?;
        delete(&mut tx, &expired, now).await?;
        tx.commit().await?;
        deleted += expired.len();
        info!(count = expired.len(), "expired documents deleted");
    }
}

/// The next expired documents, locked so that other sweepers skip them.
async fn lock_expired(conn: &mut PgConnection) -> sqlx::Result<Vec<Expired>> {
    sqlx::query_as(
        "SELECT d.message_id, d.sender_id, d.sender_reference, m.correlation_id,
                d.expiration_date, d.citizen
           FROM documents d JOIN messages m ON m.id = d.message_id
          WHERE d.expiration_date <= now()
          ORDER BY d.expiration_date
          LIMIT $1
            FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(conn)
    .await
}

/// Publishes each sender's `expired` status (confirmed) before the deletion commits.
///
/// A refused status (the sender's queue is gone) must not stop the deletions of everyone
/// else: C.10 comes first. A broken connection aborts the sweep.
async fn tell_senders(
    publisher: &Publisher,
    expired: &[Expired],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for e in expired {
        let event = StatusEvent {
            sender_reference: Some(e.sender_reference.clone()),
            message_id: Some(MessageId::from_uuid(e.message_id)),
            status: Status::Expired,
            code: Code::Expired,
            message: EXPIRED_MESSAGE.to_owned(),
            at: now,
            expiration_date: Some(e.expiration_date),
            read_at: None,
            correlation_id: e.correlation_id.clone(),
            proof_of_deposit: None,
            proof_of_reading: None,
        };
        let status = status_message(&e.sender_id, &event)?;
        if let Err(error) = publisher.publish_all(std::slice::from_ref(&status)).await {
            if let PublishError::Broker(_) = error {
                return Err(error.into());
            }
            warn!(error = %error, routing_key = status.routing_key, "expired status refused; deleting anyway");
        }
    }
    Ok(())
}

/// Deletes the documents with their bytes, moves their status to `expired`, and audits.
async fn delete(
    conn: &mut PgConnection,
    expired: &[Expired],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = expired.iter().map(|e| e.message_id).collect();
    sqlx::query("DELETE FROM documents WHERE message_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let message_ids: Vec<MessageId> = ids.iter().copied().map(MessageId::from_uuid).collect();
    messages::set_status_of_all(
        conn,
        &message_ids,
        Status::Expired,
        Code::Expired,
        EXPIRED_MESSAGE,
        now,
    )
    .await?;
    for e in expired {
        let mut audit = AuditEvent::new(Stage::Store, Action::Deleted);
        audit.code = Some(Code::Expired);
        audit.sender_id = Some(e.sender_id.clone());
        audit.message_id = Some(MessageId::from_uuid(e.message_id));
        audit.sender_reference = Some(e.sender_reference.clone());
        audit.ssin_hash = Some(CitizenKey::from_stored(e.citizen.clone()));
        audit.details = serde_json::json!({"expirationDate": e.expiration_date});
        audit.record(conn).await?;
    }
    Ok(())
}
