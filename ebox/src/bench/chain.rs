//! The ceiling: a bare chain with as many hops as the pipeline (publish → 3 relays → the end),
//! over durable quorum queues on the same broker, each relay taking the deliveries that are
//! there, publishing them on with confirms and acking after the confirms — the broker's cost of
//! the guarantees, without any work. The first hop carries the senders' publications; the
//! relays hand on a body the size of the stages' hand-off, as the pipeline does.

use super::load::Publications;
use anyhow::Context;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer, PublisherConfirm};
use runtime::config::Settings;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const HOPS: usize = 4;

/// Publishes awaiting confirms, at most.
const CONFIRM_WINDOW: usize = 512;

/// Messages per second through the chain: `messages` publications (citizen after citizen)
/// published, taken and acked at the end.
pub async fn measure(
    settings: &Settings,
    publications: &Publications,
    messages: usize,
    handoff: Vec<u8>,
) -> anyhow::Result<f64> {
    let chain = Chain::set_up(settings, Arc::new(handoff)).await?;
    let mut arrivals = chain.consume_end(settings.prefetch).await?;
    let publisher = confirmed_channel(&chain.connection).await?;
    let started = Instant::now();
    let publishing = async {
        let mut confirms = VecDeque::new();
        for citizen in 0..messages {
            if confirms.len() >= CONFIRM_WINDOW
                && let Some(confirm) = confirms.pop_front()
            {
                confirmed(confirm).await?;
            }
            let body = publications.of(citizen);
            confirms.push_back(publish(&publisher, &chain.names[0], body).await?);
        }
        for confirm in confirms {
            confirmed(confirm).await?;
        }
        anyhow::Ok(())
    };
    tokio::try_join!(publishing, take_arrivals(&mut arrivals, messages))?;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    chain.tear_down().await?;
    Ok(rate)
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

async fn publish(channel: &Channel, queue: &str, body: &[u8]) -> lapin::Result<PublisherConfirm> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
}

async fn confirmed(confirm: PublisherConfirm) -> anyhow::Result<()> {
    match confirm.await? {
        Confirmation::Ack(None) => Ok(()),
        other => anyhow::bail!("a publish was refused: {other:?}"),
    }
}

/// The chain's queues, the relays between them, and the connection that declared them.
struct Chain {
    relays: Vec<JoinHandle<anyhow::Result<()>>>,
    shutdown: CancellationToken,
    names: Vec<String>,
    setup: Channel,
    connection: Connection,
}

impl Chain {
    /// Declares the chain's queues and starts a relay from each to the next.
    async fn set_up(settings: &Settings, handoff: Arc<Vec<u8>>) -> anyhow::Result<Self> {
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
            // What an interrupted measurement left.
            setup
                .queue_purge(name.as_str().into(), Default::default())
                .await?;
        }
        let shutdown = CancellationToken::new();
        let mut relays = Vec::new();
        for pair in names.windows(2) {
            let connection =
                queues::driver::connect(&settings.amqp_url, "ebox bench relay").await?;
            relays.push(tokio::spawn(relay(
                connection,
                Hop {
                    from: pair[0].clone(),
                    to: pair[1].clone(),
                    prefetch: settings.prefetch,
                    batch_size: settings.batch_size,
                },
                handoff.clone(),
                shutdown.clone(),
            )));
        }
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

/// Takes and acks every message at the end of the chain.
async fn take_arrivals(arrivals: &mut Consumer, messages: usize) -> anyhow::Result<()> {
    for _ in 0..messages {
        let delivery = next_delivery(arrivals).await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}

struct Hop {
    from: String,
    to: String,
    prefetch: u16,
    batch_size: usize,
}

/// Moves deliveries from `hop.from` to `hop.to`: take what is there, publish a hand-off for each
/// with confirms, then ack.
async fn relay(
    connection: Connection,
    hop: Hop,
    handoff: Arc<Vec<u8>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let channel = confirmed_channel(&connection).await?;
    channel
        .basic_qos(hop.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            hop.from.as_str().into(),
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
        while batch.len() < hop.batch_size {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        let mut confirms = Vec::with_capacity(batch.len());
        for _ in &batch {
            confirms.push(publish(&channel, &hop.to, &handoff).await?);
        }
        for confirm in confirms {
            confirmed(confirm).await?;
        }
        for delivery in &batch {
            delivery.acker.ack(BasicAckOptions::default()).await?;
        }
    }
}

/// The next delivery; an error if none comes within a minute.
async fn next_delivery(consumer: &mut Consumer) -> anyhow::Result<Delivery> {
    let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
        .await
        .context("the bare chain stalled")?
        .context("consumer closed")??;
    Ok(delivery)
}
