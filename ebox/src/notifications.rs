//! `ebox notifications retry [--failed] [--since T]`: after an outage of the SMTP relay or a
//! partner is fixed, send what it held up now rather than after the back-off, and queue again
//! what was abandoned.
//!
//! Each notification re-queued is audited (`notification-requeued`) in the same transaction,
//! and the dispatchers are woken when it commits. The SQL is the outbox's
//! ([`notify::outbox::requeue`]).

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use domain::audit::{Action, Stage};
use notify::outbox::{self, Requeue, Requeued};
use records::audit::AuditEvent;
use runtime::config::Settings;
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// Make notifications waiting out their back-off due now; with --failed, queue abandoned
    /// ones again, with a fresh retry window (EBOX_NOTIFY_RETRY_FOR).
    Retry {
        /// Queue abandoned (failed) notifications again, instead of hurrying pending ones.
        #[arg(long)]
        failed: bool,
        /// Only notifications created at or after this time (RFC 3339, e.g.
        /// 2026-11-30T08:00:00Z).
        #[arg(long, value_parser = rfc3339)]
        since: Option<DateTime<Utc>>,
    },
}

fn rfc3339(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time like 2026-11-30T08:00:00Z: {e}"))
}

/// What `retry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retried {
    /// Notifications made due now.
    pub requeued: usize,
    /// Abandoned partner notifications that cannot be sent again: they were abandoned before
    /// abandoning kept the event they carry (only with `--failed`).
    pub unsendable: i64,
    /// Status callbacks to senders made due now (or, with `--failed`, queued again).
    pub status_callbacks: u64,
}

pub async fn run(settings: &Settings, command: NotificationsCommand) -> anyhow::Result<()> {
    let NotificationsCommand::Retry { failed, since } = command;
    let which = if failed {
        Requeue::Abandoned
    } else {
        Requeue::Waiting
    };
    let pool = runtime::db::connect(settings).await?;
    let retried = retry(&pool, which, since).await?;
    let what = match which {
        Requeue::Waiting => "pending notification(s) made due now",
        Requeue::Abandoned => "abandoned notification(s) queued again",
    };
    println!("{} {what}", retried.requeued);
    if retried.status_callbacks > 0 {
        println!(
            "{} status callback(s) to senders {}",
            retried.status_callbacks,
            match which {
                Requeue::Waiting => "made due now",
                Requeue::Abandoned => "queued again",
            }
        );
    }
    if retried.unsendable > 0 {
        println!(
            "{} abandoned partner notification(s) cannot be sent again: their event was erased when they were abandoned",
            retried.unsendable
        );
    }
    Ok(())
}

/// Re-queues `which` notifications created at or after `since`, audits each, and wakes the
/// dispatchers, in one transaction.
pub async fn retry(
    pool: &PgPool,
    which: Requeue,
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<Retried> {
    let mut tx = pool.begin().await?;
    let requeued = outbox::requeue(&mut tx, which, since)
        .await
        .context("Failed to re-queue the notifications")?;
    for notification in &requeued {
        audit(&mut tx, which, notification)
            .await
            .context("Failed to audit a re-queued notification")?;
    }
    let unsendable = match which {
        Requeue::Abandoned => outbox::unsendable(&mut tx, since).await?,
        Requeue::Waiting => 0,
    };
    let status_callbacks =
        notify::status_callbacks::requeue(&mut tx, which == Requeue::Abandoned, since)
            .await
            .context("Failed to re-queue the status callbacks")?;
    if !requeued.is_empty() {
        outbox::wake(&mut tx).await?;
    }
    tx.commit()
        .await
        .context("Failed to commit the re-queued notifications")?;
    Ok(Retried {
        requeued: requeued.len(),
        unsendable,
        status_callbacks,
    })
}

async fn audit(
    conn: &mut sqlx::PgConnection,
    which: Requeue,
    notification: &Requeued,
) -> sqlx::Result<()> {
    let mut audit = AuditEvent::new(Stage::Notify, Action::NotificationRequeued);
    audit.message_id = Some(notification.message_id);
    audit.ssin_hash = Some(notification.citizen.clone());
    audit.details = serde_json::json!({
        "channel": notification.channel,
        "from": match which {
            Requeue::Waiting => "pending",
            Requeue::Abandoned => "failed",
        },
        "attempts": notification.attempts,
        "idempotencyKey": notification.idempotency_key,
        "lastError": notification.last_error,
        "source": "cli",
    });
    audit.record(conn).await?;
    Ok(())
}
