//! The read-receipt stage: consumes `ebox.read-receipt` (bound to `readDocument` on
//! `ebox.events`) and sends the sender `read` with `readAt`, once per message however often the
//! citizen opens it: the first receipt is recorded (with the event's sequence number) and
//! audited, naming the sender, its reference and the citizen's keyed hash like every other
//! record; a redelivery of that event sends the same receipt again (it may have been lost in a
//! crash), any other `readDocument` for the message is dropped.

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
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt, give_up};
use records::audit::AuditEvent;
use records::messages::MessageRecord;
use records::{decisions, messages};
use sqlx::PgConnection;
use std::sync::Arc;
use tracing::{info, warn};

const STAGE: Stage = Stage::ReadReceipt;
pub const READ_MESSAGE: &str = "the citizen opened the message";

pub struct ReadReceipt {
    /// Signs the proofs of reading.
    signer: Arc<Signer>,
    /// Names the citizen in the audit trail by the keyed hash of their national number.
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
        let sequence = envelope.event_sequence_nbr;
        let read_at = match recorded_receipt(conn, message_id).await? {
            // The same event again (a redelivery after a crash): the receipt may not have
            // left, so it goes again. Another readDocument for a message already read (the
            // API publishes before it commits the read mark) says nothing new: dropped.
            Some(receipt) if receipt.event_sequence_nbr == Some(sequence) => receipt.read_at,
            Some(_) => {
                info!(%message_id, "already read; a later readDocument is dropped");
                return Ok(Outcome::ack(Vec::new()));
            }
            None => {
                let read_at = envelope.event_time;
                let record = intake_record(conn, message_id).await?;
                let citizen = self.citizen(&envelope);
                let audit_record =
                    record_receipt(conn, &record, citizen, read_at, sequence).await?;
                if let Some(proof) = self
                    .proof_of_reading(conn, message_id, read_at, audit_record)
                    .await?
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
        Ok(Outcome::ack(vec![
            status_message(&record.sender_id, &status).permanent()?,
        ]))
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
    /// The reader's keyed hash, from the event's eBox id (their national number). `None`, and a
    /// warning, for an event that names no citizen: the receipt still goes to the sender.
    fn citizen(&self, envelope: &EventEnvelope) -> Option<CitizenKey> {
        let recipient = &envelope.event_data.recipient;
        match Ssin::parse(&recipient.ebox_id_value) {
            Ok(ssin) => Some(self.hasher.hash(&ssin)),
            Err(_) => {
                warn!(
                    message_id = %envelope.event_data.message_id,
                    ebox_type = %recipient.ebox_type,
                    "the readDocument event names no citizen; audited without one"
                );
                None
            }
        }
    }

    /// The proof of reading: the proof of deposit's claims, read at `read_at`, signed anew.
    /// `None` for a message stored before proofs existed (it has no proof of deposit).
    async fn proof_of_reading(
        &self,
        conn: &mut PgConnection,
        message_id: MessageId,
        read_at: DateTime<Utc>,
        audit_record: i64,
    ) -> Result<Option<String>, HandlerError> {
        let record = messages::find(conn, message_id).await?;
        let Some(deposit) = record.and_then(|r| r.proof_of_deposit) else {
            tracing::warn!(%message_id, "no proof of deposit to derive a proof of reading from");
            return Ok(None);
        };
        let mut claims = evidence::proof::claims_of_own(&deposit).permanent()?;
        claims.proof = ProofKind::Reading;
        claims.read_at = Some(read_at);
        claims.audit_record = Some(audit_record);
        claims.iat = Utc::now().timestamp();
        Ok(Some(
            evidence::proof::sign(&self.signer, &claims).permanent()?,
        ))
    }
}

/// What read-receipt recorded: when the message was read, and by which event.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    read_at: DateTime<Utc>,
    event_sequence_nbr: Option<i64>,
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

/// The first receipt: recorded with the event that brought it, the status moved to `read`,
/// and audited with the sender, its reference and the citizen.
async fn record_receipt(
    conn: &mut PgConnection,
    record: &MessageRecord,
    citizen: Option<CitizenKey>,
    read_at: DateTime<Utc>,
    sequence: i64,
) -> sqlx::Result<i64> {
    let message_id = record.id;
    let receipt = serde_json::json!({"readAt": read_at, "eventSequenceNbr": sequence});
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
    audit.ssin_hash = citizen;
    audit.details = serde_json::json!({"readAt": read_at});
    let audit_record = audit.record(conn).await?;
    info!(%message_id, "read receipt recorded");
    Ok(audit_record)
}
