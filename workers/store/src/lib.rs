//! The store stage: puts a consented message in the citizen's eBox.
//!
//! Consumes `ebox.store`. The document (metadata, and every attachment's bytes with its
//! SHA-256 digest) was written once by intake, unpublished; store publishes it — the citizen
//! sees it from then until the expiration date the sender chose — gives it the next
//! `eventSequenceNbr`, records the federation's `newDocument` in the events outbox (in the same
//! transaction: [`records::events`]), signs the proof of deposit, and then publishes
//! `newDocument` on `ebox.events` (for notify) and `published` to the sender. A redelivery of
//! a stored message publishes the same event again (same sequence number and correlation id)
//! and re-sends the status.
//!
//! Store acts only on recorded state: the hand-off must name the recipient intake recorded
//! and consent-check must have recorded consent; anything else is refused and audited
//! ([`queues::handoff`]). The event and the proof are built from the record, not the message.
//! The record is locked while store decides, so a sender's withdrawal either comes first —
//! store then finds `withdrawn` and publishes nothing ([`queues::handoff::halted`]) — or after
//! the publication, which it then undoes.
//!
//! [`retention`] deletes documents once they expire and tells the sender `expired`.

pub mod proof;
pub mod retention;

use chrono::{DateTime, SubsecRound as _, Utc};
use domain::audit::{Action, Stage};
use domain::citizen::{CitizenKey, CitizenKeys, SsinHasher};
use domain::decision::{ConsentDecision, StoreDecision};
use domain::events::{EVENT_TYPE, EventEnvelope, EventType};
use domain::handoff::Handoff;
use domain::ids::MessageId;
use domain::status::{Code, Status};
use evidence::keys::Signer;
use queues::handoff::{self, Verified};
use queues::status::status_message;
use queues::topology::{EVENTS_EXCHANGE, STORE_QUEUE};
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt, give_up};
use records::audit::AuditEvent;
use records::documents::{self, Document};
use records::messages::MessageRecord;
use records::{decisions, messages};
use runtime::internal_events::DocumentPublished;
use sqlx::PgConnection;
use std::sync::Arc;
use tracing::info;

const STAGE: Stage = Stage::Store;
pub const PUBLISHED_MESSAGE: &str =
    "the message is in the citizen's eBox until its expiration date";

/// What store recorded for a message: enough to announce it again identically.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    pub event_sequence_nbr: i64,
    pub receipt_date: DateTime<Utc>,
}

pub struct Store {
    hasher: SsinHasher,
    provider_id: String,
    /// Signs the proofs of deposit.
    signer: Arc<Signer>,
}

impl Store {
    pub fn new(hasher: SsinHasher, provider_id: String, signer: Arc<Signer>) -> Self {
        Self {
            hasher,
            provider_id,
            signer,
        }
    }
}

impl Handler for Store {
    type Message = Handoff;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        STORE_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        handoff: Handoff,
        _: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let Some(Verified { record, citizen }) =
            handoff::verify(conn, STAGE, &self.hasher, &handoff).await?
        else {
            return Ok(Outcome::ack(Vec::new()));
        };
        if give_up::settled_as_failed(&record) || handoff::halted(conn, STAGE, &record).await? {
            // Failed, or withdrawn by its sender: never published, nothing announced.
            return Ok(Outcome::ack(Vec::new()));
        }
        let message_id = record.id;
        // The decision, not the document, says whether the message was stored: retention
        // deletes the document, and a late copy must not store it again.
        let announcement = match decisions::find::<StoreDecision>(conn, message_id, STAGE).await? {
            Some(recorded) => {
                info!(%message_id, "already stored; publishing the event and status again");
                serde_json::from_value(recorded.details).permanent()?
            }
            None if !consented(conn, message_id).await? => {
                let reason = "consent-check has not recorded the citizen's consent";
                handoff::refuse(conn, STAGE, message_id, Some(&record), reason).await?;
                return Ok(Outcome::ack(Vec::new()));
            }
            None => self.store(conn, &record, citizen, &handoff).await?,
        };
        // Read again: the status may have just moved.
        let record = recorded(conn, message_id).await?;
        let status = status_message(&record.sender_id, &record.current_status(None)).permanent()?;
        if record.status == Status::Expired {
            // Deleted since: tell the sender where it stands, announce nothing.
            return Ok(Outcome::ack(vec![status]));
        }
        let document = documents::find(conn, message_id).await?.ok_or_else(|| {
            HandlerError::Permanent(anyhow::anyhow!("message {message_id} has no document"))
        })?;
        let event = self.new_document(&document, &handoff, announcement, &record)?;
        Ok(Outcome::ack(vec![event, status]))
    }

    /// Nothing was stored (the attempt was rolled back): the sender hears `failed`.
    async fn give_up(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
        error: &anyhow::Error,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        give_up::fail_delivery(conn, STAGE, &incoming, error).await
    }
}

