//! Intake: senders publish v1 or v2 messages and hear back `accepted` or `rejected`.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{Duration as Days, Utc};
use domain::audit::Stage;
use domain::handoff::Handoff;
use domain::ids::{MessageId, SenderId, SenderReference};
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, SenderClient, sample_v1, sample_v2};
use intake::contract::{TYPE_V1, TYPE_V2};
use lapin::BasicProperties;
use lapin::types::ShortString;
use queues::topology::{CONSENT_CHECK_QUEUE, dead_letter_queue};
use serde_json::{Value, json};

fn v2() -> Value {
    sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

async fn assert_rejected(
    app: &TestApp,
    sender: &mut SenderClient,
    reference: &str,
    kind: &str,
    body: &[u8],
    code: &str,
) -> String {
    let status = publish_and_wait(sender, reference, kind, body).await;
    assert_eq!(status.status, Status::Rejected, "{status:?}");
    assert_eq!(status.code, code, "{status:?}");
    assert_eq!(status.sender_reference.as_deref(), Some(reference));
    let audit = app.audit_actions(reference).await;
    assert_eq!(audit, [("rejected".to_owned(), Some(code.to_owned()))]);
    assert!(
        app.drain(CONSENT_CHECK_QUEUE).await.is_empty(),
        "a rejected message went on"
    );
    status.message
}

#[tokio::test]
async fn a_v2_message_is_accepted_and_handed_to_consent_check() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut properties = sender.properties("ref-v2-1", TYPE_V2);
    properties = properties.with_correlation_id(ShortString::from("corr-42"));
    sender
        .publish(properties, &bytes(&v2()))
        .await
        .expect("published");
    let status = sender.next_status(WAIT).await.expect("status");

    let expected_id = MessageId::derive(
        &SenderId::parse(&app.sender_id).expect("id"),
        &SenderReference::parse("ref-v2-1").expect("reference"),
    );
    assert_eq!(status.status, Status::Accepted);
    assert_eq!(status.code, "ACCEPTED");
    assert_eq!(status.message_id, Some(expected_id));
    assert_eq!(status.correlation_id.as_deref(), Some("corr-42"));
    let expiration = status.expiration_date.expect("an expiration date");
    let in_a_year = Utc::now() + Days::days(365);
    assert!(
        (expiration - in_a_year).num_days().abs() <= 1,
        "{expiration}"
    );

    let forwarded = app.drain(CONSENT_CHECK_QUEUE).await;
    assert_eq!(forwarded.len(), 1);
    let handoff: Handoff = serde_json::from_slice(&forwarded[0].data).expect("a hand-off");
    assert_eq!(handoff.message_id, expected_id);
    assert_eq!(handoff.recipient.expose(), SAMPLE_SSIN);
    assert_eq!(forwarded[0].properties.delivery_mode(), &Some(2));
    // The document is written here, once, and stays unpublished until store publishes it.
    let (organization, published, content): (String, bool, Vec<u8>) = sqlx::query_as(
        "SELECT d.sender_organization_id, d.published, a.content
           FROM documents d JOIN document_attachments a USING (message_id)
          WHERE d.message_id = $1",
    )
    .bind(expected_id.as_uuid())
    .fetch_one(&app.pool)
    .await
    .expect("the document intake wrote");
    assert_eq!(organization, ORGANIZATION);
    assert!(!published);
    assert_eq!(content, ebox::demo::SAMPLE_PDF);
}

#[tokio::test]
async fn a_v1_message_is_accepted_with_its_retention_days() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let body = bytes(&sample_v1(SAMPLE_SSIN, MESSAGE_TYPE));
    let status = publish_and_wait(&mut sender, "ref-v1-1", TYPE_V1, &body).await;
    assert_eq!(status.status, Status::Accepted, "{status:?}");
    let expiration = status.expiration_date.expect("an expiration date");
    assert!(
        (expiration - (Utc::now() + Days::days(60)))
            .num_hours()
            .abs()
            <= 1
    );
    let forwarded = app.drain(CONSENT_CHECK_QUEUE).await;
    let handoff: Handoff = serde_json::from_slice(&forwarded[0].data).expect("a hand-off");
    let (organization, main_content): (String, bool) = sqlx::query_as(
        "SELECT d.sender_organization_id, a.main_content
           FROM documents d JOIN document_attachments a USING (message_id)
          WHERE d.message_id = $1",
    )
    .bind(handoff.message_id.as_uuid())
    .fetch_one(&app.pool)
    .await
    .expect("the document intake wrote");
    assert!(main_content);
    assert_eq!(organization, ORGANIZATION, "taken from the registration");
}

