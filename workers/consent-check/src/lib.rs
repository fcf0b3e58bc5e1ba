//! The consent-check stage, and the consent registry's intake.
//!
//! [`ConsentCheck`] consumes `ebox.consent-check`: has the citizen consented to receive
//! government mail electronically, as the registry stands at that moment? It acts on the
//! message intake recorded for the hand-off's recipient (a hand-off that disagrees is refused,
//! see [`queues::handoff`]). If so the hand-off goes on to `ebox.store`; if not (never
//! consented, or withdrew) the unpublished document is discarded and the sender hears
//! `no-digital-user` (`NO_DIGITAL_USER`): it must send the letter on paper. The decision,
//! with the consent state and when it last changed, is recorded (and audited) in the batch's
//! transaction; a redelivery replays the recorded decision rather than deciding again. A message
//! its sender withdrew meanwhile goes no further ([`queues::handoff::halted`]).
//!
//! [`updates::ConsentUpdates`] consumes `ebox.consent-updates`, the portal's consent and
//! preference changes.

pub mod updates;

use chrono::{SubsecRound as _, Utc};
use domain::audit::{Action, Stage};
use domain::citizen::{CitizenKeys, Consent, SsinHasher};
use domain::decision::ConsentDecision;
use domain::handoff::Handoff;
use domain::ids::MessageId;
use domain::status::{Code, Status};
use queues::handoff::{self, Verified};
use queues::status::status_message;
use queues::topology::{CONSENT_CHECK_QUEUE, STORE_QUEUE};
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt, give_up};
use records::audit::AuditEvent;
use records::messages::MessageRecord;
use records::{citizens, decisions, documents, messages};
use runtime::internal_events::ConsentDecided;
use sqlx::PgConnection;
use tracing::info;

const STAGE: Stage = Stage::ConsentCheck;
pub const NO_DIGITAL_USER_MESSAGE: &str =
    "the citizen has not consented to receive government mail electronically: send it on paper";

pub struct ConsentCheck {
    hasher: SsinHasher,
}

impl ConsentCheck {
    pub fn new(hasher: SsinHasher) -> Self {
        Self { hasher }
    }
}

impl Handler for ConsentCheck {
    type Message = Handoff;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        CONSENT_CHECK_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        handoff: Handoff,
        _: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let Some(Verified { record, citizen }) =
            handoff::verify(conn, STAGE, &self.hasher, &handoff).await?
        else {
            return Ok(Outcome::ack(Vec::new()));
        };
        let message_id = record.id;
        if give_up::settled_as_failed(&record) || handoff::halted(conn, STAGE, &record).await? {
            return Ok(Outcome::ack(Vec::new()));
        }
        let decision = match decisions::find(conn, message_id, STAGE).await? {
            Some(recorded) => {
                let decision: ConsentDecision = recorded.decision;
                info!(%message_id, decision = decision.as_str(), "already decided; replaying the decision");
                decision
            }
            None => self.decide(conn, &record, citizen).await?,
        };
        match decision {
            ConsentDecision::Consented => Ok(Outcome::ack(vec![handoff::forward(
                STORE_QUEUE,
                &handoff,
                record.correlation_id.as_deref(),
            )?])),
            ConsentDecision::NoDigitalUser => replay_no_digital_user(conn, message_id).await,
        }
    }

    /// Nothing reached the citizen: the sender hears `failed`.
    async fn give_up(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
        error: &anyhow::Error,
    ) -> Result<Vec<Outgoing>, HandlerError> {
        give_up::fail_delivery(conn, STAGE, &incoming, error).await
    }
}

impl ConsentCheck {
    /// Decides from the registry as it stands now, and records the decision with its audit
    /// slice (and, when there is no consent, the sender-visible status, and the unpublished
    /// document is discarded: nothing is kept for a citizen who did not consent).
    async fn decide(
        &self,
        conn: &mut PgConnection,
        record: &MessageRecord,
        citizen: CitizenKeys,
    ) -> Result<ConsentDecision, HandlerError> {
        let message_id = record.id;
        let state = citizens::current_consent(conn, &citizen).await?;
        let decision = if state.is_some_and(|s| s.consent == Consent::Granted) {
            ConsentDecision::Consented
        } else {
            ConsentDecision::NoDigitalUser
        };
        let details = serde_json::json!({
            "consent": state.map_or("never", |s| s.consent.as_str()),
            "consentSince": state.map(|s| s.since),
        });
        decisions::record(conn, message_id, STAGE, decision, &details).await?;
        let (action, code) = match decision {
            ConsentDecision::Consented => (Action::Consented, None),
            ConsentDecision::NoDigitalUser => {
                messages::set_status(
                    conn,
                    message_id,
                    Status::NoDigitalUser,
                    Code::NoDigitalUser,
                    NO_DIGITAL_USER_MESSAGE,
                    Utc::now().trunc_subsecs(6),
                )
                .await?;
                documents::discard_unpublished(conn, message_id).await?;
                (Action::NoDigitalUser, Some(Code::NoDigitalUser))
            }
        };
        let mut audit = AuditEvent::new(STAGE, action);
        audit.code = code;
        audit.sender_id = Some(record.sender_id.clone());
        audit.message_id = Some(message_id);
        audit.sender_reference = Some(record.sender_reference.clone());
        audit.ssin_hash = Some(citizen.current().clone());
        audit.details = details;
        audit.record(conn).await?;
        ConsentDecided {
            message_id,
            decision,
        }
        .emit();
        Ok(decision)
    }
}

/// The sender hears `no-digital-user` again, from the recorded status.
async fn replay_no_digital_user(
    conn: &mut PgConnection,
    message_id: MessageId,
) -> Result<Outcome, HandlerError> {
    let record = match messages::find(conn, message_id).await? {
        Some(record) if record.status == Status::NoDigitalUser => record,
        _ => {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "message {message_id} has no no-digital-user status to replay"
            )));
        }
    };
    let status = record.current_status(None);
    Ok(Outcome::ack(vec![
        status_message(&record.sender_id, &status).permanent()?,
    ]))
}
