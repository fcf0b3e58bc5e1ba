//! The API's audit slice, with the fields the federation requires of a document provider:
//! timestamp, SHA-256 of the access token, client id, method, URL, response code, and details
//! (message and attachment ids, media types, sizes, digests), plus the client's address.
//!
//! Which calls leave a record ([`action`]): a refused one (400, 401, 403, 404, whatever the
//! method, so that probing leaves a trace) is `refused`; any other write is `update`; a read
//! that succeeded is `consultation`. A read that failed otherwise (a 5xx) leaves none: it is a
//! fault, logged where it happened.
//!
//! The middleware ([`record`]) puts an [`AuditSlot`] in the request with what it knows of the
//! call; the handlers fill in who called and what they touched; the middleware writes the
//! record once the response is known. A handler that changes something writes the record
//! itself, in the transaction of the change ([`AuditSlot::event`], then
//! [`AuditSlot::mark_recorded`] once committed), and the middleware then writes none.

use crate::AppState;
use crate::auth::token_sha256;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use domain::audit::{Action, Stage};
use domain::citizen::CitizenKey;
use domain::ids::MessageId;
use records::audit::AuditEvent;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tracing::error;
use uuid::Uuid;

/// The answers that count as a refusal.
const REFUSALS: [StatusCode; 5] = [
    StatusCode::BAD_REQUEST,
    StatusCode::UNAUTHORIZED,
    StatusCode::FORBIDDEN,
    StatusCode::NOT_FOUND,
    StatusCode::TOO_MANY_REQUESTS,
];

/// The most of an `X-Forwarded-For` header a record keeps: it is the client's to write.
const MAX_FORWARDED_FOR: usize = 256;

/// What the handlers learn: who called (once the token was valid) and what they touched.
#[derive(Debug, Default, Clone)]
pub struct AuditInfo {
    pub client_id: Option<String>,
    pub ssin_hash: Option<CitizenKey>,
    pub message_id: Option<Uuid>,
    pub details: serde_json::Map<String, serde_json::Value>,
    /// A handler wrote the record in the transaction of its effect: the middleware writes none.
    recorded: bool,
}

/// What the middleware knows of a call before the handler runs.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    /// As the client sent it, base path included.
    url: String,
    /// Of the bearer token, when one was sent (valid or not); never the token.
    token_sha256: Option<String>,
    /// The peer of the connection (a proxy, behind one).
    client_address: Option<IpAddr>,
    /// `X-Forwarded-For` as the client or a proxy gave it: recorded, never trusted.
    forwarded_for: Option<String>,
}

impl Default for Call {
    fn default() -> Self {
        Self {
            method: Method::GET,
            url: String::new(),
            token_sha256: None,
            client_address: None,
            forwarded_for: None,
        }
    }
}

#[derive(Clone, Default)]
pub struct AuditSlot {
    call: Arc<Call>,
    info: Arc<Mutex<AuditInfo>>,
    /// What the call holds until it is over (its place under the per-citizen limits).
    held: Arc<Mutex<Option<crate::limits::Permit>>>,
}

impl AuditSlot {
    /// Keeps `permit` until the call is over (its audit record written).
    pub fn hold(&self, permit: crate::limits::Permit) {
        if let Ok(mut held) = self.held.lock() {
            *held = Some(permit);
        }
    }

    pub fn with(&self, fill: impl FnOnce(&mut AuditInfo)) {
        if let Ok(mut info) = self.info.lock() {
            fill(&mut info);
        }
    }

    /// The record of this call answered with `status`, or `None` when such a call leaves none.
    pub fn event(&self, status: StatusCode) -> Option<AuditEvent> {
        let action = action(&self.call.method, status)?;
        let info = self
            .info
            .lock()
            .map(|info| info.clone())
            .unwrap_or_default();
        let call = &self.call;
        let mut event = AuditEvent::new(Stage::Api, action);
        event.http_status = Some(status.as_u16());
        event.sender_id = info.client_id.clone();
        event.message_id = info.message_id.map(MessageId::from_uuid);
        event.ssin_hash = info.ssin_hash;
        let mut details = info.details;
        details.insert("method".into(), call.method.as_str().into());
        details.insert("url".into(), call.url.clone().into());
        details.insert("responseCode".into(), status.as_u16().into());
        details.insert("tokenSha256".into(), call.token_sha256.clone().into());
        details.insert("clientId".into(), info.client_id.into());
        details.insert(
            "clientAddress".into(),
            call.client_address.map(|ip| ip.to_string()).into(),
        );
        if let Some(forwarded_for) = &call.forwarded_for {
            details.insert("forwardedFor".into(), forwarded_for.clone().into());
        }
        event.details = serde_json::Value::Object(details);
        Some(event)
    }

    /// The handler's record committed with its effect: the middleware writes none.
    pub fn mark_recorded(&self) {
        self.with(|info| info.recorded = true);
    }

    fn recorded(&self) -> bool {
        self.info.lock().map(|info| info.recorded).unwrap_or(false)
    }
}

/// What a call answered with `status` is on the trail as, if anything.
pub fn action(method: &Method, status: StatusCode) -> Option<Action> {
    let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if REFUSALS.contains(&status) {
        Some(Action::Refused)
    } else if write {
        Some(Action::Update)
    } else if status.is_success() {
        Some(Action::Consultation)
    } else {
        None
    }
}

