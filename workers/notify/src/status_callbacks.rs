//! Status callbacks: a sender that asked for them (the registry's `statusWebhookUrl`) also gets
//! each of its status events POSTed to its endpoint, signed like the partners' webhooks
//! ([`crate::webhook`]), retried like the notifications (docs/sender-contract.md, "Status
//! callbacks"). Its status queue is unchanged: the callbacks are in addition.
//!
//! Two halves, as for the notifications, so that a callback is never lost nor made twice by a
//! redelivery:
//!
//! - [`StatusCallbacks`], a handler on `ebox.status-callbacks` (bound to `<sender>.#` on
//!   `ebox.status` for each sender with a status webhook), records the status event to call
//!   back — a row of the `status_callbacks` outbox whose key is derived from (sender, messageId
//!   or sender reference, status), so that a redelivered or re-published event adds none — with
//!   its audit slice, in the batch's transaction. A sender without a status webhook: acked,
//!   nothing recorded.
//! - [`CallbackDispatcher`], a background job beside the notification dispatcher, POSTs the
//!   event's bytes exactly as they were published, with the partners' signature headers and an
//!   `Idempotency-Key`, and marks the row sent; a failure is retried with the notifications'
//!   back-off ([`crate::dispatcher::retry_delay`]) for `EBOX_NOTIFY_RETRY_FOR`, then abandoned
//!   (audited) until `ebox notifications retry --failed`.
//!
//! [`retention`] deletes the rows sent longer ago than `EBOX_STATUS_CALLBACK_RETENTION_DAYS`.
//! Each step is counted (`ebox_status_callbacks_total`) and the dispatcher measures the
//! outbox's backlog (`ebox_status_callback_outbox_pending`,
//! `ebox_status_callback_outbox_oldest_seconds`).
//!
//! The one window left, as for a partner: a crash after the POST and before it is marked sent
//! repeats it when its lease ends; the endpoint drops the repeat by its `Idempotency-Key`.

pub mod retention;

use crate::dispatcher::{POLL, listen, retry_delay};
use crate::outbox::WAKE_CHANNEL;
use crate::webhook;
use domain::audit::{Action, Stage};
use domain::ids::MessageId;
use domain::status::StatusEvent;
use queues::topology::STATUS_CALLBACKS_QUEUE;
use queues::{Handler, HandlerError, Incoming, Outcome, Raw, ResultExt};
use records::audit::AuditEvent;
use runtime::internal_events::{
    CallbackBacklog, CallbackResult, StatusCallbackQueued, StatusCallbackSettled,
};
use runtime::jobs::{Job, Pass};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgConnection, PgPool, Row as _};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use uuid::Uuid;

const STAGE: Stage = Stage::StatusCallbacks;

/// The namespace of the callbacks' idempotency keys (a UUIDv5 of
/// `<sender>/<messageId or ref:reference>/<status>`).
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x8f3c_1d2e_5b6a_4c7d_9e0f_1a2b_3c4d_5e6f);

/// The handler on `ebox.status-callbacks`.
#[derive(Debug, Default)]
pub struct StatusCallbacks;

impl Handler for StatusCallbacks {
    /// The bytes themselves: they are the callback's body.
    type Message = Raw;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        STATUS_CALLBACKS_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        _: Raw,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        // Routed `<sender>.<status>` by our own stages: only they may write `ebox.status`.
        let Some((sender_id, _)) = incoming.routing_key.split_once('.') else {
            return Ok(Outcome::ack(Vec::new()));
        };
        if records::registry::find_status_webhook(conn, sender_id)
            .await?
            .is_none()
        {
            return Ok(Outcome::ack(Vec::new()));
        }
        let event: StatusEvent = serde_json::from_slice(incoming.body).permanent()?;
        let fallback = incoming
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned());
        let key = idempotency_key(sender_id, &event, fallback.as_deref());
        if queue(conn, key, sender_id, &event, incoming.body).await? {
            let mut audit = AuditEvent::new(STAGE, Action::StatusCallbackQueued);
            audit.sender_id = Some(sender_id.to_owned());
            audit.message_id = event.message_id;
            audit.sender_reference = event.sender_reference.clone();
            audit.details = serde_json::json!({
                "status": event.status,
                "idempotencyKey": key,
            });
            audit.record(conn).await?;
            StatusCallbackQueued {
                sender_id,
                key: &key.to_string(),
                status: event.status.as_str(),
            }
            .emit();
        } else {
            info!(%key, "status callback already queued");
        }
        Ok(Outcome::ack(Vec::new()))
    }
}

