//! Sends the notifications the [`crate::Notify`] handler recorded, and marks them sent.
//!
//! Several dispatchers may run (one per notify replica): each claims one due row at a time with
//! `FOR UPDATE SKIP LOCKED` and a two-minute lease (the claim counts an attempt and pushes
//! `next_attempt_at` past the lease; a send times out after 30 s, well within it), so a row is
//! sent by one dispatcher at a time, and a dispatcher that dies mid-send leaves it to be
//! retried when the lease ends. Settling checks that the claim is still its own.

use crate::email::Mailer;
use crate::{STAGE, WAKE_CHANNEL, webhook};
use backon::{BackoffBuilder, ExponentialBuilder};
use common::audit::AuditEvent;
use common::metrics::METRICS;
use common::translated::Language;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

/// Rows claimed at once: one, so that no claimed row waits behind others' sends while its
/// lease runs out.
const CLAIM: i64 = 1;
/// Longest wait between two looks at the outbox when nothing wakes the dispatcher.
const POLL: Duration = Duration::from_secs(2);

pub struct Dispatcher {
    pool: PgPool,
    mailer: Mailer,
    http: reqwest::Client,
    max_attempts: u32,
    partner_secrets: HashMap<String, String>,
}

#[derive(Debug, sqlx::FromRow)]
struct Due {
    message_id: Uuid,
    channel: String,
    citizen: String,
    idempotency_key: Uuid,
    target: String,
    language: String,
    payload: serde_json::Value,
    attempts: i32,
}

