//! Reminders and expiry alerts: a background job ([`runtime::jobs`]) of the notify process.
//!
//! A published document still unread [`Periods::reminder_after`] after its receipt gets a
//! `newDocumentReminder`; one still unread [`Periods::alert_before`] before its expiration gets a
//! `documentExpirationAlert`. Each, at most once per message and kind, is in one transaction:
//!
//! 1. a `reminders` row (primary key: message and kind), written first — when it exists
//!    already, another replica fired it and nothing else is done;
//! 2. the event in the events outbox ([`records::events::record`]), so the event relay pushes it
//!    and the feed serves it like `newDocument`;
//! 3. a notification in the notification outbox on the citizen's channel — an e-mail whose
//!    wording says it is a reminder or an expiry alert, or the event to their partner — unless
//!    they opted out or chose nothing (the event is recorded all the same);
//! 4. its audit record (`reminder-recorded`, `expiration-alert-recorded`).
//!
//! **Replicas.** Each pass locks the due documents it takes with `FOR UPDATE SKIP LOCKED`, so
//! two replicas share the work instead of waiting on each other; the `reminders` row settles a
//! race the locks let through (a replica whose snapshot predates the other's commit). A read
//! mark committed meanwhile takes the document out: the lock re-checks `read_at`.
//!
//! **Clock.** [`Reminders::pass_at`] takes the moment to judge by, so a test moves time rather
//! than waiting; the job's pass uses the [`Clock`] it was given (the system's by default).
//!
//! An alert supersedes the reminder: once a document's expiry alert fired, it gets no reminder
//! (a short-lived document may be due for both at once; the alert says more). The national
//! number the events and the partner need is the one of the document's `newDocument` event in
//! the events outbox (the database keeps it nowhere else): a document published before the
//! outbox existed gets neither reminder nor alert.

use crate::STAGE;
use crate::outbox::{self, NewNotification};
use chrono::{DateTime, Utc};
use domain::audit::Action;
use domain::citizen::{ChannelKind, CitizenKeys, Preferences, SsinHasher};
use domain::decision::NotifyDecision;
use domain::events::{EventEnvelope, EventType};
use domain::ids::MessageId;
use domain::ssin::Ssin;
use records::audit::AuditEvent;
use records::citizens;
use records::documents::{self, Document};
use runtime::internal_events::NotificationDecided;
use runtime::jobs::{Job, Pass};
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};
use uuid::Uuid;

/// How often the job looks for due documents (sooner when a pass found a full batch).
pub const EVERY: Duration = Duration::from_secs(60);
/// Documents one transaction takes at most, per kind.
const BATCH: i64 = 100;

/// The two kinds, alerts first: an alert supersedes a reminder due in the same pass.
pub const KINDS: [EventType; 2] = [
    EventType::DocumentExpirationAlert,
    EventType::NewDocumentReminder,
];

/// When reminders and alerts are due (`EBOX_REMINDER_AFTER_DAYS`, `EBOX_EXPIRATION_ALERT_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// After the receipt: `newDocumentReminder`.
    pub reminder_after: Duration,
    /// Before the expiration: `documentExpirationAlert`.
    pub alert_before: Duration,
}

/// What tells the job the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What one pass fired, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    pub reminders: usize,
    pub alerts: usize,
    /// A batch was full: more may be due.
    pub more: bool,
}

pub struct Reminders {
    pool: PgPool,
    hasher: SsinHasher,
    /// `eventProviderId` of the partner's payload, as `newDocument`'s.
    provider_id: String,
    periods: Periods,
    clock: Arc<dyn Clock>,
}

