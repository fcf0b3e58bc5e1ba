//! The contract's response shapes, built from the stored documents. Every `TranslatedString` is
//! filled in all three languages.

use chrono::{DateTime, Utc};
use domain::digest::{DigestObject, Sha256Digest};
use domain::translated::TranslatedString;
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

/// A stored message as the API reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct DocumentRow {
    pub message_id: Uuid,
    pub original_message_id: Option<String>,
    pub subject: Json<TranslatedString>,
    pub receipt_date: DateTime<Utc>,
    pub expiration_date: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    pub visible: bool,
    pub registered_mail: bool,
    pub for_the_attention_of: Option<serde_json::Value>,
    pub message_type_id: String,
    pub sender_organization_id: String,
    pub sender_application_id: Option<String>,
    pub body_main_content: bool,
    pub body_content: Option<Json<TranslatedString>>,
    pub payment_data: Option<serde_json::Value>,
    pub business_data_list: Option<serde_json::Value>,
    pub reply_authorized: bool,
}

pub const DOCUMENT_COLUMNS: &str = "d.message_id, d.original_message_id, d.subject, d.receipt_date,
    d.expiration_date, d.read_at, d.visible, d.registered_mail, d.for_the_attention_of,
    d.message_type_id, d.sender_organization_id, d.sender_application_id, d.body_main_content,
    d.body_content, d.payment_data, d.business_data_list, d.reply_authorized";

#[derive(Debug, sqlx::FromRow)]
pub struct AttachmentRow {
    pub message_id: Uuid,
    pub attachment_id: Uuid,
    pub file_name: String,
    pub media_type: String,
    pub main_content: bool,
    pub attachment_title: Option<Json<TranslatedString>>,
    pub attachment_signed: bool,
    pub size: i64,
    pub sha256: Vec<u8>,
}

pub const ATTACHMENT_COLUMNS: &str = "a.message_id, a.attachment_id, a.file_name, a.media_type,
    a.main_content, a.attachment_title, a.attachment_signed, a.size, a.sha256";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_items: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub message_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_message_id: Option<String>,
    pub subject: TranslatedString,
    pub receipt_date: DateTime<Utc>,
    pub expiration_date: DateTime<Utc>,
    pub read_status: bool,
    pub visible: bool,
    pub registered_mail: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_the_attention_of: Option<serde_json::Value>,
    pub message_type_id: String,
    pub sender_organization_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_application_id: Option<String>,
    pub attachments: Page<Attachment>,
    pub body_main_content: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_data_list: Option<Page<serde_json::Value>>,
    pub reply_authorized: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub attachment_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_title: Option<TranslatedString>,
    pub file_name: String,
    pub main_content: bool,
    pub media_type: String,
    /// In kilobytes, as the contract says.
    pub size: f64,
    pub digest: DigestObject,
    pub attachment_signed: bool,
    pub content_href: String,
}

impl AttachmentRow {
    /// `href_base` is the absolute URL of the API's root (no trailing slash).
    pub fn to_attachment(&self, href_base: &str) -> Attachment {
        let digest = Sha256Digest::from_slice(&self.sha256)
            .map(DigestObject::from)
            .unwrap_or_else(|| DigestObject {
                digest_method: "sha_256".into(),
                digest_value: String::new(),
            });
        Attachment {
            attachment_id: self.attachment_id,
            attachment_title: self.attachment_title.as_ref().map(|t| t.0.filled()),
            file_name: self.file_name.clone(),
            main_content: self.main_content,
            media_type: self.media_type.clone(),
            size: self.size as f64 / 1024.0,
            digest,
            attachment_signed: self.attachment_signed,
            content_href: format!(
                "{href_base}/ebox/messages/{}/attachments/{}/content",
                self.message_id, self.attachment_id
            ),
        }
    }
}

impl DocumentRow {
    pub fn to_message(&self, attachments: Vec<Attachment>) -> Message {
        let total = attachments.len() as i64;
        Message {
            message_id: self.message_id,
            original_message_id: self.original_message_id.clone(),
            subject: self.subject.0.filled(),
            receipt_date: self.receipt_date,
            expiration_date: self.expiration_date,
            read_status: self.read_at.is_some(),
            visible: self.visible,
            registered_mail: self.registered_mail,
            for_the_attention_of: self.for_the_attention_of.clone(),
            message_type_id: self.message_type_id.clone(),
            sender_organization_id: self.sender_organization_id.clone(),
            sender_application_id: self.sender_application_id.clone(),
            attachments: Page {
                items: attachments,
                total_items: total,
            },
            body_main_content: self.body_main_content,
            payment_data: self.payment_data.clone(),
            business_data_list: self.business_data_list.as_ref().and_then(|list| {
                let items = list.as_array()?.clone();
                let total_items = items.len() as i64;
                Some(Page { items, total_items })
            }),
            reply_authorized: self.reply_authorized,
        }
    }
}
