//! Nothing stranded: when a stage gives up on an accepted message — a permanent fault, or a
//! message the broker is about to stop redelivering — its sender hears the final status
//! `failed`, the audit trail says so, and the delivery is parked for the operators.

use crate::helpers::*;
use domain::audit::Stage;
use domain::handoff::Handoff;
use domain::status::{Code, Status, StatusEvent};
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v2};
use ebox::workers::Worker;
use intake::contract::TYPE_V2;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, ShortString};
use queues::topology::{CONSENT_CHECK_QUEUE, DELIVERY_LIMIT, STORE_QUEUE, dead_letter_queue};

/// Publishes a valid message with intake alone running; returns the hand-off intake
/// forwarded (taken off `ebox.consent-check`).
async fn accepted(app: &TestApp, sender: &mut SenderClient, reference: &str) -> Handoff {
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    let status = publish_and_wait(sender, reference, TYPE_V2, &body).await;
    assert_eq!(status.status, Status::Accepted, "{status:?}");
    let forwarded = app.drain(CONSENT_CHECK_QUEUE).await;
    assert_eq!(forwarded.len(), 1);
    serde_json::from_slice(&forwarded[0].data).expect("a hand-off")
}

/// Puts `handoff` on an internal queue as the stage before would.
async fn hand_on(app: &TestApp, queue: &str, handoff: &Handoff) {
    let channel = app.service_channel().await;
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirms");
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(handoff).expect("JSON"),
            BasicProperties::default()
                .with_message_id(ShortString::from(handoff.message_id.to_string()))
                .with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
}

async fn stored_status(app: &TestApp, handoff: &Handoff) -> (String, String) {
    sqlx::query_as("SELECT status, status_code FROM messages WHERE id = $1")
        .bind(handoff.message_id.as_uuid())
        .fetch_one(&app.pool)
        .await
        .expect("the message row")
}

fn assert_failed_by(status: &StatusEvent, handoff: &Handoff, stage: &str) {
    assert_eq!(status.status, Status::Failed, "{status:?}");
    assert_eq!(status.code, Code::TechnicalError);
    assert_eq!(status.message_id, Some(handoff.message_id));
    assert!(status.message.contains(stage), "{}", status.message);
}

#[tokio::test]
async fn a_message_a_later_stage_cannot_publish_ends_failed_and_its_sender_hears_it() {
    let mut app = spawn_app().await;
    let mut sender = app.sender().await;
    let handoff = accepted(&app, &mut sender, "ref-unkeepable").await;
    app.grant_consent(SAMPLE_SSIN).await;
    // The document intake wrote is gone (a bug, an operator's mistake): store cannot publish
    // it, and no retry will change that.
    sqlx::query("DELETE FROM documents WHERE message_id = $1")
        .bind(handoff.message_id.as_uuid())
        .execute(&app.pool)
        .await
        .expect("deleted");
    app.stop_workers().await;
    app.start_workers(&[Worker::ConsentCheck, Worker::Store])
        .await;
    hand_on(&app, CONSENT_CHECK_QUEUE, &handoff).await;

    let status = sender.next_status(WAIT).await.expect("a final status");
    assert_failed_by(&status, &handoff, "store");
    assert_eq!(
        stored_status(&app, &handoff).await,
        ("failed".to_owned(), "TECHNICAL_ERROR".to_owned())
    );
    let actions = app.audit_actions("ref-unkeepable").await;
    assert_eq!(
        actions.last(),
        Some(&("failed".to_owned(), Some("TECHNICAL_ERROR".to_owned()))),
        "{actions:?}"
    );
    let parked = app.drain(&dead_letter_queue(Stage::Store)).await;
    assert_eq!(parked.len(), 1, "the delivery is parked for the operators");
    let headers = parked[0].properties.headers().clone().expect("headers");
    let header = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongString(text)) => text.to_string(),
        other => panic!("{name} is {other:?}"),
    };
    assert_eq!(header("x-ebox-stage"), "store");
    assert_eq!(header("x-ebox-queue"), STORE_QUEUE);
    assert!(
        header("x-ebox-reason").contains("no unpublished document"),
        "{}",
        header("x-ebox-reason")
    );
}

