//! The notify stage: tells the citizen a new document is in their eBox, on the channel they
//! chose, at most once per message and channel — unless they opted out.
//!
//! Two halves, so that a notification is never lost nor sent twice by a redelivery:
//!
//! - [`Notify`], a handler on `ebox.notify` (bound to `newDocument` on `ebox.events`), decides
//!   from the citizen's preference and records the *intent* — a row in the `notifications`
//!   outbox, unique per (message, channel) — with its audit slice, in the batch's transaction.
//!   Opted out, or no preference: nothing to send, audited as skipped.
//! - [`dispatcher::Dispatcher`], a background job, sends what is due through the channel's
//!   [`notifier::Notifier`] ([`email`] over SMTP, or the partner's [`webhook`]) and marks it
//!   sent after success; failures are retried with back-off for `EBOX_NOTIFY_RETRY_FOR`, then
//!   abandoned until `ebox notifications retry --failed` queues them again. The outbox's SQL is
//!   in [`outbox`].
//!
//! The one window left: a crash after the e-mail or webhook left and before it is marked sent
//! repeats that one send when its lease (two minutes) expires. A partner drops the repeat by its
//! `Idempotency-Key`; an e-mail repeat carries the same `Message-ID`.

pub mod dispatcher;
pub mod email;
pub mod notifier;
pub mod outbox;
pub mod webhook;

use domain::audit::{Action, Stage};
use domain::citizen::{Channel, ChannelKind, CitizenKey, Preferences, SsinHasher};
use domain::decision::NotifyDecision;
use domain::events::{EventEnvelope, EventType};
use domain::ids::MessageId;
use domain::ssin::Ssin;
use queues::topology::NOTIFY_QUEUE;
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt, give_up};
use records::audit::AuditEvent;
use records::{citizens, decisions};
use runtime::internal_events::NotificationDecided;
use sqlx::PgConnection;
use tracing::info;
use uuid::Uuid;

const STAGE: Stage = Stage::Notify;

pub struct Notify {
    hasher: SsinHasher,
}

impl Notify {
    pub fn new(hasher: SsinHasher) -> Self {
        Self { hasher }
    }
}

impl Handler for Notify {
    type Message = EventEnvelope;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        NOTIFY_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        envelope: EventEnvelope,
        _: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let event = &envelope.event_data;
        if event.event_type != EventType::NewDocument {
            return Ok(Outcome::ack(Vec::new()));
        }
        let message_id = event.message_id;
        if decisions::find::<NotifyDecision>(conn, message_id, STAGE)
            .await?
            .is_some()
        {
            info!(%message_id, "notification already decided");
            return Ok(Outcome::ack(Vec::new()));
        }
        let ssin = Ssin::parse(&event.recipient.ebox_id_value)
            .map_err(|e| anyhow::anyhow!("event recipient: {e}"))
            .permanent()?;
        let citizen = self.hasher.hash(&ssin);
        let preferences = citizens::preferences(conn, &citizen).await?;
        let channel = preferences
            .as_ref()
            .map_or(ChannelKind::None, |p| p.channel.kind());
        let idempotency_key = Uuid::new_v5(
            &message_id.as_uuid(),
            format!("notify/{}", channel.as_str()).as_bytes(),
        );
        let reachable = preferences
            .as_ref()
            .and_then(|p| Some((p.language, p.channel.target()?)));
        let decision = match reachable {
            Some((language, target)) => {
                let new = outbox::NewNotification {
                    message_id,
                    channel,
                    citizen: &citizen,
                    idempotency_key,
                    target,
                    language,
                    payload: payload(channel, &envelope)?,
                };
                outbox::queue(conn, new).await?;
                NotifyDecision::Queued
            }
            None => NotifyDecision::Skipped,
        };
        let reason = skip_reason(preferences.as_ref());
        let key = (decision == NotifyDecision::Queued).then_some(idempotency_key);
        record_decision(conn, message_id, citizen, channel, decision, reason, key).await?;
        NotificationDecided {
            message_id,
            channel,
            decision,
        }
        .emit();
        Ok(Outcome::ack(Vec::new()))
    }

    /// The document was delivered; the give-up is audited against it.
    async fn give_up(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
        error: &anyhow::Error,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        give_up::audit_only(conn, STAGE, give_up::event_message_id(&incoming), error).await
    }
}

/// Records the decision (replayed on redelivery) and its audit slice.
async fn record_decision(
    conn: &mut PgConnection,
    message_id: MessageId,
    citizen: CitizenKey,
    channel: ChannelKind,
    decision: NotifyDecision,
    reason: Option<&str>,
    idempotency_key: Option<Uuid>,
) -> sqlx::Result<()> {
    let details = serde_json::json!({"channel": channel});
    decisions::record(conn, message_id, STAGE, decision, &details).await?;
    let action = match decision {
        NotifyDecision::Queued => Action::NotificationQueued,
        NotifyDecision::Skipped => Action::NotificationSkipped,
    };
    let mut audit = AuditEvent::new(STAGE, action);
    audit.message_id = Some(message_id);
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({
        "channel": channel,
        "reason": reason,
        "idempotencyKey": idempotency_key,
    });
    audit.record(conn).await?;
    Ok(())
}

/// What the outbox keeps for the channel: only a partner needs the event (which names the
/// citizen); an e-mail needs nothing of it, so nothing is kept.
fn payload(
    channel: ChannelKind,
    envelope: &EventEnvelope,
) -> Result<serde_json::Value, HandlerError> {
    Ok(match channel {
        ChannelKind::Partner => serde_json::to_value(envelope).permanent()?,
        _ => serde_json::json!({}),
    })
}

/// Why nothing is sent, for the audit; `None` when something is.
fn skip_reason(preferences: Option<&Preferences>) -> Option<&'static str> {
    match preferences {
        None => Some("no notification preference recorded"),
        Some(p) if p.channel == Channel::None => Some("the citizen opted out of notifications"),
        Some(_) => None,
    }
}
