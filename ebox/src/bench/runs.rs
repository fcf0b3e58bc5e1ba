//! One measured run of the pipeline: start the worker processes, connect the senders, publish
//! a plan's messages (at once, or paced), wait until every sender heard every final status,
//! then read what it took — rate, latency, queue depths, CPU, memory, notifications — and stop
//! the processes.

use super::depths::{self, Depth, Sampler};
use super::fleet::{Fleet, Shape, StageMetrics, describe};
use super::latency::Percentiles;
use super::load::{Plan, Publications};
use super::resources::{Snapshot, Usage, Watched};
use super::senders::{Pacing, SenderAccount, SenderLink, Tracker};
use crate::workers::Worker;
use anyhow::Context;
use domain::status::Status;
use runtime::config::Settings;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What every run shares.
pub struct Bench<'a> {
    pub settings: &'a Settings,
    pub pool: &'a PgPool,
    /// The `ebox` executable the worker processes run.
    pub exe: PathBuf,
    pub senders: Vec<SenderAccount>,
    pub publications: Publications,
    /// The SMTP sink the notify processes mail to, and the mails it received so far.
    pub smtp: SocketAddr,
    pub mails: Arc<AtomicUsize>,
}

/// How the senders publish.
#[derive(Debug, Clone, Copy)]
pub enum Publishing {
    /// Every sender publishes its share as fast as the broker confirms.
    Burst,
    /// All senders together publish this many messages per second.
    Paced(f64),
    /// The first sender publishes its share at once; when the broker has it all, the second
    /// sender publishes its one message.
    BatchThenSingle,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct RunFigures {
    pub label: String,
    pub shape: Shape,
    pub publishing: Publishing,
    pub messages: usize,
    pub published: usize,
    pub no_digital_user: usize,
    /// From the first publish to the last final status heard.
    pub seconds: f64,
    pub rate: f64,
    /// From the first publish to the last.
    pub publish_seconds: f64,
    /// Publish to `published`, as the sender hears it.
    pub latency: Option<Percentiles>,
    pub depths: Vec<Depth>,
    pub slowest: Option<Worker>,
    pub stages: Vec<StageMetrics>,
    pub usage: Usage,
    pub peak_rss: Vec<(String, Option<u64>)>,
    pub notifications: Notifications,
    pub single: Option<Single>,
}

/// The notification mails of a run. The clock stops when the senders heard every final status,
/// not when every mail is out: the dispatcher sends them afterwards, and a run's backlog is
/// sent by the next run's notify process (whose mails then include it).
#[derive(Debug, Clone)]
pub struct Notifications {
    /// One per published message: every consenting citizen wants an e-mail.
    pub expected: usize,
    /// Received by the SMTP sink during the run.
    pub received: usize,
    /// In the outbox, not yet sent, at the end of the run.
    pub pending: Option<i64>,
}

/// The fairness run's single message.
#[derive(Debug, Clone)]
pub struct Single {
    pub sender: String,
    pub batch_sender: String,
    pub batch: usize,
    /// Messages of the batch without a final status when the single message was published.
    pub batch_pending: usize,
    pub latency: Duration,
}

/// A run is measured again, up to this many times, when the broker cut its connections (a
/// restart by another user of the machine, for one): its figures would mean nothing.
pub const ATTEMPTS: usize = 3;

impl Bench<'_> {
    /// Measures one run of `plan()` on the processes of `shape`; again, on a fresh plan and
    /// empty queues, when the broker connection failed during it.
    pub async fn measure(
        &self,
        label: &str,
        shape: &Shape,
        plan: impl Fn() -> Plan,
        publishing: Publishing,
    ) -> anyhow::Result<RunFigures> {
        let mut attempt = 1;
        loop {
            match self.run(label, shape, plan(), publishing).await {
                Err(e) if attempt < ATTEMPTS && broker_failed(&e) => {
                    eprintln!(
                        "bench: {label}: the broker connection failed ({e:#}); measuring it again"
                    );
                    attempt += 1;
                    self.purge().await?;
                }
                result => return result,
            }
        }
    }