/// The same for every copy of one status event: the sender deduplicates the queue's events on
/// (`messageId`, `status`), and the callbacks are deduplicated on the same, or on the sender's
/// reference when the publication was rejected before it had a message id (or, with neither,
/// on the event's AMQP id, the same on a redelivery).
pub fn idempotency_key(sender_id: &str, event: &StatusEvent, fallback: Option<&str>) -> Uuid {
    let subject = match (&event.message_id, &event.sender_reference, fallback) {
        (Some(message_id), _, _) => message_id.to_string(),
        (None, Some(reference), _) => format!("ref:{reference}"),
        (None, None, Some(amqp_id)) => format!("amqp:{amqp_id}"),
        (None, None, None) => "none".to_owned(),
    };
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("{sender_id}/{subject}/{}", event.status.as_str()).as_bytes(),
    )
}

/// Records the callback (nothing if its key is there); `true` when it is new. Wakes the
/// dispatchers once the transaction commits.
async fn queue(
    conn: &mut PgConnection,
    key: Uuid,
    sender_id: &str,
    event: &StatusEvent,
    body: &[u8],
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO status_callbacks (idempotency_key, sender_id, message_id, sender_reference,
                                       status, body, state)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending')
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(sender_id)
    .bind(event.message_id.map(|id| id.as_uuid()))
    .bind(event.sender_reference.as_deref())
    .bind(event.status.as_str())
    .bind(body)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        crate::outbox::wake(conn).await?;
    }
    Ok(inserted)
}

/// The lease a claim takes, as for notifications.
const LEASE: &str = "2 minutes";

/// A callback a dispatcher claimed.
#[derive(Debug)]
struct Claimed {
    key: Uuid,
    sender_id: String,
    message_id: Option<MessageId>,
    sender_reference: Option<String>,
    status: String,
    body: Vec<u8>,
    attempts: i32,
    window_closed: bool,
    /// The sender's webhook and secret's name now (the registry may have changed).
    url: Option<String>,
    secret_env: Option<String>,
}

/// POSTs the recorded status events to their senders' webhooks; a background job of the
/// notify process.
pub struct CallbackDispatcher {
    pool: PgPool,
    http: reqwest::Client,
    /// Secrets by variable name (the registry's `statusSecretEnv`).
    secrets: HashMap<String, String>,
    retry_for: Duration,
    listener: Option<PgListener>,
    listen_tried: bool,
    /// When the outbox's backlog was last measured: at most once every [`POLL`].
    measured_at: Option<Instant>,
}

