//! The one consumer driver. A worker is a [`Handler`]: decode → decide → effects → what to
//! publish next. The driver owns everything else, once for every stage:
//!
//! 1. consume its queue — and its lanes, if it has any ([`crate::lanes`]: intake's senders'
//!    own queues), taken in turn — with a bounded prefetch, and take up to `batch_size`
//!    deliveries that are already there (it never waits to fill a batch); charge them to the
//!    stage's limits ([`Handler::admit`]), which may make a lane wait;
//! 2. run the handler for each delivery inside one database transaction, each in its own
//!    savepoint, so one bad message cannot spoil the others' effects;
//! 3. commit, then publish every outgoing message with publisher confirms;
//! 4. only then ack (or dead-letter) each delivery.
//!
//! A crash between two steps loses nothing: before the commit, nothing happened and the broker
//! redelivers; after the commit but before the confirm or the ack, the redelivery finds the
//! effects committed and the handler, being idempotent, publishes the same messages again.
//!
//! Transient faults (database or broker unreachable, serialisation conflicts) retry the batch
//! in place with capped exponential back-off, for as long as it takes: nothing is dead-lettered
//! because a dependency is down. Permanent faults dead-letter that one delivery.
//!
//! Shutdown is checked between batches: a batch that started always finishes. Then the
//! consumer is cancelled and the deliveries the broker had already sent (the prefetch) are
//! handled like any other batch, so that a rollout returns nothing to the queue: a returned
//! delivery counts towards the delivery limit.
//!
//! Liveness ([`runtime::liveness`]): the driver tells its heartbeat which step it is in, so that
//! a step that never ends, or a queue with messages ready that never reach the consumer, makes
//! `/livez` fail; waiting for a dependency to come back does not.
//!
//! Traces: each delivery is a span (`delivery`, kind consumer) in the trace its `traceparent`
//! header names, or in a new one ([`crate::propagation`]); it lasts until the delivery is
//! settled. Whatever the handler (or its give-up) publishes, and the dead-letter copy, is
//! published in that span's trace, so one message's journey through every stage is one trace.

use crate::give_up;
use crate::lanes::{LaneDelivery, LaneSpec, LaneWait, Lanes};
use crate::parked;
use crate::propagation;
use crate::publisher::{Outgoing, Publisher};
use crate::topology::{self, DELIVERY_LIMIT};
use anyhow::Context as _;
use backon::{BackoffBuilder, ExponentialBuilder};
use domain::audit::Stage;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use runtime::internal_events::{
    BatchHandled, DeliveryOutcome, DeliverySettled, DeliveryTaken, MessageHandled, PublishesParked,
    TransientFault,
};
use runtime::liveness::Heartbeat;
use runtime::metrics::{METRICS, Readiness};
use runtime::telemetry::{self, Messaging, MessagingOperation, SpanKind};
use runtime::trace::TraceContext;
use sqlx::{Acquire, PgConnection, PgPool};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, error, field, info, info_span, warn};

/// What a handler sees of a delivery: no acker, so a handler cannot settle it behind the
/// driver's back, and a test can build one without a broker.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub properties: &'a BasicProperties,
    pub body: &'a [u8],
    pub redelivered: bool,
    /// The key it was routed with (a status event's `<sender>.<status>`).
    pub routing_key: &'a str,
}

/// How the driver settles a delivery once the batch is committed and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Parked on the stage's dead-letter queue (after the handler recorded why), with `reason`.
    DeadLetter {
        reason: String,
    },
}

#[derive(Debug)]
pub struct Outcome {
    pub publish: Vec<Outgoing>,
    pub disposition: Disposition,
}

impl Outcome {
    pub fn ack(publish: Vec<Outgoing>) -> Self {
        Self {
            publish,
            disposition: Disposition::Ack,
        }
    }

    pub fn dead_letter(reason: impl Into<String>) -> Self {
        Self {
            publish: Vec::new(),
            disposition: Disposition::DeadLetter {
                reason: reason.into(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Retry later: a dependency is unavailable or a transaction conflicted.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Retrying cannot help: the delivery is dead-lettered.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        let transient = match &error {
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                matches!(
                    code.as_ref(),
                    // serialization_failure, deadlock_detected, lock_not_available,
                    // read_only_sql_transaction (a failover in progress), query_canceled
                    // (statement timeout), and unique_violation: two copies of one message
                    // handled at once in different batches; the retry finds the winner's row.
                    "40001" | "40P01" | "55P03" | "25006" | "57014" | "23505"
                ) || code.starts_with("08") // connection exceptions
                    || code.starts_with("53") // insufficient resources
                    || code.starts_with("57P") // operator intervention: shutdowns, cannot connect now
            }),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            _ => false,
        };
        if transient {
            HandlerError::Transient(error.into())
        } else {
            HandlerError::Permanent(error.into())
        }
    }
}

/// Says how retrying would fare, where the error arises: `result.permanent()?` or
/// `result.transient()?`.
pub trait ResultExt<T> {
    /// Retrying cannot help (a malformed message, a serialisation bug).
    fn permanent(self) -> Result<T, HandlerError>;
    /// Retrying later may help (a dependency is unavailable).
    fn transient(self) -> Result<T, HandlerError>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::Permanent(e.into()))
    }

    fn transient(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::Transient(e.into()))
    }
}

