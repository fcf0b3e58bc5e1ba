//! The consumer driver's own fault paths, against the real broker: shutdown during a backlog
//! returns nothing to the queue, and a consumer stuck in a step is not live.

use crate::helpers::*;
use domain::audit::Stage;
use domain::handoff::Handoff;
use domain::ids::MessageId;
use domain::ssin::Ssin;
use ebox::demo::SAMPLE_SSIN;
use ebox::workers::Worker;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, ShortString};
use queues::driver::{self, DriverSettings, Handler, HandlerError, Incoming, Outcome, Raw};
use queues::topology::CONSENT_CHECK_QUEUE;
use runtime::liveness::Liveness;
use runtime::metrics::Readiness;
use sqlx::PgConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Puts `count` hand-offs naming messages nobody recorded on consent-check's queue (each one
/// is refused and audited there: quick work that still goes through a whole batch).
async fn backlog(app: &TestApp, count: usize) {
    let channel = app.service_channel().await;
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirms");
    let recipient = Ssin::parse(SAMPLE_SSIN).expect("a national number");
    let mut confirms = Vec::with_capacity(count);
    for _ in 0..count {
        let handoff = Handoff {
            message_id: MessageId::from_uuid(uuid::Uuid::new_v4()),
            recipient: recipient.clone(),
        };
        let confirm = channel
            .basic_publish(
                "".into(),
                CONSENT_CHECK_QUEUE.into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(&handoff).expect("JSON"),
                BasicProperties::default()
                    .with_message_id(ShortString::from(handoff.message_id.to_string()))
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }
}

async fn refused(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'refused'")
        .fetch_one(&app.pool)
        .await
        .expect("count the refusals")
}

fn delivery_count(properties: &BasicProperties) -> i64 {
    match properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count").cloned())
    {
        None => 0,
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => n.into(),
        Some(other) => panic!("x-delivery-count is {other:?}"),
    }
}

#[tokio::test]
async fn stopping_during_a_backlog_handles_the_prefetched_deliveries_instead_of_returning_them() {
    let mut app = spawn_app_with(Options {
        workers: vec![Worker::ConsentCheck],
        ..Options::default()
    })
    .await;
    let sent = 3000;
    backlog(&app, sent).await;
    eventually("consent-check to be busy with the backlog", || async {
        refused(&app).await >= 100
    })
    .await;

    // A rollout: the consumer had a full prefetch in hand when it was told to stop.
    app.stop_workers().await;

    let handled = refused(&app).await;
    let channel = app.service_channel().await;
    let mut left = 0;
    let mut returned = 0;
    while let Some(message) = channel
        .basic_get(CONSENT_CHECK_QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        left += 1;
        if delivery_count(&message.delivery.properties) > 0 {
            returned += 1;
        }
    }
    assert!(
        handled < sent as i64,
        "the backlog outlasted the test's start"
    );
    assert_eq!(
        returned, 0,
        "{returned} of the {left} messages left were returned to the queue at shutdown"
    );
    assert_eq!(
        handled + left,
        sent as i64,
        "every message handled once or left untouched"
    );
}

/// A stage whose handling never ends, as a hung dependency would make it.
struct Hangs;

impl Handler for Hangs {
    type Message = Raw;
    const STAGE: Stage = Stage::ConsentCheck;

    fn queue(&self) -> &'static str {
        CONSENT_CHECK_QUEUE
    }

    async fn handle(
        &self,
        _conn: &mut PgConnection,
        _message: Raw,
        _incoming: Incoming<'_>,
    ) -> Result<Outcome, HandlerError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_consumer_stuck_in_a_step_is_not_live_and_one_waiting_for_work_is() {
    let app = spawn_app_with(Options {
        workers: Vec::new(),
        ..Options::default()
    })
    .await;
    let liveness = Liveness::new(Duration::from_millis(500));
    let ready = Readiness::default();
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(driver::run(
        Arc::new(Hangs),
        app.pool.clone(),
        DriverSettings {
            amqp_url: app.settings.amqp_url.clone(),
            prefetch: 4,
            batch_size: 4,
        },
        ready.clone(),
        liveness.heartbeat(CONSENT_CHECK_QUEUE),
        shutdown.clone(),
    ));
    tokio::time::timeout(WAIT, ready.wait_until_ready())
        .await
        .expect("the consumer starts");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    tokio::spawn(runtime::metrics::serve(
        addr,
        vec![ready],
        liveness,
        app.pool.clone(),
        std::future::pending(),
    ));
    let livez = format!("http://{addr}/livez");
    eventually("the probes to listen", || async {
        reqwest::get(&livez).await.is_ok()
    })
    .await;

    // Nothing to do, for longer than the bound: waiting for work is not a stall.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let answer = reqwest::get(&livez).await.expect("an answer");
    assert_eq!(answer.status(), 200);

    backlog(&app, 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let said = loop {
        let answer = reqwest::get(&livez).await.expect("an answer");
        let status = answer.status();
        let said = answer.text().await.unwrap_or_default();
        if status == 503 {
            break said;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/livez stayed {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        said.contains("ebox.consent-check: stuck in handling a batch"),
        "{said}"
    );
    shutdown.cancel();
    consumer.abort();
}