#[tokio::test]
async fn the_audit_trail_records_the_provision_without_the_national_number() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let status = publish_and_wait(&mut sender, "ref-audit", TYPE_V2, &bytes(&v2())).await;
    assert_eq!(status.status, Status::Accepted);
    let (ssin_hash, details, retain_until): (Option<String>, Value, chrono::NaiveDate) = sqlx::query_as(
        "SELECT ssin_hash, details, retain_until FROM audit_events WHERE action = 'accepted' AND sender_reference = 'ref-audit'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("an audit record");
    assert_eq!(ssin_hash.as_deref().map(str::len), Some(64));
    assert_eq!(details["attachments"][0]["mediaType"], "application/pdf");
    assert_eq!(
        details["attachments"][0]["size"],
        ebox::demo::SAMPLE_PDF.len()
    );
    assert_eq!(
        details["attachments"][0]["digest"]["digestValue"],
        domain::digest::Sha256Digest::of(ebox::demo::SAMPLE_PDF).to_base64url()
    );
    assert!(retain_until > (Utc::now() + Days::days(3650)).date_naive());
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE audit_events::text LIKE '%' || $1 || '%'",
    )
    .bind(SAMPLE_SSIN)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(leaked, 0);
    let refused = sqlx::query("UPDATE audit_events SET action = 'forged'")
        .execute(&app.pool)
        .await;
    assert!(refused.is_err(), "the audit trail must be append-only");
    let refused = sqlx::query("DELETE FROM audit_events")
        .execute(&app.pool)
        .await;
    assert!(
        refused.is_err(),
        "audit records must outlive their retention date"
    );
}

#[tokio::test]
async fn republishing_the_same_message_sends_the_status_again_and_creates_no_second_message() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let body = bytes(&v2());
    let first = publish_and_wait(&mut sender, "ref-again", TYPE_V2, &body).await;
    let second = publish_and_wait(&mut sender, "ref-again", TYPE_V2, &body).await;
    assert_eq!(first.status, Status::Accepted);
    assert_eq!(second.status, Status::Accepted);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.expiration_date, first.expiration_date);
    // While the message is at `accepted`, each copy goes on again (the first forward may have
    // been lost); consent-check replays rather than deciding twice.
    assert_eq!(app.drain(CONSENT_CHECK_QUEUE).await.len(), 2);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn a_message_still_accepted_is_forwarded_again_when_it_comes_again() {
    // The crash window between commit and publish: the broker redelivers (or an operator moves
    // a dead letter back), and intake must publish downstream again because the first forward
    // may never have left.
    use queues::Handler;
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let body = bytes(&v2());
    publish_and_wait(&mut sender, "ref-crash", TYPE_V2, &body).await;
    assert_eq!(app.drain(CONSENT_CHECK_QUEUE).await.len(), 1);

    let handler = intake::Intake::new(app.settings.ssin_hasher(), app.settings.max_message_bytes);
    let properties = sender.properties("ref-crash", TYPE_V2);
    let mut conn = app.pool.acquire().await.expect("connection");
    for redelivered in [true, false] {
        let outcome = handler
            .handle(
                &mut conn,
                queues::Raw,
                queues::Incoming {
                    properties: &properties,
                    body: &body,
                    redelivered,
                    routing_key: queues::topology::PUBLISH_ROUTING_KEY,
                },
            )
            .await
            .expect("handled");
        let forwarded = outcome
            .publish
            .iter()
            .filter(|o| o.routing_key == CONSENT_CHECK_QUEUE)
            .count();
        assert_eq!(forwarded, 1, "redelivered = {redelivered}");
    }
}

