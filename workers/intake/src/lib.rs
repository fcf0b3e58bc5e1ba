//! The intake stage: authenticate the sender, validate, deduplicate.
//!
//! Consumes `ebox.intake` (what senders publish to `ebox.publish`). For each publication:
//!
//! 1. the sender is the AMQP `user_id`, which RabbitMQ guarantees is the connection's user; a
//!    user with no registration has no status queue, so its message is audited and
//!    dead-lettered;
//! 2. the sender reference (`message_id`) gives the eBox message id (UUIDv5): a reference seen
//!    before with the same content re-sends the current status, with other content it is
//!    `rejected` with `DUPLICATE_REFERENCE_CONFLICT`;
//! 3. the body is decoded per its release ([`contract`]) and checked ([`validate`]);
//! 4. an accepted message is recorded ([`common::messages`]) with its audit slice in the batch's
//!    transaction, then forwarded to `ebox.consent-check`; the sender hears `accepted` or
//!    `rejected` on its status queue.

pub mod contract;
pub mod validate;

use chrono::{SubsecRound as _, Utc};
use common::audit::{AuditEvent, SsinHasher};
use common::digest::Sha256Digest;
use common::ids::{MessageId, SenderId, SenderReference};
use common::messages::{self, MessageRecord};
use common::metrics::METRICS;
use common::publication::{PUBLICATION_TYPE, Publication};
use common::registry::{self, RegisteredSender};
use common::status::{Code, Status, StatusEvent};
use contract::ContractVersion;
use queues::status::status_message;
use queues::topology::{CONSENT_CHECK_QUEUE, INTAKE_QUEUE};
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing};
use sqlx::PgConnection;
use tracing::{error, info, warn};
use uuid::Uuid;
use validate::{Envelope, Rejection};

const STAGE: &str = "intake";

pub struct Intake {
    hasher: SsinHasher,
    max_message_bytes: usize,
}

impl Intake {
    pub fn new(hasher: SsinHasher, max_message_bytes: usize) -> Self {
        Self {
            hasher,
            max_message_bytes,
        }
    }
}

/// The AMQP properties intake reads, as strings.
struct Properties {
    user_id: Option<String>,
    reference: Option<String>,
    correlation_id: Option<String>,
    kind: Option<String>,
}

impl Properties {
    fn of(incoming: &Incoming<'_>) -> Self {
        let p = incoming.properties;
        Self {
            user_id: p.user_id().as_ref().map(|v| v.to_string()),
            reference: p.message_id().as_ref().map(|v| v.to_string()),
            correlation_id: p.correlation_id().as_ref().map(|v| v.to_string()),
            kind: p.kind().as_ref().map(|v| v.to_string()),
        }
    }
}

