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
use common::audit::{AuditEvent, SsinHasher};
use common::citizens::{self, Channel, Consent, Preferences};
use common::ssin::{Ssin, mask_numbers};
use common::translated::Language;
use queues::topology::CONSENT_UPDATES_QUEUE;
use queues::{Handler, HandlerError, Incoming, Outcome};
use serde::Deserialize;
use sqlx::PgConnection;
use tracing::info;

pub const CONSENT_TYPE: &str = "ebox.consent.v1";
pub const PREFERENCES_TYPE: &str = "ebox.preferences.v1";
const STAGE: &str = "consent-updates";

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

impl Handler for ConsentUpdates {
    fn queue(&self) -> &'static str {
        CONSENT_UPDATES_QUEUE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        let kind = incoming.properties.kind().as_ref().map(|k| k.to_string());
        match kind.as_deref() {
            Some(CONSENT_TYPE) => {
                let update: ConsentUpdate = decode(incoming.body)?;
                record_consent(
                    conn,
                    &self.hasher,
                    &update.ssin,
                    update.consent,
                    update.at,
                    "portal",
                )
                .await?;
            }
            Some(PREFERENCES_TYPE) => {
                let update: PreferencesUpdate = decode(incoming.body)?;
                let preferences = Preferences {
                    language: update.language,
                    channel: update.channel,
                };
                record_preferences(conn, &self.hasher, &update.ssin, &preferences, update.at)
                    .await?;
            }
            other => {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "unknown update type {other:?}: expected {CONSENT_TYPE} or {PREFERENCES_TYPE}"
                )));
            }
        }
        Ok(Outcome::ack(Vec::new()))
    }
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HandlerError> {
    serde_json::from_slice(body).map_err(|e| {
        HandlerError::Permanent(anyhow::anyhow!(
            "invalid update: {}",
            mask_numbers(&e.to_string())
        ))
    })
}

/// Records a consent change and its audit record (the portal's queue and the CLI both use it).
pub async fn record_consent(
    conn: &mut PgConnection,
    hasher: &SsinHasher,
    ssin: &Ssin,
    consent: Consent,
    at: DateTime<Utc>,
    source: &str,
) -> Result<(), HandlerError> {
    let citizen = hasher.hash(ssin);
    if !citizens::record_consent(conn, &citizen, consent, at, source).await? {
        // The same change again (a redelivery): recorded and audited the first time.
        return Ok(());
    }
    let mut audit = AuditEvent::new(
        STAGE,
        match consent {
            Consent::Granted => "consent-granted",
            Consent::Withdrawn => "consent-withdrawn",
        },
    );
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({"at": at, "source": source});
    audit.record(conn).await?;
    info!(
        consent = consent.as_str(),
        source, "consent change recorded"
    );
    Ok(())
}

/// Records a preference change (checked: a valid e-mail address, a registered partner).
pub async fn record_preferences(
    conn: &mut PgConnection,
    hasher: &SsinHasher,
    ssin: &Ssin,
    preferences: &Preferences,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    match &preferences.channel {
        Channel::Email { email } if !plausible_email(email) => {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "the preference's e-mail address is not valid"
            )));
        }
        Channel::Partner { partner_id } => {
            let partner = common::registry::find_partner(conn, partner_id).await?;
            if !partner.is_some_and(|p| p.active) {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "partner {partner_id:?} is not registered"
                )));
            }
        }
        _ => {}
    }
    let citizen = hasher.hash(ssin);
    let applied = citizens::record_preferences(conn, &citizen, preferences, at).await?;
    let channel = match &preferences.channel {
        Channel::Email { .. } => "email",
        Channel::Partner { .. } => "partner",
        Channel::None => "none",
    };
    // A change older than the one in force is audited as superseded, not as set.
    let mut audit = AuditEvent::new(
        STAGE,
        if applied {
            "preferences-set"
        } else {
            "preferences-superseded"
        },
    );
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({
        "at": at,
        "language": preferences.language.code(),
        "channel": channel,
    });
    audit.record(conn).await?;
    info!(channel, "notification preference recorded");
    Ok(())
}

fn plausible_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && address.len() <= 254
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
}