#[tokio::test]
async fn reusing_a_reference_for_other_content_is_a_conflict_and_keeps_the_first_message() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let first = publish_and_wait(&mut sender, "ref-reused", TYPE_V2, &bytes(&v2())).await;
    let mut other = v2();
    other["subject"]["nl"] = "Iets anders".into();
    let second = publish_and_wait(&mut sender, "ref-reused", TYPE_V2, &bytes(&other)).await;
    assert_eq!(second.status, Status::Rejected);
    assert_eq!(second.code, "DUPLICATE_REFERENCE_CONFLICT");
    assert_eq!(
        second.message_id, None,
        "the first message, with its id, is not rejected"
    );
    assert!(first.message_id.is_some());
    let forwarded = app.drain(CONSENT_CHECK_QUEUE).await;
    assert_eq!(forwarded.len(), 1);
    let handoff: Handoff = serde_json::from_slice(&forwarded[0].data).expect("a hand-off");
    let subject: serde_json::Value =
        sqlx::query_scalar("SELECT subject FROM documents WHERE message_id = $1")
            .bind(handoff.message_id.as_uuid())
            .fetch_one(&app.pool)
            .await
            .expect("the first message's document");
    assert_eq!(subject["nl"], "Uw attest");
}

#[tokio::test]
async fn malformed_json_is_rejected_as_invalid_input() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    assert_rejected(
        &app,
        &mut sender,
        "ref-json",
        TYPE_V2,
        b"{not json",
        "INVALID_INPUT",
    )
    .await;
}

#[tokio::test]
async fn a_missing_required_field_is_named_in_the_rejection() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body.as_object_mut().expect("object").remove("recipient");
    let message = assert_rejected(
        &app,
        &mut sender,
        "ref-missing",
        TYPE_V2,
        &bytes(&body),
        "INVALID_INPUT",
    )
    .await;
    assert!(message.contains("recipient"), "{message}");
}

#[tokio::test]
async fn a_national_number_in_an_ill_typed_field_never_reaches_the_audit_trail() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["replyAuthorized"] = json!(85073003328u64);
    assert_rejected(
        &app,
        &mut sender,
        "ref-typed",
        TYPE_V2,
        &bytes(&body),
        "INVALID_INPUT",
    )
    .await;
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE details::text LIKE '%85073003328%'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn an_unknown_or_missing_type_is_an_unsupported_schema() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    assert_rejected(
        &app,
        &mut sender,
        "ref-v3",
        "ebox.publish.v3",
        &bytes(&v2()),
        "UNSUPPORTED_SCHEMA",
    )
    .await;
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from("ref-notype"))
        .with_user_id(ShortString::from(app.sender_id.as_str()));
    sender
        .publish(properties, &bytes(&v2()))
        .await
        .expect("published");
    let status = sender.next_status(WAIT).await.expect("status");
    assert_eq!(status.code, "UNSUPPORTED_SCHEMA");
}

#[tokio::test]
async fn a_missing_or_malformed_reference_is_invalid_input() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let properties = BasicProperties::default()
        .with_type(ShortString::from(TYPE_V2))
        .with_user_id(ShortString::from(app.sender_id.as_str()));
    sender
        .publish(properties, &bytes(&v2()))
        .await
        .expect("published");
    let status = sender.next_status(WAIT).await.expect("status");
    assert_eq!(
        (status.status, status.code.as_str()),
        (Status::Rejected, "INVALID_INPUT")
    );
    assert!(status.message.contains("message_id"), "{}", status.message);
    assert_rejected(
        &app,
        &mut sender,
        "has spaces in it",
        TYPE_V2,
        &bytes(&v2()),
        "INVALID_INPUT",
    )
    .await;
}

