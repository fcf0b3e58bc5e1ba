//! What a stage decided for a message (table `stage_decisions`), recorded in the same
//! transaction as the decision's effects, so that a redelivery replays the decision instead of
//! deciding again (the consent may have changed, the document may have expired since).

use crate::vocabulary;
use domain::Vocabulary;
use domain::audit::Stage;
use domain::ids::MessageId;
use sqlx::PgConnection;

/// A recorded decision of type `D` (the stage's own vocabulary) with its details.
#[derive(Debug, Clone)]
pub struct Decision<D> {
    pub decision: D,
    pub details: serde_json::Value,
}

/// The decision `stage` recorded for `message_id`, if any. A spelling the stage's vocabulary
/// does not know is an error, never a guess.
pub async fn find<D: Vocabulary>(
    conn: &mut PgConnection,
    message_id: MessageId,
    stage: Stage,
) -> sqlx::Result<Option<Decision<D>>> {
    let row: Option<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT decision, details FROM stage_decisions WHERE message_id = $1 AND stage = $2",
    )
    .bind(message_id.as_uuid())
    .bind(stage.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(|(decision, details)| {
        Ok(Decision {
            decision: vocabulary::decode(&decision, "stage_decisions.decision")?,
            details,
        })
    })
    .transpose()
}

/// Records the decision; a second decision for the same message and stage is a unique
/// violation (two copies racing), which the driver retries and the retry replays.
pub async fn record<D: Vocabulary>(
    conn: &mut PgConnection,
    message_id: MessageId,
    stage: Stage,
    decision: D,
    details: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO stage_decisions (message_id, stage, decision, details) VALUES ($1, $2, $3, $4)",
    )
    .bind(message_id.as_uuid())
    .bind(stage.as_str())
    .bind(decision.as_str())
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}
