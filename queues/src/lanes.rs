//! A stage's lanes: the queues it consumes, each on a channel of its own with a prefetch of its
//! own, merged into one stream of deliveries taken in turn. Every stage has its queue; intake
//! also has one lane per sender (`ebox.intake.<sender>`), so that one sender's backlog never
//! stands in front of another sender's message (docs/operations.md, "Sender lanes and
//! limits").
//!
//! A lane may have to wait (its sender is over a limit, or has too many messages in flight),
//! without ever refusing what it holds:
//!
//! - a short wait (up to [`HOLD_AT_MOST`]) *holds* the lane: the deliveries the broker already
//!   sent stay with the consumer, unacknowledged, and are taken when the wait is over; a
//!   *deferring* wait also puts the batch's deliveries from that lane back in front of it;
//! - a longer one — or deferring for longer than [`HOLD_AT_MOST`] without a break — *closes*
//!   it: its consumer is cancelled, what the broker had sent is handled like any delivery, and
//!   the lane is consumed again once the wait is over (the next [`Lanes::refresh`] after it).
//!   Holding for hours would cross the broker's `consumer_timeout`, which closes the channel
//!   and returns the deliveries, each return counting toward the delivery limit.
//!
//! The stage's own queue never waits: nothing is charged on it.

use anyhow::Context as _;
use futures_util::stream::SelectAll;
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tracing::{info, warn};

/// The longest wait a lane spends holding its deliveries; a longer one closes it.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(30);

/// A lane a stage should consume besides its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneSpec {
    pub queue: String,
    /// The most deliveries it may hold at once, when less than its share of the prefetch (a
    /// sender limited to a few publications per second holds no more than a second's worth,
    /// so that its holds stay short).
    pub max_prefetch: Option<u16>,
    /// Until when it waits, as recorded (another replica may have seen its sender reach a
    /// limit): closed until then, and opened again as soon as this is gone or past (a limit
    /// raised).
    pub waits_until: Option<std::time::SystemTime>,
}

/// A lane that must wait until `until` before more of its deliveries are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneWait {
    pub queue: String,
    pub until: std::time::SystemTime,
    /// The batch's deliveries from this lane wait too, put back in front of the lane, rather
    /// than being handled now (they were not charged).
    pub defer: bool,
}

/// A delivery, with the lane it came from.
pub(crate) struct LaneDelivery {
    pub(crate) lane: Arc<str>,
    pub(crate) delivery: Delivery,
}

/// What one lane's stream and its owner share.
struct Gate {
    queue: Arc<str>,
    state: Mutex<GateState>,
    /// Set at shutdown: every delivery held is taken, waits or not.
    draining: Arc<AtomicBool>,
}

#[derive(Default)]
struct GateState {
    held_until: Option<Instant>,
    /// Deliveries put back by a deferring wait: the next ones the lane yields.
    deferred: VecDeque<Delivery>,
    /// Since when the lane's deliveries have been put back, without a batch handled between.
    deferring_since: Option<Instant>,
    /// The stream's task, to wake when the gate changes (a lane whose deliveries are all put
    /// back gets nothing from the broker that would wake it).
    waker: Option<Waker>,
}