/// The bearer token of a request, if any. The scheme's name is case-insensitive (RFC 7235
/// §2.1): `bearer` and `BEARER` are `Bearer`.
pub fn bearer(request_headers: &HeaderMap) -> Option<&str> {
    let value = request_headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Every `X-Forwarded-For` header, joined, cut at [`MAX_FORWARDED_FOR`] characters.
fn forwarded_for(request_headers: &HeaderMap) -> Option<String> {
    let given: Vec<String> = request_headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    if given.is_empty() {
        return None;
    }
    Some(given.join(", ").chars().take(MAX_FORWARDED_FOR).collect())
}

pub async fn record(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let call = Call {
        method: request.method().clone(),
        url: request
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| request.uri().to_string(), |uri| uri.0.to_string()),
        token_sha256: bearer(request.headers()).map(token_sha256),
        client_address: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|peer| peer.0.ip()),
        forwarded_for: forwarded_for(request.headers()),
    };
    let slot = AuditSlot {
        call: Arc::new(call),
        info: Arc::default(),
        held: Arc::default(),
    };
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    if slot.recorded() {
        return response;
    }
    let Some(event) = slot.event(response.status()) else {
        return response;
    };
    let recorded = async {
        let mut conn = state.pool.acquire().await?;
        event.record(&mut conn).await
    }
    .await;
    if let Err(e) = recorded {
        // The response is already decided; the failure is loud so that operators see the gap.
        error!(error = %e, "an API audit record could not be written");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_carry_no_token() {
        let token = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                axum::http::header::AUTHORIZATION,
                value.parse().expect("a header value"),
            );
            bearer(&headers).map(str::to_owned)
        };
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer  abc "] {
            assert_eq!(token(value).as_deref(), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(token(value), None, "{value:?}");
        }
    }

    #[test]
    fn a_refusal_is_refused_whatever_the_method_and_other_calls_keep_their_action() {
        let cases = [
            (Method::GET, StatusCode::OK, Some(Action::Consultation)),
            (Method::HEAD, StatusCode::OK, Some(Action::Consultation)),
            (Method::POST, StatusCode::CREATED, Some(Action::Update)),
            (Method::PATCH, StatusCode::OK, Some(Action::Update)),
            (Method::GET, StatusCode::UNAUTHORIZED, Some(Action::Refused)),
            (Method::GET, StatusCode::FORBIDDEN, Some(Action::Refused)),
            (Method::GET, StatusCode::NOT_FOUND, Some(Action::Refused)),
            (Method::GET, StatusCode::BAD_REQUEST, Some(Action::Refused)),
            (Method::PATCH, StatusCode::NOT_FOUND, Some(Action::Refused)),
            (Method::POST, StatusCode::FORBIDDEN, Some(Action::Refused)),
            (Method::GET, StatusCode::INTERNAL_SERVER_ERROR, None),
            (
                Method::PATCH,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(Action::Update),
            ),
        ];
        for (method, status, expected) in cases {
            assert_eq!(action(&method, status), expected, "{method} {status}");
        }
    }

    #[test]
    fn a_record_names_the_caller_by_digests_and_addresses_and_never_by_its_token() {
        let token = "header.payload.signature";
        let slot = AuditSlot {
            call: Arc::new(Call {
                method: Method::GET,
                url: "/ebox/messages/x".into(),
                token_sha256: Some(token_sha256(token)),
                client_address: Some(IpAddr::from([192, 0, 2, 7])),
                forwarded_for: Some("203.0.113.9".into()),
            }),
            info: Arc::default(),
            held: Arc::default(),
        };
        let event = slot.event(StatusCode::FORBIDDEN).expect("a refusal");
        assert_eq!(event.action, Action::Refused);
        assert_eq!(event.http_status, Some(403));
        let details = &event.details;
        assert_eq!(details["tokenSha256"], token_sha256(token).as_str());
        assert_eq!(details["clientAddress"], "192.0.2.7");
        assert_eq!(details["forwardedFor"], "203.0.113.9");
        assert_eq!(details["responseCode"], 403);
        assert!(!details.to_string().contains(token));
        assert!(slot.event(StatusCode::INTERNAL_SERVER_ERROR).is_none());
    }

    #[test]
    fn a_forwarded_for_header_is_kept_as_given_and_cut_to_size() {
        let mut headers = HeaderMap::new();
        assert_eq!(forwarded_for(&headers), None);
        headers.append("x-forwarded-for", "203.0.113.9".parse().expect("a value"));
        headers.append("x-forwarded-for", "10.0.0.1".parse().expect("a value"));
        assert_eq!(
            forwarded_for(&headers).as_deref(),
            Some("203.0.113.9, 10.0.0.1")
        );
        let long = "1".repeat(1000);
        headers.insert("x-forwarded-for", long.parse().expect("a value"));
        assert_eq!(
            forwarded_for(&headers).map(|f| f.len()),
            Some(MAX_FORWARDED_FOR)
        );
    }

    #[test]
    fn a_handler_that_recorded_its_call_leaves_the_middleware_nothing_to_write() {
        let slot = AuditSlot::default();
        assert!(!slot.recorded());
        slot.mark_recorded();
        assert!(slot.recorded());
    }
}
