//! Sends the notifications the [`crate::Notify`] handler recorded, and marks them sent: a
//! background job ([`runtime::jobs`]), woken by PostgreSQL `NOTIFY` and every 2 s.
//!
//! Several dispatchers may run (one per notify replica): each claims one due row at a time with
//! `FOR UPDATE SKIP LOCKED` and a two-minute lease ([`crate::outbox`]), so a row is sent by one
//! dispatcher at a time, and a dispatcher that dies mid-send leaves it to be retried when the
//! lease ends. Settling checks that the claim is still its own.
//!
//! A failed send is retried with doubling back-off, from 1 s up to [`MAX_RETRY_DELAY`], for as
//! long as the notification's retry window is open (`EBOX_NOTIFY_RETRY_FOR` from when it was
//! queued or re-queued, [`crate::outbox`]); the first failure after the window closed abandons
//! it (`failed`, audited, counted). `ebox notifications retry --failed` queues it again.

use crate::STAGE;
use crate::notifier::{Notification, Notifier};
use crate::outbox::{self, Claimed, Settlement, WAKE_CHANNEL};
use backon::{BackoffBuilder, ExponentialBuilder};
use domain::audit::Action;
use records::audit::AuditEvent;
use runtime::internal_events::{NotificationResult, NotificationSettled, OutboxBacklog};
use runtime::jobs::{Job, Pass};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::{Duration, Instant};
use tracing::warn;

/// Rows claimed at once: one, so that no claimed row waits behind others' sends while its
/// lease runs out.
const CLAIM: i64 = 1;
/// Longest wait between two looks at the outbox when nothing wakes the dispatcher.
pub const POLL: Duration = Duration::from_secs(2);
/// The longest wait between two attempts at one notification: once a relay or a partner is
/// back, every notification it held up goes within this long (or at once, with `ebox
/// notifications retry`).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

pub struct Dispatcher {
    pool: PgPool,
    notifiers: Vec<Box<dyn Notifier>>,
    /// How long a notification is retried, from its `retry_from`, before it is abandoned.
    retry_for: Duration,
    /// `LISTEN`ing for the handler's wake-ups; polling only when that failed.
    listener: Option<PgListener>,
    listen_tried: bool,
    /// When the outbox's backlog was last measured: at most once every [`POLL`], however
    /// busy the dispatcher is.
    measured_at: Option<Instant>,
}

impl Dispatcher {
    pub fn new(pool: PgPool, notifiers: Vec<Box<dyn Notifier>>, retry_for: Duration) -> Self {
        Self {
            pool,
            notifiers,
            retry_for,
            listener: None,
            listen_tried: false,
            measured_at: None,
        }
    }

    /// Exports the outbox's backlog (`ebox_notification_outbox_pending`,
    /// `ebox_notification_outbox_oldest_seconds`), when it was not measured within [`POLL`].
    async fn measure_backlog(&mut self) -> anyhow::Result<()> {
        if self.measured_at.is_some_and(|at| at.elapsed() < POLL) {
            return Ok(());
        }
        let (pending, oldest) = outbox::backlog(&mut *self.pool.acquire().await?).await?;
        let oldest = oldest
            .and_then(|since| (chrono::Utc::now() - since).to_std().ok())
            .unwrap_or_default();
        OutboxBacklog { pending, oldest }.emit();
        self.measured_at = Some(Instant::now());
        Ok(())
    }

    /// Claims and sends what is due; returns how many rows it claimed.
    pub async fn dispatch_due(&self) -> anyhow::Result<usize> {
        let due =
            outbox::claim_due(&mut *self.pool.acquire().await?, CLAIM, self.retry_for).await?;
        let claimed = due.len();
        for claim in due {
            let result = self.send(&claim.notification).await;
            self.settle(&claim, result).await?;
        }
        Ok(claimed)
    }

    async fn send(&self, notification: &Notification) -> anyhow::Result<()> {
        let notifier = self
            .notifiers
            .iter()
            .find(|n| n.channel() == notification.channel)
            .ok_or_else(|| anyhow::anyhow!("no notifier for channel {}", notification.channel))?;
        notifier.send(notification).await
    }

    /// Marks the outcome, with its audit record when it is final, in one transaction: a
    /// failure is retried while the retry window is open, and abandons the notification after.
    async fn settle(&self, claim: &Claimed, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let notification = &claim.notification;
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let (settlement, outcome, retry_in) = match &error {
            None => (Settlement::Sent, NotificationResult::Sent, None),
            Some(error) if claim.window_closed => (
                Settlement::Failed { error },
                NotificationResult::Failed,
                None,
            ),
            Some(error) => {
                let after = retry_delay(notification.attempts);
                (
                    Settlement::Retry { after, error },
                    NotificationResult::Retry,
                    Some(after),
                )
            }
        };
        let mut tx = self.pool.begin().await?;
        if !outbox::settle(&mut tx, notification, settlement).await? {
            warn!(message_id = %notification.message_id, channel = notification.channel.as_str(), "notification re-claimed by another dispatcher; not settling");
            return Ok(());
        }
        if outcome != NotificationResult::Retry {
            audit_settled(&mut tx, notification, outcome, error.as_deref()).await?;
        }
        tx.commit().await?;
        NotificationSettled {
            message_id: notification.message_id,
            channel: notification.channel,
            result: outcome,
            attempts: notification.attempts,
            error: result.as_ref().err(),
            retry_in,
        }
        .emit();
        Ok(())
    }
}

async fn audit_settled(
    conn: &mut sqlx::PgConnection,
    notification: &Notification,
    outcome: NotificationResult,
    error: Option<&str>,
) -> sqlx::Result<()> {
    let action = if outcome == NotificationResult::Sent {
        Action::Notified
    } else {
        Action::NotificationFailed
    };
    let mut audit = AuditEvent::new(STAGE, action);
    audit.message_id = Some(notification.message_id);
    audit.ssin_hash = Some(notification.citizen.clone());
    audit.details = serde_json::json!({
        "channel": notification.channel,
        "kind": notification.kind,
        "attempts": notification.attempts,
        "idempotencyKey": notification.idempotency_key,
        "error": error,
    });
    audit.record(conn).await?;
    Ok(())
}

impl Job for Dispatcher {
    fn name(&self) -> &'static str {
        "notification-dispatcher"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let claimed = self.dispatch_due().await?;
        self.measure_backlog().await?;
        Ok(if claimed as i64 == CLAIM {
            Pass::More
        } else {
            Pass::Idle
        })
    }

    async fn woken(&mut self) {
        if !self.listen_tried {
            // Set once the attempt completes: one cut short by the poll timer is made again.
            self.listener = listen(&self.pool).await;
            self.listen_tried = true;
        }
        match self.listener.as_mut() {
            Some(listener) => {
                let _ = listener.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
}

pub async fn listen(pool: &PgPool) -> Option<PgListener> {
    let listening = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match listening.await {
        Ok(listener) => Some(listener),
        Err(e) => {
            warn!(error = %e, "cannot LISTEN; polling only");
            None
        }
    }
}

/// The wait before attempt `attempts + 1`: 1 s, 2 s, 4 s, … capped at [`MAX_RETRY_DELAY`].
pub fn retry_delay(attempts: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(MAX_RETRY_DELAY)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(10), Duration::from_secs(512));
        assert_eq!(retry_delay(11), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(40), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(5000), MAX_RETRY_DELAY);
    }
}
