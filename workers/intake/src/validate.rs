//! Validation of a decoded publication against the sender contract and the registry. Pure: the
//! handler looks up what is needed first, so a test can check every rule without a database.
//!
//! [`validate`] runs one check per concern, in the contract's order, and the first that fails
//! answers: recipient, sender organisation and application, message type, subject,
//! attachments, main content, expiration date.

use crate::contract::{AttachmentV2, ContractVersion, Draft, RequestedExpiration};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Days, Utc};
use domain::cbe::CbeNumber;
use domain::digest::{DigestObject, Sha256Digest};
use domain::ids::{MessageId, SenderId, SenderReference};
use domain::publication::{Attachment, Publication};
use domain::registry::ValidityPeriod;
use domain::ssin::{Ssin, SsinError};
use domain::status::Code;
use domain::translated::TranslatedString;
use records::registry::RegisteredSender;

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

    /// The same rejection, about a known recipient.
    fn about(self, recipient: Ssin) -> Self {
        Self {
            recipient: Some(recipient),
            ..self
        }
    }
}

/// What the message is, besides its body.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub message_id: MessageId,
    pub sender_id: SenderId,
    pub sender_reference: SenderReference,
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
    let recipient = recipient(&draft)?;
    // From here on the recipient is known: the audit of a rejection records it (hashed).
    checked(draft, envelope, sender, validity, recipient.clone())
        .map_err(|rejection| rejection.about(recipient))
}

/// The checks after the recipient's, in order, and the publication they allow.
fn checked(
    draft: Draft,
    envelope: &Envelope,
    sender: &RegisteredSender,
    validity: Option<ValidityPeriod>,
    recipient: Ssin,
) -> Result<Publication, Rejection> {
    let organization_id = sender_organization(draft.sender_organization_id.as_deref(), sender)?;
    sender_application(draft.sender_application_id.as_deref(), sender)?;
    let (message_type_id, validity) =
        message_type(draft.message_type_id.as_deref(), sender, validity)?;
    subject(&draft.subject)?;
    let attachments = attachments(draft.attachments)?;
    let body_content = main_content(draft.body_main_content, draft.body_content, &attachments)?;
    let expiration_date = expiration_date(draft.expiration, validity, envelope.accepted_at)?;
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
        accepted_at: envelope.accepted_at,
    })
}

