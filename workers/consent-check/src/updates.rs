//! The consent registry's intake: consumes `ebox.consent-updates`, where the eBox portal
//! publishes citizens' consent and notification-preference changes.
//!
//! - `type` `ebox.consent.v1`: `{"ssin", "consent": "granted"|"withdrawn", "at"}`;
//! - `type` `ebox.preferences.v1`: `{"ssin", "language": "nl"|"fr"|"de",
//!   "channel": "email"|"partner"|"none", "email"?, "partnerId"?, "at"}`.
//!
//! The change with the latest `at` wins, so updates may arrive out of order. An invalid update
//! cannot be answered (the portal has no status queue): it is dead-lettered.

use chrono::{DateTime, Utc};
use domain::audit::Stage;
use domain::citizen::{Channel, Consent, Preferences, SsinHasher};
use domain::ssin::{Ssin, mask_numbers};
use domain::translated::Language;
use queues::topology::CONSENT_UPDATES_QUEUE;
use queues::{Decode, Handler, HandlerError, Incoming, Outcome};
use records::citizens::{self, ChangeError};
use serde::Deserialize;
use sqlx::PgConnection;

pub const CONSENT_TYPE: &str = "ebox.consent.v1";
pub const PREFERENCES_TYPE: &str = "ebox.preferences.v1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentUpdate {
    pub ssin: Ssin,
    pub consent: Consent,
    pub at: DateTime<Utc>,
}

// No deny_unknown_fields here: serde does not support it together with `flatten`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreferencesUpdate {
    pub ssin: Ssin,
    pub language: Language,
    #[serde(flatten)]
    pub channel: Channel,
    pub at: DateTime<Utc>,
}

pub struct ConsentUpdates {
    hasher: SsinHasher,
}

impl ConsentUpdates {
    pub fn new(hasher: SsinHasher) -> Self {
        Self { hasher }
    }
}

/// An update from the portal, decoded by its AMQP `type`.
#[derive(Debug)]
pub enum Update {
    Consent(ConsentUpdate),
    Preferences(PreferencesUpdate),
}

impl Decode for Update {
    fn decode(incoming: &Incoming<'_>) -> Result<Self, HandlerError> {
        let kind = incoming.properties.kind().as_ref().map(|k| k.to_string());
        match kind.as_deref() {
            Some(CONSENT_TYPE) => Ok(Update::Consent(parse(incoming.body)?)),
            Some(PREFERENCES_TYPE) => Ok(Update::Preferences(parse(incoming.body)?)),
            other => Err(HandlerError::Permanent(anyhow::anyhow!(
                "unknown update type {other:?}: expected {CONSENT_TYPE} or {PREFERENCES_TYPE}"
            ))),
        }
    }
}

impl Handler for ConsentUpdates {
    type Message = Update;
    const STAGE: Stage = Stage::ConsentUpdates;

    fn queue(&self) -> &'static str {
        CONSENT_UPDATES_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        update: Update,
        _: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let recorded = match update {
            Update::Consent(update) => {
                citizens::record_consent(
                    conn,
                    &self.hasher,
                    &update.ssin,
                    update.consent,
                    update.at,
                    "portal",
                )
                .await
            }
            Update::Preferences(update) => {
                let preferences = Preferences {
                    language: update.language,
                    channel: update.channel,
                };
                citizens::record_preferences(
                    conn,
                    &self.hasher,
                    &update.ssin,
                    &preferences,
                    update.at,
                )
                .await
            }
        };
        recorded.map_err(change_error)?;
        Ok(Outcome::ack(Vec::new()))
    }
}

/// An update that does not parse is dead-lettered; serde's message may quote the national
/// number, so digits are masked.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HandlerError> {
    serde_json::from_slice(body).map_err(|e| {
        HandlerError::Permanent(anyhow::anyhow!(
            "invalid update: {}",
            mask_numbers(&e.to_string())
        ))
    })
}

fn change_error(error: ChangeError) -> HandlerError {
    match error {
        ChangeError::Invalid(reason) => HandlerError::Permanent(anyhow::anyhow!(reason)),
        ChangeError::Database(error) => error.into(),
    }
}
