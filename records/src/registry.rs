//! The registry's records: the operator's file applied to the database (with what senders and
//! applications show the citizen, their logos' bytes included), and the look-ups the stages
//! make (senders with their applications and types, validity periods, partners).

use anyhow::Context;
use domain::digest::Sha256Digest;
use domain::registry::{ImageEntry, PeriodUnit, RegistryFile, SenderEntry, ValidityPeriod};
use sqlx::{PgConnection, PgPool};

/// Applies the file in one transaction: upserts every sender and message type, replaces
/// each sender's logos, applications (with theirs) and allowed types, and deactivates senders
/// no longer listed. A withdrawn sender is kept with everything it showed: its messages and
/// audit records refer to it, and its reference data is still shown while a document of its
/// is live (the `reference_senders` view).
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

/// The sender with what it shows, its logos, its applications with theirs, and its types.
async fn upsert_sender(conn: &mut PgConnection, sender: &SenderEntry) -> sqlx::Result<()> {
    store_sender(conn, sender).await?;
    sqlx::query("DELETE FROM sender_logos WHERE sender_id = $1")
        .bind(sender.id.as_str())
        .execute(&mut *conn)
        .await?;
    insert_logos(conn, sender.id.as_str(), None, &sender.logos).await?;
    replace_applications(conn, sender).await?;
    replace_message_types(conn, sender).await
}

async fn store_sender(conn: &mut PgConnection, sender: &SenderEntry) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO senders (id, organization_id, name, long_name, url, contact_business,
                              contact_technical, status_webhook_url, status_secret_env,
                              messages_per_second, bytes_per_day, active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true)
         ON CONFLICT (id) DO UPDATE SET organization_id = $2, name = $3, long_name = $4, url = $5,
             contact_business = $6, contact_technical = $7, status_webhook_url = $8,
             status_secret_env = $9, messages_per_second = $10, bytes_per_day = $11,
             active = true, updated_at = now()",
    )
    .bind(sender.id.as_str())
    .bind(sender.organization_id.as_str())
    .bind(sqlx::types::Json(&sender.name))
    .bind(sender.long_name.as_ref().map(sqlx::types::Json))
    .bind(sender.url.as_ref().map(sqlx::types::Json))
    .bind(sender.contact_business.as_deref())
    .bind(sender.contact_technical.as_deref())
    .bind(sender.status_webhook_url.as_deref())
    .bind(sender.status_secret_env.as_deref())
    // Checked by the registry file's parse: within PostgreSQL's integers.
    .bind(
        sender
            .limits
            .messages_per_second
            .map(|rate| i32::try_from(rate).unwrap_or(i32::MAX)),
    )
    .bind(
        sender
            .limits
            .bytes_per_day
            .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn replace_applications(conn: &mut PgConnection, sender: &SenderEntry) -> sqlx::Result<()> {
    for statement in [
        "DELETE FROM application_logos WHERE sender_id = $1",
        "DELETE FROM sender_applications WHERE sender_id = $1",
    ] {
        sqlx::query(statement)
            .bind(sender.id.as_str())
            .execute(&mut *conn)
            .await?;
    }
    for application in &sender.applications {
        sqlx::query(
            "INSERT INTO sender_applications (sender_id, id, name, description, url,
                                              contact_business, contact_technical)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(sender.id.as_str())
        .bind(&application.id)
        .bind(sqlx::types::Json(&application.name))
        .bind(application.description.as_ref().map(sqlx::types::Json))
        .bind(application.url.as_ref().map(sqlx::types::Json))
        .bind(application.contact_business.as_deref())
        .bind(application.contact_technical.as_deref())
        .execute(&mut *conn)
        .await?;
        insert_logos(
            conn,
            sender.id.as_str(),
            Some(&application.id),
            &application.logos,
        )
        .await?;
    }
    Ok(())
}

/// The sender's logos (`application` none) or one of its application's, in the file's order.
async fn insert_logos(
    conn: &mut PgConnection,
    sender_id: &str,
    application: Option<&str>,
    logos: &[ImageEntry],
) -> sqlx::Result<()> {
    for (position, logo) in logos.iter().enumerate() {
        let query = match application {
            None => sqlx::query(
                "INSERT INTO sender_logos (sender_id, image_id, position, media_type, language,
                                           sha256, content)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(sender_id),
            Some(application) => sqlx::query(
                "INSERT INTO application_logos (sender_id, application_id, image_id, position,
                                                media_type, language, sha256, content)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(sender_id)
            .bind(application),
        };
        query
            .bind(&logo.id)
            .bind(i32::try_from(position).unwrap_or(i32::MAX))
            .bind(&logo.media_type)
            .bind(logo.language.map(|l| l.code()))
            .bind(sha256(logo))
            .bind(&logo.content)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn replace_message_types(conn: &mut PgConnection, sender: &SenderEntry) -> sqlx::Result<()> {
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

/// The SHA-256 of a logo's bytes: its ETag.
fn sha256(logo: &ImageEntry) -> Vec<u8> {
    Sha256Digest::of(&logo.content).as_bytes().to_vec()
}

/// A registered sender as intake needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegisteredSender {
    pub id: String,
    pub organization_id: String,
    pub active: bool,
    pub applications: Vec<String>,
    pub message_types: Vec<String>,
    /// Whether it has limits: then it publishes on its own lane only.
    pub limited: bool,
}

pub async fn find_sender(
    conn: &mut PgConnection,
    id: &str,
) -> sqlx::Result<Option<RegisteredSender>> {
    sqlx::query_as(
        "SELECT s.id, s.organization_id, s.active,
                coalesce((SELECT array_agg(a.id) FROM sender_applications a WHERE a.sender_id = s.id), '{}') AS applications,
                coalesce((SELECT array_agg(t.message_type_id) FROM sender_message_types t WHERE t.sender_id = s.id), '{}') AS message_types,
                (s.messages_per_second IS NOT NULL OR s.bytes_per_day IS NOT NULL) AS limited
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

/// Where a sender's status events are called back (docs/sender-contract.md, "Status
/// callbacks"), and the variable holding the signing secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusWebhook {
    pub url: String,
    pub secret_env: String,
}

/// The status webhook of sender `id`, if it asked for callbacks. A withdrawn sender keeps its
/// callbacks for the events its messages still cause.
pub async fn find_status_webhook(
    conn: &mut PgConnection,
    id: &str,
) -> sqlx::Result<Option<StatusWebhook>> {
    sqlx::query_as(
        "SELECT status_webhook_url AS url, status_secret_env AS secret_env FROM senders
          WHERE id = $1 AND status_webhook_url IS NOT NULL AND status_secret_env IS NOT NULL",
    )
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