#[tokio::test]
async fn a_bad_national_number_is_invalid_ssin() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["recipient"]["eboxIdValue"] = "85073003329".into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-ssin",
        TYPE_V2,
        &bytes(&body),
        "INVALID_SSIN",
    )
    .await;
    let mut v1 = sample_v1("8507300332", MESSAGE_TYPE);
    v1["ssin"] = "8507300332".into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-ssin-v1",
        TYPE_V1,
        &bytes(&v1),
        "INVALID_SSIN",
    )
    .await;
}

#[tokio::test]
async fn an_enterprise_recipient_is_invalid_recipient() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["recipient"] = json!({"eboxType": "enterprise", "eboxIdValue": ORGANIZATION});
    assert_rejected(
        &app,
        &mut sender,
        "ref-enterprise",
        TYPE_V2,
        &bytes(&body),
        "INVALID_RECIPIENT",
    )
    .await;
}

#[tokio::test]
async fn another_organisation_or_application_is_sender_not_authorized() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["senderOrganizationId"] = "0203201340".into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-org",
        TYPE_V2,
        &bytes(&body),
        "SENDER_NOT_AUTHORIZED",
    )
    .await;
    body["senderOrganizationId"] = "0406798007".into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-org-check",
        TYPE_V2,
        &bytes(&body),
        "SENDER_NOT_AUTHORIZED",
    )
    .await;
    let mut body = v2();
    body["senderApplicationId"] = "pensions".into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-app",
        TYPE_V2,
        &bytes(&body),
        "SENDER_NOT_AUTHORIZED",
    )
    .await;
    body["senderApplicationId"] = "unemployment".into();
    body["senderOrganizationId"] = ORGANIZATION.into();
    let status = publish_and_wait(&mut sender, "ref-app-ok", TYPE_V2, &bytes(&body)).await;
    assert_eq!(status.status, Status::Accepted, "{status:?}");
}

#[tokio::test]
async fn a_type_unknown_or_not_allowed_for_the_sender_is_unknown_message_type() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let body = sample_v2(SAMPLE_SSIN, "no-such-type");
    assert_rejected(
        &app,
        &mut sender,
        "ref-type",
        TYPE_V2,
        &bytes(&body),
        "UNKNOWN_MESSAGE_TYPE",
    )
    .await;
    let body = sample_v2(SAMPLE_SSIN, OTHER_MESSAGE_TYPE);
    assert_rejected(
        &app,
        &mut sender,
        "ref-type-other",
        TYPE_V2,
        &bytes(&body),
        "UNKNOWN_MESSAGE_TYPE",
    )
    .await;
}

#[tokio::test]
async fn a_media_type_outside_the_list_is_refused() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["attachments"][0]["mediaType"] = "application/x-msdownload".into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-exe",
        TYPE_V2,
        &bytes(&body),
        "MEDIA_TYPE_NOT_ALLOWED",
    )
    .await;
}

#[tokio::test]
async fn an_html_page_declared_as_a_pdf_is_refused_naming_the_attachment() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let html = b"<html><body><script>alert('hi')</script></body></html>";
    let mut body = v2();
    body["attachments"][0]["content"] = STANDARD.encode(html).into();
    body["attachments"][0]["digest"]["digestValue"] =
        domain::digest::Sha256Digest::of(html).to_base64url().into();
    let message = assert_rejected(
        &app,
        &mut sender,
        "ref-html-as-pdf",
        TYPE_V2,
        &bytes(&body),
        "MEDIA_TYPE_NOT_ALLOWED",
    )
    .await;
    assert!(
        message.contains("attachments[0].content does not look like application/pdf"),
        "{message}"
    );
    assert!(
        !message.contains("<html") && !message.contains("script"),
        "the bytes are not quoted: {message}"
    );
}

#[tokio::test]
async fn a_digest_that_does_not_match_the_content_is_refused() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["attachments"][0]["digest"]["digestValue"] =
        domain::digest::Sha256Digest::of(b"other bytes")
            .to_base64url()
            .into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-digest",
        TYPE_V2,
        &bytes(&body),
        "DIGEST_DO_NOT_MATCH",
    )
    .await;
}