impl Dispatcher {
    pub fn new(
        pool: PgPool,
        mailer: Mailer,
        max_attempts: u32,
        partner_secrets: HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            mailer,
            http: webhook::client()?,
            max_attempts,
            partner_secrets,
        })
    }

    /// Sends until `shutdown`; a send in progress always finishes.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => match listener.listen(WAKE_CHANNEL).await {
                Ok(()) => Some(listener),
                Err(e) => {
                    warn!(error = %e, "cannot LISTEN; polling only");
                    None
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot LISTEN; polling only");
                None
            }
        };
        info!("notification dispatcher running");
        loop {
            let claimed = match self.dispatch_due().await {
                Ok(claimed) => claimed,
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "dispatching notifications failed; retrying"
                    );
                    0
                }
            };
            if claimed as i64 == CLAIM {
                continue;
            }
            let wake = async {
                match listener.as_mut() {
                    Some(listener) => {
                        let _ = listener.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        info!("notification dispatcher stopped");
    }

    /// Claims and sends what is due; returns how many rows it claimed.
    pub async fn dispatch_due(&self) -> anyhow::Result<usize> {
        let due: Vec<Due> = sqlx::query_as(
            "UPDATE notifications n
                SET attempts = n.attempts + 1, next_attempt_at = now() + interval '2 minutes'
               FROM (SELECT message_id, channel FROM notifications
                      WHERE state = 'pending' AND next_attempt_at <= now()
                      ORDER BY next_attempt_at LIMIT $1
                      FOR UPDATE SKIP LOCKED) due
              WHERE n.message_id = due.message_id AND n.channel = due.channel
          RETURNING n.message_id, n.channel, n.citizen, n.idempotency_key, n.target,
                    n.language, n.payload, n.attempts",
        )
        .bind(CLAIM)
        .fetch_all(&self.pool)
        .await?;
        let claimed = due.len();
        for notification in due {
            let result = self.send(&notification).await;
            self.settle(&notification, result).await?;
        }
        Ok(claimed)
    }

    async fn send(&self, notification: &Due) -> anyhow::Result<()> {
        let key = notification.idempotency_key.to_string();
        match notification.channel.as_str() {
            "email" => {
                let language = Language::ALL
                    .into_iter()
                    .find(|l| l.code() == notification.language)
                    .unwrap_or(Language::Nl);
                self.mailer.send(&notification.target, language, &key).await
            }
            "partner" => {
                let mut conn = self.pool.acquire().await?;
                let partner = common::registry::find_partner(&mut conn, &notification.target)
                    .await?
                    .filter(|p| p.active)
                    .ok_or_else(|| {
                        anyhow::anyhow!("partner {} is not registered", notification.target)
                    })?;
                drop(conn);
                let secret = self
                    .partner_secrets
                    .get(&partner.secret_env)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "the secret of partner {} ({}) is not set",
                            partner.id,
                            partner.secret_env
                        )
                    })?;
                let body = serde_json::to_vec(&notification.payload)?;
                webhook::deliver(
                    &self.http,
                    &partner.webhook_url,
                    secret.as_bytes(),
                    &key,
                    body,
                )
                .await
            }
            other => anyhow::bail!("unknown channel {other}"),
        }
    }

    /// Marks the outcome, with its audit record, in one transaction.
    async fn settle(&self, notification: &Due, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let attempts = u32::try_from(notification.attempts).unwrap_or(u32::MAX);
        let (action, outcome, updated) = match &result {
            Ok(()) => {
                // The partner payload names the citizen: keep it no longer than needed.
                let updated = sqlx::query(
                    "UPDATE notifications SET state = 'sent', sent_at = now(), last_error = NULL,
                            payload = '{}'::jsonb
                      WHERE message_id = $1 AND channel = $2 AND state = 'pending' AND attempts = $3",
                )
                .bind(notification.message_id)
                .bind(&notification.channel)
                .bind(notification.attempts)
                .execute(&mut *tx)
                .await?;
                ("notified", "sent", updated.rows_affected())
            }
            Err(e) if attempts >= self.max_attempts => {
                let updated = sqlx::query(
                    "UPDATE notifications SET state = 'failed', last_error = $3, payload = '{}'::jsonb
                      WHERE message_id = $1 AND channel = $2 AND state = 'pending' AND attempts = $4",
                )
                .bind(notification.message_id)
                .bind(&notification.channel)
                .bind(format!("{e:#}"))
                .bind(notification.attempts)
                .execute(&mut *tx)
                .await?;
                ("notification-failed", "failed", updated.rows_affected())
            }
            Err(e) => {
                let delay = retry_delay(attempts);
                sqlx::query(
                    "UPDATE notifications SET next_attempt_at = now() + $3, last_error = $4
                      WHERE message_id = $1 AND channel = $2 AND state = 'pending' AND attempts = $5",
                )
                .bind(notification.message_id)
                .bind(&notification.channel)
                .bind(delay)
                .bind(format!("{e:#}"))
                .bind(notification.attempts)
                .execute(&mut *tx)
                .await?;
                warn!(message_id = %notification.message_id, channel = notification.channel, attempts, retry_in_s = delay.as_secs(), error = format!("{e:#}"), "notification failed; will retry");
                METRICS
                    .notifications_total
                    .with_label_values(&[&notification.channel, "retry"])
                    .inc();
                tx.commit().await?;
                return Ok(());
            }
        };
        if updated == 0 {
            // The lease ran out and another dispatcher owns the row now: its word counts.
            warn!(message_id = %notification.message_id, channel = notification.channel, "notification re-claimed by another dispatcher; not settling");
            return Ok(());
        }
        let mut audit = AuditEvent::new(STAGE, action);
        audit.message_id = Some(notification.message_id);
        audit.ssin_hash = Some(notification.citizen.clone());
        audit.details = serde_json::json!({
            "channel": notification.channel,
            "attempts": attempts,
            "idempotencyKey": notification.idempotency_key,
            "error": result.as_ref().err().map(|e| format!("{e:#}")),
        });
        audit.record(&mut tx).await?;
        tx.commit().await?;
        METRICS
            .notifications_total
            .with_label_values(&[&notification.channel, outcome])
            .inc();
        match result {
            Ok(()) => {
                info!(message_id = %notification.message_id, channel = notification.channel, "notification sent")
            }
            Err(e) => {
                error!(message_id = %notification.message_id, channel = notification.channel, attempts, error = format!("{e:#}"), "notification abandoned")
            }
        }
        Ok(())
    }
}

/// The wait before attempt `attempts + 1`: 1 s, 2 s, 4 s, … capped at one hour.
fn retry_delay(attempts: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(3600))
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(40), Duration::from_secs(3600));
    }
}
