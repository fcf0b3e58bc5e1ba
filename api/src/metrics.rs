//! The API's own metrics and access log: every request counted by route template and status
//! (`ebox_http_requests_total`) and timed (`ebox_http_request_seconds`), as a middleware around
//! every route ([`crate::router`]). The process serves them with the others on
//! `EBOX_METRICS_ADDR`, not on the API's port.
//!
//! The `route` label is the template axum matched (`/ebox/messages/{message_id}`), never the
//! path a client sent: a label must not carry a message id, and must stay bounded whatever
//! clients send. A request that matched no route counts as [`UNMATCHED`].

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use runtime::internal_events::HttpRequestAnswered;
use std::time::Instant;

/// The `route` of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Counts and times the request, once its response is ready.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    HttpRequestAnswered {
        method: method.as_str(),
        route: route.as_deref().unwrap_or(UNMATCHED),
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
    }
    .emit();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use runtime::metrics::METRICS;

    /// Serves `app` on a free loopback port; returns its root URL.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn answered(route: &str, status: &str) -> u64 {
        METRICS
            .http_requests_total
            .with_label_values(&[route, status])
            .get()
    }

    #[tokio::test]
    async fn a_request_counts_under_its_route_template_and_status_never_its_path() {
        let routes = Router::new()
            .route("/things/{thing_id}", get(|| async { "a thing" }))
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no such thing") });
        // Nested under a base path, as the API is when EBOX_API_BASE_PATH is set.
        let app = Router::new()
            .nest("/metrics-test-base", routes)
            .layer(axum::middleware::from_fn(track));
        let root = serve(app).await;
        let template = "/metrics-test-base/things/{thing_id}";
        let (before_ok, before_unmatched) = (answered(template, "200"), answered(UNMATCHED, "404"));

        for path in ["things/4c1b", "things/9f2e", "nothing/here"] {
            reqwest::get(format!("{root}/metrics-test-base/{path}"))
                .await
                .expect("an answer");
        }

        assert_eq!(answered(template, "200"), before_ok + 2);
        assert!(answered(UNMATCHED, "404") > before_unmatched);
        let rendered = METRICS.render();
        assert!(!rendered.contains("4c1b"), "a path reached a label");
        assert!(
            METRICS
                .http_request_seconds
                .with_label_values(&[template])
                .get_sample_count()
                >= 2
        );
    }
}
