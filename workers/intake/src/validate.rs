//! Validation of a decoded publication against the sender contract and the registry. Pure: the
//! handler looks up what is needed first, so a test can check every rule without a database.

use crate::contract::{Draft, RequestedExpiration};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Days, Utc};
use common::cbe::CbeNumber;
use common::digest::Sha256Digest;
use common::publication::{Attachment, Publication};
use common::registry::{RegisteredSender, ValidityPeriod};
use common::ssin::{Ssin, SsinError};
use common::status::Code;
use uuid::Uuid;

/// At most this many attachments per message (the federation's limit).
pub const MAX_ATTACHMENTS: usize = 6;

/// The media types the contract allows for an attachment.
pub const ALLOWED_MEDIA_TYPES: [&str; 15] = [
    "application/pdf",
    "application/zip",
    "text/csv",
    "text/html",
    "text/plain",
    "text/xml",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/vnd.oasis.opendocument.graphics",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
];

/// Why a publication is refused: a stable code and a message naming the bad field. The
/// national number is kept (when it was valid) only so the audit can hash it.
#[derive(Debug)]
pub struct Rejection {
    pub code: Code,
    pub message: String,
    pub recipient: Option<Ssin>,
}

impl Rejection {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            recipient: None,
        }
    }
}

/// What the message is, besides its body.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub message_id: Uuid,
    pub sender_id: String,
    pub sender_reference: String,
    pub correlation_id: Option<String>,
    /// The moment of the decision: every date check is relative to it.
    pub accepted_at: DateTime<Utc>,
}