/// How a handler's input is read from a delivery, by the driver, before the handler runs.
/// A delivery that does not decode is dead-lettered: it can never be handled.
pub trait Decode: Sized + Send {
    fn decode(incoming: &Incoming<'_>) -> Result<Self, HandlerError>;
}

/// Nothing decoded: the handler reads the delivery itself (intake, whose input is a sender's
/// publication that it must answer even when it does not decode).
#[derive(Debug, Clone, Copy)]
pub struct Raw;

impl Decode for Raw {
    fn decode(_: &Incoming<'_>) -> Result<Self, HandlerError> {
        Ok(Raw)
    }
}

/// A JSON message between stages.
pub trait InternalMessage: serde::de::DeserializeOwned + Send {
    /// What it is, for the error when it does not decode.
    const WHAT: &'static str;
}

impl<T: InternalMessage> Decode for T {
    fn decode(incoming: &Incoming<'_>) -> Result<Self, HandlerError> {
        serde_json::from_slice(incoming.body)
            .map_err(|e| anyhow::anyhow!("not a valid {}: {e}", T::WHAT))
            .permanent()
    }
}

impl InternalMessage for domain::handoff::Handoff {
    const WHAT: &'static str = "hand-off";
}

impl InternalMessage for domain::events::EventEnvelope {
    const WHAT: &'static str = "event";
}

/// One stage of the pipeline.
pub trait Handler: Send + Sync + 'static {
    /// What the driver decodes from each delivery for the handler.
    type Message: Decode;

    /// The stage, in the audit trail.
    const STAGE: Stage;

    /// The queue this stage consumes.
    fn queue(&self) -> &'static str;

