//! Hand-offs between the stages after intake, and the refusal of those that disagree with
//! what is recorded.
//!
//! A stage acts only on what the stage before it recorded (docs/pipeline.md, "Recorded state,
//! not messages"): a [`Handoff`] names a message and its recipient, [`verify`] finds the
//! message intake recorded for exactly that recipient, and anything else is [`refuse`]d —
//! audited as `refused`, counted (`ebox_internal_refused_total`), acknowledged, and otherwise
//! without effect. A refusal is not a give-up: a forged message must not move a genuine one to
//! `failed`.
//!
//! [`verify`] locks the message's record until the batch commits, so that a sender's
//! withdrawal (which locks it too) and a stage's decision take turns; a stage that then finds
//! the message withdrawn stops there ([`halted`]): audited as `halted`, acknowledged, nothing
//! published.

use crate::ResultExt;
use crate::driver::HandlerError;
use crate::publisher::Outgoing;
use crate::topology::INTERNAL_EXCHANGE;
use domain::audit::{Action, Stage};
use domain::citizen::{CitizenKey, CitizenKeys, SsinHasher};
use domain::handoff::{HANDOFF_TYPE, Handoff};
use domain::ids::MessageId;
use domain::status::Status;
use records::audit::AuditEvent;
use records::messages::{self, MessageRecord};
use runtime::internal_events::InternalRefused;
use sqlx::PgConnection;

/// The hand-off of `handoff` to the stage consuming `queue`, through [`INTERNAL_EXCHANGE`].
pub fn forward(
    queue: &str,
    handoff: &Handoff,
    correlation_id: Option<&str>,
) -> Result<Outgoing, HandlerError> {
    Outgoing::json(
        INTERNAL_EXCHANGE,
        queue,
        HANDOFF_TYPE,
        &handoff.message_id.to_string(),
        correlation_id,
        handoff,
    )
    .permanent()
}

/// A hand-off found genuine: the message as recorded, and its recipient's keys.
pub struct Verified {
    pub record: MessageRecord,
    pub citizen: CitizenKeys,
}

/// The message `handoff` names, when intake recorded it for that recipient, its record locked
/// until the batch commits; otherwise the hand-off is refused (see [`refuse`]) and `None`
/// returned.
pub async fn verify(
    conn: &mut PgConnection,
    stage: Stage,
    hasher: &SsinHasher,
    handoff: &Handoff,
) -> Result<Option<Verified>, HandlerError> {
    let message_id = handoff.message_id;
    let citizen = hasher.keys(&handoff.recipient);
    let Some(record) = messages::lock(conn, message_id).await? else {
        refuse(
            conn,
            stage,
            message_id,
            None,
            "no message was accepted with this id",
        )
        .await?;
        return Ok(None);
    };
    if !record
        .citizen
        .as_deref()
        .is_some_and(|stored| citizen.matches(stored))
    {
        let reason = "the recipient is not the one intake recorded for this message";
        refuse(conn, stage, message_id, Some(&record), reason).await?;
        return Ok(None);
    }
    Ok(Some(Verified { record, citizen }))
}

/// Refuses an internal message about `message_id` that disagrees with what is recorded:
/// audited with `reason`, counted, and nothing else. `record` names the message's sender in
/// the audit when the message exists.
pub async fn refuse(
    conn: &mut PgConnection,
    stage: Stage,
    message_id: MessageId,
    record: Option<&MessageRecord>,
    reason: &str,
) -> sqlx::Result<()> {
    let mut audit = AuditEvent::new(stage, Action::Refused);
    audit.message_id = Some(message_id);
    if let Some(record) = record {
        audit.sender_id = Some(record.sender_id.clone());
        audit.sender_reference = Some(record.sender_reference.clone());
        audit.ssin_hash = record.citizen.clone().map(CitizenKey::from_stored);
    }
    audit.details = serde_json::json!({ "reason": reason });
    audit.record(conn).await?;
    InternalRefused {
        stage,
        message_id: Some(message_id),
        reason,
    }
    .emit();
    Ok(())
}

/// True when the sender withdrew the message (`withdrawn`): the stage then does nothing with
/// it — no decision, no status, no event — and audits that it stopped (`halted`, naming the
/// stage). Not a refusal: the message is genuine, and nothing is counted as a forgery.
pub async fn halted(
    conn: &mut PgConnection,
    stage: Stage,
    record: &MessageRecord,
) -> sqlx::Result<bool> {
    if record.status != Status::Withdrawn {
        return Ok(false);
    }
    let mut audit = AuditEvent::new(stage, Action::Halted);
    audit.code = Some(record.status_code);
    audit.message_id = Some(record.id);
    audit.sender_id = Some(record.sender_id.clone());
    audit.sender_reference = Some(record.sender_reference.clone());
    audit.ssin_hash = record.citizen.clone().map(CitizenKey::from_stored);
    audit.details = serde_json::json!({
        "reason": "the sender withdrew the message: it goes no further",
    });
    audit.record(conn).await?;
    tracing::info!(message_id = %record.id, %stage, "the sender withdrew the message; this stage stops");
    Ok(true)
}
