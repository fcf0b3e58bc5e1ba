//! The store stage: keeps a consented message in the citizen's eBox.
//!
//! Consumes `ebox.store`. Stores the message's metadata and every document's bytes with their
//! SHA-256 digests in PostgreSQL until the expiration date the sender chose (one row per
//! message, unique per (sender, reference) by constraint), gives it the next
//! `eventSequenceNbr`, and then publishes `newDocument` on `ebox.events` and `published` to the
//! sender. A redelivery of a stored message publishes the same event again (same sequence
//! number and correlation id) and re-sends the status.
//!
//! [`retention`] deletes documents once they expire and tells the sender `expired`.

pub mod retention;

use chrono::{DateTime, SubsecRound as _, Utc};
use common::audit::{AuditEvent, SsinHasher};
use common::events::{self, DocumentEvent, EVENT_TYPE, EboxId, EventEnvelope, NEW_DOCUMENT};
use common::publication::Publication;
use common::status::{Code, Status};
use common::{decisions, messages};
use queues::status::status_message;
use queues::topology::{EVENTS_EXCHANGE, STORE_QUEUE};
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing};
use sqlx::PgConnection;
use tracing::info;
use uuid::Uuid;

const STAGE: &str = "store";
pub const PUBLISHED_MESSAGE: &str =
    "the message is in the citizen's eBox until its expiration date";

/// What store recorded for a message: enough to announce it again identically.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreDecision {
    pub event_sequence_nbr: i64,
    pub receipt_date: DateTime<Utc>,
}

pub struct Store {
    hasher: SsinHasher,
    provider_id: String,
}

impl Store {
    pub fn new(hasher: SsinHasher, provider_id: String) -> Self {
        Self {
            hasher,
            provider_id,
        }
    }
}

/// The attachment id: deterministic, so that a replay describes the same attachments.
pub fn attachment_id(message_id: Uuid, position: usize) -> Uuid {
    Uuid::new_v5(&message_id, format!("attachment/{position}").as_bytes())
}

impl Handler for Store {
    fn queue(&self) -> &'static str {
        STORE_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let publication: Publication = queues::decode(incoming.body, "publication")?;
        let message_id = publication.message_id;

        // The decision, not the document, says whether the message was stored: retention
        // deletes the document, and a late copy must not store it again.
        let decided = decisions::find(conn, message_id, STAGE).await?;
        let decision = match decided {
            Some(recorded) => {
                info!(%message_id, "already stored; publishing the event and status again");
                serde_json::from_value(recorded.details).map_err(HandlerError::permanent)?
            }
            None => self.store(conn, &publication).await?,
        };
        let (sequence, receipt_date) = (decision.event_sequence_nbr, decision.receipt_date);

        let record = messages::find(conn, message_id).await?.ok_or_else(|| {
            HandlerError::Permanent(anyhow::anyhow!("message {message_id} has no intake record"))
        })?;
        let status = status_message(
            &publication.sender_id,
            &record.current_status(publication.correlation_id.clone()),
        )
        .map_err(HandlerError::permanent)?;
        if record.status == Status::Expired.as_str() {
            // Deleted since: tell the sender where it stands, announce nothing.
            return Ok(Outcome::ack(vec![status]));
        }
        let event = EventEnvelope {
            event_sequence_nbr: sequence,
            event_time: receipt_date,
            event_provider_id: self.provider_id.clone(),
            event_data: DocumentEvent {
                event_type: NEW_DOCUMENT.to_owned(),
                event_correlation_id: events::correlation_id(NEW_DOCUMENT, message_id),
                recipient: EboxId {
                    ebox_type: "citizen".to_owned(),
                    ebox_id_value: publication.recipient.expose().to_owned(),
                },
                message_id,
                receipt_date,
                expiration_date: publication.expiration_date,
                registered_mail: publication.registered_mail,
                message_type_id: publication.message_type_id.clone(),
                sender_organization_id: publication.sender_organization_id.clone(),
                sender_application_id: publication.sender_application_id.clone(),
                subject: publication.subject.filled(),
            },
        };
        let event = Outgoing::json(
            EVENTS_EXCHANGE,
            NEW_DOCUMENT,
            EVENT_TYPE,
            &event.event_data.event_correlation_id.to_string(),
            publication.correlation_id.as_deref(),
            &event,
        )
        .map_err(HandlerError::permanent)?;
        Ok(Outcome::ack(vec![event, status]))
    }
}

