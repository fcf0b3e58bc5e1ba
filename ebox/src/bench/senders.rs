//! The senders' side of a run: publishing a plan's messages (as fast as the broker confirms
//! them, or paced at a rate), and hearing their statuses, with the time of both for each message.

use super::load::{Plan, Publications};
use anyhow::Context;
use domain::status::{Status, StatusEvent};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer, PublisherConfirm};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Publishes awaiting confirms, at most, per sender: enough to keep the broker busy, few enough
/// that the publisher does not hold the whole run in memory.
const CONFIRM_WINDOW: usize = 512;

/// One registered sender: its id (its broker user) and its broker URL.
#[derive(Debug, Clone)]
pub struct SenderAccount {
    pub id: String,
    pub url: String,
}

impl SenderAccount {
    pub fn from_url(url: &str) -> Self {
        Self {
            id: queues::driver::amqp_user(url),
            url: url.to_owned(),
        }
    }
}

/// When each message of a run was published and heard of, shared by the publishers and the
/// status listeners.
pub struct Tracker {
    origin: Instant,
    /// Nanoseconds after `origin`, plus one; 0 until it happens.
    published: Vec<AtomicU64>,
    finished: Vec<AtomicU64>,
    outcome: Vec<AtomicU8>,
    finished_by_sender: Vec<AtomicUsize>,
    finished_count: AtomicUsize,
    progress: Notify,
}

const FINALS: [Status; 4] = [
    Status::Published,
    Status::NoDigitalUser,
    Status::Rejected,
    Status::Failed,
];

impl Tracker {
    pub fn new(messages: usize, senders: usize) -> Arc<Self> {
        let zeros = |n| (0..n).map(|_| AtomicU64::new(0)).collect();
        Arc::new(Self {
            origin: Instant::now(),
            published: zeros(messages),
            finished: zeros(messages),
            outcome: (0..messages).map(|_| AtomicU8::new(0)).collect(),
            finished_by_sender: (0..senders).map(|_| AtomicUsize::new(0)).collect(),
            finished_count: AtomicUsize::new(0),
            progress: Notify::new(),
        })
    }

    fn since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, nanos: u64) -> Option<Instant> {
        (nanos > 0).then(|| self.origin + Duration::from_nanos(nanos - 1))
    }

    fn mark_published(&self, g: usize) {
        self.published[g].store(self.since_origin(Instant::now()), Ordering::Relaxed);
    }

    /// Records message `g`'s final status; a repeated one (a redelivered status) is ignored.
    fn mark_finished(&self, g: usize, sender: usize, status: Status, at: Instant) {
        let nanos = self.since_origin(at);
        if self.finished[g]
            .compare_exchange(0, nanos, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let code = FINALS.iter().position(|&s| s == status).unwrap_or(0) as u8 + 1;
            self.outcome[g].store(code, Ordering::Relaxed);
            self.finished_by_sender[sender].fetch_add(1, Ordering::AcqRel);
            self.finished_count.fetch_add(1, Ordering::AcqRel);
            self.progress.notify_one();
        }
    }

    pub fn finished_count(&self) -> usize {
        self.finished_count.load(Ordering::Acquire)
    }

    pub fn finished_by(&self, sender: usize) -> usize {
        self.finished_by_sender[sender].load(Ordering::Acquire)
    }

    /// Waits until every message has its final status; fails when none arrives for a minute.
    pub async fn wait_for_all(&self) -> anyhow::Result<Instant> {
        let total = self.published.len();
        loop {
            let notified = self.progress.notified();
            let done = self.finished_count();
            if done >= total {
                return Ok(self.last_finished().unwrap_or_else(Instant::now));
            }
            if tokio::time::timeout(Duration::from_secs(60), notified)
                .await
                .is_err()
                && self.finished_count() == done
            {
                anyhow::bail!(
                    "the pipeline stalled: {done} of {total} messages have a final status, none came for a minute"
                );
            }
        }
    }

    pub fn first_published(&self) -> Option<Instant> {
        let nanos = self
            .published
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .filter(|&n| n > 0)
            .min()?;
        self.at(nanos)
    }

    pub fn last_published(&self) -> Option<Instant> {
        self.at(self
            .published
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .max()?)
    }

    fn last_finished(&self) -> Option<Instant> {
        self.at(self
            .finished
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .max()?)
    }

    /// Message `g`'s final status and the time from its publication to it.
    pub fn outcome(&self, g: usize) -> Option<(Status, Duration)> {
        let status = match self.outcome[g].load(Ordering::Relaxed) {
            0 => return None,
            code => FINALS[usize::from(code) - 1],
        };
        let published = self.at(self.published[g].load(Ordering::Relaxed))?;
        let finished = self.at(self.finished[g].load(Ordering::Relaxed))?;
        Some((status, finished.saturating_duration_since(published)))
    }
}

