//! `ebox bench`: throughput of the pipeline against its ceiling, printed, never asserted.
//!
//! 1. **Bare chain**: the same number of hops as the pipeline (publish → 3 relays → the end),
//!    over durable quorum queues on the same broker, each relay taking the deliveries that are
//!    there, publishing them on with confirms and acking after the confirms — the broker's cost
//!    of the guarantees, without any work.
//! 2. **Pipeline**: a registered sender publishes v2 messages for a consenting citizen;
//!    intake, consent-check and store (with notify consuming the events) run in this process
//!    with every guarantee on (transactions, audit, confirms, acks after commit); the clock
//!    stops when the sender has heard `published` for every message.
//!
//! Run it through `scripts/bench.sh`, which prepares a sender and a database.

use crate::demo::{SAMPLE_SSIN, sample_v2};
use crate::smtp_sink::Mail;
use crate::workers::{self, Worker};
use anyhow::Context;
use domain::status::{Status, StatusEvent};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use runtime::config::Settings;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Messages per run.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// The bench sender's broker URL (its own user).
    #[arg(
        long,
        env = "EBOX_BENCH_SENDER_URL",
        default_value = "amqp://bench:bench@127.0.0.1:5672/%2f"
    )]
    sender_url: String,
    /// The bench sender's id (registered in the registry file).
    #[arg(long, default_value = "bench")]
    sender: String,
    #[arg(long, default_value = "unemployment-certificate")]
    message_type: String,
}

const HOPS: usize = 4;

pub async fn run(settings: &Settings, args: BenchArgs) -> anyhow::Result<()> {
    println!(
        "{} messages, prefetch {}, batch {}",
        args.messages, settings.prefetch, settings.batch_size
    );
    let ceiling = bare_chain(settings, args.messages).await?;
    println!("bare chain ({HOPS} quorum queues, confirms, acks): {ceiling:>8.0} msg/s");
    let pipeline = pipeline(settings, &args).await?;
    println!("pipeline (intake → consent-check → store):     {pipeline:>8.0} msg/s");
    println!("pipeline / bare chain: {:.2}", pipeline / ceiling);
    Ok(())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

async fn confirmed_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes every body, then awaits every confirm.
async fn publish_all(
    channel: &Channel,
    routing_key: &str,
    exchange: &str,
    bodies: impl Iterator<Item = (BasicProperties, Vec<u8>)>,
) -> anyhow::Result<()> {
    let mut confirms = Vec::new();
    for (properties, body) in bodies {
        confirms.push(
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    properties.with_delivery_mode(2),
                )
                .await?,
        );
    }
    for confirm in confirms {
        anyhow::ensure!(confirm.await?.is_ack(), "a publish was refused");
    }
    Ok(())
}

/// The bare chain: set up the queues and relays, publish, take every arrival at the end, measure,
/// tear down.
async fn bare_chain(settings: &Settings, messages: usize) -> anyhow::Result<f64> {
    let chain = Chain::set_up(settings).await?;
    let mut arrivals = chain.consume_end(settings.prefetch).await?;
    let publisher = confirmed_channel(&chain.connection).await?;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, "bench"))?;
    let started = Instant::now();
    publish_all(
        &publisher,
        &chain.names[0],
        "",
        (0..messages).map(|_| (BasicProperties::default(), body.clone())),
    )
    .await?;
    take_arrivals(&mut arrivals, messages).await?;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    chain.tear_down().await?;
    Ok(rate)
}

/// The bare chain's queues, the relays between them, and the connection that declared them.
struct Chain {
    // In the reverse of the order they are made, so that they drop in the order they did as
    // locals of `bare_chain`.
    relays: Vec<JoinHandle<anyhow::Result<()>>>,
    shutdown: CancellationToken,
    names: Vec<String>,
    setup: Channel,
    connection: Connection,
}