impl Store {
    async fn store(
        &self,
        conn: &mut PgConnection,
        publication: &Publication,
    ) -> Result<StoreDecision, HandlerError> {
        let message_id = publication.message_id;
        let receipt_date = Utc::now().trunc_subsecs(6);
        let citizen = self.hasher.hash(&publication.recipient);
        let sequence: i64 = sqlx::query_scalar(
            "INSERT INTO documents (message_id, sender_id, sender_reference, citizen,
                 sender_organization_id, sender_application_id, message_type_id, subject,
                 body_main_content, body_content, reply_authorized, registered_mail,
                 business_data_list, payment_data, for_the_attention_of, original_message_id,
                 receipt_date, expiration_date, event_sequence_nbr)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, nextval('event_sequence_nbr'))
             RETURNING event_sequence_nbr",
        )
        .bind(message_id)
        .bind(&publication.sender_id)
        .bind(&publication.sender_reference)
        .bind(&citizen)
        .bind(&publication.sender_organization_id)
        .bind(&publication.sender_application_id)
        .bind(&publication.message_type_id)
        .bind(sqlx::types::Json(&publication.subject))
        .bind(publication.body_main_content)
        .bind(publication.body_content.as_ref().map(sqlx::types::Json))
        .bind(publication.reply_authorized)
        .bind(publication.registered_mail)
        .bind(&publication.business_data_list)
        .bind(&publication.payment_data)
        .bind(&publication.for_the_attention_of)
        .bind(&publication.original_message_id)
        .bind(receipt_date)
        .bind(publication.expiration_date)
        .fetch_one(&mut *conn)
        .await?;
        for (position, attachment) in publication.attachments.iter().enumerate() {
            sqlx::query(
                "INSERT INTO document_attachments (message_id, attachment_id, position, file_name,
                     media_type, main_content, attachment_title, attachment_signed, size, sha256,
                     content)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(message_id)
            .bind(attachment_id(message_id, position))
            .bind(i32::try_from(position).unwrap_or(i32::MAX))
            .bind(&attachment.file_name)
            .bind(&attachment.media_type)
            .bind(attachment.main_content)
            .bind(attachment.attachment_title.as_ref().map(sqlx::types::Json))
            .bind(attachment.attachment_signed)
            .bind(i64::try_from(attachment.content.len()).unwrap_or(i64::MAX))
            .bind(attachment.sha256.as_bytes().as_slice())
            .bind(&attachment.content)
            .execute(&mut *conn)
            .await?;
        }
        messages::set_status(
            conn,
            message_id,
            Status::Published,
            Code::Published,
            PUBLISHED_MESSAGE,
            receipt_date,
        )
        .await?;
        let mut audit = AuditEvent::new(STAGE, "stored");
        audit.code = Some(Code::Published.as_str().to_owned());
        audit.sender_id = Some(publication.sender_id.clone());
        audit.message_id = Some(message_id);
        audit.sender_reference = Some(publication.sender_reference.clone());
        audit.ssin_hash = Some(citizen);
        audit.details = serde_json::json!({
            "eventSequenceNbr": sequence,
            "receiptDate": receipt_date,
            "expirationDate": publication.expiration_date,
            "attachments": publication.attachments.iter().enumerate().map(|(position, a)| serde_json::json!({
                "attachmentId": attachment_id(message_id, position),
                "mediaType": a.media_type,
                "size": a.content.len(),
                "digest": {"digestMethod": "sha_256", "digestValue": a.sha256.to_base64url()},
            })).collect::<Vec<_>>(),
        });
        audit.record(conn).await?;
        let decision = StoreDecision {
            event_sequence_nbr: sequence,
            receipt_date,
        };
        let details = serde_json::to_value(decision).map_err(HandlerError::permanent)?;
        decisions::record(conn, message_id, STAGE, "stored", &details).await?;
        info!(%message_id, sequence, "stored");
        Ok(decision)
    }
}