/// A sender's connections: one to publish, one to hear its statuses on, so that a queue of
/// large publishes never delays the statuses the bench times.
pub struct SenderLink {
    pub account: SenderAccount,
    publishing: Connection,
    channel: Channel,
    listening: Connection,
}

impl SenderLink {
    pub async fn connect(account: &SenderAccount) -> anyhow::Result<Self> {
        let connect = |role: &str| {
            let name = format!("ebox bench sender {} ({role})", account.id);
            let url = account.url.clone();
            async move {
                queues::driver::connect(&url, &name)
                    .await
                    .with_context(|| format!("Failed to connect as sender {}", account.id))
            }
        };
        let publishing = connect("publishing").await?;
        let channel = publishing.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let listening = connect("statuses").await?;
        Ok(Self {
            account: account.clone(),
            publishing,
            channel,
            listening,
        })
    }

    /// Consumes the sender's status queue; every final status of `plan`'s messages goes to the
    /// tracker, with the time it arrived.
    pub async fn listen(
        &self,
        index: usize,
        plan: Arc<Plan>,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
        let channel = self.listening.create_channel().await?;
        let consumer = channel
            .basic_consume(
                queues::topology::status_queue(&self.account.id)
                    .as_str()
                    .into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(tokio::spawn(hear_statuses(
            consumer, channel, index, plan, tracker,
        )))
    }

    /// Publishes messages `share` of `plan`, each when `pacing` says (at once when `None`),
    /// awaiting up to [`CONFIRM_WINDOW`] confirms at a time.
    pub async fn publish(
        &self,
        plan: &Plan,
        share: &[usize],
        publications: &Publications,
        tracker: &Tracker,
        pacing: Option<Pacing>,
    ) -> anyhow::Result<()> {
        let (confirms, mut pending) = mpsc::channel::<PublisherConfirm>(CONFIRM_WINDOW);
        let confirming = async move {
            while let Some(confirm) = pending.recv().await {
                match confirm.await? {
                    Confirmation::Ack(None) => {}
                    other => anyhow::bail!("the broker refused a publication: {other:?}"),
                }
            }
            Ok(())
        };
        let publishing = async move {
            for &g in share {
                if let Some(pacing) = pacing {
                    tokio::time::sleep_until(pacing.due(g).into()).await;
                }
                let planned = plan.messages[g];
                let properties = BasicProperties::default()
                    .with_message_id(ShortString::from(plan.reference(g)))
                    .with_type(ShortString::from(intake::contract::TYPE_V2))
                    .with_user_id(ShortString::from(self.account.id.as_str()))
                    .with_content_type(ShortString::from("application/json"))
                    .with_delivery_mode(2);
                tracker.mark_published(g);
                let confirm = self
                    .channel
                    .basic_publish(
                        queues::topology::PUBLISH_EXCHANGE.into(),
                        queues::topology::lane_routing_key(&self.account.id)
                            .as_str()
                            .into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        publications.of(planned.citizen),
                        properties,
                    )
                    .await?;
                confirms
                    .send(confirm)
                    .await
                    .context("the confirms stopped being read")?;
            }
            drop(confirms);
            anyhow::Ok(())
        };
        tokio::try_join!(publishing, confirming)?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.publishing.close(200, "done".into()).await;
        let _ = self.listening.close(200, "done".into()).await;
    }
}

/// Message `g` is due `g / rate` seconds after `start`.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub start: Instant,
    pub rate: f64,
}

impl Pacing {
    fn due(&self, g: usize) -> Instant {
        self.start + Duration::from_secs_f64(g as f64 / self.rate.max(1e-3))
    }
}

async fn hear_statuses(
    mut consumer: Consumer,
    // Held: the consumer lives as long as its channel.
    _channel: Channel,
    sender: usize,
    plan: Arc<Plan>,
    tracker: Arc<Tracker>,
) -> anyhow::Result<()> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let at = Instant::now();
        let status: StatusEvent =
            serde_json::from_slice(&delivery.data).context("a status event is not JSON")?;
        let Some(g) = status
            .sender_reference
            .as_deref()
            .and_then(|r| plan.index_of(r))
        else {
            continue;
        };
        match status.status {
            Status::Rejected | Status::Failed => anyhow::bail!(
                "bench message {g} ended {}: {} {}",
                status.status.as_str(),
                status.code,
                status.message
            ),
            s if FINALS.contains(&s) => tracker.mark_finished(g, sender, s, at),
            _ => {}
        }
    }
    Ok(())
}
