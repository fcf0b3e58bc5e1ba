//! Withdrawing a message (`ebox.withdraw.v1`): a sender takes back what it published by
//! mistake. The citizen's API no longer knows it, its bytes are gone from the database, a
//! tombstone and the audit trail say who withdrew it, when and why; a repeat answers the same;
//! nobody withdraws another sender's message; a message still in the pipeline is never
//! published nor notified.

use crate::citizen_api::Api;
use crate::helpers::*;
use chrono::Utc;
use domain::citizen::Channel;
use domain::status::{Status, StatusEvent};
use ebox::demo::{SAMPLE_SSIN, SAMPLE_SSIN_NO_CONSENT, SenderClient, sample_v2};
use ebox::workers::Worker;
use intake::contract::{TYPE_V2, TYPE_WITHDRAW_V1};
use intake::withdraw::{WITHDRAWN_BEFORE_DELIVERY_MESSAGE, WITHDRAWN_MESSAGE};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const CITIZEN_MAIL: &str = "citoyen@example.be";

/// Asks to withdraw the message published as `reference`, and returns the answer.
async fn withdraw(sender: &mut SenderClient, reference: &str, reason: Option<&str>) -> StatusEvent {
    let mut body = json!({"senderReference": reference});
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    withdraw_raw(sender, reference, &body).await
}

/// Publishes `body` as a withdrawal and returns the answer.
async fn withdraw_raw(sender: &mut SenderClient, reference: &str, body: &Value) -> StatusEvent {
    let body = serde_json::to_vec(body).expect("JSON");
    publish_and_wait(
        sender,
        &format!("withdraw-{reference}"),
        TYPE_WITHDRAW_V1,
        &body,
    )
    .await
}

/// A message with a body and a payment request, so that each of its API resources exists
/// before the withdrawal.
fn full_message(ssin: &str) -> Value {
    let mut message = sample_v2(ssin, MESSAGE_TYPE);
    message["bodyContent"] = json!({"nl": "Beste, hierbij uw attest."});
    message["paymentData"] = json!({
        "paymentDataId": "pay-2026-001", "amount": 12.5, "vatAmount": 0, "currency": "EUR",
        "dueDate": "2030-01-31T23:59:59+01:00", "iban": "BE68539007547034"
    });
    message
}

/// How many rows of `table` are about the message `id` (its `message_id` column).
async fn rows_about(app: &TestApp, table: &str, id: Uuid) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE message_id = $1"
    )))
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("count")
}

/// The recorded status of the message sent as `reference` by the test's sender.
async fn recorded_status(app: &TestApp, reference: &str) -> String {
    sqlx::query_scalar("SELECT status FROM messages WHERE sender_id = $1 AND sender_reference = $2")
        .bind(&app.sender_id)
        .bind(reference)
        .fetch_one(&app.pool)
        .await
        .expect("the message's record")
}

