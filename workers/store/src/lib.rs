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

pub mod proof;
pub mod retention;

use chrono::{DateTime, SubsecRound as _, Utc};
use domain::audit::{Action, Stage};
use domain::citizen::{CitizenKey, SsinHasher};
use domain::decision::StoreDecision;
use domain::events::{self, DocumentEvent, EVENT_TYPE, EboxId, EventEnvelope, EventType};
use domain::ids::MessageId;
use domain::publication::Publication;
use domain::status::{Code, Status};
use evidence::keys::Signer;
use queues::give_up;
use queues::status::status_message;
use queues::topology::{EVENTS_EXCHANGE, STORE_QUEUE};
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt};
use records::audit::AuditEvent;
use records::{decisions, messages};
use sqlx::PgConnection;
use std::sync::Arc;
use tracing::info;
use uuid::Uuid;

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

/// The attachment id: deterministic, so that a replay describes the same attachments.
pub fn attachment_id(message_id: MessageId, position: usize) -> Uuid {
    Uuid::new_v5(
        &message_id.as_uuid(),
        format!("attachment/{position}").as_bytes(),
    )
}

impl Handler for Store {
    type Message = Publication;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        STORE_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        publication: Publication,
        _: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let message_id = publication.message_id;
        if give_up::settled_as_failed(conn, message_id).await? {
            // A stage gave up on it and its sender was told to publish again: a late copy
            // (a replay, a duplicate in flight) must not deliver it after all.
            return Ok(Outcome::ack(Vec::new()));
        }
        // The decision, not the document, says whether the message was stored: retention
        // deletes the document, and a late copy must not store it again.
        let announcement = match decisions::find::<StoreDecision>(conn, message_id, STAGE).await? {
            Some(recorded) => {
                info!(%message_id, "already stored; publishing the event and status again");
                serde_json::from_value(recorded.details).permanent()?
            }
            None => self.store(conn, &publication).await?,
        };
        let record = messages::find(conn, message_id).await?.ok_or_else(|| {
            HandlerError::Permanent(anyhow::anyhow!("message {message_id} has no intake record"))
        })?;
        let status = status_message(
            publication.sender_id.as_str(),
            &record.current_status(publication.correlation_id.clone()),
        )
        .permanent()?;
        if record.status == Status::Expired {
            // Deleted since: tell the sender where it stands, announce nothing.
            return Ok(Outcome::ack(vec![status]));
        }
        let event = self.new_document(&publication, announcement)?;
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
    /// Keeps the document, moves the status to `published`, audits, and records the decision,
    /// all in the batch's transaction.
    async fn store(
        &self,
        conn: &mut PgConnection,
        publication: &Publication,
    ) -> Result<Announcement, HandlerError> {
        let message_id = publication.message_id;
        let receipt_date = Utc::now().trunc_subsecs(6);
        let citizen = self.hasher.hash(&publication.recipient);
        let sequence = insert_document(conn, publication, &citizen, receipt_date).await?;
        insert_attachments(conn, publication).await?;
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
        let audit_record = audit_stored(conn, publication, citizen, announcement).await?;
        let proof = proof::proof_of_deposit(
            &self.signer,
            &self.provider_id,
            publication,
            receipt_date,
            audit_record,
        )
        .permanent()?;
        messages::set_proof_of_deposit(conn, message_id, &proof).await?;
        let details = serde_json::to_value(announcement).permanent()?;
        decisions::record(conn, message_id, STAGE, StoreDecision::Stored, &details).await?;
        info!(%message_id, sequence, "stored");
        Ok(announcement)
    }

    /// The `newDocument` event, the same on every replay (sequence number, time, correlation
    /// id).
    fn new_document(
        &self,
        publication: &Publication,
        announcement: Announcement,
    ) -> Result<Outgoing, HandlerError> {
        let message_id = publication.message_id;
        let event = EventEnvelope {
            event_sequence_nbr: announcement.event_sequence_nbr,
            event_time: announcement.receipt_date,
            event_provider_id: self.provider_id.clone(),
            event_data: DocumentEvent {
                event_type: EventType::NewDocument,
                event_correlation_id: events::correlation_id(EventType::NewDocument, message_id),
                recipient: EboxId {
                    ebox_type: "citizen".to_owned(),
                    ebox_id_value: publication.recipient.expose().to_owned(),
                },
                message_id,
                receipt_date: announcement.receipt_date,
                expiration_date: publication.expiration_date,
                registered_mail: publication.registered_mail,
                message_type_id: publication.message_type_id.clone(),
                sender_organization_id: publication.sender_organization_id.clone(),
                sender_application_id: publication.sender_application_id.clone(),
                subject: publication.subject.filled(),
            },
        };
        Outgoing::json(
            EVENTS_EXCHANGE,
            EventType::NewDocument.as_str(),
            EVENT_TYPE,
            &event.event_data.event_correlation_id.to_string(),
            publication.correlation_id.as_deref(),
            &event,
        )
        .permanent()
    }
}

/// The document's metadata, with the next `eventSequenceNbr`; returns that number.
async fn insert_document(
    conn: &mut PgConnection,
    publication: &Publication,
    citizen: &CitizenKey,
    receipt_date: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO documents (message_id, sender_id, sender_reference, citizen,
             sender_organization_id, sender_application_id, message_type_id, subject,
             body_main_content, body_content, reply_authorized, registered_mail,
             business_data_list, payment_data, for_the_attention_of, original_message_id,
             receipt_date, expiration_date, event_sequence_nbr)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, nextval('event_sequence_nbr'))
         RETURNING event_sequence_nbr",
    )
    .bind(publication.message_id.as_uuid())
    .bind(publication.sender_id.as_str())
    .bind(publication.sender_reference.as_str())
    .bind(citizen.as_str())
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
    .fetch_one(conn)
    .await
}

/// Every attachment's bytes with its digest.
async fn insert_attachments(
    conn: &mut PgConnection,
    publication: &Publication,
) -> sqlx::Result<()> {
    let message_id = publication.message_id;
    for (position, attachment) in publication.attachments.iter().enumerate() {
        sqlx::query(
            "INSERT INTO document_attachments (message_id, attachment_id, position, file_name,
                 media_type, main_content, attachment_title, attachment_signed, size, sha256,
                 content)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(message_id.as_uuid())
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
    Ok(())
}

/// The audit slice of a provision: what was kept, never the content.
async fn audit_stored(
    conn: &mut PgConnection,
    publication: &Publication,
    citizen: CitizenKey,
    announcement: Announcement,
) -> sqlx::Result<i64> {
    let message_id = publication.message_id;
    let mut audit = AuditEvent::new(STAGE, Action::Stored);
    audit.code = Some(Code::Published);
    audit.sender_id = Some(publication.sender_id.to_string());
    audit.message_id = Some(message_id);
    audit.sender_reference = Some(publication.sender_reference.as_str().to_owned());
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({
        "eventSequenceNbr": announcement.event_sequence_nbr,
        "receiptDate": announcement.receipt_date,
        "expirationDate": publication.expiration_date,
        "attachments": publication.attachments.iter().enumerate().map(|(position, a)| serde_json::json!({
            "attachmentId": attachment_id(message_id, position),
            "mediaType": a.media_type,
            "size": a.content.len(),
            "digest": {"digestMethod": "sha_256", "digestValue": a.sha256.to_base64url()},
        })).collect::<Vec<_>>(),
    });
    audit.record(conn).await
}
