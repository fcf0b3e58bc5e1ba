//! The two supported releases of the sender contract, as they arrive on the wire, and their
//! normalisation into one [`Draft`] that validation checks.
//!
//! - `ebox.publish.v2` (current release): the federation's `MessageToPublish`, each attachment
//!   carrying its bytes inline (base64) since AMQP has no multipart.
//! - `ebox.publish.v1` (previous release): one main document, optional annexes, availability
//!   in days.
//!
//! Unknown fields are refused (`INVALID_INPUT`): a misspelt optional field would otherwise be
//! silently ignored.

use common::digest::DigestObject;
use common::translated::TranslatedString;
use serde::Deserialize;

pub const TYPE_V1: &str = "ebox.publish.v1";
pub const TYPE_V2: &str = "ebox.publish.v2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractVersion {
    V1,
    V2,
}

impl ContractVersion {
    pub fn from_type(kind: &str) -> Option<Self> {
        match kind {
            TYPE_V1 => Some(ContractVersion::V1),
            TYPE_V2 => Some(ContractVersion::V2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V1 => "v1",
            ContractVersion::V2 => "v2",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageToPublishV2 {
    pub recipient: EboxIdV2,
    #[serde(default)]
    pub for_the_attention_of: Option<serde_json::Value>,
    #[serde(default)]
    pub original_message_id: Option<String>,
    pub subject: TranslatedString,
    #[serde(default)]
    pub message_type_id: Option<String>,
    #[serde(default)]
    pub expiration_date: Option<String>,
    #[serde(default)]
    pub sender_organization_id: Option<String>,
    #[serde(default)]
    pub sender_application_id: Option<String>,
    #[serde(default)]
    pub registered_mail: Option<bool>,
    #[serde(default)]
    pub attachments: Vec<AttachmentV2>,
    pub body_main_content: bool,
    #[serde(default)]
    pub body_content: Option<TranslatedString>,
    #[serde(default)]
    pub business_data_list: Option<serde_json::Value>,
    #[serde(default)]
    pub payment_data: Option<serde_json::Value>,
    pub reply_authorized: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EboxIdV2 {
    pub ebox_type: String,
    pub ebox_id_value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentV2 {
    pub file_name: String,
    pub media_type: String,
    pub main_content: bool,
    /// The bytes, base64 (standard alphabet).
    pub content: String,
    #[serde(default)]
    pub digest: Option<DigestObject>,
    #[serde(default)]
    pub attachment_title: Option<TranslatedString>,
    #[serde(default)]
    pub attachment_signed: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicationV1 {
    pub ssin: String,
    pub message_type_id: String,
    pub subject: TranslatedString,
    pub document: DocumentV1,
    #[serde(default)]
    pub annexes: Vec<DocumentV1>,
    #[serde(default)]
    pub retention_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentV1 {
    pub file_name: String,
    pub media_type: String,
    pub content: String,
}

/// What the sender asked for the availability period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedExpiration {
    /// v2 `expirationDate`, as written.
    At(String),
    /// v1 `retentionDays`.
    Days(i64),
    /// Nothing: the message type's validity period applies.
    TypeDefault,
}

/// A publication of either release, not yet validated.
#[derive(Debug)]
pub struct Draft {
    pub version: ContractVersion,
    pub recipient_type: String,
    pub recipient_id: String,
    pub sender_organization_id: Option<String>,
    pub sender_application_id: Option<String>,
    pub message_type_id: Option<String>,
    pub subject: TranslatedString,
    pub attachments: Vec<AttachmentV2>,
    pub body_main_content: bool,
    pub body_content: Option<TranslatedString>,
    pub expiration: RequestedExpiration,
    pub reply_authorized: bool,
    pub registered_mail: bool,
    pub business_data_list: Option<serde_json::Value>,
    pub payment_data: Option<serde_json::Value>,
    pub for_the_attention_of: Option<serde_json::Value>,
    pub original_message_id: Option<String>,
}

/// Decodes a body of the given release; the error is serde's, naming the field and position.
pub fn decode(version: ContractVersion, body: &[u8]) -> serde_json::Result<Draft> {
    Ok(match version {
        ContractVersion::V2 => {
            let m: MessageToPublishV2 = serde_json::from_slice(body)?;
            Draft {
                version,
                recipient_type: m.recipient.ebox_type,
                recipient_id: m.recipient.ebox_id_value,
                sender_organization_id: m.sender_organization_id,
                sender_application_id: m.sender_application_id,
                message_type_id: m.message_type_id,
                subject: m.subject,
                attachments: m.attachments,
                body_main_content: m.body_main_content,
                body_content: m.body_content,
                expiration: m
                    .expiration_date
                    .map_or(RequestedExpiration::TypeDefault, RequestedExpiration::At),
                reply_authorized: m.reply_authorized,
                registered_mail: m.registered_mail.unwrap_or(false),
                business_data_list: m.business_data_list,
                payment_data: m.payment_data,
                for_the_attention_of: m.for_the_attention_of,
                original_message_id: m.original_message_id,
            }
        }
        ContractVersion::V1 => {
            let m: PublicationV1 = serde_json::from_slice(body)?;
            let document = |d: DocumentV1, main_content: bool| AttachmentV2 {
                file_name: d.file_name,
                media_type: d.media_type,
                main_content,
                content: d.content,
                digest: None,
                attachment_title: None,
                attachment_signed: None,
            };
            let mut attachments = vec![document(m.document, true)];
            attachments.extend(m.annexes.into_iter().map(|a| document(a, false)));
            Draft {
                version,
                recipient_type: "citizen".to_owned(),
                recipient_id: m.ssin,
                sender_organization_id: None,
                sender_application_id: None,
                message_type_id: Some(m.message_type_id),
                subject: m.subject,
                attachments,
                body_main_content: false,
                body_content: None,
                expiration: m
                    .retention_days
                    .map_or(RequestedExpiration::TypeDefault, RequestedExpiration::Days),
                reply_authorized: false,
                registered_mail: false,
                business_data_list: None,
                payment_data: None,
                for_the_attention_of: None,
                original_message_id: None,
            }
        }
    })
}
