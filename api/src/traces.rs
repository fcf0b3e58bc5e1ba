//! Each request is a span (`request`, kind server) in the trace its `traceparent` header names
//! — the eBox portal's — or in a new one; a `traceparent` that is not well formed is ignored,
//! never refused. What the request publishes is published in that trace
//! ([`runtime::trace::current`]): the read mark's `readDocument`, so that the sender's `read`
//! status joins the portal's trace.

use crate::metrics::UNMATCHED;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use runtime::telemetry::{self, SpanKind};
use runtime::trace::TraceContext;
use tracing::{Instrument, field, info_span};

/// Runs the request in its span, the access log line included.
pub async fn continue_trace(request: Request, next: Next) -> Response {
    let parent = incoming(request.headers());
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |path| path.as_str())
        .to_owned();
    let span = info_span!(
        parent: None,
        "request",
        otel.name = field::Empty,
        otel.kind = field::Empty,
        trace_id = field::Empty,
        span_id = field::Empty,
    );
    let context = telemetry::start(
        &span,
        format_args!("{method} {route}"),
        SpanKind::Server,
        parent.as_ref(),
    );
    telemetry::http_request(&span, &method, &route);
    let response = runtime::trace::scope(context, next.run(request))
        .instrument(span.clone())
        .await;
    telemetry::http_response(&span, response.status().as_u16());
    response
}

/// The trace context a request carries, when its `traceparent` is well formed.
fn incoming(headers: &axum::http::HeaderMap) -> Option<TraceContext> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    TraceContext::parse(header("traceparent")?, header("tracestate"))
}