#[tokio::test]
async fn no_main_content_or_too_many_attachments_is_invalid_input() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["attachments"][0]["mainContent"] = false.into();
    let message = assert_rejected(
        &app,
        &mut sender,
        "ref-nomain",
        TYPE_V2,
        &bytes(&body),
        "INVALID_INPUT",
    )
    .await;
    assert!(message.contains("main content"), "{message}");
    let mut body = v2();
    let attachment = body["attachments"][0].clone();
    body["attachments"] = Value::Array(vec![attachment; 7]);
    let message = assert_rejected(
        &app,
        &mut sender,
        "ref-seven",
        TYPE_V2,
        &bytes(&body),
        "INVALID_INPUT",
    )
    .await;
    assert!(message.contains("attachments"), "{message}");
}

#[tokio::test]
async fn a_body_as_main_content_is_accepted_without_attachments() {
    let app = spawn_app().await;
    let mut body = v2();
    body["attachments"] = json!([]);
    body["bodyMainContent"] = true.into();
    body["bodyContent"] = json!({"fr": "Votre dossier est complet."});
    let mut sender = app.sender().await;
    let status = publish_and_wait(&mut sender, "ref-body", TYPE_V2, &bytes(&body)).await;
    assert_eq!(status.status, Status::Accepted, "{status:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_too_large() {
    let app = spawn_app_with(Options {
        max_message_bytes: 4096,
        ..Options::default()
    })
    .await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["attachments"][0]["content"] = STANDARD.encode(vec![b'%'; 8192]).into();
    body["attachments"][0]
        .as_object_mut()
        .expect("object")
        .remove("digest");
    assert_rejected(
        &app,
        &mut sender,
        "ref-large",
        TYPE_V2,
        &bytes(&body),
        "TOO_LARGE",
    )
    .await;
}

#[tokio::test]
async fn an_expiration_in_the_past_or_beyond_the_validity_period_is_refused() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["expirationDate"] = (Utc::now() - Days::days(1)).to_rfc3339().into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-past",
        TYPE_V2,
        &bytes(&body),
        "INVALID_EXPIRATION_DATE",
    )
    .await;
    body["expirationDate"] = (Utc::now() + Days::days(400)).to_rfc3339().into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-far",
        TYPE_V2,
        &bytes(&body),
        "INVALID_EXPIRATION_DATE",
    )
    .await;
    let mut v1 = sample_v1(SAMPLE_SSIN, MESSAGE_TYPE);
    v1["retentionDays"] = 0.into();
    assert_rejected(
        &app,
        &mut sender,
        "ref-zero-days",
        TYPE_V1,
        &bytes(&v1),
        "INVALID_EXPIRATION_DATE",
    )
    .await;
    let wanted = Utc::now() + Days::days(30);
    body["expirationDate"] = wanted.to_rfc3339().into();
    let status = publish_and_wait(&mut sender, "ref-chosen", TYPE_V2, &bytes(&body)).await;
    assert_eq!(status.status, Status::Accepted);
    let given = status.expiration_date.expect("expiration");
    assert!(
        (given - wanted).num_seconds().abs() <= 1,
        "the sender's date is kept: {given}"
    );
}

#[tokio::test]
async fn a_poison_message_does_not_stop_the_ones_behind_it() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    sender
        .publish(
            sender.properties("ref-poison", TYPE_V2),
            b"\xff\xfe garbage",
        )
        .await
        .expect("published");
    sender
        .publish(sender.properties("ref-after", TYPE_V2), &bytes(&v2()))
        .await
        .expect("published");
    let mut statuses = [
        sender.next_status(WAIT).await.expect("status"),
        sender.next_status(WAIT).await.expect("status"),
    ];
    statuses.sort_by(|a, b| a.sender_reference.cmp(&b.sender_reference));
    assert_eq!(statuses[0].sender_reference.as_deref(), Some("ref-after"));
    assert_eq!(statuses[0].status, Status::Accepted);
    assert_eq!(statuses[1].status, Status::Rejected);
}

