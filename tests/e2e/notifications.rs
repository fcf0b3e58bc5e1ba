//! Notifications outlast an outage: a failed send is retried for the retry window
//! (`EBOX_NOTIFY_RETRY_FOR`, 72 h by default) however many attempts that takes, and abandoned
//! only after it; `ebox notifications retry` sends what waits at once and queues abandoned
//! notifications again, and the citizen hears once.
//!
//! Nobody waits 72 hours: the window is computed in SQL from a row's `retry_from`, which a test
//! moves back, and a test sets `attempts` to reach the back-off's cap at once.

use crate::helpers::*;
use chrono::{DateTime, Utc};
use domain::citizen::Channel;
use domain::events::EventEnvelope;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v2};
use ebox::notifications::{Retried, retry};
use ebox::smtp_sink::Mail;
use ebox::workers::Worker;
use intake::contract::TYPE_V2;
use notify::outbox::Requeue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

const CITIZEN_MAIL: &str = "citoyen@example.be";

/// A second valid national number (born 2001).
fn other_ssin() -> String {
    let base = 10_101_001u64;
    let check = 97 - (2_000_000_000 + base) % 97;
    format!("{base:09}{check:02}")
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

async fn app_with_relay_down() -> TestApp {
    spawn_app_with(Options {
        vars: vec![("EBOX_SMTP_URL".to_owned(), unreachable_relay().await)],
        ..Options::pipeline()
    })
    .await
}

/// The relay is back: a working SMTP server, which the workers, restarted, send through.
async fn relay_back(app: &mut TestApp) -> mpsc::UnboundedReceiver<Mail> {
    let (addr, mails) = ebox::smtp_sink::start("127.0.0.1:0")
        .await
        .expect("SMTP sink listens");
    app.stop_workers().await;
    app.settings.smtp_url = Some(format!("smtp://{addr}"));
    app.start_workers(&Worker::ALL).await;
    mails
}

fn email(address: &str) -> Channel {
    Channel::Email {
        email: address.to_owned(),
    }
}

/// Publishes a message for `ssin` and waits until it is in the citizen's eBox.
async fn deliver(sender: &mut SenderClient, reference: &str, ssin: &str) {
    let body = serde_json::to_vec(&sample_v2(ssin, MESSAGE_TYPE)).expect("JSON");
    sender
        .publish(sender.properties(reference, TYPE_V2), &body)
        .await
        .expect("published");
    loop {
        let status = sender.next_status(WAIT).await.expect("a status");
        assert_eq!(status.sender_reference.as_deref(), Some(reference));
        match status.status {
            Status::Accepted => continue,
            Status::Published => return,
            other => panic!("{reference} ended {other:?}"),
        }
    }
}

/// The notification row of the message sent as `reference`.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    state: String,
    attempts: i32,
    last_error: Option<String>,
    /// Seconds from now until the next attempt.
    next_attempt_in: f64,
    created_at: DateTime<Utc>,
    payload: serde_json::Value,
}

async fn row(app: &TestApp, reference: &str) -> Option<Row> {
    sqlx::query_as(
        "SELECT n.state, n.attempts, n.last_error, n.created_at, n.payload,
                extract(epoch FROM n.next_attempt_at - now())::float8 AS next_attempt_in
           FROM notifications n JOIN messages m ON m.id = n.message_id
          WHERE m.sender_reference = $1",
    )
    .bind(reference)
    .fetch_optional(&app.pool)
    .await
    .expect("read the notification")
}

/// Waits until `check` holds for the notification of `reference`; returns the row then.
async fn notification_when(
    app: &TestApp,
    reference: &str,
    what: &str,
    check: fn(&Row) -> bool,
) -> Row {
    eventually(what, || async {
        row(app, reference).await.as_ref().is_some_and(check)
    })
    .await;
    row(app, reference).await.expect("the notification")
}

/// Runs `sql` on the notification of `reference` (moving its clock, as time would).
async fn alter(app: &TestApp, reference: &str, sql: &str) {
    let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications SET {sql}
          WHERE message_id = (SELECT id FROM messages WHERE sender_reference = $1)"
    )))
    .bind(reference)
    .execute(&app.pool)
    .await
    .expect("update the notification");
    assert_eq!(updated.rows_affected(), 1);
}

/// Makes the notification fail for good: its window closed 72 h after it opened, and its
/// next attempt (which fails, the relay being down) abandons it.
async fn abandoned(app: &TestApp, reference: &str) -> Row {
    notification_when(app, reference, "a first failed attempt", |n| {
        n.last_error.is_some()
    })
    .await;
    alter(
        app,
        reference,
        "retry_from = now() - interval '72 hours 1 minute', next_attempt_at = now()",
    )
    .await;
    notification_when(app, reference, "the notification to be abandoned", |n| {
        n.state != "pending"
    })
    .await
}