#[tokio::test]
async fn a_withdrawn_message_leaves_the_citizens_ebox_and_only_its_tombstone_and_audit_remain() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let kept = deliver(
        &mut sender,
        "ref-kept",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let id = deliver(&mut sender, "ref-mistake", full_message(SAMPLE_SSIN)).await;
    let token = portal_citizen_token();
    let api = Api::of(&app);
    let paths = |id: Uuid, attachment: &str| {
        [
            format!("/ebox/messages/{id}"),
            format!("/ebox/messages/{id}/attachments"),
            format!("/ebox/messages/{id}/attachments/{attachment}"),
            format!("/ebox/messages/{id}/attachments/{attachment}/content"),
            format!("/ebox/messages/{id}/body"),
            format!("/ebox/messages/{id}/paymentData"),
        ]
    };
    let (_, attachments) = api
        .get(&format!("/ebox/messages/{id}/attachments"), Some(&token))
        .await;
    let attachment = attachments["items"][0]["attachmentId"]
        .as_str()
        .expect("an attachment id")
        .to_owned();
    for path in paths(id, &attachment) {
        let response = api.get_raw(&path, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} before");
    }
    // The citizen opened it (the GET of the content above): the sender heard `read`.
    let read = sender.next_status(WAIT).await.expect("read");
    assert_eq!(
        (read.status, read.message_id.map(|m| m.as_uuid())),
        (Status::Read, Some(id))
    );

    let withdrawn = withdraw(
        &mut sender,
        "ref-mistake",
        Some("addressed to the wrong citizen (85073003328)"),
    )
    .await;
    assert_eq!(withdrawn.status, Status::Withdrawn, "{withdrawn:?}");
    assert_eq!(withdrawn.code, "WITHDRAWN");
    assert_eq!(withdrawn.message, WITHDRAWN_MESSAGE);
    assert_eq!(withdrawn.sender_reference.as_deref(), Some("ref-mistake"));
    assert_eq!(withdrawn.message_id.map(|m| m.as_uuid()), Some(id));
    assert_eq!(
        withdrawn.read_at, read.read_at,
        "a withdrawal does not undo a reading"
    );
    assert_eq!(withdrawn.proof_of_reading, read.proof_of_reading);

    // The citizen's API knows only the message kept; the withdrawn one answers as one that
    // never existed.
    let (status, list) = api.get("/ebox/messages", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["totalItems"], 1, "{list}");
    assert_eq!(list["items"][0]["messageId"], kept.to_string());
    let (_, summary) = api.get("/ebox", Some(&token)).await;
    assert_eq!(summary["numberOfMessages"], 1, "{summary}");
    assert_eq!(summary["numberOfUnreadMessages"], 1, "{summary}");
    let (_, hidden) = api.get("/ebox/messages?visible=false", Some(&token)).await;
    assert_eq!(hidden["totalItems"], 0, "not among the hidden ones either");
    let nowhere = Uuid::new_v4();
    for (path, never) in paths(id, &attachment)
        .into_iter()
        .zip(paths(nowhere, &attachment))
    {
        // Each answer has an `id` of its own (the error's, for the logs): the rest is compared.
        let answer = |(status, mut body): (StatusCode, Value)| {
            body.as_object_mut().map(|b| b.remove("id"));
            (status, body)
        };
        let gone = answer(api.get(&path, Some(&token)).await);
        let absent = answer(api.get(&never, Some(&token)).await);
        assert_eq!(gone.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            gone, absent,
            "{path}: the same answer as a message that never existed"
        );
    }

    // Its bytes, metadata, events and reminders are gone from the database; the record and
    // the tombstone stay, without any content.
    for table in [
        "documents",
        "document_attachments",
        "event_outbox",
        "reminders",
    ] {
        assert_eq!(rows_about(&app, table, id).await, 0, "{table}");
    }
    assert_eq!(rows_about(&app, "documents", kept).await, 1);
    assert_eq!(recorded_status(&app, "ref-mistake").await, "withdrawn");
    let (withdrawn_by, reason, status_before, read_at, attachments): (
        String,
        Option<String>,
        String,
        Option<chrono::DateTime<Utc>>,
        Value,
    ) = sqlx::query_as(
        "SELECT withdrawn_by, reason, status_before, read_at, attachments
           FROM withdrawals WHERE message_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("the tombstone");
    assert_eq!(withdrawn_by, app.sender_id);
    assert_eq!(status_before, "read");
    assert_eq!(read_at, read.read_at);
    let reason = reason.expect("the reason");
    assert!(
        reason.starts_with("addressed to the wrong citizen"),
        "{reason}"
    );
    assert!(
        !reason.contains(SAMPLE_SSIN),
        "no national number kept: {reason}"
    );
    assert_eq!(
        attachments.as_array().map(Vec::len),
        Some(1),
        "{attachments}"
    );
    assert_eq!(
        attachments[0]["digest"]["digestValue"],
        domain::digest::Sha256Digest::of(ebox::demo::SAMPLE_PDF).to_base64url()
    );
    assert!(
        !attachments.to_string().contains("attest.pdf"),
        "no file name: {attachments}"
    );
    let audit = app.audit_actions("ref-mistake").await;
    assert_eq!(
        audit.last(),
        Some(&("withdrawn".to_owned(), Some("WITHDRAWN".to_owned()))),
        "{audit:?}"
    );
    let details: Value = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'withdrawn' AND message_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("the withdrawal's audit record");
    assert_eq!(details["statusBefore"], "read");
    assert_eq!(details["reason"], json!(reason));
}

#[tokio::test]
async fn withdrawing_twice_answers_withdrawn_again_and_does_nothing_more() {
    let app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let message = sample_v2(SAMPLE_SSIN, MESSAGE_TYPE);
    let id = deliver(&mut sender, "ref-1", message.clone()).await;
    let first = withdraw(&mut sender, "ref-1", Some("sent twice")).await;
    assert_eq!(first.status, Status::Withdrawn, "{first:?}");
    let again = withdraw(&mut sender, "ref-1", Some("another reason")).await;
    assert_eq!(again, first, "the same answer, to the instant");
    // Publishing the message itself again answers where it stands, and delivers nothing.
    let republished = publish_and_wait(
        &mut sender,
        "ref-1",
        TYPE_V2,
        &serde_json::to_vec(&message).expect("JSON"),
    )
    .await;
    assert_eq!(
        (
            republished.status,
            republished.message_id.map(|m| m.as_uuid())
        ),
        (Status::Withdrawn, Some(id))
    );
    assert_eq!(rows_about(&app, "withdrawals", id).await, 1);
    assert_eq!(rows_about(&app, "documents", id).await, 0);
    let reason: Option<String> =
        sqlx::query_scalar("SELECT reason FROM withdrawals WHERE message_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("the tombstone");
    assert_eq!(reason.as_deref(), Some("sent twice"), "the first one's");
    let audit = app.audit_actions("ref-1").await;
    let withdrawn = ("withdrawn".to_owned(), Some("WITHDRAWN".to_owned()));
    let duplicate = ("duplicate".to_owned(), Some("WITHDRAWN".to_owned()));
    assert_eq!(
        audit[audit.len() - 3..],
        [withdrawn, duplicate.clone(), duplicate],
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_sender_cannot_withdraw_another_senders_message_under_the_same_reference() {
    let app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let id = deliver(&mut sender, "ref-1", sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).await;
    let other_id = format!("inss-{}", app.id);
    let mut other = app.second_sender(&other_id, "").await;

    let refused = withdraw(&mut other, "ref-1", Some("not mine")).await;
    assert_eq!(refused.status, Status::Rejected, "{refused:?}");
    assert_eq!(refused.code, "UNKNOWN_REFERENCE");
    assert_eq!(refused.message_id, None);
    assert!(refused.message.contains("\"ref-1\""), "{}", refused.message);

    // Barrier: the owner publishes once more; intake answers in order, so had the other
    // sender's withdrawal touched ref-1, its owner would have heard of it first.
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    let next = publish_and_wait(&mut sender, "ref-2", TYPE_V2, &body).await;
    assert_eq!(
        (next.sender_reference.as_deref(), next.status),
        (Some("ref-2"), Status::Accepted),
        "the owner heard nothing of ref-1"
    );
    assert_eq!(recorded_status(&app, "ref-1").await, "published");
    assert_eq!(rows_about(&app, "documents", id).await, 1);
    assert_eq!(rows_about(&app, "document_attachments", id).await, 1);
    assert_eq!(rows_about(&app, "withdrawals", id).await, 0);
    let refusals: Vec<(String, Option<String>, Option<Uuid>)> = sqlx::query_as(
        "SELECT sender_id, code, message_id FROM audit_events WHERE action = 'withdrawal-refused'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the audit trail");
    assert_eq!(
        refusals,
        [(other_id, Some("UNKNOWN_REFERENCE".to_owned()), None)]
    );
}

#[tokio::test]
async fn withdrawals_of_nothing_are_refused_with_codes_naming_why_and_change_nothing() {
    let app = spawn_app_with(Options::pipeline()).await;
    let mut sender = app.sender().await;

    let unknown = withdraw(&mut sender, "never-sent", None).await;
    assert_eq!(
        (
            unknown.status,
            unknown.code.as_str(),
            unknown.sender_reference.as_deref(),
            unknown.message_id
        ),
        (
            Status::Rejected,
            "UNKNOWN_REFERENCE",
            Some("never-sent"),
            None
        ),
        "{unknown:?}"
    );

    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN_NO_CONSENT, MESSAGE_TYPE)).expect("JSON");
    let accepted = publish_and_wait(&mut sender, "ref-paper", TYPE_V2, &body).await;
    assert_eq!(accepted.status, Status::Accepted);
    let paper = sender.next_status(WAIT).await.expect("a status");
    assert_eq!(paper.status, Status::NoDigitalUser);
    let refused = withdraw(&mut sender, "ref-paper", None).await;
    assert_eq!(
        (refused.status, refused.code.as_str(), refused.message_id),
        (Status::Rejected, "NOTHING_TO_WITHDRAW", None),
        "{refused:?}"
    );
    assert!(
        refused.message.contains("no-digital-user"),
        "{}",
        refused.message
    );
    assert_eq!(recorded_status(&app, "ref-paper").await, "no-digital-user");

    for (body, field) in [
        (
            json!({"senderReference": "ref-paper", "reasons": "typo"}),
            "unknown field `reasons`",
        ),
        (
            json!({"reason": "no reference"}),
            "missing field `senderReference`",
        ),
        (
            json!({"senderReference": "ref paper"}),
            "senderReference must have",
        ),
        (
            json!({"senderReference": "ref-paper", "reason": "x".repeat(513)}),
            "reason has 513 characters",
        ),
    ] {
        let refused = withdraw_raw(&mut sender, "ref-paper", &body).await;
        assert_eq!(
            (refused.status, refused.code.as_str(), refused.message_id),
            (Status::Rejected, "INVALID_INPUT", None),
            "{body}"
        );
        assert!(
            refused.message.contains(field),
            "{body}: {}",
            refused.message
        );
    }
    assert_eq!(recorded_status(&app, "ref-paper").await, "no-digital-user");
    let refusals: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT code FROM audit_events WHERE action = 'withdrawal-refused' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the audit trail");
    let mut expected = vec![
        Some("UNKNOWN_REFERENCE".to_owned()),
        Some("NOTHING_TO_WITHDRAW".to_owned()),
    ];
    expected.extend(std::iter::repeat_n(Some("INVALID_INPUT".to_owned()), 4));
    assert_eq!(refusals, expected);
    let withdrawn: i64 = sqlx::query_scalar("SELECT count(*) FROM withdrawals")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(withdrawn, 0);
}

#[tokio::test]
async fn a_message_withdrawn_while_still_accepted_is_never_published_nor_notified() {
    // Intake alone: the message is accepted and waits for consent-check.
    let mut app = spawn_app().await;
    app.grant_consent_with(
        SAMPLE_SSIN,
        Channel::Email {
            email: CITIZEN_MAIL.to_owned(),
        },
    )
    .await;
    let mut sender = app.sender().await;
    let body = serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON");
    let accepted = publish_and_wait(&mut sender, "ref-early", TYPE_V2, &body).await;
    assert_eq!(accepted.status, Status::Accepted);
    let early = accepted.message_id.expect("an id").as_uuid();
    let withdrawn = withdraw(&mut sender, "ref-early", Some("wrong dossier")).await;
    assert_eq!(
        (withdrawn.status, withdrawn.message.as_str()),
        (Status::Withdrawn, WITHDRAWN_BEFORE_DELIVERY_MESSAGE),
        "{withdrawn:?}"
    );
    assert_eq!(rows_about(&app, "documents", early).await, 0);

    // The later stages start, with the early message's hand-off waiting for them.
    app.stop_workers().await;
    app.start_workers(&Worker::ALL).await;
    // Barrier: a later message for the same citizen goes all the way, and its e-mail arrives.
    let later = publish_and_wait(&mut sender, "ref-later", TYPE_V2, &body).await;
    assert_eq!(
        (later.sender_reference.as_deref(), later.status),
        (Some("ref-later"), Status::Accepted)
    );
    let published = sender.next_status(WAIT).await.expect("a status");
    assert_eq!(
        (published.sender_reference.as_deref(), published.status),
        (Some("ref-later"), Status::Published),
        "nothing is said of ref-early after its withdrawal"
    );
    let later_id = later.message_id.expect("an id").as_uuid();
    let mail = tokio::time::timeout(WAIT, app.mails.recv())
        .await
        .expect("the later message's e-mail in time")
        .expect("mail");
    let key = |id: Uuid| Uuid::new_v5(&id, b"notify/email").to_string();
    assert!(mail.data.contains(&key(later_id)), "{}", mail.data);
    assert!(!mail.data.contains(&key(early)), "{}", mail.data);

    assert_eq!(recorded_status(&app, "ref-early").await, "withdrawn");
    for table in [
        "documents",
        "stage_decisions",
        "notifications",
        "event_outbox",
    ] {
        assert_eq!(rows_about(&app, table, early).await, 0, "{table}");
    }
    assert_eq!(rows_about(&app, "notifications", later_id).await, 1);
    let stopped: Vec<(String, String)> =
        sqlx::query_as("SELECT stage, action FROM audit_events WHERE message_id = $1 ORDER BY id")
            .bind(early)
            .fetch_all(&app.pool)
            .await
            .expect("the audit trail");
    let step = |stage: &str, action: &str| (stage.to_owned(), action.to_owned());
    assert_eq!(
        stopped,
        [
            step("intake", "accepted"),
            step("intake", "withdrawn"),
            step("consent-check", "halted"),
        ]
    );
    let status_before: String =
        sqlx::query_scalar("SELECT status_before FROM withdrawals WHERE message_id = $1")
            .bind(early)
            .fetch_one(&app.pool)
            .await
            .expect("the tombstone");
    assert_eq!(status_before, "accepted");
    assert!(app.mails.try_recv().is_err(), "no second e-mail");
}

/// An SMTP URL nothing listens on: every send fails at once (connection refused).
async fn unreachable_relay() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("smtp://127.0.0.1:{port}")
}

#[tokio::test]
async fn a_withdrawn_messages_unsent_notifications_are_cancelled_and_its_reminders_never_fire() {
    // The relay is down: the notification of a published message waits in the outbox.
    let mut app = spawn_app_with(Options {
        vars: vec![("EBOX_SMTP_URL".to_owned(), unreachable_relay().await)],
        ..Options::pipeline()
    })
    .await;
    app.grant_consent_with(
        SAMPLE_SSIN,
        Channel::Email {
            email: CITIZEN_MAIL.to_owned(),
        },
    )
    .await;
    let mut sender = app.sender().await;
    let mistake = deliver(
        &mut sender,
        "ref-mistake",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let kept = deliver(
        &mut sender,
        "ref-kept",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let pool = app.pool.clone();
    let state = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, Value)>(
                "SELECT state, payload FROM notifications WHERE message_id = $1",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .expect("the notification")
        }
    };
    for id in [mistake, kept] {
        eventually("the notification to be queued", || async {
            state(id).await.is_some()
        })
        .await;
    }

    let withdrawn = withdraw(&mut sender, "ref-mistake", None).await;
    assert_eq!(withdrawn.status, Status::Withdrawn, "{withdrawn:?}");
    assert_eq!(
        state(mistake).await,
        Some(("cancelled".to_owned(), json!({})))
    );
    let cancelled: i32 =
        sqlx::query_scalar("SELECT notifications_cancelled FROM withdrawals WHERE message_id = $1")
            .bind(mistake)
            .fetch_one(&app.pool)
            .await
            .expect("the tombstone");
    assert_eq!(cancelled, 1);

    // Two days on, with reminders due after a day, only the message kept gets one.
    let job = notify::reminders::Reminders::new(
        app.pool.clone(),
        app.hasher.clone(),
        app.settings.provider_id.clone(),
        notify::reminders::Periods {
            reminder_after: std::time::Duration::from_secs(86_400),
            alert_before: std::time::Duration::from_secs(86_400),
        },
    );
    let fired = job
        .pass_at(Utc::now() + chrono::TimeDelta::days(2))
        .await
        .expect("a pass");
    assert_eq!((fired.reminders, fired.alerts), (1, 0));
    assert_eq!(rows_about(&app, "reminders", mistake).await, 0);
    assert_eq!(rows_about(&app, "reminders", kept).await, 1);

    // The relay is back: the message kept is announced and reminded; the withdrawn one never.
    let (addr, mut mails) = ebox::smtp_sink::start("127.0.0.1:0")
        .await
        .expect("SMTP sink listens");
    app.stop_workers().await;
    app.settings.smtp_url = Some(format!("smtp://{addr}"));
    app.start_workers(&Worker::ALL).await;
    let keys = |id: Uuid| {
        [
            Uuid::new_v5(&id, b"notify/email").to_string(),
            Uuid::new_v5(&id, b"notify/email/newDocumentReminder").to_string(),
        ]
    };
    let mut expected = keys(kept).to_vec();
    while !expected.is_empty() {
        // Queued with back-off while the relay was down: make them due now.
        ebox::notifications::retry(&app.pool, notify::outbox::Requeue::Waiting, None)
            .await
            .expect("retry");
        let mail = tokio::time::timeout(WAIT, mails.recv())
            .await
            .expect("the kept message's e-mails in time")
            .expect("mail");
        for key in keys(mistake) {
            assert!(!mail.data.contains(&key), "{}", mail.data);
        }
        expected.retain(|key| !mail.data.contains(key.as_str()));
    }
    assert_eq!(
        state(mistake).await.map(|(state, _)| state).as_deref(),
        Some("cancelled")
    );
}