impl Handler for Intake {
    fn queue(&self) -> &'static str {
        INTAKE_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let properties = Properties::of(&incoming);
        let sender = match &properties.user_id {
            Some(user) => registry::find_sender(conn, user).await?,
            None => None,
        };
        let Some(sender) = sender else {
            return self.dead_letter_unknown_sender(conn, &properties).await;
        };
        let sender_id = SenderId::parse(&sender.id)
            .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("registered sender id: {e}")))?;

        let reference = match properties.reference.as_deref().map(SenderReference::parse) {
            Some(Ok(reference)) => reference,
            Some(Err(error)) => {
                let rejection = Rejection::new(Code::InvalidInput, error.to_string());
                return self
                    .reject(conn, &sender, &properties, None, None, rejection)
                    .await;
            }
            None => {
                let rejection = Rejection::new(
                    Code::InvalidInput,
                    "the AMQP property message_id (the sender's reference) is required",
                );
                return self
                    .reject(conn, &sender, &properties, None, None, rejection)
                    .await;
            }
        };
        let message_id = MessageId::derive(&sender_id, &reference).as_uuid();
        let reject_with = |code: Code, message: String| Rejection::new(code, message);

        if !sender.active {
            let rejection = reject_with(
                Code::SenderNotAuthorized,
                "this sender's registration has been withdrawn".into(),
            );
            return self
                .reject(
                    conn,
                    &sender,
                    &properties,
                    Some(message_id),
                    None,
                    rejection,
                )
                .await;
        }
        if incoming.body.len() > self.max_message_bytes {
            let rejection = reject_with(
                Code::TooLarge,
                format!(
                    "the body has {} bytes; at most {} are accepted",
                    incoming.body.len(),
                    self.max_message_bytes
                ),
            );
            return self
                .reject(
                    conn,
                    &sender,
                    &properties,
                    Some(message_id),
                    None,
                    rejection,
                )
                .await;
        }
        let Some(version) = properties
            .kind
            .as_deref()
            .and_then(ContractVersion::from_type)
        else {
            let rejection = reject_with(
                Code::UnsupportedSchema,
                format!(
                    "the AMQP property type must be {} or {}, not {:?}",
                    contract::TYPE_V2,
                    contract::TYPE_V1,
                    properties.kind.as_deref().unwrap_or("")
                ),
            );
            return self
                .reject(
                    conn,
                    &sender,
                    &properties,
                    Some(message_id),
                    None,
                    rejection,
                )
                .await;
        };
        let content_sha256 = content_hash(version, incoming.body);

        if let Some(existing) = messages::find(conn, message_id).await? {
            return self
                .duplicate(
                    conn,
                    &sender,
                    &properties,
                    version,
                    &incoming,
                    existing,
                    &content_sha256,
                )
                .await;
        }

        let envelope = Envelope {
            message_id,
            sender_id: sender.id.clone(),
            sender_reference: reference.as_str().to_owned(),
            correlation_id: properties.correlation_id.clone(),
            // The database keeps microseconds: decide with the time it will store.
            accepted_at: Utc::now().trunc_subsecs(6),
        };
        let publication = match self
            .check(conn, &sender, version, incoming.body, &envelope)
            .await?
        {
            Ok(publication) => publication,
            Err(rejection) => {
                return self
                    .reject(
                        conn,
                        &sender,
                        &properties,
                        Some(message_id),
                        Some(version),
                        rejection,
                    )
                    .await;
            }
        };
        if !messages::insert_accepted(conn, &publication, &content_sha256).await? {
            // A concurrent copy of the same publication won the insert.
            let existing = messages::find(conn, message_id).await?.ok_or_else(|| {
                HandlerError::Transient(anyhow::anyhow!(
                    "message {message_id} vanished after a conflict"
                ))
            })?;
            return self
                .duplicate(
                    conn,
                    &sender,
                    &properties,
                    version,
                    &incoming,
                    existing,
                    &content_sha256,
                )
                .await;
        }
        let mut audit = AuditEvent::new(STAGE, "accepted");
        audit.code = Some(Code::Accepted.as_str().to_owned());
        audit.sender_id = Some(sender.id.clone());
        audit.message_id = Some(message_id);
        audit.sender_reference = Some(publication.sender_reference.clone());
        audit.ssin_hash = Some(self.hasher.hash(&publication.recipient));
        audit.details = provision_details(version, &publication);
        audit.record(conn).await?;

        decided(Status::Accepted, Code::Accepted);
        info!(%message_id, contract = version.as_str(), "accepted");
        let status = StatusEvent {
            sender_reference: Some(publication.sender_reference.clone()),
            message_id: Some(message_id),
            status: Status::Accepted,
            code: Code::Accepted.as_str().to_owned(),
            message: messages::ACCEPTED_MESSAGE.to_owned(),
            at: publication.accepted_at,
            expiration_date: Some(publication.expiration_date),
            read_at: None,
            correlation_id: publication.correlation_id.clone(),
        };
        Ok(Outcome::ack(vec![
            forward(&publication)?,
            status_message(&sender.id, &status).map_err(HandlerError::permanent)?,
        ]))
    }
}

