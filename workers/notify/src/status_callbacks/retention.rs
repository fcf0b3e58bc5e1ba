//! Retention of the status callbacks' outbox: a row sent longer ago than
//! `EBOX_STATUS_CALLBACK_RETENTION_DAYS` (30 by default) is deleted. Its body was emptied when it
//! was sent and its outcome is on the audit trail (`status-callback-sent`), so nothing is lost
//! but the row's use against repeats: within the period, a status event sent again (a duplicate
//! publication re-sends the current status) finds its row and is not called back twice; after
//! it, it would be called back again, under the same `Idempotency-Key`, which the sender's
//! endpoint drops. Pending rows and abandoned ones (`failed`, for
//! `ebox notifications retry --failed`) are kept whatever their age.
//!
//! Replicas may run it side by side: each pass deletes at most [`AT_ONCE`] rows, in
//! one statement, and a row two passes both select is deleted once.

use runtime::jobs::{Job, Pass};
use sqlx::PgPool;
use std::time::Duration;
use tracing::info;

/// Rows one pass deletes at most, so that a pass after a long pause stays a short transaction.
pub const AT_ONCE: i64 = 1000;

/// How often the job looks for rows past their retention, when the last pass found few.
pub const EVERY: Duration = Duration::from_secs(3600);

/// The retention job of the status callbacks' outbox.
pub struct SentCallbackRetention {
    pool: PgPool,
    keep_for: Duration,
}

impl SentCallbackRetention {
    /// Deletes the callbacks sent longer ago than `keep_for` (`EBOX_STATUS_CALLBACK_RETENTION_DAYS`).
    pub fn new(pool: PgPool, keep_for: Duration) -> Self {
        Self { pool, keep_for }
    }

    /// Deletes up to [`AT_ONCE`] rows past their retention; returns how many.
    pub async fn purge(&self) -> sqlx::Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM status_callbacks
              WHERE idempotency_key IN (SELECT idempotency_key FROM status_callbacks
                                         WHERE state = 'sent' AND sent_at < now() - $1
                                         ORDER BY sent_at LIMIT $2)",
        )
        .bind(self.keep_for)
        .bind(AT_ONCE)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

impl Job for SentCallbackRetention {
    fn name(&self) -> &'static str {
        "status-callback-retention"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let deleted = self.purge().await?;
        if deleted > 0 {
            info!(
                deleted,
                keep_days = self.keep_for.as_secs() / 86_400,
                "status callbacks sent before the retention period deleted"
            );
        }
        Ok(if deleted == AT_ONCE as u64 {
            Pass::More
        } else {
            Pass::Idle
        })
    }
}