#[tokio::test]
async fn a_broker_user_without_registration_is_dead_lettered_and_audited() {
    let app = spawn_app().await;
    let stranger = format!("stranger-{}", app.id);
    app.broker_user(&stranger).await;
    let connection = queues::driver::connect(&app.amqp_url_for(&stranger), "stranger")
        .await
        .expect("connects");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from("ref-stranger"))
        .with_type(ShortString::from(TYPE_V2))
        .with_user_id(ShortString::from(stranger.as_str()));
    channel
        .basic_publish(
            queues::topology::PUBLISH_EXCHANGE.into(),
            queues::topology::PUBLISH_ROUTING_KEY.into(),
            lapin::options::BasicPublishOptions::default(),
            &bytes(&v2()),
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let parked = app.next_on(&dead_letter_queue(Stage::Intake)).await;
    assert_eq!(
        parked.properties.message_id().as_ref().map(|m| m.as_str()),
        Some("ref-stranger")
    );
    assert_eq!(
        app.audit_actions("ref-stranger").await,
        [(
            "dead-lettered".to_owned(),
            Some("UNKNOWN_SENDER".to_owned())
        )]
    );
    // The pipeline goes on for everyone else.
    let mut sender = app.sender().await;
    let status = publish_and_wait(&mut sender, "ref-next", TYPE_V2, &bytes(&v2())).await;
    assert_eq!(status.status, Status::Accepted);
}

#[tokio::test]
async fn the_broker_refuses_a_sender_claiming_another_senders_user_id() {
    // Intake trusts `user_id` because RabbitMQ checks it against the connection's user.
    let app = spawn_app().await;
    let impostor = format!("impostor-{}", app.id);
    app.broker_user(&impostor).await;
    let sender = SenderClient::connect(&app.amqp_url_for(&impostor), &impostor).await;
    // The impostor has no status queue to read: connect with a plain channel instead.
    assert!(sender.is_err());
    let connection = queues::driver::connect(&app.amqp_url_for(&impostor), "impostor")
        .await
        .expect("connects");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from("ref-impostor"))
        .with_type(ShortString::from(TYPE_V2))
        .with_user_id(ShortString::from(app.sender_id.as_str()));
    let published = async {
        channel
            .basic_publish(
                queues::topology::PUBLISH_EXCHANGE.into(),
                queues::topology::PUBLISH_ROUTING_KEY.into(),
                lapin::options::BasicPublishOptions::default(),
                &bytes(&v2()),
                properties,
            )
            .await?
            .await
    }
    .await;
    assert!(published.is_err(), "RabbitMQ must refuse a foreign user_id");
    let mut real = app.sender().await;
    let status = publish_and_wait(&mut real, "ref-real", TYPE_V2, &bytes(&v2())).await;
    assert_eq!(
        status.sender_reference.as_deref(),
        Some("ref-real"),
        "nothing from the impostor arrived"
    );
}

#[tokio::test]
async fn a_message_published_while_intake_is_down_is_accepted_when_it_returns() {
    let mut app = spawn_app().await;
    let mut sender = app.sender().await;
    app.stop_workers().await;
    sender
        .publish(sender.properties("ref-while-down", TYPE_V2), &bytes(&v2()))
        .await
        .expect("published");
    app.start_workers(&[ebox::workers::Worker::Intake]).await;
    let status = sender.next_status(WAIT).await.expect("status");
    assert_eq!(status.sender_reference.as_deref(), Some("ref-while-down"));
    assert_eq!(status.status, Status::Accepted);
}

#[tokio::test]
async fn a_subject_with_a_nul_is_rejected_and_goes_no_further() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["subject"]["fr"] = "Votre\u{0}attestation".into();
    let status = publish_and_wait(&mut sender, "ref-nul-subject", TYPE_V2, &bytes(&body)).await;
    assert_eq!(
        (status.status, status.code.as_str()),
        (Status::Rejected, "INVALID_INPUT"),
        "{status:?}"
    );
    assert_eq!(
        status.message,
        "subject.fr contains a control character (U+0000)"
    );
    assert_eq!(
        app.audit_actions("ref-nul-subject").await,
        [("rejected".to_owned(), Some("INVALID_INPUT".to_owned()))]
    );
    // Absence needs a barrier: once a later message is accepted, intake has handled the first.
    let after = publish_and_wait(&mut sender, "ref-after-nul", TYPE_V2, &bytes(&v2())).await;
    assert_eq!(after.status, Status::Accepted, "{after:?}");
    let forwarded: Vec<MessageId> = app
        .drain(CONSENT_CHECK_QUEUE)
        .await
        .iter()
        .map(|delivery| {
            let handoff: Handoff = serde_json::from_slice(&delivery.data).expect("a hand-off");
            handoff.message_id
        })
        .collect();
    assert_eq!(forwarded, [after.message_id.expect("an id")]);
}

