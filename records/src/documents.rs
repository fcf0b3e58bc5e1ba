//! The documents in citizens' eBoxes (tables `documents` and `document_attachments`).
//!
//! Intake writes a document once, unpublished, in the transaction that accepts its message
//! ([`insert_unpublished`]); store publishes it once consent is confirmed ([`publish`]), which
//! gives it its receipt date and event sequence number and makes it visible to the citizen; a
//! document that will never be published (no consent, or a stage gave up) is discarded
//! ([`discard_unpublished`]). Retention deletes published documents when they expire.
//!
//! The later stages read what they act on from here ([`find`], [`digests`]) and build the
//! federation's events from it ([`Document::event_data`], [`Document::citizen_event`]), never
//! from what arrives on their queue.

use chrono::{DateTime, Utc};
use domain::citizen::{CitizenKey, CitizenKeys};
use domain::digest::Sha256Digest;
use domain::events::{self, CitizenDocumentEvent, DocumentEvent, EboxId, EventType};
use domain::ids::MessageId;
use domain::publication::Publication;
use domain::ssin::Ssin;
use domain::translated::TranslatedString;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

/// The attachment id: deterministic, so that every reader describes the same attachments.
pub fn attachment_id(message_id: MessageId, position: usize) -> Uuid {
    Uuid::new_v5(
        &message_id.as_uuid(),
        format!("attachment/{position}").as_bytes(),
    )
}

/// A document's metadata as recorded (never its bytes).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Document {
    #[sqlx(try_from = "Uuid")]
    pub message_id: MessageId,
    pub sender_id: String,
    pub sender_reference: String,
    pub citizen: String,
    pub sender_organization_id: String,
    pub sender_application_id: Option<String>,
    pub message_type_id: String,
    pub subject: Json<TranslatedString>,
    pub body_content: Option<Json<TranslatedString>>,
    pub registered_mail: bool,
    pub expiration_date: DateTime<Utc>,
    pub published: bool,
    pub receipt_date: Option<DateTime<Utc>>,
    pub event_sequence_nbr: Option<i64>,
    pub read_at: Option<DateTime<Utc>>,
}

impl Document {
    /// The event about this document, as the federation's event API describes it; `None`
    /// before it is published (it has no receipt date). `recipient` is the citizen's national
    /// number, which the record keeps only as a keyed hash: the caller checked it.
    pub fn event_data(&self, event_type: EventType, recipient: &Ssin) -> Option<DocumentEvent> {
        Some(DocumentEvent {
            event_type,
            event_correlation_id: events::correlation_id(event_type, self.message_id),
            recipient: EboxId {
                ebox_type: "citizen".to_owned(),
                ebox_id_value: recipient.expose().to_owned(),
            },
            message_id: self.message_id,
            receipt_date: self.receipt_date?,
            expiration_date: self.expiration_date,
            registered_mail: self.registered_mail,
            message_type_id: self.message_type_id.clone(),
            sender_organization_id: self.sender_organization_id.clone(),
            sender_application_id: self.sender_application_id.clone(),
            subject: self.subject.0.filled(),
        })
    }

    /// The same event in the shape the federation's event engine receives
    /// ([`CitizenDocumentEvent`], `ssin` in place of `enterpriseId`), for the events outbox
    /// ([`crate::events`]); `None` before the document is published.
    pub fn citizen_event(
        &self,
        event_type: EventType,
        recipient: &Ssin,
    ) -> Option<CitizenDocumentEvent> {
        let event = self.event_data(event_type, recipient)?;
        Some(CitizenDocumentEvent {
            event_type: event.event_type,
            event_correlation_id: event.event_correlation_id,
            ssin: recipient.clone(),
            message_id: event.message_id,
            receipt_date: event.receipt_date,
            expiration_date: event.expiration_date,
            registered_mail: event.registered_mail,
            message_type_id: event.message_type_id,
            sender_organization_id: event.sender_organization_id,
            sender_application_id: event.sender_application_id,
            subject: event.subject,
        })
    }

