//! The notify stage: tells the citizen a new document is in their eBox, on the channel they
//! chose, at most once per message and channel — unless they opted out.
//!
//! Two halves, so that a notification is never lost nor sent twice by a redelivery:
//!
//! - [`Notify`], a handler on `ebox.notify` (bound to `newDocument` on `ebox.events`), checks
//!   the event is the one recorded for a published document (a forged event is refused and
//!   audited, see [`queues::handoff`]; a message its sender withdrew is left alone, see
//!   [`queues::handoff::halted`]), decides
//!   from the citizen's preference and records the *intent* — a row in the `notifications`
//!   outbox, unique per (message, channel) — with its audit slice, in the batch's transaction.
//!   Opted out, or no preference: nothing to send, audited as skipped.
//! - [`dispatcher::Dispatcher`], a background job, sends what is due through the channel's
//!   [`notifier::Notifier`] ([`email`] over SMTP, or the partner's [`webhook`]) and marks it
//!   sent after success; failures are retried with back-off for `EBOX_NOTIFY_RETRY_FOR`, then
//!   abandoned until `ebox notifications retry --failed` queues them again. The outbox's SQL is
//!   in [`outbox`].
//!
//! Beside them, in the same process, [`status_callbacks`]: the status events of the senders
//! that asked for them, POSTed to the sender's own endpoint (consumed from
//! `ebox.status-callbacks`, recorded in an outbox of their own, sent by a dispatcher of their
//! own with the same signature, back-off and retry window).
//!
//! The one window left: a crash after the e-mail or webhook left and before it is marked sent
//! repeats that one send when its lease (two minutes) expires. A partner drops the repeat by its
//! `Idempotency-Key`; an e-mail repeat carries the same `Message-ID`.

pub mod dispatcher;
pub mod email;
pub mod notifier;
pub mod outbox;
pub mod reminders;
pub mod status_callbacks;
pub mod webhook;

use domain::audit::{Action, Stage};
use domain::citizen::{Channel, ChannelKind, CitizenKey, CitizenKeys, Preferences, SsinHasher};
use domain::decision::NotifyDecision;
use domain::events::{EventEnvelope, EventType};
use domain::ids::MessageId;
use domain::ssin::Ssin;
use queues::topology::NOTIFY_QUEUE;
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt, give_up, handoff};
use records::audit::AuditEvent;
use records::{citizens, decisions, documents, messages};
use runtime::internal_events::NotificationDecided;
use sqlx::PgConnection;
use tracing::info;
use uuid::Uuid;

const STAGE: Stage = Stage::Notify;

pub struct Notify {
    hasher: SsinHasher,
    /// This provider's id, as the events it announces carry it.
    provider_id: String,
}

impl Notify {
    pub fn new(hasher: SsinHasher, provider_id: String) -> Self {
        Self {
            hasher,
            provider_id,
        }
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
        // Locked until the batch commits: a withdrawal either came first (nothing is queued)
        // or comes after, and cancels what is queued here.
        if let Some(record) = messages::lock(conn, message_id).await?
            && handoff::halted(conn, STAGE, &record).await?
        {
            return Ok(Outcome::ack(Vec::new()));
        }
        let Some(citizen) = self.verify(conn, &envelope).await? else {
            return Ok(Outcome::ack(Vec::new()));
        };
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
                    kind: EventType::NewDocument,
                    citizen: citizen.current(),
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
        let current = citizen.current().clone();
        record_decision(conn, message_id, current, channel, decision, reason, key).await?;
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

impl Notify {
    /// The citizen's keys when `envelope` is exactly the `newDocument` event the record
    /// gives for a published document of theirs; otherwise the event is refused (audited, and
    /// nothing is sent): a forged event must not notify anyone.
    async fn verify(
        &self,
        conn: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> Result<Option<CitizenKeys>, HandlerError> {
        let message_id = envelope.event_data.message_id;
        let ssin = Ssin::parse(&envelope.event_data.recipient.ebox_id_value).ok();
        let document = documents::find(conn, message_id).await?;
        let genuine = match (&ssin, &document) {
            (Some(ssin), Some(document)) if document.is_for(&self.hasher.keys(ssin)) => {
                let recorded =
                    document
                        .event_data(EventType::NewDocument, ssin)
                        .map(|event_data| EventEnvelope {
                            event_sequence_nbr: document.event_sequence_nbr.unwrap_or_default(),
                            event_time: event_data.receipt_date,
                            event_provider_id: self.provider_id.clone(),
                            event_data,
                        });
                recorded.as_ref() == Some(envelope)
            }
            _ => false,
        };
        match ssin {
            Some(ssin) if genuine => Ok(Some(self.hasher.keys(&ssin))),
            _ => {
                let record = messages::find(conn, message_id).await?;
                let reason =
                    "the event is not the newDocument event recorded for a published document";
                handoff::refuse(conn, STAGE, message_id, record.as_ref(), reason).await?;
                Ok(None)
            }
        }
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
