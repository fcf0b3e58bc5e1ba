//! The citizens' registry: consent to electronic delivery (with its history) and notification
//! preferences. Both come from the eBox portal (queue `ebox.consent-updates`) or the CLI; for
//! both, the change with the latest `at` wins, so out-of-order updates are safe.
//!
//! A citizen is identified here by the keyed hash of their national number
//! ([`crate::audit::SsinHasher`]), never by the number.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    Granted,
    Withdrawn,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Granted => "granted",
            Consent::Withdrawn => "withdrawn",
        }
    }
}

/// The consent in force, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentState {
    pub consent: Consent,
    pub since: DateTime<Utc>,
}

/// Records a consent change (idempotent for the same citizen, moment and value); `false` when
/// it was recorded before.
pub async fn record_consent(
    conn: &mut PgConnection,
    citizen: &str,
    consent: Consent,
    at: DateTime<Utc>,
    source: &str,
) -> sqlx::Result<bool> {
    let recorded = sqlx::query(
        "INSERT INTO consent_changes (citizen, consent, at, source) VALUES ($1, $2, $3, $4)
         ON CONFLICT (citizen, at, consent) DO NOTHING",
    )
    .bind(citizen)
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
    citizen: &str,
) -> sqlx::Result<Option<ConsentState>> {
    let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT consent, at FROM consent_changes WHERE citizen = $1 ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(citizen)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(consent, since)| ConsentState {
        consent: if consent == "granted" {
            Consent::Granted
        } else {
            Consent::Withdrawn
        },
        since,
    }))
}

/// How a citizen wants to hear about a new document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Channel {
    Email {
        email: String,
    },
    Partner {
        #[serde(rename = "partnerId")]
        partner_id: String,
    },
    /// Explicitly opted out of notifications.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub language: crate::translated::Language,
    pub channel: Channel,
}

/// Sets the preferences unless a later change is already recorded; `false` when it was not
/// applied (an older change arriving late).
pub async fn record_preferences(
    conn: &mut PgConnection,
    citizen: &str,
    preferences: &Preferences,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let (channel, email, partner) = match &preferences.channel {
        Channel::Email { email } => ("email", Some(email.as_str()), None),
        Channel::Partner { partner_id } => ("partner", None, Some(partner_id.as_str())),
        Channel::None => ("none", None, None),
    };
    let applied = sqlx::query(
        "INSERT INTO citizen_preferences (citizen, language, channel, email, partner_id, at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (citizen) DO UPDATE
             SET language = $2, channel = $3, email = $4, partner_id = $5, at = $6
             WHERE citizen_preferences.at <= $6",
    )
    .bind(citizen)
    .bind(preferences.language.code())
    .bind(channel)
    .bind(email)
    .bind(partner)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(applied.rows_affected() == 1)
}

pub async fn preferences(
    conn: &mut PgConnection,
    citizen: &str,
) -> sqlx::Result<Option<Preferences>> {
    let row: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT language, channel, email, partner_id FROM citizen_preferences WHERE citizen = $1",
    )
    .bind(citizen)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(language, channel, email, partner_id)| {
        let language = crate::translated::Language::ALL
            .into_iter()
            .find(|l| l.code() == language)?;
        let channel = match channel.as_str() {
            "email" => Channel::Email { email: email? },
            "partner" => Channel::Partner {
                partner_id: partner_id?,
            },
            _ => Channel::None,
        };
        Some(Preferences { language, channel })
    }))
}
