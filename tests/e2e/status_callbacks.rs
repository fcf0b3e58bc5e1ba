//! Status callbacks (docs/sender-contract.md, "Status callbacks"): a sender with a
//! `statusWebhookUrl` hears each status event over HTTP as well, signed, retried after a 500,
//! once per (message, status) however often the event is delivered; a sender without one hears
//! nothing over HTTP. A real HTTP server on loopback stands for the sender's endpoint. Each
//! step is counted; a callback sent longer ago than the retention period is deleted, and no
//! other.

use crate::helpers::*;
use domain::status::{Status, StatusEvent};
use ebox::demo::{SAMPLE_SSIN, SenderClient};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use queues::topology::{STATUS_EXCHANGE, status_routing_key};
use runtime::metrics::METRICS;
use std::collections::HashMap;
use std::time::Duration;

/// `ebox_status_callbacks_total{result}` now. The counters are the process's, shared by the
/// tests running beside this one: a test compares what it did with how much they moved.
fn counted(result: &str) -> u64 {
    METRICS
        .status_callbacks_total
        .with_label_values(&[result])
        .get()
}

/// The test registry: the test's sender with a status webhook, and `other` without.
fn registry(app: &TestApp, endpoint: std::net::SocketAddr, other: &str) -> String {
    registry_yaml(&app.sender_id)
        .replacen(
            &format!("    messageTypes: [{MESSAGE_TYPE}]\n"),
            &format!(
                "    messageTypes: [{MESSAGE_TYPE}]\n    \
                 statusWebhookUrl: http://{endpoint}/ebox/status\n    \
                 statusSecretEnv: EBOX_PARTNER_ONEM_STATUS_SECRET\n"
            ),
            1,
        )
        .replacen(
            "senders:\n",
            &format!(
                "senders:\n  - id: {other}\n    organizationId: \"0206731645\"\n    \
                 name: {{nl: RIZIV, fr: INAMI, de: LIKIV}}\n    \
                 applications: [{{id: benefits, name: {{nl: Uitkeringen, fr: Indemnités}}}}]\n    \
                 messageTypes: [{MESSAGE_TYPE}]\n"
            ),
            1,
        )
}

/// Receives calls until one for (`reference`, `status`) answered 200 (any call but the very
/// first), checking each call's signature.
async fn calls_until(
    calls: &mut tokio::sync::mpsc::UnboundedReceiver<WebhookCall>,
    received: &mut Vec<(WebhookCall, StatusEvent)>,
    secret: &str,
    reference: &str,
    status: Status,
) {
    loop {
        let call = tokio::time::timeout(WAIT, calls.recv())
            .await
            .unwrap_or_else(|_| panic!("a callback for {reference} {status} in time"))
            .expect("call");
        assert_eq!(
            call.signature,
            expected_signature(secret, &call.timestamp, &call.body),
            "every callback is signed with the sender's secret"
        );
        let event: StatusEvent = serde_json::from_slice(&call.body).expect("a status event");
        let first = received.is_empty();
        let done = !first
            && event.sender_reference.as_deref() == Some(reference)
            && event.status == status;
        received.push((call, event));
        if done {
            return;
        }
    }
}

