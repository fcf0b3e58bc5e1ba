//! The harness checks every answer a test receives: whatever the test asks, whatever the
//! client, the answer passed through the front and was checked on its way.

use crate::citizen_api::citizen_token;
use crate::helpers::*;
use ebox::demo::SAMPLE_SSIN;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn every_answer_a_test_receives_was_checked_against_the_description() {
    let app = spawn_app_with(Options {
        api: true,
        ..Options::default()
    })
    .await;
    let base = app.api.clone().expect("the API runs");
    let token = citizen_token(SAMPLE_SSIN);
    let http = reqwest::Client::new();
    let calls = [
        (Method::GET, "/ebox", None, StatusCode::UNAUTHORIZED),
        (Method::GET, "/ebox", Some(&token), StatusCode::OK),
        (Method::HEAD, "/ebox", Some(&token), StatusCode::OK),
        (
            Method::GET,
            "/nothing/here",
            Some(&token),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            "/ebox",
            Some(&token),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/openapi.yaml", None, StatusCode::OK),
        (Method::GET, "/.well-known/jwks.json", None, StatusCode::OK),
        (
            Method::GET,
            "/ebox/citizen/document/events?lastSequenceNbr=0&pageSize=10",
            Some(&token),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (method, path, token, expected) in &calls {
        let mut request = http.request(method.clone(), format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), *expected, "{method} {path}");
        response.bytes().await.expect("the whole answer");
    }
    // Over the HTTP server's limit on a body: refused before the handler, in plain text.
    let too_large = http
        .patch(format!("{base}/ebox/messages"))
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .expect("an answer");
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    too_large.bytes().await.expect("the whole answer");
    assert_eq!(app.answers_checked(), calls.len() + 1, "each answer, once");
}
