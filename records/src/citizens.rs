//! The citizens' registry: consent to electronic delivery (with its history) and notification
//! preferences. Both come from the eBox portal (queue `ebox.consent-updates`) or the CLI; for
//! both, the change with the latest `at` wins, so out-of-order updates are safe.
//!
//! A citizen is identified here by the keyed hash of their national number
//! ([`CitizenKey`]), never by the number.

use crate::audit::AuditEvent;
use crate::vocabulary;
use chrono::{DateTime, Utc};
use domain::audit::{Action, Stage};
use domain::citizen::{
    Channel, ChannelKind, CitizenKey, CitizenKeys, Consent, ConsentState, Preferences, SsinHasher,
};
use domain::ssin::Ssin;
use domain::translated::Language;
use sqlx::PgConnection;
use tracing::info;

/// Why a change was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The change itself is wrong (a malformed address, an unknown partner): retrying cannot
    /// help.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Records a consent change and its audit record (the portal's queue and the CLI both use
/// it); the same change again (a redelivery) changes nothing.
pub async fn record_consent(
    conn: &mut PgConnection,
    hasher: &SsinHasher,
    ssin: &Ssin,
    consent: Consent,
    at: DateTime<Utc>,
    source: &str,
) -> Result<(), ChangeError> {
    let citizen = hasher.hash(ssin);
    if !insert_consent(conn, &citizen, consent, at, source).await? {
        // Recorded and audited the first time.
        return Ok(());
    }
    let action = match consent {
        Consent::Granted => Action::ConsentGranted,
        Consent::Withdrawn => Action::ConsentWithdrawn,
    };
    let mut audit = AuditEvent::new(Stage::ConsentUpdates, action);
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({"at": at, "source": source});
    audit.record(conn).await?;
    info!(
        consent = consent.as_str(),
        source, "consent change recorded"
    );
    Ok(())
}

/// Records a preference change (checked: a valid e-mail address, a registered partner) with
/// its audit record; a change older than the one in force is audited as superseded.
pub async fn record_preferences(
    conn: &mut PgConnection,
    hasher: &SsinHasher,
    ssin: &Ssin,
    preferences: &Preferences,
    at: DateTime<Utc>,
) -> Result<(), ChangeError> {
    match &preferences.channel {
        Channel::Email { email } if !plausible_email(email) => {
            return Err(ChangeError::Invalid(
                "the preference's e-mail address is not valid".into(),
            ));
        }
        Channel::Partner { partner_id } => {
            let partner = crate::registry::find_partner(conn, partner_id).await?;
            if !partner.is_some_and(|p| p.active) {
                return Err(ChangeError::Invalid(format!(
                    "partner {partner_id:?} is not registered"
                )));
            }
        }
        _ => {}
    }
    let citizen = hasher.hash(ssin);
    let applied = upsert_preferences(conn, &citizen, preferences, at).await?;
    let channel = preferences.channel.kind();
    let action = if applied {
        Action::PreferencesSet
    } else {
        Action::PreferencesSuperseded
    };
    let mut audit = AuditEvent::new(Stage::ConsentUpdates, action);
    audit.ssin_hash = Some(citizen);
    audit.details = serde_json::json!({
        "at": at,
        "language": preferences.language.code(),
        "channel": channel,
    });
    audit.record(conn).await?;
    info!(
        channel = channel.as_str(),
        "notification preference recorded"
    );
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

/// Records a consent change (idempotent for the same citizen, moment and value); `false` when
/// it was recorded before.
async fn insert_consent(
    conn: &mut PgConnection,
    citizen: &CitizenKey,
    consent: Consent,
    at: DateTime<Utc>,
    source: &str,
) -> sqlx::Result<bool> {
    let recorded = sqlx::query(
        "INSERT INTO consent_changes (citizen, consent, at, source) VALUES ($1, $2, $3, $4)
         ON CONFLICT (citizen, at, consent) DO NOTHING",
    )
    .bind(citizen.as_str())
    .bind(consent.as_str())
    .bind(at)
    .bind(source)
    .execute(conn)
    .await?;
    Ok(recorded.rows_affected() == 1)
}

/// The consent in force now; `None` when the citizen never consented nor withdrew.
pub async fn current_consent(
    conn: &mut PgConnection,
    citizen: &CitizenKeys,
) -> sqlx::Result<Option<ConsentState>> {
    let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT consent, at FROM consent_changes WHERE citizen = ANY($1)
          ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(citizen.all())
    .fetch_optional(conn)
    .await?;
    row.map(|(consent, since)| {
        Ok(ConsentState {
            consent: vocabulary::decode(&consent, "consent_changes.consent")?,
            since,
        })
    })
    .transpose()
}

/// Sets the preferences unless a later change is already recorded; `false` when it was not
/// applied (an older change arriving late).
async fn upsert_preferences(
    conn: &mut PgConnection,
    citizen: &CitizenKey,
    preferences: &Preferences,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let (email, partner) = match &preferences.channel {
        Channel::Email { email } => (Some(email.as_str()), None),
        Channel::Partner { partner_id } => (None, Some(partner_id.as_str())),
        Channel::None => (None, None),
    };
    let applied = sqlx::query(
        "INSERT INTO citizen_preferences (citizen, language, channel, email, partner_id, at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (citizen) DO UPDATE
             SET language = $2, channel = $3, email = $4, partner_id = $5, at = $6
             WHERE citizen_preferences.at <= $6",
    )
    .bind(citizen.as_str())
    .bind(preferences.language.code())
    .bind(preferences.channel.kind().as_str())
    .bind(email)
    .bind(partner)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(applied.rows_affected() == 1)
}

/// The preferences in force: the latest recorded under any of the citizen's keys.
pub async fn preferences(
    conn: &mut PgConnection,
    citizen: &CitizenKeys,
) -> sqlx::Result<Option<Preferences>> {
    let row: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT language, channel, email, partner_id FROM citizen_preferences
          WHERE citizen = ANY($1) ORDER BY at DESC LIMIT 1",
    )
    .bind(citizen.all())
    .fetch_optional(conn)
    .await?;
    row.map(|(language, channel, email, partner_id)| {
        let language = Language::ALL
            .into_iter()
            .find(|l| l.code() == language)
            .ok_or_else(|| {
                sqlx::Error::Decode(
                    format!("citizen_preferences.language holds {language:?}").into(),
                )
            })?;
        let kind: ChannelKind = vocabulary::decode(&channel, "citizen_preferences.channel")?;
        let channel = Channel::from_parts(kind, email.or(partner_id)).ok_or_else(|| {
            sqlx::Error::Decode(
                format!("citizen_preferences: channel {kind} without its target").into(),
            )
        })?;
        Ok(Preferences { language, channel })
    })
    .transpose()
}