/// Checks `draft` for `sender`. `validity` is the validity period of the requested message
/// type, or `None` when the type does not exist.
pub fn validate(
    draft: Draft,
    envelope: &Envelope,
    sender: &RegisteredSender,
    validity: Option<ValidityPeriod>,
) -> Result<Publication, Rejection> {
    if draft.recipient_type != "citizen" {
        return Err(Rejection::new(
            Code::InvalidRecipient,
            format!(
                "recipient.eboxType must be \"citizen\", not {:?}: this service delivers to citizens only",
                draft.recipient_type
            ),
        ));
    }
    let recipient = Ssin::parse(&draft.recipient_id).map_err(|error| {
        let field = match draft.version {
            crate::contract::ContractVersion::V1 => "ssin",
            crate::contract::ContractVersion::V2 => "recipient.eboxIdValue",
        };
        let why = match error {
            SsinError::Format => "must be 11 digits",
            SsinError::BirthDate => "has an impossible birth date part",
            SsinError::CheckDigits => "has wrong check digits",
        };
        Rejection::new(
            Code::InvalidSsin,
            format!("{field} is not a valid national number: it {why}"),
        )
    })?;
    let reject = |code: Code, message: String| Rejection {
        code,
        message,
        recipient: Some(recipient.clone()),
    };

    let organization_id = match &draft.sender_organization_id {
        None => sender.organization_id.clone(),
        Some(raw) => match CbeNumber::parse(raw) {
            Ok(cbe) if cbe.as_str() == sender.organization_id => cbe.as_str().to_owned(),
            Ok(_) => {
                return Err(reject(
                    Code::SenderNotAuthorized,
                    "senderOrganizationId is not the organisation registered for this sender"
                        .into(),
                ));
            }
            Err(error) => {
                return Err(reject(
                    Code::SenderNotAuthorized,
                    format!("senderOrganizationId is not a valid enterprise number: {error}"),
                ));
            }
        },
    };
    if let Some(application) = &draft.sender_application_id
        && !sender.applications.contains(application)
    {
        return Err(reject(
            Code::SenderNotAuthorized,
            format!("senderApplicationId {application:?} is not registered for this sender"),
        ));
    }

    let Some(message_type_id) = draft.message_type_id.clone().filter(|t| !t.is_empty()) else {
        return Err(reject(
            Code::InvalidInput,
            "messageTypeId is required".into(),
        ));
    };
    let validity = match validity {
        Some(validity) if sender.message_types.contains(&message_type_id) => validity,
        Some(_) => {
            return Err(reject(
                Code::UnknownMessageType,
                format!("messageTypeId {message_type_id:?} is not allowed for this sender"),
            ));
        }
        None => {
            return Err(reject(
                Code::UnknownMessageType,
                format!("messageTypeId {message_type_id:?} is not a known message type"),
            ));
        }
    };

    if !draft.subject.has_any() {
        return Err(reject(
            Code::InvalidInput,
            "subject needs a text in at least one of nl, fr, de".into(),
        ));
    }
    if draft.attachments.len() > MAX_ATTACHMENTS {
        return Err(reject(
            Code::InvalidInput,
            format!(
                "attachments has {} items; at most {MAX_ATTACHMENTS} are allowed",
                draft.attachments.len()
            ),
        ));
    }
    let mut attachments = Vec::with_capacity(draft.attachments.len());
    for (index, attachment) in draft.attachments.into_iter().enumerate() {
        let field = |name: &str| format!("attachments[{index}].{name}");
        if attachment.file_name.trim().is_empty() {
            return Err(reject(
                Code::InvalidInput,
                format!("{} is empty", field("fileName")),
            ));
        }
        if !ALLOWED_MEDIA_TYPES.contains(&attachment.media_type.as_str()) {
            return Err(reject(
                Code::MediaTypeNotAllowed,
                format!(
                    "{} {:?} is not one of the allowed media types",
                    field("mediaType"),
                    attachment.media_type
                ),
            ));
        }
        let content = STANDARD
            .decode(attachment.content.as_bytes())
            .map_err(|_| {
                reject(
                    Code::InvalidInput,
                    format!("{} is not valid base64", field("content")),
                )
            })?;
        if content.is_empty() {
            return Err(reject(
                Code::InvalidInput,
                format!("{} is empty", field("content")),
            ));
        }
        let sha256 = Sha256Digest::of(&content);
        if let Some(digest) = &attachment.digest {
            if digest.digest_method != "sha_256" {
                return Err(reject(
                    Code::InvalidInput,
                    format!("{} must be \"sha_256\"", field("digest.digestMethod")),
                ));
            }
            if Sha256Digest::from_base64url(&digest.digest_value) != Some(sha256) {
                return Err(reject(
                    Code::DigestDoNotMatch,
                    format!(
                        "{} does not match the content's SHA-256",
                        field("digest.digestValue")
                    ),
                ));
            }
        }
        attachments.push(Attachment {
            file_name: attachment.file_name,
            media_type: attachment.media_type,
            main_content: attachment.main_content,
            attachment_title: attachment.attachment_title,
            attachment_signed: attachment.attachment_signed.unwrap_or(false),
            content,
            sha256,
        });
    }
    let body_content = draft.body_content.filter(|text| text.has_any());
    if draft.body_main_content && body_content.is_none() {
        return Err(reject(
            Code::InvalidInput,
            "bodyMainContent is true but bodyContent has no text".into(),
        ));
    }
    if !draft.body_main_content && !attachments.iter().any(|a| a.main_content) {
        return Err(reject(
            Code::InvalidInput,
            "the message has no main content: mark one attachment mainContent, or set bodyMainContent with a bodyContent".into(),
        ));
    }

    let now = envelope.accepted_at;
    let latest = validity.end_from(now).unwrap_or(DateTime::<Utc>::MAX_UTC);
    let expiration_date = match draft.expiration {
        RequestedExpiration::TypeDefault => latest,
        RequestedExpiration::At(raw) => {
            let at = DateTime::parse_from_rfc3339(&raw)
                .map_err(|_| {
                    reject(
                        Code::InvalidInput,
                        format!("expirationDate {raw:?} is not a date-time like 2027-01-31T23:59:59+01:00"),
                    )
                })?
                .with_timezone(&Utc);
            if at <= now {
                return Err(reject(
                    Code::InvalidExpirationDate,
                    "expirationDate is in the past".into(),
                ));
            }
            if at > latest {
                return Err(reject(
                    Code::InvalidExpirationDate,
                    format!(
                        "expirationDate is beyond the message type's validity period (at most {})",
                        latest.to_rfc3339()
                    ),
                ));
            }
            at
        }
        RequestedExpiration::Days(days) => {
            let at = u64::try_from(days)
                .ok()
                .filter(|d| *d > 0)
                .and_then(|d| now.checked_add_days(Days::new(d)))
                .ok_or_else(|| {
                    reject(
                        Code::InvalidExpirationDate,
                        "retentionDays must be at least 1".into(),
                    )
                })?;
            if at > latest {
                return Err(reject(
                    Code::InvalidExpirationDate,
                    format!("retentionDays {days} is beyond the message type's validity period"),
                ));
            }
            at
        }
    };

    Ok(Publication {
        message_id: envelope.message_id,
        sender_id: envelope.sender_id.clone(),
        sender_reference: envelope.sender_reference.clone(),
        correlation_id: envelope.correlation_id.clone(),
        recipient,
        sender_organization_id: organization_id,
        sender_application_id: draft.sender_application_id,
        message_type_id,
        subject: draft.subject,
        body_main_content: draft.body_main_content,
        body_content,
        attachments,
        reply_authorized: draft.reply_authorized,
        registered_mail: draft.registered_mail,
        business_data_list: draft.business_data_list,
        payment_data: draft.payment_data,
        for_the_attention_of: draft.for_the_attention_of,
        original_message_id: draft.original_message_id,
        expiration_date,
        accepted_at: now,
    })
}
