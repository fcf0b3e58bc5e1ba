//! Internal queues cannot be used to forge: a broker user who can put any message on any
//! internal queue (write access to `amq.default`) changes nothing. Every stage acts on the
//! state the stage before it recorded; a message that disagrees is refused, audited as
//! `refused`, and counted.

use crate::helpers::*;
use domain::events::EventEnvelope;
use domain::handoff::Handoff;
use domain::ids::MessageId;
use domain::ssin::Ssin;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use ebox::workers::Worker;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use queues::topology::{CONSENT_CHECK_QUEUE, NOTIFY_QUEUE, READ_RECEIPT_QUEUE, STORE_QUEUE};
use read_receipt::recovery::UnconfirmedReads;
use reqwest::StatusCode;
use runtime::jobs::Job;
use std::sync::Arc;

const OTHER_SSIN: &str = "01010100126";

/// Puts `body` on `queue` through the default exchange, as the forger can.
async fn inject(channel: &lapin::Channel, queue: &str, body: &[u8], message_id: &str) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_message_id(ShortString::from(message_id))
                .with_delivery_mode(2),
        )
        .await
        .expect("the broker lets the forger publish")
        .await
        .expect("confirmed");
}

async fn inject_handoff(channel: &lapin::Channel, queue: &str, message_id: MessageId, ssin: &str) {
    let handoff = Handoff {
        message_id,
        recipient: Ssin::parse(ssin).expect("a national number"),
    };
    let body = serde_json::to_vec(&handoff).expect("JSON");
    inject(channel, queue, &body, &message_id.to_string()).await;
}

/// The `refused` audit records of `stage` about `message_id`, with their reasons.
async fn refusals(app: &TestApp, stage: &str, message_id: MessageId) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT details->>'reason' FROM audit_events
          WHERE stage = $1 AND action = 'refused' AND message_id = $2 ORDER BY id",
    )
    .bind(stage)
    .bind(message_id.as_uuid())
    .fetch_all(&app.pool)
    .await
    .expect("read the audit trail")
}

async fn status_of(app: &TestApp, message_id: MessageId) -> String {
    sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(message_id.as_uuid())
        .fetch_one(&app.pool)
        .await
        .expect("the message")
}

