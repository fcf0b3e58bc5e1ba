//! The broker topology: every exchange and queue name of the service, and their declaration.
//!
//! Names that senders see (`ebox.publish`, `ebox.status`, `ebox.status.<sender>`) are the sender
//! contract; the others are internal. Every queue is a durable quorum queue; each stage queue's
//! given-up and over-delivered messages end in that stage's `ebox.dead-letter.<stage>`.
//!
//! A queue is declared with what can never change about it, its type, and only when it is
//! missing: dead-lettering, the delivery limit, lengths and ages are the broker policies of
//! [`crate::policies`], which may change on a live broker. A queue that an earlier release
//! declared with those as arguments is left as it is (docs/operations.md, "Broker topology").

use domain::audit::Stage;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};

/// Senders publish here (direct): with their own lane's routing key
/// ([`lane_routing_key`], `sender.<sender>`), or with [`PUBLISH_ROUTING_KEY`], the previous
/// contract release's key, to the lane all such senders share ([`INTAKE_QUEUE`]).
pub const PUBLISH_EXCHANGE: &str = "ebox.publish";
pub const PUBLISH_ROUTING_KEY: &str = "message";
/// Status events to senders (topic), routing key `<sender>.<status>`.
pub const STATUS_EXCHANGE: &str = "ebox.status";
/// Federation events (topic), routing key = event type (`newDocument`, `readDocument`, ...).
pub const EVENTS_EXCHANGE: &str = "ebox.events";
/// Hand-offs between stages (direct), routing key = the destination stage's queue name. A
/// dedicated exchange rather than the default one, so that write access to it can be given to
/// the stages that hand on, and to nobody else.
pub const INTERNAL_EXCHANGE: &str = "ebox.internal";
/// The eBox portal's consent and preference changes (direct), routing key
/// [`PORTAL_ROUTING_KEY`]; bound to [`CONSENT_UPDATES_QUEUE`].
pub const PORTAL_EXCHANGE: &str = "ebox.portal";
pub const PORTAL_ROUTING_KEY: &str = "update";
/// Where the deliveries a stage gave up on go (topic): the driver's parked copies, routed
/// `parked.<stage>`, and what the broker itself dead-letters (original routing key kept). Each
/// stage has its own queue ([`dead_letter_queue`]).
pub const DEAD_LETTER_EXCHANGE: &str = "ebox.dead-letter";

/// How long a parked copy is kept (14 days): it may hold a document, which must not outlive
/// what the agreement allows (C.10); an operator replays or purges well before. Set by the
/// policy [`crate::policies::DEAD_LETTERS`].
pub const DEAD_LETTER_TTL_MS: i64 = 14 * 24 * 3600 * 1000;

/// Stage queues.
/// Intake's shared lane: what senders publish with [`PUBLISH_ROUTING_KEY`]. Each sender also
/// has a lane of its own ([`intake_lane`]).
pub const INTAKE_QUEUE: &str = "ebox.intake";
pub const CONSENT_CHECK_QUEUE: &str = "ebox.consent-check";
pub const STORE_QUEUE: &str = "ebox.store";
/// Bound to [`EVENTS_EXCHANGE`] with `newDocument`.
pub const NOTIFY_QUEUE: &str = "ebox.notify";
/// Bound to [`EVENTS_EXCHANGE`] with `readDocument`.
pub const READ_RECEIPT_QUEUE: &str = "ebox.read-receipt";
/// Consent and preference changes from the eBox portal.
pub const CONSENT_UPDATES_QUEUE: &str = "ebox.consent-updates";
/// The status events of the senders that asked for status callbacks over HTTPS
/// (docs/sender-contract.md, "Status callbacks"): bound to [`STATUS_EXCHANGE`] with
/// `<sender>.#` for each of them ([`bind_status_callbacks`]), and for nobody else. Not with
/// `#`: a status event for a sender whose status queue is gone must stay unroutable, so that
/// the stage parks it and publishes it again until the queue is back
/// ([`crate::parked`]). Internal: the senders' own status queues are unchanged.
pub const STATUS_CALLBACKS_QUEUE: &str = "ebox.status-callbacks";

/// A message delivered more often than this (a crash loop) is dead-lettered instead. Set by the
/// policy [`crate::policies::STAGES`]; the driver gives up one delivery before.
pub const DELIVERY_LIMIT: i64 = 20;

