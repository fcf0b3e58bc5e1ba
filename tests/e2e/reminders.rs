//! Reminders and expiry alerts: a document still unread 15 days after its receipt gets a
//! `newDocumentReminder`, and one still unread 7 days before its expiration a
//! `documentExpirationAlert` — each once, in the events outbox (so the relay and the feed carry
//! it), on the citizen's channel unless they opted out, and in the audit trail.
//!
//! Nobody waits 15 days: the tests run the job's pass at a moment of their choosing
//! (`Reminders::pass_at`), the workers of the pipeline running beside it with the real clock
//! (whose own job finds nothing due). "Not before" is a pass one second early that leaves
//! nothing behind in the database — the barrier — rather than a wait for a mail that does not
//! come.

use crate::citizen_api::citizen_token;
use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use domain::citizen::Channel;
use domain::events::{EventEnvelope, EventType};
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use ebox::smtp_sink::Mail;
use ebox::workers::Worker;
use notify::reminders::{Fired, Periods, Reminders};
use std::time::Duration;
use uuid::Uuid;

const CITIZEN_MAIL: &str = "citoyen@example.be";
const DAY: TimeDelta = TimeDelta::days(1);

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}
const SECOND: TimeDelta = TimeDelta::seconds(1);

fn email() -> Channel {
    Channel::Email {
        email: CITIZEN_MAIL.to_owned(),
    }
}

/// The reminders job of this test's database, with the periods of the settings.
fn job(app: &TestApp) -> Reminders {
    job_with(
        app,
        Periods {
            reminder_after: app.settings.reminder_after,
            alert_before: app.settings.expiration_alert_before,
        },
    )
}

fn job_with(app: &TestApp, periods: Periods) -> Reminders {
    Reminders::new(
        app.pool.clone(),
        app.hasher.clone(),
        app.settings.provider_id.clone(),
        periods,
    )
}

/// Publishes a document for the sample citizen; returns its id, receipt and expiration dates.
async fn published(app: &TestApp, reference: &str) -> (Uuid, DateTime<Utc>, DateTime<Utc>) {
    let mut sender = app.sender().await;
    let id = deliver(&mut sender, reference, sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).await;
    let (receipt, expiration) =
        sqlx::query_as("SELECT receipt_date, expiration_date FROM documents WHERE message_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("the document");
    (id, receipt, expiration)
}

async fn next_mail(app: &mut TestApp) -> Mail {
    tokio::time::timeout(WAIT, app.mails.recv())
        .await
        .expect("an e-mail in time")
        .expect("mail")
}

fn subject(mail: &Mail) -> &str {
    mail.data
        .lines()
        .find_map(|line| line.strip_prefix("Subject: "))
        .unwrap_or_default()
}

/// The events recorded in the outbox about `id`, by type, in order.
async fn events(app: &TestApp, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM event_outbox WHERE message_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .expect("the events outbox")
}

/// `kind:channel` of every `reminders` row of `id`.
async fn reminders(app: &TestApp, id: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT kind || ':' || channel FROM reminders WHERE message_id = $1 ORDER BY kind",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("the reminders")
}

/// `kind:channel` of every notification of `id`.
async fn notifications(app: &TestApp, id: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT kind || ':' || channel FROM notifications WHERE message_id = $1 ORDER BY created_at, kind",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("the notifications")
}

/// `action` and `details` of the reminders' audit records about `id`.
async fn audited(app: &TestApp, id: Uuid) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as(
        "SELECT action, details FROM audit_events
          WHERE message_id = $1 AND action IN ('reminder-recorded', 'expiration-alert-recorded')
          ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("the audit trail")
}

async fn pass(job: &Reminders, at: DateTime<Utc>) -> Fired {
    job.pass_at(at).await.expect("a pass")
}

#[tokio::test]
async fn a_reminder_fires_once_fifteen_days_after_receipt_and_not_a_second_before() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent_with(SAMPLE_SSIN, email()).await;
    let (id, receipt, _) = published(&app, "ref-reminder").await;
    assert!(subject(&next_mail(&mut app).await).starts_with("Nouveau document"));
    let job = job(&app);

    let early = pass(&job, receipt + days(15) - SECOND).await;
    assert_eq!(early, Fired::default());
    assert!(reminders(&app, id).await.is_empty());
    assert_eq!(events(&app, id).await, ["newDocument"]);
    assert_eq!(notifications(&app, id).await, ["newDocument:email"]);

    let due = pass(&job, receipt + days(15)).await;
    assert_eq!(due.reminders, 1, "{due:?}");
    assert_eq!(due.alerts, 0, "{due:?}");
    assert_eq!(reminders(&app, id).await, ["newDocumentReminder:email"]);
    assert_eq!(
        events(&app, id).await,
        ["newDocument", "newDocumentReminder"]
    );
    let mail = next_mail(&mut app).await;
    assert_eq!(mail.to, [CITIZEN_MAIL]);
    assert!(subject(&mail).starts_with("Rappel"), "{}", mail.data);
    assert!(mail.data.contains("rappel"), "{}", mail.data);
    assert!(mail.data.contains(PORTAL));
    for secret in ["Votre attestation", "ONEM", ORGANIZATION, SAMPLE_SSIN] {
        assert!(!mail.data.contains(secret), "{secret} in {}", mail.data);
    }

    // The feed serves it after newDocument, naming the citizen and the document.
    let mut conn = app.pool.acquire().await.expect("a connection");
    records::events::number_committed(&mut conn, 100)
        .await
        .expect("numbered");
    let page = records::events::page(&mut conn, 0, None, 10)
        .await
        .expect("a page");
    let kinds: Vec<EventType> = page.items.iter().map(|i| i.event_data.event_type).collect();
    assert_eq!(
        kinds,
        [EventType::NewDocument, EventType::NewDocumentReminder]
    );
    let reminder = &page.items[1];
    assert_eq!(reminder.event_time, receipt + days(15));
    assert_eq!(reminder.event_data.ssin.expose(), SAMPLE_SSIN);
    assert_eq!(reminder.event_data.message_id.as_uuid(), id);
    assert_eq!(
        reminder.event_data.event_correlation_id,
        domain::events::correlation_id(
            EventType::NewDocumentReminder,
            reminder.event_data.message_id
        )
    );
    drop(conn);

    let audit = audited(&app, id).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].0, "reminder-recorded");
    assert_eq!(audit[0].1["channel"], "email");
    assert_eq!(audit[0].1["notification"], "queued");
    assert!(!audit[0].1.to_string().contains(SAMPLE_SSIN));

    // Once: later passes find nothing more to do.
    assert_eq!(pass(&job, receipt + days(16)).await, Fired::default());
    assert_eq!(pass(&job, receipt + days(30)).await, Fired::default());
    assert_eq!(
        events(&app, id).await,
        ["newDocument", "newDocumentReminder"]
    );
    eventually("the reminder to be sent", || async {
        notification_states(&app, id).await == ["sent", "sent"]
    })
    .await;
    assert!(app.mails.try_recv().is_err(), "one reminder e-mail only");
}