impl Store {
    /// Publishes the document, moves the status to `published`, audits, signs the proof of
    /// deposit and records the decision, all in the batch's transaction.
    async fn store(
        &self,
        conn: &mut PgConnection,
        record: &MessageRecord,
        citizen: CitizenKeys,
        handoff: &Handoff,
    ) -> Result<Announcement, HandlerError> {
        let message_id = record.id;
        let receipt_date = Utc::now().trunc_subsecs(6);
        let sequence = documents::publish(conn, message_id, receipt_date)
            .await?
            .ok_or_else(|| {
                HandlerError::Permanent(anyhow::anyhow!(
                    "message {message_id} has no unpublished document"
                ))
            })?;
        messages::set_status(
            conn,
            message_id,
            Status::Published,
            Code::Published,
            PUBLISHED_MESSAGE,
            receipt_date,
        )
        .await?;
        let announcement = Announcement {
            event_sequence_nbr: sequence,
            receipt_date,
        };
        let document = documents::find(conn, message_id).await?.ok_or_else(|| {
            HandlerError::Permanent(anyhow::anyhow!("message {message_id} has no document"))
        })?;
        record_new_document(conn, &document, handoff, receipt_date, &self.provider_id).await?;
        let attachments = documents::digests(conn, message_id).await?;
        let audit_record = audit_stored(
            conn,
            &document,
            &attachments,
            citizen.current().clone(),
            announcement,
        )
        .await?;
        let proof = proof::proof_of_deposit(
            &self.signer,
            &self.provider_id,
            &document,
            &attachments,
            &handoff.recipient,
            receipt_date,
            audit_record,
        )
        .permanent()?;
        messages::set_proof_of_deposit(conn, message_id, &proof).await?;
        let details = serde_json::to_value(announcement).permanent()?;
        decisions::record(conn, message_id, STAGE, StoreDecision::Stored, &details).await?;
        info!(%message_id, sequence, "stored");
        let since_accepted = (receipt_date - record.accepted_at)
            .to_std()
            .unwrap_or_default();
        DocumentPublished {
            message_id,
            since_accepted,
        }
        .emit();
        Ok(announcement)
    }

    /// The `newDocument` event, from the record, the same on every replay (sequence number,
    /// time, correlation id).
    fn new_document(
        &self,
        document: &Document,
        handoff: &Handoff,
        announcement: Announcement,
        record: &MessageRecord,
    ) -> Result<Outgoing, HandlerError> {
        let message_id = document.message_id;
        let event_data = document
            .event_data(EventType::NewDocument, &handoff.recipient)
            .ok_or_else(|| {
                HandlerError::Permanent(anyhow::anyhow!("message {message_id} is not published"))
            })?;
        let event = EventEnvelope {
            event_sequence_nbr: announcement.event_sequence_nbr,
            event_time: announcement.receipt_date,
            event_provider_id: self.provider_id.clone(),
            event_data,
        };
        Outgoing::json(
            EVENTS_EXCHANGE,
            EventType::NewDocument.as_str(),
            EVENT_TYPE,
            &event.event_data.event_correlation_id.to_string(),
            record.correlation_id.as_deref(),
            &event,
        )
        .permanent()
    }
}

/// Records the federation's `newDocument` in the events outbox, in the transaction that
/// publishes the document: the event exists exactly when the publication committed, and the
/// event relay and the feed take it from there ([`records::events`]).
async fn record_new_document(
    conn: &mut PgConnection,
    document: &Document,
    handoff: &Handoff,
    receipt_date: DateTime<Utc>,
    provider_id: &str,
) -> Result<(), HandlerError> {
    let message_id = document.message_id;
    let event = document
        .citizen_event(EventType::NewDocument, &handoff.recipient)
        .ok_or_else(|| {
            HandlerError::Permanent(anyhow::anyhow!("message {message_id} is not published"))
        })?;
    records::events::record(conn, &event, receipt_date, provider_id).await?;
    Ok(())
}

/// True when consent-check recorded that the citizen consented to this message.
async fn consented(conn: &mut PgConnection, message_id: MessageId) -> sqlx::Result<bool> {
    let decision =
        decisions::find::<ConsentDecision>(conn, message_id, Stage::ConsentCheck).await?;
    Ok(decision.is_some_and(|d| d.decision == ConsentDecision::Consented))
}

/// The message as recorded, which a verified hand-off always has.
async fn recorded(
    conn: &mut PgConnection,
    message_id: MessageId,
) -> Result<MessageRecord, HandlerError> {
    messages::find(conn, message_id).await?.ok_or_else(|| {
        HandlerError::Permanent(anyhow::anyhow!("message {message_id} has no intake record"))
    })
}

/// The audit slice of a provision: what was kept, never the content.
async fn audit_stored(
    conn: &mut PgConnection,
    document: &Document,
    attachments: &[documents::AttachmentDigest],
    citizen: CitizenKey,
    announcement: Announcement,
) -> sqlx::Result<i64> {
    let mut audit = AuditEvent::new(STAGE, Action::Stored);
    audit.code = Some(Code::Published);
    audit.sender_id = Some(document.sender_id.clone());
    audit.message_id = Some(document.message_id);
    audit.sender_reference = Some(document.sender_reference.clone());
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({
        "eventSequenceNbr": announcement.event_sequence_nbr,
        "receiptDate": announcement.receipt_date,
        "expirationDate": document.expiration_date,
        "attachments": attachments.iter().map(|a| serde_json::json!({
            "attachmentId": a.attachment_id,
            "mediaType": a.media_type,
            "size": a.size,
            "digest": {"digestMethod": "sha_256", "digestValue": a.sha256.to_base64url()},
        })).collect::<Vec<_>>(),
    });
    audit.record(conn).await
}