/// The stages that consume a queue, each with its queue and the routing key the broker keeps
/// when it dead-letters one of its messages (for status callbacks, whose keys are
/// `<sender>.<status>`, see [`dead_letter_keys`]).
pub const STAGE_QUEUES: [(Stage, &str, &str); 7] = [
    (Stage::Intake, INTAKE_QUEUE, PUBLISH_ROUTING_KEY),
    (
        Stage::ConsentCheck,
        CONSENT_CHECK_QUEUE,
        CONSENT_CHECK_QUEUE,
    ),
    (Stage::Store, STORE_QUEUE, STORE_QUEUE),
    (Stage::Notify, NOTIFY_QUEUE, "newDocument"),
    (Stage::ReadReceipt, READ_RECEIPT_QUEUE, "readDocument"),
    (
        Stage::ConsentUpdates,
        CONSENT_UPDATES_QUEUE,
        PORTAL_ROUTING_KEY,
    ),
    (Stage::StatusCallbacks, STATUS_CALLBACKS_QUEUE, "*.accepted"),
];

/// The keys that route to `stage`'s dead-letter queue: the driver's parked copies, what the
/// broker dead-letters by its original routing key, and what it dead-letters after a replay
/// (which went to the queue by name). A status event's original key is `<sender>.<status>`
/// (a sender id has no dot): one `*.<status>` per status, which no other key matches.
pub fn dead_letter_keys(stage: Stage, queue: &str, dead_key: &str) -> Vec<String> {
    let mut keys = vec![parked_routing_key(stage), queue.to_owned()];
    if stage == Stage::StatusCallbacks {
        use domain::vocabulary::Vocabulary as _;
        keys.extend(
            domain::status::Status::ALL
                .iter()
                .map(|status| format!("*.{}", status.as_str())),
        );
    } else {
        keys.push(dead_key.to_owned());
    }
    if stage == Stage::Intake {
        // What the broker dead-letters from a sender's own lane (`sender.<sender>`; a sender
        // id has no dot).
        keys.push(format!("{LANE_KEY_PREFIX}*"));
    }
    keys
}

/// A stage's dead-letter queue: `ebox.dead-letter.<stage>`.
pub fn dead_letter_queue(stage: Stage) -> String {
    format!("{DEAD_LETTER_EXCHANGE}.{stage}")
}

/// The routing key of a copy the driver parks for `stage`.
pub fn parked_routing_key(stage: Stage) -> String {
    format!("parked.{stage}")
}

/// A sender's own intake lane, `ebox.intake.<sender>`: what it publishes with
/// [`lane_routing_key`]. Intake consumes every lane with a prefetch of its own, so that one
/// sender's backlog never stands in front of another sender's message, and a sender over its
/// limits waits in its own lane (docs/operations.md, "Sender lanes and limits").
pub fn intake_lane(sender_id: &str) -> String {
    format!("{INTAKE_LANE_PREFIX}{sender_id}")
}

/// What every sender's own lane's name starts with.
pub const INTAKE_LANE_PREFIX: &str = "ebox.intake.";

/// The routing key of a sender's own lane, `sender.<sender>`: never a key of the shared lane
/// (`message`), whatever the sender's id.
pub fn lane_routing_key(sender_id: &str) -> String {
    format!("{LANE_KEY_PREFIX}{sender_id}")
}

/// What every lane's routing key starts with.
pub const LANE_KEY_PREFIX: &str = "sender.";

/// The sender whose lane a routing key names, if it names one.
pub fn lane_owner(routing_key: &str) -> Option<&str> {
    routing_key.strip_prefix(LANE_KEY_PREFIX)
}

pub fn status_queue(sender_id: &str) -> String {
    format!("ebox.status.{sender_id}")
}

pub fn status_routing_key(sender_id: &str, status: &str) -> String {
    format!("{sender_id}.{status}")
}

/// What a queue is declared with: its type, which can never change. Everything else is a
/// policy's.
fn quorum_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Declares queue `name` when it is missing. A queue that exists is left as it is, whatever
/// arguments it was declared with: declaring it again with others would fail (406).
async fn declare_queue(
    connection: &Connection,
    channel: &Channel,
    name: &str,
) -> lapin::Result<()> {
    if exists(connection, name).await? {
        return Ok(());
    }
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions::durable(),
            quorum_arguments(),
        )
        .await?;
    Ok(())
}

