//! Consent-check, store and notify: a consenting citizen gets the document exactly once, a
//! non-consenting one means paper.

use crate::helpers::*;
use chrono::{Duration as Span, Utc};
use consent_check::updates::{CONSENT_TYPE, PREFERENCES_TYPE};
use domain::citizen::{Channel, Consent, Preferences};
use domain::events::EventEnvelope;
use domain::ssin::Ssin;
use domain::status::{Status, StatusEvent};
use domain::translated::Language;
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use futures_util::StreamExt;
use intake::contract::TYPE_V2;
use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use queues::topology::{CONSENT_CHECK_QUEUE, EVENTS_EXCHANGE, STORE_QUEUE};
use records::citizens::{record_consent, record_preferences};
use serde_json::json;

/// A second valid national number (born 2001).
fn other_ssin() -> String {
    let base = 10_101_001u64;
    let check = 97 - (2_000_000_000 + base) % 97;
    format!("{base:09}{check:02}")
}

async fn consent(app: &TestApp, ssin: &str, consent: Consent, at: chrono::DateTime<Utc>) {
    let ssin = Ssin::parse(ssin).expect("valid");
    let mut tx = app.pool.begin().await.expect("tx");
    record_consent(&mut tx, &app.hasher, &ssin, consent, at, "test")
        .await
        .expect("recorded");
    tx.commit().await.expect("commit");
}

async fn prefer(app: &TestApp, ssin: &str, language: Language, channel: Channel) {
    let ssin = Ssin::parse(ssin).expect("valid");
    let mut tx = app.pool.begin().await.expect("tx");
    let preferences = Preferences { language, channel };
    record_preferences(&mut tx, &app.hasher, &ssin, &preferences, Utc::now())
        .await
        .expect("recorded");
    tx.commit().await.expect("commit");
}

fn email(address: &str) -> Channel {
    Channel::Email {
        email: address.to_owned(),
    }
}

fn kinds(statuses: &[StatusEvent]) -> Vec<Status> {
    statuses.iter().map(|s| s.status).collect()
}