/// `stage:action` of every audit record about the message sent as `reference`.
async fn notify_audit(app: &TestApp, reference: &str) -> Vec<String> {
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT a.action FROM audit_events a JOIN messages m ON m.id = a.message_id
          WHERE m.sender_reference = $1 AND a.stage = 'notify' ORDER BY a.id",
    )
    .bind(reference)
    .fetch_all(&app.pool)
    .await
    .expect("read the audit trail");
    actions
}

async fn next_mail(mails: &mut mpsc::UnboundedReceiver<Mail>) -> Mail {
    tokio::time::timeout(WAIT, mails.recv())
        .await
        .expect("an e-mail in time")
        .expect("mail")
}

#[tokio::test]
async fn a_notification_is_retried_past_many_failures_within_its_window_and_abandoned_after_it() {
    let app = app_with_relay_down().await;
    app.grant_consent_with(SAMPLE_SSIN, email(CITIZEN_MAIL))
        .await;
    let mut sender = app.sender().await;
    deliver(&mut sender, "ref-outage", SAMPLE_SSIN).await;
    notification_when(&app, "ref-outage", "a first failed attempt", |n| {
        n.last_error.is_some()
    })
    .await;

    // Fifty attempts so far (hours of outage): the next one fails too, and still the
    // notification waits for the next, capped back-off.
    alter(&app, "ref-outage", "attempts = 50, next_attempt_at = now()").await;
    let waiting = notification_when(&app, "ref-outage", "the 51st attempt to settle", |n| {
        n.attempts > 50 && (n.state != "pending" || n.next_attempt_in > 300.0)
    })
    .await;
    assert_eq!(waiting.state, "pending", "{waiting:?}");
    assert_eq!(waiting.attempts, 51);
    let cap = notify::dispatcher::MAX_RETRY_DELAY.as_secs_f64();
    assert!(
        waiting.next_attempt_in > cap - 60.0 && waiting.next_attempt_in <= cap,
        "the next attempt waits the capped back-off: {waiting:?}"
    );
    assert!(
        !notify_audit(&app, "ref-outage")
            .await
            .contains(&"notification-failed".to_owned())
    );

    // The window (72 h by default) closed a minute ago: the next failure abandons it.
    alter(
        &app,
        "ref-outage",
        "retry_from = now() - interval '72 hours 1 minute', next_attempt_at = now()",
    )
    .await;
    let abandoned = notification_when(&app, "ref-outage", "the notification to settle", |n| {
        n.attempts > 51 && n.state != "pending"
    })
    .await;
    assert_eq!(abandoned.state, "failed", "{abandoned:?}");
    assert_eq!(abandoned.attempts, 52);
    assert!(abandoned.last_error.is_some());
    assert_eq!(
        notify_audit(&app, "ref-outage").await,
        ["notification-queued", "notification-failed"]
    );
}

#[tokio::test]
async fn an_abandoned_notification_queued_again_reaches_the_citizen_once_when_the_relay_is_back() {
    let mut app = app_with_relay_down().await;
    app.grant_consent_with(SAMPLE_SSIN, email(CITIZEN_MAIL))
        .await;
    app.grant_consent_with(&other_ssin(), email("burger@example.be"))
        .await;
    let mut sender = app.sender().await;
    deliver(&mut sender, "ref-abandoned", SAMPLE_SSIN).await;
    let failed = abandoned(&app, "ref-abandoned").await;
    assert_eq!(failed.state, "failed");
    let mut mails = relay_back(&mut app).await;

    // Hurrying pending notifications leaves abandoned ones alone, and --since filters by
    // creation time.
    let none = Retried {
        requeued: 0,
        unsendable: 0,
        status_callbacks: 0,
    };
    assert_eq!(
        retry(&app.pool, Requeue::Waiting, None)
            .await
            .expect("retry"),
        none
    );
    let later = failed.created_at + chrono::Duration::milliseconds(1);
    assert_eq!(
        retry(&app.pool, Requeue::Abandoned, Some(later))
            .await
            .expect("retry --failed --since"),
        none
    );
    assert_eq!(
        row(&app, "ref-abandoned").await.expect("row").state,
        "failed"
    );

    let retried = retry(&app.pool, Requeue::Abandoned, Some(failed.created_at))
        .await
        .expect("retry --failed --since");
    assert_eq!(retried.requeued, 1);

    let mail = next_mail(&mut mails).await;
    assert_eq!(mail.to, [CITIZEN_MAIL]);
    let sent = notification_when(&app, "ref-abandoned", "the notification to be sent", |n| {
        n.state != "pending"
    })
    .await;
    assert_eq!(sent.state, "sent", "{sent:?}");
    assert_eq!(sent.attempts, failed.attempts + 1);
    assert_eq!(
        notify_audit(&app, "ref-abandoned").await,
        [
            "notification-queued",
            "notification-failed",
            "notification-requeued",
            "notified"
        ]
    );
    let requeued: serde_json::Value = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'notification-requeued'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the re-queue's audit");
    assert_eq!(requeued["from"], "failed");
    assert_eq!(requeued["channel"], "email");

    // Once: a later message's mail comes next, and nothing is left to queue again.
    deliver(&mut sender, "ref-later", &other_ssin()).await;
    assert_eq!(next_mail(&mut mails).await.to, ["burger@example.be"]);
    assert_eq!(
        retry(&app.pool, Requeue::Abandoned, None)
            .await
            .expect("retry --failed"),
        none
    );
}

