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
use crate::workers::{self, Worker};
use anyhow::Context;
use common::config::Settings;
use common::status::{Status, StatusEvent};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use std::time::{Duration, Instant};
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

async fn bare_chain(settings: &Settings, messages: usize) -> anyhow::Result<f64> {
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
    let mut relays = Vec::new();
    for hop in 0..HOPS - 1 {
        let (from, to) = (names[hop].clone(), names[hop + 1].clone());
        let connection = queues::driver::connect(&settings.amqp_url, "ebox bench relay").await?;
        let (prefetch, batch) = (settings.prefetch, settings.batch_size);
        let shutdown = shutdown.clone();
        relays.push(tokio::spawn(async move {
            relay(connection, from, to, prefetch, batch, shutdown).await
        }));
    }
    let end = connection.create_channel().await?;
    end.basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let mut arrivals = end
        .basic_consume(
            names[HOPS - 1].as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publisher = confirmed_channel(&connection).await?;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, "bench"))?;
    let started = Instant::now();
    publish_all(
        &publisher,
        &names[0],
        "",
        (0..messages).map(|_| (BasicProperties::default(), body.clone())),
    )
    .await?;
    for _ in 0..messages {
        let delivery = tokio::time::timeout(Duration::from_secs(60), arrivals.next())
            .await
            .context("the bare chain stalled")?
            .context("consumer closed")??;
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    for relay in relays {
        let _ = relay.await;
    }
    for name in &names {
        setup
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(rate)
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

async fn pipeline(settings: &Settings, args: &BenchArgs) -> anyhow::Result<f64> {
    let pool = common::db::connect(settings).await?;
    common::db::migrate(&pool).await?;
    let hasher = common::audit::SsinHasher::new(&settings.ssin_hash_key);
    let ssin = common::ssin::Ssin::parse(SAMPLE_SSIN)?;
    let mut tx = pool.begin().await?;
    common::citizens::record_consent(
        &mut tx,
        &hasher.hash(&ssin),
        common::citizens::Consent::Granted,
        chrono::Utc::now(),
        "bench",
    )
    .await?;
    tx.commit().await?;

    let (smtp, _mails) = crate::smtp_sink::start("127.0.0.1:0").await?;
    let mut settings = settings.clone();
    settings.smtp_url = Some(format!("smtp://{smtp}"));
    let shutdown = CancellationToken::new();
    let (mut tasks, readiness) = workers::spawn(
        &settings,
        &pool,
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

    let connection = queues::driver::connect(&args.sender_url, "ebox bench sender").await?;
    let channel = confirmed_channel(&connection).await?;
    let statuses_channel = connection.create_channel().await?;
    let mut statuses = statuses_channel
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
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, &args.message_type))?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    publish_all(
        &channel,
        queues::topology::PUBLISH_ROUTING_KEY,
        queues::topology::PUBLISH_EXCHANGE,
        (0..args.messages).map(|i| {
            let properties = BasicProperties::default()
                .with_message_id(ShortString::from(format!("bench-{run}-{i}")))
                .with_type(ShortString::from(intake::contract::TYPE_V2))
                .with_user_id(ShortString::from(args.sender.as_str()))
                .with_content_type(ShortString::from("application/json"));
            (properties, body.clone())
        }),
    )
    .await?;
    let mut published = 0;
    while published < args.messages {
        let delivery = tokio::time::timeout(Duration::from_secs(60), statuses.next())
            .await
            .context("the pipeline stalled")?
            .context("consumer closed")??;
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
    let rate = args.messages as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    let _ = connection.close(200, "done".into()).await;
    Ok(rate)
}
