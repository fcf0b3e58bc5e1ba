//! One broker user per component, with only the rights `queues::permissions` gives it: the
//! whole pipeline and the API run that way, and each user is refused what it does not need
//! (the default exchange, another stage's queue or exchange, declaring anything).

use crate::helpers::*;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use queues::permissions::BROKER_USERS;
use queues::topology::{
    CONSENT_CHECK_QUEUE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, INTAKE_QUEUE, INTERNAL_EXCHANGE,
    PORTAL_EXCHANGE, STATUS_EXCHANGE, STORE_QUEUE,
};
use reqwest::StatusCode;

const OTHER_SSIN: &str = "01010100126";

async fn channel_of(app: &TestApp, component: &str) -> lapin::Channel {
    let user = component_user(&app.id, component);
    let connection = Connection::connect(&app.amqp_url_for(&user), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirms");
    channel
}

/// Publishes as `component` to `exchange`; `true` when the broker confirmed it.
async fn may_publish(app: &TestApp, component: &str, exchange: &str, key: &str) -> bool {
    let channel = channel_of(app, component).await;
    let published = channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await;
    match published {
        Ok(confirm) => matches!(confirm.await, Ok(c) if c.is_ack()),
        Err(_) => false,
    }
}

async fn may_consume(app: &TestApp, component: &str, queue: &str) -> bool {
    channel_of(app, component)
        .await
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .is_ok()
}

async fn may_declare(app: &TestApp, component: &str) -> bool {
    channel_of(app, component)
        .await
        .queue_declare(
            format!("mine-{component}").as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .is_ok()
}

#[tokio::test]
async fn the_pipeline_and_the_api_run_with_one_least_privileged_broker_user_each() {
    let app = spawn_app_with(Options {
        broker_users: true,
        ..Options::with_api()
    })
    .await;
    let mut sender = app.sender().await;
    // The portal's own user records the consent, through its exchange.
    let portal = channel_of(&app, "portal").await;
    let consent = serde_json::json!({
        "ssin": SAMPLE_SSIN, "consent": "granted", "at": chrono::Utc::now(),
    });
    portal_update(&portal, "ebox.consent.v1", &consent).await;
    eventually("the portal's consent to be recorded", || async {
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM consent_changes")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        recorded == 1
    })
    .await;

    let id = deliver(
        &mut sender,
        "ref-least",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let opened = open_main_content(&app, id, &portal_citizen_token()).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let read = sender.next_status(WAIT).await.expect("the read status");
    assert_eq!(read.status, Status::Read, "{read:?}");
    // And a citizen without consent: the sender is told to use paper.
    let body = serde_json::to_vec(&sample_v2(OTHER_SSIN, MESSAGE_TYPE)).expect("JSON");
    publish_and_wait(&mut sender, "ref-paper", intake::contract::TYPE_V2, &body).await;
    let paper = sender
        .next_status(WAIT)
        .await
        .expect("the consent decision");
    assert_eq!(paper.status, Status::NoDigitalUser, "{paper:?}");
}

#[tokio::test]
async fn each_broker_user_is_refused_what_its_component_does_not_need() {
    let app = spawn_app_with(Options {
        broker_users: true,
        workers: Vec::new(),
        ..Options::default()
    })
    .await;
    for user in BROKER_USERS {
        let component = user.component;
        assert!(
            !may_publish(&app, component, "", STORE_QUEUE).await,
            "{component} must not write to the default exchange"
        );
        assert!(
            !may_declare(&app, component).await,
            "{component} must not declare"
        );
    }
    // What each may do, and the neighbouring thing it may not.
    let cases: [(&str, &str, bool); 10] = [
        ("intake", INTERNAL_EXCHANGE, true),
        ("intake", EVENTS_EXCHANGE, false),
        ("store", EVENTS_EXCHANGE, true),
        ("store", INTERNAL_EXCHANGE, false),
        ("read-receipt", STATUS_EXCHANGE, true),
        ("api", EVENTS_EXCHANGE, true),
        ("api", STATUS_EXCHANGE, false),
        ("portal", PORTAL_EXCHANGE, true),
        ("portal", INTERNAL_EXCHANGE, false),
        ("notify", STATUS_EXCHANGE, false),
    ];
    for (component, exchange, allowed) in cases {
        assert_eq!(
            may_publish(&app, component, exchange, "no-such-key-x").await,
            allowed,
            "{component} writing {exchange}"
        );
    }
    assert!(may_publish(&app, "notify", DEAD_LETTER_EXCHANGE, "parked.notify").await);
    assert!(may_consume(&app, "intake", INTAKE_QUEUE).await);
    assert!(!may_consume(&app, "intake", CONSENT_CHECK_QUEUE).await);
    assert!(!may_consume(&app, "api", INTAKE_QUEUE).await);
    assert!(!may_consume(&app, "keda", STORE_QUEUE).await);

    // KEDA reads queue depths from the management API, and nothing else.
    let keda = component_user(&app.id, "keda");
    let depth = reqwest::Client::new()
        .get(format!(
            "{}/queues/{}/{}",
            management_api_for(&keda),
            app.vhost,
            INTAKE_QUEUE
        ))
        .send()
        .await
        .expect("the management API answers");
    assert_eq!(depth.status(), StatusCode::OK);
    let queue: serde_json::Value = depth.json().await.expect("JSON");
    // (Its `messages` appear with the broker's next statistics, every 5 s.)
    assert_eq!(queue["name"], INTAKE_QUEUE, "{queue}");
}