impl Gate {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().expect("not poisoned")
    }

    fn held_until(&self) -> Option<Instant> {
        if self.draining.load(Ordering::Relaxed) {
            return None;
        }
        self.state().held_until
    }

    /// Holds the lane until `until`, and wakes its stream to see it.
    fn hold(&self, until: Instant) {
        let mut state = self.state();
        state.held_until = Some(until);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// What the merged stream yields.
enum Taken {
    Delivery(Arc<str>, Box<Delivery>),
    /// The lane's consumer ended: cancelled (by us or the broker), or its channel failed.
    Ended {
        queue: Arc<str>,
        error: Option<lapin::Error>,
    },
}

/// One lane's consumer behind its gate.
struct LaneStream {
    gate: Arc<Gate>,
    consumer: Consumer,
    sleep: Option<Pin<Box<Sleep>>>,
    ended: bool,
}

impl Stream for LaneStream {
    type Item = Taken;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Taken>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        this.gate.state().waker = Some(cx.waker().clone());
        if let Some(until) = this.gate.held_until()
            && until > Instant::now()
        {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if sleep.deadline() != until {
                sleep.as_mut().reset(until);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.sleep = None;
        let lane = || this.gate.queue.clone();
        if let Some(delivery) = this.gate.state().deferred.pop_front() {
            return Poll::Ready(Some(Taken::Delivery(lane(), Box::new(delivery))));
        }
        match this.consumer.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(delivery))) => {
                Poll::Ready(Some(Taken::Delivery(lane(), Box::new(delivery))))
            }
            Poll::Ready(Some(Err(error))) => {
                this.ended = true;
                Poll::Ready(Some(Taken::Ended {
                    queue: this.gate.queue.clone(),
                    error: Some(error),
                }))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(Some(Taken::Ended {
                    queue: this.gate.queue.clone(),
                    error: None,
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A lane being consumed.
struct Open {
    channel: Channel,
    consumer: Consumer,
    gate: Arc<Gate>,
    prefetch: u16,
}

/// Every lane a consumer has open, on one connection.
pub(crate) struct Lanes<'c> {
    connection: &'c Connection,
    /// The stage's own queue: its end ends the consumer.
    main: &'static str,
    /// The prefetch shared among the lanes.
    prefetch: u16,
    merged: SelectAll<LaneStream>,
    open: HashMap<Arc<str>, Open>,
    /// Lanes closed by a long wait, until when.
    closed: HashMap<String, Instant>,
    /// Lanes whose queue could not be consumed, told once.
    missing: HashSet<String>,
    draining: Arc<AtomicBool>,
}

impl<'c> Lanes<'c> {
    /// Opens the stage's queue `main`, then `extra` lanes, sharing `prefetch` among them (at
    /// least one each).
    pub(crate) async fn open(
        connection: &'c Connection,
        main: &'static str,
        prefetch: u16,
        extra: &[LaneSpec],
    ) -> anyhow::Result<Lanes<'c>> {
        let mut lanes = Lanes {
            connection,
            main,
            prefetch,
            merged: SelectAll::new(),
            open: HashMap::new(),
            closed: HashMap::new(),
            missing: HashSet::new(),
            draining: Arc::new(AtomicBool::new(false)),
        };
        let share = lanes.share(extra.len());
        lanes.consume(main, share).await.with_context(|| {
            format!("consuming {main} (the topology is declared by `ebox registry load`)")
        })?;
        lanes.refresh(extra).await;
        Ok(lanes)
    }

    /// Each lane's share of the prefetch when there are `extra` lanes besides the stage's own.
    fn share(&self, extra: usize) -> u16 {
        let lanes = u16::try_from(extra + 1).unwrap_or(u16::MAX);
        (self.prefetch / lanes).max(1)
    }

    /// The deliveries all open lanes may hold at once.
    pub(crate) fn window(&self) -> usize {
        self.open
            .values()
            .map(|lane| usize::from(lane.prefetch))
            .sum()
    }

    async fn consume(&mut self, queue: &str, prefetch: u16) -> lapin::Result<()> {
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let queue: Arc<str> = Arc::from(queue);
        let gate = Arc::new(Gate {
            queue: queue.clone(),
            state: Mutex::new(GateState::default()),
            draining: self.draining.clone(),
        });
        self.merged.push(LaneStream {
            gate: gate.clone(),
            consumer: consumer.clone(),
            sleep: None,
            ended: false,
        });
        self.open.insert(
            queue,
            Open {
                channel,
                consumer,
                gate,
                prefetch,
            },
        );
        Ok(())
    }

    /// Opens the lanes of `specs` not open yet, unless a wait closed them and is not over. A
    /// lane whose queue cannot be consumed (not declared yet) is told once and tried again at
    /// the next refresh. Lanes no longer listed stay open: what they hold is still handled.
    pub(crate) async fn refresh(&mut self, specs: &[LaneSpec]) {
        let now = Instant::now();
        self.closed.retain(|_, until| *until > now);
        let recorded: Vec<LaneWait> = specs
            .iter()
            .filter_map(|spec| {
                Some(LaneWait {
                    queue: spec.queue.clone(),
                    until: spec.waits_until?,
                    defer: false,
                })
            })
            .collect();
        // A wait no longer recorded (a limit raised, a new day) is over; so is a lane's pause
        // for its messages in flight, which is looked at again when it is open.
        self.closed
            .retain(|queue, _| recorded.iter().any(|wait| wait.queue == *queue));
        self.wait(&recorded, Vec::new()).await;
        let share = self.share(specs.len());
        for spec in specs {
            if self.open.contains_key(spec.queue.as_str()) || self.closed.contains_key(&spec.queue)
            {
                continue;
            }
            let prefetch = spec
                .max_prefetch
                .map_or(share, |most| share.min(most.max(1)));
            match self.consume(&spec.queue, prefetch).await {
                Ok(()) => {
                    self.missing.remove(&spec.queue);
                }
                Err(error) => {
                    if self.missing.insert(spec.queue.clone()) {
                        warn!(
                            lane = spec.queue,
                            error = %error,
                            "cannot consume a lane yet (is the registry loaded?); trying again later"
                        );
                    }
                }
            }
        }
    }

    /// The next delivery of any lane, lanes taking turns; an error when the stage's own queue
    /// or the connection fails.
    pub(crate) async fn next(&mut self) -> anyhow::Result<LaneDelivery> {
        loop {
            match self.merged.next().await {
                Some(Taken::Delivery(lane, delivery)) => {
                    return Ok(LaneDelivery {
                        lane,
                        delivery: *delivery,
                    });
                }
                Some(Taken::Ended { queue, error }) => self.ended(&queue, error)?,
                None => anyhow::bail!("no lane left to consume"),
            }
        }
    }

    /// A delivery that is already there, if any.
    pub(crate) fn next_now(&mut self) -> anyhow::Result<Option<LaneDelivery>> {
        loop {
            match self.merged.next().now_or_never() {
                Some(Some(Taken::Delivery(lane, delivery))) => {
                    return Ok(Some(LaneDelivery {
                        lane,
                        delivery: *delivery,
                    }));
                }
                Some(Some(Taken::Ended { queue, error })) => self.ended(&queue, error)?,
                Some(None) | None => return Ok(None),
            }
        }
    }

    /// A lane's consumer ended: the end of the stage's own queue, or of the connection, ends
    /// the consumer; any other lane is forgotten and opened again by a later refresh.
    fn ended(&mut self, queue: &str, error: Option<lapin::Error>) -> anyhow::Result<()> {
        self.open.remove(queue);
        if queue == self.main || !self.connection.status().connected() {
            return Err(match error {
                Some(error) => anyhow::Error::from(error).context(format!("consuming {queue}")),
                None => anyhow::anyhow!("the broker cancelled the consumer of {queue}"),
            });
        }
        if self.closed.contains_key(queue) {
            info!(lane = queue, "lane closed until its wait is over");
        } else {
            match error {
                Some(error) => {
                    warn!(lane = queue, error = %error, "lane stopped; opening it again later")
                }
                None => warn!(
                    lane = queue,
                    "the broker cancelled a lane; opening it again later"
                ),
            }
        }
        Ok(())
    }

    /// Makes each lane of `waits` wait — held when the wait is short, closed when it is long —
    /// and returns what of `batch` is handled now: a deferring wait puts its lane's deliveries
    /// back in front of the lane, unless the lane has been deferring for longer than
    /// [`HOLD_AT_MOST`]: then it closes for as long, and they are handled.
    pub(crate) async fn wait(
        &mut self,
        waits: &[LaneWait],
        batch: Vec<LaneDelivery>,
    ) -> Vec<Delivery> {
        let now_system = std::time::SystemTime::now();
        let now = Instant::now();
        let mut deferring: HashSet<&str> = HashSet::new();
        for wait in waits {
            if wait.queue == self.main {
                continue;
            }
            let after = wait
                .until
                .duration_since(now_system)
                .unwrap_or(Duration::ZERO);
            let until = now + after;
            let Some(open) = self.open.get(wait.queue.as_str()) else {
                if after > HOLD_AT_MOST {
                    self.closed.insert(wait.queue.clone(), until);
                }
                continue;
            };
            if self.closed.contains_key(&wait.queue) {
                // Closing already: its stream ends once the cancellation is confirmed.
                self.closed
                    .insert(wait.queue.clone(), until.max(self.closed[&wait.queue]));
                continue;
            }
            let deferred_too_long = wait.defer
                && open
                    .gate
                    .state()
                    .deferring_since
                    .is_some_and(|since| now.duration_since(since) > HOLD_AT_MOST);
            if after <= HOLD_AT_MOST && !deferred_too_long {
                if wait.defer {
                    open.gate.state().deferring_since.get_or_insert(now);
                    deferring.insert(wait.queue.as_str());
                }
                open.gate.hold(until);
                continue;
            }
            let closed_until = if deferred_too_long {
                now + HOLD_AT_MOST
            } else {
                until
            };
            {
                let mut state = open.gate.state();
                state.held_until = None;
                state.deferring_since = None;
            }
            info!(
                lane = wait.queue,
                wait_s = closed_until.duration_since(now).as_secs(),
                "lane waiting for long; closing it until the wait is over"
            );
            self.closed.insert(wait.queue.clone(), closed_until);
            // What the broker already sent is still taken (and handled) until the stream ends.
            let tag = open.consumer.tag();
            if let Err(error) = open
                .channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await
            {
                warn!(lane = wait.queue, error = %error, "could not cancel a lane's consumer");
            }
        }
        let mut now_handled = Vec::with_capacity(batch.len());
        let mut put_back: HashMap<Arc<str>, Vec<Delivery>> = HashMap::new();
        for LaneDelivery { lane, delivery } in batch {
            if deferring.contains(&*lane) {
                put_back.entry(lane).or_default().push(delivery);
            } else {
                if let Some(open) = self.open.get(&*lane) {
                    open.gate.state().deferring_since = None;
                }
                now_handled.push(delivery);
            }
        }
        for (lane, deliveries) in put_back {
            match self.open.get(&*lane) {
                Some(open) => {
                    let mut state = open.gate.state();
                    for delivery in deliveries.into_iter().rev() {
                        state.deferred.push_front(delivery);
                    }
                }
                // Not reachable (a deferring lane is open); handled rather than lost.
                None => now_handled.extend(deliveries),
            }
        }
        now_handled
    }

    /// Shutdown: takes what the broker sends until every lane's window is full (or `quiet`
    /// passes without a delivery), cancels every consumer, and takes what was still on its
    /// way, until `deadline`. Waits no longer hold anything: what is held is handled.
    pub(crate) async fn drain(
        &mut self,
        quiet: Duration,
        deadline: Instant,
    ) -> anyhow::Result<Vec<Delivery>> {
        self.draining.store(true, Ordering::Relaxed);
        let mut held = Vec::new();
        let window = self.window();
        while held.len() < window {
            match tokio::time::timeout(quiet, self.merged.next()).await {
                Ok(Some(Taken::Delivery(_, delivery))) => held.push(*delivery),
                Ok(Some(Taken::Ended { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let mut confirmed = true;
        for open in self.open.values() {
            let cancelled = tokio::time::timeout_at(
                deadline,
                open.channel
                    .basic_cancel(open.consumer.tag(), BasicCancelOptions::default()),
            )
            .await;
            confirmed &= matches!(cancelled, Ok(Ok(())));
        }
        if confirmed {
            // Each stream ends once its cancellation is confirmed, after what came before it.
            while let Ok(Some(taken)) = tokio::time::timeout_at(deadline, self.merged.next()).await
            {
                if let Taken::Delivery(_, delivery) = taken {
                    held.push(*delivery);
                }
            }
        } else {
            warn!(
                queue = self.main,
                "the broker did not confirm every cancellation; deliveries still on their way go back to the queue"
            );
        }
        Ok(held)
    }

    /// Closes every lane's channel.
    pub(crate) async fn close(&mut self) {
        for (_, open) in self.open.drain() {
            let _ = open.channel.close(200, "shutting down".into()).await;
        }
    }
}
