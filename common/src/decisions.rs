//! What a stage decided for a message (table `stage_decisions`), recorded in the same
//! transaction as the decision's effects, so that a redelivery replays the decision instead of
//! deciding again (the consent may have changed, the document may have expired since).

use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Decision {
    pub decision: String,
    pub details: serde_json::Value,
}

pub async fn find(
    conn: &mut PgConnection,
    message_id: Uuid,
    stage: &str,
) -> sqlx::Result<Option<Decision>> {
    let row: Option<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT decision, details FROM stage_decisions WHERE message_id = $1 AND stage = $2",
    )
    .bind(message_id)
    .bind(stage)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(decision, details)| Decision { decision, details }))
}

/// Records the decision; a second decision for the same message and stage is a unique
/// violation (two copies racing), which the driver retries and the retry replays.
pub async fn record(
    conn: &mut PgConnection,
    message_id: Uuid,
    stage: &str,
    decision: &str,
    details: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO stage_decisions (message_id, stage, decision, details) VALUES ($1, $2, $3, $4)",
    )
    .bind(message_id)
    .bind(stage)
    .bind(decision)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}
