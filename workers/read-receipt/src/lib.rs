//! The read-receipt stage: consumes `ebox.read-receipt` (bound to `readDocument` on
//! `ebox.events`) and sends the sender `read` with `readAt`, once per message however often the
//! citizen opens it: the first receipt is recorded (with the event's sequence number) and
//! audited; a redelivery of that event sends the same receipt again (it may have been lost in a
//! crash), any other `readDocument` for the message is dropped.

use chrono::{DateTime, Utc};
use common::audit::AuditEvent;
use common::events::{EventEnvelope, READ_DOCUMENT};
use common::status::{Code, Status, StatusEvent};
use common::{decisions, messages};
use queues::status::status_message;
use queues::topology::READ_RECEIPT_QUEUE;
use queues::{Handler, HandlerError, Incoming, Outcome};
use sqlx::PgConnection;
use tracing::info;

const STAGE: &str = "read-receipt";
pub const READ_MESSAGE: &str = "the citizen opened the message";

#[derive(Default)]
pub struct ReadReceipt;

impl Handler for ReadReceipt {
    fn queue(&self) -> &'static str {
        READ_RECEIPT_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let envelope: EventEnvelope = queues::decode(incoming.body, "event")?;
        if envelope.event_data.event_type != READ_DOCUMENT {
            return Ok(Outcome::ack(Vec::new()));
        }
        let message_id = envelope.event_data.message_id;
        let recorded = decisions::find(conn, message_id, STAGE)
            .await?
            .map(|d| d.details);
        let sequence = envelope.event_sequence_nbr;
        let read_at: DateTime<Utc> = match recorded
            .as_ref()
            .and_then(|d| d.get("readAt"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
        {
            // The same event again (a redelivery after a crash): the receipt may not have
            // left, so it goes again. Another readDocument for a message already read (the
            // API publishes before it commits the read mark) says nothing new: dropped.
            Some(read_at) => {
                let same_event = recorded
                    .as_ref()
                    .and_then(|d| d.get("eventSequenceNbr"))
                    .and_then(serde_json::Value::as_i64)
                    == Some(sequence);
                if !same_event {
                    info!(%message_id, "already read; a later readDocument is dropped");
                    return Ok(Outcome::ack(Vec::new()));
                }
                read_at
            }
            None => {
                let read_at = envelope.event_time;
                decisions::record(
                    conn,
                    message_id,
                    STAGE,
                    "read",
                    &serde_json::json!({"readAt": read_at, "eventSequenceNbr": sequence}),
                )
                .await?;
                messages::set_status(
                    conn,
                    message_id,
                    Status::Read,
                    Code::Read,
                    READ_MESSAGE,
                    read_at,
                )
                .await?;
                let mut audit = AuditEvent::new(STAGE, "read-confirmed");
                audit.code = Some(Code::Read.as_str().to_owned());
                audit.message_id = Some(message_id);
                audit.details = serde_json::json!({"readAt": read_at});
                audit.record(conn).await?;
                info!(%message_id, "read receipt recorded");
                read_at
            }
        };
        let record = messages::find(conn, message_id).await?.ok_or_else(|| {
            HandlerError::Permanent(anyhow::anyhow!("message {message_id} has no intake record"))
        })?;
        let status = StatusEvent {
            sender_reference: Some(record.sender_reference.clone()),
            message_id: Some(message_id),
            status: Status::Read,
            code: Code::Read.as_str().to_owned(),
            message: READ_MESSAGE.to_owned(),
            at: read_at,
            expiration_date: Some(record.expiration_date),
            read_at: Some(read_at),
            correlation_id: record.correlation_id.clone(),
        };
        Ok(Outcome::ack(vec![
            status_message(&record.sender_id, &status).map_err(HandlerError::permanent)?,
        ]))
    }
}
