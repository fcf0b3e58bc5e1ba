//! The contract's response shapes, built from the stored documents. Every `TranslatedString` is
//! filled in all three languages; every date is written as the contract's pattern
//! (`yyyy-MM-dd'T'HH:mm:ssXXX`, [`ContractDate`]).

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use domain::digest::{DigestObject, Sha256Digest};
use domain::translated::TranslatedString;
use serde::{Deserialize, Serialize};
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

/// A date-time as the contract writes it, `yyyy-MM-dd'T'HH:mm:ssXXX`: to the second (a
/// fraction is cut off), with its offset, `Z` for UTC (`2017-07-24T09:26:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractDate(pub DateTime<FixedOffset>);

impl From<DateTime<Utc>> for ContractDate {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at.fixed_offset())
    }
}

impl Serialize for ContractDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// An RFC 3339 date-time, as intake accepted it (a payment's `dueDate`), its offset kept: a
/// due date at midnight in Brussels stays on its day.
impl<'de> Deserialize<'de> for ContractDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// The contract's `PaymentData`, as intake checked it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentData {
    pub payment_data_id: String,
    pub amount: f64,
    pub vat_amount: f64,
    pub currency: String,
    pub due_date: ContractDate,
    pub iban: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The contract's `BusinessData`: as published (`BusinessDataToPublish`), its texts filled in
/// every language, and named after its key when the sender gave no name (the contract requires
/// a name here, not at publication).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BusinessData {
    pub key: String,
    #[serde(default)]
    pub name: Option<TranslatedString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<TranslatedString>,
    pub values: Vec<TranslatedString>,
}

impl BusinessData {
    fn shown(self) -> Self {
        let key = TranslatedString {
            nl: Some(self.key.clone()),
            ..Default::default()
        };
        Self {
            name: Some(
                self.name
                    .filter(TranslatedString::has_any)
                    .unwrap_or(key)
                    .filled(),
            ),
            description: self.description.map(|d| d.filled()),
            values: self.values.iter().map(TranslatedString::filled).collect(),
            key: self.key,
        }
    }
}

/// The contract's `ForTheAttentionOf`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForTheAttentionOf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `value` read as `T`; `None` when it does not fit, which only a document stored before intake
/// checked the structured data can give: such data is left out rather than shown off-contract.
fn structured<T: serde::de::DeserializeOwned>(value: Option<&serde_json::Value>) -> Option<T> {
    serde_json::from_value(value?.clone()).ok()
}

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
    pub receipt_date: ContractDate,
    pub expiration_date: ContractDate,
    pub read_status: bool,
    pub visible: bool,
    pub registered_mail: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_the_attention_of: Option<ForTheAttentionOf>,
    pub message_type_id: String,
    pub sender_organization_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_application_id: Option<String>,
    pub attachments: Page<Attachment>,
    pub body_main_content: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_data: Option<PaymentData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_data_list: Option<Page<BusinessData>>,
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
    /// The message's payment data, if it has any (the contract's `PaymentData`).
    pub fn payment(&self) -> Option<PaymentData> {
        structured(self.payment_data.as_ref())
    }

    fn business_data(&self) -> Option<Page<BusinessData>> {
        let items: Vec<BusinessData> = structured(self.business_data_list.as_ref())?;
        let items: Vec<BusinessData> = items.into_iter().map(BusinessData::shown).collect();
        let total_items = items.len() as i64;
        Some(Page { items, total_items })
    }

    pub fn to_message(&self, attachments: Vec<Attachment>) -> Message {
        let total = attachments.len() as i64;
        Message {
            message_id: self.message_id,
            original_message_id: self.original_message_id.clone(),
            subject: self.subject.0.filled(),
            receipt_date: self.receipt_date.into(),
            expiration_date: self.expiration_date.into(),
            read_status: self.read_at.is_some(),
            visible: self.visible,
            registered_mail: self.registered_mail,
            for_the_attention_of: structured(self.for_the_attention_of.as_ref()),
            message_type_id: self.message_type_id.clone(),
            sender_organization_id: self.sender_organization_id.clone(),
            sender_application_id: self.sender_application_id.clone(),
            attachments: Page {
                items: attachments,
                total_items: total,
            },
            body_main_content: self.body_main_content,
            payment_data: self.payment(),
            business_data_list: self.business_data(),
            reply_authorized: self.reply_authorized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(raw: &str) -> serde_json::Value {
        let date: ContractDate = serde_json::from_value(json!(raw)).expect("an RFC 3339 date-time");
        serde_json::to_value(date).expect("serialisable")
    }

    #[test]
    fn a_date_is_written_to_the_second_with_its_offset() {
        for (raw, shown) in [
            ("2026-12-07T10:00:00.987654Z", "2026-12-07T10:00:00Z"),
            ("2026-12-07T10:00:00+00:00", "2026-12-07T10:00:00Z"),
            ("2027-02-01T00:00:00+01:00", "2027-02-01T00:00:00+01:00"),
        ] {
            assert_eq!(written(raw), json!(shown), "{raw}");
        }
        let utc: ContractDate = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.5+02:00")
            .expect("valid")
            .with_timezone(&Utc)
            .into();
        assert_eq!(json!(utc), json!("2026-12-07T08:00:00Z"));
    }

    #[test]
    fn business_data_without_a_name_is_named_after_its_key_in_every_language() {
        let stored: BusinessData =
            serde_json::from_value(json!({"key": "dossier", "values": [{"fr": "A-12"}]}))
                .expect("a BusinessDataToPublish");
        assert_eq!(
            json!(stored.shown()),
            json!({
                "key": "dossier",
                "name": {"nl": "dossier", "fr": "dossier", "de": "dossier"},
                "values": [{"nl": "A-12", "fr": "A-12", "de": "A-12"}]
            })
        );
    }
}
