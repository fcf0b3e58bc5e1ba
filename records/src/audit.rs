//! The audit writer: each stage writes its slice in the same transaction as its effect.
//!
//! Records are append-only (database triggers refuse updates, and deletes before the retention
//! date), kept ten years from the 1 January after the action, and never hold a national number
//! in clear: a citizen appears as their [`CitizenKey`].

use domain::audit::{Action, Stage};
use domain::citizen::CitizenKey;
use domain::ids::MessageId;
use domain::status::Code;
use sqlx::PgConnection;

/// One audit record. `details` holds what the stage adds (attachments' media types, sizes and
/// digests, the consent state, ...); it must never hold a national number or document bytes.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub stage: Stage,
    pub action: Action,
    pub code: Option<Code>,
    /// The API's records carry the HTTP status they answered in place of a contract code.
    pub http_status: Option<u16>,
    /// The sender's id; for an unknown sender, the broker user it claimed.
    pub sender_id: Option<String>,
    pub message_id: Option<MessageId>,
    pub sender_reference: Option<String>,
    pub ssin_hash: Option<CitizenKey>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(stage: Stage, action: Action) -> Self {
        Self {
            stage,
            action,
            code: None,
            http_status: None,
            sender_id: None,
            message_id: None,
            sender_reference: None,
            ssin_hash: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    /// Writes the record; returns its id (its `seq` in traces and exports).
    pub async fn record(&self, conn: &mut PgConnection) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO audit_events
                 (stage, action, code, sender_id, message_id, sender_reference, ssin_hash, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id",
        )
        .bind(self.stage.as_str())
        .bind(self.action.as_str())
        .bind(
            self.code
                .map(|code| code.as_str().to_owned())
                .or_else(|| self.http_status.map(|status| status.to_string())),
        )
        .bind(&self.sender_id)
        .bind(self.message_id.map(|id| id.as_uuid()))
        .bind(&self.sender_reference)
        .bind(self.ssin_hash.as_ref().map(CitizenKey::as_str))
        .bind(&self.details)
        .fetch_one(conn)
        .await
    }
}
