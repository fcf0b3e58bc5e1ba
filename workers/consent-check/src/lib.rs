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
use common::audit::{AuditEvent, SsinHasher};
use common::citizens::{self, Consent};
use common::publication::{PUBLICATION_TYPE, Publication};
use common::status::{Code, Status};
use common::{decisions, messages};
use queues::status::status_message;
use queues::topology::{CONSENT_CHECK_QUEUE, STORE_QUEUE};
use queues::{Handler, HandlerError, Incoming, Outcome, Outgoing};
use sqlx::PgConnection;
use tracing::info;

const STAGE: &str = "consent-check";
const CONSENTED: &str = "consented";
const NO_DIGITAL_USER: &str = "no-digital-user";
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
    fn queue(&self) -> &'static str {
        CONSENT_CHECK_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let publication: Publication = queues::decode(incoming.body, "publication")?;
        let message_id = publication.message_id;

        let decision = match decisions::find(conn, message_id, STAGE).await? {
            Some(recorded) => {
                let decision = recorded.decision;
                info!(%message_id, decision, "already decided; replaying the decision");
                decision
            }
            None => self.decide(conn, &publication).await?,
        };

        if decision == CONSENTED {
            return Ok(Outcome::ack(vec![forward(&publication)?]));
        }
        let record = match messages::find(conn, message_id).await? {
            Some(record) if record.status == Status::NoDigitalUser.as_str() => record,
            _ => {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "message {message_id} has no no-digital-user status to replay"
                )));
            }
        };
        let status = record.current_status(publication.correlation_id.clone());
        Ok(Outcome::ack(vec![
            status_message(&publication.sender_id, &status).map_err(HandlerError::permanent)?,
        ]))
    }
}

impl ConsentCheck {
    /// Decides from the registry as it stands now, and records the decision with its audit
    /// slice (and, when there is no consent, the sender-visible status).
    async fn decide(
        &self,
        conn: &mut PgConnection,
        publication: &Publication,
    ) -> Result<String, HandlerError> {
        let citizen = self.hasher.hash(&publication.recipient);
        let state = citizens::current_consent(conn, &citizen).await?;
        let consented = state.is_some_and(|s| s.consent == Consent::Granted);
        let decision = if consented {
            CONSENTED
        } else {
            NO_DIGITAL_USER
        };
        let details = serde_json::json!({
            "consent": state.map_or("never", |s| s.consent.as_str()),
            "consentSince": state.map(|s| s.since),
        });
        decisions::record(conn, publication.message_id, STAGE, decision, &details).await?;
        if !consented {
            messages::set_status(
                conn,
                publication.message_id,
                Status::NoDigitalUser,
                Code::NoDigitalUser,
                NO_DIGITAL_USER_MESSAGE,
                Utc::now().trunc_subsecs(6),
            )
            .await?;
        }
        let mut audit = AuditEvent::new(STAGE, decision_action(decision));
        audit.code = (!consented).then(|| Code::NoDigitalUser.as_str().to_owned());
        audit.sender_id = Some(publication.sender_id.clone());
        audit.message_id = Some(publication.message_id);
        audit.sender_reference = Some(publication.sender_reference.clone());
        audit.ssin_hash = Some(citizen);
        audit.details = details;
        audit.record(conn).await?;
        common::metrics::METRICS
            .consent_decisions_total
            .with_label_values(&[decision])
            .inc();
        info!(message_id = %publication.message_id, decision, "consent checked");
        Ok(decision.to_owned())
    }
}

fn decision_action(decision: &str) -> &'static str {
    if decision == CONSENTED {
        CONSENTED
    } else {
        NO_DIGITAL_USER
    }
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
    .map_err(HandlerError::permanent)
}