/// Whether queue `name` exists: a passive declare, on a channel of its own, since the broker
/// closes the channel on which one fails.
async fn exists(connection: &Connection, name: &str) -> lapin::Result<bool> {
    let probe = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match probe
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = probe.close(200, "done".into()).await;
            Ok(true)
        }
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(amqp)
            if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
    )
}

/// Declares the whole topology. Idempotent. `ebox registry load` runs it, as the broker's
/// administrator: the workers declare nothing (consuming a queue that is not there fails, and
/// says so), so their broker users need no right to configure anything. The policies
/// ([`crate::policies`]) are not declared here: they need the management API or `rabbitmqctl`.
pub async fn declare(connection: &Connection) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    for (name, kind) in [
        (PUBLISH_EXCHANGE, ExchangeKind::Direct),
        (STATUS_EXCHANGE, ExchangeKind::Topic),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (DEAD_LETTER_EXCHANGE, ExchangeKind::Topic),
        (INTERNAL_EXCHANGE, ExchangeKind::Direct),
        (PORTAL_EXCHANGE, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(name.into(), kind, durable_exchange(), FieldTable::default())
            .await?;
    }
    for (stage, queue, dead_key) in STAGE_QUEUES {
        let parked = dead_letter_queue(stage);
        declare_queue(connection, &channel, &parked).await?;
        for key in dead_letter_keys(stage, queue, dead_key) {
            channel
                .queue_bind(
                    parked.as_str().into(),
                    DEAD_LETTER_EXCHANGE.into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        declare_queue(connection, &channel, queue).await?;
    }
    for (queue, exchange, key) in [
        (INTAKE_QUEUE, PUBLISH_EXCHANGE, PUBLISH_ROUTING_KEY),
        (CONSENT_CHECK_QUEUE, INTERNAL_EXCHANGE, CONSENT_CHECK_QUEUE),
        (STORE_QUEUE, INTERNAL_EXCHANGE, STORE_QUEUE),
        (CONSENT_UPDATES_QUEUE, PORTAL_EXCHANGE, PORTAL_ROUTING_KEY),
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
    let _ = channel.close(200, "done".into()).await;
    Ok(())
}

/// Declares a sender's status queue, bound to `<sender>.#` on the status exchange. Its bounds
/// are the policy [`crate::policies::STATUS`]'s.
pub async fn declare_status_queue(connection: &Connection, sender_id: &str) -> lapin::Result<()> {
    let key = format!("{sender_id}.#");
    declare_bound(connection, &status_queue(sender_id), STATUS_EXCHANGE, &key).await
}

/// Declares a sender's own intake lane ([`intake_lane`]), bound to [`PUBLISH_EXCHANGE`] with
/// [`lane_routing_key`]. Its dead-lettering and delivery limit are the policy
/// [`crate::policies::LANES`]'s.
pub async fn declare_intake_lane(connection: &Connection, sender_id: &str) -> lapin::Result<()> {
    let key = lane_routing_key(sender_id);
    declare_bound(connection, &intake_lane(sender_id), PUBLISH_EXCHANGE, &key).await
}

/// Declares queue `queue` (when missing) and binds it to `exchange` with `key`.
async fn declare_bound(
    connection: &Connection,
    queue: &str,
    exchange: &str,
    key: &str,
) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    declare_queue(connection, &channel, queue).await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "done".into()).await;
    Ok(())
}

/// Binds [`STATUS_CALLBACKS_QUEUE`] to `<sender>.#` on the status exchange when the sender
/// asked for status callbacks (`wanted`), and unbinds it otherwise (unbinding what is not bound
/// is a no-op). `ebox registry load` runs it for every sender of the file.
pub async fn bind_status_callbacks(
    connection: &Connection,
    sender_id: &str,
    wanted: bool,
) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    let key = format!("{sender_id}.#");
    if wanted {
        channel
            .queue_bind(
                STATUS_CALLBACKS_QUEUE.into(),
                STATUS_EXCHANGE.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    } else {
        channel
            .queue_unbind(
                STATUS_CALLBACKS_QUEUE.into(),
                STATUS_EXCHANGE.into(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await?;
    }
    let _ = channel.close(200, "done".into()).await;
    Ok(())
}
