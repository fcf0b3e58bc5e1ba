//! The event relay: pushes the federation's events from the events outbox
//! ([`records::events`]) to the event engine (`EBOX_EVENT_ENGINE_URL`), in sequence order, in
//! batches, and marks what the event engine took. A background job ([`runtime::jobs`]) of
//! `ebox worker event-relay`, woken by PostgreSQL `NOTIFY` when events commit, and every second.
//!
//! Each pass:
//!
//! 1. **lead**: one relay pushes at a time (a session advisory lock on a connection of its
//!    own, held while it lives), so that the order holds with several replicas; the others
//!    stand by and take over when the leader's connection goes;
//! 2. **number** what committed since ([`records::events::number_committed`]);
//! 3. **push** the next numbered events, up to `EBOX_EVENT_ENGINE_BATCH_SIZE`, as one JSON array
//!    ([`engine::Engine`]);
//! 4. **settle** by the answer ([`engine::classify`]): 2xx marks them delivered; a 409 means the
//!    event engine has them already (an earlier answer was lost) and a 400 that one is invalid,
//!    so a batch answered either is pushed again one event at a time: an event answered 409 is
//!    delivered, one answered 400 is **parked** (kept, counted, logged; `ebox events parked`,
//!    `ebox events retry`), and the later events of its message wait behind it, parked too, so
//!    the order per message holds. Anything else — no answer, 5xx, 429, 401, 403 — is tried
//!    again with exponential back-off (500 ms doubling to 5 minutes, with jitter), for as long
//!    as it takes: an event is never dropped for a fault of the network or of the event engine.
//!
//! Nothing is lost: an event is marked delivered only after the event engine took it. Nothing
//! is doubled: the push is repeated only when the outcome is unknown (no answer, a crash before
//! the mark), and the event engine drops a repeat by its `eventCorrelationId`, which is stable,
//! answering 409 — which the relay takes for delivered.

pub mod engine;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use domain::ids::MessageId;
use engine::{Answer, Engine};
use records::events::{NUMBER_AT_ONCE, Pending};
use runtime::internal_events::{
    EventParked, EventRelayBacklog, EventRelayFailed, EventsRelayed, RelayResult,
};
use runtime::jobs::{Job, Pass};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The longest wait between two passes when nothing wakes the relay.
pub const EVERY: Duration = Duration::from_secs(1);
/// The first wait after a failed push; each further failure doubles it, up to the next.
const MIN_RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between two attempts while the event engine is away: once it is back,
/// the events go within this long.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5 * 60);
/// How often the backlog is measured, at most.
const MEASURE_EVERY: Duration = Duration::from_secs(5);

pub struct Relay {
    pool: PgPool,
    engine: Engine,
    batch_size: i64,
    /// A connection of the relay's own, out of the pool: it holds the relay's lock while the
    /// relay leads, and loses it when it closes (a fault, a crash).
    conn: Option<PgConnection>,
    leading: bool,
    standby_logged: bool,
    /// While the event engine fails: the back-off, and when to try again.
    backoff: Option<ExponentialBackoff>,
    retry_at: Option<Instant>,
    measured_at: Option<Instant>,
    listener: Option<PgListener>,
    listen_tried: bool,
}

impl Relay {
    pub fn new(pool: PgPool, engine: Engine, batch_size: usize) -> Self {
        runtime::metrics::METRICS.event_relay_started();
        Self {
            pool,
            engine,
            batch_size: i64::try_from(batch_size).unwrap_or(100).max(1),
            conn: None,
            leading: false,
            standby_logged: false,
            backoff: None,
            retry_at: None,
            measured_at: None,
            listener: None,
            listen_tried: false,
        }
    }