impl Chain {
    /// Declares the chain's queues and starts a relay from each to the next.
    async fn set_up(settings: &Settings) -> anyhow::Result<Self> {
        let connection = queues::driver::connect(&settings.amqp_url, "ebox bench").await?;
        let setup = connection.create_channel().await?;
        let names: Vec<String> = (0..HOPS).map(|i| format!("ebox.bench.chain.{i}")).collect();
        for name in &names {
            setup
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions::durable(),
                    quorum(),
                )
                .await?;
        }
        let shutdown = CancellationToken::new();
        let relays = start_relays(settings, &names, &shutdown).await?;
        Ok(Self {
            relays,
            shutdown,
            names,
            setup,
            connection,
        })
    }

    /// Consumes the last queue: the end of the chain.
    async fn consume_end(&self, prefetch: u16) -> lapin::Result<Consumer> {
        let end = self.connection.create_channel().await?;
        end.basic_qos(prefetch, BasicQosOptions::default()).await?;
        // The consumer keeps its channel open.
        end.basic_consume(
            self.names[HOPS - 1].as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    }

    /// Stops the relays, deletes the queues and closes the connection.
    async fn tear_down(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for relay in self.relays {
            let _ = relay.await;
        }
        for name in &self.names {
            self.setup
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        let _ = self.connection.close(200, "done".into()).await;
        Ok(())
    }
}

/// Starts a relay from each queue of the chain to the next, each on a connection of its own.
async fn start_relays(
    settings: &Settings,
    names: &[String],
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let mut relays = Vec::new();
    for pair in names.windows(2) {
        let (from, to) = (pair[0].clone(), pair[1].clone());
        let connection = queues::driver::connect(&settings.amqp_url, "ebox bench relay").await?;
        let (prefetch, batch) = (settings.prefetch, settings.batch_size);
        let shutdown = shutdown.clone();
        relays.push(tokio::spawn(async move {
            relay(connection, from, to, prefetch, batch, shutdown).await
        }));
    }
    Ok(relays)
}

/// Takes and acks every message at the end of the chain.
async fn take_arrivals(arrivals: &mut Consumer, messages: usize) -> anyhow::Result<()> {
    for _ in 0..messages {
        let delivery = next_delivery(arrivals, "the bare chain stalled").await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}

/// Moves deliveries from `from` to `to`: take what is there, publish with confirms, then ack.
async fn relay(
    connection: Connection,
    from: String,
    to: String,
    prefetch: u16,
    batch_size: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let channel = confirmed_channel(&connection).await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            from.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = consumer.next() => next,
        };
        let Some(first) = first else { return Ok(()) };
        let mut batch = vec![first?];
        while batch.len() < batch_size {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        publish_all(
            &channel,
            &to,
            "",
            batch
                .iter()
                .map(|d| (BasicProperties::default(), d.data.clone())),
        )
        .await?;
        for delivery in &batch {
            delivery.acker.ack(BasicAckOptions::default()).await?;
        }
    }
}

/// The pipeline: record the citizen's consent, start the workers, connect the sender, publish,
/// wait for every `published`, measure, tear down.
async fn pipeline(settings: &Settings, args: &BenchArgs) -> anyhow::Result<f64> {
    runtime::db::migrate_as_owner(settings).await?;
    let pool = runtime::db::connect(settings).await?;
    grant_consent(settings, &pool).await?;
    let mut workers = RunningWorkers::start(settings, &pool).await?;
    let mut sender = Sender::connect(args).await?;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, &args.message_type))?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    publish_all(
        &sender.channel,
        queues::topology::PUBLISH_ROUTING_KEY,
        queues::topology::PUBLISH_EXCHANGE,
        bench_messages(args, &run, &body),
    )
    .await?;
    await_published(&mut sender.statuses, args.messages, &run).await?;
    let rate = args.messages as f64 / started.elapsed().as_secs_f64();
    workers.stop().await;
    sender.close().await;
    Ok(rate)
}

