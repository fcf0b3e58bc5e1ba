//! The broker topology: every exchange and queue name of the service, and their declaration.
//!
//! Names that senders see (`ebox.publish`, `ebox.status`, `ebox.status.<sender>`) are the sender
//! contract; the others are internal. Every queue is a durable quorum queue whose rejected or
//! over-delivered messages are dead-lettered at least once to `ebox.dead-letter`.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// Senders publish here (direct), routing key [`PUBLISH_ROUTING_KEY`].
pub const PUBLISH_EXCHANGE: &str = "ebox.publish";
pub const PUBLISH_ROUTING_KEY: &str = "message";
/// Status events to senders (topic), routing key `<sender>.<status>`.
pub const STATUS_EXCHANGE: &str = "ebox.status";
/// Federation events (topic), routing key = event type (`newDocument`, `readDocument`, ...).
pub const EVENTS_EXCHANGE: &str = "ebox.events";
/// Where rejected, poison and over-delivered messages go (topic, original routing key kept).
pub const DEAD_LETTER_EXCHANGE: &str = "ebox.dead-letter";
pub const DEAD_LETTER_QUEUE: &str = "ebox.dead-letter";

/// Stage queues.
pub const INTAKE_QUEUE: &str = "ebox.intake";
pub const CONSENT_CHECK_QUEUE: &str = "ebox.consent-check";
pub const STORE_QUEUE: &str = "ebox.store";
/// Bound to [`EVENTS_EXCHANGE`] with `newDocument`.
pub const NOTIFY_QUEUE: &str = "ebox.notify";
/// Bound to [`EVENTS_EXCHANGE`] with `readDocument`.
pub const READ_RECEIPT_QUEUE: &str = "ebox.read-receipt";
/// Consent and preference changes from the eBox portal.
pub const CONSENT_UPDATES_QUEUE: &str = "ebox.consent-updates";

/// A message delivered more often than this (a crash loop) is dead-lettered instead.
pub const DELIVERY_LIMIT: i64 = 20;

pub fn status_queue(sender_id: &str) -> String {
    format!("ebox.status.{sender_id}")
}

pub fn status_routing_key(sender_id: &str, status: &str) -> String {
    format!("{sender_id}.{status}")
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn stage_queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), string("quorum"));
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        string(DEAD_LETTER_EXCHANGE),
    );
    args.insert(
        ShortString::from("x-dead-letter-strategy"),
        string("at-least-once"),
    );
    // at-least-once dead-lettering requires reject-publish: a full queue pushes back on the
    // publisher (a nack) instead of dropping its oldest message.
    args.insert(ShortString::from("x-overflow"), string("reject-publish"));
    args.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    args
}

fn quorum_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), string("quorum"));
    args
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

async fn declare_queue(channel: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<()> {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await?;
    Ok(())
}

/// Declares the whole topology. Idempotent: every process runs it at start-up.
pub async fn declare(channel: &Channel) -> lapin::Result<()> {
    for (name, kind) in [
        (PUBLISH_EXCHANGE, ExchangeKind::Direct),
        (STATUS_EXCHANGE, ExchangeKind::Topic),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (DEAD_LETTER_EXCHANGE, ExchangeKind::Topic),
    ] {
        channel
            .exchange_declare(name.into(), kind, durable_exchange(), FieldTable::default())
            .await?;
    }
    declare_queue(channel, DEAD_LETTER_QUEUE, quorum_arguments()).await?;
    channel
        .queue_bind(
            DEAD_LETTER_QUEUE.into(),
            DEAD_LETTER_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for queue in [
        INTAKE_QUEUE,
        CONSENT_CHECK_QUEUE,
        STORE_QUEUE,
        NOTIFY_QUEUE,
        READ_RECEIPT_QUEUE,
        CONSENT_UPDATES_QUEUE,
    ] {
        declare_queue(channel, queue, stage_queue_arguments()).await?;
    }
    for (queue, exchange, key) in [
        (INTAKE_QUEUE, PUBLISH_EXCHANGE, PUBLISH_ROUTING_KEY),
        (
            NOTIFY_QUEUE,
            EVENTS_EXCHANGE,
            domain::events::EventType::NewDocument.as_str(),
        ),
        (
            READ_RECEIPT_QUEUE,
            EVENTS_EXCHANGE,
            domain::events::EventType::ReadDocument.as_str(),
        ),
    ] {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Declares a sender's status queue, bound to `<sender>.#` on the status exchange.
pub async fn declare_status_queue(channel: &Channel, sender_id: &str) -> lapin::Result<()> {
    let queue = status_queue(sender_id);
    declare_queue(channel, &queue, quorum_arguments()).await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            STATUS_EXCHANGE.into(),
            format!("{sender_id}.#").as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
