//! The audit writer: each stage writes its slice in the same transaction as its effect.
//!
//! Records are append-only (database triggers refuse updates, and deletes before the retention
//! date), kept ten years from the 1 January after the action, and never hold a national number
//! in clear: [`SsinHasher`] turns it into a keyed hash that still lets an auditor find every
//! record about one citizen when given the number.

use crate::ssin::Ssin;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Clone)]
pub struct SsinHasher {
    key: Vec<u8>,
}

impl SsinHasher {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// Hex HMAC-SHA256 of the 11 digits.
    pub fn hash(&self, ssin: &Ssin) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(ssin.expose().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// One audit record. `details` holds what the stage adds (attachments' media types, sizes and
/// digests, the consent state, ...); it must never hold a national number or document bytes.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub stage: &'static str,
    pub action: &'static str,
    pub code: Option<String>,
    pub sender_id: Option<String>,
    pub message_id: Option<Uuid>,
    pub sender_reference: Option<String>,
    pub ssin_hash: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(stage: &'static str, action: &'static str) -> Self {
        Self {
            stage,
            action,
            code: None,
            sender_id: None,
            message_id: None,
            sender_reference: None,
            ssin_hash: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub async fn record(&self, conn: &mut PgConnection) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO audit_events
                 (stage, action, code, sender_id, message_id, sender_reference, ssin_hash, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(self.stage)
        .bind(self.action)
        .bind(&self.code)
        .bind(&self.sender_id)
        .bind(self.message_id)
        .bind(&self.sender_reference)
        .bind(&self.ssin_hash)
        .bind(&self.details)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_the_key_and_hides_the_number() {
        let ssin = Ssin::parse("85073003328").expect("valid");
        let a = SsinHasher::new(b"key-a").hash(&ssin);
        let b = SsinHasher::new(b"key-b").hash(&ssin);
        assert_ne!(a, b);
        assert_eq!(a, SsinHasher::new(b"key-a").hash(&ssin));
        assert!(!a.contains("85073003328"));
        assert_eq!(a.len(), 64);
    }
}
