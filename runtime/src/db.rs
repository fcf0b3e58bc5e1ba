//! The PostgreSQL pool and the schema migrations (`migrations/` at the workspace root).
//!
//! Two roles (`docs/operations.md`, "Database roles"): the migrations run as the role that owns
//! the schema (`EBOX_MIGRATION_DATABASE_URL`), the services as a runtime role
//! (`EBOX_DATABASE_URL`) that is a member of the group role `ebox_runtime`, which may read and
//! write the working tables but only read and add to the audit trail.

use crate::config::Settings;
use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::time::Duration;
use tracing::info;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The group role the migrations grant the runtime's privileges to (created by the migration
/// `…_least_privilege.sql` if the operator has not created it).
pub const RUNTIME_GROUP: &str = "ebox_runtime";

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

/// Applies the migrations on `pool`, as whatever user it connects with (that user owns what
/// they create). The services use [`migrate_as_owner`].
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("Failed to apply the database migrations")
}

/// `ebox migrate` and `ebox run`: applies the migrations as the schema's owner
/// (`EBOX_MIGRATION_DATABASE_URL`, else `EBOX_DATABASE_URL`), then makes the user of
/// `EBOX_DATABASE_URL`, when it is another one, a member of [`RUNTIME_GROUP`], so that the
/// services can work without owning anything.
pub async fn migrate_as_owner(settings: &Settings) -> anyhow::Result<()> {
    let pool = connect_url(&settings.migration_database_url, 2).await?;
    migrate(&pool).await.context(
        "Failed to migrate as the user of EBOX_MIGRATION_DATABASE_URL (else EBOX_DATABASE_URL), which must own the tables",
    )?;
    let granted = admit_runtime_user(&pool, &settings.database_url).await;
    pool.close().await;
    granted
}

/// Grants [`RUNTIME_GROUP`] to the runtime URL's user unless it is the migration user itself
/// (development: it owns the tables and keeps every right) or already a member.
async fn admit_runtime_user(owner: &PgPool, runtime_url: &str) -> anyhow::Result<()> {
    let runtime_user = runtime_url
        .parse::<PgConnectOptions>()
        .context("EBOX_DATABASE_URL is not a PostgreSQL URL")?
        .get_username()
        .to_owned();
    let owner_user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(owner)
        .await
        .context("Failed to ask PostgreSQL who runs the migrations")?;
    if runtime_user == owner_user {
        info!(
            user = runtime_user,
            "the services connect as the owner of the tables (development only: it may alter the audit trail)"
        );
        return Ok(());
    }
    let member: bool = sqlx::query_scalar("SELECT pg_has_role($1, $2, 'MEMBER')")
        .bind(&runtime_user)
        .bind(RUNTIME_GROUP)
        .fetch_one(owner)
        .await
        .with_context(|| {
            format!(
                "Failed to check that {runtime_user}, the user of EBOX_DATABASE_URL, is a member of {RUNTIME_GROUP} (a login role of that name must exist)"
            )
        })?;
    if !member {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "GRANT {RUNTIME_GROUP} TO {}",
            quote_identifier(&runtime_user)
        )))
        .execute(owner)
        .await
        .with_context(|| {
            format!(
                "Failed to grant {RUNTIME_GROUP} to {runtime_user}: run `GRANT {RUNTIME_GROUP} TO {}` as a role that may (one with CREATEROLE), or give the migration role that right",
                quote_identifier(&runtime_user)
            )
        })?;
        info!(
            user = runtime_user,
            "runtime user made a member of {RUNTIME_GROUP}"
        );
    }
    Ok(())
}

/// `name` as a PostgreSQL identifier, quoted: a user name is taken as it is written.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_name_is_quoted_as_one_identifier() {
        assert_eq!(quote_identifier("ebox_app"), "\"ebox_app\"");
        assert_eq!(
            quote_identifier("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }
}