impl Reminders {
    pub fn new(pool: PgPool, hasher: SsinHasher, provider_id: String, periods: Periods) -> Self {
        Self {
            pool,
            hasher,
            provider_id,
            periods,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same job, telling the time by `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// Fires what is due at `now`: up to a batch of each kind, each batch in a transaction.
    pub async fn pass_at(&self, now: DateTime<Utc>) -> anyhow::Result<Fired> {
        let mut fired = Fired::default();
        for kind in KINDS {
            let (count, full) = self.fire_due(kind, now).await?;
            match kind {
                EventType::DocumentExpirationAlert => fired.alerts = count,
                _ => fired.reminders = count,
            }
            fired.more |= full;
        }
        Ok(fired)
    }

    /// Fires a batch of `kind` due at `now`; how many fired, and whether the batch was full.
    async fn fire_due(&self, kind: EventType, now: DateTime<Utc>) -> anyhow::Result<(usize, bool)> {
        let mut tx = self.pool.begin().await?;
        let due = due(&mut tx, kind, now, self.periods).await?;
        let mut fired = 0;
        for (message_id, ssin) in &due {
            if self.fire(&mut tx, kind, *message_id, ssin, now).await? {
                fired += 1;
            }
        }
        tx.commit().await?;
        Ok((fired, due.len() as i64 == BATCH))
    }

    /// Fires `kind` for the document: the `reminders` row, the event, the notification unless
    /// the citizen opted out, the audit record. `false` when it had fired already.
    async fn fire(
        &self,
        conn: &mut PgConnection,
        kind: EventType,
        message_id: MessageId,
        ssin: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some(document) = documents::find(conn, message_id).await? else {
            return Ok(false);
        };
        let citizen = match Ssin::parse(ssin) {
            Ok(ssin) if document.is_for(&self.hasher.keys(&ssin)) => ssin,
            _ => {
                warn!(%message_id, kind = kind.as_str(), "the document's newDocument event names another citizen; no reminder");
                return Ok(false);
            }
        };
        let keys = self.hasher.keys(&citizen);
        let preferences = citizens::preferences(conn, &keys).await?;
        let channel = preferences
            .as_ref()
            .map_or(ChannelKind::None, |p| p.channel.kind());
        if !claim(conn, message_id, kind, channel, now).await? {
            return Ok(false);
        }
        let event = document
            .citizen_event(kind, &citizen)
            .ok_or_else(|| anyhow::anyhow!("document {message_id} is not published"))?;
        records::events::record(conn, &event, now, &self.provider_id).await?;
        let queued = self
            .notify(
                conn,
                kind,
                &document,
                &citizen,
                &keys,
                preferences.as_ref(),
                now,
            )
            .await?;
        let decision = if queued.is_some() {
            NotifyDecision::Queued
        } else {
            NotifyDecision::Skipped
        };
        audit(conn, kind, &document, &keys, channel, queued, &event).await?;
        NotificationDecided {
            message_id,
            channel,
            decision,
        }
        .emit();
        info!(%message_id, kind = kind.as_str(), channel = channel.as_str(), "reminder fired");
        Ok(true)
    }

    /// Queues the notification on the citizen's channel; its idempotency key, or `None` when
    /// they opted out or chose no channel.
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        conn: &mut PgConnection,
        kind: EventType,
        document: &Document,
        citizen: &Ssin,
        keys: &CitizenKeys,
        preferences: Option<&Preferences>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Uuid>> {
        let Some((language, target)) =
            preferences.and_then(|p| Some((p.language, p.channel.target()?)))
        else {
            return Ok(None);
        };
        let channel = preferences.map_or(ChannelKind::None, |p| p.channel.kind());
        let message_id = document.message_id;
        let idempotency_key = Uuid::new_v5(
            &message_id.as_uuid(),
            format!("notify/{}/{}", channel.as_str(), kind.as_str()).as_bytes(),
        );
        // The partner gets the event, in the shape of the `newDocument` it already receives.
        let payload = match channel {
            ChannelKind::Partner => {
                let event_data = document
                    .event_data(kind, citizen)
                    .ok_or_else(|| anyhow::anyhow!("document {message_id} is not published"))?;
                serde_json::to_value(EventEnvelope {
                    event_sequence_nbr: document.event_sequence_nbr.unwrap_or_default(),
                    event_time: now,
                    event_provider_id: self.provider_id.clone(),
                    event_data,
                })?
            }
            _ => serde_json::json!({}),
        };
        outbox::queue(
            conn,
            NewNotification {
                message_id,
                channel,
                kind,
                citizen: keys.current(),
                idempotency_key,
                target,
                language,
                payload,
            },
        )
        .await?;
        Ok(Some(idempotency_key))
    }
}

impl Job for Reminders {
    fn name(&self) -> &'static str {
        "reminders"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let fired = self.pass_at(self.clock.now()).await?;
        Ok(if fired.more { Pass::More } else { Pass::Idle })
    }
}

/// Up to a batch of documents due for `kind` at `now`, locked (skipping those another replica
/// holds), each with the national number of its `newDocument` event.
async fn due(
    conn: &mut PgConnection,
    kind: EventType,
    now: DateTime<Utc>,
    periods: Periods,
) -> sqlx::Result<Vec<(MessageId, String)>> {
    let (when, period) = match kind {
        EventType::DocumentExpirationAlert => {
            ("d.expiration_date <= $1 + $3", periods.alert_before)
        }
        _ => (
            "d.receipt_date <= $1 - $3
             AND NOT EXISTS (SELECT 1 FROM reminders a WHERE a.message_id = d.message_id
                                AND a.kind = 'documentExpirationAlert')",
            periods.reminder_after,
        ),
    };
    let rows: Vec<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT d.message_id, e.event_data->>'ssin'
           FROM documents d
           JOIN event_outbox e ON e.message_id = d.message_id AND e.event_type = 'newDocument'
          WHERE d.published AND d.read_at IS NULL AND d.expiration_date > $1
            AND {when}
            AND NOT EXISTS (SELECT 1 FROM reminders r WHERE r.message_id = d.message_id
                               AND r.kind = $2)
          ORDER BY d.receipt_date
          LIMIT $4
          FOR UPDATE OF d SKIP LOCKED"
    )))
    .bind(now)
    .bind(kind.as_str())
    .bind(period)
    .bind(BATCH)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, ssin)| (MessageId::from_uuid(id), ssin))
        .collect())
}

/// Writes the `reminders` row; `false` when it existed (fired already, by another replica).
async fn claim(
    conn: &mut PgConnection,
    message_id: MessageId,
    kind: EventType,
    channel: ChannelKind,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO reminders (message_id, kind, channel, fired_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (message_id, kind) DO NOTHING",
    )
    .bind(message_id.as_uuid())
    .bind(kind.as_str())
    .bind(channel.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

async fn audit(
    conn: &mut PgConnection,
    kind: EventType,
    document: &Document,
    keys: &CitizenKeys,
    channel: ChannelKind,
    idempotency_key: Option<Uuid>,
    event: &domain::events::CitizenDocumentEvent,
) -> sqlx::Result<()> {
    let action = match kind {
        EventType::DocumentExpirationAlert => Action::ExpirationAlertRecorded,
        _ => Action::ReminderRecorded,
    };
    let mut audit = AuditEvent::new(STAGE, action);
    audit.message_id = Some(document.message_id);
    audit.sender_id = Some(document.sender_id.clone());
    audit.sender_reference = Some(document.sender_reference.clone());
    audit.ssin_hash = Some(keys.current().clone());
    audit.details = serde_json::json!({
        "eventType": kind,
        "eventCorrelationId": event.event_correlation_id,
        "channel": channel,
        "notification": if idempotency_key.is_some() { "queued" } else { "skipped" },
        "reason": match channel {
            ChannelKind::None if idempotency_key.is_none() => Some("the citizen opted out of notifications, or chose no channel"),
            _ => None,
        },
        "idempotencyKey": idempotency_key,
        "receiptDate": document.receipt_date,
        "expirationDate": document.expiration_date,
    });
    audit.record(conn).await?;
    Ok(())
}