    /// True when `citizen` is the recipient intake recorded (under any of the hash keys).
    pub fn is_for(&self, citizen: &CitizenKeys) -> bool {
        citizen.matches(&self.citizen)
    }
}

const COLUMNS: &str = "message_id, sender_id, sender_reference, citizen, sender_organization_id,
                       sender_application_id, message_type_id, subject, body_content,
                       registered_mail, expiration_date, published, receipt_date,
                       event_sequence_nbr, read_at";

pub async fn find(conn: &mut PgConnection, id: MessageId) -> sqlx::Result<Option<Document>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents WHERE message_id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await
}

/// An attachment as recorded, without its bytes: what proofs and audit slices describe.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachmentDigest {
    pub attachment_id: Uuid,
    pub file_name: String,
    pub media_type: String,
    pub main_content: bool,
    pub size: i64,
    #[sqlx(try_from = "Vec<u8>")]
    pub sha256: Sha256Digest,
}

/// The document's attachments in order, without their bytes.
pub async fn digests(
    conn: &mut PgConnection,
    id: MessageId,
) -> sqlx::Result<Vec<AttachmentDigest>> {
    sqlx::query_as(
        "SELECT attachment_id, file_name, media_type, main_content, size, sha256
           FROM document_attachments WHERE message_id = $1 ORDER BY position",
    )
    .bind(id.as_uuid())
    .fetch_all(conn)
    .await
}

/// Writes the accepted `publication` as an unpublished document of `citizen`, with every
/// attachment's bytes and digest.
pub async fn insert_unpublished(
    conn: &mut PgConnection,
    publication: &Publication,
    citizen: &CitizenKey,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO documents (message_id, sender_id, sender_reference, citizen,
             sender_organization_id, sender_application_id, message_type_id, subject,
             body_main_content, body_content, reply_authorized, registered_mail,
             business_data_list, payment_data, for_the_attention_of, original_message_id,
             expiration_date, published)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 false)",
    )
    .bind(publication.message_id.as_uuid())
    .bind(publication.sender_id.as_str())
    .bind(publication.sender_reference.as_str())
    .bind(citizen.as_str())
    .bind(&publication.sender_organization_id)
    .bind(&publication.sender_application_id)
    .bind(&publication.message_type_id)
    .bind(Json(&publication.subject))
    .bind(publication.body_main_content)
    .bind(publication.body_content.as_ref().map(Json))
    .bind(publication.reply_authorized)
    .bind(publication.registered_mail)
    .bind(&publication.business_data_list)
    .bind(&publication.payment_data)
    .bind(&publication.for_the_attention_of)
    .bind(&publication.original_message_id)
    .bind(publication.expiration_date)
    .execute(&mut *conn)
    .await?;
    insert_attachments(conn, publication).await
}

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
        .bind(attachment.attachment_title.as_ref().map(Json))
        .bind(attachment.attachment_signed)
        .bind(i64::try_from(attachment.content.len()).unwrap_or(i64::MAX))
        .bind(attachment.sha256.as_bytes().as_slice())
        .bind(&attachment.content)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Publishes the unpublished document: it gets `receipt_date` and the next
/// `eventSequenceNbr`, which is returned, and the citizen sees it. `None` when there is no
/// unpublished document with this id.
pub async fn publish(
    conn: &mut PgConnection,
    id: MessageId,
    receipt_date: DateTime<Utc>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE documents
            SET published = true, receipt_date = $2,
                event_sequence_nbr = nextval('event_sequence_nbr')
          WHERE message_id = $1 AND NOT published
          RETURNING event_sequence_nbr",
    )
    .bind(id.as_uuid())
    .bind(receipt_date)
    .fetch_optional(conn)
    .await
}

/// Deletes the document if it was never published (the citizen did not consent, or a stage
/// gave up on the message): nothing of it is kept. A published document stays.
pub async fn discard_unpublished(conn: &mut PgConnection, id: MessageId) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM documents WHERE message_id = $1 AND NOT published")
        .bind(id.as_uuid())
        .execute(conn)
        .await?;
    Ok(())
}
