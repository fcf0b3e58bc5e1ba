//! Status callbacks (docs/sender-contract.md, "Status callbacks"): a sender with a
//! `statusWebhookUrl` hears each status event over HTTP as well, signed, retried after a 500,
//! once per (message, status) however often the event is delivered; a sender without one hears
//! nothing over HTTP. A real HTTP server on loopback stands for the sender's endpoint.

use crate::helpers::*;
use domain::status::{Status, StatusEvent};
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v2};
use intake::contract::TYPE_V2;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use queues::topology::{STATUS_EXCHANGE, status_routing_key};
use std::collections::HashMap;

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

/// Publishes and reads the sender's statuses until a final one for this reference.
async fn journey(sender: &mut SenderClient, reference: &str, ssin: &str) -> Vec<StatusEvent> {
    let body = serde_json::to_vec(&sample_v2(ssin, MESSAGE_TYPE)).expect("JSON");
    sender
        .publish(sender.properties(reference, TYPE_V2), &body)
        .await
        .expect("published");
    let mut statuses = Vec::new();
    loop {
        let status = sender.next_status(WAIT).await.expect("a status");
        assert_eq!(status.sender_reference.as_deref(), Some(reference));
        let done = matches!(
            status.status,
            Status::Published | Status::NoDigitalUser | Status::Rejected
        );
        statuses.push(status);
        if done {
            return statuses;
        }
    }
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
}
