//! The internal form of an accepted message, as intake validates and records it.
//!
//! Both releases of the sender contract (v1 and v2) are normalised into this one shape, so no
//! later stage knows about contract versions. It never travels: intake records it (the message
//! and its document) and hands the later stages a [`crate::handoff::Handoff`].

use crate::digest::Sha256Digest;
use crate::ids::{MessageId, SenderId, SenderReference};
use crate::ssin::Ssin;
use crate::translated::TranslatedString;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub message_id: MessageId,
    pub sender_id: SenderId,
    pub sender_reference: SenderReference,
    pub correlation_id: Option<String>,
    pub recipient: Ssin,
    pub sender_organization_id: String,
    pub sender_application_id: Option<String>,
    pub message_type_id: String,
    pub subject: TranslatedString,
    pub body_main_content: bool,
    pub body_content: Option<TranslatedString>,
    pub attachments: Vec<Attachment>,
    pub reply_authorized: bool,
    pub registered_mail: bool,
    /// Kept as the sender gave them, once intake has checked them against the contract's
    /// definitions (`BusinessDataToPublish`, `PaymentData`, `ForTheAttentionOf`).
    pub business_data_list: Option<serde_json::Value>,
    pub payment_data: Option<serde_json::Value>,
    pub for_the_attention_of: Option<serde_json::Value>,
    pub original_message_id: Option<String>,
    pub expiration_date: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub file_name: String,
    pub media_type: String,
    pub main_content: bool,
    pub attachment_title: Option<TranslatedString>,
    pub attachment_signed: bool,
    pub content: Vec<u8>,
    pub sha256: Sha256Digest,
}