    /// Handles one decoded delivery. Every database effect, including the audit slice and the
    /// record that the delivery was processed, goes through `conn`, which is inside the batch's
    /// transaction. Must be idempotent: the same delivery may come again after a crash.
    fn handle(
        &self,
        conn: &mut PgConnection,
        message: Self::Message,
        incoming: Incoming<'_>,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;

    /// The lanes the stage consumes besides its queue (intake: one per sender), looked up when
    /// the consumer starts and every [`LANES_REFRESH`]. The default: none.
    fn lanes(&self, pool: &PgPool) -> impl Future<Output = anyhow::Result<Vec<LaneSpec>>> + Send {
        let _ = pool;
        async { Ok(Vec::new()) }
    }

    /// Charges a batch, before it is handled, to whatever limits the stage applies, and says
    /// which lanes must wait before more of their deliveries are taken (the batch itself is
    /// handled). Outside the batch's transaction: a charge is not undone when the batch is
    /// retried. The default: nothing waits.
    fn admit(
        &self,
        pool: &PgPool,
        batch: &[Incoming<'_>],
    ) -> impl Future<Output = anyhow::Result<Vec<LaneWait>>> + Send {
        let _ = (pool, batch);
        async { Ok(Vec::new()) }
    }

    /// The driver gives up on `incoming` (a permanent fault, a body that does not decode, or
    /// the broker's delivery limit is near): record it, in a savepoint of its own after the
    /// failed attempt was rolled back, and say what to publish (the sender's final status).
    /// The delivery is then dead-lettered. The default audits the give-up only.
    fn give_up(
        &self,
        conn: &mut PgConnection,
        incoming: Incoming<'_>,
        error: &anyhow::Error,
    ) -> impl Future<Output = Result<Vec<Outgoing>, HandlerError>> + Send {
        let _ = incoming;
        give_up::audit_only(conn, Self::STAGE, None, error)
    }
}

/// What the driver needs besides the handler.
#[derive(Clone)]
pub struct DriverSettings {
    pub amqp_url: String,
    pub prefetch: u16,
    pub batch_size: usize,
}

/// Consumes until `shutdown`, reconnecting with back-off when the broker connection fails.
/// `ready` is set while the consumer runs; `heartbeat` says which step it is in.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    pool: PgPool,
    settings: DriverSettings,
    ready: Readiness,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) {
    let queue = handler.queue();
    METRICS.consumer_started(H::STAGE, queue);
    for exchange in [
        topology::INTERNAL_EXCHANGE,
        topology::STATUS_EXCHANGE,
        topology::EVENTS_EXCHANGE,
        topology::DEAD_LETTER_EXCHANGE,
    ] {
        METRICS.publishes_to(exchange);
    }
    let mut backoff = reconnect_backoff();
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let driver = Driver {
            pool: &pool,
            heartbeat: &heartbeat,
            shutdown: &shutdown,
        };
        match consume(&*handler, driver, &settings, &ready).await {
            Ok(()) => break,
            Err(error) => {
                ready.set(false);
                heartbeat.waiting();
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = reconnect_backoff();
                }
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                error!(
                    queue,
                    error = format!("{error:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "consumer stopped; reconnecting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    ready.set(false);
    info!(queue, "consumer stopped");
}

fn reconnect_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Opens a connection named after the process, for the broker's management views, with the
/// process's TLS settings ([`crate::tls::install`]). Every connection of the service is made
/// here.
pub async fn connect(amqp_url: &str, name: &str) -> lapin::Result<Connection> {
    connect_with_tls(amqp_url, name, crate::tls::installed()).await
}

/// [`connect`] with the given TLS settings. `amqps://` always performs a TLS handshake that
/// verifies the broker's certificate, and never falls back to plain TCP: lapin opens the TCP
/// stream, the TLS on top of it is done here, so that no feature set of lapin's can leave an
/// `amqps://` stream plain (issue #9: without a root-certificate feature it did).
pub async fn connect_with_tls(
    amqp_url: &str,
    name: &str,
    tls: &crate::tls::BrokerTls,
) -> lapin::Result<Connection> {
    use lapin::tcp::AMQPUriTcpExt;
    use lapin::uri::{AMQPScheme, AMQPUri};
    use std::io;

    let uri: AMQPUri = amqp_url.parse().map_err(|problem: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid broker URL: {problem}"),
        )
    })?;
    let connector = match uri.scheme {
        AMQPScheme::AMQP => None,
        AMQPScheme::AMQPS => Some(tls.connector()?),
    };
    let open = async move |uri: AMQPUri, runtime| {
        let mut tcp = uri.clone();
        tcp.scheme = AMQPScheme::AMQP;
        let stream = tcp.connect_async(&runtime).await?;
        match (&uri.scheme, &connector) {
            (AMQPScheme::AMQP, _) => Ok(stream),
            (AMQPScheme::AMQPS, Some(connector)) => {
                Ok(stream.into_rustls(connector, &uri.authority.host).await?)
            }
            (AMQPScheme::AMQPS, None) => Err(io::Error::other(
                "refusing plain TCP for an amqps:// URL without TLS settings",
            )
            .into()),
        }
    };
    Connection::connector(
        uri,
        lapin::runtime::default_runtime()?,
        open,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
}

/// What every step of a consumer shares: the pool, where it reports progress, and shutdown.
#[derive(Clone, Copy)]
struct Driver<'a> {
    pool: &'a PgPool,
    heartbeat: &'a Heartbeat,
    shutdown: &'a CancellationToken,
}

/// How often a consumer waiting for deliveries looks at its queue's depth: messages ready that
/// never reach it are a stall ([`Heartbeat::backlog`]).
const BACKLOG_CHECK_EVERY: Duration = Duration::from_secs(30);

/// How long shutdown waits for the broker to confirm the cancellation and for the prefetched
/// deliveries to be handled. What is left then goes back to the queue.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// At shutdown, how long without a delivery means the broker has sent all it had for this
/// consumer (its queue is empty, or the prefetch window is full).
const DRAIN_QUIET: Duration = Duration::from_millis(500);

async fn consume<H: Handler>(
    handler: &H,
    driver: Driver<'_>,
    settings: &DriverSettings,
    ready: &Readiness,
) -> anyhow::Result<()> {
    let queue = handler.queue();
    let connection = connect(&settings.amqp_url, &format!("ebox {queue}")).await?;
    // Publishing has a connection of its own: a broker resource alarm blocks publishing
    // connections, and it must not block the consuming one's acks with them.
    let publishing = connect(&settings.amqp_url, &format!("ebox {queue} publisher")).await?;
    let mut publisher = Publisher::open(&publishing).await?;
    let service_user = amqp_user(&settings.amqp_url);
    let specs = handler
        .lanes(driver.pool)
        .await
        .context("looking up the lanes to consume")?;
    let mut lanes = Lanes::open(&connection, queue, settings.prefetch, &specs).await?;
    // Counted in `ebox_amqp_connected` until this function returns: a broken connection ends
    // it (the caller reconnects), and so does shutdown, once the prefetch is drained.
    let _connected = METRICS.consumer_connected(queue);
    ready.set(true);
    info!(
        queue,
        prefetch = settings.prefetch,
        batch_size = settings.batch_size,
        "consuming"
    );

    let mut depth = QueueDepth::new(&connection, queue);
    let mut refresh =
        tokio::time::interval_at(tokio::time::Instant::now() + LANES_REFRESH, LANES_REFRESH);
    loop {
        driver.heartbeat.waiting();
        let first = loop {
            tokio::select! {
                // Cancellation only here, between batches: a batch that started always finishes.
                _ = driver.shutdown.cancelled() => break None,
                next = lanes.next() => break Some(next),
                _ = tokio::time::sleep(BACKLOG_CHECK_EVERY) => depth.check(driver.heartbeat).await,
                _ = refresh.tick() => match handler.lanes(driver.pool).await {
                    Ok(specs) => lanes.refresh(&specs).await,
                    Err(error) => warn!(queue, error = format!("{error:#}"), "could not look up the lanes; keeping those open"),
                },
            }
        };
        let Some(first) = first else { break };
        let batch = fill_batch(first?, &mut lanes, settings.batch_size)?;
        let batch = admit(handler, driver, &mut lanes, batch).await;
        if batch.is_empty() {
            continue;
        }
        let broker = Broker {
            connection: &publishing,
            publisher: &mut publisher,
            service_user: &service_user,
        };
        process_batch(handler, driver, broker, batch).await?;
    }
    ready.set(false);
    let broker = Broker {
        connection: &publishing,
        publisher: &mut publisher,
        service_user: &service_user,
    };
    drain(handler, driver, settings, &mut lanes, broker).await?;
    driver.heartbeat.waiting();
    lanes.close().await;
    let _ = connection.close(200, "shutting down".into()).await;
    let _ = publishing.close(200, "shutting down".into()).await;
    Ok(())
}

/// How often a consumer looks up its lanes again (a sender added to the registry, a lane whose
/// wait is over).
pub const LANES_REFRESH: Duration = Duration::from_secs(10);

/// `first` and the deliveries already there after it, lanes taking turns, up to `batch_size`:
/// a batch never waits to fill.
fn fill_batch(
    first: LaneDelivery,
    lanes: &mut Lanes<'_>,
    batch_size: usize,
) -> anyhow::Result<Vec<LaneDelivery>> {
    let mut batch = vec![first];
    while batch.len() < batch_size {
        match lanes.next_now()? {
            Some(delivery) => batch.push(delivery),
            None => break,
        }
    }
    Ok(batch)
}

/// Charges the batch to the stage's limits, makes the lanes over them wait, and returns what
/// of the batch is handled now (a deferring wait puts its lane's deliveries back). A charge
/// that fails (the database is down) is logged and the whole batch goes on: the handler's
/// transaction meets the same fault and retries.
async fn admit<H: Handler>(
    handler: &H,
    driver: Driver<'_>,
    lanes: &mut Lanes<'_>,
    batch: Vec<LaneDelivery>,
) -> Vec<Delivery> {
    let incoming: Vec<Incoming<'_>> = batch
        .iter()
        .map(|taken| incoming(&taken.delivery))
        .collect();
    let waits = match handler.admit(driver.pool, &incoming).await {
        Ok(waits) => waits,
        Err(error) => {
            warn!(
                queue = handler.queue(),
                error = format!("{error:#}"),
                "could not charge a batch to its senders' limits; handling it all the same"
            );
            Vec::new()
        }
    };
    drop(incoming);
    lanes.wait(&waits, batch).await
}

/// What a handler sees of `delivery`.
fn incoming(delivery: &Delivery) -> Incoming<'_> {
    Incoming {
        properties: &delivery.properties,
        body: &delivery.data,
        redelivered: delivery.redelivered,
        routing_key: delivery.routing_key.as_str(),
    }
}

/// Shutdown: takes what the broker sends until the prefetch window is full (or nothing more
/// comes), asks the broker to stop delivering, then handles what it holds like any batch. So
/// no delivery goes back to the queue: each return counts towards the delivery limit, and
/// enough rollouts during a backlog would give up on messages nobody failed to handle.
///
/// Why fill the window first: deliveries the broker sent in answer to the last acks may still
/// be on their way when it confirms the cancellation (a quorum queue delivers asynchronously),
/// and the client drops deliveries for a consumer it no longer has; they would go back to the
/// queue when the channel closes. With the window full, the broker has nothing on its way.
async fn drain<H: Handler>(
    handler: &H,
    driver: Driver<'_>,
    settings: &DriverSettings,
    lanes: &mut Lanes<'_>,
    broker: Broker<'_>,
) -> anyhow::Result<()> {
    let queue = handler.queue();
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    driver.heartbeat.busy("draining its prefetch");
    let held = lanes.drain(DRAIN_QUIET, deadline).await?;
    let drained = held.len();
    let mut held = held.into_iter();
    loop {
        let batch: Vec<Delivery> = held.by_ref().take(settings.batch_size).collect();
        if batch.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                queue,
                drained, "the drain ran out of time; what is left goes back to the queue"
            );
            return Ok(());
        }
        let broker = Broker {
            connection: broker.connection,
            publisher: &mut *broker.publisher,
            service_user: broker.service_user,
        };
        process_batch(handler, driver, broker, batch).await?;
    }
    info!(
        queue,
        drained, "prefetched deliveries handled before stopping"
    );
    Ok(())
}

