//! The internal form of an accepted message, as intake hands it to the rest of the pipeline.
//!
//! Both releases of the sender contract (v1 and v2) are normalised into this one shape, so no
//! later stage knows about contract versions. It travels on internal queues only.

use crate::digest::Sha256Digest;
use crate::ids::{MessageId, SenderId, SenderReference};
use crate::ssin::Ssin;
use crate::translated::TranslatedString;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// AMQP `type` of the internal message.
pub const PUBLICATION_TYPE: &str = "ebox.internal.publication.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
    /// Passed through as the sender gave them; the API returns them unchanged.
    pub business_data_list: Option<serde_json::Value>,
    pub payment_data: Option<serde_json::Value>,
    pub for_the_attention_of: Option<serde_json::Value>,
    pub original_message_id: Option<String>,
    pub expiration_date: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub file_name: String,
    pub media_type: String,
    pub main_content: bool,
    pub attachment_title: Option<TranslatedString>,
    pub attachment_signed: bool,
    #[serde(serialize_with = "as_base64", deserialize_with = "from_base64")]
    pub content: Vec<u8>,
    #[serde(
        serialize_with = "digest_as_base64url",
        deserialize_with = "digest_from_base64url"
    )]
    pub sha256: Sha256Digest,
}

fn as_base64<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let raw = String::deserialize(deserializer)?;
    STANDARD.decode(raw).map_err(serde::de::Error::custom)
}

fn digest_as_base64url<S: Serializer>(
    digest: &Sha256Digest,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&digest.to_base64url())
}

fn digest_from_base64url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Sha256Digest, D::Error> {
    let raw = String::deserialize(deserializer)?;
    Sha256Digest::from_base64url(&raw)
        .ok_or_else(|| serde::de::Error::custom("not a SHA-256 digest"))
}
