//! The notify stage: tells the citizen a new document is in their eBox, on the channel they
//! chose, at most once per message and channel — unless they opted out.
//!
//! Two halves, so that a notification is never lost nor sent twice by a redelivery:
//!
//! - [`Notify`], a handler on `ebox.notify` (bound to `newDocument` on `ebox.events`), decides
//!   from the citizen's preference and records the *intent* — a row in the `notifications`
//!   outbox, unique per (message, channel) — with its audit slice, in the batch's transaction.
//!   Opted out, or no preference: nothing to send, audited as skipped.
//! - [`dispatcher::Dispatcher`] sends what is due ([`email`] over SMTP, or the partner's
//!   [`webhook`]) and marks it sent after success; failures are retried with back-off, up to
//!   `EBOX_NOTIFY_MAX_ATTEMPTS`.
//!
//! The one window left: a crash after the e-mail or webhook left and before it is marked sent
//! repeats that one send when its lease (two minutes) expires. A partner drops the repeat by its
//! `Idempotency-Key`; an e-mail repeat carries the same `Message-ID`.

pub mod dispatcher;
pub mod email;
pub mod webhook;

use common::audit::{AuditEvent, SsinHasher};
use common::citizens::{self, Channel};
use common::decisions;
use common::events::{EventEnvelope, NEW_DOCUMENT};
use common::metrics::METRICS;
use common::ssin::Ssin;
use queues::topology::NOTIFY_QUEUE;
use queues::{Handler, HandlerError, Incoming, Outcome};
use sqlx::PgConnection;
use tracing::info;
use uuid::Uuid;

const STAGE: &str = "notify";
/// The PostgreSQL notification channel that wakes the dispatcher.
pub const WAKE_CHANNEL: &str = "ebox_notifications";

pub struct Notify {
    hasher: SsinHasher,
}

impl Notify {
    pub fn new(hasher: SsinHasher) -> Self {
        Self { hasher }
    }
}

impl Handler for Notify {
    fn queue(&self) -> &'static str {
        NOTIFY_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let envelope: EventEnvelope = queues::decode(incoming.body, "event")?;
        let event = &envelope.event_data;
        if event.event_type != NEW_DOCUMENT {
            return Ok(Outcome::ack(Vec::new()));
        }
        let message_id = event.message_id;
        if decisions::find(conn, message_id, STAGE).await?.is_some() {
            info!(%message_id, "notification already decided");
            return Ok(Outcome::ack(Vec::new()));
        }
        let ssin = Ssin::parse(&event.recipient.ebox_id_value)
            .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("event recipient: {e}")))?;
        let citizen = self.hasher.hash(&ssin);
        let preferences = citizens::preferences(conn, &citizen).await?;

        let (decision, channel, target) = match &preferences {
            None => ("skipped", "none", None),
            Some(p) => match &p.channel {
                Channel::None => ("skipped", "none", None),
                Channel::Email { email } => ("queued", "email", Some(email.clone())),
                Channel::Partner { partner_id } => ("queued", "partner", Some(partner_id.clone())),
            },
        };
        let reason = match &preferences {
            None => Some("no notification preference recorded"),
            Some(p) if p.channel == Channel::None => Some("the citizen opted out of notifications"),
            Some(_) => None,
        };
        let idempotency_key = Uuid::new_v5(&message_id, format!("notify/{channel}").as_bytes());
        if let (Some(target), Some(preferences)) = (&target, &preferences) {
            sqlx::query(
                "INSERT INTO notifications (message_id, channel, citizen, idempotency_key, target,
                                            language, payload, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')
                 ON CONFLICT (message_id, channel) DO NOTHING",
            )
            .bind(message_id)
            .bind(channel)
            .bind(&citizen)
            .bind(idempotency_key)
            .bind(target)
            .bind(preferences.language.code())
            // Only a partner needs the event (which names the citizen); an e-mail needs nothing
            // of it, so nothing is kept.
            .bind(if channel == "partner" {
                serde_json::to_value(&envelope).map_err(HandlerError::permanent)?
            } else {
                serde_json::json!({})
            })
            .execute(&mut *conn)
            .await?;
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKE_CHANNEL)
                .execute(&mut *conn)
                .await?;
        }
        decisions::record(
            conn,
            message_id,
            STAGE,
            decision,
            &serde_json::json!({"channel": channel}),
        )
        .await?;
        let mut audit = AuditEvent::new(
            STAGE,
            if decision == "queued" {
                "notification-queued"
            } else {
                "notification-skipped"
            },
        );
        audit.message_id = Some(message_id);
        audit.ssin_hash = Some(citizen);
        audit.details = serde_json::json!({
            "channel": channel,
            "reason": reason,
            "idempotencyKey": target.as_ref().map(|_| idempotency_key),
        });
        audit.record(conn).await?;
        METRICS
            .notifications_total
            .with_label_values(&[channel, decision])
            .inc();
        info!(%message_id, channel, decision, "notification decided");
        Ok(Outcome::ack(Vec::new()))
    }
}
