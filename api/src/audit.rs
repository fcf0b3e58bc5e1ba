//! The API's audit slice, with the fields the federation requires of a document provider:
//! timestamp, SHA-256 of the access token, client id, method, URL, response code, and details
//! (message and attachment ids, media types, sizes, digests). Writes are always recorded, reads
//! when they succeed.
//!
//! The middleware puts an [`AuditSlot`] in the request; the handlers fill in who called and what
//! they touched; the middleware writes the record once the response is known.

use crate::AppState;
use crate::auth::token_sha256;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use domain::audit::{Action, Stage};
use domain::citizen::CitizenKey;
use domain::ids::MessageId;
use records::audit::AuditEvent;
use std::sync::{Arc, Mutex};
use tracing::error;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct AuditInfo {
    pub client_id: Option<String>,
    pub ssin_hash: Option<CitizenKey>,
    pub message_id: Option<Uuid>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Default)]
pub struct AuditSlot(pub Arc<Mutex<AuditInfo>>);

impl AuditSlot {
    pub fn with(&self, fill: impl FnOnce(&mut AuditInfo)) {
        if let Ok(mut info) = self.0.lock() {
            fill(&mut info);
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(request_headers: &axum::http::HeaderMap) -> Option<&str> {
    request_headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub async fn record(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().clone();
    // The URL as the client sent it, base path included.
    let url = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().to_string(), |uri| uri.0.to_string());
    let token_hash = bearer(request.headers()).map(token_sha256);
    let response = next.run(request).await;
    let status = response.status();
    let write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !write && !status.is_success() {
        return response;
    }
    let info = match slot.0.lock() {
        Ok(mut info) => std::mem::take(&mut *info),
        Err(_) => AuditInfo::default(),
    };
    let action = if write {
        Action::Update
    } else {
        Action::Consultation
    };
    let mut event = AuditEvent::new(Stage::Api, action);
    event.http_status = Some(status.as_u16());
    event.sender_id = info.client_id.clone();
    event.message_id = info.message_id.map(MessageId::from_uuid);
    event.ssin_hash = info.ssin_hash;
    let mut details = info.details;
    details.insert("method".into(), method.as_str().into());
    details.insert("url".into(), url.into());
    details.insert("responseCode".into(), status.as_u16().into());
    details.insert("tokenSha256".into(), token_hash.into());
    details.insert("clientId".into(), info.client_id.into());
    event.details = serde_json::Value::Object(details);
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
