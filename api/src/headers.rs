//! What every response about a citizen's documents carries, set once as layers on the routes
//! (`crate::router`) rather than in each handler, so that a new endpoint cannot forget them.
//!
//! - [`private`], on all of `/ebox/**` (the documents' bytes, their metadata, errors included):
//!   `Cache-Control: no-store`, because a citizen's document must not sit in a shared cache, a
//!   proxy's or the browser's; and `X-Content-Type-Options: nosniff`, so that the browser takes
//!   the declared media type and never guesses a more dangerous one from the bytes.
//! - [`sandboxed`], on the attachment content only: `Content-Security-Policy: sandbox`, on every
//!   content response whatever its media type. The content is the sender's bytes: should a
//!   browser render it (an HTML or XML attachment, or a type it mis-handles) instead of saving
//!   it as `Content-Disposition: attachment` asks, it runs in a unique origin without scripts,
//!   forms or pop-ups, so it cannot act with the portal's cookies. Deciding per media type
//!   would only let through types we trust today; a download loses nothing by it.
//!
//! - [`image`], on the logos' content (`/referenceData/…/images/{imageId}/content`): public
//!   and cacheable like all reference data, but its bytes get `nosniff` and the sandbox too. A
//!   logo is the operator's file, checked against its media type when the registry was loaded;
//!   an SVG may still hold scripts, which an `<img>` never runs but a browser opening the URL
//!   as a page would, without the sandbox.
//!
//! Reference data keeps its own public caching headers: it is not under `/ebox`.

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// `Cache-Control` of a citizen's documents and their metadata.
pub const NO_STORE: &str = "no-store";

/// `Content-Security-Policy` of an attachment's content.
pub const SANDBOX: &str = "sandbox";

/// Neither kept in a cache nor sniffed: see the module documentation.
pub async fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Rendered, if at all, without scripts and in an origin of its own: see the module
/// documentation.
pub async fn sandboxed(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX),
    );
    response
}

/// A logo's bytes: not sniffed, and sandboxed should it be rendered as a page. See the module
/// documentation.
pub async fn image(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn a_private_response_is_neither_stored_nor_sniffed() {
        let response = private(
            (
                [(header::CACHE_CONTROL, "public, max-age=86400")],
                "{}".to_owned(),
            )
                .into_response(),
        )
        .await;
        let headers = response.headers();
        assert_eq!(
            headers.get_all(header::CACHE_CONTROL).iter().count(),
            1,
            "one Cache-Control, ours"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(headers.get(header::CONTENT_SECURITY_POLICY).is_none());
    }

    #[tokio::test]
    async fn a_sandboxed_response_carries_the_sandbox_policy() {
        let response = sandboxed("<html>".into_response()).await;
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            "sandbox"
        );
    }
}
