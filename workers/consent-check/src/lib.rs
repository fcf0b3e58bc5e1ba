//! The consent-check stage, and the consent registry's intake.
//!
//! [`ConsentCheck`] consumes `ebox.consent-check`: has the citizen consented to receive
//! government mail electronically, as the registry stands at that moment? If so the message goes
//! on to `ebox.store`; if not (never consented, or withdrew) nothing is stored and the sender
//! hears `no-digital-user` (`NO_DIGITAL_USER`): it must send the letter on paper. The decision,
//! with the consent state and when it last changed, is recorded (and audited) in the batch's
//! transaction; a redelivery replays the recorded decision rather than deciding again.
//!
//! [`updates::ConsentUpdates`] consumes `ebox.consent-updates`, the portal's consent and
//! preference changes.

pub mod updates;

use chrono::{SubsecRound as _, Utc};
use domain::audit::{Action, Stage};
use domain::citizen::{Consent, SsinHasher};
use domain::decision::ConsentDecision;
use domain::publication::{PUBLICATION_TYPE, Publication};
use domain::status::{Code, Status};
use queues::give_up;
use queues::status::status_message;
use queues::topology::{CONSENT_CHECK_QUEUE, STORE_QUEUE};
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing, ResultExt};
use records::audit::AuditEvent;
use records::{citizens, decisions, messages};
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
    type Message = Publication;
    const STAGE: Stage = STAGE;

    fn queue(&self) -> &'static str {
        CONSENT_CHECK_QUEUE
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
        let decision = match decisions::find(conn, message_id, STAGE).await? {
            Some(recorded) => {
                let decision: ConsentDecision = recorded.decision;
                info!(%message_id, decision = decision.as_str(), "already decided; replaying the decision");
                decision
            }
            None => self.decide(conn, &publication).await?,
        };
        match decision {
            ConsentDecision::Consented => Ok(Outcome::ack(vec![forward(&publication)?])),
            ConsentDecision::NoDigitalUser => replay_no_digital_user(conn, &publication).await,
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
    /// slice (and, when there is no consent, the sender-visible status).
    async fn decide(
        &self,
        conn: &mut PgConnection,
        publication: &Publication,
    ) -> Result<ConsentDecision, HandlerError> {
        let citizen = self.hasher.hash(&publication.recipient);
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
        decisions::record(conn, publication.message_id, STAGE, decision, &details).await?;
        let (action, code) = match decision {
            ConsentDecision::Consented => (Action::Consented, None),
            ConsentDecision::NoDigitalUser => {
                messages::set_status(
                    conn,
                    publication.message_id,
                    Status::NoDigitalUser,
                    Code::NoDigitalUser,
                    NO_DIGITAL_USER_MESSAGE,
                    Utc::now().trunc_subsecs(6),
                )
                .await?;
                (Action::NoDigitalUser, Some(Code::NoDigitalUser))
            }
        };
        let mut audit = AuditEvent::new(STAGE, action);
        audit.code = code;
        audit.sender_id = Some(publication.sender_id.to_string());
        audit.message_id = Some(publication.message_id);
        audit.sender_reference = Some(publication.sender_reference.as_str().to_owned());
        audit.ssin_hash = Some(citizen);
        audit.details = details;
        audit.record(conn).await?;
        ConsentDecided {
            message_id: publication.message_id,
            decision,
        }
        .emit();
        Ok(decision)
    }
}

/// The sender hears `no-digital-user` again, from the recorded status.
async fn replay_no_digital_user(
    conn: &mut PgConnection,
    publication: &Publication,
) -> Result<Outcome, HandlerError> {
    let message_id = publication.message_id;
    let record = match messages::find(conn, message_id).await? {
        Some(record) if record.status == Status::NoDigitalUser => record,
        _ => {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "message {message_id} has no no-digital-user status to replay"
            )));
        }
    };
    let status = record.current_status(publication.correlation_id.clone());
    Ok(Outcome::ack(vec![
        status_message(publication.sender_id.as_str(), &status).permanent()?,
    ]))
}

fn forward(publication: &Publication) -> Result<Outgoing, HandlerError> {
    Outgoing::json(
        "",
        STORE_QUEUE,
        PUBLICATION_TYPE,
        &publication.message_id.to_string(),
        publication.correlation_id.as_deref(),
        publication,
    )
    .permanent()
}
