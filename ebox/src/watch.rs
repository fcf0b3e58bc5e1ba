//! The stuck-message check: a background job in every worker process that counts the
//! messages still at `accepted` after `EBOX_STUCK_AFTER_SECONDS` and exports them
//! (`ebox_stuck_messages`, `ebox_stuck_message_oldest_seconds`), so that a message no stage
//! finishes is seen, whatever the reason.

use runtime::internal_events::StuckMessagesFound;
use runtime::jobs::{Job, Pass};
use sqlx::PgPool;
use std::time::Duration;

/// How often the check runs.
pub const EVERY: Duration = Duration::from_secs(30);

pub struct StuckMessages {
    pool: PgPool,
    after: Duration,
}

impl StuckMessages {
    pub fn new(pool: PgPool, after: Duration) -> Self {
        Self { pool, after }
    }
}

impl Job for StuckMessages {
    fn name(&self) -> &'static str {
        "stuck-messages"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let mut conn = self.pool.acquire().await?;
        let (count, oldest) = records::messages::stuck(&mut conn, self.after).await?;
        let oldest = oldest
            .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
            .unwrap_or_default();
        StuckMessagesFound { count, oldest }.emit();
        Ok(Pass::Idle)
    }
}