#[tokio::test]
async fn a_correlation_id_with_a_nul_or_too_long_is_rejected_with_a_status_and_an_audit_record() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    for (reference, correlation_id, says) in [
        (
            "ref-nul-corr",
            "corr\u{0}1".to_owned(),
            "the AMQP property correlation_id contains a control character (U+0000)",
        ),
        (
            "ref-long-corr",
            "c".repeat(129),
            "the AMQP property correlation_id has 129 characters; at most 128 are allowed",
        ),
    ] {
        let properties = sender
            .properties(reference, TYPE_V2)
            .with_correlation_id(ShortString::from(correlation_id));
        sender
            .publish(properties, &bytes(&v2()))
            .await
            .expect("published");
        let status = sender
            .next_status(WAIT)
            .await
            .expect("a status, not a dead letter");
        assert_eq!(
            (status.status, status.code.as_str()),
            (Status::Rejected, "INVALID_INPUT"),
            "{status:?}"
        );
        assert_eq!(status.message, says);
        assert_eq!(status.sender_reference.as_deref(), Some(reference));
        assert_eq!(
            status.correlation_id, None,
            "what was refused is not echoed"
        );
        assert_eq!(
            app.audit_actions(reference).await,
            [("rejected".to_owned(), Some("INVALID_INPUT".to_owned()))]
        );
    }
    let properties = sender
        .properties("ref-good-corr", TYPE_V2)
        .with_correlation_id(ShortString::from("c".repeat(128)));
    sender
        .publish(properties, &bytes(&v2()))
        .await
        .expect("published");
    let status = sender.next_status(WAIT).await.expect("a status");
    assert_eq!(status.status, Status::Accepted, "{status:?}");
    assert_eq!(status.correlation_id, Some("c".repeat(128)));
    assert!(
        app.drain(&dead_letter_queue(Stage::Intake))
            .await
            .is_empty(),
        "nothing was set aside"
    );
    assert_eq!(app.drain(CONSENT_CHECK_QUEUE).await.len(), 1);
}

#[tokio::test]
async fn a_file_name_with_a_right_to_left_override_is_refused() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["attachments"][0]["fileName"] = "attest\u{202E}fdp.exe".into();
    let message = assert_rejected(
        &app,
        &mut sender,
        "ref-rlo",
        TYPE_V2,
        &bytes(&body),
        "INVALID_INPUT",
    )
    .await;
    assert_eq!(
        message,
        "attachments[0].fileName contains a bidirectional formatting character (U+202E)"
    );
}

#[tokio::test]
async fn a_nul_that_intake_would_look_up_or_quote_is_refused_rather_than_set_aside() {
    let app = spawn_app().await;
    let mut sender = app.sender().await;
    let mut body = v2();
    body["messageTypeId"] = format!("{MESSAGE_TYPE}\u{0}").into();
    let message = assert_rejected(
        &app,
        &mut sender,
        "ref-nul-type",
        TYPE_V2,
        &bytes(&body),
        "INVALID_INPUT",
    )
    .await;
    assert_eq!(
        message,
        "messageTypeId contains a control character (U+0000)"
    );
    let mut body = v2();
    body["remark\u{0}"] = "misspelt".into();
    let message = assert_rejected(
        &app,
        &mut sender,
        "ref-nul-field",
        TYPE_V2,
        &bytes(&body),
        "INVALID_INPUT",
    )
    .await;
    assert!(
        message.contains("unknown field `remark\\u0000`"),
        "{message}"
    );
}