impl CallbackDispatcher {
    pub fn new(
        pool: PgPool,
        secrets: HashMap<String, String>,
        retry_for: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            http: webhook::client()?,
            secrets,
            retry_for,
            listener: None,
            listen_tried: false,
            measured_at: None,
        })
    }

    /// Exports the outbox's backlog (`ebox_status_callback_outbox_pending`,
    /// `ebox_status_callback_outbox_oldest_seconds`), when it was not measured within [`POLL`].
    async fn measure_backlog(&mut self) -> anyhow::Result<()> {
        if self.measured_at.is_some_and(|at| at.elapsed() < POLL) {
            return Ok(());
        }
        let (pending, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            "SELECT count(*), min(retry_from) FROM status_callbacks WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        let oldest = oldest
            .and_then(|since| (chrono::Utc::now() - since).to_std().ok())
            .unwrap_or_default();
        CallbackBacklog { pending, oldest }.emit();
        self.measured_at = Some(Instant::now());
        Ok(())
    }

    /// Claims one due callback, sends it and settles it; whether there was one.
    pub async fn dispatch_due(&self) -> anyhow::Result<bool> {
        let Some(claim) = self.claim().await? else {
            return Ok(false);
        };
        let result = self.send(&claim).await;
        self.settle(&claim, result).await?;
        Ok(true)
    }

    async fn claim(&self) -> anyhow::Result<Option<Claimed>> {
        let mut conn = self.pool.acquire().await?;
        let claimed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE status_callbacks c
                SET attempts = c.attempts + 1, next_attempt_at = now() + interval '{LEASE}',
                    leased_until = now() + interval '{LEASE}'
               FROM (SELECT idempotency_key FROM status_callbacks
                      WHERE state = 'pending' AND next_attempt_at <= now()
                      ORDER BY next_attempt_at LIMIT 1
                      FOR UPDATE SKIP LOCKED) due
              WHERE c.idempotency_key = due.idempotency_key
          RETURNING c.idempotency_key, c.sender_id, c.message_id, c.sender_reference, c.status,
                    c.body, c.attempts, c.retry_from + $1 <= now() AS window_closed,
                    (SELECT s.status_webhook_url FROM senders s WHERE s.id = c.sender_id) AS url,
                    (SELECT s.status_secret_env FROM senders s WHERE s.id = c.sender_id)
                        AS secret_env"
        )))
        .bind(self.retry_for)
        .try_map(|row: PgRow| {
            Ok(Claimed {
                key: row.try_get("idempotency_key")?,
                sender_id: row.try_get("sender_id")?,
                message_id: row
                    .try_get::<Option<Uuid>, _>("message_id")?
                    .map(MessageId::from_uuid),
                sender_reference: row.try_get("sender_reference")?,
                status: row.try_get("status")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                window_closed: row.try_get("window_closed")?,
                url: row.try_get("url")?,
                secret_env: row.try_get("secret_env")?,
            })
        })
        .fetch_optional(&mut *conn)
        .await?;
        Ok(claimed)
    }

    async fn send(&self, claim: &Claimed) -> anyhow::Result<()> {
        let (Some(url), Some(secret_env)) = (&claim.url, &claim.secret_env) else {
            anyhow::bail!(
                "sender {} no longer has a statusWebhookUrl",
                claim.sender_id
            )
        };
        let secret = self.secrets.get(secret_env).ok_or_else(|| {
            anyhow::anyhow!(
                "the status webhook secret of sender {} ({secret_env}) is not set",
                claim.sender_id
            )
        })?;
        webhook::deliver(
            &self.http,
            url,
            secret,
            &claim.key.to_string(),
            claim.body.clone(),
        )
        .await
    }

    /// Marks the outcome, with its audit record when it is final, in one transaction.
    async fn settle(&self, claim: &Claimed, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let mine = "WHERE idempotency_key = $1 AND state = 'pending' AND attempts = $2";
        let (sql, action) = match &error {
            None => (
                format!(
                    "UPDATE status_callbacks SET state = 'sent', sent_at = now(), body = ''::bytea,
                            last_error = $3, leased_until = NULL {mine}"
                ),
                Some(Action::StatusCallbackSent),
            ),
            Some(_) if claim.window_closed => (
                format!(
                    "UPDATE status_callbacks SET state = 'failed', last_error = $3,
                            leased_until = NULL {mine}"
                ),
                Some(Action::StatusCallbackFailed),
            ),
            Some(_) => (
                format!(
                    "UPDATE status_callbacks SET last_error = $3, next_attempt_at = now() + $4,
                            leased_until = NULL {mine}"
                ),
                None,
            ),
        };
        let after = retry_delay(u32::try_from(claim.attempts).unwrap_or(0));
        let mut tx = self.pool.begin().await?;
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(claim.key)
            .bind(claim.attempts)
            .bind(error.as_deref());
        let query = if action.is_none() {
            query.bind(after)
        } else {
            query
        };
        if query.execute(&mut *tx).await?.rows_affected() != 1 {
            warn!(key = %claim.key, "status callback re-claimed by another dispatcher; not settling");
            return Ok(());
        }
        if let Some(action) = action {
            let mut audit = AuditEvent::new(STAGE, action);
            audit.sender_id = Some(claim.sender_id.clone());
            audit.message_id = claim.message_id;
            audit.sender_reference = claim.sender_reference.clone();
            audit.details = serde_json::json!({
                "channel": "status-webhook",
                "status": claim.status,
                "attempts": claim.attempts,
                "idempotencyKey": claim.key,
                "error": error,
            });
            audit.record(&mut tx).await?;
        }
        tx.commit().await?;
        let result = match (&error, action) {
            (None, _) => CallbackResult::Sent,
            (Some(_), Some(_)) => CallbackResult::Failed,
            (Some(_), None) => CallbackResult::Retry,
        };
        StatusCallbackSettled {
            sender_id: &claim.sender_id,
            key: &claim.key.to_string(),
            status: &claim.status,
            result,
            attempts: claim.attempts,
            error: error.as_deref(),
            retry_in: (result == CallbackResult::Retry).then_some(after),
        }
        .emit();
        Ok(())
    }
}

