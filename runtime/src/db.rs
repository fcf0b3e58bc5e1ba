//! The PostgreSQL pool and the schema migrations (`migrations/` at the workspace root).

use crate::config::Settings;
use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    connect_url(&settings.database_url, settings.database_max_connections).await
}

pub async fn connect_url(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .with_context(|| {
            format!(
                "Failed to connect to PostgreSQL at {}",
                crate::config::redact_url(url)
            )
        })
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("Failed to apply the database migrations")
}
