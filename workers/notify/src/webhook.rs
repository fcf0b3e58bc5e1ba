//! Partner webhooks: the `newDocument` event POSTed to the partner's URL, signed so the partner
//! can trust it and keyed so it can drop repeats.
//!
//! Headers:
//! - `Idempotency-Key`: the same for every attempt at one notification;
//! - `X-Ebox-Timestamp`: Unix seconds of this attempt;
//! - `X-Ebox-Signature`: `sha256=` + hex HMAC-SHA256, keyed with the partner's secret, of
//!   `<timestamp>.<body>`. A partner recomputes it and rejects stale timestamps.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const TIMESTAMP: &str = "X-Ebox-Timestamp";
pub const SIGNATURE: &str = "X-Ebox-Signature";

/// `sha256=<hex>` over `<timestamp>.<body>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// POSTs `body`; any answer but 2xx is an error (and the dispatcher retries).
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    idempotency_key: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_KEY, idempotency_key)
        .header(TIMESTAMP, timestamp.to_string())
        .header(SIGNATURE, signature(secret, timestamp, &body))
        .body(body)
        .send()
        .await?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("the partner answered {status}")
    }
}