impl Intake {
    /// Decodes and validates the body; the outer error is a database fault, the inner one a
    /// rejection.
    async fn check(
        &self,
        conn: &mut PgConnection,
        sender: &RegisteredSender,
        version: ContractVersion,
        body: &[u8],
        envelope: &Envelope,
    ) -> Result<Result<Publication, Rejection>, HandlerError> {
        let draft = match contract::decode(version, body) {
            Ok(draft) => draft,
            Err(error) => {
                return Ok(Err(Rejection::new(
                    Code::InvalidInput,
                    format!(
                        "the body is not a valid {} message: {}",
                        version.as_str(),
                        common::ssin::mask_numbers(&error.to_string())
                    ),
                )));
            }
        };
        let validity = match draft.message_type_id.as_deref() {
            Some(type_id) => registry::find_validity_period(conn, type_id).await?,
            None => None,
        };
        Ok(validate::validate(draft, envelope, sender, validity))
    }

    /// A reference seen before: same content re-sends the current status; other content is a
    /// conflict and the first message is left untouched.
    ///
    /// A message still at `accepted` is also forwarded again: the first forward may have been
    /// lost (a crash between commit and confirm, or a dead-lettered delivery moved back), and
    /// every later stage is idempotent, so a second copy costs a replay, never a duplicate.
    #[allow(clippy::too_many_arguments)]
    async fn duplicate(
        &self,
        conn: &mut PgConnection,
        sender: &RegisteredSender,
        properties: &Properties,
        version: ContractVersion,
        incoming: &Incoming<'_>,
        existing: MessageRecord,
        content_sha256: &[u8],
    ) -> Result<Outcome, HandlerError> {
        if existing.content_sha256 != content_sha256 {
            let rejection = Rejection::new(
                Code::DuplicateReferenceConflict,
                format!(
                    "message_id {:?} was already used for another message; use a new reference",
                    existing.sender_reference
                ),
            );
            // The status names no message id: the message with this id is the first one, and
            // it is not rejected.
            return self
                .reject(conn, sender, properties, None, Some(version), rejection)
                .await;
        }
        let mut publish = Vec::new();
        if existing.status == Status::Accepted.as_str() {
            let envelope = Envelope {
                message_id: existing.id,
                sender_id: sender.id.clone(),
                sender_reference: existing.sender_reference.clone(),
                correlation_id: existing.correlation_id.clone(),
                accepted_at: existing.accepted_at,
            };
            match self
                .check(conn, sender, version, incoming.body, &envelope)
                .await?
            {
                Ok(mut publication) => {
                    publication.expiration_date = existing.expiration_date;
                    publish.push(forward(&publication)?);
                }
                Err(rejection) => error!(
                    message_id = %existing.id,
                    code = rejection.code.as_str(),
                    "an accepted message no longer validates (the registry changed); it stays at accepted until an operator acts"
                ),
            }
        }
        let mut audit = AuditEvent::new(STAGE, "duplicate");
        audit.code = Some(existing.status_code.clone());
        audit.sender_id = Some(sender.id.clone());
        audit.message_id = Some(existing.id);
        audit.sender_reference = Some(existing.sender_reference.clone());
        audit.details = serde_json::json!({
            "contractVersion": version.as_str(),
            "currentStatus": existing.status,
            "redelivered": incoming.redelivered,
        });
        audit.record(conn).await?;
        info!(message_id = %existing.id, status = existing.status, "duplicate publication; current status re-sent");
        METRICS
            .intake_decisions_total
            .with_label_values(&["duplicate", &existing.status_code])
            .inc();
        let status = existing.current_status(properties.correlation_id.clone());
        publish.push(status_message(&sender.id, &status).map_err(HandlerError::permanent)?);
        Ok(Outcome::ack(publish))
    }

