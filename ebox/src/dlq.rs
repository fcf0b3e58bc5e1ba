//! `ebox dlq`: what the stages set aside, per stage (`ebox.dead-letter.<stage>`), and what an
//! operator does with it once the cause is fixed.
//!
//! - `list`: how many messages wait in each stage's dead-letter queue;
//! - `show`: one JSON line per parked message — when, why, its ids and type, never its body
//!   (it may hold a document);
//! - `replay`: puts parked messages back on their stage's queue, where they go through the
//!   normal, idempotent path. A publication parked by intake is replayed on behalf of its
//!   sender (header `x-ebox-replayed-for`, trusted by intake only from the service's own broker
//!   user), since a copy cannot carry another user's `user_id`;
//! - `purge`: drops them.

use anyhow::Context;
use domain::audit::Stage;
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use queues::driver::{amqp_user, without_user_id};
use queues::publisher::Publisher;
use queues::topology::{STAGE_QUEUES, dead_letter_queue};

/// Headers that describe a message's parking, dropped when it is replayed (`x-delivery-count`
/// too: a replay starts afresh, or the driver would give up on it at once).
const PARKING_HEADERS: [&str; 13] = [
    "x-ebox-reason",
    "x-ebox-stage",
    "x-ebox-queue",
    "x-ebox-parked-at",
    "x-ebox-user-id",
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
];

/// The stages `stage` selects: that one, or all.
fn stages(stage: Option<Stage>) -> Vec<(Stage, &'static str)> {
    STAGE_QUEUES
        .iter()
        .filter(|(s, _, _)| stage.is_none_or(|wanted| wanted == *s))
        .map(|(s, queue, _)| (*s, *queue))
        .collect()
}

/// A stage by name, among those that consume a queue.
pub fn parse_stage(raw: &str) -> Result<Stage, String> {
    Stage::parse(raw)
        .filter(|stage| STAGE_QUEUES.iter().any(|(s, _, _)| s == stage))
        .ok_or_else(|| {
            let names: Vec<&str> = STAGE_QUEUES.iter().map(|(s, _, _)| s.as_str()).collect();
            format!("not a stage with a queue; one of {}", names.join(", "))
        })
}

/// How many messages wait in each selected stage's dead-letter queue.
pub async fn list(channel: &Channel, stage: Option<Stage>) -> anyhow::Result<Vec<(Stage, u32)>> {
    let mut counts = Vec::new();
    for (stage, _) in stages(stage) {
        let queue = channel
            .queue_declare(
                dead_letter_queue(stage).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("{} is not declared", dead_letter_queue(stage)))?;
        counts.push((stage, queue.message_count()));
    }
    Ok(counts)
}

/// Describes up to `limit` parked messages of each selected stage, leaving them parked.
pub async fn show(
    channel: &Channel,
    stage: Option<Stage>,
    limit: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut described = Vec::new();
    for (stage, _) in stages(stage) {
        // Held without an ack, so that each get sees the next one, then all handed back.
        let mut held = Vec::new();
        while held.len() < limit {
            let Some(message) = get(channel, stage).await? else {
                break;
            };
            described.push(describe(stage, &message));
            held.push(message);
        }
        for message in held {
            message
                .delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?;
        }
    }
    Ok(described)
}

fn describe(stage: Stage, message: &BasicGetMessage) -> serde_json::Value {
    let properties = &message.delivery.properties;
    let text = |value: &Option<ShortString>| value.as_ref().map(|v| v.to_string());
    serde_json::json!({
        "stage": stage,
        "parkedAt": header(properties, "x-ebox-parked-at"),
        "reason": header(properties, "x-ebox-reason")
            .unwrap_or_else(|| "dead-lettered by the broker (rejected or delivered too often)".to_owned()),
        "queue": header(properties, "x-ebox-queue"),
        "sender": header(properties, "x-ebox-user-id"),
        "messageId": text(properties.message_id()),
        "type": text(properties.kind()),
        "correlationId": text(properties.correlation_id()),
        "bytes": message.delivery.data.len(),
    })
}