/// A citizen, by a valid national number; the field is named as the sender's release spells it.
fn recipient(draft: &Draft) -> Result<Ssin, Rejection> {
    if draft.recipient_type != "citizen" {
        return Err(Rejection::new(
            Code::InvalidRecipient,
            format!(
                "recipient.eboxType must be \"citizen\", not {:?}: this service delivers to citizens only",
                draft.recipient_type
            ),
        ));
    }
    Ssin::parse(&draft.recipient_id).map_err(|error| {
        let field = match draft.version {
            ContractVersion::V1 => "ssin",
            ContractVersion::V2 => "recipient.eboxIdValue",
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
    })
}

/// The sender's own organisation, which is also the default.
fn sender_organization(
    requested: Option<&str>,
    sender: &RegisteredSender,
) -> Result<String, Rejection> {
    let Some(raw) = requested else {
        return Ok(sender.organization_id.clone());
    };
    match CbeNumber::parse(raw) {
        Ok(cbe) if cbe.as_str() == sender.organization_id => Ok(cbe.as_str().to_owned()),
        Ok(_) => Err(Rejection::new(
            Code::SenderNotAuthorized,
            "senderOrganizationId is not the organisation registered for this sender",
        )),
        Err(error) => Err(Rejection::new(
            Code::SenderNotAuthorized,
            format!("senderOrganizationId is not a valid enterprise number: {error}"),
        )),
    }
}

/// One of the sender's registered applications, when one is named.
fn sender_application(requested: Option<&str>, sender: &RegisteredSender) -> Result<(), Rejection> {
    match requested {
        Some(application) if !sender.applications.iter().any(|a| a == application) => {
            Err(Rejection::new(
                Code::SenderNotAuthorized,
                format!("senderApplicationId {application:?} is not registered for this sender"),
            ))
        }
        _ => Ok(()),
    }
}

/// A known message type that the sender may publish, with its validity period.
fn message_type(
    requested: Option<&str>,
    sender: &RegisteredSender,
    validity: Option<ValidityPeriod>,
) -> Result<(String, ValidityPeriod), Rejection> {
    let Some(type_id) = requested.filter(|t| !t.is_empty()) else {
        return Err(Rejection::new(
            Code::InvalidInput,
            "messageTypeId is required",
        ));
    };
    match validity {
        Some(validity) if sender.message_types.iter().any(|t| t == type_id) => {
            Ok((type_id.to_owned(), validity))
        }
        Some(_) => Err(Rejection::new(
            Code::UnknownMessageType,
            format!("messageTypeId {type_id:?} is not allowed for this sender"),
        )),
        None => Err(Rejection::new(
            Code::UnknownMessageType,
            format!("messageTypeId {type_id:?} is not a known message type"),
        )),
    }
}

fn subject(subject: &TranslatedString) -> Result<(), Rejection> {
    if subject.has_any() {
        Ok(())
    } else {
        Err(Rejection::new(
            Code::InvalidInput,
            "subject needs a text in at least one of nl, fr, de",
        ))
    }
}

/// At most [`MAX_ATTACHMENTS`], each valid on its own.
fn attachments(drafts: Vec<AttachmentV2>) -> Result<Vec<Attachment>, Rejection> {
    if drafts.len() > MAX_ATTACHMENTS {
        return Err(Rejection::new(
            Code::InvalidInput,
            format!(
                "attachments has {} items; at most {MAX_ATTACHMENTS} are allowed",
                drafts.len()
            ),
        ));
    }
    drafts
        .into_iter()
        .enumerate()
        .map(|(index, draft)| attachment(index, draft))
        .collect()
}

/// One attachment: named, of an allowed media type, with content that matches its digest.
fn attachment(index: usize, draft: AttachmentV2) -> Result<Attachment, Rejection> {
    let field = |name: &str| format!("attachments[{index}].{name}");
    if draft.file_name.trim().is_empty() {
        return Err(Rejection::new(
            Code::InvalidInput,
            format!("{} is empty", field("fileName")),
        ));
    }
    if !ALLOWED_MEDIA_TYPES.contains(&draft.media_type.as_str()) {
        return Err(Rejection::new(
            Code::MediaTypeNotAllowed,
            format!(
                "{} {:?} is not one of the allowed media types",
                field("mediaType"),
                draft.media_type
            ),
        ));
    }
    let content = attachment_content(&draft.content, &field)?;
    let sha256 = Sha256Digest::of(&content);
    if let Some(digest) = &draft.digest {
        attachment_digest(digest, sha256, &field)?;
    }
    Ok(Attachment {
        file_name: draft.file_name,
        media_type: draft.media_type,
        main_content: draft.main_content,
        attachment_title: draft.attachment_title,
        attachment_signed: draft.attachment_signed.unwrap_or(false),
        content,
        sha256,
    })
}

/// The bytes: base64, and not nothing.
fn attachment_content(base64: &str, field: &impl Fn(&str) -> String) -> Result<Vec<u8>, Rejection> {
    let content = STANDARD.decode(base64.as_bytes()).map_err(|_| {
        Rejection::new(
            Code::InvalidInput,
            format!("{} is not valid base64", field("content")),
        )
    })?;
    if content.is_empty() {
        return Err(Rejection::new(
            Code::InvalidInput,
            format!("{} is empty", field("content")),
        ));
    }
    Ok(content)
}

/// The sender's digest, when given, is a SHA-256 of exactly these bytes.
fn attachment_digest(
    digest: &DigestObject,
    sha256: Sha256Digest,
    field: &impl Fn(&str) -> String,
) -> Result<(), Rejection> {
    if digest.digest_method != "sha_256" {
        return Err(Rejection::new(
            Code::InvalidInput,
            format!("{} must be \"sha_256\"", field("digest.digestMethod")),
        ));
    }
    if Sha256Digest::from_base64url(&digest.digest_value) != Some(sha256) {
        return Err(Rejection::new(
            Code::DigestDoNotMatch,
            format!(
                "{} does not match the content's SHA-256",
                field("digest.digestValue")
            ),
        ));
    }
    Ok(())
}

/// Something for the citizen to read first: the body, or an attachment marked main content.
/// Returns the body, dropped when it has no text.
fn main_content(
    body_main_content: bool,
    body_content: Option<TranslatedString>,
    attachments: &[Attachment],
) -> Result<Option<TranslatedString>, Rejection> {
    let body_content = body_content.filter(TranslatedString::has_any);
    if body_main_content && body_content.is_none() {
        return Err(Rejection::new(
            Code::InvalidInput,
            "bodyMainContent is true but bodyContent has no text",
        ));
    }
    if !body_main_content && !attachments.iter().any(|a| a.main_content) {
        return Err(Rejection::new(
            Code::InvalidInput,
            "the message has no main content: mark one attachment mainContent, or set bodyMainContent with a bodyContent",
        ));
    }
    Ok(body_content)
}

/// When the message leaves the citizen's eBox: what the sender asked for, within the message
/// type's validity period (its end when the sender asked nothing).
fn expiration_date(
    requested: RequestedExpiration,
    validity: ValidityPeriod,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    let latest = validity.end_from(now).unwrap_or(DateTime::<Utc>::MAX_UTC);
    match requested {
        RequestedExpiration::TypeDefault => Ok(latest),
        RequestedExpiration::At(raw) => expiration_at(&raw, now, latest),
        RequestedExpiration::Days(days) => expiration_in_days(days, now, latest),
    }
}

/// v2 `expirationDate`: a date-time in the future, no later than `latest`.
fn expiration_at(
    raw: &str,
    now: DateTime<Utc>,
    latest: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            Rejection::new(
                Code::InvalidInput,
                format!("expirationDate {raw:?} is not a date-time like 2027-01-31T23:59:59+01:00"),
            )
        })?
        .with_timezone(&Utc);
    if at <= now {
        return Err(Rejection::new(
            Code::InvalidExpirationDate,
            "expirationDate is in the past",
        ));
    }
    if at > latest {
        return Err(Rejection::new(
            Code::InvalidExpirationDate,
            format!(
                "expirationDate is beyond the message type's validity period (at most {})",
                latest.to_rfc3339()
            ),
        ));
    }
    Ok(at)
}

