//! The registry's records: the operator's file applied to the database, and the look-ups the
//! stages make (senders with their applications and types, validity periods, partners).

use anyhow::Context;
use domain::registry::{PeriodUnit, RegistryFile, SenderEntry, ValidityPeriod};
use sqlx::{PgConnection, PgPool};

/// Applies the file in one transaction: upserts every sender and message type, replaces
/// each sender's applications and allowed types, and deactivates senders no longer listed
/// (they are kept: their messages and audit records refer to them).
pub async fn apply(file: &RegistryFile, pool: &PgPool) -> anyhow::Result<()> {
    let mut tx = pool
        .begin()
        .await
        .context("Failed to start a transaction")?;
    for message_type in &file.message_types {
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
            i32::try_from(message_type.validity_period.validity_period_number).unwrap_or(i32::MAX),
        )
        .bind(message_type.validity_period.validity_period_unit.as_str())
        .execute(&mut *tx)
        .await
        .with_context(|| format!("Failed to store message type {}", message_type.id))?;
    }
    for sender in &file.senders {
        upsert_sender(&mut tx, sender)
            .await
            .with_context(|| format!("Failed to store sender {}", sender.id))?;
    }
    for partner in &file.partners {
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
    let partners: Vec<&str> = file.partners.iter().map(|p| p.id.as_str()).collect();
    sqlx::query("UPDATE partners SET active = false WHERE active AND NOT (id = ANY($1))")
        .bind(&partners)
        .execute(&mut *tx)
        .await
        .context("Failed to deactivate partners no longer listed")?;
    let listed: Vec<&str> = file.senders.iter().map(|s| s.id.as_str()).collect();
    sqlx::query(
        "UPDATE senders SET active = false, updated_at = now() WHERE active AND NOT (id = ANY($1))",
    )
    .bind(&listed)
    .execute(&mut *tx)
    .await
    .context("Failed to deactivate senders no longer listed")?;
    tx.commit().await.context("Failed to commit the registry")
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