    /// One pass on the relay's connection (see the module documentation).
    async fn pass_on(&mut self, conn: &mut PgConnection) -> anyhow::Result<Pass> {
        if !self.lead(conn).await? {
            return Ok(Pass::Idle);
        }
        self.measure_backlog(conn).await?;
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Ok(Pass::Idle);
        }
        records::events::number_committed(conn, NUMBER_AT_ONCE).await?;
        let batch = records::events::next_to_deliver(conn, self.batch_size).await?;
        if batch.is_empty() {
            return Ok(Pass::Idle);
        }
        let full = batch.len() as i64 == self.batch_size;
        if self.relay(conn, batch).await? {
            self.backoff = None;
            self.retry_at = None;
            self.measured_at = None;
            Ok(if full { Pass::More } else { Pass::Idle })
        } else {
            Ok(Pass::Idle)
        }
    }

    /// Takes the relay's lock if it is free; true while this relay holds it.
    async fn lead(&mut self, conn: &mut PgConnection) -> anyhow::Result<bool> {
        if !self.leading {
            self.leading = records::events::try_lead(conn).await?;
            if self.leading {
                info!("this event relay leads: it pushes the events");
            } else if !self.standby_logged {
                info!("another event relay leads; this one stands by");
                self.standby_logged = true;
            }
        }
        Ok(self.leading)
    }

    /// Pushes `batch` (in sequence order) and settles it; false when the event engine failed
    /// and the rest waits for the back-off.
    async fn relay(
        &mut self,
        conn: &mut PgConnection,
        batch: Vec<Pending>,
    ) -> anyhow::Result<bool> {
        let mut parked = Parked::default();
        let mut ready = Vec::with_capacity(batch.len());
        for pending in batch {
            match pending.behind {
                Some(first) => parked.behind(conn, &pending, first).await?,
                None => ready.push(pending),
            }
        }
        if ready.is_empty() {
            return Ok(true);
        }
        let events: Vec<_> = ready.iter().map(|p| &p.event).collect();
        match self.engine.push(&events).await {
            Answer::Taken => {
                delivered(conn, &ready, RelayResult::Delivered).await?;
                Ok(true)
            }
            Answer::Failed(fault, error) => {
                self.failed(conn, &ready, fault, &error).await?;
                Ok(false)
            }
            answer if ready.len() == 1 => {
                self.settle_one(conn, &ready[0], answer, &mut parked).await
            }
            // A 409 or a 400 for several: which ones? Each on its own says.
            Answer::AlreadyTaken | Answer::Refused(_) => self.one_by_one(conn, ready, parked).await,
        }
    }

    /// Pushes each event alone, in order; stops at the first failure.
    async fn one_by_one(
        &mut self,
        conn: &mut PgConnection,
        events: Vec<Pending>,
        mut parked: Parked,
    ) -> anyhow::Result<bool> {
        for pending in events {
            if let Some(first) = parked.first_of(pending.event.message_id) {
                parked.behind(conn, &pending, first).await?;
                continue;
            }
            let answer = self.engine.push(&[&pending.event]).await;
            if !self.settle_one(conn, &pending, answer, &mut parked).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Settles one event by the event engine's answer to it alone.
    async fn settle_one(
        &mut self,
        conn: &mut PgConnection,
        pending: &Pending,
        answer: Answer,
        parked: &mut Parked,
    ) -> anyhow::Result<bool> {
        match answer {
            Answer::Taken => {
                delivered(conn, std::slice::from_ref(pending), RelayResult::Delivered).await?
            }
            Answer::AlreadyTaken => {
                delivered(
                    conn,
                    std::slice::from_ref(pending),
                    RelayResult::AlreadyDelivered,
                )
                .await?
            }
            Answer::Refused(reason) => parked.refused(conn, pending, &reason).await?,
            Answer::Failed(fault, error) => {
                self.failed(conn, std::slice::from_ref(pending), fault, &error)
                    .await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Notes the failed attempt and waits out the next back-off before trying again.
    async fn failed(
        &mut self,
        conn: &mut PgConnection,
        events: &[Pending],
        fault: runtime::internal_events::RelayFault,
        error: &str,
    ) -> anyhow::Result<()> {
        let ids: Vec<i64> = events.iter().map(|p| p.id).collect();
        records::events::note_failure(conn, &ids, error).await?;
        let retry_in = self
            .backoff
            .get_or_insert_with(backoff)
            .next()
            .unwrap_or(MAX_RETRY_DELAY);
        self.retry_at = Some(Instant::now() + retry_in);
        EventRelayFailed {
            reason: fault,
            error,
            events: events.len(),
            retry_in,
        }
        .emit();
        Ok(())
    }

    /// Exports the backlog (`ebox_event_relay_pending`, `…_oldest_pending_seconds`,
    /// `…_parked`), when it was not measured within [`MEASURE_EVERY`].
    async fn measure_backlog(&mut self, conn: &mut PgConnection) -> anyhow::Result<()> {
        if self
            .measured_at
            .is_some_and(|at| at.elapsed() < MEASURE_EVERY)
        {
            return Ok(());
        }
        let backlog = records::events::backlog(conn).await?;
        let oldest = backlog
            .oldest
            .and_then(|since| (chrono::Utc::now() - since).to_std().ok())
            .unwrap_or_default();
        EventRelayBacklog {
            pending: backlog.pending,
            oldest,
            parked: backlog.parked,
        }
        .emit();
        self.measured_at = Some(Instant::now());
        Ok(())
    }
}

/// The back-off between failed pushes: 500 ms doubling to [`MAX_RETRY_DELAY`], with jitter,
/// never giving up.
fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(MIN_RETRY_DELAY)
        .with_max_delay(MAX_RETRY_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Marks `events` taken by the event engine.
async fn delivered(
    conn: &mut PgConnection,
    events: &[Pending],
    result: RelayResult,
) -> anyhow::Result<()> {
    let ids: Vec<i64> = events.iter().map(|p| p.id).collect();
    records::events::mark_delivered(conn, &ids).await?;
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        EventsRelayed {
            result,
            count: events.len(),
            first: first.sequence_nbr,
            last: last.sequence_nbr,
        }
        .emit();
    }
    Ok(())
}

/// The messages with an event parked during this pass, and the number of the first: their
/// later events wait behind it.
#[derive(Default)]
struct Parked(HashMap<MessageId, i64>);

impl Parked {
    fn first_of(&self, message_id: MessageId) -> Option<i64> {
        self.0.get(&message_id).copied()
    }

    /// The event engine refused `pending` for good.
    async fn refused(
        &mut self,
        conn: &mut PgConnection,
        pending: &Pending,
        reason: &str,
    ) -> anyhow::Result<()> {
        self.park(conn, pending, reason).await
    }

    /// `pending` waits behind the parked event numbered `first` of the same message.
    async fn behind(
        &mut self,
        conn: &mut PgConnection,
        pending: &Pending,
        first: i64,
    ) -> anyhow::Result<()> {
        let reason = format!("waits behind parked event {first} of the same message");
        self.park(conn, pending, &reason).await
    }

    async fn park(
        &mut self,
        conn: &mut PgConnection,
        pending: &Pending,
        reason: &str,
    ) -> anyhow::Result<()> {
        records::events::park(conn, pending.id, reason).await?;
        self.0
            .entry(pending.event.message_id)
            .or_insert(pending.sequence_nbr);
        EventParked {
            sequence_nbr: pending.sequence_nbr,
            message_id: pending.event.message_id,
            reason,
        }
        .emit();
        Ok(())
    }
}

impl Job for Relay {
    fn name(&self) -> &'static str {
        "event-relay"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                self.leading = false;
                self.pool.acquire().await?.detach()
            }
        };
        let pass = self.pass_on(&mut conn).await;
        if pass.is_ok() {
            self.conn = Some(conn);
        } else {
            // Closing the connection lets the lock go: this relay, or another, takes it again
            // on a fresh connection.
            self.leading = false;
        }
        pass
    }

    async fn woken(&mut self) {
        if !self.listen_tried {
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

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let listening = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(records::events::WAKE_CHANNEL).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_starts_short_doubles_and_stays_under_the_cap() {
        let delays: Vec<Duration> = backoff().take(20).collect();
        assert_eq!(delays.len(), 20, "it never gives up");
        assert!(delays[0] >= MIN_RETRY_DELAY && delays[0] < 2 * MIN_RETRY_DELAY);
        assert!(delays[3] >= 8 * MIN_RETRY_DELAY, "{delays:?}");
        for delay in &delays {
            assert!(*delay <= 2 * MAX_RETRY_DELAY, "{delay:?}");
        }
        assert!(delays[19] >= MAX_RETRY_DELAY, "{delays:?}");
    }
}