    /// Empties the stages' and the senders' queues of what an interrupted run left, once the
    /// broker takes connections again (within two minutes).
    async fn purge(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let connection = loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match queues::driver::connect(&self.settings.amqp_url, "ebox bench purge").await {
                Ok(connection) => break connection,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("bench: waiting for the broker ({e})");
                }
                Err(e) => return Err(e).context("the broker did not come back"),
            }
        };
        let channel = connection.create_channel().await?;
        for queue in self.queues() {
            channel
                .queue_purge(queue.as_str().into(), Default::default())
                .await?;
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    /// Measures one run of `plan` on the processes of `shape`, then stops the processes and
    /// closes the senders' connections, whether the measurement succeeded or not.
    async fn run(
        &self,
        label: &str,
        shape: &Shape,
        plan: Plan,
        publishing: Publishing,
    ) -> anyhow::Result<RunFigures> {
        eprintln!(
            "bench: {label}: {} messages, {} …",
            plan.messages.len(),
            describe(shape)
        );
        let fleet = Fleet::start(&self.exe, shape, self.smtp).await?;
        let mut links = Vec::new();
        let mut listeners = Vec::new();
        let observed = self
            .observe(&fleet, &mut links, &mut listeners, plan, publishing)
            .await;
        let peak_rss = fleet.peak_rss();
        fleet.stop().await;
        for listener in &listeners {
            listener.abort();
        }
        for link in links {
            link.close().await;
        }
        let observed = observed?;
        Ok(RunFigures {
            label: label.to_owned(),
            shape: shape.clone(),
            peak_rss,
            ..observed
        })
    }

    /// Connects the senders (into `links`), hears their statuses (`listeners`), publishes,
    /// waits for every final status, and reads what the run took.
    async fn observe(
        &self,
        fleet: &Fleet,
        links: &mut Vec<SenderLink>,
        listeners: &mut Vec<JoinHandle<anyhow::Result<()>>>,
        plan: Plan,
        publishing: Publishing,
    ) -> anyhow::Result<RunFigures> {
        for account in &self.senders {
            links.push(SenderLink::connect(account).await?);
        }
        let plan = Arc::new(plan);
        let tracker = Tracker::new(plan.messages.len(), links.len());
        for (index, link) in links.iter().enumerate() {
            listeners.push(link.listen(index, plan.clone(), tracker.clone()).await?);
        }
        let mut watched = Watched::default();
        for process in &fleet.processes {
            watched.add(&process.name, process.pid());
        }
        watched.services(self.pool).await;
        let sampler = Sampler::start(&self.settings.amqp_url, self.queues()).await?;
        let mails_before = self.mails.load(Ordering::Acquire);
        let before = Snapshot::take(&watched);

        let publish = self.publish(links, &plan, &tracker, publishing);
        let finish = async { tokio::try_join!(publish, tracker.wait_for_all()) };
        let listening = async {
            let (ended, _, _) = futures_util::future::select_all(listeners.iter_mut()).await;
            match ended {
                Ok(Err(e)) => e,
                Ok(Ok(())) => anyhow::anyhow!("a status consumer was cancelled"),
                Err(e) => e.into(),
            }
        };
        let (single, end) = tokio::select! {
            finished = finish => finished?,
            failed = listening => return Err(failed.context("while hearing statuses")),
        };

        watched.services(self.pool).await;
        let after = Snapshot::take(&watched);
        let depths = sampler.stop().await?;
        let stages = fleet.stage_metrics().await;
        let usage = Usage::between(&before, &after, &watched);
        let start = tracker.first_published().context("nothing was published")?;
        let notifications = self
            .notifications(mails_before, plan.expected(Status::Published))
            .await;

        let seconds = end.duration_since(start).as_secs_f64();
        let mut latencies = Vec::new();
        let (mut published, mut no_digital_user) = (0, 0);
        for g in 0..plan.messages.len() {
            match tracker.outcome(g) {
                Some((Status::Published, latency)) => {
                    published += 1;
                    latencies.push(latency);
                }
                Some((Status::NoDigitalUser, _)) => no_digital_user += 1,
                _ => {}
            }
        }
        let single = single.and_then(|(g, batch_pending)| {
            Some(Single {
                sender: self.senders.get(1)?.id.clone(),
                batch_sender: self.senders.first()?.id.clone(),
                batch: plan.messages.len() - 1,
                batch_pending,
                latency: tracker.outcome(g)?.1,
            })
        });
        Ok(RunFigures {
            label: String::new(),
            shape: Shape::new(),
            publishing,
            messages: plan.messages.len(),
            published,
            no_digital_user,
            seconds,
            rate: plan.messages.len() as f64 / seconds.max(1e-9),
            publish_seconds: tracker
                .last_published()
                .map_or(0.0, |last| last.duration_since(start).as_secs_f64()),
            latency: Percentiles::of(latencies),
            slowest: depths::slowest(&depths, plan.messages.len()),
            depths,
            stages,
            usage,
            peak_rss: Vec::new(),
            notifications,
            single,
        })
    }

    /// The stages' queues and the senders' status queues.
    fn queues(&self) -> Vec<String> {
        super::fleet::STAGES
            .iter()
            .map(|&w| super::fleet::queue_of(w).to_owned())
            .chain(
                self.senders
                    .iter()
                    .map(|s| queues::topology::status_queue(&s.id)),
            )
            .collect()
    }

    /// Publishes the plan as `publishing` says; for [`Publishing::BatchThenSingle`], returns
    /// the single message's index and how much of the batch was still pending when it went.
    async fn publish(
        &self,
        links: &[SenderLink],
        plan: &Plan,
        tracker: &Tracker,
        publishing: Publishing,
    ) -> anyhow::Result<Option<(usize, usize)>> {
        let shares: Vec<Vec<usize>> = (0..links.len()).map(|s| plan.share(s)).collect();
        let pacing = match publishing {
            Publishing::Paced(rate) => Some(Pacing {
                start: Instant::now(),
                rate,
            }),
            _ => None,
        };
        match publishing {
            Publishing::Burst | Publishing::Paced(_) => {
                let all = links.iter().zip(&shares).map(|(link, share)| {
                    link.publish(plan, share, &self.publications, tracker, pacing)
                });
                futures_util::future::try_join_all(all).await?;
                Ok(None)
            }
            Publishing::BatchThenSingle => {
                let (batch, single) = (&links[0], &links[1]);
                batch
                    .publish(plan, &shares[0], &self.publications, tracker, None)
                    .await?;
                let pending = shares[0].len() - tracker.finished_by(0);
                single
                    .publish(plan, &shares[1], &self.publications, tracker, None)
                    .await?;
                Ok(shares[1].first().map(|&g| (g, pending)))
            }
        }
    }

    /// The mails the sink received during the run, and the notifications still waiting in the
    /// outbox at its end.
    async fn notifications(&self, before: usize, expected: usize) -> Notifications {
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT count(*) FROM notifications WHERE state = 'pending'")
                .fetch_one(self.pool)
                .await
                .ok();
        Notifications {
            expected,
            received: self.mails.load(Ordering::Acquire).saturating_sub(before),
            pending,
        }
    }
}

/// Whether an error came from the broker connection (or the network under it).
pub fn broker_failed(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.is::<lapin::Error>() || cause.is::<std::io::Error>())
}