#[tokio::test]
async fn a_message_that_keeps_coming_back_gets_a_final_status_before_the_broker_drops_it() {
    let mut app = spawn_app().await;
    let mut sender = app.sender().await;
    let handoff = accepted(&app, &mut sender, "ref-crash-loop").await;
    app.stop_workers().await;
    hand_on(&app, CONSENT_CHECK_QUEUE, &handoff).await;
    // A worker that crashes on this message returns it again and again: play that part
    // until one return is left before the broker's limit.
    let channel = app.service_channel().await;
    let mut returns = 0;
    while returns < DELIVERY_LIMIT - 1 {
        let message = channel
            .basic_get(CONSENT_CHECK_QUEUE.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
            .expect("the message is still there");
        assert_eq!(delivery_count(&message.delivery.properties), returns);
        message
            .delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .expect("nack");
        returns += 1;
    }
    app.start_workers(&[Worker::ConsentCheck]).await;

    let status = sender.next_status(WAIT).await.expect("a final status");
    assert_failed_by(&status, &handoff, "consent-check");
    assert_eq!(stored_status(&app, &handoff).await.0, "failed");
    // The status left with the batch: had the message been handled, its hand-off would be
    // on the store queue by now.
    assert!(
        app.drain(STORE_QUEUE).await.is_empty(),
        "nothing goes on to store"
    );
    assert_eq!(
        app.drain(&dead_letter_queue(Stage::ConsentCheck))
            .await
            .len(),
        1
    );
}

fn delivery_count(properties: &BasicProperties) -> i64 {
    properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count").cloned())
        .map_or(0, |value| match value {
            AMQPValue::LongLongInt(n) => n,
            AMQPValue::LongInt(n) => i64::from(n),
            other => panic!("x-delivery-count is {other:?}"),
        })
}

#[tokio::test]
async fn a_sender_whose_status_queue_is_gone_does_not_stop_intake_and_hears_everything_later() {
    let app = spawn_app().await;
    let channel = app.service_channel().await;
    let status_queue = queues::topology::status_queue(&app.sender_id);
    channel
        .queue_delete(status_queue.as_str().into(), Default::default())
        .await
        .expect("the status queue is deleted");
    let sender = app.sender_without_statuses().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    for reference in ["ref-nobody-listens-1", "ref-nobody-listens-2"] {
        sender
            .publish(sender.properties(reference, TYPE_V2), &body)
            .await
            .expect("published");
    }
    // Both are accepted and handed on although no status can be delivered: the stage did not
    // wait on the first one's status.
    eventually("both messages to be handed on to consent-check", || async {
        let forwarded: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        forwarded == 2
    })
    .await;
    eventually("the statuses to be parked", || async {
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_publishes")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        parked == 2
    })
    .await;
    assert_eq!(app.drain(CONSENT_CHECK_QUEUE).await.len(), 2);

    // The queue is back (the operator ran `ebox registry load`): the parked statuses arrive.
    let operator = queues::driver::connect(&app.settings.amqp_url, "operator")
        .await
        .expect("the operator connects");
    queues::topology::declare_status_queue(&operator, &app.sender_id)
        .await
        .expect("declared again");
    // Due now rather than after their back-off (which grows while the queue is gone).
    sqlx::query("UPDATE parked_publishes SET next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .expect("due");
    let mut sender = app.sender().await;
    let mut heard = Vec::new();
    for _ in 0..2 {
        let status = sender.next_status(WAIT).await.expect("a parked status");
        assert_eq!(status.status, Status::Accepted);
        heard.push(status.sender_reference.expect("a reference"));
    }
    heard.sort();
    assert_eq!(heard, ["ref-nobody-listens-1", "ref-nobody-listens-2"]);
}

/// Serves the probes on a free loopback port; returns their root URL.
async fn probes(
    pool: sqlx::PgPool,
    readiness: Vec<runtime::metrics::Readiness>,
    liveness: runtime::liveness::Liveness,
) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    tokio::spawn(runtime::metrics::serve(
        addr,
        readiness,
        liveness,
        pool,
        std::future::pending(),
    ));
    let root = format!("http://{addr}");
    eventually("the probes to listen", || async {
        reqwest::get(format!("{root}/livez")).await.is_ok()
    })
    .await;
    root
}

#[tokio::test]
async fn a_process_whose_database_does_not_answer_is_not_ready() {
    let app = spawn_app().await;
    let ready = runtime::metrics::Readiness::default();
    ready.set(true);
    let healthy = probes(app.pool.clone(), vec![ready.clone()], app.liveness.clone()).await;
    let answer = reqwest::get(format!("{healthy}/readyz"))
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 200);

    // Nothing listens on port 1: the database "is down" for this process.
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/ebox")
        .expect("a lazy pool");
    let broken = probes(unreachable, vec![ready], app.liveness.clone()).await;
    let answer = reqwest::get(format!("{broken}/readyz"))
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 503);
    let answer = reqwest::get(format!("{broken}/livez"))
        .await
        .expect("an answer");
    assert_eq!(
        answer.status(),
        200,
        "alive all the same: a restart would not help"
    );
}

