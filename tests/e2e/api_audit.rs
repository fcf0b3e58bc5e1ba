//! The citizen API on the audit trail: a refused call leaves a trace (its status, the client's
//! address, the digest of the token it sent, and who it was when the token was valid); a
//! `PATCH` and its record commit together or not at all; `read-confirmed` names the sender and
//! the citizen like every other record.

use crate::helpers::*;
use domain::ssin::Ssin;
use domain::status::Status;
use ebox::demo::{SAMPLE_SSIN, sample_v2};
use ebox::token::{TokenArgs, mint};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OTHER_SSIN: &str = "01010100126";
const CLIENT: &str = "ebox-portal";

fn args() -> TokenArgs {
    TokenArgs {
        key: fixture("es256-private.pem").into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        sub: Some(SAMPLE_SSIN.into()),
        client_id: Some(CLIENT.into()),
        scope: "ebox:summary ebox:messages ebox:referencedata".into(),
        acr: "http://eidas.europa.eu/LoA/substantial".into(),
        ttl: 600,
        kid: Some("test-es256".into()),
    }
}

fn citizen_token() -> String {
    mint(&args()).expect("a token")
}

/// The hex SHA-256 of `token`, computed here rather than by the API's own function.
fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn citizen_hash(app: &TestApp, ssin: &str) -> String {
    let ssin = Ssin::parse(ssin).expect("a national number");
    app.hasher.hash(&ssin).as_str().to_owned()
}

/// A call to the API: a path, a token if any, extra headers, and for a PATCH its body.
struct Call<'a> {
    path: String,
    token: Option<&'a str>,
    forwarded_for: Option<&'a str>,
    patch: Option<Value>,
}

async fn call(app: &TestApp, call: Call<'_>) -> StatusCode {
    let base = app.api.clone().expect("the API runs");
    let http = reqwest::Client::new();
    let url = format!("{base}{}", call.path);
    let mut request = match &call.patch {
        Some(body) => http
            .patch(url)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string()),
        None => http.get(url),
    };
    if let Some(token) = call.token {
        request = request.bearer_auth(token);
    }
    if let Some(forwarded_for) = call.forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request.send().await.expect("the API answers").status()
}

fn get(path: String, token: Option<&str>) -> Call<'_> {
    Call {
        path,
        token,
        forwarded_for: None,
        patch: None,
    }
}

fn hide<'a>(ids: &[uuid::Uuid], token: &'a str) -> Call<'a> {
    let items: Vec<Value> = ids
        .iter()
        .map(|id| json!({"messageId": id, "visible": false}))
        .collect();
    Call {
        path: "/ebox/messages".to_owned(),
        token: Some(token),
        forwarded_for: None,
        patch: Some(json!({ "items": items })),
    }
}

/// One API record: action, code, client id, citizen hash, details.
type ApiRecord = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Value,
);

async fn api_records(app: &TestApp) -> Vec<ApiRecord> {
    sqlx::query_as(
        "SELECT action, code, sender_id, ssin_hash, details FROM audit_events
          WHERE stage = 'api' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("read the audit trail")
}

async fn visible(app: &TestApp, ids: &[uuid::Uuid]) -> Vec<bool> {
    sqlx::query_scalar(
        "SELECT visible FROM documents WHERE message_id = ANY($1) ORDER BY message_id",
    )
    .bind(ids)
    .fetch_all(&app.pool)
    .await
    .expect("read the documents")
}

#[tokio::test]
async fn a_refused_call_is_on_the_trail_with_its_status_the_client_address_and_the_tokens_digest() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(OTHER_SSIN).await;
    let mut sender = app.sender().await;
    let theirs = deliver(
        &mut sender,
        "ref-theirs",
        sample_v2(OTHER_SSIN, MESSAGE_TYPE),
    )
    .await;
    let token = citizen_token();
    let garbage = "not.a.token";
    let unscoped = mint(&TokenArgs {
        scope: "ebox:summary".into(),
        ..args()
    })
    .expect("a token");
    let message = format!("/ebox/messages/{theirs}");

    let calls = [
        (get("/ebox/messages".into(), None), StatusCode::UNAUTHORIZED),
        (
            get("/ebox/messages".into(), Some(garbage)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Call {
                forwarded_for: Some("203.0.113.9, 10.1.2.3"),
                ..get(message.clone(), Some(&unscoped))
            },
            StatusCode::FORBIDDEN,
        ),
        (get(message.clone(), Some(&token)), StatusCode::NOT_FOUND),
        (hide(&[theirs], &token), StatusCode::NOT_FOUND),
    ];
    for (request, expected) in calls {
        let what = request.path.clone();
        assert_eq!(call(&app, request).await, expected, "{what}");
    }

    let records = api_records(&app).await;
    let me = citizen_hash(&app, SAMPLE_SSIN);
    // What each call left: code, method, URL, token digest, client id, citizen hash.
    let expected = [
        ("401", "GET", "/ebox/messages", None, None, None),
        (
            "401",
            "GET",
            "/ebox/messages",
            Some(sha256_hex(garbage)),
            None,
            None,
        ),
        (
            "403",
            "GET",
            message.as_str(),
            Some(sha256_hex(&unscoped)),
            Some(CLIENT),
            Some(me.clone()),
        ),
        (
            "404",
            "GET",
            message.as_str(),
            Some(sha256_hex(&token)),
            Some(CLIENT),
            Some(me.clone()),
        ),
        (
            "404",
            "PATCH",
            "/ebox/messages",
            Some(sha256_hex(&token)),
            Some(CLIENT),
            Some(me.clone()),
        ),
    ];
    assert_eq!(
        records.len(),
        expected.len(),
        "one record per call: {records:#?}"
    );
    for ((action, code, client, citizen, details), (status, method, url, digest, who, hash)) in
        records.iter().zip(&expected)
    {
        let what = format!("{method} {url} → {status}");
        assert_eq!(action, "refused", "{what}");
        assert_eq!(code.as_deref(), Some(*status), "{what}");
        assert_eq!(details["responseCode"].to_string(), *status, "{what}");
        assert_eq!(details["method"], *method, "{what}");
        assert_eq!(details["url"], *url, "{what}");
        assert_eq!(details["clientAddress"], "127.0.0.1", "{what}");
        assert_eq!(details["tokenSha256"].as_str(), digest.as_deref(), "{what}");
        assert_eq!(client.as_deref(), *who, "{what}");
        assert_eq!(details["clientId"].as_str(), *who, "{what}");
        assert_eq!(citizen, hash, "{what}");
    }
    assert_eq!(
        records[2].4["forwardedFor"], "203.0.113.9, 10.1.2.3",
        "X-Forwarded-For is kept as given, apart from the peer's address"
    );
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(at, r)| at == 2 || r.4.get("forwardedFor").is_none()),
        "only where it was sent"
    );
    let text = serde_json::to_string(&records).expect("JSON");
    for secret in [token.as_str(), unscoped.as_str(), garbage, SAMPLE_SSIN] {
        assert!(!text.contains(secret), "the trail holds {secret}");
    }
}

