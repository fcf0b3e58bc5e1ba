//! Hand-offs between the stages after intake, and the refusal of those that disagree with
//! what is recorded.
//!
//! A stage acts only on what the stage before it recorded (docs/pipeline.md, "Recorded state,
//! not messages"): a [`Handoff`] names a message and its recipient, [`verify`] finds the
//! message intake recorded for exactly that recipient, and anything else is [`refuse`]d —
//! audited as `refused`, counted (`ebox_internal_refused_total`), acknowledged, and otherwise
//! without effect. A refusal is not a give-up: a forged message must not move a genuine one to
//! `failed`.

use crate::ResultExt;
use crate::driver::HandlerError;
use crate::publisher::Outgoing;
use crate::topology::INTERNAL_EXCHANGE;
use domain::audit::{Action, Stage};
use domain::citizen::{CitizenKey, CitizenKeys, SsinHasher};
use domain::handoff::{HANDOFF_TYPE, Handoff};
use domain::ids::MessageId;
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

/// The message `handoff` names, when intake recorded it for that recipient; otherwise the
/// hand-off is refused (see [`refuse`]) and `None` returned.
pub async fn verify(
    conn: &mut PgConnection,
    stage: Stage,
    hasher: &SsinHasher,
    handoff: &Handoff,
) -> Result<Option<Verified>, HandlerError> {
    let message_id = handoff.message_id;
    let citizen = hasher.keys(&handoff.recipient);
    let Some(record) = messages::find(conn, message_id).await? else {
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