async fn notification_states(app: &TestApp, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT state FROM notifications WHERE message_id = $1 ORDER BY kind")
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .expect("the notifications")
}

#[tokio::test]
async fn an_expiration_alert_fires_once_seven_days_before_expiry_and_no_reminder_follows() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent_with(SAMPLE_SSIN, email()).await;
    let (id, receipt, expiration) = published(&app, "ref-alert").await;
    next_mail(&mut app).await;
    // Reminders 360 days after receipt: the alert, a week before expiry (a year after
    // receipt), comes first.
    let job = job_with(
        &app,
        Periods {
            reminder_after: Duration::from_secs(360 * 86_400),
            alert_before: app.settings.expiration_alert_before,
        },
    );

    assert_eq!(
        pass(&job, expiration - days(7) - SECOND).await,
        Fired::default()
    );
    assert!(reminders(&app, id).await.is_empty());
    assert_eq!(events(&app, id).await, ["newDocument"]);

    let due = pass(&job, expiration - days(7)).await;
    assert_eq!((due.alerts, due.reminders), (1, 0), "{due:?}");
    assert_eq!(reminders(&app, id).await, ["documentExpirationAlert:email"]);
    assert_eq!(
        events(&app, id).await,
        ["newDocument", "documentExpirationAlert"]
    );
    let mail = next_mail(&mut app).await;
    assert!(subject(&mail).starts_with("Attention"), "{}", mail.data);
    assert!(mail.data.contains("expire"), "{}", mail.data);
    let audit = audited(&app, id).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].0, "expiration-alert-recorded");

    // The reminder falls due 360 days after receipt, still before expiry: the alert said it.
    let later = receipt + days(360);
    assert!(later > expiration - days(7) && later < expiration);
    assert_eq!(pass(&job, later).await, Fired::default());
    assert_eq!(pass(&job, expiration - SECOND).await, Fired::default());
    assert_eq!(reminders(&app, id).await, ["documentExpirationAlert:email"]);
    // Past its expiration, a document gets nothing (retention deletes it).
    assert_eq!(pass(&job, expiration + DAY).await, Fired::default());
}

#[tokio::test]
async fn a_document_the_citizen_read_gets_neither_reminder_nor_alert() {
    let mut app = spawn_app_with(Options::with_api()).await;
    app.grant_consent_with(SAMPLE_SSIN, email()).await;
    let (id, receipt, expiration) = published(&app, "ref-read").await;
    next_mail(&mut app).await;
    let opened = open_main_content(&app, id, &citizen_token(SAMPLE_SSIN)).await;
    assert!(opened.status().is_success(), "{}", opened.status());
    let read_at: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT read_at FROM documents WHERE message_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("the document");
    assert!(read_at.is_some());

    let job = job(&app);
    assert_eq!(pass(&job, receipt + days(15)).await, Fired::default());
    assert_eq!(pass(&job, expiration - days(7)).await, Fired::default());
    assert!(reminders(&app, id).await.is_empty());
    assert_eq!(events(&app, id).await, ["newDocument", "readDocument"]);
    assert_eq!(notifications(&app, id).await, ["newDocument:email"]);
}

