//! Read marks whose `readDocument` never arrived.
//!
//! The API commits the read mark and then announces `readDocument`; if it crashed in
//! between, or the broker refused the event, no event will come. [`UnconfirmedReads`] finds
//! read marks older than [`GRACE`] that read-receipt has not confirmed and confirms them as the
//! event would have ([`crate::confirm`]): the status is published (with confirms) before the
//! confirmation commits, so a crash in between publishes it again at the next pass. Every
//! read-receipt replica runs it; `FOR UPDATE SKIP LOCKED` gives each mark to one of them.

use crate::{STAGE, confirm};
use domain::ids::MessageId;
use evidence::keys::Signer;
use queues::Publisher;
use queues::publisher::PublishError;
use runtime::jobs::{Job, Pass};
use sqlx::{Acquire as _, PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};
use uuid::Uuid;

/// How long a read mark may wait for its event before this job confirms it: far longer than
/// the event takes, so that the two rarely meet (if they do, one of them retries and replays).
pub const GRACE: Duration = Duration::from_secs(60);
/// How often the job looks.
pub const EVERY: Duration = Duration::from_secs(30);
/// Read marks confirmed per transaction.
const BATCH: i64 = 100;

pub struct UnconfirmedReads {
    pool: PgPool,
    amqp_url: String,
    signer: Arc<Signer>,
    grace: Duration,
    /// Opened on the first pass and after a broker fault.
    publisher: Option<Publisher>,
}

impl UnconfirmedReads {
    pub fn new(pool: PgPool, amqp_url: String, signer: Arc<Signer>) -> Self {
        Self {
            pool,
            amqp_url,
            signer,
            grace: GRACE,
            publisher: None,
        }
    }

    /// Waits `grace` instead of [`GRACE`] (the tests).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

impl Job for UnconfirmedReads {
    fn name(&self) -> &'static str {
        "unconfirmed-reads"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let publisher = match self.publisher.take() {
            Some(publisher) => publisher,
            None => {
                let connection =
                    queues::driver::connect(&self.amqp_url, "ebox read-receipt recovery").await?;
                Publisher::open(&connection).await?
            }
        };
        // A fault drops the publisher, so the next pass reconnects.
        let confirmed = self.confirm_batch(&publisher).await?;
        self.publisher = Some(publisher);
        Ok(if confirmed == BATCH as usize {
            Pass::More
        } else {
            Pass::Idle
        })
    }
}

impl UnconfirmedReads {
    /// Confirms up to [`BATCH`] read marks; returns how many were confirmed.
    async fn confirm_batch(&self, publisher: &Publisher) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let found = lock_unconfirmed(&mut tx, self.grace).await?;
        let mut statuses = Vec::new();
        let mut confirmed = 0;
        for message_id in &found {
            let message_id = MessageId::from_uuid(*message_id);
            // A savepoint per mark: one that cannot be confirmed does not hold up the others.
            let mut savepoint = tx.begin().await?;
            match confirm(&mut savepoint, &self.signer, message_id).await {
                Ok(outgoing) => {
                    savepoint.commit().await?;
                    statuses.extend(outgoing);
                    confirmed += 1;
                }
                Err(error) => {
                    savepoint.rollback().await?;
                    warn!(%message_id, error = %error, "could not confirm a read mark; trying again at the next pass");
                }
            }
        }
        for status in &statuses {
            if let Err(error) = publisher.publish_all(std::slice::from_ref(status)).await {
                if let PublishError::Broker(_) = error {
                    return Err(error.into());
                }
                warn!(error = %error, routing_key = status.routing_key, "read status refused; confirmed anyway");
            }
        }
        tx.commit().await?;
        if confirmed > 0 {
            info!(
                count = confirmed,
                "read marks confirmed without their event"
            );
        }
        Ok(confirmed)
    }
}

/// Read marks older than `grace` that read-receipt has not confirmed, locked so that other
/// replicas skip them.
async fn lock_unconfirmed(conn: &mut PgConnection, grace: Duration) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT d.message_id FROM documents d
          WHERE d.read_at < now() - $1
            AND NOT EXISTS (SELECT 1 FROM stage_decisions s
                             WHERE s.message_id = d.message_id AND s.stage = $2)
          ORDER BY d.read_at
          LIMIT $3
            FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(grace)
    .bind(STAGE.as_str())
    .bind(BATCH)
    .fetch_all(conn)
    .await
}