/// Replays up to `limit` parked messages of `stage` onto its queue; returns how many.
pub async fn replay(
    publisher: &Publisher,
    amqp_url: &str,
    stage: Stage,
    limit: usize,
) -> anyhow::Result<usize> {
    let (_, queue) = stages(Some(stage))[0];
    let mut replayed = 0;
    while replayed < limit {
        let Some(message) = get(publisher.channel(), stage).await? else {
            break;
        };
        let properties = replayed_properties(&message.delivery.properties, amqp_url);
        publisher
            .publish_as_is("", queue, &message.delivery.data, properties)
            .await
            .with_context(|| format!("Failed to put a message back on {queue}"))?;
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await?;
        replayed += 1;
    }
    Ok(replayed)
}

/// The original properties, without the parking headers; a parked publication is replayed on
/// behalf of its sender by the service's own user.
fn replayed_properties(parked: &BasicProperties, amqp_url: &str) -> BasicProperties {
    let service_user = amqp_user(amqp_url);
    let sender = match parked.user_id().as_ref().map(|user| user.as_str()) {
        // The driver's copy (the broker checked that the service published it): its
        // `x-ebox-user-id` is the sender's, as the broker checked it on the original.
        Some(user) if user == service_user => header(parked, "x-ebox-user-id"),
        // The original itself, dead-lettered by the broker: its `user_id` was checked.
        Some(user) => Some(user.to_owned()),
        // Nobody vouches for a sender: replayed as it came, without one.
        None => None,
    };
    let mut headers = parked.headers().clone().unwrap_or_default();
    let mut kept = FieldTable::default();
    for (key, value) in headers.inner() {
        if !PARKING_HEADERS.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        }
    }
    headers = kept;
    let mut properties = without_user_id(parked);
    if let Some(sender) = sender {
        headers.insert(
            intake::REPLAYED_FOR.into(),
            AMQPValue::LongString(sender.into()),
        );
        properties = properties.with_user_id(service_user.into());
    }
    properties.with_headers(headers)
}

/// Drops every parked message of the selected stages; returns how many.
pub async fn purge(channel: &Channel, stage: Option<Stage>) -> anyhow::Result<u32> {
    let mut purged = 0;
    for (stage, _) in stages(stage) {
        purged += channel
            .queue_purge(
                dead_letter_queue(stage).as_str().into(),
                QueuePurgeOptions::default(),
            )
            .await?;
    }
    Ok(purged)
}

async fn get(channel: &Channel, stage: Stage) -> anyhow::Result<Option<BasicGetMessage>> {
    Ok(channel
        .basic_get(
            dead_letter_queue(stage).as_str().into(),
            BasicGetOptions::default(),
        )
        .await?)
}

fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// How many messages each stage set aside.
    List {
        #[arg(long, value_parser = parse_stage)]
        stage: Option<Stage>,
    },
    /// One JSON line per parked message (when, why, its ids; never its body).
    Show {
        #[arg(long, value_parser = parse_stage)]
        stage: Option<Stage>,
        /// At most this many per stage.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Put a stage's parked messages back on its queue (after fixing the cause).
    Replay {
        #[arg(long, value_parser = parse_stage)]
        stage: Stage,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Drop parked messages for good.
    Purge {
        #[arg(long, value_parser = parse_stage)]
        stage: Option<Stage>,
    },
}

/// Runs one `ebox dlq` command with the service's broker user.
pub async fn run(amqp_url: &str, command: DlqCommand) -> anyhow::Result<()> {
    let connection = queues::driver::connect(amqp_url, "ebox dlq").await?;
    let publisher = Publisher::open(&connection).await?;
    let channel = publisher.channel();
    match command {
        DlqCommand::List { stage } => {
            for (stage, count) in list(channel, stage).await? {
                println!(
                    "{:<16} {count:>8}  {}",
                    stage.as_str(),
                    dead_letter_queue(stage)
                );
            }
        }
        DlqCommand::Show { stage, limit } => {
            for line in show(channel, stage, limit).await? {
                println!("{line}");
            }
        }
        DlqCommand::Replay { stage, limit } => {
            let replayed = replay(&publisher, amqp_url, stage, limit).await?;
            println!("{replayed} message(s) put back on the {stage} queue");
        }
        DlqCommand::Purge { stage } => {
            println!("{} message(s) dropped", purge(channel, stage).await?);
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
