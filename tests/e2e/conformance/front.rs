//! The API as the end-to-end tests reach it: a reverse proxy on loopback in front of the real
//! API. Every request a test makes passes through it unchanged (method, path and query as
//! sent, every header, `Host` and `X-Forwarded-For` included); every answer is checked against
//! the description ([`Spec::check`]) on its way back and passed on unchanged. A JSON or YAML
//! answer is read whole to be checked; other bytes (an attachment's content, a logo) are
//! streamed through, so that a download cut short stays cut short and a download in progress
//! stays in progress.
//!
//! What does not conform is recorded in [`Violations`], named by method, path, status and
//! problem; the harness fails the test with them ([`crate::helpers::TestApp`]'s drop).

use super::spec::{Answer, Spec};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The answers that did not conform, shared by a test's fronts, and how many were checked.
#[derive(Clone, Default)]
pub struct Violations {
    found: Arc<Mutex<Vec<String>>>,
    checked: Arc<AtomicUsize>,
}

impl Violations {
    fn record(&self, violation: String) {
        eprintln!("api/openapi.yaml: {violation}");
        if let Ok(mut violations) = self.found.lock() {
            violations.push(violation);
        }
    }

    /// Every violation recorded so far, removed.
    pub fn take(&self) -> Vec<String> {
        self.found
            .lock()
            .map(|mut violations| std::mem::take(&mut *violations))
            .unwrap_or_default()
    }

    /// How many answers were checked so far.
    pub fn checked(&self) -> usize {
        self.checked.load(Ordering::SeqCst)
    }
}

struct Front {
    upstream: SocketAddr,
    /// The API's base path without its trailing `/` (empty for `/`).
    base_path: String,
    http: reqwest::Client,
    violations: Violations,
}

/// Headers of one connection, never forwarded; `Content-Length` is the forwarded body's.
const HOP_BY_HOP: [HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::UPGRADE,
];

/// Starts a front for the API at `upstream` served under `base_path`; returns its root URL.
pub async fn start(upstream: SocketAddr, base_path: &str, violations: Violations) -> String {
    let front = Arc::new(Front {
        upstream,
        base_path: base_path.trim_end_matches('/').to_owned(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client"),
        violations,
    });
    let app = axum::Router::new().fallback(forward).with_state(front);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the front listens");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Sends the request on, checks the answer and passes it back.
async fn forward(State(front): State<Arc<Front>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match front.send(&parts, body).await {
        Some(response) => front.check_and_pass_back(&parts, response).await,
        // Not an answer of the API (it stopped): nothing to check.
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

impl Front {
    /// The request to the API as the test made it: method, path and query, headers, body.
    async fn send(&self, parts: &Parts, body: Body) -> Option<reqwest::Response> {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let body = axum::body::to_bytes(body, usize::MAX).await.ok()?;
        let mut upstream = self
            .http
            .request(
                parts.method.clone(),
                format!("http://{}{target}", self.upstream),
            )
            .body(body);
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(name) {
                upstream = upstream.header(name, value);
            }
        }
        upstream.send().await.ok()
    }

    /// The answer checked (read whole when it is JSON or YAML, otherwise before its bytes are
    /// streamed through), then passed back unchanged.
    async fn check_and_pass_back(&self, parts: &Parts, response: reqwest::Response) -> Response {
        let status = response.status();
        let headers = passed_on(response.headers());
        let path = self.below_base(parts.uri.path());
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let check = |body: Option<&[u8]>| {
            let verdict = Spec::get().check(&Answer {
                method: &parts.method,
                path: path.as_deref(),
                status,
                headers: &headers,
                body,
            });
            self.record(&parts.method, target, status, verdict);
        };
        let body = if read_whole(&headers) {
            let Ok(bytes) = response.bytes().await else {
                return StatusCode::BAD_GATEWAY.into_response();
            };
            check(Some(&bytes));
            Body::from(bytes)
        } else {
            check(None);
            streamed(response)
        };
        let mut answer = Response::new(body);
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        answer
    }

    /// `path` below the base path, or `None` outside it.
    fn below_base(&self, path: &str) -> Option<String> {
        if self.base_path.is_empty() {
            return Some(path.to_owned());
        }
        let rest = path.strip_prefix(&self.base_path)?;
        match rest {
            "" => Some("/".to_owned()),
            rest if rest.starts_with('/') => Some(rest.to_owned()),
            _ => None,
        }
    }

    /// Counts a checked answer, and records it when it did not conform.
    fn record(
        &self,
        method: &axum::http::Method,
        target: &str,
        status: StatusCode,
        verdict: Result<(), String>,
    ) {
        self.violations.checked.fetch_add(1, Ordering::SeqCst);
        if let Err(problem) = verdict {
            self.violations
                .record(format!("{method} {target} → {status}: {problem}"));
        }
    }
}

/// The answer's headers, less those of the connection (`Content-Length` is kept: the client
/// reads the same body).
fn passed_on(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        kept.remove(name);
    }
    kept
}

/// JSON and YAML are read whole and checked; so is an answer without a media type (it must
/// have no body).
fn read_whole(headers: &HeaderMap) -> bool {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    media_type.is_empty()
        || media_type.starts_with("application/json")
        || media_type.starts_with("application/yaml")
        || media_type.contains("+json")
}

/// The answer's bytes as they come; an error upstream (a download cut short) cuts the client's
/// download short too.
fn streamed(response: reqwest::Response) -> Body {
    let chunks = futures_util::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(error) => Some((Err(error), None)),
        }
    });
    Body::from_stream(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// An API that answers its summary with a count as a string and an error that is no
    /// StatusMessage, and streams an attachment without its headers.
    async fn wrong_api() -> SocketAddr {
        let private = [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ];
        let app = axum::Router::new()
            .route(
                "/base/ebox",
                get(move || async move {
                    (
                        private,
                        axum::Json(serde_json::json!({"numberOfMessages": "two"})),
                    )
                }),
            )
            .route(
                "/base/ebox/messages",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        "Failed to deserialize query string",
                    )
                }),
            )
            .route(
                "/base/ebox/messages/{id}/attachments/{a}/content",
                get(|| async { ([(header::CONTENT_TYPE, "application/pdf")], "%PDF-") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn an_answer_off_the_description_reaches_the_test_unchanged_and_is_recorded() {
        let violations = Violations::default();
        let base = start(wrong_api().await, "/base/", violations.clone()).await;
        let http = reqwest::Client::new();
        let summary = http
            .get(format!("{base}/base/ebox"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(summary.status(), StatusCode::OK, "passed on as it was");
        assert_eq!(
            summary.text().await.expect("text"),
            r#"{"numberOfMessages":"two"}"#
        );
        let list = http
            .get(format!("{base}/base/ebox/messages?page=x"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(list.status(), StatusCode::BAD_REQUEST);
        let content = http
            .get(format!("{base}/base/ebox/messages/m/attachments/a/content"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(content.bytes().await.expect("bytes").as_ref(), b"%PDF-");

        let found = violations.take();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].starts_with("GET /base/ebox → 200 OK: GET /ebox answered 200 OK")
                && found[0].contains("numberOfMessages"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("GET /base/ebox/messages?page=x → 400 Bad Request")
                && found[1].contains("text/plain is not declared"),
            "{}",
            found[1]
        );
        assert!(
            found[2].contains("Content-Security-Policy is missing")
                && found[2].contains("Content-Disposition is missing"),
            "{}",
            found[2]
        );
        assert!(violations.take().is_empty(), "taken");
        assert_eq!(violations.checked(), 3);
    }
}