#[tokio::test]
async fn an_opted_out_citizen_hears_nothing_but_the_event_is_recorded() {
    let app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent_with(SAMPLE_SSIN, Channel::None).await;
    let (id, receipt, expiration) = published(&app, "ref-opted-out").await;
    let job = job(&app);

    assert_eq!(pass(&job, receipt + days(15)).await.reminders, 1);
    assert_eq!(pass(&job, expiration - days(7)).await.alerts, 1);
    assert_eq!(
        reminders(&app, id).await,
        ["documentExpirationAlert:none", "newDocumentReminder:none"]
    );
    assert_eq!(
        events(&app, id).await,
        [
            "newDocument",
            "newDocumentReminder",
            "documentExpirationAlert"
        ]
    );
    assert!(
        notifications(&app, id).await.is_empty(),
        "nothing to send to a citizen who opted out"
    );
    let audit = audited(&app, id).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    for (_, details) in &audit {
        assert_eq!(details["channel"], "none");
        assert_eq!(details["notification"], "skipped");
    }
}

async fn next_call(
    calls: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) -> (String, EventEnvelope) {
    let (key, body) = tokio::time::timeout(WAIT, calls.recv())
        .await
        .expect("a call in time")
        .expect("call");
    (key, serde_json::from_slice(&body).expect("an event"))
}

#[tokio::test]
async fn a_partner_receives_the_reminder_event() {
    use axum::http::HeaderMap;
    let (tx, mut calls) = tokio::sync::mpsc::unbounded_channel();
    let partner_app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let key = headers
                    .get(notify::webhook::IDEMPOTENCY_KEY)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send((key, body.to_vec()));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let partner = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, partner_app).await });
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
    app.grant_consent_with(
        SAMPLE_SSIN,
        Channel::Partner {
            partner_id: "mybox".into(),
        },
    )
    .await;
    let (id, receipt, _) = published(&app, "ref-partner").await;
    let (new_key, new) = next_call(&mut calls).await;
    assert_eq!(new.event_data.event_type, EventType::NewDocument);

    assert_eq!(pass(&job(&app), receipt + days(15)).await.reminders, 1);
    let (key, reminder) = next_call(&mut calls).await;
    assert_ne!(key, new_key, "a key of its own");
    assert_eq!(
        reminder.event_data.event_type,
        EventType::NewDocumentReminder
    );
    assert_eq!(reminder.event_data.message_id.as_uuid(), id);
    assert_eq!(reminder.event_data.recipient.ebox_id_value, SAMPLE_SSIN);
    assert_eq!(reminder.event_time, receipt + days(15));
}

#[tokio::test]
async fn two_jobs_racing_fire_each_reminder_exactly_once() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent_with(SAMPLE_SSIN, email()).await;
    let mut ids = Vec::new();
    let mut latest = DateTime::<Utc>::MIN_UTC;
    for n in 0..4 {
        let (id, receipt, _) = published(&app, &format!("ref-race-{n}")).await;
        next_mail(&mut app).await;
        ids.push(id);
        latest = latest.max(receipt);
    }
    let (first, second) = (job(&app), job(&app));
    let at = latest + days(15);
    let (a, b) = tokio::join!(first.pass_at(at), second.pass_at(at));
    let (a, b) = (a.expect("a pass"), b.expect("a pass"));
    assert_eq!(a.reminders + b.reminders, ids.len(), "{a:?} {b:?}");
    let (c, d) = tokio::join!(first.pass_at(at), second.pass_at(at));
    assert_eq!(
        c.expect("a pass").reminders + d.expect("a pass").reminders,
        0
    );

    for id in &ids {
        assert_eq!(reminders(&app, *id).await, ["newDocumentReminder:email"]);
        assert_eq!(
            events(&app, *id).await,
            ["newDocument", "newDocumentReminder"]
        );
        assert_eq!(
            notifications(&app, *id).await,
            ["newDocument:email", "newDocumentReminder:email"]
        );
        assert_eq!(audited(&app, *id).await.len(), 1);
    }
    for _ in &ids {
        assert!(subject(&next_mail(&mut app).await).starts_with("Rappel"));
    }
    for id in &ids {
        let id = *id;
        eventually("the reminders to be sent", || async {
            notification_states(&app, id).await == ["sent", "sent"]
        })
        .await;
    }
    assert!(app.mails.try_recv().is_err(), "one reminder per document");
}

#[tokio::test]
async fn the_notify_process_runs_the_reminders_job() {
    let mut app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent_with(SAMPLE_SSIN, email()).await;
    let (id, _, _) = published(&app, "ref-in-process").await;
    next_mail(&mut app).await;
    // Received sixteen days ago, as far as the record says; a restart runs a pass at once.
    sqlx::query(
        "UPDATE documents SET receipt_date = receipt_date - interval '16 days'
          WHERE message_id = $1",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .expect("backdate the receipt");
    app.stop_workers().await;
    app.start_workers(&[Worker::Notify]).await;
    let mail = next_mail(&mut app).await;
    assert!(subject(&mail).starts_with("Rappel"), "{}", mail.data);
    assert_eq!(reminders(&app, id).await, ["newDocumentReminder:email"]);
}