async fn documents(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

/// A queue of the test's own on `ebox.events`, to look at what the event engine receives.
async fn watch_events(app: &TestApp) -> lapin::Consumer {
    let channel = app.service_channel().await;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    channel
        .queue_bind(
            queue.name().clone(),
            EVENTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume")
}

async fn next_event(events: &mut lapin::Consumer) -> (String, EventEnvelope) {
    let delivery = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event in time")
        .expect("open")
        .expect("delivery");
    (
        delivery.routing_key.to_string(),
        serde_json::from_slice(&delivery.data).expect("an event"),
    )
}

#[tokio::test]
async fn a_consenting_citizen_gets_the_document_stored_announced_and_one_email() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    consent(&app, SAMPLE_SSIN, Consent::Granted, Utc::now()).await;
    prefer(&app, SAMPLE_SSIN, Language::Fr, email("citoyen@example.be")).await;
    let mut events = watch_events(&app).await;
    let mut sender = app.sender().await;

    let statuses = journey(&mut sender, "ref-journey", SAMPLE_SSIN).await;
    assert_eq!(kinds(&statuses), [Status::Accepted, Status::Published]);
    let published = &statuses[1];
    assert_eq!(published.code, "PUBLISHED");
    assert_eq!(published.expiration_date, statuses[0].expiration_date);

    let (key, event) = next_event(&mut events).await;
    assert_eq!(key, "newDocument");
    assert_eq!(event.event_data.event_type, "newDocument");
    assert_eq!(event.event_data.recipient.ebox_type, "citizen");
    assert_eq!(event.event_data.recipient.ebox_id_value, SAMPLE_SSIN);
    assert_eq!(Some(event.event_data.message_id), published.message_id);
    assert_eq!(event.event_data.sender_organization_id, ORGANIZATION);
    assert_eq!(
        event.event_data.subject.de.as_deref(),
        Some("Ihre Bescheinigung")
    );
    assert!(event.event_sequence_nbr > 0);

    let (size, digest, content): (i64, Vec<u8>, Vec<u8>) = sqlx::query_as(
        "SELECT size, sha256, content FROM document_attachments WHERE message_id = $1",
    )
    .bind(published.message_id.map(|id| id.as_uuid()))
    .fetch_one(&app.pool)
    .await
    .expect("the document is stored");
    assert_eq!(content, ebox::demo::SAMPLE_PDF);
    assert_eq!(size as usize, ebox::demo::SAMPLE_PDF.len());
    assert_eq!(
        digest,
        domain::digest::Sha256Digest::of(ebox::demo::SAMPLE_PDF).as_bytes()
    );

    let mail = tokio::time::timeout(WAIT, app.mails.recv())
        .await
        .expect("an e-mail in time")
        .expect("mail");
    assert_eq!(mail.to, ["citoyen@example.be"]);
    assert!(
        mail.data
            .contains("Subject: Nouveau document dans votre eBox"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains(PORTAL), "the mail links to the portal");
    for secret in [
        "attest",
        "Votre attestation",
        "ONEM",
        ORGANIZATION,
        SAMPLE_SSIN,
        "PDF",
    ] {
        assert!(
            !mail.data.contains(secret),
            "the mail leaks {secret:?}: {}",
            mail.data
        );
    }
    eventually("the notification to be marked sent", || async {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM notifications")
            .fetch_optional(&app.pool)
            .await
            .expect("query");
        state.as_deref() == Some("sent")
    })
    .await;
    let actions: Vec<(String, String)> =
        sqlx::query_as("SELECT stage, action FROM audit_events WHERE message_id = $1 ORDER BY id")
            .bind(published.message_id.map(|id| id.as_uuid()))
            .fetch_all(&app.pool)
            .await
            .expect("audit");
    let actions: Vec<String> = actions
        .into_iter()
        .map(|(s, a)| format!("{s}:{a}"))
        .collect();
    assert_eq!(
        actions,
        [
            "intake:accepted",
            "consent-check:consented",
            "store:stored",
            "notify:notification-queued",
            "notify:notified"
        ]
    );
}

#[tokio::test]
async fn a_citizen_who_never_consented_means_paper() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    prefer(&app, SAMPLE_SSIN, Language::Nl, email("burger@example.be")).await;
    let mut sender = app.sender().await;
    let statuses = journey(&mut sender, "ref-paper", SAMPLE_SSIN).await;
    assert_eq!(kinds(&statuses), [Status::Accepted, Status::NoDigitalUser]);
    assert_eq!(statuses[1].code, "NO_DIGITAL_USER");
    assert_eq!(documents(&app).await, 0);
    let details: serde_json::Value = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE stage = 'consent-check' AND action = 'no-digital-user'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("audited");
    assert_eq!(details["consent"], "never");
    assert!(
        app.mails.try_recv().is_err(),
        "no notification for a message not delivered"
    );
}

#[tokio::test]
async fn a_withdrawn_consent_means_paper_and_a_new_grant_means_the_ebox_again() {
    let app = spawn_app_with(Options::pipeline()).await;
    let mut sender = app.sender().await;
    consent(
        &app,
        SAMPLE_SSIN,
        Consent::Granted,
        Utc::now() - Span::days(30),
    )
    .await;
    consent(
        &app,
        SAMPLE_SSIN,
        Consent::Withdrawn,
        Utc::now() - Span::days(1),
    )
    .await;
    let statuses = journey(&mut sender, "ref-withdrawn", SAMPLE_SSIN).await;
    assert_eq!(kinds(&statuses), [Status::Accepted, Status::NoDigitalUser]);
    let details: serde_json::Value = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE stage = 'consent-check' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .expect("audited");
    assert_eq!(details["consent"], "withdrawn");
    assert!(
        details["consentSince"].is_string(),
        "the audit says since when: {details}"
    );

    consent(&app, SAMPLE_SSIN, Consent::Granted, Utc::now()).await;
    let statuses = journey(&mut sender, "ref-granted-again", SAMPLE_SSIN).await;
    assert_eq!(kinds(&statuses), [Status::Accepted, Status::Published]);
    assert_eq!(documents(&app).await, 1);
}

#[tokio::test]
async fn consent_updates_from_the_portal_apply_by_their_time_not_their_arrival() {
    let app = spawn_app_with(Options::pipeline()).await;
    let portal = app.service_channel().await;
    portal
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let now = Utc::now();
    // Withdrawn today arrives first, granted last week arrives after it: still withdrawn.
    for (consent, at) in [("withdrawn", now), ("granted", now - Span::days(7))] {
        let body = json!({"ssin": SAMPLE_SSIN, "consent": consent, "at": at});
        portal_update(&portal, CONSENT_TYPE, &body).await;
    }
    eventually("both consent updates to be recorded", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM consent_changes")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        n == 2
    })
    .await;
    let mut sender = app.sender().await;
    let statuses = journey(&mut sender, "ref-out-of-order", SAMPLE_SSIN).await;
    assert_eq!(kinds(&statuses), [Status::Accepted, Status::NoDigitalUser]);

    // Preferences travel on the same queue.
    let body = json!({"ssin": SAMPLE_SSIN, "language": "de", "channel": "email", "email": "b@example.be", "at": now});
    portal_update(&portal, PREFERENCES_TYPE, &body).await;
    eventually("the preference to be recorded", || async {
        let language: Option<String> =
            sqlx::query_scalar("SELECT language FROM citizen_preferences")
                .fetch_optional(&app.pool)
                .await
                .expect("query");
        language.as_deref() == Some("de")
    })
    .await;
}

