//! The two supported releases of the sender contract, as they arrive on the wire, and their
//! normalisation into one [`Draft`] that validation checks.
//!
//! - `ebox.publish.v2` (current release): the federation's `MessageToPublish`, each attachment
//!   carrying its bytes inline (base64) since AMQP has no multipart.
//! - `ebox.publish.v1` (previous release): one main document, optional annexes, availability
//!   in days.
//!
//! Beside them, a request of another kind: `ebox.withdraw.v1` ([`WithdrawalV1`]), which takes
//! back a message the sender published by mistake (handled by [`crate::withdraw`]).
//!
//! Unknown fields are refused (`INVALID_INPUT`): a misspelt optional field would otherwise be
//! silently ignored.

use domain::digest::DigestObject;
use domain::translated::TranslatedString;
use serde::Deserialize;

pub const TYPE_V1: &str = "ebox.publish.v1";
pub const TYPE_V2: &str = "ebox.publish.v2";
/// A withdrawal of a message published before ([`WithdrawalV1`]).
pub const TYPE_WITHDRAW_V1: &str = "ebox.withdraw.v1";

/// What a sender's publication asks, by its AMQP `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A message to deliver, in one of the two releases.
    Publication,
    /// A message to take back.
    Withdrawal,
}

impl Request {
    /// A withdrawal is told by its type; anything else is a publication, whose release
    /// admission checks.
    pub fn of_type(kind: Option<&str>) -> Self {
        match kind {
            Some(TYPE_WITHDRAW_V1) => Request::Withdrawal,
            _ => Request::Publication,
        }
    }
}

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

/// Body of `ebox.withdraw.v1`: the message to withdraw, by the reference it was published
/// under (its AMQP `message_id`), and why.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WithdrawalV1 {
    pub sender_reference: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Decodes a withdrawal; the error is serde's, naming the field and position.
pub fn decode_withdrawal(body: &[u8]) -> serde_json::Result<WithdrawalV1> {
    serde_json::from_slice(body)
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
        ContractVersion::V2 => serde_json::from_slice::<MessageToPublishV2>(body)?.into(),
        ContractVersion::V1 => serde_json::from_slice::<PublicationV1>(body)?.into(),
    })
}