#[tokio::test]
async fn a_patch_and_its_audit_record_commit_together_or_not_at_all() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let first = deliver(
        &mut sender,
        "ref-hide-1",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let second = deliver(
        &mut sender,
        "ref-hide-2",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let ids = [first, second];
    let token = citizen_token();

    // The trail refuses the API's update records: the change must not stand without one.
    sqlx::raw_sql(
        "CREATE FUNCTION test_refuse_api_updates() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.stage = 'api' AND NEW.action = 'update' THEN
                 RAISE EXCEPTION 'the test refuses API update records';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER test_refuse_api_updates BEFORE INSERT ON audit_events
             FOR EACH ROW EXECUTE FUNCTION test_refuse_api_updates();",
    )
    .execute(&app.pool)
    .await
    .expect("install the refusing trigger");
    assert_eq!(
        call(&app, hide(&ids, &token)).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        visible(&app, &ids).await,
        [true, true],
        "without its audit record, the change is rolled back"
    );
    assert!(api_records(&app).await.is_empty());

    sqlx::raw_sql("DROP TRIGGER test_refuse_api_updates ON audit_events")
        .execute(&app.pool)
        .await
        .expect("drop the trigger");
    assert_eq!(call(&app, hide(&ids, &token)).await, StatusCode::OK);
    assert_eq!(visible(&app, &ids).await, [false, false]);
    let records = api_records(&app).await;
    assert_eq!(records.len(), 1, "exactly one record: {records:#?}");
    let (action, code, client, citizen, details) = &records[0];
    assert_eq!(
        (action.as_str(), code.as_deref(), client.as_deref()),
        ("update", Some("200"), Some(CLIENT))
    );
    assert_eq!(
        citizen.as_deref(),
        Some(citizen_hash(&app, SAMPLE_SSIN).as_str())
    );
    assert_eq!(details["method"], "PATCH");
    assert_eq!(details["tokenSha256"], sha256_hex(&token).as_str());
    assert_eq!(details["clientAddress"], "127.0.0.1");
    assert_eq!(
        details["updated"],
        json!([
            {"messageId": first, "visible": false},
            {"messageId": second, "visible": false},
        ])
    );
}

#[tokio::test]
async fn read_confirmed_names_the_sender_its_reference_and_the_citizen() {
    let app = spawn_app_with(Options::with_api()).await;
    app.grant_consent(SAMPLE_SSIN).await;
    let mut sender = app.sender().await;
    let message = deliver(
        &mut sender,
        "ref-read",
        sample_v2(SAMPLE_SSIN, MESSAGE_TYPE),
    )
    .await;
    let token = citizen_token();
    let content = open_main_content(&app, message, &token).await;
    assert_eq!(content.status(), StatusCode::OK);
    let read = sender.next_status(WAIT).await.expect("the read status");
    assert_eq!(read.status, Status::Read, "{read:?}");

    // Audited in the transaction that moved the status to `read`, before it was sent.
    let confirmed: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT sender_id, sender_reference, ssin_hash FROM audit_events
          WHERE stage = 'read-receipt' AND action = 'read-confirmed' AND message_id = $1",
    )
    .bind(message)
    .fetch_all(&app.pool)
    .await
    .expect("read the audit trail");
    assert_eq!(
        confirmed,
        [(
            Some(app.sender_id.clone()),
            Some("ref-read".to_owned()),
            Some(citizen_hash(&app, SAMPLE_SSIN)),
        )]
    );
}