#[tokio::test]
async fn status_callbacks_are_signed_retried_once_per_status_and_only_for_senders_that_asked() {
    let (endpoint, mut calls) = start_webhook_endpoint("/ebox/status").await;
    let secret = "sender-status-secret";
    let before: Vec<u64> = ["queued", "sent", "retry"].map(counted).to_vec();
    let app = spawn_app_with(Options {
        vars: vec![(
            "EBOX_PARTNER_ONEM_STATUS_SECRET".to_owned(),
            secret.to_owned(),
        )],
        ..Options::pipeline()
    })
    .await;
    let other_id = format!("inss-{}", app.id);
    let file = domain::registry::RegistryFile::parse(&registry(&app, endpoint, &other_id))
        .expect("valid registry");
    ebox::admin::apply_registry(&app.pool, &app.settings.amqp_url, &file)
        .await
        .expect("the registry with a status webhook");
    app.broker_user(&other_id).await;
    let mut other = SenderClient::connect(&app.amqp_url_for(&other_id), &other_id)
        .await
        .expect("the other sender connects");
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;

    // The sender without a webhook goes first: its statuses are handled before the others'.
    let theirs = journey(&mut other, "ref-other", SAMPLE_SSIN).await;
    assert_eq!(theirs.last().map(|s| s.status), Some(Status::Published));

    // One message's journey, and a rejected one.
    let ours = journey(&mut sender, "ref-1", SAMPLE_SSIN).await;
    let statuses: Vec<Status> = ours.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [Status::Accepted, Status::Published]);
    let rejected = journey(&mut sender, "ref-bad", "85073003329").await;
    assert_eq!(rejected.last().map(|s| s.status), Some(Status::Rejected));

    let mut received = Vec::new();
    calls_until(
        &mut calls,
        &mut received,
        secret,
        "ref-bad",
        Status::Rejected,
    )
    .await;

    // The `published` event of ref-1 delivered again, as a redelivery or a re-publication
    // would: the same (messageId, status), a fresh AMQP id.
    let (_, published) = received
        .iter()
        .find(|(_, e)| {
            e.sender_reference.as_deref() == Some("ref-1") && e.status == Status::Published
        })
        .expect("ref-1's published callback");
    let channel = app.service_channel().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    channel
        .basic_publish(
            STATUS_EXCHANGE.into(),
            status_routing_key(&app.sender_id, "published")
                .as_str()
                .into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(published).expect("JSON"),
            BasicProperties::default()
                .with_message_id(ShortString::from(uuid::Uuid::new_v4().to_string()))
                .with_type(ShortString::from(domain::status::STATUS_EVENT_TYPE))
                .with_content_type(ShortString::from("application/json")),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");

    let again = sender
        .next_status(WAIT)
        .await
        .expect("the copy, on the status queue too");
    assert_eq!(&again, published);

    // Barrier: a later message's callbacks come after every event before them was handled.
    let later = journey(&mut sender, "ref-2", SAMPLE_SSIN).await;
    assert_eq!(later.last().map(|s| s.status), Some(Status::Published));
    calls_until(
        &mut calls,
        &mut received,
        secret,
        "ref-2",
        Status::Published,
    )
    .await;

    // The first call got a 500 and comes again with the same key, a second later.
    let first = received[0].0.idempotency_key.clone();
    while received
        .iter()
        .filter(|(call, _)| call.idempotency_key == first)
        .count()
        < 2
    {
        let call = tokio::time::timeout(WAIT, calls.recv())
            .await
            .expect("the retry in time")
            .expect("call");
        assert_eq!(
            call.signature,
            expected_signature(secret, &call.timestamp, &call.body)
        );
        let event: StatusEvent = serde_json::from_slice(&call.body).expect("a status event");
        received.push((call, event));
    }

    // Every status once, the first twice.
    let mut by_key: HashMap<&str, Vec<(Option<&str>, Status)>> = HashMap::new();
    for (call, event) in &received {
        by_key
            .entry(call.idempotency_key.as_str())
            .or_default()
            .push((event.sender_reference.as_deref(), event.status));
    }
    assert_eq!(
        by_key[first.as_str()].len(),
        2,
        "the 500 was retried: {received:?}"
    );
    let mut heard: Vec<(Option<&str>, Status)> = by_key
        .values()
        .map(|calls| {
            assert!(calls.windows(2).all(|w| w[0] == w[1]), "one key, one event");
            calls[0]
        })
        .collect();
    heard.sort_by_key(|(reference, status)| (reference.map(str::to_owned), status.as_str()));
    assert_eq!(
        heard,
        [
            (Some("ref-1"), Status::Accepted),
            (Some("ref-1"), Status::Published),
            (Some("ref-2"), Status::Accepted),
            (Some("ref-2"), Status::Published),
            (Some("ref-bad"), Status::Rejected),
        ],
        "once per status, none for the sender without a webhook"
    );
    assert_eq!(
        received.len(),
        6,
        "no second callback for the event delivered again"
    );
    // The body is the status event as the queue carries it.
    for on_the_queue in ours.iter().chain(&rejected).chain(&later) {
        assert!(
            received.iter().any(|(_, e)| e == on_the_queue),
            "the callback carries the queue's event: {on_the_queue:?}"
        );
    }
    eventually("every callback to be marked sent and audited", || async {
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM status_callbacks WHERE state = 'sent'")
                .fetch_one(&app.pool)
                .await
                .expect("count");
        let audited: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events
              WHERE stage = 'status-callbacks' AND action = 'status-callback-sent'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        sent == 5 && audited == 5
    })
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM status_callbacks")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(rows, 5, "nothing recorded for the sender without a webhook");
    assert!(calls.try_recv().is_err(), "nothing more once each said 200");
    let moved: Vec<u64> = ["queued", "sent", "retry"]
        .iter()
        .zip(&before)
        .map(|(result, before)| counted(result) - before)
        .collect();
    assert!(
        moved[0] >= 5 && moved[1] >= 5 && moved[2] >= 1,
        "queued, sent, retry counted: {moved:?}"
    );
    let rendered = METRICS.render();
    for gauge in [
        "ebox_status_callback_outbox_pending",
        "ebox_status_callback_outbox_oldest_seconds",
    ] {
        assert!(rendered.contains(gauge), "{gauge} exported");
    }
}

