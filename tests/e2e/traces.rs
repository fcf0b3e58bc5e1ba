//! Traces (issue #12): a sender's `traceparent` runs through every stage and back in the status
//! events it hears; one that is not well formed is ignored and the message accepted all the
//! same; the API continues the portal's `traceparent` into the read receipt; a parked status
//! published again, and a stage's dead-letter copy, stay in their message's trace.
//!
//! Nothing is exported in this process (no subscriber, or a logs-only one when `EBOX_TEST_LOG`
//! is set): the trace contexts are the driver's and the API's own (`runtime::trace`), which is
//! what proves that they never depend on an exporter. `ebox/tests/otlp.rs` checks the export.

use crate::helpers::*;
use domain::status::{Status, StatusEvent};
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use ebox::workers::Worker;
use futures_util::StreamExt;
use intake::contract::TYPE_V2;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use queues::propagation;
use queues::topology::{CONSENT_CHECK_QUEUE, NOTIFY_QUEUE, STORE_QUEUE, status_queue};
use runtime::trace::TraceContext;

/// The sender's trace, and the span that published the message.
const SENDERS_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const SENDERS_TRACESTATE: &str = "onem=7a1c,congo=t61rcWkgMzE";

/// The portal's request.
const PORTALS_TRACEPARENT: &str = "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01";

/// `properties` with `headers` set.
fn with_headers(
    properties: lapin::BasicProperties,
    headers: &[(&str, AMQPValue)],
) -> lapin::BasicProperties {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert((*key).into(), value.clone());
    }
    properties.with_headers(table)
}

/// The trace context a message carries; every message the service publishes has one.
fn trace_of(delivery: &Delivery) -> TraceContext {
    propagation::incoming(&delivery.properties).unwrap_or_else(|| {
        panic!(
            "no well-formed traceparent on {:?}",
            delivery.properties.headers()
        )
    })
}

/// Waits for `count` messages on `queue` and returns them; `keep` acknowledges them, otherwise
/// they go back to the queue for the stage that consumes it.
async fn wait_on(app: &TestApp, queue: &str, count: usize, keep: bool) -> Vec<Delivery> {
    let channel = app.service_channel().await;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} messages on {queue}", taken.len()))
            .expect("consumer open")
            .expect("delivery");
        taken.push(delivery);
    }
    for delivery in &taken {
        if keep {
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
        } else {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .expect("nack");
        }
    }
    let _ = channel.close(200, "seen".into()).await;
    taken
}

fn status(delivery: &Delivery) -> StatusEvent {
    serde_json::from_slice(&delivery.data).expect("a status event")
}