/// v1 `retentionDays`: at least one day, no later than `latest`.
fn expiration_in_days(
    days: i64,
    now: DateTime<Utc>,
    latest: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    let at = u64::try_from(days)
        .ok()
        .filter(|d| *d > 0)
        .and_then(|d| now.checked_add_days(Days::new(d)))
        .ok_or_else(|| {
            Rejection::new(
                Code::InvalidExpirationDate,
                "retentionDays must be at least 1",
            )
        })?;
    if at > latest {
        return Err(Rejection::new(
            Code::InvalidExpirationDate,
            format!("retentionDays {days} is beyond the message type's validity period"),
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::registry::PeriodUnit;

    const SSIN: &str = "85073003328";
    const ORGANIZATION: &str = "0406798006";
    const MESSAGE_TYPE: &str = "unemployment-certificate";
    const PDF: &[u8] = b"%PDF-1.4 a certificate";

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("a valid date-time")
            .with_timezone(&Utc)
    }

    /// The decision's moment; the message type is valid for one year from it.
    fn now() -> DateTime<Utc> {
        at("2026-03-01T10:00:00Z")
    }

    fn envelope() -> Envelope {
        let sender_id = SenderId::parse("onem").expect("valid");
        let sender_reference = SenderReference::parse("ref-1").expect("valid");
        Envelope {
            message_id: MessageId::derive(&sender_id, &sender_reference),
            sender_id,
            sender_reference,
            correlation_id: Some("corr-1".into()),
            accepted_at: now(),
        }
    }

    fn pdf(main_content: bool) -> AttachmentV2 {
        AttachmentV2 {
            file_name: "attest.pdf".into(),
            media_type: "application/pdf".into(),
            main_content,
            content: STANDARD.encode(PDF),
            digest: Some(Sha256Digest::of(PDF).into()),
            attachment_title: None,
            attachment_signed: None,
        }
    }

    fn text(nl: &str) -> TranslatedString {
        TranslatedString {
            nl: Some(nl.into()),
            ..Default::default()
        }
    }

    /// Everything `validate` reads, valid as it stands: each test changes one thing.
    struct Case {
        draft: Draft,
        sender: RegisteredSender,
        validity: Option<ValidityPeriod>,
    }

    impl Case {
        fn v2() -> Self {
            Self::with(Draft {
                version: ContractVersion::V2,
                recipient_type: "citizen".into(),
                recipient_id: SSIN.into(),
                sender_organization_id: Some("0406.798.006".into()),
                sender_application_id: Some("unemployment".into()),
                message_type_id: Some(MESSAGE_TYPE.into()),
                subject: text("Uw attest"),
                attachments: vec![pdf(true)],
                body_main_content: false,
                body_content: None,
                expiration: RequestedExpiration::TypeDefault,
                reply_authorized: true,
                registered_mail: false,
                business_data_list: None,
                payment_data: None,
                for_the_attention_of: None,
                original_message_id: None,
            })
        }

        /// As [`crate::contract::decode`] normalises a v1 publication.
        fn v1() -> Self {
            Self::with(Draft {
                version: ContractVersion::V1,
                sender_organization_id: None,
                sender_application_id: None,
                attachments: vec![
                    AttachmentV2 {
                        digest: None,
                        ..pdf(true)
                    },
                    AttachmentV2 {
                        digest: None,
                        ..pdf(false)
                    },
                ],
                expiration: RequestedExpiration::Days(60),
                reply_authorized: false,
                ..Self::v2().draft
            })
        }

        fn of(release: ContractVersion) -> Self {
            match release {
                ContractVersion::V1 => Self::v1(),
                ContractVersion::V2 => Self::v2(),
            }
        }

        fn with(draft: Draft) -> Self {
            Self {
                draft,
                sender: RegisteredSender {
                    id: "onem".into(),
                    organization_id: ORGANIZATION.into(),
                    active: true,
                    applications: vec!["unemployment".into()],
                    message_types: vec![MESSAGE_TYPE.into()],
                },
                validity: Some(ValidityPeriod {
                    validity_period_number: 1,
                    validity_period_unit: PeriodUnit::Year,
                }),
            }
        }

        fn validate(self) -> Result<Publication, Rejection> {
            validate(self.draft, &envelope(), &self.sender, self.validity)
        }

        fn accepted(self) -> Publication {
            self.validate()
                .unwrap_or_else(|r| panic!("rejected: {} {}", r.code, r.message))
        }
    }

    use ContractVersion::{V1, V2};

    /// One rule: which release, how the valid case is broken, the code, and what the message
    /// must say (the field, named as the sender wrote it).
    type Rule = (
        &'static str,
        ContractVersion,
        fn(&mut Case),
        Code,
        &'static str,
    );

    const RULES: &[Rule] = &[
        (
            "an enterprise recipient",
            V2,
            |c| c.draft.recipient_type = "enterprise".into(),
            Code::InvalidRecipient,
            "recipient.eboxType must be \"citizen\"",
        ),
        (
            "a v2 national number of 10 digits",
            V2,
            |c| c.draft.recipient_id = "8507300332".into(),
            Code::InvalidSsin,
            "recipient.eboxIdValue is not a valid national number: it must be 11 digits",
        ),
        (
            "a v2 national number born in month 13",
            V2,
            |c| c.draft.recipient_id = "85133003328".into(),
            Code::InvalidSsin,
            "recipient.eboxIdValue is not a valid national number: it has an impossible birth date part",
        ),
        (
            "a v2 national number with wrong check digits",
            V2,
            |c| c.draft.recipient_id = "85073003329".into(),
            Code::InvalidSsin,
            "recipient.eboxIdValue is not a valid national number: it has wrong check digits",
        ),
        (
            "a v1 national number with a letter",
            V1,
            |c| c.draft.recipient_id = "8507300332a".into(),
            Code::InvalidSsin,
            "ssin is not a valid national number: it must be 11 digits",
        ),
        (
            "a v1 national number born in month 13",
            V1,
            |c| c.draft.recipient_id = "85133003328".into(),
            Code::InvalidSsin,
            "ssin is not a valid national number: it has an impossible birth date part",
        ),
        (
            "a v1 national number with wrong check digits",
            V1,
            |c| c.draft.recipient_id = "85073003329".into(),
            Code::InvalidSsin,
            "ssin is not a valid national number: it has wrong check digits",
        ),
        (
            "an enterprise number with wrong check digits",
            V2,
            |c| c.draft.sender_organization_id = Some("0406798007".into()),
            Code::SenderNotAuthorized,
            "senderOrganizationId is not a valid enterprise number",
        ),
        (
            "another organisation's valid enterprise number",
            V2,
            |c| c.draft.sender_organization_id = Some("0203201340".into()),
            Code::SenderNotAuthorized,
            "senderOrganizationId is not the organisation registered for this sender",
        ),
        (
            "an application the sender did not register",
            V2,
            |c| c.draft.sender_application_id = Some("pensions".into()),
            Code::SenderNotAuthorized,
            "senderApplicationId \"pensions\" is not registered",
        ),
        (
            "no message type",
            V2,
            |c| c.draft.message_type_id = None,
            Code::InvalidInput,
            "messageTypeId is required",
        ),
        (
            "an empty message type",
            V2,
            |c| c.draft.message_type_id = Some(String::new()),
            Code::InvalidInput,
            "messageTypeId is required",
        ),
        (
            "a message type the registry does not know",
            V2,
            |c| c.validity = None,
            Code::UnknownMessageType,
            "messageTypeId \"unemployment-certificate\" is not a known message type",
        ),
        (
            "a known message type the sender may not publish",
            V2,
            |c| c.sender.message_types = vec!["pension-statement".into()],
            Code::UnknownMessageType,
            "messageTypeId \"unemployment-certificate\" is not allowed for this sender",
        ),
        (
            "a subject with blank texts only",
            V2,
            |c| c.draft.subject = text("  "),
            Code::InvalidInput,
            "subject needs a text",
        ),
        (
            "seven attachments",
            V2,
            |c| c.draft.attachments = (0..7).map(|_| pdf(true)).collect(),
            Code::InvalidInput,
            "attachments has 7 items; at most 6",
        ),
        (
            "an annex without a file name",
            V1,
            |c| c.draft.attachments[1].file_name = " ".into(),
            Code::InvalidInput,
            "attachments[1].fileName is empty",
        ),
        (
            "an executable",
            V2,
            |c| c.draft.attachments[0].media_type = "application/x-msdownload".into(),
            Code::MediaTypeNotAllowed,
            "attachments[0].mediaType \"application/x-msdownload\" is not one of the allowed",
        ),
        (
            "content that is not base64",
            V2,
            |c| c.draft.attachments[0].content = "not base64!".into(),
            Code::InvalidInput,
            "attachments[0].content is not valid base64",
        ),
        (
            "empty content",
            V2,
            |c| c.draft.attachments[0].content = String::new(),
            Code::InvalidInput,
            "attachments[0].content is empty",
        ),
        (
            "a digest other than SHA-256",
            V2,
            |c| {
                if let Some(digest) = &mut c.draft.attachments[0].digest {
                    digest.digest_method = "sha_1".into();
                }
            },
            Code::InvalidInput,
            "attachments[0].digest.digestMethod must be \"sha_256\"",
        ),
        (
            "a digest of other bytes",
            V2,
            |c| c.draft.attachments[0].digest = Some(Sha256Digest::of(b"other").into()),
            Code::DigestDoNotMatch,
            "attachments[0].digest.digestValue does not match",
        ),
        (
            "the body as main content, without text",
            V2,
            |c| {
                c.draft.body_main_content = true;
                c.draft.body_content = Some(text(" "));
            },
            Code::InvalidInput,
            "bodyMainContent is true but bodyContent has no text",
        ),
        (
            "no main content at all",
            V2,
            |c| c.draft.attachments[0].main_content = false,
            Code::InvalidInput,
            "the message has no main content",
        ),
        (
            "an expiration date that is not a date-time",
            V2,
            |c| c.draft.expiration = RequestedExpiration::At("next week".into()),
            Code::InvalidInput,
            "expirationDate \"next week\" is not a date-time",
        ),
        (
            "an expiration date in the past",
            V2,
            |c| c.draft.expiration = RequestedExpiration::At("2026-02-28T10:00:00Z".into()),
            Code::InvalidExpirationDate,
            "expirationDate is in the past",
        ),
        (
            "an expiration date at the very moment of the decision",
            V2,
            |c| c.draft.expiration = RequestedExpiration::At("2026-03-01T11:00:00+01:00".into()),
            Code::InvalidExpirationDate,
            "expirationDate is in the past",
        ),
        (
            "an expiration date beyond the type's validity period",
            V2,
            |c| c.draft.expiration = RequestedExpiration::At("2027-03-01T10:00:01Z".into()),
            Code::InvalidExpirationDate,
            "expirationDate is beyond the message type's validity period (at most 2027-03-01T10:00:00+00:00)",
        ),
        (
            "zero retention days",
            V1,
            |c| c.draft.expiration = RequestedExpiration::Days(0),
            Code::InvalidExpirationDate,
            "retentionDays must be at least 1",
        ),
        (
            "negative retention days",
            V1,
            |c| c.draft.expiration = RequestedExpiration::Days(-5),
            Code::InvalidExpirationDate,
            "retentionDays must be at least 1",
        ),
        (
            "retention days beyond the type's validity period",
            V1,
            |c| c.draft.expiration = RequestedExpiration::Days(366),
            Code::InvalidExpirationDate,
            "retentionDays 366 is beyond the message type's validity period",
        ),
    ];

    #[test]
    fn every_rule_refuses_with_its_code_and_names_the_field() {
        let mut wrong = Vec::new();
        for (rule, release, change, code, names) in RULES {
            let mut case = Case::of(*release);
            change(&mut case);
            match case.validate() {
                Ok(_) => wrong.push(format!("{rule}: accepted")),
                Err(r) if r.code != *code || !r.message.contains(names) => {
                    wrong.push(format!("{rule}: {} {:?}", r.code, r.message));
                }
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn a_rejection_keeps_the_recipient_for_the_audit_only_once_it_is_valid() {
        let mut bad_number = Case::v2();
        bad_number.draft.recipient_id = "85073003329".into();
        let rejection = bad_number.validate().expect_err("invalid");
        assert!(rejection.recipient.is_none());

        let mut bad_subject = Case::v2();
        bad_subject.draft.subject = TranslatedString::default();
        let rejection = bad_subject.validate().expect_err("invalid");
        assert_eq!(rejection.recipient.as_ref().map(Ssin::expose), Some(SSIN));
    }

    #[test]
    fn a_valid_v2_message_becomes_a_publication_that_expires_with_its_type() {
        let publication = Case::v2().accepted();
        let envelope = envelope();
        assert_eq!(publication.message_id, envelope.message_id);
        assert_eq!(publication.sender_id, envelope.sender_id);
        assert_eq!(publication.sender_reference, envelope.sender_reference);
        assert_eq!(publication.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(publication.recipient.expose(), SSIN);
        assert_eq!(
            publication.sender_organization_id, ORGANIZATION,
            "the enterprise number is kept without its dots"
        );
        assert_eq!(
            publication.sender_application_id.as_deref(),
            Some("unemployment")
        );
        assert_eq!(publication.message_type_id, MESSAGE_TYPE);
        assert_eq!(publication.attachments.len(), 1);
        assert_eq!(publication.attachments[0].content, PDF);
        assert_eq!(publication.attachments[0].sha256, Sha256Digest::of(PDF));
        assert!(publication.reply_authorized);
        assert_eq!(publication.accepted_at, now());
        assert_eq!(publication.expiration_date, at("2027-03-01T10:00:00Z"));
    }

    #[test]
    fn a_v2_expiration_date_within_the_period_is_kept_in_utc() {
        let mut case = Case::v2();
        case.draft.expiration = RequestedExpiration::At("2026-06-30T23:59:59+02:00".into());
        assert_eq!(case.accepted().expiration_date, at("2026-06-30T21:59:59Z"));
    }

    #[test]
    fn the_last_moment_of_the_validity_period_is_still_allowed() {
        let mut date = Case::v2();
        date.draft.expiration = RequestedExpiration::At("2027-03-01T10:00:00Z".into());
        assert_eq!(date.accepted().expiration_date, at("2027-03-01T10:00:00Z"));
        let mut days = Case::v1();
        days.draft.expiration = RequestedExpiration::Days(365);
        assert_eq!(days.accepted().expiration_date, at("2027-03-01T10:00:00Z"));
    }

    #[test]
    fn without_a_sender_organisation_the_registered_one_is_used() {
        let mut case = Case::v2();
        case.draft.sender_organization_id = None;
        case.draft.sender_application_id = None;
        let publication = case.accepted();
        assert_eq!(publication.sender_organization_id, ORGANIZATION);
        assert_eq!(publication.sender_application_id, None);
    }

    #[test]
    fn a_valid_v1_message_expires_after_its_retention_days() {
        let publication = Case::v1().accepted();
        assert_eq!(publication.sender_organization_id, ORGANIZATION);
        assert_eq!(publication.expiration_date, at("2026-04-30T10:00:00Z"));
        let main: Vec<bool> = publication
            .attachments
            .iter()
            .map(|a| a.main_content)
            .collect();
        assert_eq!(main, [true, false]);
    }

    #[test]
    fn a_v1_message_without_retention_days_expires_with_its_type() {
        let mut case = Case::v1();
        case.draft.expiration = RequestedExpiration::TypeDefault;
        assert_eq!(case.accepted().expiration_date, at("2027-03-01T10:00:00Z"));
    }

    #[test]
    fn six_attachments_are_allowed() {
        let mut case = Case::v2();
        case.draft.attachments = (0..6).map(|i| pdf(i == 0)).collect();
        assert_eq!(case.accepted().attachments.len(), 6);
    }

    #[test]
    fn a_body_with_text_can_be_the_main_content_without_attachments() {
        let mut case = Case::v2();
        case.draft.attachments.clear();
        case.draft.body_main_content = true;
        case.draft.body_content = Some(text("Uw dossier is volledig."));
        let publication = case.accepted();
        assert!(publication.attachments.is_empty());
        assert_eq!(
            publication.body_content,
            Some(text("Uw dossier is volledig."))
        );
    }

    #[test]
    fn a_blank_body_beside_a_main_attachment_is_dropped() {
        let mut case = Case::v2();
        case.draft.body_content = Some(text(" "));
        assert_eq!(case.accepted().body_content, None);
    }
}
