//! A topology that can change: dead-lettering, the delivery limit and the queues' bounds are
//! broker policies (`queues::policies`), applied to each test's vhost by `spawn_app` as every
//! deployment applies them. A sender that does not read cannot fill the broker, an operator
//! changes a bound on a live vhost without anything failing, and queues that an earlier release
//! declared with arguments still load.

use crate::helpers::*;
use domain::audit::Stage;
use domain::registry::RegistryFile;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v2};
use ebox::workers::Worker;
use intake::contract::TYPE_V2;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use queues::policies::{self, Bounds};
use queues::topology::{
    DEAD_LETTER_EXCHANGE, DEAD_LETTER_TTL_MS, DELIVERY_LIMIT, INTAKE_QUEUE, STORE_QUEUE,
    dead_letter_queue, status_queue,
};

/// A publication intake rejects at once (its national number has wrong check digits): one
/// status each, nothing kept.
fn rejected_body() -> Vec<u8> {
    serde_json::to_vec(&sample_v2("85073003329", MESSAGE_TYPE)).expect("JSON")
}

/// Waits until the management API shows `key` = `value` in the policy applied to `queue`.
async fn until_in_effect(app: &TestApp, queue: &str, key: &str, value: i64) {
    eventually(&format!("{key} = {value} to apply to {queue}"), || async {
        queue_info(&app.vhost, queue).await["effective_policy_definition"][key] == value
    })
    .await;
}

async fn parked_publishes(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM parked_publishes")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_sender_that_does_not_read_loses_its_oldest_statuses_and_nobody_waits_for_it() {
    const BOUND: i64 = 3;
    let app = spawn_app().await;
    // The service's policies with a status queue of three events, on this vhost only.
    set_policies(
        &app.vhost,
        &policies::with_bounds(&Bounds {
            status_max_length: BOUND,
            ..Bounds::SERVICE
        }),
    )
    .await;
    until_in_effect(&app, &status_queue(&app.sender_id), "max-length", BOUND).await;
    let other_id = format!("inss-{}", app.id);
    let mut other = app.second_sender(&other_id, "").await;

    // The test's sender publishes ten messages and the last one, and reads nothing.
    let unread = app.sender_without_statuses().await;
    let body = rejected_body();
    let mut references: Vec<String> = (1..=10).map(|n| format!("ref-unread-{n:02}")).collect();
    references.push("ref-unread-last".to_owned());
    for reference in &references {
        unread
            .publish(unread.properties(reference, TYPE_V2), &body)
            .await
            .expect("the broker takes the publication");
    }
    eventually("intake to answer all eleven", || async {
        let answered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events
              WHERE action = 'rejected' AND sender_reference LIKE 'ref-unread-%'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        answered == 11
    })
    .await;
    // The other sender is answered at once. Intake handles one batch after another, each
    // published before the next: when this status arrives, the last of the eleven is on the
    // unread queue.
    let status = publish_and_wait(&mut other, "ref-other", TYPE_V2, &body).await;
    assert_eq!(status.status, Status::Rejected, "{status:?}");
    assert_eq!(status.sender_reference.as_deref(), Some("ref-other"));

    // The unread queue kept the newest three; the broker refused nothing (no status parked).
    let mut reader = app.sender().await;
    let mut heard = Vec::new();
    while heard.last().map(String::as_str) != Some("ref-unread-last") {
        let status = reader.next_status(WAIT).await.expect("a status");
        heard.push(status.sender_reference.expect("a reference"));
    }
    assert_eq!(
        heard,
        references[references.len() - 3..],
        "the oldest went first"
    );
    assert_eq!(
        parked_publishes(&app).await,
        0,
        "nobody waited for the reader"
    );
    // Reading again, the sender hears what it publishes next.
    let status = publish_and_wait(&mut reader, "ref-read-again", TYPE_V2, &body).await;
    assert_eq!(status.sender_reference.as_deref(), Some("ref-read-again"));
}