/// Records the sample citizen's consent, so that the bench messages are delivered.
async fn grant_consent(settings: &Settings, pool: &PgPool) -> anyhow::Result<()> {
    let hasher = domain::citizen::SsinHasher::new(&settings.ssin_hash_key);
    let ssin = domain::ssin::Ssin::parse(SAMPLE_SSIN)?;
    let mut tx = pool.begin().await?;
    records::citizens::record_consent(
        &mut tx,
        &hasher,
        &ssin,
        domain::citizen::Consent::Granted,
        chrono::Utc::now(),
        "bench",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Intake, consent-check, store and notify, running in this process.
struct RunningWorkers {
    // In the reverse of the order they are made, so that they drop in the order they did as
    // locals of `pipeline`. The mail receiver is held because the sink stops accepting
    // connections once it is dropped.
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    _mails: mpsc::UnboundedReceiver<Mail>,
}

impl RunningWorkers {
    /// Starts the workers, notify mailing to an SMTP sink of our own, and waits until each
    /// consumes.
    async fn start(settings: &Settings, pool: &PgPool) -> anyhow::Result<Self> {
        let (smtp, mails) = crate::smtp_sink::start("127.0.0.1:0").await?;
        let mut settings = settings.clone();
        settings.smtp_url = Some(format!("smtp://{smtp}"));
        let shutdown = CancellationToken::new();
        let (tasks, readiness) = workers::spawn(
            &settings,
            pool,
            &[
                Worker::Intake,
                Worker::ConsentCheck,
                Worker::Store,
                Worker::Notify,
            ],
            &shutdown,
        )?;
        for ready in &readiness {
            tokio::time::timeout(Duration::from_secs(30), ready.wait_until_ready())
                .await
                .context("the workers did not start")?;
        }
        Ok(Self {
            tasks,
            shutdown,
            _mails: mails,
        })
    }

    /// Asks the workers to stop and waits until they have.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The bench sender's connection: a channel to publish on and its status queue.
struct Sender {
    // In the reverse of the order they are made, so that they drop in the order they did as
    // locals of `pipeline`.
    statuses: Consumer,
    channel: Channel,
    connection: Connection,
}

impl Sender {
    /// Connects as the sender and consumes its status queue.
    async fn connect(args: &BenchArgs) -> anyhow::Result<Self> {
        let connection = queues::driver::connect(&args.sender_url, "ebox bench sender").await?;
        let channel = confirmed_channel(&connection).await?;
        let statuses_channel = connection.create_channel().await?;
        // The consumer keeps its channel open.
        let statuses = statuses_channel
            .basic_consume(
                queues::topology::status_queue(&args.sender).as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            statuses,
            channel,
            connection,
        })
    }

    async fn close(&self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// The run's messages as the sender publishes them: v2, each with a message id of this run.
fn bench_messages(
    args: &BenchArgs,
    run: &str,
    body: &[u8],
) -> impl Iterator<Item = (BasicProperties, Vec<u8>)> {
    (0..args.messages).map(move |i| {
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(format!("bench-{run}-{i}")))
            .with_type(ShortString::from(intake::contract::TYPE_V2))
            .with_user_id(ShortString::from(args.sender.as_str()))
            .with_content_type(ShortString::from("application/json"));
        (properties, body.to_vec())
    })
}

/// Reads the sender's statuses until every message of this run is `Published`; one of them
/// ending `Rejected` or `NoDigitalUser` fails the run. Other statuses, and those of other runs,
/// are skipped.
async fn await_published(
    statuses: &mut Consumer,
    messages: usize,
    run: &str,
) -> anyhow::Result<()> {
    let mut published = 0;
    while published < messages {
        let delivery = next_delivery(statuses, "the pipeline stalled").await?;
        let status: StatusEvent = serde_json::from_slice(&delivery.data)?;
        let ours = status
            .sender_reference
            .as_deref()
            .is_some_and(|r| r.starts_with(&format!("bench-{run}-")));
        match status.status {
            Status::Published if ours => published += 1,
            Status::Rejected | Status::NoDigitalUser if ours => {
                anyhow::bail!("a bench message ended {status:?}")
            }
            _ => {}
        }
    }
    Ok(())
}

/// The next delivery; `stalled` is the error if none comes within a minute.
async fn next_delivery(consumer: &mut Consumer, stalled: &'static str) -> anyhow::Result<Delivery> {
    let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
        .await
        .context(stalled)?
        .context("consumer closed")??;
    Ok(delivery)
}