#[tokio::test]
async fn a_hand_off_injected_past_consent_check_stores_nothing_and_is_refused() {
    let app = spawn_app_with(Options::pipeline()).await;
    let mut sender = app.sender().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    publish_and_wait(
        &mut sender,
        "ref-no-consent",
        intake::contract::TYPE_V2,
        &body,
    )
    .await;
    let refused = sender
        .next_status(WAIT)
        .await
        .expect("the consent decision");
    assert_eq!(refused.status, Status::NoDigitalUser, "{refused:?}");
    let victim = refused.message_id.expect("an id");
    assert_eq!(
        document_count(&app, victim).await,
        0,
        "nothing is kept for a citizen who did not consent"
    );

    let forger = app.forger().await;
    // Straight to store, as if consent-check had found consent.
    inject_handoff(&forger, STORE_QUEUE, victim, SAMPLE_SSIN).await;
    // Another citizen's number on a genuine message, and an id nobody accepted.
    inject_handoff(&forger, CONSENT_CHECK_QUEUE, victim, OTHER_SSIN).await;
    let invented = MessageId::from_uuid(uuid::Uuid::new_v4());
    inject_handoff(&forger, STORE_QUEUE, invented, SAMPLE_SSIN).await;

    // Absence needs a barrier: a genuine message published after the forgeries goes through
    // every stage they were put on.
    app.grant_consent(SAMPLE_SSIN).await;
    let barrier = deliver(
        &mut sender,
        "ref-after",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    assert_eq!(
        status_of(&app, MessageId::from_uuid(barrier)).await,
        "published"
    );

    assert_eq!(status_of(&app, victim).await, "no-digital-user");
    assert_eq!(document_count(&app, victim).await, 0, "nothing was stored");
    assert_eq!(
        refusals(&app, "store", victim).await,
        ["consent-check has not recorded the citizen's consent"]
    );
    assert_eq!(
        refusals(&app, "consent-check", victim).await,
        ["the recipient is not the one intake recorded for this message"]
    );
    assert_eq!(
        refusals(&app, "store", invented).await,
        ["no message was accepted with this id"]
    );
    // The sender heard nothing about the victim after no-digital-user: the barrier's own
    // statuses came next (accepted and published were read by `deliver`).
    assert!(
        sender
            .next_status(std::time::Duration::from_millis(500))
            .await
            .is_err(),
        "no other status about the victim"
    );
}

async fn document_count(app: &TestApp, message_id: MessageId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM documents WHERE message_id = $1")
        .bind(message_id.as_uuid())
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_forged_read_document_event_makes_no_sender_hear_read() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let unread = deliver(
        &mut sender,
        "ref-unread",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let message_id = MessageId::from_uuid(unread);

    // The newDocument event, turned into a backdated readDocument for the unopened message.
    let mut event = newdocument_event(&app, message_id).await;
    event.event_data.event_type = domain::events::EventType::ReadDocument;
    event.event_time = event.event_data.receipt_date - chrono::Duration::days(3);
    let forger = app.forger().await;
    let body = serde_json::to_vec(&event).expect("JSON");
    inject(&forger, READ_RECEIPT_QUEUE, &body, &message_id.to_string()).await;

    // The barrier: the citizen really opens it; the first status the sender hears after
    // `published` is that genuine read, at the time the API recorded.
    let opened = open_main_content(&app, unread, &portal_citizen_token()).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let read = sender.next_status(WAIT).await.expect("the read status");
    assert_eq!(read.status, Status::Read, "{read:?}");
    let recorded: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT read_at FROM documents WHERE message_id = $1")
            .bind(unread)
            .fetch_one(&app.pool)
            .await
            .expect("the read mark");
    assert_eq!(read.read_at, Some(recorded));
    assert_eq!(
        refusals(&app, "read-receipt", message_id).await,
        ["the citizen has not opened this document"]
    );
}

/// The `newDocument` event store recorded, as notify would receive it.
async fn newdocument_event(app: &TestApp, message_id: MessageId) -> EventEnvelope {
    let mut conn = app.pool.acquire().await.expect("a connection");
    let document = records::documents::find(&mut conn, message_id)
        .await
        .expect("read")
        .expect("the document");
    let ssin = Ssin::parse(SAMPLE_SSIN).expect("a national number");
    let event_data = document
        .event_data(domain::events::EventType::NewDocument, &ssin)
        .expect("published");
    EventEnvelope {
        event_sequence_nbr: document.event_sequence_nbr.expect("a sequence number"),
        event_time: event_data.receipt_date,
        event_provider_id: app.settings.provider_id.clone(),
        event_data,
    }
}

#[tokio::test]
async fn a_new_document_event_that_differs_from_the_record_notifies_nobody() {
    let mut app = spawn_app_with(Options {
        workers: vec![Worker::Intake, Worker::ConsentCheck, Worker::Store],
        ..Options::default()
    })
    .await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let id = deliver(
        &mut sender,
        "ref-notify",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let message_id = MessageId::from_uuid(id);
    // Take the genuine event off notify's queue, and put an altered copy in its place.
    let genuine = app.drain(NOTIFY_QUEUE).await;
    assert_eq!(genuine.len(), 1);
    let mut altered: EventEnvelope = serde_json::from_slice(&genuine[0].data).expect("an event");
    altered.event_data.subject.nl = Some("Betaal nu via deze link".into());
    let forger = app.forger().await;
    let body = serde_json::to_vec(&altered).expect("JSON");
    inject(&forger, NOTIFY_QUEUE, &body, &message_id.to_string()).await;
    // The barrier: the genuine event, behind it on the same queue.
    inject(
        &forger,
        NOTIFY_QUEUE,
        &genuine[0].data,
        &message_id.to_string(),
    )
    .await;
    app.stop_workers().await;
    app.start_workers(&[Worker::Notify]).await;

    eventually("the genuine event to be decided", || async {
        let decided: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM stage_decisions WHERE message_id = $1 AND stage = 'notify'",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("count");
        decided == 1
    })
    .await;
    assert_eq!(
        refusals(&app, "notify", message_id).await,
        ["the event is not the newDocument event recorded for a published document"]
    );
    let notify: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE stage = 'notify' AND message_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("read the audit trail");
    assert_eq!(notify, ["refused", "notification-skipped"]);
}

#[tokio::test]
async fn a_read_mark_whose_event_was_lost_is_confirmed_by_the_recovery_pass() {
    let app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let id = deliver(
        &mut sender,
        "ref-lost-event",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    // The API committed the read mark two minutes ago and crashed before announcing it.
    let read_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "UPDATE documents SET read_at = date_trunc('milliseconds', now()) - interval '2 minutes'
          WHERE message_id = $1 RETURNING read_at",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("marked read");
    let signer = ebox::workers::proof_signer(&app.settings).expect("the signing key");
    let mut recovery = UnconfirmedReads::new(
        app.pool.clone(),
        app.settings.amqp_url.clone(),
        Arc::new(signer),
    );
    recovery.pass().await.expect("a pass");

    let read = sender.next_status(WAIT).await.expect("the read status");
    assert_eq!(read.status, Status::Read, "{read:?}");
    assert_eq!(read.read_at, Some(read_at));
    assert!(read.proof_of_reading.is_some());
    // Confirmed once: a second pass finds nothing left to confirm.
    recovery.pass().await.expect("a pass");
    let confirmed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'read-confirmed' AND message_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(confirmed, 1);
}
