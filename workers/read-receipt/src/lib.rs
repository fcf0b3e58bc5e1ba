//! The read-receipt stage: the sender hears `read`, with `readAt` and a signed proof of
//! reading, once the citizen opened the message — and only then.
//!
//! The API commits the read mark (`documents.read_at`) before it announces `readDocument` on
//! `ebox.events`. Two paths lead here, and both act on the committed mark, never on the event:
//!
//! - [`ReadReceipt`] consumes `ebox.read-receipt` (bound to `readDocument`): the event must name
//!   a document of that recipient with a committed read mark, or it is refused and audited
//!   ([`queues::handoff`]); a forged event cannot make a sender hear `read`;
//! - [`recovery::UnconfirmedReads`], a background job, confirms the read marks whose event
//!   never arrived (the API crashed, or the broker refused it, after the commit).
//!
//! The first confirmation is recorded, audited (naming the sender, its reference and the
//! citizen's keyed hash) and signed; every later one re-sends the same status (it may have
//! been lost in a crash).

pub mod recovery;

use chrono::{DateTime, Utc};
use domain::audit::{Action, Stage};
use domain::citizen::{CitizenKey, SsinHasher};
use domain::decision::ReadDecision;
use domain::events::{EventEnvelope, EventType};
use domain::ids::MessageId;
use domain::ssin::Ssin;
use domain::status::{Code, Status, StatusEvent};
use evidence::keys::Signer;
use evidence::proof::ProofKind;
use queues::status::status_message;
use queues::topology::READ_RECEIPT_QUEUE;
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt, give_up, handoff};
use records::audit::AuditEvent;
use records::messages::MessageRecord;
use records::{decisions, documents, messages};
use sqlx::PgConnection;
use std::sync::Arc;
use tracing::info;

const STAGE: Stage = Stage::ReadReceipt;
pub const READ_MESSAGE: &str = "the citizen opened the message";

pub struct ReadReceipt {
    /// Signs the proofs of reading.
    signer: Arc<Signer>,
    /// Checks the event's recipient against the recorded one.
    hasher: SsinHasher,
}

impl ReadReceipt {
    pub fn new(signer: Arc<Signer>, hasher: SsinHasher) -> Self {
        Self { signer, hasher }
    }
}

impl Handler for ReadReceipt {
    type Message = EventEnvelope;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        READ_RECEIPT_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        envelope: EventEnvelope,
        _: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        if envelope.event_data.event_type != EventType::ReadDocument {
            return Ok(Outcome::ack(Vec::new()));
        }
        let message_id = envelope.event_data.message_id;
        // A withdrawn message's sender heard `withdrawn`, with `readAt` when it had been read:
        // nothing more is said of it. Locked until the batch commits, so that a withdrawal
        // comes wholly before this receipt or wholly after it.
        if let Some(record) = messages::lock(conn, message_id).await?
            && handoff::halted(conn, STAGE, &record).await?
        {
            return Ok(Outcome::ack(Vec::new()));
        }
        if recorded_receipt(conn, message_id).await?.is_none()
            && !self.read_by_recipient(conn, &envelope).await?
        {
            return Ok(Outcome::ack(Vec::new()));
        }
        Ok(Outcome::ack(confirm(conn, &self.signer, message_id).await?))
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

impl ReadReceipt {
    /// True when the event's recipient has a document with this id whose read mark the API
    /// committed; otherwise the event is refused (audited, nothing sent).
    async fn read_by_recipient(
        &self,
        conn: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> Result<bool, HandlerError> {
        let message_id = envelope.event_data.message_id;
        let citizen = Ssin::parse(&envelope.event_data.recipient.ebox_id_value)
            .ok()
            .map(|ssin| self.hasher.keys(&ssin));
        let document = documents::find(conn, message_id).await?;
        let reason = match (citizen, document) {
            (Some(citizen), Some(document)) if document.is_for(&citizen) => {
                if document.read_at.is_some() {
                    return Ok(true);
                }
                "the citizen has not opened this document"
            }
            _ => "no document of this recipient has this id",
        };
        let record = messages::find(conn, message_id).await?;
        handoff::refuse(conn, STAGE, message_id, record.as_ref(), reason).await?;
        Ok(false)
    }
}

/// The sender's `read` status for a message whose read mark is committed: the first time
/// recorded, audited and signed (in the caller's transaction), then re-sent as it was.
pub async fn confirm(
    conn: &mut PgConnection,
    signer: &Signer,
    message_id: MessageId,
) -> Result<Vec<Outgoing>, HandlerError> {
    let read_at = match recorded_receipt(conn, message_id).await? {
        Some(receipt) => receipt.read_at,
        None => {
            let document = documents::find(conn, message_id).await?;
            let Some((read_at, citizen)) =
                document.and_then(|d| Some((d.read_at?, CitizenKey::from_stored(d.citizen))))
            else {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "message {message_id} has no read mark to confirm"
                )));
            };
            let record = intake_record(conn, message_id).await?;
            let audit_record = record_receipt(conn, &record, citizen, read_at).await?;
            if let Some(proof) =
                proof_of_reading(signer, &record, read_at, audit_record).permanent()?
            {
                messages::set_proof_of_reading(conn, message_id, &proof).await?;
            }
            read_at
        }
    };
    // Read again: the proof of reading may have just been set.
    let record = intake_record(conn, message_id).await?;
    let status = StatusEvent {
        sender_reference: Some(record.sender_reference.clone()),
        message_id: Some(message_id),
        status: Status::Read,
        code: Code::Read,
        message: READ_MESSAGE.to_owned(),
        at: read_at,
        expiration_date: Some(record.expiration_date),
        read_at: Some(read_at),
        correlation_id: record.correlation_id.clone(),
        proof_of_deposit: record.proof_of_deposit.clone(),
        proof_of_reading: record.proof_of_reading.clone(),
    };
    Ok(vec![
        status_message(&record.sender_id, &status).permanent()?,
    ])
}

