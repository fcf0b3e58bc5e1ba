//! The citizen API (Message Registry contract) and read receipts, through a real HTTP client
//! against the running API, with tokens minted by the test.

use crate::helpers::*;
use chrono::{Duration as Span, Utc};
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use ebox::token::{TokenArgs, mint};
use intake::contract::TYPE_V2;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::OnceLock;

const OTHER_SSIN: &str = "01010100126";
const ALL_SCOPES: &str = "ebox:summary ebox:messages ebox:referencedata";

pub(crate) fn args(key: &str) -> TokenArgs {
    TokenArgs {
        key: fixture(key).into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        sub: Some(SAMPLE_SSIN.into()),
        client_id: Some("ebox-portal".into()),
        scope: ALL_SCOPES.into(),
        acr: "http://eidas.europa.eu/LoA/substantial".into(),
        ttl: 600,
        kid: Some("test-es256".into()),
    }
}

pub(crate) fn citizen_token(ssin: &str) -> String {
    mint(&TokenArgs {
        sub: Some(ssin.into()),
        ..args("es256-private.pem")
    })
    .expect("token")
}

/// The contract's definitions, as JSON Schema.
fn contract() -> &'static Value {
    static CONTRACT: OnceLock<Value> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let yaml = std::fs::read_to_string(fixture("ebox-rest-2.1.yaml")).expect("the contract");
        let spec: Value = serde_yaml_ng::from_str(&yaml).expect("YAML");
        json!({"definitions": spec["definitions"]})
    })
}

pub(crate) fn assert_valid(definition: &str, instance: &Value) {
    let mut schema = contract().clone();
    schema["$ref"] = json!(format!("#/definitions/{definition}"));
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{definition} invalid: {errors:?}\n{instance:#}"
    );
}

pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Api {
    pub(crate) fn of(app: &TestApp) -> Self {
        Self {
            base: app.api.clone().expect("the API runs"),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let body = response.bytes().await.expect("a body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub(crate) async fn get_raw(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("the API answers")
    }
}

/// A response about a citizen's document: kept in no cache, and taken as the media type it
/// declares.
pub(crate) fn assert_private(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    assert_eq!(headers["cache-control"], "no-store", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
}

/// An attachment's content: private, rendered (if at all) in a sandbox, and saved under its
/// name.
fn assert_download(response: &reqwest::Response, file_name: &str, what: &str) {
    assert_private(response, what);
    let headers = response.headers();
    assert_eq!(headers["content-security-policy"], "sandbox", "{what}");
    let disposition = headers["content-disposition"].to_str().expect("ASCII");
    assert!(
        disposition.starts_with("attachment;")
            && disposition.ends_with(&format!("filename*=UTF-8''{file_name}")),
        "{what}: {disposition}"
    );
}

fn with_annex(ssin: &str, subject_nl: &str) -> Value {
    let mut body = sample_v2(ssin, MESSAGE_TYPE);
    body["subject"]["nl"] = subject_nl.into();
    let mut annex = body["attachments"][0].clone();
    annex["fileName"] = "bijlage.txt".into();
    annex["mediaType"] = "text/plain".into();
    annex["mainContent"] = false.into();
    annex["content"] = "aGFsbG8=".into();
    annex.as_object_mut().expect("object").remove("digest");
    body["attachments"]
        .as_array_mut()
        .expect("array")
        .push(annex);
    body["bodyContent"] = json!({"fr": "Voir l'attestation."});
    body
}

#[tokio::test]
async fn a_citizen_lists_and_opens_their_messages_as_the_contract_describes() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    app.grant_consent(OTHER_SSIN).await;
    let mut sender = app.sender().await;
    let first = deliver(
        &mut sender,
        "ref-api-1",
        with_annex(SAMPLE_SSIN, "Jaarattest 2025"),
    )
    .await;
    let second = deliver(
        &mut sender,
        "ref-api-2",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let theirs = deliver(
        &mut sender,
        "ref-api-other",
        sample_v2(OTHER_SSIN, MESSAGE_TYPE),
    )
    .await;
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);

    let (status, summary) = api.get("/ebox", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("Ebox", &summary);
    assert_eq!(
        (
            summary["numberOfMessages"].clone(),
            summary["numberOfUnreadMessages"].clone()
        ),
        (json!(2), json!(2))
    );

    let (status, list) = api.get("/ebox/messages", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("Messages", &list);
    assert_eq!(list["totalItems"], 2);
    let ids: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["messageId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        ids,
        [second.to_string(), first.to_string()],
        "newest first, and only their own"
    );
    assert_eq!(
        list["items"][1]["subject"]["de"], "Ihre Bescheinigung",
        "every language filled"
    );

    // Paging edges.
    let (_, page) = api
        .get("/ebox/messages?pageSize=1&page=2", Some(&token))
        .await;
    assert_eq!(
        (
            page["items"].as_array().map(Vec::len),
            page["totalItems"].clone()
        ),
        (Some(1), json!(2))
    );
    let (_, beyond) = api.get("/ebox/messages?page=9", Some(&token)).await;
    assert_eq!(
        (beyond["items"].clone(), beyond["totalItems"].clone()),
        (json!([]), json!(2))
    );
    for bad in [
        "pageSize=0",
        "pageSize=101",
        "page=0",
        "readStatus=maybe",
        "receivedAfter=yesterday",
        "qlang=en&q=x",
    ] {
        let (status, error) = api
            .get(&format!("/ebox/messages?{bad}"), Some(&token))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_valid("StatusMessage", &error);
    }

    // Filters.
    let (_, found) = api
        .get("/ebox/messages?q=jaarattest&qlang=nl", Some(&token))
        .await;
    assert_eq!(found["totalItems"], 1);
    assert_eq!(found["items"][0]["messageId"], first.to_string());
    let (_, none) = api
        .get("/ebox/messages?q=jaarattest&qlang=fr", Some(&token))
        .await;
    assert_eq!(none["totalItems"], 0);
    let (_, french) = api
        .get("/ebox/messages?q=attestation&qlang=fr", Some(&token))
        .await;
    assert_eq!(french["totalItems"], 2, "the French subject of both");
    let (_, none) = api
        .get("/ebox/messages?q=Voir&qlang=fr", Some(&token))
        .await;
    assert_eq!(
        none["totalItems"], 0,
        "never the content (the body says Voir)"
    );
    let (_, by_sender) = api.get("/ebox/messages?q=rva&qlang=nl", Some(&token)).await;
    assert_eq!(
        by_sender["totalItems"], 2,
        "the sender organisation's name is searched too"
    );
    let (status, _) = api.get("/ebox/messages?q=attest", Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "q needs qlang");
    let (_, typed) = api
        .get(
            &format!(
                "/ebox/messages?messageTypeId={MESSAGE_TYPE}&senderOrganizationId={ORGANIZATION}"
            ),
            Some(&token),
        )
        .await;
    assert_eq!(typed["totalItems"], 2);
    let tomorrow = (Utc::now() + Span::days(1)).format("%Y-%m-%d");
    let (_, received) = api
        .get(
            &format!("/ebox/messages?receivedAfter={tomorrow}"),
            Some(&token),
        )
        .await;
    assert_eq!(received["totalItems"], 0);

    // One message, its attachments, its body.
    let (status, message) = api
        .get(&format!("/ebox/messages/{first}"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("Message", &message);
    let (_, attachments) = api
        .get(&format!("/ebox/messages/{first}/attachments"), Some(&token))
        .await;
    assert_valid("Attachments", &attachments);
    assert_eq!(attachments["totalItems"], 2);
    let main_id = attachments["items"][0]["attachmentId"]
        .as_str()
        .expect("id")
        .to_owned();
    let annex_id = attachments["items"][1]["attachmentId"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, attachment) = api
        .get(
            &format!("/ebox/messages/{first}/attachments/{main_id}"),
            Some(&token),
        )
        .await;
    assert_valid("Attachment", &attachment);
    assert_eq!(
        attachment["digest"]["digestValue"],
        domain::digest::Sha256Digest::of(ebox::demo::SAMPLE_PDF).to_base64url()
    );
    let (status, body) = api
        .get(&format!("/ebox/messages/{first}/body"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("TranslatedString", &body);
    assert_eq!(body["nl"], "Voir l'attestation.");

    // An annex does not make the message read; the main content does, once.
    let annex = api
        .get_raw(
            &format!("/ebox/messages/{first}/attachments/{annex_id}/content"),
            &token,
        )
        .await;
    assert_eq!(annex.status(), StatusCode::OK);
    assert_eq!(annex.headers()["content-type"], "text/plain");
    let head = api
        .http
        .head(format!(
            "{}/ebox/messages/{first}/attachments/{main_id}/content",
            api.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(head.status(), StatusCode::OK);
    let (_, message) = api
        .get(&format!("/ebox/messages/{first}"), Some(&token))
        .await;
    assert_eq!(
        message["readStatus"], false,
        "neither an annex nor a HEAD is a reading"
    );
    for _ in 0..3 {
        let main = api
            .get_raw(
                &format!("/ebox/messages/{first}/attachments/{main_id}/content"),
                &token,
            )
            .await;
        assert_eq!(main.status(), StatusCode::OK);
        assert_eq!(main.headers()["content-type"], "application/pdf");
        assert_eq!(
            main.bytes().await.expect("bytes").as_ref(),
            ebox::demo::SAMPLE_PDF
        );
    }
    let (_, message) = api
        .get(&format!("/ebox/messages/{first}"), Some(&token))
        .await;
    assert_eq!(message["readStatus"], true);
    let (_, unread) = api
        .get("/ebox/messages?readStatus=false", Some(&token))
        .await;
    assert_eq!(unread["totalItems"], 1);

    // The sender hears `read` once. Opening the second message afterwards gives a marker: the
    // read-receipt queue is first in, first out, so when its receipt arrives every earlier
    // receipt has been sent.
    let (_, second_attachments) = api
        .get(
            &format!("/ebox/messages/{second}/attachments"),
            Some(&token),
        )
        .await;
    let second_main = second_attachments["items"][0]["attachmentId"]
        .as_str()
        .expect("id")
        .to_owned();
    api.get_raw(
        &format!("/ebox/messages/{second}/attachments/{second_main}/content"),
        &token,
    )
    .await;
    let mut reads = Vec::new();
    while reads.last() != Some(&second) {
        let status = sender.next_status(WAIT).await.expect("a status");
        assert_eq!(status.status, Status::Read, "{status:?}");
        assert!(status.read_at.is_some());
        reads.push(status.message_id.expect("id").as_uuid());
    }
    assert_eq!(reads, [first, second], "one receipt per message");

    // Hiding: gone from the default list, there with visible=false.
    let patch = api
        .http
        .patch(format!("{}/ebox/messages", api.base))
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"items": [{"messageId": second, "visible": false}]}).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(patch.status(), StatusCode::OK);
    let (_, visible) = api.get("/ebox/messages", Some(&token)).await;
    assert_eq!(visible["totalItems"], 1);
    let (_, hidden) = api.get("/ebox/messages?visible=false", Some(&token)).await;
    assert_eq!(hidden["items"][0]["messageId"], second.to_string());
    let refused = api
        .http
        .patch(format!("{}/ebox/messages", api.base))
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"items": [{"messageId": theirs, "visible": false}]}).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(
        refused.status(),
        StatusCode::NOT_FOUND,
        "nobody hides someone else's message"
    );

    // Every call is audited with the token's hash, never the token or the national number.
    let audited: Vec<Value> =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE stage = 'api'")
            .fetch_all(&app.pool)
            .await
            .expect("audit");
    let token_hash = api::auth::token_sha256(&token);
    assert!(
        audited
            .iter()
            .any(|d| d["tokenSha256"] == token_hash.as_str() && d["method"] == "GET")
    );
    assert!(
        audited
            .iter()
            .any(|d| d["method"] == "PATCH" && d["responseCode"] == 404),
        "writes are audited even when refused"
    );
    assert!(
        audited
            .iter()
            .any(|d| d["attachments"][0]["mediaType"] == "application/pdf")
    );
    let text = serde_json::to_string(&audited).expect("JSON");
    assert!(!text.contains(SAMPLE_SSIN) && !text.contains(&token));
}

#[tokio::test]
async fn a_citizens_documents_are_neither_cached_nor_sniffed_and_their_content_is_sandboxed() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let message = deliver(
        &mut sender,
        "ref-api-headers",
        with_annex(SAMPLE_SSIN, "Attest"),
    )
    .await;
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);

    let (_, attachments) = api
        .get(
            &format!("/ebox/messages/{message}/attachments"),
            Some(&token),
        )
        .await;
    let attachments: Vec<(String, String)> = attachments["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| {
            (
                a["attachmentId"].as_str().expect("id").to_owned(),
                a["fileName"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    assert_eq!(attachments.len(), 2, "the main content and the annex");

    let mut metadata = vec![
        "/ebox".to_owned(),
        "/ebox/messages".to_owned(),
        format!("/ebox/messages/{message}"),
        format!("/ebox/messages/{message}/attachments"),
        format!("/ebox/messages/{message}/body"),
        format!("/ebox/messages/{}", uuid::Uuid::new_v4()),
    ];
    metadata.extend(
        attachments
            .iter()
            .map(|(id, _)| format!("/ebox/messages/{message}/attachments/{id}")),
    );
    for path in &metadata {
        let response = api.get_raw(path, &token).await;
        assert_private(&response, path);
    }

    for (id, file_name) in &attachments {
        let path = format!("/ebox/messages/{message}/attachments/{id}/content");
        let response = api.get_raw(&path, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_download(&response, file_name, &path);
    }
    let head = api
        .http
        .head(format!(
            "{}/ebox/messages/{message}/attachments/{}/content",
            api.base, attachments[0].0
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_download(&head, &attachments[0].1, "a HEAD of the content");

    let reference = api.get_raw("/referenceData/messageTypes", &token).await;
    assert_eq!(
        reference.headers()["cache-control"],
        "public, no-transform, proxy-revalidate, max-age=86400",
        "reference data stays cacheable"
    );
}

#[tokio::test]
async fn nobody_gets_in_without_a_valid_token_and_nobody_sees_another_citizens_message() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    app.grant_consent(OTHER_SSIN).await;
    let mut sender = app.sender().await;
    let mine = deliver(
        &mut sender,
        "ref-mine",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let theirs = deliver(
        &mut sender,
        "ref-theirs",
        sample_v2(OTHER_SSIN, MESSAGE_TYPE),
    )
    .await;
    let api = Api::of(&app);
    let path = format!("/ebox/messages/{mine}");

    let now = Utc::now().timestamp();
    let unsigned = format!(
        "{}.{}.",
        base64_url(&json!({"alg": "none", "typ": "JWT"})),
        base64_url(
            &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": SAMPLE_SSIN, "exp": now + 600, "scope": ALL_SCOPES, "acr": "high"})
        )
    );
    let rs256 = mint(&TokenArgs {
        kid: Some("test-rs256".into()),
        ..args("rs256-private.pem")
    })
    .expect("token");
    let (status, _) = api.get(&path, Some(&rs256)).await;
    assert_eq!(status, StatusCode::OK, "RS256 tokens are accepted too");
    let unauthorized = [
        ("no token", None),
        ("alg none", Some(unsigned)),
        ("garbage", Some("not.a.token".to_owned())),
        (
            "wrong audience",
            Some(
                mint(&TokenArgs {
                    audience: "someone-else".into(),
                    ..args("es256-private.pem")
                })
                .expect("t"),
            ),
        ),
        (
            "wrong issuer",
            Some(
                mint(&TokenArgs {
                    issuer: "https://evil.test".into(),
                    ..args("es256-private.pem")
                })
                .expect("t"),
            ),
        ),
        (
            "expired",
            Some(
                mint(&TokenArgs {
                    ttl: -3600,
                    ..args("es256-private.pem")
                })
                .expect("t"),
            ),
        ),
        (
            "unknown key",
            Some(
                mint(&TokenArgs {
                    kid: None,
                    ..args("stranger-es256-private.pem")
                })
                .expect("t"),
            ),
        ),
    ];
    for (case, token) in &unauthorized {
        let (status, body) = api.get(&path, token.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert_valid("StatusMessage", &body);
    }
    let forbidden = [
        (
            "no scope",
            mint(&TokenArgs {
                scope: "ebox:summary".into(),
                ..args("es256-private.pem")
            })
            .expect("t"),
        ),
        (
            "low assurance",
            mint(&TokenArgs {
                acr: "http://eidas.europa.eu/LoA/low".into(),
                ..args("es256-private.pem")
            })
            .expect("t"),
        ),
        (
            "not a citizen",
            mint(&TokenArgs {
                sub: Some("portal".into()),
                ..args("es256-private.pem")
            })
            .expect("t"),
        ),
    ];
    for (case, token) in &forbidden {
        let (status, body) = api.get(&path, Some(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}");
        assert_valid("StatusMessage", &body);
    }

    // Another citizen's message, attachment, body or content, and a message that does not
    // exist: one and the same 404.
    let token = citizen_token(SAMPLE_SSIN);
    let other_token = citizen_token(OTHER_SSIN);
    let (_, their_attachments) = api
        .get(
            &format!("/ebox/messages/{theirs}/attachments"),
            Some(&other_token),
        )
        .await;
    let their_attachment = their_attachments["items"][0]["attachmentId"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut bodies = Vec::new();
    for probe in [
        format!("/ebox/messages/{theirs}"),
        format!("/ebox/messages/{theirs}/attachments"),
        format!("/ebox/messages/{theirs}/attachments/{their_attachment}"),
        format!("/ebox/messages/{theirs}/attachments/{their_attachment}/content"),
        format!("/ebox/messages/{theirs}/body"),
        format!("/ebox/messages/{mine}/attachments/{their_attachment}"),
        format!("/ebox/messages/{}", uuid::Uuid::new_v4()),
        "/ebox/messages/not-even-a-uuid".to_owned(),
    ] {
        let (status, body) = api.get(&probe, Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{probe}");
        assert_valid("StatusMessage", &body);
        bodies.push((body["code"].clone(), body["message"].clone()));
    }
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "the 404s must not tell cases apart: {bodies:?}"
    );

    // An expired message is never returned, even before retention deletes it.
    sqlx::query(
        "UPDATE documents SET expiration_date = now() - interval '1 minute' WHERE message_id = $1",
    )
    .bind(mine)
    .execute(&app.pool)
    .await
    .expect("update");
    let (status, _) = api.get(&path, Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = api.get("/ebox/messages", Some(&token)).await;
    assert_eq!(
        (list["items"].clone(), list["totalItems"].clone()),
        (json!([]), json!(0))
    );
}

fn base64_url(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn reference_data_is_served_cacheable_and_as_the_contract_describes() {
    // Served under a base path, as behind an ingress that routes /ebox-api to the service.
    let app = spawn_app_with(Options {
        api: true,
        vars: vec![("EBOX_API_BASE_PATH".to_owned(), "/ebox-api/".to_owned())],
        ..Options::default()
    })
    .await;
    let mut api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);
    let (status, _) = api.get("/referenceData/messageTypes", Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing outside the base path"
    );
    api.base = format!("{}/ebox-api", api.base);
    let description = api
        .http
        .get(format!("{}/openapi.yaml", api.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        description.status(),
        StatusCode::OK,
        "the API describes itself"
    );
    assert!(
        description
            .text()
            .await
            .expect("text")
            .contains("/ebox/messages")
    );
    for (path, definition) in [
        ("/referenceData/messageTypes", "MessageTypes"),
        (
            &format!("/referenceData/messageTypes/{MESSAGE_TYPE}") as &str,
            "MessageType",
        ),
        ("/referenceData/senderOrganizations", "SenderOrganizations"),
        (
            &format!("/referenceData/senderOrganizations/{ORGANIZATION}"),
            "SenderOrganization",
        ),
        ("/referenceData/senderApplications", "SenderApplications"),
        (
            "/referenceData/senderApplications/unemployment",
            "SenderApplication",
        ),
    ] {
        let response = api.get_raw(path, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, no-transform, proxy-revalidate, max-age=86400"
        );
        let body: Value = response.json().await.expect("JSON");
        assert_valid(definition, &body);
    }
    let (_, types) = api.get("/referenceData/messageTypes", Some(&token)).await;
    assert_eq!(types["totalItems"], 2);
    let (_, one) = api
        .get(
            &format!("/referenceData/messageTypes/{MESSAGE_TYPE}"),
            Some(&token),
        )
        .await;
    assert_eq!(one["senderOrganizationIds"], json!([ORGANIZATION]));
    assert_eq!(one["messageTypeName"]["fr"], "Attestation");
    let (_, app_entry) = api
        .get(
            "/referenceData/senderApplications/unemployment",
            Some(&token),
        )
        .await;
    assert_eq!(
        app_entry["applicationName"]["de"], "Werkloosheid",
        "a missing language is filled"
    );
    let (status, _) = api
        .get("/referenceData/messageTypes/nope", Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let no_scope = mint(&TokenArgs {
        scope: "ebox:messages".into(),
        ..args("es256-private.pem")
    })
    .expect("t");
    let (status, _) = api
        .get("/referenceData/messageTypes", Some(&no_scope))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_sender_searches_the_status_of_its_own_messages_only() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let id = deliver(
        &mut sender,
        "ref-status",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let api = Api::of(&app);
    let request =
        json!([{"messageId": id, "eboxId": {"eboxType": "citizen", "eboxIdValue": SAMPLE_SSIN}}]);
    let search = |client_id: &str, scope: &str| {
        let token = mint(&TokenArgs {
            sub: None,
            client_id: Some(client_id.into()),
            scope: scope.into(),
            ..args("es256-private.pem")
        })
        .expect("t");
        api.http
            .post(format!("{}/searchMessageStatus", api.base))
            .bearer_auth(token)
            .json(&request)
            .send()
    };
    let response = search(&app.sender_id, "ebox:sender").await.expect("answer");
    assert_eq!(response.status(), StatusCode::CREATED);
    let found: Value = response.json().await.expect("JSON");
    assert_valid("MessagesStatusList", &found);
    assert_eq!(found[0]["messageId"], id.to_string());
    assert_eq!(found[0]["readStatus"], false);
    let response = search("another-sender", "ebox:sender")
        .await
        .expect("answer");
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!([]),
        "not another sender's"
    );
    let response = search(&app.sender_id, "ebox:messages")
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[test]
fn the_contract_schemas_used_above_do_reject_a_wrong_shape() {
    let result = std::panic::catch_unwind(|| {
        assert_valid("Message", &json!({"messageId": 1, "subject": {}}));
    });
    assert!(result.is_err(), "the validator must not accept anything");
    let result = std::panic::catch_unwind(|| {
        assert_valid(
            "PublicationStatusMessage",
            &json!({"messageId": "m", "expirationDate": "tomorrow"}),
        );
    });
    assert!(result.is_err(), "formats (date-time) are checked");
}

#[tokio::test]
async fn the_published_and_read_statuses_carry_proofs_anyone_can_verify_with_the_jwks() {
    use evidence::proof::{ProofKind, recipient_digest, verify};
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    sender
        .publish(
            sender.properties("ref-proof", TYPE_V2),
            &serde_json::to_vec(&sample_v2(SAMPLE_SSIN, MESSAGE_TYPE)).expect("JSON"),
        )
        .await
        .expect("published");
    let published = loop {
        let status = sender.next_status(WAIT).await.expect("a status");
        if status.status == Status::Published {
            break status;
        }
    };
    let keys = evidence::keys::Keyring::from_jwks(
        &std::fs::read_to_string(fixture("proof-jwks.json")).expect("the JWKS"),
    )
    .expect("a JWKS");
    let message_id = published.message_id.expect("an id").to_string();

    let deposit = published.proof_of_deposit.expect("a proof of deposit");
    let claims = verify(&keys, &deposit).expect("the proof verifies");
    assert_eq!(claims.proof, ProofKind::Deposit);
    // The proof names the audit record of its event, which the trail's seal then covers.
    let action: String = sqlx::query_scalar("SELECT action FROM audit_events WHERE id = $1")
        .bind(
            claims
                .audit_record
                .expect("the audit record of the deposit"),
        )
        .fetch_one(&app.pool)
        .await
        .expect("the record");
    assert_eq!(action, "stored");
    assert_eq!(claims.message_id, message_id);
    assert_eq!(claims.sender_reference, "ref-proof");
    assert_eq!(claims.sender, app.sender_id);
    assert_eq!(claims.recipient, recipient_digest(SAMPLE_SSIN, &message_id));
    assert_eq!(
        claims.attachments[0].sha256,
        domain::digest::Sha256Digest::of(ebox::demo::SAMPLE_PDF).to_base64url()
    );
    assert_eq!(
        claims.expiration_date,
        published.expiration_date.expect("a date")
    );
    // A JOSE library that is not ours agrees (Python's joserfc; the test command installs it).
    let dir = std::env::temp_dir().join(format!("ebox-proof-{}", app.id));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    std::fs::write(dir.join("proof.jws"), &deposit).expect("written");
    let interop = std::process::Command::new("python3")
        .arg(format!(
            "{}/interop/verify_proof.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(fixture("proof-jwks.json"))
        .arg(dir.join("proof.jws"))
        .output()
        .expect("python3 runs");
    assert!(
        interop.status.success(),
        "joserfc refused the proof: {}",
        String::from_utf8_lossy(&interop.stderr)
    );
    let seen: Value = serde_json::from_slice(&interop.stdout).expect("the claims as JSON");
    assert_eq!(seen["messageId"], message_id.as_str());
    let _ = std::fs::remove_dir_all(&dir);
    // One changed byte in the claims and it no longer verifies.
    let mut parts: Vec<String> = deposit.split('.').map(str::to_owned).collect();
    let mut payload = parts[1].clone().into_bytes();
    payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(payload).expect("ASCII");
    assert!(verify(&keys, &parts.join(".")).is_err());

    // The citizen opens the document: the sender hears `read` with a proof of reading.
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);
    let (_, attachments) = api
        .get(
            &format!("/ebox/messages/{message_id}/attachments"),
            Some(&token),
        )
        .await;
    let main = attachments["items"][0]["attachmentId"]
        .as_str()
        .expect("an attachment id")
        .to_owned();
    api.get_raw(
        &format!("/ebox/messages/{message_id}/attachments/{main}/content"),
        &token,
    )
    .await;
    let read = sender.next_status(WAIT).await.expect("the read status");
    assert_eq!(read.status, Status::Read, "{read:?}");
    let reading = verify(&keys, &read.proof_of_reading.expect("a proof of reading"))
        .expect("the proof verifies");
    assert_eq!(reading.proof, ProofKind::Reading);
    assert_eq!(reading.message_id, message_id);
    assert_eq!(reading.read_at, read.read_at);
    assert_eq!(reading.attachments, claims.attachments);

    // The API publishes the keys, to anybody.
    let (status, jwks) = api.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let published_keys: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("proof-jwks.json")).expect("the JWKS"),
    )
    .expect("JSON");
    assert_eq!(jwks, published_keys);
}

#[tokio::test]
async fn a_document_larger_than_one_read_is_streamed_whole() {
    use base64::Engine as _;
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    // Several of the API's reads (api::download::CHUNK), and not a multiple of one.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..(3 * api::download::CHUNK as usize + 12_345)).map(|i| (i % 251) as u8));
    let mut body = sample_v2(SAMPLE_SSIN, MESSAGE_TYPE);
    body["attachments"][0]["content"] = base64::engine::general_purpose::STANDARD
        .encode(&pdf)
        .into();
    body["attachments"][0]["digest"]["digestValue"] =
        domain::digest::Sha256Digest::of(&pdf).to_base64url().into();
    let id = deliver(&mut sender, "ref-large", body).await;
    let response = open_main_content(&app, id, &citizen_token(SAMPLE_SSIN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        pdf.len().to_string().as_str()
    );
    let received = response.bytes().await.expect("the whole body");
    assert!(received.as_ref() == pdf.as_slice(), "the same bytes");
}

#[tokio::test]
async fn a_citizen_over_their_limit_is_told_to_wait_and_others_are_not() {
    let app = spawn_app_with(Options {
        vars: vec![
            ("EBOX_API_RATE_PER_CITIZEN".into(), "0.1".into()),
            ("EBOX_API_BURST_PER_CITIZEN".into(), "3".into()),
        ],
        ..Options::with_api()
    })
    .await;
    let api = Api::of(&app);
    let token = citizen_token(SAMPLE_SSIN);
    for _ in 0..3 {
        let (status, _) = api.get("/ebox", Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let over = api.get_raw("/ebox", &token).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = over.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&wait), "{wait}");
    let body: Value = over.json().await.expect("a StatusMessage");
    assert_eq!(body["code"], "TOO_MANY_REQUESTS");
    // Another citizen has a budget of their own.
    let (status, _) = api.get("/ebox", Some(&citizen_token(OTHER_SSIN))).await;
    assert_eq!(status, StatusCode::OK);
    // The refusal is on the trail, under the citizen's name.
    let refused: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT code FROM audit_events WHERE stage = 'api' AND action = 'refused'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("read the audit trail");
    assert_eq!(refused, [Some("429".to_owned())]);
}

#[tokio::test]
async fn after_the_national_number_key_rotates_old_records_are_still_found() {
    let mut app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let before = deliver(
        &mut sender,
        "ref-before",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;

    // The operator rotates: a new key, the old one kept for look-ups.
    let old_key = app.settings.ssin_hash_key.clone();
    app.stop_workers().await;
    app.settings.ssin_hash_key = b"the-rotated-national-number-key-0123456789".to_vec();
    app.settings.ssin_hash_previous_keys = vec![old_key];
    app.start_workers(&ebox::workers::Worker::ALL).await;
    let mut tasks = tokio::task::JoinSet::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let addr = ebox::workers::start_api(&app.settings, &app.pool, &mut tasks, &shutdown)
        .await
        .expect("the API starts with the rotated key");
    let api = Api {
        base: app.front(addr).await,
        http: reqwest::Client::new(),
    };

    // The consent recorded under the old key still counts, and the new document is kept
    // under the new one.
    let after = deliver(
        &mut sender,
        "ref-after",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let ssin = domain::ssin::Ssin::parse(SAMPLE_SSIN).expect("a national number");
    let keys = app.settings.ssin_hasher().keys(&ssin);
    let stored: String = sqlx::query_scalar("SELECT citizen FROM documents WHERE message_id = $1")
        .bind(after)
        .fetch_one(&app.pool)
        .await
        .expect("the new document");
    assert_eq!(&stored, keys.current().as_str());
    // The citizen sees both, the one from before the rotation included.
    let (status, page) = api
        .get("/ebox/messages", Some(&citizen_token(SAMPLE_SSIN)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["messageId"].as_str().expect("an id").to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![before.to_string(), after.to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    shutdown.cancel();
}
