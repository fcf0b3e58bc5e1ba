//! The rest of the Message Registry 2.1 contract: payment data and the structured data intake
//! checks against the contract's definitions, the summary's `lastConsultationDate`, dates as
//! the contract writes them, and the status search refusing a malformed item. Every answer is
//! validated against the contract's definitions.

use crate::citizen_api::{Api, args, assert_private, assert_valid, citizen_token};
use crate::helpers::*;
use domain::status::{Code, Status};
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use ebox::token::{TokenArgs, mint};
use intake::contract::TYPE_V2;
use reqwest::StatusCode;
use serde_json::{Value, json};

const OTHER_SSIN: &str = "01010100126";

/// Whether `raw` is written as the contract's `yyyy-MM-dd'T'HH:mm:ssXXX`: to the second, with
/// `Z` or an offset.
fn is_contract_date(raw: &Value) -> bool {
    let Some(raw) = raw.as_str() else {
        return false;
    };
    let shape = (raw.len() == 20 && raw.ends_with('Z'))
        || (raw.len() == 25 && matches!(raw.as_bytes()[19], b'+' | b'-'));
    shape && !raw.contains('.') && chrono::DateTime::parse_from_rfc3339(raw).is_ok()
}

fn payment() -> Value {
    json!({
        "paymentDataId": "pay-2026-001",
        "amount": 12.5,
        "vatAmount": 2.63,
        "currency": "EUR",
        "dueDate": "2027-01-31T23:59:59.250+01:00",
        "iban": "BE68539007547034",
        "bic": "GEBABEBB",
        "reference": {"structured": "+++090/9337/55493+++"}
    })
}

fn with_structured_data(ssin: &str) -> Value {
    let mut body = sample_v2(ssin, MESSAGE_TYPE);
    body["paymentData"] = payment();
    body["businessDataList"] = json!([
        {"key": "dossier", "values": [{"fr": "A-12"}]},
        {"key": "period", "name": {"nl": "Periode"}, "description": {"fr": "La période"},
         "values": [{"nl": "2026", "fr": "2026", "de": "2026"}]}
    ]);
    body["forTheAttentionOf"] = json!({"id": ssin, "type": "ssin", "name": "Jan Peeters"});
    body
}

