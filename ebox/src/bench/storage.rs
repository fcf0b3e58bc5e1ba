//! What the database keeps per stored message: the on-disk size of the tables a message
//! writes to (indexes and TOAST included), over the messages recorded.

use sqlx::PgPool;

/// The tables every accepted message writes to.
pub const TABLES: [&str; 5] = [
    "documents",
    "document_attachments",
    "messages",
    "audit_events",
    "stage_decisions",
];

#[derive(Debug, Clone)]
pub struct Storage {
    /// Bytes per table, in [`TABLES`]' order.
    pub tables: Vec<(&'static str, i64)>,
    /// Rows of `messages` (every accepted message) and of `documents` (those still kept: a
    /// message that will never be published loses its document).
    pub messages: i64,
    pub documents: i64,
}

impl Storage {
    pub async fn measure(pool: &PgPool) -> anyhow::Result<Self> {
        let mut tables = Vec::new();
        for table in TABLES {
            let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
                .bind(table)
                .fetch_one(pool)
                .await?;
            tables.push((table, bytes));
        }
        let (messages, documents): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM documents)",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self {
            tables,
            messages,
            documents,
        })
    }

    pub fn total(&self) -> i64 {
        self.tables.iter().map(|(_, bytes)| bytes).sum()
    }

    pub fn per_message(&self) -> f64 {
        self.total() as f64 / self.messages.max(1) as f64
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "bytesPerMessage": self.per_message().round(),
            "messages": self.messages,
            "documents": self.documents,
            "tableBytes": self.tables.iter()
                .map(|(t, b)| ((*t).to_owned(), serde_json::json!(b)))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}