/// A status callback as the outbox holds it, `state`, created and (when sent) sent `days_ago`.
async fn callback(app: &TestApp, reference: &str, state: &str, days_ago: i32) -> uuid::Uuid {
    let key = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO status_callbacks (idempotency_key, sender_id, sender_reference, status, body,
                                       state, created_at, retry_from, sent_at)
         VALUES ($1, $2, $3, 'accepted', ''::bytea, $4, now() - make_interval(days => $5),
                 now() - make_interval(days => $5),
                 CASE WHEN $4 = 'sent' THEN now() - make_interval(days => $5) END)",
    )
    .bind(key)
    .bind(&app.sender_id)
    .bind(reference)
    .bind(state)
    .bind(days_ago)
    .execute(&app.pool)
    .await
    .expect("a status callback");
    key
}

#[tokio::test]
async fn a_callback_sent_longer_ago_than_the_retention_period_is_deleted_and_no_other() {
    use notify::status_callbacks::retention::SentCallbackRetention;
    use runtime::jobs::{Job, Pass};
    let app = spawn_app().await;
    callback(&app, "sent-long-ago", "sent", 31).await;
    let kept = [
        callback(&app, "sent-lately", "sent", 29).await,
        callback(&app, "pending-long", "pending", 40).await,
        callback(&app, "abandoned-long", "failed", 40).await,
    ];
    let mut retention =
        SentCallbackRetention::new(app.pool.clone(), Duration::from_secs(30 * 86_400));
    assert_eq!(retention.pass().await.expect("a pass"), Pass::Idle);
    let mut left: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT idempotency_key FROM status_callbacks")
            .fetch_all(&app.pool)
            .await
            .expect("the outbox");
    left.sort();
    let mut expected = kept.to_vec();
    expected.sort();
    assert_eq!(left, expected, "only the row sent 31 days ago is gone");
    assert_eq!(retention.purge().await.expect("a purge"), 0, "nothing more");

    // A shorter period takes the other sent row; pending and abandoned rows stay.
    let shorter = SentCallbackRetention::new(app.pool.clone(), Duration::from_secs(86_400));
    assert_eq!(shorter.purge().await.expect("a purge"), 1);
}

/// The notify process runs the retention job with `EBOX_STATUS_CALLBACK_RETENTION_DAYS`: a
/// callback sent longer ago than that is gone soon after the process starts (its first pass
/// runs at once), one sent since stays.
#[tokio::test]
async fn the_notify_process_deletes_callbacks_past_the_configured_retention() {
    let mut app = spawn_app_with(Options {
        vars: vec![(
            "EBOX_STATUS_CALLBACK_RETENTION_DAYS".to_owned(),
            "2".to_owned(),
        )],
        ..Options::default()
    })
    .await;
    callback(&app, "sent-three-days-ago", "sent", 3).await;
    let kept = callback(&app, "sent-yesterday", "sent", 1).await;
    app.stop_workers().await;
    app.start_workers(&[ebox::workers::Worker::Notify]).await;
    eventually("the notify process to delete the old callback", || async {
        let left: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT idempotency_key FROM status_callbacks")
                .fetch_all(&app.pool)
                .await
                .expect("the outbox");
        left == [kept]
    })
    .await;
}