/// The proof of reading: the proof of deposit's claims, read at `read_at`, signed anew.
/// `None` for a message stored before proofs existed (it has no proof of deposit).
fn proof_of_reading(
    signer: &Signer,
    record: &MessageRecord,
    read_at: DateTime<Utc>,
    audit_record: i64,
) -> anyhow::Result<Option<String>> {
    let Some(deposit) = &record.proof_of_deposit else {
        tracing::warn!(message_id = %record.id, "no proof of deposit to derive a proof of reading from");
        return Ok(None);
    };
    let mut claims = evidence::proof::claims_of_own(deposit)?;
    claims.proof = ProofKind::Reading;
    claims.read_at = Some(read_at);
    claims.audit_record = Some(audit_record);
    claims.iat = Utc::now().timestamp();
    Ok(Some(evidence::proof::sign(signer, &claims)?))
}

/// What read-receipt recorded: when the message was read.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    read_at: DateTime<Utc>,
}

/// The message as intake accepted it (its sender and reference), which every read message has.
async fn intake_record(
    conn: &mut PgConnection,
    message_id: MessageId,
) -> Result<MessageRecord, HandlerError> {
    messages::find(conn, message_id).await?.ok_or_else(|| {
        HandlerError::Permanent(anyhow::anyhow!("message {message_id} has no intake record"))
    })
}

async fn recorded_receipt(
    conn: &mut PgConnection,
    message_id: MessageId,
) -> Result<Option<Receipt>, HandlerError> {
    decisions::find::<ReadDecision>(conn, message_id, STAGE)
        .await?
        .map(|d| serde_json::from_value(d.details).permanent())
        .transpose()
}

/// The first receipt: recorded, the status moved to `read`, and audited with the sender, its
/// reference and the citizen.
async fn record_receipt(
    conn: &mut PgConnection,
    record: &MessageRecord,
    citizen: CitizenKey,
    read_at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let message_id = record.id;
    let receipt = serde_json::json!({"readAt": read_at});
    decisions::record(conn, message_id, STAGE, ReadDecision::Read, &receipt).await?;
    messages::set_status(
        conn,
        message_id,
        Status::Read,
        Code::Read,
        READ_MESSAGE,
        read_at,
    )
    .await?;
    let mut audit = AuditEvent::new(STAGE, Action::ReadConfirmed);
    audit.code = Some(Code::Read);
    audit.message_id = Some(message_id);
    audit.sender_id = Some(record.sender_id.clone());
    audit.sender_reference = Some(record.sender_reference.clone());
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({"readAt": read_at});
    let audit_record = audit.record(conn).await?;
    info!(%message_id, "read receipt recorded");
    Ok(audit_record)
}
