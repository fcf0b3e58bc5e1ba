//! Reference data: the registered senders, their applications and the message types they may
//! publish. The operator's YAML file is the source of truth; `ebox registry load` applies it.

use crate::cbe::CbeNumber;
use crate::ids::SenderId;
use crate::translated::TranslatedString;
use anyhow::Context;
use chrono::{DateTime, Days, Months, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use std::collections::HashSet;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryFile {
    #[serde(default)]
    pub senders: Vec<SenderEntry>,
    #[serde(default)]
    pub message_types: Vec<MessageTypeEntry>,
    #[serde(default)]
    pub partners: Vec<PartnerEntry>,
}

/// A service provider's interface (partner app) that citizens may choose for notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartnerEntry {
    pub id: String,
    pub name: TranslatedString,
    /// Where notifications are POSTed: https, or http to a loopback address (for tests).
    pub webhook_url: String,
    /// The environment variable that holds the partner's signing secret:
    /// `EBOX_PARTNER_<NAME>_SECRET`.
    pub secret_env: String,
}

/// True for https URLs, and for http URLs to this machine only.
pub fn webhook_url_allowed(url: &str) -> bool {
    url.starts_with("https://")
        || ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|prefix| {
                url.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SenderEntry {
    pub id: SenderId,
    pub organization_id: CbeNumber,
    pub name: TranslatedString,
    #[serde(default)]
    pub applications: Vec<ApplicationEntry>,
    #[serde(default)]
    pub message_types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationEntry {
    pub id: String,
    pub name: TranslatedString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageTypeEntry {
    pub id: String,
    pub name: TranslatedString,
    #[serde(default)]
    pub description: Option<TranslatedString>,
    pub validity_period: ValidityPeriod,
}

/// How long messages of a type stay available when the sender does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidityPeriod {
    pub validity_period_number: u32,
    pub validity_period_unit: PeriodUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodUnit {
    Day,
    Month,
    Year,
}

impl PeriodUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodUnit::Day => "day",
            PeriodUnit::Month => "month",
            PeriodUnit::Year => "year",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day" => Some(PeriodUnit::Day),
            "month" => Some(PeriodUnit::Month),
            "year" => Some(PeriodUnit::Year),
            _ => None,
        }
    }
}

impl ValidityPeriod {
    /// The end of the period started at `from`; `None` if it leaves the calendar.
    pub fn end_from(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let n = self.validity_period_number;
        match self.validity_period_unit {
            PeriodUnit::Day => from.checked_add_days(Days::new(n.into())),
            PeriodUnit::Month => from.checked_add_months(Months::new(n)),
            PeriodUnit::Year => from.checked_add_months(Months::new(n.checked_mul(12)?)),
        }
    }
}

impl RegistryFile {
    /// Parses and checks the whole file, reporting every problem at once.
    pub fn parse(yaml: &str) -> Result<Self, Vec<String>> {
        let file: RegistryFile = serde_yaml_ng::from_str(yaml).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let mut type_ids = HashSet::new();
        for message_type in &file.message_types {
            if message_type.id.trim().is_empty() {
                problems.push("a message type has an empty id".to_owned());
            }
            if !type_ids.insert(message_type.id.as_str()) {
                problems.push(format!("message type {} is listed twice", message_type.id));
            }
            if !message_type.name.has_any() {
                problems.push(format!("message type {} has no name", message_type.id));
            }
            if message_type.validity_period.validity_period_number == 0 {
                problems.push(format!(
                    "message type {} has a validity period of 0",
                    message_type.id
                ));
            }
        }
        let mut sender_ids = HashSet::new();
        for sender in &file.senders {
            if !sender_ids.insert(sender.id.as_str()) {
                problems.push(format!("sender {} is listed twice", sender.id));
            }
            if !sender.name.has_any() {
                problems.push(format!("sender {} has no name", sender.id));
            }
            let mut app_ids = HashSet::new();
            for application in &sender.applications {
                if !app_ids.insert(application.id.as_str()) {
                    problems.push(format!(
                        "sender {} lists application {} twice",
                        sender.id, application.id
                    ));
                }
                if !application.name.has_any() {
                    problems.push(format!(
                        "application {} of sender {} has no name",
                        application.id, sender.id
                    ));
                }
            }
            for type_id in &sender.message_types {
                if !type_ids.contains(type_id.as_str()) {
                    problems.push(format!(
                        "sender {} names message type {type_id}, which the file does not define",
                        sender.id
                    ));
                }
            }
        }
        let mut partner_ids = HashSet::new();
        for partner in &file.partners {
            if !partner_ids.insert(partner.id.as_str()) {
                problems.push(format!("partner {} is listed twice", partner.id));
            }
            if !webhook_url_allowed(&partner.webhook_url) {
                problems.push(format!(
                    "partner {} has webhookUrl {:?}: it must be https (http only to this machine)",
                    partner.id, partner.webhook_url
                ));
            }
            if !crate::config::is_partner_secret_name(&partner.secret_env) {
                problems.push(format!(
                    "partner {} has secretEnv {:?}: name a variable EBOX_PARTNER_<NAME>_SECRET",
                    partner.id, partner.secret_env
                ));
            }
        }
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(problems)
        }
    }

    /// Applies the file in one transaction: upserts every sender and message type, replaces
    /// each sender's applications and allowed types, and deactivates senders no longer listed
    /// (they are kept: their messages and audit records refer to them).
    pub async fn apply(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut tx = pool
            .begin()
            .await
            .context("Failed to start a transaction")?;
        for message_type in &self.message_types {
            sqlx::query(
                "INSERT INTO message_types (id, name, description, validity_number, validity_unit)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET name = $2, description = $3,
                     validity_number = $4, validity_unit = $5, updated_at = now()",
            )
            .bind(&message_type.id)
            .bind(sqlx::types::Json(&message_type.name))
            .bind(message_type.description.as_ref().map(sqlx::types::Json))
            .bind(
                i32::try_from(message_type.validity_period.validity_period_number)
                    .unwrap_or(i32::MAX),
            )
            .bind(message_type.validity_period.validity_period_unit.as_str())
            .execute(&mut *tx)
            .await
            .with_context(|| format!("Failed to store message type {}", message_type.id))?;
        }
        for sender in &self.senders {
            upsert_sender(&mut tx, sender)
                .await
                .with_context(|| format!("Failed to store sender {}", sender.id))?;
        }
        for partner in &self.partners {
            sqlx::query(
                "INSERT INTO partners (id, name, webhook_url, secret_env, active)
                 VALUES ($1, $2, $3, $4, true)
                 ON CONFLICT (id) DO UPDATE SET name = $2, webhook_url = $3, secret_env = $4, active = true",
            )
            .bind(&partner.id)
            .bind(sqlx::types::Json(&partner.name))
            .bind(&partner.webhook_url)
            .bind(&partner.secret_env)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("Failed to store partner {}", partner.id))?;
        }
        let partners: Vec<&str> = self.partners.iter().map(|p| p.id.as_str()).collect();
        sqlx::query("UPDATE partners SET active = false WHERE active AND NOT (id = ANY($1))")
            .bind(&partners)
            .execute(&mut *tx)
            .await
            .context("Failed to deactivate partners no longer listed")?;
        let listed: Vec<&str> = self.senders.iter().map(|s| s.id.as_str()).collect();
        sqlx::query("UPDATE senders SET active = false, updated_at = now() WHERE active AND NOT (id = ANY($1))")
            .bind(&listed)
            .execute(&mut *tx)
            .await
            .context("Failed to deactivate senders no longer listed")?;
        tx.commit().await.context("Failed to commit the registry")
    }
}