impl Job for CallbackDispatcher {
    fn name(&self) -> &'static str {
        "status-callback-dispatcher"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        self.measure_backlog().await?;
        Ok(if self.dispatch_due().await? {
            Pass::More
        } else {
            Pass::Idle
        })
    }

    async fn woken(&mut self) {
        if !self.listen_tried {
            self.listener = listen(&self.pool).await;
            self.listen_tried = true;
        }
        match self.listener.as_mut() {
            Some(listener) => {
                let _ = listener.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// How often the dispatcher looks at the outbox when nothing wakes it (the notifications').
pub const EVERY: Duration = POLL;

/// Re-queues status callbacks for `ebox notifications retry`: waiting ones due now, abandoned
/// ones (`abandoned`) pending again with a fresh retry window; returns how many. Wakes the
/// dispatchers.
pub async fn requeue(
    conn: &mut PgConnection,
    abandoned: bool,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> sqlx::Result<u64> {
    let (set, selected) = if abandoned {
        (
            "state = 'pending', next_attempt_at = now(), retry_from = now()",
            "state = 'failed'",
        )
    } else {
        (
            "next_attempt_at = now()",
            "state = 'pending' AND next_attempt_at > now() AND leased_until IS NULL",
        )
    };
    let requeued = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE status_callbacks SET {set}
          WHERE {selected} AND ($1::timestamptz IS NULL OR created_at >= $1)"
    )))
    .bind(since)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(requeued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::status::{Code, Status};

    fn event(
        message_id: Option<MessageId>,
        reference: Option<&str>,
        status: Status,
    ) -> StatusEvent {
        serde_json::from_value(serde_json::json!({
            "senderReference": reference,
            "messageId": message_id,
            "status": status,
            "code": Code::Accepted,
            "message": "m",
            "at": "2026-12-07T00:00:00Z",
        }))
        .expect("a status event")
    }

    #[test]
    fn one_status_of_one_message_has_one_key_whatever_copy_carries_it() {
        let id = MessageId::from_uuid(Uuid::new_v4());
        let accepted = event(Some(id), Some("ref-1"), Status::Accepted);
        assert_eq!(
            idempotency_key("onem", &accepted, Some("a")),
            idempotency_key("onem", &accepted, Some("b"))
        );
        let published = event(Some(id), Some("ref-1"), Status::Published);
        assert_ne!(
            idempotency_key("onem", &accepted, None),
            idempotency_key("onem", &published, None)
        );
        assert_ne!(
            idempotency_key("onem", &accepted, None),
            idempotency_key("inami", &accepted, None)
        );
        let rejected = event(None, Some("ref-1"), Status::Rejected);
        assert_eq!(
            idempotency_key("onem", &rejected, Some("a")),
            idempotency_key("onem", &rejected, Some("b"))
        );
    }
}