#[tokio::test]
async fn an_opted_out_citizen_gets_the_document_without_notification() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    consent(&app, SAMPLE_SSIN, Consent::Granted, Utc::now()).await;
    prefer(&app, SAMPLE_SSIN, Language::Nl, Channel::None).await;
    let mut sender = app.sender().await;
    let statuses = journey(&mut sender, "ref-opted-out", SAMPLE_SSIN).await;
    assert_eq!(kinds(&statuses), [Status::Accepted, Status::Published]);
    eventually("the notify stage to record its decision", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events WHERE stage = 'notify' AND action = 'notification-skipped'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        n == 1
    })
    .await;
    let reason: serde_json::Value =
        sqlx::query_scalar("SELECT details->'reason' FROM audit_events WHERE stage = 'notify'")
            .fetch_one(&app.pool)
            .await
            .expect("audited");
    assert_eq!(reason, "the citizen opted out of notifications");
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(sent, 0);
    assert!(app.mails.try_recv().is_err());
}

#[tokio::test]
async fn redelivery_at_every_stage_never_stores_or_notifies_twice() {
    // Only intake runs at first, so the internal message it forwards can be taken and sent
    // again, as the broker would after a crash between a stage's commit and its ack.
    let mut app = spawn_app().await;
    consent(&app, SAMPLE_SSIN, Consent::Granted, Utc::now()).await;
    prefer(&app, SAMPLE_SSIN, Language::Nl, email("een@example.be")).await;
    consent(&app, &other_ssin(), Consent::Granted, Utc::now()).await;
    prefer(&app, &other_ssin(), Language::Nl, email("twee@example.be")).await;
    let mut events = watch_events(&app).await;
    let mut sender = app.sender().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    let accepted = publish_and_wait(&mut sender, "ref-once", TYPE_V2, &body).await;
    let forwarded = app.drain(CONSENT_CHECK_QUEUE).await;
    assert_eq!(forwarded.len(), 1);
    let publication = forwarded[0].data.clone();

    let service = app.service_channel().await;
    service
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let hand_on = |queue: &'static str| {
        let (service, publication) = (&service, &publication);
        async move {
            service
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    publication,
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
        }
    };
    hand_on(CONSENT_CHECK_QUEUE).await;
    hand_on(CONSENT_CHECK_QUEUE).await;
    app.stop_workers().await;
    app.start_workers(&ebox::workers::Worker::ALL).await;
    // Store acts only on what consent-check recorded: its own redelivered copy comes after.
    eventually("consent-check to decide", || async {
        let decided: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM stage_decisions WHERE stage = 'consent-check'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        decided == 1
    })
    .await;
    hand_on(STORE_QUEUE).await;

    // Store sees the message three times: it stores it once and announces it each time.
    let mut event_ids = Vec::new();
    for _ in 0..3 {
        let status = sender.next_status(WAIT).await.expect("a status");
        assert_eq!(
            (status.status, status.message_id),
            (Status::Published, accepted.message_id)
        );
        let (_, event) = next_event(&mut events).await;
        event_ids.push((
            event.event_sequence_nbr,
            event.event_data.event_correlation_id,
        ));
    }
    assert!(
        event_ids.iter().all(|id| *id == event_ids[0]),
        "one event, repeated: {event_ids:?}"
    );
    assert_eq!(documents(&app).await, 1);

    // The notify stage saw three copies of the event. A later message for someone else goes
    // through the same queues: once its mail is here, every copy before it was handled.
    journey(&mut sender, "ref-later", &other_ssin()).await;
    let mut mails = Vec::new();
    while mails.len() < 2 {
        let mail = tokio::time::timeout(WAIT, app.mails.recv())
            .await
            .expect("mail in time")
            .expect("mail");
        let done = mail.to == ["twee@example.be"];
        mails.push(mail.to.join(","));
        if done {
            break;
        }
    }
    assert_eq!(mails, ["een@example.be", "twee@example.be"]);
    let decided: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE stage = 'consent-check'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(decided, 2, "one consent decision per message");
}

