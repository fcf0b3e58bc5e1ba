//! The citizen API: the citizen side of the federation's Message Registry contract
//! (`ebox-rest-2.1.yaml`), which the eBox portal calls to list and open a citizen's documents,
//! and the senders' status search.
//!
//! - [`auth`]: bearer tokens (signature with keys from a file or the identity provider's JWKS
//!   URL, `typ`, issuer, audience, validity and lifetime; scope and assurance level per
//!   endpoint family);
//! - [`citizen`]: `/ebox` and `/ebox/messages/**`; opening a main content marks the message
//!   read and announces `readDocument` ([`read`]); an attachment's bytes are streamed
//!   ([`download`]);
//! - [`headers`]: what every `/ebox/**` response carries (no caching, no sniffing) and an
//!   attachment's content besides (a sandbox); a logo's content (no sniffing, a sandbox);
//! - [`reference`]: `/referenceData/**`, cacheable, with the senders' and applications' logos;
//! - [`sender`]: `POST /searchMessageStatus`;
//! - [`events`]: `GET /ebox/citizen/document/events`, the federation's events as a feed, for
//!   the event engine's client (scope `ebox:events`);
//! - [`audit`]: every call's audit record (writes always, in the transaction of a change;
//!   reads when they succeed; refused calls, with the token's digest and the client address);
//! - [`limits`]: each citizen's calls, limited in rate and in number at once (`429`);
//! - [`error`]: errors as the contract's `StatusMessage`;
//! - [`metrics`]: every request counted and timed by route template and status;
//! - [`traces`]: every request a span in the trace of its `traceparent` (the portal's).

pub mod audit;
pub mod auth;
pub mod citizen;
pub mod download;
pub mod error;
pub mod events;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod read;
pub mod reference;
pub mod sender;
pub mod traces;

use axum::Router;
use axum::extract::State;
use axum::middleware::map_response;
use axum::routing::{get, post};
use domain::citizen::SsinHasher;
use sqlx::PgPool;
use std::sync::Arc;

/// The project's own OpenAPI document: every path this router serves, its parameters, answers
/// and schemas (the end-to-end tests check every answer they receive against it).
pub const OPENAPI: &str = include_str!("../openapi.yaml");

pub struct AppState {
    pub pool: PgPool,
    pub verifier: auth::Verifier,
    pub hasher: SsinHasher,
    pub events: read::EventPublisher,
    pub provider_id: String,
    pub base_path: String,
    /// The API's public root URL (with the base path), for links in responses.
    pub public_url: String,
    /// The proof keys, current and previous, as a JWKS (served at `/.well-known/jwks.json`).
    pub proof_jwks: serde_json::Value,
    /// Each citizen's calls: rate and calls in progress.
    pub limits: limits::CitizenLimits,
}

/// The routes, under `base_path` (`/` or e.g. `/ebox-api`).
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .merge(citizen_routes())
        .merge(reference_data_routes())
        .merge(sender_routes())
        .merge(event_routes())
        .fallback(|| async { error::ApiError::not_found() })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refresh_keys,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        // Outside the audit: the public description of the API is nobody's consultation.
        .merge(docs_routes())
        .with_state(state.clone());
    let app = if state.base_path == "/" {
        routes
    } else {
        Router::new().nest(&state.base_path, routes)
    };
    // Outermost, so that the time covers every other layer and the route is the whole
    // template, base path included; the request's span around it all, the access log too.
    app.layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(traces::continue_trace))
}

/// Before a handler verifies the bearer token: when the token names a key the identity
/// provider's JWKS did not hold, fetch it again (rate-limited, see [`auth`]), so that a key
/// rotation needs no restart. Verification itself stays synchronous.
async fn refresh_keys(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(token) = audit::bearer(request.headers()) {
        state.verifier.refresh_for(token).await;
    }
    next.run(request).await
}

/// `/ebox` and `/ebox/messages/**`, every response [`headers::private`], an attachment's
/// content also [`headers::sandboxed`].
fn citizen_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ebox", get(citizen::summary))
        .route("/ebox/messages", get(citizen::list).patch(citizen::update))
        .route("/ebox/messages/{message_id}", get(citizen::message))
        .route(
            "/ebox/messages/{message_id}/attachments",
            get(citizen::attachments),
        )
        .route(
            "/ebox/messages/{message_id}/attachments/{attachment_id}",
            get(citizen::attachment),
        )
        .route(
            "/ebox/messages/{message_id}/attachments/{attachment_id}/content",
            get(citizen::content).layer(map_response(headers::sandboxed)),
        )
        .route("/ebox/messages/{message_id}/body", get(citizen::body))
        .route(
            "/ebox/messages/{message_id}/paymentData",
            get(citizen::payment_data),
        )
        .layer(map_response(headers::private))
}

/// `/referenceData/**`; a logo's content also [`headers::image`].
fn reference_data_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/referenceData/messageTypes", get(reference::message_types))
        .route(
            "/referenceData/messageTypes/{id}",
            get(reference::message_type),
        )
        .route(
            "/referenceData/senderOrganizations",
            get(reference::organizations),
        )
        .route(
            "/referenceData/senderOrganizations/{id}",
            get(reference::organization),
        )
        .route(
            "/referenceData/senderOrganizations/{id}/images/{image_id}/content",
            get(reference::organization_image).layer(map_response(headers::image)),
        )
        .route(
            "/referenceData/senderApplications",
            get(reference::applications),
        )
        .route(
            "/referenceData/senderApplications/{id}",
            get(reference::application),
        )
        .route(
            "/referenceData/senderApplications/{id}/images/{image_id}/content",
            get(reference::application_image).layer(map_response(headers::image)),
        )
}

/// `POST /searchMessageStatus`.
fn sender_routes() -> Router<Arc<AppState>> {
    Router::new().route("/searchMessageStatus", post(sender::search_status))
}

/// `GET /ebox/citizen/document/events`: every citizen's events, so never cached either.
fn event_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ebox/citizen/document/events", get(events::feed))
        .layer(map_response(headers::private))
}

/// `/openapi.yaml`: [`OPENAPI`].
fn docs_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/openapi.yaml",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/yaml")],
                    OPENAPI,
                )
            }),
        )
        // The keys that verify proofs of deposit and of reading: public, no token.
        .route(
            "/.well-known/jwks.json",
            get(|State(state): State<Arc<AppState>>| async move {
                (
                    [(axum::http::header::CACHE_CONTROL, "public, max-age=3600")],
                    axum::Json(state.proof_jwks.clone()),
                )
            }),
        )
}

/// Serves the API on `listener` until `shutdown` completes. Each request knows its peer's
/// address (`ConnectInfo`), for the audit trail.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
