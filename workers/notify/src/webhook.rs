//! Partner webhooks: the `newDocument` event POSTed to the partner's URL, signed so the partner
//! can trust it and keyed so it can drop repeats.
//!
//! Headers:
//! - `Idempotency-Key`: the same for every attempt at one notification;
//! - `X-Ebox-Timestamp`: Unix seconds of this attempt;
//! - `X-Ebox-Signature`: `sha256=` + hex HMAC-SHA256, keyed with the partner's secret, of
//!   `<timestamp>.<body>`. A partner recomputes it and rejects stale timestamps.
//!
//! The secret can rotate without a flag day: its variable may hold several secrets, one per
//! line, newest first, and the request then carries one signature per secret, comma-separated
//! (`sha256=<new>,sha256=<old>`); a partner accepts the request when one of them is its own.

use crate::notifier::{Notification, Notifier};
use domain::citizen::ChannelKind;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const TIMESTAMP: &str = "X-Ebox-Timestamp";
pub const SIGNATURE: &str = "X-Ebox-Signature";

/// One `sha256=<hex>` per secret (one per line of `secrets`, newest first), comma-separated.
pub fn signatures(secrets: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .lines()
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .map(|secret| signature(secret.as_bytes(), timestamp, body))
        .collect::<Vec<_>>()
        .join(",")
}

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
    secrets: &str,
    idempotency_key: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_KEY, idempotency_key)
        .header(TIMESTAMP, timestamp.to_string())
        .header(SIGNATURE, signatures(secrets, timestamp, &body))
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

/// The partner channel: the registered partner's webhook, signed with its secret.
pub struct PartnerWebhooks {
    pool: PgPool,
    http: reqwest::Client,
    /// Secrets by variable name (the registry's `secretEnv`).
    secrets: HashMap<String, String>,
}

impl PartnerWebhooks {
    pub fn new(pool: PgPool, secrets: HashMap<String, String>) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            http: client()?,
            secrets,
        })
    }

    async fn send_to_partner(&self, notification: &Notification) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        let partner = records::registry::find_partner(&mut conn, &notification.target)
            .await?
            .filter(|p| p.active)
            .ok_or_else(|| anyhow::anyhow!("partner {} is not registered", notification.target))?;
        drop(conn);
        let secret = self.secrets.get(&partner.secret_env).ok_or_else(|| {
            anyhow::anyhow!(
                "the secret of partner {} ({}) is not set",
                partner.id,
                partner.secret_env
            )
        })?;
        let body = serde_json::to_vec(&notification.payload)?;
        deliver(
            &self.http,
            &partner.webhook_url,
            secret,
            &notification.idempotency_key.to_string(),
            body,
        )
        .await
    }
}

impl Notifier for PartnerWebhooks {
    fn channel(&self) -> ChannelKind {
        ChannelKind::Partner
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send_to_partner(notification))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotating_secret_signs_with_each_newest_first() {
        let body = b"{}";
        assert_eq!(signatures("new\n", 7, body), signature(b"new", 7, body));
        assert_eq!(
            signatures("new\nold", 7, body),
            format!(
                "{},{}",
                signature(b"new", 7, body),
                signature(b"old", 7, body)
            )
        );
        assert_ne!(signature(b"new", 7, body), signature(b"old", 7, body));
    }
}