impl From<MessageToPublishV2> for Draft {
    fn from(m: MessageToPublishV2) -> Self {
        Draft {
            version: ContractVersion::V2,
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
}

/// The previous release in the current one's terms: a citizen recipient, the document as the
/// main content and the annexes after it, nothing that v1 could not say.
impl From<PublicationV1> for Draft {
    fn from(m: PublicationV1) -> Self {
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
            version: ContractVersion::V1,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode_json(version: ContractVersion, body: serde_json::Value) -> serde_json::Result<Draft> {
        decode(version, &serde_json::to_vec(&body).expect("JSON"))
    }

    fn document(file_name: &str) -> serde_json::Value {
        json!({"fileName": file_name, "mediaType": "application/pdf", "content": "JVBERg=="})
    }

    #[test]
    fn a_v1_document_is_the_main_content_and_its_annexes_are_not() {
        let draft = decode_json(
            ContractVersion::V1,
            json!({
                "ssin": "85073003328",
                "messageTypeId": "unemployment-certificate",
                "subject": {"nl": "Uw attest"},
                "document": document("attest.pdf"),
                "annexes": [document("bijlage-1.pdf"), document("bijlage-2.pdf")],
                "retentionDays": 60
            }),
        )
        .expect("a valid v1 publication");
        let attachments: Vec<(&str, bool)> = draft
            .attachments
            .iter()
            .map(|a| (a.file_name.as_str(), a.main_content))
            .collect();
        assert_eq!(
            attachments,
            [
                ("attest.pdf", true),
                ("bijlage-1.pdf", false),
                ("bijlage-2.pdf", false)
            ]
        );
        assert_eq!(draft.recipient_type, "citizen");
        assert_eq!(draft.recipient_id, "85073003328");
        assert_eq!(draft.expiration, RequestedExpiration::Days(60));
        assert!(!draft.body_main_content);
        assert_eq!(draft.sender_organization_id, None);
    }

    #[test]
    fn a_v2_message_without_an_expiration_date_takes_the_type_default() {
        let draft = decode_json(
            ContractVersion::V2,
            json!({
                "recipient": {"eboxType": "citizen", "eboxIdValue": "85073003328"},
                "subject": {"fr": "Votre attestation"},
                "bodyMainContent": true,
                "bodyContent": {"fr": "Votre dossier est complet."},
                "replyAuthorized": false
            }),
        )
        .expect("a valid v2 message");
        assert_eq!(draft.expiration, RequestedExpiration::TypeDefault);
        assert_eq!(draft.message_type_id, None, "validation names it missing");
        assert!(!draft.registered_mail);
    }

    #[test]
    fn an_unknown_field_is_refused_rather_than_ignored() {
        let v2 = decode_json(
            ContractVersion::V2,
            json!({
                "recipient": {"eboxType": "citizen", "eboxIdValue": "85073003328"},
                "subject": {"nl": "Uw attest"},
                "bodyMainContent": false,
                "replyAuthorized": false,
                "expirationDat": "2027-01-31T23:59:59+01:00"
            }),
        );
        let error = v2.expect_err("a misspelt field").to_string();
        assert!(error.contains("unknown field `expirationDat`"), "{error}");

        let v1 = decode_json(
            ContractVersion::V1,
            json!({
                "ssin": "85073003328",
                "messageTypeId": "unemployment-certificate",
                "subject": {"nl": "Uw attest"},
                "document": document("attest.pdf"),
                "retentionDay": 60
            }),
        );
        let error = v1.expect_err("a misspelt field").to_string();
        assert!(error.contains("unknown field `retentionDay`"), "{error}");
    }

    #[test]
    fn a_withdrawal_names_a_reference_and_nothing_it_does_not_know() {
        let withdrawal =
            decode_withdrawal(br#"{"senderReference": "ref-1", "reason": "wrong citizen"}"#)
                .expect("a valid withdrawal");
        assert_eq!(withdrawal.sender_reference, "ref-1");
        assert_eq!(withdrawal.reason.as_deref(), Some("wrong citizen"));
        let bare = decode_withdrawal(br#"{"senderReference": "ref-1"}"#).expect("no reason");
        assert_eq!(bare.reason, None);
        let error = decode_withdrawal(br#"{"senderReference": "ref-1", "reasons": "x"}"#)
            .expect_err("a misspelt field")
            .to_string();
        assert!(error.contains("unknown field `reasons`"), "{error}");
        let error = decode_withdrawal(br#"{"reason": "x"}"#)
            .expect_err("no reference")
            .to_string();
        assert!(error.contains("missing field `senderReference`"), "{error}");
    }

    #[test]
    fn only_the_withdrawal_type_asks_for_a_withdrawal() {
        assert_eq!(
            Request::of_type(Some(TYPE_WITHDRAW_V1)),
            Request::Withdrawal
        );
        for kind in [Some(TYPE_V1), Some(TYPE_V2), Some("ebox.withdraw.v2"), None] {
            assert_eq!(Request::of_type(kind), Request::Publication, "{kind:?}");
        }
        assert_eq!(ContractVersion::from_type(TYPE_WITHDRAW_V1), None);
    }

    #[test]
    fn the_amqp_type_names_the_release() {
        assert_eq!(
            ContractVersion::from_type(TYPE_V1),
            Some(ContractVersion::V1)
        );
        assert_eq!(
            ContractVersion::from_type(TYPE_V2),
            Some(ContractVersion::V2)
        );
        assert_eq!(ContractVersion::from_type("ebox.publish.v3"), None);
    }
}