#[tokio::test]
async fn a_message_left_at_accepted_too_long_is_counted_as_stuck() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let handoff = accepted(&app, &mut sender, "ref-left-behind").await;
    let after = app.settings.stuck_after;
    let mut conn = app.pool.acquire().await.expect("a connection");
    let (count, _) = records::messages::stuck(&mut conn, after)
        .await
        .expect("counted");
    assert_eq!(count, 0, "just accepted is not stuck");

    // Nothing took it further (consent-check does not run here); time passes.
    sqlx::query("UPDATE messages SET status_at = now() - interval '1 hour' WHERE id = $1")
        .bind(handoff.message_id.as_uuid())
        .execute(&mut *conn)
        .await
        .expect("backdated");
    let (count, oldest) = records::messages::stuck(&mut conn, after)
        .await
        .expect("counted");
    assert_eq!(count, 1);
    let waited = chrono::Utc::now() - oldest.expect("the oldest");
    assert!(waited.num_minutes() >= 59, "{waited}");
}

#[tokio::test]
async fn a_publication_parked_for_an_unknown_sender_is_replayed_once_the_sender_is_registered() {
    let app = spawn_app().await;
    let stranger = format!("stranger-{}", app.id);
    app.broker_user(&stranger).await;
    // An unregistered user has no lane of its own: it publishes on the shared one.
    let unregistered =
        SenderClient::connect_publishing_only(&app.amqp_url_for(&stranger), &stranger)
            .await
            .expect("the stranger connects")
            .with_routing_key(queues::topology::PUBLISH_ROUTING_KEY);
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    unregistered
        .publish(unregistered.properties("ref-early", TYPE_V2), &body)
        .await
        .expect("published");
    let connection = queues::driver::connect(&app.settings.amqp_url, "operator")
        .await
        .expect("the operator connects");
    let publisher = queues::Publisher::open(&connection)
        .await
        .expect("a channel");
    eventually("the publication to be parked", || async {
        let counts = ebox::dlq::list(publisher.channel(), Some(Stage::Intake))
            .await
            .expect("listed");
        counts == [(Stage::Intake, 1)]
    })
    .await;
    let shown = ebox::dlq::show(publisher.channel(), Some(Stage::Intake), 10)
        .await
        .expect("shown");
    assert_eq!(shown[0]["sender"], stranger.as_str());
    assert_eq!(shown[0]["messageId"], "ref-early");
    assert!(
        shown[0]["reason"]
            .as_str()
            .expect("a reason")
            .contains("no sender registration")
    );

    // The operator registers the sender, then replays what was parked.
    let registry = domain::registry::RegistryFile::parse(&registry_yaml(&stranger)).expect("valid");
    ebox::admin::apply_registry(&app.pool, &app.settings.amqp_url, &registry)
        .await
        .expect("registered");
    let mut registered = SenderClient::connect(&app.amqp_url_for(&stranger), &stranger)
        .await
        .expect("the sender reads its statuses");
    let replayed = ebox::dlq::replay(&publisher, &app.settings.amqp_url, Stage::Intake, 10)
        .await
        .expect("replayed");
    assert_eq!(replayed, 1);
    let status = registered.next_status(WAIT).await.expect("a status");
    assert_eq!(status.status, Status::Accepted, "{status:?}");
    assert_eq!(status.sender_reference.as_deref(), Some("ref-early"));
    assert_eq!(
        ebox::dlq::list(publisher.channel(), Some(Stage::Intake))
            .await
            .expect("listed"),
        [(Stage::Intake, 0)]
    );
}

#[tokio::test]
async fn a_sender_cannot_pass_itself_off_as_another_through_the_replay_header() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut headers = lapin::types::FieldTable::default();
    headers.insert(
        intake::REPLAYED_FOR.into(),
        AMQPValue::LongString("somebody-else".into()),
    );
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    sender
        .publish(
            sender
                .properties("ref-pretend", TYPE_V2)
                .with_headers(headers),
            &body,
        )
        .await
        .expect("published");
    let status = sender.next_status(WAIT).await.expect("a status");
    assert_eq!(status.status, Status::Accepted);
    let owner: String =
        sqlx::query_scalar("SELECT sender_id FROM messages WHERE sender_reference = 'ref-pretend'")
            .fetch_one(&app.pool)
            .await
            .expect("the message");
    assert_eq!(owner, app.sender_id, "the header is ignored from a sender");
}