/// Looks at the consumed queue's depth while the consumer waits, on a channel of its own (a
/// passive declare that fails closes its channel), and tells the heartbeat.
struct QueueDepth<'a> {
    connection: &'a Connection,
    queue: &'static str,
    channel: Option<Channel>,
}

impl<'a> QueueDepth<'a> {
    fn new(connection: &'a Connection, queue: &'static str) -> Self {
        Self {
            connection,
            queue,
            channel: None,
        }
    }

    /// Called only while the consumer waits with nothing in hand: messages ready then are
    /// messages the broker does not deliver. A failed look says nothing either way.
    async fn check(&mut self, heartbeat: &Heartbeat) {
        let channel = match self.channel.take() {
            Some(channel) if channel.status().connected() => channel,
            _ => match self.connection.create_channel().await {
                Ok(channel) => channel,
                Err(_) => return,
            },
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = tokio::time::timeout(
            PUBLISH_DEADLINE,
            channel.queue_declare(self.queue.into(), passive, FieldTable::default()),
        )
        .await;
        if let Ok(Ok(declared)) = declared {
            match declared.message_count() {
                0 => heartbeat.waiting(),
                ready => heartbeat.backlog(ready),
            }
            self.channel = Some(channel);
        }
    }
}

/// Handles, commits, publishes and settles one batch. Returns an error only when the broker
/// connection is unusable (the caller reconnects and the broker redelivers).
async fn process_batch<H: Handler>(
    handler: &H,
    driver: Driver<'_>,
    mut broker: Broker<'_>,
    batch: Vec<Delivery>,
) -> anyhow::Result<()> {
    let queue = handler.queue();
    let started = Instant::now();
    taken(H::STAGE, &batch);
    // Once per delivery, not per attempt: a batch retried after a transient fault is still
    // the same deliveries, in the same spans.
    let traced: Vec<Traced> = batch
        .iter()
        .map(|delivery| Traced::delivery(H::STAGE, queue, delivery))
        .collect();
    let Some(outcomes) = commit(handler, driver, &batch, &traced).await else {
        requeue_all(queue, &batch).await;
        return Ok(());
    };
    runtime::failpoint::hit("driver.after-commit");
    let outgoing: Vec<Outgoing> = outcomes
        .iter()
        .flat_map(|outcome| outcome.publish.iter().cloned())
        .collect();
    if !publish(queue, driver, &mut broker, &outgoing).await? {
        // Redelivery after the restart publishes again (the handlers are idempotent).
        requeue_all(queue, &batch).await;
        return Ok(());
    }
    runtime::failpoint::hit("driver.after-publish");
    driver.heartbeat.busy("settling a batch");
    settle(queue, H::STAGE, &broker, &batch, &traced, &outcomes).await?;
    BatchHandled {
        queue,
        size: batch.len(),
        elapsed: started.elapsed(),
    }
    .emit();
    Ok(())
}

/// Handles the batch and commits, retrying transient faults for as long as it takes; `None`
/// when shutdown came first (nothing was committed).
async fn commit<H: Handler>(
    handler: &H,
    driver: Driver<'_>,
    batch: &[Delivery],
    traced: &[Traced],
) -> Option<Vec<Outcome>> {
    let mut backoff = retry_backoff();
    loop {
        driver.heartbeat.busy("handling a batch");
        match handle_batch(handler, driver.pool, batch, traced).await {
            Ok(outcomes) => return Some(outcomes),
            Err(error) => {
                driver.heartbeat.waiting();
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                TransientFault {
                    queue: handler.queue(),
                    error: &error,
                    retry_in: delay,
                }
                .emit();
                tokio::select! {
                    _ = driver.shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The consumer's publishing connection and channel.
struct Broker<'a> {
    connection: &'a Connection,
    publisher: &'a mut Publisher,
    /// The service's own broker user.
    service_user: &'a str,
}

/// Tries a refused publish gets on fresh channels before it is parked.
const PUBLISH_ATTEMPTS: usize = 3;

/// The longest one publishing attempt (writes and confirms) may take.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(15);

/// A publishing attempt that passed [`PUBLISH_DEADLINE`].
#[derive(Debug, thiserror::Error)]
#[error("publishing did not finish within {PUBLISH_DEADLINE:?}")]
struct PublishTimedOut;

/// Publishes the committed batch's messages; `false` when shutdown came first.
///
/// The effects are committed: never requeue them (each requeue counts toward the delivery
/// limit). A message the broker refuses (a missing binding, a full queue, a nack, no confirm in
/// time) is tried again on a fresh channel a few times, then parked ([`crate::parked`]) so the
/// batch is acknowledged and the stage goes on for every other sender. A broken connection
/// ends the consumer instead: the broker redelivers and the handlers publish again.
async fn publish(
    queue: &'static str,
    driver: Driver<'_>,
    broker: &mut Broker<'_>,
    outgoing: &[Outgoing],
) -> anyhow::Result<bool> {
    let mut pending: Vec<&Outgoing> = outgoing.iter().collect();
    let mut refused = Vec::new();
    for attempt in 1..=PUBLISH_ATTEMPTS {
        driver.heartbeat.busy("publishing a batch");
        if broker.connection.status().blocked() {
            // A resource alarm: the broker reads nothing from publishers until it clears.
            refused = pending
                .iter()
                .map(|message| {
                    (
                        *message,
                        "the broker blocks publishers (a resource alarm)".to_owned(),
                    )
                })
                .collect();
            break;
        }
        // Writing a large body to a connection the broker stopped reading never ends by
        // itself: the whole publish, not only the confirm, has a deadline.
        let attempted =
            tokio::time::timeout(PUBLISH_DEADLINE, broker.publisher.publish_each(&pending)).await;
        refused = match attempted {
            Ok(results) => pending
                .into_iter()
                .zip(results)
                .filter_map(|(message, error)| Some((message, error?.to_string())))
                .collect(),
            Err(_) => pending
                .into_iter()
                .map(|message| (message, PublishTimedOut.to_string()))
                .collect(),
        };
        if refused.is_empty() {
            return Ok(true);
        }
        if !broker.connection.status().connected() {
            anyhow::bail!(
                "the broker connection failed while publishing: {}",
                refused[0].1
            );
        }
        warn!(
            queue,
            attempt,
            refused = refused.len(),
            error = refused[0].1,
            "publish refused; trying again on a fresh channel"
        );
        tokio::time::timeout(PUBLISH_DEADLINE, broker.publisher.reopen(broker.connection))
            .await
            .map_err(|_| anyhow::anyhow!("opening a fresh publishing channel timed out"))??;
        pending = refused.iter().map(|(message, _)| *message).collect();
    }
    park(queue, driver, &refused).await
}

/// Parks what the broker refused, retrying a database fault until it goes through; `false`
/// when shutdown came first (the batch is requeued and published again after the restart).
async fn park(
    queue: &'static str,
    driver: Driver<'_>,
    refused: &[(&Outgoing, String)],
) -> anyhow::Result<bool> {
    let mut backoff = retry_backoff();
    loop {
        driver.heartbeat.busy("parking refused publishes");
        let parked = async {
            let mut conn = driver.pool.acquire().await?;
            parked::park(&mut conn, queue, refused).await
        };
        match parked.await {
            Ok(()) => {
                PublishesParked {
                    queue,
                    count: refused.len(),
                    error: &refused[0].1,
                }
                .emit();
                return Ok(true);
            }
            Err(error) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                TransientFault {
                    queue,
                    error: &error.into(),
                    retry_in: delay,
                }
                .emit();
                driver.heartbeat.waiting();
                tokio::select! {
                    _ = driver.shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Acks or parks each delivery as its handler decided.
async fn settle(
    queue: &'static str,
    stage: Stage,
    broker: &Broker<'_>,
    batch: &[Delivery],
    traced: &[Traced],
    outcomes: &[Outcome],
) -> lapin::Result<()> {
    for ((delivery, traced), outcome) in batch.iter().zip(traced).zip(outcomes) {
        match &outcome.disposition {
            Disposition::Ack => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
                settled(queue, DeliveryOutcome::Ack);
            }
            Disposition::DeadLetter { reason } => {
                park_delivery(queue, stage, broker, delivery, &traced.context, reason).await?;
                settled(queue, DeliveryOutcome::DeadLetter);
            }
        }
    }
    Ok(())
}

/// Parks a copy of `delivery` on its stage's dead-letter queue, with why, where and when in
/// its headers (`x-ebox-reason`, `x-ebox-stage`, `x-ebox-queue`, `x-ebox-parked-at`, and the
/// sender's `x-ebox-user-id`: a copy cannot carry another user's `user_id`), then acks it.
/// When the copy is refused, the delivery is rejected instead and the broker dead-letters it
/// to the same queue, without the reason. The copy is published in the delivery's trace
/// (`trace`), and carries it to a replay.
async fn park_delivery(
    queue: &'static str,
    stage: Stage,
    broker: &Broker<'_>,
    delivery: &Delivery,
    trace: &TraceContext,
    reason: &str,
) -> lapin::Result<()> {
    // Whatever `x-ebox-*` the delivery arrived with is dropped: only the driver writes them.
    let mut headers = FieldTable::default();
    if let Some(original) = delivery.properties.headers() {
        for (key, value) in original.inner() {
            if !key.as_str().starts_with("x-ebox-") {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    let text = |value: &str| AMQPValue::LongString(value.into());
    headers.insert("x-ebox-reason".into(), text(reason));
    headers.insert("x-ebox-stage".into(), text(stage.as_str()));
    headers.insert("x-ebox-queue".into(), text(queue));
    headers.insert(
        "x-ebox-parked-at".into(),
        text(&chrono::Utc::now().to_rfc3339()),
    );
    if let Some(user) = delivery.properties.user_id() {
        headers.insert("x-ebox-user-id".into(), text(user.as_str()));
    }
    // The copy's own `user_id` is the service's (the broker checks it): that is how a replay
    // tells the driver's copies, whose `x-ebox-user-id` it may trust, from anything else.
    let properties = without_user_id(&delivery.properties)
        .with_headers(propagation::with_context(Some(&headers), trace))
        .with_user_id(broker.service_user.into());
    let parked = broker
        .publisher
        .publish_as_is(
            topology::DEAD_LETTER_EXCHANGE,
            &topology::parked_routing_key(stage),
            &delivery.data,
            properties,
        )
        .await;
    match parked {
        Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await?,
        Err(error) => {
            warn!(queue, error = %error, "could not park a copy; the broker dead-letters the delivery");
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await?
        }
    };
    Ok(())
}

/// The user of an AMQP URL (`guest` when it names none, as the URI scheme says),
/// percent-decoded.
pub fn amqp_user(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let user = match rest.split_once('@') {
        Some((credentials, _)) => credentials
            .split_once(':')
            .map_or(credentials, |(user, _)| user),
        None => "guest",
    };
    percent_decode(user)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `properties` without `user_id`, which the broker lets only that user publish.
pub fn without_user_id(properties: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    macro_rules! keep {
        ($($get:ident => $set:ident),+) => {
            $(if let Some(value) = properties.$get().clone() {
                copy = copy.$set(value);
            })+
        };
    }
    keep!(
        content_type => with_content_type,
        content_encoding => with_content_encoding,
        headers => with_headers,
        delivery_mode => with_delivery_mode,
        priority => with_priority,
        correlation_id => with_correlation_id,
        reply_to => with_reply_to,
        expiration => with_expiration,
        message_id => with_message_id,
        timestamp => with_timestamp,
        kind => with_type,
        app_id => with_app_id,
        cluster_id => with_cluster_id
    );
    copy
}

/// Runs the handler over the batch in one transaction. A transient error anywhere aborts the
/// whole batch (the caller retries it); a permanent one dead-letters its delivery only.
async fn handle_batch<H: Handler>(
    handler: &H,
    pool: &PgPool,
    batch: &[Delivery],
    traced: &[Traced],
) -> Result<Vec<Outcome>, anyhow::Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (delivery, traced) in batch.iter().zip(traced) {
        let incoming = incoming(delivery);
        let span = &traced.span;
        let mut savepoint = tx.begin().await?;
        let handled = match last_chance(&incoming) {
            Some(count) => Err(HandlerError::Permanent(anyhow::anyhow!(
                "delivered {} times: the broker's delivery limit ({DELIVERY_LIMIT}) is near, \
                 so the stage gives up rather than crash-looping",
                count + 1
            ))),
            None => match H::Message::decode(&incoming) {
                Ok(message) => {
                    let handling = Instant::now();
                    let handled = handler
                        .handle(&mut savepoint, message, incoming)
                        .instrument(span.clone())
                        .await;
                    MessageHandled {
                        stage: H::STAGE,
                        elapsed: handling.elapsed(),
                    }
                    .emit();
                    handled
                }
                Err(error) => Err(error),
            },
        };
        match handled {
            Ok(outcome) => {
                savepoint.commit().await?;
                runtime::failpoint::hit("driver.handle");
                outcomes.push(traced.stamp(outcome));
            }
            Err(HandlerError::Permanent(error)) => {
                savepoint.rollback().await?;
                span.in_scope(|| {
                    error!(
                        error = give_up::reason(&error),
                        "permanent fault; giving up and dead-lettering the delivery"
                    )
                });
                let publish = give_up(handler, &mut tx, incoming, &error)
                    .instrument(span.clone())
                    .await?;
                outcomes.push(traced.stamp(Outcome {
                    publish,
                    disposition: Disposition::DeadLetter {
                        reason: give_up::reason(&error),
                    },
                }));
            }
            Err(HandlerError::Transient(error)) => return Err(error),
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The handler's give-up, in its own savepoint. A transient fault retries the whole batch; a
/// give-up that itself fails for good leaves the delivery to be dead-lettered, logged.
async fn give_up<H: Handler>(
    handler: &H,
    tx: &mut PgConnection,
    incoming: Incoming<'_>,
    error: &anyhow::Error,
) -> anyhow::Result<Vec<Outgoing>> {
    let mut savepoint = Acquire::begin(&mut *tx).await?;
    match handler.give_up(&mut savepoint, incoming, error).await {
        Ok(publish) => {
            savepoint.commit().await?;
            Ok(publish)
        }
        Err(HandlerError::Transient(error)) => Err(error),
        Err(HandlerError::Permanent(failure)) => {
            savepoint.rollback().await?;
            error!(
                error = format!("{failure:#}"),
                "the give-up could not be recorded; dead-lettering the delivery all the same"
            );
            Ok(Vec::new())
        }
    }
}

/// `Some(count)` when this delivery is among the last the broker allows (its
/// `x-delivery-count` is within one of the limit): the driver gives up on it instead of
/// handling it, so a message that crashes its worker still gets a final status. One spare
/// delivery is left for a crash during the give-up itself.
fn last_chance(incoming: &Incoming<'_>) -> Option<i64> {
    // The broker sets the count on redeliveries only; on a first delivery it is whatever the
    // publisher wrote, and nobody may force a give-up.
    if !incoming.redelivered {
        return None;
    }
    let count = incoming
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-delivery-count")
        .and_then(|value| match value {
            AMQPValue::LongLongInt(n) => Some(*n),
            AMQPValue::LongInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortInt(n) => Some(i64::from(*n)),
            AMQPValue::LongUInt(n) => Some(i64::from(*n)),
            _ => None,
        })?;
    (count >= DELIVERY_LIMIT - 1).then_some(count)
}

fn retry_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn requeue_all(queue: &'static str, batch: &[Delivery]) {
    for delivery in batch {
        let _ = delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await;
        settled(queue, DeliveryOutcome::Requeue);
    }
}

fn settled(queue: &'static str, outcome: DeliveryOutcome) {
    DeliverySettled { queue, outcome }.emit();
}

/// One delivery's span and its trace context.
struct Traced {
    span: Span,
    context: TraceContext,
}

impl Traced {
    /// The span of one delivery, with the same field names in every stage: `message_id` is
    /// always the eBox message id (an internal hand-off's AMQP `message_id`), `sender_reference`
    /// and `sender` a sender's publication's (at intake), `event_id` an event's correlation id
    /// (notify, read-receipt), `correlation_id` the sender's, echoed along the pipeline;
    /// `trace_id` and `span_id` its trace context, continued from the delivery's `traceparent`.
    /// Never a national number.
    fn delivery(stage: Stage, queue: &str, delivery: &Delivery) -> Self {
        let properties = &delivery.properties;
        let amqp_id = properties.message_id().as_ref().map(|id| id.as_str());
        let (message_id, sender_reference, event_id) = match stage {
            Stage::Intake => (None, amqp_id, None),
            Stage::ConsentCheck | Stage::Store => (amqp_id, None, None),
            Stage::Notify | Stage::ReadReceipt => (None, None, amqp_id),
            _ => (None, None, None),
        };
        let span = info_span!(
            parent: None,
            "delivery",
            otel.name = field::Empty,
            otel.kind = field::Empty,
            stage = stage.as_str(),
            queue,
            delivery_tag = delivery.delivery_tag,
            message_id,
            sender_reference,
            sender = sender_reference.and(properties.user_id().as_ref().map(|id| id.as_str())),
            event_id,
            correlation_id = properties.correlation_id().as_ref().map(|id| id.as_str()),
            redelivered = delivery.redelivered,
            trace_id = field::Empty,
            span_id = field::Empty,
        );
        // A `traceparent` that is missing or not well formed starts a new trace.
        let context = telemetry::start(
            &span,
            format_args!("process {queue}"),
            SpanKind::Consumer,
            propagation::incoming(properties).as_ref(),
        );
        telemetry::messaging(
            &span,
            &Messaging {
                operation: MessagingOperation::Process,
                exchange: delivery.exchange.as_str(),
                routing_key: delivery.routing_key.as_str(),
                message_id: amqp_id,
                queue: Some(queue),
                delivery_tag: Some(delivery.delivery_tag),
            },
        );
        Self { span, context }
    }

    /// `outcome`, whose messages are published in this delivery's trace (unless the handler
    /// gave one a trace of its own).
    fn stamp(&self, mut outcome: Outcome) -> Outcome {
        for message in &mut outcome.publish {
            message.trace.get_or_insert_with(|| self.context.clone());
        }
        outcome
    }
}

/// Counts how long each delivery of a batch waited in its queue, once, when the stage takes
/// the batch (not again when a transient fault retries it).
fn taken(stage: Stage, batch: &[Delivery]) {
    let now = SystemTime::now();
    for delivery in batch {
        if let Some(waited) = waited(&delivery.properties, now) {
            DeliveryTaken { stage, waited }.emit();
        }
    }
}

/// How long a delivery has waited at `now` since its publisher stamped it (the AMQP
/// `timestamp`, whole Unix seconds, set by our publisher and by senders that choose to);
/// `None` when it carries none (or 0), or one in the future: a clock ahead of ours says
/// nothing about the wait. Any value a sender writes is safe here (no overflow).
fn waited(properties: &BasicProperties, now: SystemTime) -> Option<Duration> {
    let stamped = (*properties.timestamp()).filter(|&seconds| seconds > 0)?;
    let stamped = UNIX_EPOCH.checked_add(Duration::from_secs(stamped))?;
    now.duration_since(stamped).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_wait_runs_from_the_publishers_timestamp_and_ignores_absent_or_future_ones() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_500);
        let stamped = |seconds| BasicProperties::default().with_timestamp(seconds);
        assert_eq!(
            waited(&stamped(990), now),
            Some(Duration::from_millis(10_500))
        );
        assert_eq!(
            waited(&stamped(1_000), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(waited(&stamped(1_001), now), None, "in the future");
        assert_eq!(waited(&stamped(u64::MAX), now), None, "far in the future");
        assert_eq!(waited(&stamped(0), now), None, "unset");
        assert_eq!(waited(&BasicProperties::default(), now), None, "absent");
    }
}
