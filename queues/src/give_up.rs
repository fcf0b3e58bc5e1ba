//! Giving up on a delivery, so that no message is stranded without a word.
//!
//! The driver gives up on a delivery when its handler fails for good (a permanent fault, a
//! body that does not decode), or when the broker is about to stop redelivering it (the
//! quorum queue's delivery limit: a crash loop). The failed attempt's savepoint is rolled back;
//! then, in a savepoint of its own, the handler's [`crate::Handler::give_up`] records the
//! give-up in the audit trail and says what its sender must hear, and the delivery is
//! dead-lettered for the operators.
//!
//! For the stages between `accepted` and `published` ([`fail_message`]), the sender hears the
//! final status `failed` (`TECHNICAL_ERROR`): nothing reached the citizen.

use crate::ResultExt;
use crate::driver::{HandlerError, Incoming};
use crate::publisher::Outgoing;
use crate::status::status_message;
use chrono::{SubsecRound as _, Utc};
use domain::audit::{Action, Stage};
use domain::ids::MessageId;
use domain::ssin::mask_numbers;
use domain::status::Code;
use records::audit::AuditEvent;
use records::{documents, messages};
use sqlx::PgConnection;

/// The eBox message id an internal delivery is about: internal publications carry it as their
/// AMQP `message_id`.
pub fn message_id(incoming: &Incoming<'_>) -> Option<MessageId> {
    let raw = incoming.properties.message_id().as_ref()?;
    uuid::Uuid::parse_str(raw.as_str())
        .ok()
        .map(MessageId::from_uuid)
}

/// The eBox message id a federation event is about (`eventData.messageId`), if the body
/// says.
pub fn event_message_id(incoming: &Incoming<'_>) -> Option<MessageId> {
    serde_json::from_slice::<domain::events::EventEnvelope>(incoming.body)
        .ok()
        .map(|event| event.event_data.message_id)
}

/// What an error says, fit for the audit trail: national numbers masked, control characters
/// (which PostgreSQL text refuses, NUL first) replaced, and bounded in length.
pub fn reason(error: &anyhow::Error) -> String {
    let text = mask_numbers(&format!("{error:#}"));
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(1000)
        .collect()
}

/// The sender-visible text of a give-up at `stage`.
pub fn failed_message(stage: Stage) -> String {
    format!(
        "the {stage} stage could not process the message and set it aside for the operators; \
         nothing reached the citizen: publish it again under a new reference, or send it on paper"
    )
}

/// Moves a message still at `accepted` to `failed` and audits the give-up; returns the status
/// for its sender. A message already past `accepted` keeps its status (it was delivered): the
/// give-up is audited only.
pub async fn fail_message(
    conn: &mut PgConnection,
    stage: Stage,
    message_id: MessageId,
    error: &anyhow::Error,
) -> Result<Vec<Outgoing>, HandlerError> {
    let at = Utc::now().trunc_subsecs(6);
    let failed = messages::fail(conn, message_id, &failed_message(stage), at).await?;
    if failed.is_some() {
        // Never to be published: nothing of it is kept.
        documents::discard_unpublished(conn, message_id).await?;
    }
    let record = match &failed {
        Some(record) => Some(record.clone()),
        None => messages::find(conn, message_id).await?,
    };
    let mut audit = AuditEvent::new(stage, Action::Failed);
    audit.code = Some(Code::TechnicalError);
    audit.message_id = Some(message_id);
    if let Some(record) = &record {
        audit.sender_id = Some(record.sender_id.clone());
        audit.sender_reference = Some(record.sender_reference.clone());
    }
    audit.details = serde_json::json!({
        "reason": reason(error),
        "statusChanged": failed.is_some(),
    });
    audit.record(conn).await?;
    Ok(match failed {
        Some(record) => {
            vec![status_message(&record.sender_id, &record.current_status(None)).permanent()?]
        }
        None => Vec::new(),
    })
}

/// The give-up of a stage between `accepted` and `published`: the message the delivery names
/// fails (see [`fail_message`]); a delivery that names none is audited only.
pub async fn fail_delivery(
    conn: &mut PgConnection,
    stage: Stage,
    incoming: &Incoming<'_>,
    error: &anyhow::Error,
) -> Result<Vec<Outgoing>, HandlerError> {
    match message_id(incoming) {
        Some(message_id) => fail_message(conn, stage, message_id, error).await,
        None => audit_only(conn, stage, None, error).await,
    }
}

/// True when a stage already gave up on the message (`failed` is final): later stages then
/// leave it alone, so that a late copy (a replay, a duplicate in flight) does not deliver a
/// message whose sender was told to publish it again.
pub fn settled_as_failed(record: &messages::MessageRecord) -> bool {
    let failed = record.status == domain::status::Status::Failed;
    if failed {
        tracing::info!(message_id = %record.id, "the message ended failed; this copy is dropped");
    }
    failed
}

/// Audits a give-up that no sender hears of (the portal's updates, notifications, read
/// receipts: the message itself was delivered). `message_id` is the message it concerns,
/// when known.
pub async fn audit_only(
    conn: &mut PgConnection,
    stage: Stage,
    message_id: Option<MessageId>,
    error: &anyhow::Error,
) -> Result<Vec<Outgoing>, HandlerError> {
    let mut audit = AuditEvent::new(stage, Action::DeadLettered);
    audit.code = Some(Code::TechnicalError);
    audit.message_id = message_id;
    audit.details = serde_json::json!({ "reason": reason(error) });
    audit.record(conn).await?;
    Ok(Vec::new())
}