#[tokio::test]
async fn a_notification_waiting_out_its_back_off_is_sent_at_once_when_told_the_relay_is_back() {
    let mut app = app_with_relay_down().await;
    app.grant_consent_with(SAMPLE_SSIN, email(CITIZEN_MAIL))
        .await;
    let mut sender = app.sender().await;
    deliver(&mut sender, "ref-waiting", SAMPLE_SSIN).await;
    notification_when(&app, "ref-waiting", "a first failed attempt", |n| {
        n.last_error.is_some()
    })
    .await;
    alter(
        &app,
        "ref-waiting",
        "attempts = 50, next_attempt_at = now()",
    )
    .await;
    notification_when(&app, "ref-waiting", "a 15-minute back-off", |n| {
        n.attempts > 50 && (n.state != "pending" || n.next_attempt_in > 300.0)
    })
    .await;
    let mut mails = relay_back(&mut app).await;

    let retried = retry(&app.pool, Requeue::Waiting, None)
        .await
        .expect("retry");
    assert_eq!(retried.requeued, 1);
    assert_eq!(next_mail(&mut mails).await.to, [CITIZEN_MAIL]);
    let sent = notification_when(&app, "ref-waiting", "the notification to be sent", |n| {
        n.state != "pending"
    })
    .await;
    assert_eq!((sent.state.as_str(), sent.attempts), ("sent", 52));
    let requeued: serde_json::Value = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'notification-requeued'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the re-queue's audit");
    assert_eq!(requeued["from"], "pending");
}

/// One call the partner's server received, and whether it answered 200.
struct PartnerCall {
    idempotency_key: String,
    accepted: bool,
    body: Vec<u8>,
}

/// A partner's server on loopback: answers 503 until `up` is set, then 200.
async fn start_partner(
    up: Arc<AtomicBool>,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<PartnerCall>) {
    use axum::http::{HeaderMap, StatusCode};
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, up) = (tx.clone(), up.clone());
            async move {
                let accepted = up.load(Ordering::SeqCst);
                let _ = tx.send(PartnerCall {
                    idempotency_key: headers
                        .get(notify::webhook::IDEMPOTENCY_KEY)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    accepted,
                    body: body.to_vec(),
                });
                if accepted {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

#[tokio::test]
async fn an_abandoned_partner_notification_keeps_its_event_until_it_is_queued_again_and_sent() {
    let up = Arc::new(AtomicBool::new(false));
    let (partner, mut calls) = start_partner(up.clone()).await;
    let app = spawn_app_with(Options {
        registry_extra: format!(
            "partners:\n  - id: mybox\n    name: {{nl: MyBox, fr: MyBox}}\n    webhookUrl: http://{partner}/hook\n    secretEnv: EBOX_PARTNER_MYBOX_SECRET\n"
        ),
        vars: vec![(
            "EBOX_PARTNER_MYBOX_SECRET".to_owned(),
            "partner-shared-secret".to_owned(),
        )],
        ..Options::pipeline()
    })
    .await;
    let mybox = Channel::Partner {
        partner_id: "mybox".into(),
    };
    app.grant_consent_with(SAMPLE_SSIN, mybox).await;
    let mut sender = app.sender().await;
    deliver(&mut sender, "ref-partner", SAMPLE_SSIN).await;

    let failed = abandoned(&app, "ref-partner").await;
    assert_eq!(failed.state, "failed");
    let kept: EventEnvelope =
        serde_json::from_value(failed.payload).expect("the event is kept when abandoned");
    assert_eq!(kept.event_data.recipient.ebox_id_value, SAMPLE_SSIN);

    up.store(true, Ordering::SeqCst);
    let retried = retry(&app.pool, Requeue::Abandoned, None)
        .await
        .expect("retry --failed");
    assert_eq!(retried.requeued, 1);
    let mut keys = Vec::new();
    let delivered = loop {
        let call = tokio::time::timeout(WAIT, calls.recv())
            .await
            .expect("a call in time")
            .expect("call");
        keys.push(call.idempotency_key.clone());
        if call.accepted {
            break call;
        }
    };
    let event: EventEnvelope = serde_json::from_slice(&delivered.body).expect("the event");
    assert_eq!(event.event_data.message_id, kept.event_data.message_id);
    assert_eq!(event.event_data.recipient.ebox_id_value, SAMPLE_SSIN);
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one key throughout: {keys:?}"
    );

    let sent = notification_when(&app, "ref-partner", "the notification to be sent", |n| {
        n.state != "pending"
    })
    .await;
    assert_eq!(sent.state, "sent");
    assert_eq!(
        sent.payload,
        serde_json::json!({}),
        "the number is erased once sent"
    );
    assert!(
        calls.try_recv().is_err(),
        "nothing more once the partner said 200"
    );
}