#[tokio::test]
async fn a_bound_changed_on_a_live_vhost_takes_effect_and_the_registry_still_loads() {
    let app = spawn_app().await;
    // A release that changes two knobs: the delivery limit up, the dead-letter queues' length
    // down to one.
    set_policies(
        &app.vhost,
        &policies::with_bounds(&Bounds {
            delivery_limit: DELIVERY_LIMIT + 10,
            dead_letter_max_length: 1,
            ..Bounds::SERVICE
        }),
    )
    .await;
    let registry = RegistryFile::parse(&registry_yaml(&app.sender_id)).expect("valid");
    ebox::admin::apply_registry(&app.pool, &app.settings.amqp_url, &registry)
        .await
        .expect("the registry loads on the changed vhost");
    until_in_effect(&app, INTAKE_QUEUE, "delivery-limit", DELIVERY_LIMIT + 10).await;
    let parked = dead_letter_queue(Stage::Intake);
    until_in_effect(&app, &parked, "max-length", 1).await;

    // Two publications from a broker user with no registration: intake parks both, and its
    // dead-letter queue keeps the newer.
    let stranger = format!("stranger-{}", app.id);
    app.broker_user(&stranger).await;
    // An unregistered user has no lane of its own: it publishes on the shared one.
    let unregistered =
        SenderClient::connect_publishing_only(&app.amqp_url_for(&stranger), &stranger)
            .await
            .expect("the stranger connects")
            .with_routing_key(queues::topology::PUBLISH_ROUTING_KEY);
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    for reference in ["ref-stranger-1", "ref-stranger-2"] {
        unregistered
            .publish(unregistered.properties(reference, TYPE_V2), &body)
            .await
            .expect("published");
    }
    eventually("intake to set both aside", || async {
        let set_aside: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events
              WHERE action = 'dead-lettered' AND sender_reference LIKE 'ref-stranger-%'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        set_aside == 2
    })
    .await;
    // Intake settles each batch (parks, acks) before it takes the next: once the registered
    // sender hears about a publication made after both were recorded, both copies are parked.
    let mut sender = app.sender().await;
    let status = publish_and_wait(&mut sender, "ref-after", TYPE_V2, &rejected_body()).await;
    assert_eq!(status.sender_reference.as_deref(), Some("ref-after"));
    let operator = queues::driver::connect(&app.settings.amqp_url, "operator")
        .await
        .expect("the operator connects");
    let channel = operator.create_channel().await.expect("a channel");
    let shown = ebox::dlq::show(&channel, Some(Stage::Intake), 10)
        .await
        .expect("shown");
    let parked: Vec<&str> = shown
        .iter()
        .filter_map(|message| message["messageId"].as_str())
        .collect();
    assert_eq!(parked, ["ref-stranger-2"], "the older one was dropped");
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// What the release before policies declared a stage queue with.
fn earlier_stage_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), text("quorum"));
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        text(DEAD_LETTER_EXCHANGE),
    );
    args.insert(
        ShortString::from("x-dead-letter-strategy"),
        text("at-least-once"),
    );
    args.insert(ShortString::from("x-overflow"), text("reject-publish"));
    args.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    args
}

/// What the release before policies declared a dead-letter queue with.
fn earlier_dead_letter_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), text("quorum"));
    args.insert(
        ShortString::from("x-message-ttl"),
        AMQPValue::LongLongInt(DEAD_LETTER_TTL_MS),
    );
    args
}

#[tokio::test]
async fn queues_an_earlier_release_declared_with_arguments_still_load_and_carry_messages() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    app.stop_workers().await;
    let channel = app.service_channel().await;
    let dead_letters = dead_letter_queue(Stage::Store);
    for (queue, arguments) in [
        (STORE_QUEUE, earlier_stage_arguments()),
        (dead_letters.as_str(), earlier_dead_letter_arguments()),
    ] {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .expect("deleted");
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
            .await
            .expect("declared as the earlier release did");
    }
    // The upgrade: the new release loads the registry (and binds the queues again, their
    // bindings having gone with them).
    let registry = RegistryFile::parse(&registry_yaml(&app.sender_id)).expect("valid");
    ebox::admin::apply_registry(&app.pool, &app.settings.amqp_url, &registry)
        .await
        .expect("the registry loads over the earlier release's queues");
    assert_eq!(
        queue_info(&app.vhost, STORE_QUEUE).await["arguments"]["x-delivery-limit"],
        DELIVERY_LIMIT,
        "left as the earlier release declared it"
    );
    until_in_effect(&app, STORE_QUEUE, "delivery-limit", DELIVERY_LIMIT).await;

    app.start_workers(&Worker::ALL).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    deliver(
        &mut sender,
        "ref-after-upgrade",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
}