#[tokio::test]
async fn a_partner_webhook_is_signed_retried_after_a_500_and_keyed_against_repeats() {
    let (partner, mut calls) = start_webhook_endpoint("/hook").await;
    let secret = "partner-shared-secret";
    let app = spawn_app_with(Options {
        registry_extra: format!(
            "partners:\n  - id: mybox\n    name: {{nl: MyBox, fr: MyBox}}\n    webhookUrl: http://{partner}/hook\n    secretEnv: EBOX_PARTNER_MYBOX_SECRET\n"
        ),
        vars: vec![("EBOX_PARTNER_MYBOX_SECRET".to_owned(), secret.to_owned())],
        ..Options::pipeline()
    })
    .await;
    consent(&app, SAMPLE_SSIN, Consent::Granted, Utc::now()).await;
    prefer(
        &app,
        SAMPLE_SSIN,
        Language::Nl,
        Channel::Partner {
            partner_id: "mybox".into(),
        },
    )
    .await;
    let mut sender = app.sender().await;
    let statuses = journey(&mut sender, "ref-partner", SAMPLE_SSIN).await;
    assert_eq!(kinds(&statuses), [Status::Accepted, Status::Published]);

    let mut received = Vec::new();
    for _ in 0..2 {
        received.push(
            tokio::time::timeout(WAIT, calls.recv())
                .await
                .expect("a call in time")
                .expect("call"),
        );
    }
    assert_eq!(
        received[0].idempotency_key, received[1].idempotency_key,
        "a retry is recognisable"
    );
    for call in &received {
        assert_eq!(
            call.signature,
            expected_signature(secret, &call.timestamp, &call.body)
        );
        let event: EventEnvelope = serde_json::from_slice(&call.body).expect("the event");
        assert_eq!(event.event_data.event_type, "newDocument");
        assert_eq!(Some(event.event_data.message_id), statuses[1].message_id);
        assert_eq!(event.event_data.recipient.ebox_id_value, SAMPLE_SSIN);
    }
    assert_ne!(
        received[0].signature,
        expected_signature("another secret", &received[0].timestamp, &received[0].body)
    );
    eventually("the notification to be marked sent", || async {
        let row: Option<(String, i32)> =
            sqlx::query_as("SELECT state, attempts FROM notifications")
                .fetch_optional(&app.pool)
                .await
                .expect("query");
        row == Some(("sent".to_owned(), 2))
    })
    .await;
    assert!(
        calls.try_recv().is_err(),
        "nothing more once the partner said 200"
    );
}

#[tokio::test]
async fn an_expired_document_is_deleted_and_the_sender_hears_expired() {
    let app = spawn_app_with(Options {
        vars: vec![("EBOX_RETENTION_INTERVAL_SECONDS".to_owned(), "1".to_owned())],
        ..Options::pipeline()
    })
    .await;
    consent(&app, SAMPLE_SSIN, Consent::Granted, Utc::now()).await;
    let mut sender = app.sender().await;
    let kept = journey(&mut sender, "ref-kept", SAMPLE_SSIN).await;
    assert_eq!(kinds(&kept), [Status::Accepted, Status::Published]);

    let mut body = sample_v2(SAMPLE_SSIN, MESSAGE_TYPE);
    body["expirationDate"] = (Utc::now() + Span::seconds(3)).to_rfc3339().into();
    let body = serde_json::to_vec(&body).expect("JSON");
    sender
        .publish(sender.properties("ref-short", TYPE_V2), &body)
        .await
        .expect("published");
    let mut statuses = Vec::new();
    while statuses.last() != Some(&Status::Expired) {
        let status = sender.next_status(WAIT).await.expect("a status");
        assert_eq!(status.sender_reference.as_deref(), Some("ref-short"));
        statuses.push(status.status);
    }
    assert_eq!(
        statuses,
        [Status::Accepted, Status::Published, Status::Expired]
    );

    // The status goes out just before the deletion commits (so that it cannot be lost).
    eventually("the expired document to be deleted", || async {
        let left: Vec<String> = sqlx::query_scalar("SELECT sender_reference FROM documents")
            .fetch_all(&app.pool)
            .await
            .expect("query");
        left == ["ref-kept"]
    })
    .await;

    let attachments: i64 = sqlx::query_scalar("SELECT count(*) FROM document_attachments")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(attachments, 1, "its bytes went with it");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'deleted' AND sender_reference = 'ref-short'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(audited, 1);
    // Publishing the same reference again tells the sender where it stands: expired.
    let again = publish_and_wait(&mut sender, "ref-short", TYPE_V2, &body).await;
    assert_eq!(again.status, Status::Expired);
}