    async fn reject(
        &self,
        conn: &mut PgConnection,
        sender: &RegisteredSender,
        properties: &Properties,
        message_id: Option<Uuid>,
        version: Option<ContractVersion>,
        rejection: Rejection,
    ) -> Result<Outcome, HandlerError> {
        let mut audit = AuditEvent::new(STAGE, "rejected");
        audit.code = Some(rejection.code.as_str().to_owned());
        audit.sender_id = Some(sender.id.clone());
        audit.message_id = message_id;
        audit.sender_reference = properties.reference.clone();
        audit.ssin_hash = rejection
            .recipient
            .as_ref()
            .map(|ssin| self.hasher.hash(ssin));
        audit.details = serde_json::json!({
            "contractVersion": version.map(ContractVersion::as_str),
            "reason": rejection.message,
        });
        audit.record(conn).await?;
        decided(Status::Rejected, rejection.code);
        info!(
            message_id = message_id.map(|id| id.to_string()),
            code = rejection.code.as_str(),
            "rejected"
        );
        let status = StatusEvent {
            sender_reference: properties.reference.clone(),
            message_id,
            status: Status::Rejected,
            code: rejection.code.as_str().to_owned(),
            message: rejection.message,
            at: Utc::now(),
            expiration_date: None,
            read_at: None,
            correlation_id: properties.correlation_id.clone(),
        };
        Ok(Outcome::ack(vec![
            status_message(&sender.id, &status).map_err(HandlerError::permanent)?,
        ]))
    }

    async fn dead_letter_unknown_sender(
        &self,
        conn: &mut PgConnection,
        properties: &Properties,
    ) -> Result<Outcome, HandlerError> {
        let reason = match &properties.user_id {
            Some(_) => "the broker user has no sender registration",
            None => "the AMQP property user_id is missing, so the sender is unknown",
        };
        let mut audit = AuditEvent::new(STAGE, "dead-lettered");
        audit.code = Some("UNKNOWN_SENDER".to_owned());
        audit.sender_id = properties.user_id.clone();
        audit.sender_reference = properties.reference.clone();
        audit.details = serde_json::json!({ "reason": reason });
        audit.record(conn).await?;
        METRICS
            .intake_decisions_total
            .with_label_values(&["dead-lettered", "UNKNOWN_SENDER"])
            .inc();
        warn!(
            user_id = properties.user_id.as_deref(),
            reason, "publication from an unknown sender dead-lettered"
        );
        Ok(Outcome::dead_letter())
    }
}

/// What identifies "the same content": the release and the exact body.
fn content_hash(version: ContractVersion, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 3);
    bytes.extend_from_slice(version.as_str().as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(body);
    Sha256Digest::of(&bytes).as_bytes().to_vec()
}

fn forward(publication: &Publication) -> Result<Outgoing, HandlerError> {
    Outgoing::json(
        "",
        CONSENT_CHECK_QUEUE,
        PUBLICATION_TYPE,
        &publication.message_id.to_string(),
        publication.correlation_id.as_deref(),
        publication,
    )
    .map_err(HandlerError::permanent)
}

/// The audit details of a provision: what was delivered, never the content.
fn provision_details(version: ContractVersion, publication: &Publication) -> serde_json::Value {
    serde_json::json!({
        "contractVersion": version.as_str(),
        "messageTypeId": publication.message_type_id,
        "senderOrganizationId": publication.sender_organization_id,
        "senderApplicationId": publication.sender_application_id,
        "expirationDate": publication.expiration_date,
        "bodyMainContent": publication.body_main_content,
        "attachments": publication.attachments.iter().map(|a| serde_json::json!({
            "mediaType": a.media_type,
            "size": a.content.len(),
            "mainContent": a.main_content,
            "digest": {"digestMethod": "sha_256", "digestValue": a.sha256.to_base64url()},
        })).collect::<Vec<_>>(),
    })
}

fn decided(status: Status, code: Code) {
    METRICS
        .intake_decisions_total
        .with_label_values(&[status.as_str(), code.as_str()])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_hash_tells_releases_apart() {
        assert_ne!(
            content_hash(ContractVersion::V1, b"{}"),
            content_hash(ContractVersion::V2, b"{}")
        );
    }
}