#[tokio::test]
async fn payment_data_is_served_as_the_contract_defines_it_and_only_to_its_citizen() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let with_payment = deliver(
        &mut sender,
        "ref-payment",
        with_structured_data(SAMPLE_SSIN),
    )
    .await;
    let without = deliver(
        &mut sender,
        "ref-no-payment",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);

    let (status, message) = api
        .get(&format!("/ebox/messages/{with_payment}"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("Message", &message);
    assert_valid("PaymentData", &message["paymentData"]);
    assert_valid("BusinessDataList", &message["businessDataList"]);
    assert_valid("ForTheAttentionOf", &message["forTheAttentionOf"]);
    assert_eq!(message["businessDataList"]["totalItems"], 2);
    assert_eq!(
        message["businessDataList"]["items"][0]["name"],
        json!({"nl": "dossier", "fr": "dossier", "de": "dossier"}),
        "the contract requires a name: without one, the key names it"
    );
    assert_eq!(
        message["businessDataList"]["items"][0]["values"][0]["de"], "A-12",
        "every language filled"
    );
    assert_eq!(message["forTheAttentionOf"]["name"], "Jan Peeters");
    for field in ["receiptDate", "expirationDate"] {
        assert!(is_contract_date(&message[field]), "{field}: {message:#}");
    }

    let response = api
        .get_raw(
            &format!("/ebox/messages/{with_payment}/paymentData"),
            &token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_private(&response, "payment data");
    let payment_data: Value = response.json().await.expect("JSON");
    assert_valid("PaymentData", &payment_data);
    let mut expected = payment();
    expected["dueDate"] = json!("2027-01-31T23:59:59+01:00");
    assert_eq!(
        payment_data, expected,
        "as sent, the due date to the second and in its own offset"
    );

    for (what, path, token) in [
        (
            "a message without payment data",
            format!("/ebox/messages/{without}/paymentData"),
            token.clone(),
        ),
        (
            "another citizen's message",
            format!("/ebox/messages/{with_payment}/paymentData"),
            citizen_token(OTHER_SSIN),
        ),
        (
            "an id that is no message's",
            "/ebox/messages/not-a-message/paymentData".to_owned(),
            token.clone(),
        ),
    ] {
        let (status, error) = api.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
        assert_valid("StatusMessage", &error);
    }
    let (status, _) = api
        .get(&format!("/ebox/messages/{with_payment}/paymentData"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn structured_data_off_the_contract_is_rejected_naming_the_field() {
    let app = spawn_app_with(Options::pipeline()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let change = |field: &str, value: Value| {
        let mut body = with_structured_data(SAMPLE_SSIN);
        body[field] = value;
        body
    };
    let mut bad_iban = payment();
    bad_iban["iban"] = json!("BE69539007547034");
    let mut no_due_date = payment();
    no_due_date
        .as_object_mut()
        .map(|members| members.remove("dueDate"));
    let cases = [
        (
            "ref-iban",
            change("paymentData", bad_iban),
            "paymentData.iban is not a valid IBAN",
        ),
        (
            "ref-due",
            change("paymentData", no_due_date),
            "paymentData.dueDate is required",
        ),
        (
            "ref-empty-payment",
            change("paymentData", json!({})),
            "paymentData.paymentDataId is required",
        ),
        (
            "ref-values",
            change("businessDataList", json!([{"key": "dossier"}])),
            "businessDataList[0].values is required",
        ),
        (
            "ref-attention",
            change("forTheAttentionOf", json!({"ssin": SAMPLE_SSIN})),
            "forTheAttentionOf.ssin is not a member of its definition",
        ),
    ];
    for (reference, body, names) in cases {
        let status = publish_and_wait(
            &mut sender,
            reference,
            TYPE_V2,
            &serde_json::to_vec(&body).expect("JSON"),
        )
        .await;
        assert_eq!(status.sender_reference.as_deref(), Some(reference));
        assert_eq!(
            (status.status, status.code),
            (Status::Rejected, Code::InvalidInput),
            "{reference}: {status:?}"
        );
        assert!(
            status.message.starts_with(names),
            "{reference}: {}",
            status.message
        );
        assert!(
            !status.message.contains(SAMPLE_SSIN),
            "never quoted: {}",
            status.message
        );
    }
}

#[tokio::test]
async fn the_summary_tells_when_the_citizen_last_used_their_ebox() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    deliver(
        &mut sender,
        "ref-summary",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);

    let (status, first) = api.get("/ebox", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("Ebox", &first);
    assert!(is_contract_date(&first["lastReceiptDate"]), "{first:#}");
    assert_eq!(
        first.get("lastConsultationDate"),
        None,
        "never used before this call"
    );

    // A refused call is no use of the eBox; a read that succeeded is.
    let (status, _) = api.get("/ebox/messages/not-a-message", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) = api.get("/ebox", Some(&citizen_token(OTHER_SSIN))).await;
    assert_eq!(theirs.get("lastConsultationDate"), None, "their own only");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (status, _) = api.get("/ebox/messages", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, second) = api.get("/ebox", Some(&token)).await;
    assert_valid("Ebox", &second);
    let last = &second["lastConsultationDate"];
    assert!(is_contract_date(last), "{second:#}");
    let at = chrono::DateTime::parse_from_rfc3339(last.as_str().unwrap_or_default())
        .expect("a date-time");
    assert!(
        at >= before && at <= chrono::Utc::now(),
        "{at} is the last call's time"
    );
}

#[tokio::test]
async fn the_status_search_names_a_malformed_item_and_writes_dates_as_the_contract() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let id = deliver(
        &mut sender,
        "ref-search",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let api = Api::of(&app);
    let token = mint(&TokenArgs {
        sub: None,
        client_id: Some(app.sender_id.clone()),
        scope: "ebox:sender".into(),
        ..args("es256-private.pem")
    })
    .expect("a token");
    let search = |request: Value| {
        api.http
            .post(format!("{}/searchMessageStatus", api.base))
            .bearer_auth(&token)
            .json(&request)
            .send()
    };
    let own =
        json!({"messageId": id, "eboxId": {"eboxType": "citizen", "eboxIdValue": SAMPLE_SSIN}});
    let enterprise =
        json!({"messageId": id, "eboxId": {"eboxType": "enterprise", "eboxIdValue": ORGANIZATION}});
    let response = search(json!([own, enterprise])).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::CREATED);
    let found: Value = response.json().await.expect("JSON");
    assert_valid("MessagesStatusList", &found);
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(1),
        "an enterprise's eBox holds nothing here"
    );
    assert!(is_contract_date(&found[0]["expirationDate"]), "{found:#}");

    let malformed = [
        (json!({"messageId": id}), "[1] is not a MessageIdEboxId"),
        (
            json!({"messageId": "ref-search", "eboxId": own["eboxId"]}),
            "[1].messageId is not a message id of this provider",
        ),
        (
            json!({"messageId": id, "eboxId": {"eboxType": "citizen", "eboxIdValue": "85073003329"}}),
            "[1].eboxId.eboxIdValue is not a valid national number",
        ),
        (
            json!({"messageId": id, "eboxId": {"eboxType": "person", "eboxIdValue": SAMPLE_SSIN}}),
            "[1].eboxId.eboxType must be citizen or enterprise",
        ),
    ];
    for (item, names) in malformed {
        let response = search(json!([own, item])).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{item}");
        let error: Value = response.json().await.expect("JSON");
        assert_valid("StatusMessage", &error);
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(names), "{item}: {message}");
        assert!(!message.contains("85073003329"), "never quoted: {message}");
    }
}