async fn upsert_sender(conn: &mut PgConnection, sender: &SenderEntry) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO senders (id, organization_id, name, active) VALUES ($1, $2, $3, true)
         ON CONFLICT (id) DO UPDATE SET organization_id = $2, name = $3, active = true, updated_at = now()",
    )
    .bind(sender.id.as_str())
    .bind(sender.organization_id.as_str())
    .bind(sqlx::types::Json(&sender.name))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM sender_applications WHERE sender_id = $1")
        .bind(sender.id.as_str())
        .execute(&mut *conn)
        .await?;
    for application in &sender.applications {
        sqlx::query("INSERT INTO sender_applications (sender_id, id, name) VALUES ($1, $2, $3)")
            .bind(sender.id.as_str())
            .bind(&application.id)
            .bind(sqlx::types::Json(&application.name))
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM sender_message_types WHERE sender_id = $1")
        .bind(sender.id.as_str())
        .execute(&mut *conn)
        .await?;
    for type_id in &sender.message_types {
        sqlx::query(
            "INSERT INTO sender_message_types (sender_id, message_type_id) VALUES ($1, $2)",
        )
        .bind(sender.id.as_str())
        .bind(type_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A registered sender as intake needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegisteredSender {
    pub id: String,
    pub organization_id: String,
    pub active: bool,
    pub applications: Vec<String>,
    pub message_types: Vec<String>,
}

pub async fn find_sender(
    conn: &mut PgConnection,
    id: &str,
) -> sqlx::Result<Option<RegisteredSender>> {
    sqlx::query_as(
        "SELECT s.id, s.organization_id, s.active,
                coalesce((SELECT array_agg(a.id) FROM sender_applications a WHERE a.sender_id = s.id), '{}') AS applications,
                coalesce((SELECT array_agg(t.message_type_id) FROM sender_message_types t WHERE t.sender_id = s.id), '{}') AS message_types
         FROM senders s WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The validity period of a message type, if the type exists.
pub async fn find_validity_period(
    conn: &mut PgConnection,
    message_type_id: &str,
) -> sqlx::Result<Option<ValidityPeriod>> {
    let row: Option<(i32, String)> =
        sqlx::query_as("SELECT validity_number, validity_unit FROM message_types WHERE id = $1")
            .bind(message_type_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(number, unit)| {
        Some(ValidityPeriod {
            validity_period_number: u32::try_from(number).ok()?,
            validity_period_unit: PeriodUnit::parse(&unit)?,
        })
    }))
}

/// A registered partner, as the notify worker needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Partner {
    pub id: String,
    pub webhook_url: String,
    pub secret_env: String,
    pub active: bool,
}

pub async fn find_partner(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Partner>> {
    sqlx::query_as("SELECT id, webhook_url, secret_env, active FROM partners WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Every active sender's id, to declare their status queues.
pub async fn active_sender_ids(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT id FROM senders WHERE active ORDER BY id")
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
senders:
  - id: onem
    organizationId: "0406798006"
    name: {nl: RVA, fr: ONEM, de: LfA}
    applications: [{id: unemployment, name: {nl: Werkloosheid, fr: Chômage, de: Arbeitslosigkeit}}]
    messageTypes: [unemployment-certificate]
messageTypes:
  - id: unemployment-certificate
    name: {nl: Attest, fr: Attestation, de: Bescheinigung}
    validityPeriod: {validityPeriodNumber: 1, validityPeriodUnit: year}
"#;

    #[test]
    fn the_documented_example_parses() {
        let file = RegistryFile::parse(EXAMPLE).expect("valid");
        assert_eq!(file.senders[0].message_types, ["unemployment-certificate"]);
    }

    #[test]
    fn a_sender_naming_an_undefined_type_or_a_bad_cbe_is_refused() {
        let bad_type = EXAMPLE.replace("[unemployment-certificate]", "[pension]");
        let problems = RegistryFile::parse(&bad_type).expect_err("invalid");
        assert!(problems[0].contains("pension"), "{problems:?}");
        let bad_cbe = EXAMPLE.replace("0406798006", "0406798007");
        assert!(RegistryFile::parse(&bad_cbe).is_err());
    }

    #[test]
    fn webhooks_must_be_https_except_to_this_machine() {
        assert!(webhook_url_allowed("https://partner.example/hook"));
        assert!(webhook_url_allowed("http://127.0.0.1:8080/hook"));
        assert!(!webhook_url_allowed("http://partner.example/hook"));
        assert!(!webhook_url_allowed("http://127.0.0.1.evil.example/hook"));
    }

    #[test]
    fn a_year_is_twelve_months() {
        let period = ValidityPeriod {
            validity_period_number: 1,
            validity_period_unit: PeriodUnit::Year,
        };
        let from = DateTime::parse_from_rfc3339("2026-02-28T10:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(
            period.end_from(from).map(|d| d.to_rfc3339()),
            Some("2027-02-28T10:00:00+00:00".to_owned())
        );
    }
}