#[tokio::test]
async fn a_senders_traceparent_runs_through_every_stage_and_back_in_its_statuses() {
    let mut app = spawn_app().await; // intake only, so each hop can be looked at
    app.grant_consent(SAMPLE_SSIN).await;
    let sender = app.sender_without_statuses().await;
    let senders = TraceContext::parse(SENDERS_TRACEPARENT, None).expect("valid");
    sender
        .publish(
            with_headers(
                sender.properties("ref-traced", TYPE_V2),
                &[
                    (
                        "traceparent",
                        AMQPValue::LongString(SENDERS_TRACEPARENT.into()),
                    ),
                    (
                        "tracestate",
                        AMQPValue::LongString(SENDERS_TRACESTATE.into()),
                    ),
                ],
            ),
            &serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON"),
        )
        .await
        .expect("the broker takes the publication");

    // intake → consent-check
    let to_consent_check = trace_of(&wait_on(&app, CONSENT_CHECK_QUEUE, 1, false).await[0]);
    app.stop_workers().await;
    app.start_workers(&[Worker::ConsentCheck]).await;
    // consent-check → store
    let to_store = trace_of(&wait_on(&app, STORE_QUEUE, 1, false).await[0]);
    app.stop_workers().await;
    app.start_workers(&[Worker::Store]).await;
    // store → notify (`newDocument` on ebox.events)
    let new_document = trace_of(&wait_on(&app, NOTIFY_QUEUE, 1, false).await[0]);
    // intake's `accepted`, store's `published`
    let statuses = wait_on(&app, &status_queue(&app.sender_id), 2, true).await;
    let said: Vec<Status> = statuses.iter().map(|s| status(s).status).collect();
    assert_eq!(said, [Status::Accepted, Status::Published]);

    let mut hops = vec![to_consent_check, to_store, new_document];
    hops.extend(statuses.iter().map(trace_of));
    for hop in &hops {
        assert_eq!(
            hop.trace_id_hex(),
            senders.trace_id_hex(),
            "one trace: {hop:?}"
        );
        assert_eq!(
            hop.flags(),
            senders.flags(),
            "the sender's sampling decision"
        );
        assert_eq!(hop.tracestate(), Some(SENDERS_TRACESTATE), "passed along");
    }
    let mut parents: Vec<[u8; 8]> = hops.iter().map(TraceContext::span_id).collect();
    parents.push(senders.span_id());
    parents.sort_unstable();
    parents.dedup();
    assert_eq!(
        parents.len(),
        hops.len() + 1,
        "each hop has a parent span of its own, none the sender's: {hops:?}"
    );
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_and_the_message_accepted_in_a_new_trace() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let malformed = [
        AMQPValue::LongString("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01".into()),
        AMQPValue::LongString("00-00000000000000000000000000000000-b7ad6b7169203331-01".into()),
        AMQPValue::LongString("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        AMQPValue::LongString("not a traceparent".into()),
        AMQPValue::LongInt(42),
    ];
    for (n, traceparent) in malformed.iter().enumerate() {
        let reference = format!("ref-malformed-{n}");
        sender
            .publish(
                with_headers(
                    sender.properties(&reference, TYPE_V2),
                    &[
                        ("traceparent", traceparent.clone()),
                        ("tracestate", AMQPValue::LongString("onem=7a1c".into())),
                    ],
                ),
                &serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON"),
            )
            .await
            .expect("the broker takes the publication");
        let answer = sender.next_status(WAIT).await.expect("a status");
        assert_eq!(answer.sender_reference.as_deref(), Some(reference.as_str()));
        assert_eq!(
            answer.status,
            Status::Accepted,
            "{traceparent:?}: {answer:?}"
        );
    }

    let handoffs = wait_on(&app, CONSENT_CHECK_QUEUE, malformed.len(), true).await;
    let mut traces: Vec<String> = handoffs
        .iter()
        .map(|handoff| {
            let trace = trace_of(handoff);
            assert_eq!(
                trace.tracestate(),
                None,
                "no tracestate without its traceparent"
            );
            trace.trace_id_hex()
        })
        .collect();
    assert!(
        !traces.contains(&"0af7651916cd43dd8448eb211c80319c".to_owned()),
        "{traces:?}"
    );
    traces.sort_unstable();
    traces.dedup();
    assert_eq!(traces.len(), malformed.len(), "each a new trace");
}

#[tokio::test]
async fn the_api_continues_the_portals_traceparent_into_the_read_receipt() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let message_id = deliver(
        &mut sender,
        "ref-read-traced",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    sender.close().await;
    let portals = TraceContext::parse(PORTALS_TRACEPARENT, None).expect("valid");

    let base = app.api.clone().expect("the API runs");
    let token = portal_citizen_token();
    let http = reqwest::Client::new();
    let attachments: serde_json::Value = http
        .get(format!("{base}/ebox/messages/{message_id}/attachments"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the API answers")
        .json()
        .await
        .expect("JSON");
    let main = attachments["items"][0]["attachmentId"]
        .as_str()
        .unwrap_or_else(|| panic!("an attachment id in {attachments}"))
        .to_owned();
    let opened = http
        .get(format!(
            "{base}/ebox/messages/{message_id}/attachments/{main}/content"
        ))
        .bearer_auth(&token)
        .header("traceparent", PORTALS_TRACEPARENT)
        .header("tracestate", "portal=1")
        .send()
        .await
        .expect("the API answers");
    assert!(opened.status().is_success(), "{}", opened.status());

    // The API's readDocument, read-receipt's delivery of it, and the `read` it publishes.
    let read = wait_on(&app, &status_queue(&app.sender_id), 1, true).await;
    assert_eq!(status(&read[0]).status, Status::Read);
    let trace = trace_of(&read[0]);
    assert_eq!(
        trace.trace_id_hex(),
        portals.trace_id_hex(),
        "the portal's trace"
    );
    assert_ne!(trace.span_id(), portals.span_id());
    assert_eq!(trace.tracestate(), Some("portal=1"));
}

#[tokio::test]
async fn a_parked_status_is_published_again_in_its_messages_trace() {
    let app = spawn_app().await;
    let channel = app.service_channel().await;
    let status_queue = status_queue(&app.sender_id);
    channel
        .queue_delete(status_queue.as_str().into(), Default::default())
        .await
        .expect("the status queue is deleted");
    let sender = app.sender_without_statuses().await;
    sender
        .publish(
            with_headers(
                sender.properties("ref-parked-traced", TYPE_V2),
                &[(
                    "traceparent",
                    AMQPValue::LongString(SENDERS_TRACEPARENT.into()),
                )],
            ),
            &serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON"),
        )
        .await
        .expect("the broker takes the publication");
    eventually("the status to be parked", || async {
        let parked: Option<String> = sqlx::query_scalar("SELECT traceparent FROM parked_publishes")
            .fetch_optional(&app.pool)
            .await
            .expect("read the parked publishes");
        parked.is_some()
    })
    .await;

    let operator = queues::driver::connect(&app.settings.amqp_url, "operator")
        .await
        .expect("the operator connects");
    queues::topology::declare_status_queue(&operator, &app.sender_id)
        .await
        .expect("declared again");
    sqlx::query("UPDATE parked_publishes SET next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .expect("due");
    let accepted = wait_on(&app, &status_queue, 1, true).await;
    assert_eq!(status(&accepted[0]).status, Status::Accepted);
    let trace = trace_of(&accepted[0]);
    let senders = TraceContext::parse(SENDERS_TRACEPARENT, None).expect("valid");
    assert_eq!(
        trace.trace_id(),
        senders.trace_id(),
        "still the message's trace"
    );
    assert_ne!(trace.span_id(), senders.span_id());
}

#[tokio::test]
async fn the_copy_a_stage_sets_aside_is_in_the_trace_of_the_delivery_it_gave_up_on() {
    let app = spawn_app_with(Options {
        workers: vec![Worker::ConsentCheck],
        ..Options::default()
    })
    .await;
    let forger = app.forger().await;
    forger
        .basic_publish(
            "".into(),
            CONSENT_CHECK_QUEUE.into(),
            lapin::options::BasicPublishOptions::default(),
            b"not a hand-off",
            with_headers(
                lapin::BasicProperties::default().with_delivery_mode(2),
                &[(
                    "traceparent",
                    AMQPValue::LongString(SENDERS_TRACEPARENT.into()),
                )],
            ),
        )
        .await
        .expect("the broker lets the forger publish")
        .await
        .expect("confirmed");

    let queue = queues::topology::dead_letter_queue(domain::audit::Stage::ConsentCheck);
    let copy = wait_on(&app, &queue, 1, true).await;
    let trace = trace_of(&copy[0]);
    let senders = TraceContext::parse(SENDERS_TRACEPARENT, None).expect("valid");
    assert_eq!(trace.trace_id(), senders.trace_id());
    assert_ne!(
        trace.span_id(),
        senders.span_id(),
        "the stage's span, not the forger's"
    );
    let reason = copy[0]
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-ebox-reason").cloned());
    assert!(reason.is_some(), "still a driver's copy");
}
