//! Validation of a decoded publication against the sender contract and the registry. Pure: the
//! handler looks up what is needed first, so a test can check every rule without a database.
//!
//! [`validate`] runs one check per concern, in the contract's order, and the first that fails
//! answers: recipient, sender organisation and application, message type, subject,
//! attachments, main content, expiration date, then the other texts kept as written (the
//! original message id and the structured data, each against the contract's definition:
//! `BusinessDataToPublish`, `PaymentData`, `ForTheAttentionOf`).
//!
//! Every text the pipeline keeps is checked here, so that no later stage meets one it cannot
//! store: no control character (PostgreSQL refuses NUL in `text` and `jsonb`, and the others
//! have no place in a subject or a name; a body may have tabs and line breaks), no
//! bidirectional formatting character in a file name (they make `invoice\u{202E}fdp.exe` read
//! as `invoiceexe.pdf`), no path separator in a file name, and a bounded length. Such a
//! refusal is `INVALID_INPUT` naming the field, never quoting the text.
//!
//! An attachment's bytes must also look like its declared media type (its file signature, or
//! UTF-8 for text: [`Signature`]), so that the citizen is never handed, say, an HTML page
//! named as a PDF; a mismatch is `MEDIA_TYPE_NOT_ALLOWED` naming the field, never quoting the
//! bytes.

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
use serde_json::Value;

/// At most this many attachments per message (the federation's limit).
pub const MAX_ATTACHMENTS: usize = 6;

/// At most this many characters in a subject, per language. The portal shows a subject on one
/// line of the message list and as the heading of the message: 512 is far beyond what it can
/// display, and even at four bytes a character stays under PostgreSQL's B-tree entry limit
/// (about 2,700 bytes), so the subject can be indexed for the portal's search.
pub const MAX_SUBJECT_CHARS: usize = 512;

/// At most this many characters in an attachment's title, per language: shown like a
/// subject, beside the file, and bounded for the same reasons.
pub const MAX_ATTACHMENT_TITLE_CHARS: usize = 512;

/// At most this many characters in an attachment's file name: the citizen saves the file
/// under this name, and the common file systems (NTFS, APFS, ext4) allow 255 per name.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// At most this many characters in an identifier kept as sent (`messageTypeId`,
/// `senderApplicationId`, `originalMessageId`, the AMQP `correlation_id`): as many as a sender
/// reference may have, and small enough to index.
pub const MAX_IDENTIFIER_CHARS: usize = 128;

/// At most this many bytes (UTF-8) of `bodyContent`, per language. The body is the letter's
/// text, which the portal renders inline in the page: 1 MiB is some 500 pages of plain text,
/// more than any letter; a longer text belongs in an attachment.
pub const MAX_BODY_CONTENT_BYTES: usize = 1024 * 1024;

/// The control characters a body may contain: tab and the line breaks.
const BODY_LAYOUT_CHARACTERS: [char; 3] = ['\t', '\n', '\r'];

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
    /// A rejection saying `message`. A control or bidirectional formatting character in it
    /// (some messages quote what the sender wrote, such as an unknown field's name) is written
    /// as its JSON escape: the message goes into the audit trail, which PostgreSQL keeps as
    /// `jsonb`, and to the sender, who should read it as it was meant.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: escaped(message.into()),
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
    if let Some(body) = &draft.body_content {
        body_content(body)?;
    }
    let body_content = main_content(draft.body_main_content, draft.body_content, &attachments)?;
    let expiration_date = expiration_date(draft.expiration, validity, envelope.accepted_at)?;
    if let Some(original) = &draft.original_message_id {
        identifier("originalMessageId", original)?;
    }
    for (field, data) in [
        ("businessDataList", &draft.business_data_list),
        ("paymentData", &draft.payment_data),
        ("forTheAttentionOf", &draft.for_the_attention_of),
    ] {
        if let Some(data) = data {
            structured_data(field, data)?;
        }
    }
    if let Some(list) = &draft.business_data_list {
        business_data_list(list)?;
    }
    if let Some(payment) = &draft.payment_data {
        payment_data(payment)?;
    }
    if let Some(attention) = &draft.for_the_attention_of {
        for_the_attention_of(attention)?;
    }
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
    if let Some(application) = requested {
        identifier("senderApplicationId", application)?;
    }
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
    identifier("messageTypeId", type_id)?;
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

/// A text in at least one language, each short and free of control characters.
fn subject(subject: &TranslatedString) -> Result<(), Rejection> {
    translated_text("subject", subject, MAX_SUBJECT_CHARS)?;
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

/// One attachment: named, titled in plain text, of an allowed media type, with content that
/// matches its digest and looks like that media type.
fn attachment(index: usize, draft: AttachmentV2) -> Result<Attachment, Rejection> {
    let field = |name: &str| format!("attachments[{index}].{name}");
    file_name(&field("fileName"), &draft.file_name)?;
    if let Some(title) = &draft.attachment_title {
        translated_text(&field("attachmentTitle"), title, MAX_ATTACHMENT_TITLE_CHARS)?;
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
    content_like_media_type(&draft.media_type, &content, &field)?;
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

/// A name the citizen can save the file under, and that shows what it is: not blank, not too
/// long, no control character, no bidirectional formatting character (which can make
/// `invoice\u{202E}fdp.exe` display as `invoiceexe.pdf`), no path separator.
fn file_name(field: &str, name: &str) -> Result<(), Rejection> {
    if name.trim().is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    at_most_chars(field, name, MAX_FILE_NAME_CHARS)?;
    no_control_character(field, name, &[])?;
    if let Some(c) = name.chars().find(|c| is_bidi_formatting(*c)) {
        return Err(invalid(format!(
            "{field} contains a bidirectional formatting character ({})",
            code_point(c)
        )));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(invalid(format!(
            "{field} contains a path separator ('{c}'); give the name of the file alone"
        )));
    }
    Ok(())
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

/// What the bytes of an allowed media type must look like: its file signature, or for text,
/// UTF-8. Not a parse of the format, but enough that the portal and the citizen's programs are
/// never handed, say, an HTML page under the name of a PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signature {
    /// `%PDF-`.
    Pdf,
    /// A ZIP local file header, `PK\x03\x04`: ZIP, and the OOXML and ODF formats, which are
    /// ZIP archives.
    Zip,
    /// The OLE compound file header, `D0 CF 11 E0 A1 B1 1A E1`: the legacy Microsoft Office
    /// formats.
    Ole,
    /// Valid UTF-8 without NUL.
    Text,
}

impl Signature {
    /// The signature of `media_type`, one of [`ALLOWED_MEDIA_TYPES`]; `None` for any other.
    fn of(media_type: &str) -> Option<Self> {
        match media_type {
            "application/pdf" => Some(Self::Pdf),
            "application/zip" => Some(Self::Zip),
            t if t.starts_with("application/vnd.openxmlformats-officedocument.")
                || t.starts_with("application/vnd.oasis.opendocument.") =>
            {
                Some(Self::Zip)
            }
            "application/msword" | "application/vnd.ms-excel" | "application/vnd.ms-powerpoint" => {
                Some(Self::Ole)
            }
            "text/plain" | "text/csv" | "text/html" | "text/xml" => Some(Self::Text),
            _ => None,
        }
    }

    fn matches(self, content: &[u8]) -> bool {
        match self {
            Self::Pdf => content.starts_with(b"%PDF-"),
            Self::Zip => content.starts_with(b"PK\x03\x04"),
            Self::Ole => content.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]),
            Self::Text => std::str::from_utf8(content).is_ok() && !content.contains(&0),
        }
    }

    /// What the sender should have sent, for the rejection.
    fn expected(self) -> &'static str {
        match self {
            Self::Pdf => "a PDF starts with %PDF-",
            Self::Zip => "this format is a ZIP archive, which starts with the bytes 50 4B 03 04",
            Self::Ole => {
                "this format is an OLE compound file, which starts with the bytes D0 CF 11 E0 A1 B1 1A E1"
            }
            Self::Text => "text must be UTF-8, without NUL characters",
        }
    }
}

/// The bytes look like the declared media type (see [`Signature`]). A mismatch is
/// `MEDIA_TYPE_NOT_ALLOWED` naming the field, never quoting the bytes. A media type without a
/// signature is refused too, so that adding one to [`ALLOWED_MEDIA_TYPES`] without saying what
/// its bytes look like cannot let anything through.
fn content_like_media_type(
    media_type: &str,
    content: &[u8],
    field: &impl Fn(&str) -> String,
) -> Result<(), Rejection> {
    match Signature::of(media_type) {
        Some(signature) if signature.matches(content) => Ok(()),
        Some(signature) => Err(Rejection::new(
            Code::MediaTypeNotAllowed,
            format!(
                "{} does not look like {media_type}: {}",
                field("content"),
                signature.expected()
            ),
        )),
        None => Err(Rejection::new(
            Code::MediaTypeNotAllowed,
            format!(
                "{} {media_type:?} has no known signature to check its content against",
                field("mediaType")
            ),
        )),
    }
}

/// The body's text, in each language: bounded, with tabs and line breaks but no other control
/// character.
fn body_content(body: &TranslatedString) -> Result<(), Rejection> {
    for (language, text) in languages(body) {
        let field = format!("bodyContent.{language}");
        if text.len() > MAX_BODY_CONTENT_BYTES {
            return Err(invalid(format!(
                "{field} has {} bytes; at most {MAX_BODY_CONTENT_BYTES} are allowed (put a longer text in an attachment)",
                text.len()
            )));
        }
        no_control_character(&field, text, &BODY_LAYOUT_CHARACTERS)?;
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

/// An identifier kept as sent (the AMQP `correlation_id`, `messageTypeId`…): at most
/// [`MAX_IDENTIFIER_CHARS`] characters, none of them a control character. `field` names it in
/// the rejection.
pub fn identifier(field: &str, text: &str) -> Result<(), Rejection> {
    at_most_chars(field, text, MAX_IDENTIFIER_CHARS)?;
    no_control_character(field, text, &[])
}

/// A short free text kept as sent (a withdrawal's reason): at most `max_chars` characters,
/// none of them a control character.
pub fn short_text(field: &str, text: &str, max_chars: usize) -> Result<(), Rejection> {
    at_most_chars(field, text, max_chars)?;
    no_control_character(field, text, &[])
}

/// Whether `text` could be kept as an identifier: what may be looked up, stored or echoed.
pub fn is_identifier(text: &str) -> bool {
    text.chars().count() <= MAX_IDENTIFIER_CHARS && !text.chars().any(char::is_control)
}

/// Every language of a short text (a subject, a title): at most `max_chars` characters, none
/// of them a control character. A blank text is checked too: it is kept as sent.
fn translated_text(
    field: &str,
    text: &TranslatedString,
    max_chars: usize,
) -> Result<(), Rejection> {
    for (language, text) in languages(text) {
        let field = format!("{field}.{language}");
        at_most_chars(&field, text, max_chars)?;
        no_control_character(&field, text, &[])?;
    }
    Ok(())
}

/// The texts of a [`TranslatedString`] as sent, blank ones included, with their language.
fn languages(text: &TranslatedString) -> impl Iterator<Item = (&'static str, &str)> {
    [("nl", &text.nl), ("fr", &text.fr), ("de", &text.de)]
        .into_iter()
        .filter_map(|(language, text)| Some((language, text.as_deref()?)))
}

/// Structured data kept as sent (`businessDataList`, `paymentData`, `forTheAttentionOf`): no
/// control character in any string, object keys included, however deep.
fn structured_data(field: &str, data: &Value) -> Result<(), Rejection> {
    let mut path = Vec::new();
    let Some((c, place)) = control_character_in(data, &mut path) else {
        return Ok(());
    };
    let mut named = field.to_owned();
    for step in &path {
        step.write_to(&mut named);
    }
    Err(invalid(match place {
        Place::Value => format!("{named} contains a control character ({})", code_point(c)),
        Place::Key => format!(
            "{named} has a key that contains a control character ({})",
            code_point(c)
        ),
    }))
}

/// At most this many characters in a text of the structured data (a business data name,
/// description or value, per language; the name of the person a message is for): shown like a
/// subject, and bounded for the same reasons.
pub const MAX_STRUCTURED_TEXT_CHARS: usize = 512;

/// `businessDataList`: the contract's `BusinessDataToPublish` items, each with its `key` and
/// its `values`, and nothing the definition does not have.
fn business_data_list(list: &Value) -> Result<(), Rejection> {
    let Value::Array(items) = list else {
        return Err(invalid("businessDataList must be an array".to_owned()));
    };
    for (index, item) in items.iter().enumerate() {
        let field = format!("businessDataList[{index}]");
        let members = object(&field, item, &["key", "name", "description", "values"])?;
        let key = string(&format!("{field}.key"), required(&field, members, "key")?)?;
        identifier(&format!("{field}.key"), key)?;
        for name in ["name", "description"] {
            if let Some(text) = members.get(name) {
                translated(&format!("{field}.{name}"), text)?;
            }
        }
        let values_field = format!("{field}.values");
        let Value::Array(values) = required(&field, members, "values")? else {
            return Err(invalid(format!("{values_field} must be an array")));
        };
        for (at, value) in values.iter().enumerate() {
            translated(&format!("{values_field}[{at}]"), value)?;
        }
    }
    Ok(())
}

/// `paymentData`: the contract's `PaymentData`, its six required members of their types, and
/// the standards it names: ISO 4217 for the currency, ISO 13616 for the IBAN (its check
/// digits), ISO 9362 for the BIC; the due date an RFC 3339 date-time; amounts not negative.
fn payment_data(payment: &Value) -> Result<(), Rejection> {
    let field = "paymentData";
    let members = object(
        field,
        payment,
        &[
            "paymentDataId",
            "amount",
            "vatAmount",
            "currency",
            "dueDate",
            "iban",
            "bic",
            "reference",
        ],
    )?;
    let id = string(
        "paymentData.paymentDataId",
        required(field, members, "paymentDataId")?,
    )?;
    identifier("paymentData.paymentDataId", id)?;
    for name in ["amount", "vatAmount"] {
        amount(&format!("{field}.{name}"), required(field, members, name)?)?;
    }
    let currency = string(
        "paymentData.currency",
        required(field, members, "currency")?,
    )?;
    if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err(invalid(
            "paymentData.currency must be an ISO 4217 code of three capital letters (EUR)"
                .to_owned(),
        ));
    }
    let due = string("paymentData.dueDate", required(field, members, "dueDate")?)?;
    if DateTime::parse_from_rfc3339(due).is_err() {
        return Err(invalid(
            "paymentData.dueDate must be a date-time like 2027-01-31T23:59:59+01:00".to_owned(),
        ));
    }
    let iban = string("paymentData.iban", required(field, members, "iban")?)?;
    if !is_iban(iban) {
        return Err(invalid(
            "paymentData.iban is not a valid IBAN (ISO 13616, written without spaces: BE68539007547034)"
                .to_owned(),
        ));
    }
    if let Some(bic) = members.get("bic")
        && !is_bic(string("paymentData.bic", bic)?)
    {
        return Err(invalid(
            "paymentData.bic is not a valid BIC (ISO 9362: 8 or 11 letters and digits, GEBABEBB)"
                .to_owned(),
        ));
    }
    if members.get("reference").is_some_and(|r| !r.is_object()) {
        return Err(invalid(
            "paymentData.reference must be an object".to_owned(),
        ));
    }
    Ok(())
}

/// `forTheAttentionOf`: the contract's `ForTheAttentionOf`, an object of at most `id`, `type`
/// and `name`, each a string.
fn for_the_attention_of(attention: &Value) -> Result<(), Rejection> {
    let field = "forTheAttentionOf";
    let members = object(field, attention, &["id", "type", "name"])?;
    for name in ["id", "type"] {
        if let Some(value) = members.get(name) {
            let named = format!("{field}.{name}");
            identifier(&named, string(&named, value)?)?;
        }
    }
    if let Some(value) = members.get("name") {
        let text = string("forTheAttentionOf.name", value)?;
        at_most_chars("forTheAttentionOf.name", text, MAX_STRUCTURED_TEXT_CHARS)?;
    }
    Ok(())
}

/// The members of the object `field`, which has none but those `known`.
fn object<'a>(
    field: &str,
    value: &'a Value,
    known: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, Rejection> {
    let Value::Object(members) = value else {
        return Err(invalid(format!("{field} must be an object")));
    };
    match members.keys().find(|key| !known.contains(&key.as_str())) {
        // Named only when it is a plain name: a key is the sender's text.
        Some(key) if is_plain_key(key) => Err(invalid(format!(
            "{field}.{key} is not a member of its definition in the contract"
        ))),
        Some(_) => Err(invalid(format!(
            "{field} has a member that is not in its definition in the contract"
        ))),
        None => Ok(members),
    }
}

/// The member `name` of the object `field`, which the contract requires.
fn required<'a>(
    field: &str,
    members: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a Value, Rejection> {
    members
        .get(name)
        .ok_or_else(|| invalid(format!("{field}.{name} is required")))
}

fn string<'a>(field: &str, value: &'a Value) -> Result<&'a str, Rejection> {
    value
        .as_str()
        .ok_or_else(|| invalid(format!("{field} must be a string")))
}

/// A number, not negative: what a citizen is asked to pay.
fn amount(field: &str, value: &Value) -> Result<(), Rejection> {
    match value.as_f64() {
        Some(amount) if amount >= 0.0 => Ok(()),
        Some(_) => Err(invalid(format!("{field} must not be negative"))),
        None => Err(invalid(format!("{field} must be a number"))),
    }
}

/// A `TranslatedString` (nl, fr, de, each a string) whose texts are short and plain.
fn translated(field: &str, value: &Value) -> Result<(), Rejection> {
    let text: TranslatedString = serde_json::from_value(value.clone()).map_err(|_| {
        invalid(format!(
            "{field} must be a TranslatedString: an object of nl, fr and de texts"
        ))
    })?;
    translated_text(field, &text, MAX_STRUCTURED_TEXT_CHARS)
}

/// ISO 13616: a country code, two check digits and up to 30 letters and digits, 15 to 34 in
/// all, whose check digits hold (the number with its first four characters moved to the end,
/// letters as 10 to 35, is 1 modulo 97).
fn is_iban(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    if !(15..=34).contains(&bytes.len())
        || !bytes[..2].iter().all(u8::is_ascii_uppercase)
        || !bytes[2..4].iter().all(u8::is_ascii_digit)
        || !bytes[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return false;
    }
    let mut remainder = 0u32;
    for b in bytes[4..].iter().chain(&bytes[..4]) {
        let value = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        let factor = if value >= 10 { 100 } else { 10 };
        remainder = (remainder * factor + value) % 97;
    }
    remainder == 1
}

/// ISO 9362: four letters (the bank), two (the country), two letters or digits (the place),
/// and optionally three more (the branch).
fn is_bic(bic: &str) -> bool {
    let bytes = bic.as_bytes();
    matches!(bytes.len(), 8 | 11)
        && bytes[..6].iter().all(u8::is_ascii_uppercase)
        && bytes[6..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// One step into a JSON value, to name where a problem is.
enum Step<'a> {
    Index(usize),
    Key(&'a str),
}

impl Step<'_> {
    /// `[2]`, `.values`, or `["…"]` for a key that is not a plain name: a key is the sender's
    /// text, and a rejection does not quote such text.
    fn write_to(&self, path: &mut String) {
        match self {
            Step::Index(index) => path.push_str(&format!("[{index}]")),
            Step::Key(key) if is_plain_key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Key(_) => path.push_str("[\"…\"]"),
        }
    }
}

fn is_plain_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where in a JSON value a control character was found.
enum Place {
    Value,
    /// In a key of the object at the path.
    Key,
}

/// The first control character in a string of `value`, keys included, with the path to it
/// left in `path`. The depth is bounded by the JSON parser's recursion limit.
fn control_character_in<'a>(value: &'a Value, path: &mut Vec<Step<'a>>) -> Option<(char, Place)> {
    match value {
        Value::String(text) => control_character(text, &[]).map(|c| (c, Place::Value)),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            path.push(Step::Index(index));
            let found = control_character_in(item, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if let Some(c) = control_character(key, &[]) {
                return Some((c, Place::Key));
            }
            path.push(Step::Key(key));
            let found = control_character_in(item, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// At most `max` characters (Unicode scalar values, as the sender's tools count them).
fn at_most_chars(field: &str, text: &str, max: usize) -> Result<(), Rejection> {
    let count = text.chars().count();
    if count > max {
        return Err(invalid(format!(
            "{field} has {count} characters; at most {max} are allowed"
        )));
    }
    Ok(())
}

/// No control character (Unicode category Cc, NUL included) but those `allowed`.
fn no_control_character(field: &str, text: &str, allowed: &[char]) -> Result<(), Rejection> {
    match control_character(text, allowed) {
        Some(c) => Err(invalid(format!(
            "{field} contains a control character ({})",
            code_point(c)
        ))),
        None => Ok(()),
    }
}

fn control_character(text: &str, allowed: &[char]) -> Option<char> {
    text.chars()
        .find(|c| c.is_control() && !allowed.contains(c))
}

/// Unicode's bidirectional formatting characters (the `Bidi_Control` property): the embeddings
/// and overrides U+202A–U+202E, the isolates U+2066–U+2069, the marks U+200E, U+200F and the
/// Arabic letter mark U+061C.
fn is_bidi_formatting(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `U+0000`: how a rejection names a character without writing it.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// `message`, with each control or bidirectional formatting character written as its JSON
/// escape (`\u0000`).
fn escaped(message: String) -> String {
    if !message
        .chars()
        .any(|c| c.is_control() || is_bidi_formatting(c))
    {
        return message;
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() || is_bidi_formatting(c) {
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn invalid(message: String) -> Rejection {
    Rejection::new(Code::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::registry::PeriodUnit;
    use serde_json::json;

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

    /// Makes attachment `index` `content` declared as `media_type`, with a digest that
    /// matches, so that only the media type can be wrong.
    fn declared(c: &mut Case, index: usize, media_type: &str, content: &[u8]) {
        let attachment = &mut c.draft.attachments[index];
        attachment.media_type = media_type.into();
        attachment.content = STANDARD.encode(content);
        attachment.digest = Some(Sha256Digest::of(content).into());
    }

    /// Whether `content` passes for `media_type`.
    fn looks_like(media_type: &str, content: &[u8]) -> bool {
        content_like_media_type(media_type, content, &|name| name.to_owned()).is_ok()
    }

    const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0];
    const ZIP: &[u8] = b"PK\x03\x04\x14\x00\x00\x00";
    const HTML: &[u8] = b"<html><body><script>alert(1)</script></body></html>";

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
                    limited: false,
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

    /// A valid `PaymentData`, every member given.
    fn payment() -> Value {
        json!({
            "paymentDataId": "pay-2026-001",
            "amount": 12.5,
            "vatAmount": 0,
            "currency": "EUR",
            "dueDate": "2027-01-31T23:59:59+01:00",
            "iban": "BE68539007547034",
            "bic": "GEBABEBB",
            "reference": {"structured": "+++090/9337/55493+++"}
        })
    }

    /// Valid payment data with `name` set to `value`.
    fn set(data: &mut Option<Value>, name: &str, value: Value) {
        let mut payment = payment();
        payment[name] = value;
        *data = Some(payment);
    }

    /// Valid payment data without `name`.
    fn remove(data: &mut Option<Value>, name: &str) {
        let mut payment = payment();
        payment.as_object_mut().map(|members| members.remove(name));
        *data = Some(payment);
    }

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
            "a NUL in the application",
            V2,
            |c| c.draft.sender_application_id = Some("unemployment\u{0}".into()),
            Code::InvalidInput,
            "senderApplicationId contains a control character (U+0000)",
        ),
        (
            "an application of 129 characters",
            V2,
            |c| c.draft.sender_application_id = Some("a".repeat(MAX_IDENTIFIER_CHARS + 1)),
            Code::InvalidInput,
            "senderApplicationId has 129 characters; at most 128 are allowed",
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
            "a NUL in the message type",
            V2,
            |c| c.draft.message_type_id = Some("unemployment-certificate\u{0}".into()),
            Code::InvalidInput,
            "messageTypeId contains a control character (U+0000)",
        ),
        (
            "a message type of 129 characters",
            V2,
            |c| c.draft.message_type_id = Some("t".repeat(MAX_IDENTIFIER_CHARS + 1)),
            Code::InvalidInput,
            "messageTypeId has 129 characters; at most 128 are allowed",
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
            "a NUL in a subject",
            V2,
            |c| c.draft.subject = text("Uw\u{0}attest"),
            Code::InvalidInput,
            "subject.nl contains a control character (U+0000)",
        ),
        (
            "an escape sequence in the French subject of a v1 message",
            V1,
            |c| c.draft.subject.fr = Some("\u{1b}[31mVotre attestation".into()),
            Code::InvalidInput,
            "subject.fr contains a control character (U+001B)",
        ),
        (
            "a tab in a subject",
            V2,
            |c| c.draft.subject.de = Some("Ihre\tBescheinigung".into()),
            Code::InvalidInput,
            "subject.de contains a control character (U+0009)",
        ),
        (
            "a subject that is only a vertical tab, blank but kept as sent",
            V2,
            |c| c.draft.subject.fr = Some("\u{b}".into()),
            Code::InvalidInput,
            "subject.fr contains a control character (U+000B)",
        ),
        (
            "a subject of 513 characters",
            V2,
            |c| c.draft.subject = text(&"é".repeat(MAX_SUBJECT_CHARS + 1)),
            Code::InvalidInput,
            "subject.nl has 513 characters; at most 512 are allowed",
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
            "a file name with a right-to-left override",
            V2,
            |c| c.draft.attachments[0].file_name = "attest\u{202E}fdp.exe".into(),
            Code::InvalidInput,
            "attachments[0].fileName contains a bidirectional formatting character (U+202E)",
        ),
        (
            "an annex name with a left-to-right isolate",
            V1,
            |c| c.draft.attachments[1].file_name = "\u{2066}bijlage.pdf".into(),
            Code::InvalidInput,
            "attachments[1].fileName contains a bidirectional formatting character (U+2066)",
        ),
        (
            "a file name with a right-to-left mark",
            V2,
            |c| c.draft.attachments[0].file_name = "attest\u{200F}.pdf".into(),
            Code::InvalidInput,
            "attachments[0].fileName contains a bidirectional formatting character (U+200F)",
        ),
        (
            "a file name with an Arabic letter mark",
            V2,
            |c| c.draft.attachments[0].file_name = "attest\u{61C}.pdf".into(),
            Code::InvalidInput,
            "attachments[0].fileName contains a bidirectional formatting character (U+061C)",
        ),
        (
            "a file name with a NUL",
            V2,
            |c| c.draft.attachments[0].file_name = "attest.pdf\u{0}.exe".into(),
            Code::InvalidInput,
            "attachments[0].fileName contains a control character (U+0000)",
        ),
        (
            "a file name with a line break",
            V1,
            |c| c.draft.attachments[0].file_name = "attest\n.pdf".into(),
            Code::InvalidInput,
            "attachments[0].fileName contains a control character (U+000A)",
        ),
        (
            "a file name that climbs out of its folder",
            V2,
            |c| c.draft.attachments[0].file_name = "../attest.pdf".into(),
            Code::InvalidInput,
            "attachments[0].fileName contains a path separator ('/')",
        ),
        (
            "a file name with a Windows path",
            V2,
            |c| c.draft.attachments[0].file_name = "C:\\Temp\\attest.pdf".into(),
            Code::InvalidInput,
            "attachments[0].fileName contains a path separator ('\\')",
        ),
        (
            "a file name of 256 characters",
            V2,
            |c| c.draft.attachments[0].file_name = format!("{}.pdf", "a".repeat(252)),
            Code::InvalidInput,
            "attachments[0].fileName has 256 characters; at most 255 are allowed",
        ),
        (
            "an attachment title with a line break",
            V2,
            |c| c.draft.attachments[0].attachment_title = Some(text("Attest\n2026")),
            Code::InvalidInput,
            "attachments[0].attachmentTitle.nl contains a control character (U+000A)",
        ),
        (
            "an attachment title of 513 characters",
            V2,
            |c| {
                c.draft.attachments[0].attachment_title = Some(TranslatedString {
                    de: Some("x".repeat(MAX_ATTACHMENT_TITLE_CHARS + 1)),
                    ..Default::default()
                });
            },
            Code::InvalidInput,
            "attachments[0].attachmentTitle.de has 513 characters; at most 512 are allowed",
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
            "an HTML page declared as a PDF",
            V2,
            |c| declared(c, 0, "application/pdf", HTML),
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like application/pdf: a PDF starts with %PDF-",
        ),
        (
            "a PDF declared as a ZIP archive",
            V2,
            |c| declared(c, 0, "application/zip", PDF),
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like application/zip",
        ),
        (
            "a PDF declared as a Word document",
            V2,
            |c| {
                declared(
                    c,
                    0,
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    PDF,
                );
            },
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            "a legacy Office file declared as an OpenDocument spreadsheet",
            V2,
            |c| declared(c, 0, "application/vnd.oasis.opendocument.spreadsheet", OLE),
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like application/vnd.oasis.opendocument.spreadsheet",
        ),
        (
            "a ZIP archive declared as a legacy Excel sheet",
            V2,
            |c| declared(c, 0, "application/vnd.ms-excel", ZIP),
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like application/vnd.ms-excel",
        ),
        (
            "Latin-1 text declared as CSV",
            V2,
            |c| declared(c, 0, "text/csv", b"caf\xe9;1\n"),
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like text/csv: text must be UTF-8",
        ),
        (
            "a NUL in plain text",
            V2,
            |c| declared(c, 0, "text/plain", b"hallo\0"),
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like text/plain",
        ),
        (
            "UTF-16 declared as XML",
            V2,
            |c| declared(c, 0, "text/xml", b"\xff\xfe<\0?\0x\0m\0l\0"),
            Code::MediaTypeNotAllowed,
            "attachments[0].content does not look like text/xml",
        ),
        (
            "a v1 annex that is a program declared as a PDF",
            V1,
            |c| declared(c, 1, "application/pdf", b"MZ\x90\x00\x03"),
            Code::MediaTypeNotAllowed,
            "attachments[1].content does not look like application/pdf",
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
            "a bell in the body",
            V2,
            |c| c.draft.body_content = Some(text("Beste,\u{7}")),
            Code::InvalidInput,
            "bodyContent.nl contains a control character (U+0007)",
        ),
        (
            "a NUL in a body that is not the main content",
            V2,
            |c| {
                c.draft.body_content = Some(TranslatedString {
                    nl: Some("Beste,".into()),
                    fr: Some("Madame,\u{0}".into()),
                    de: None,
                });
            },
            Code::InvalidInput,
            "bodyContent.fr contains a control character (U+0000)",
        ),
        (
            "a body over 1 MiB",
            V2,
            |c| {
                c.draft.body_main_content = true;
                c.draft.body_content = Some(text(&"a".repeat(MAX_BODY_CONTENT_BYTES + 1)));
            },
            Code::InvalidInput,
            "bodyContent.nl has 1048577 bytes; at most 1048576 are allowed",
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
        (
            "a C1 control character in the original message id",
            V2,
            |c| c.draft.original_message_id = Some("orig\u{85}1".into()),
            Code::InvalidInput,
            "originalMessageId contains a control character (U+0085)",
        ),
        (
            "an original message id of 129 characters",
            V2,
            |c| c.draft.original_message_id = Some("o".repeat(MAX_IDENTIFIER_CHARS + 1)),
            Code::InvalidInput,
            "originalMessageId has 129 characters; at most 128 are allowed",
        ),
        (
            "a NUL deep in the business data",
            V2,
            |c| {
                c.draft.business_data_list = Some(json!([
                    {"key": "dossier", "values": [{"nl": "A-12"}, {"fr": "A\u{0}12"}]}
                ]));
            },
            Code::InvalidInput,
            "businessDataList[0].values[1].fr contains a control character (U+0000)",
        ),
        (
            "a control character in a key of the payment data",
            V2,
            |c| c.draft.payment_data = Some(json!({"amount": 12.5, "iban\u{1}": "BE68"})),
            Code::InvalidInput,
            "paymentData has a key that contains a control character (U+0001)",
        ),
        (
            "a NUL under a key that is not a plain name",
            V2,
            |c| c.draft.for_the_attention_of = Some(json!({"a person": {"name": "x\u{0}"}})),
            Code::InvalidInput,
            "forTheAttentionOf[\"…\"].name contains a control character (U+0000)",
        ),
        (
            "business data that is not a list",
            V2,
            |c| {
                c.draft.business_data_list = Some(json!({"key": "dossier"}));
            },
            Code::InvalidInput,
            "businessDataList must be an array",
        ),
        (
            "a business data item without a key",
            V2,
            |c| {
                c.draft.business_data_list = Some(json!([{"values": []}]));
            },
            Code::InvalidInput,
            "businessDataList[0].key is required",
        ),
        (
            "a business data item without values",
            V2,
            |c| {
                c.draft.business_data_list = Some(json!([{"key": "dossier"}]));
            },
            Code::InvalidInput,
            "businessDataList[0].values is required",
        ),
        (
            "a business data key that is a number",
            V2,
            |c| {
                c.draft.business_data_list = Some(json!([{"key": 12, "values": []}]));
            },
            Code::InvalidInput,
            "businessDataList[0].key must be a string",
        ),
        (
            "a business data value that is a bare string",
            V2,
            |c| {
                c.draft.business_data_list =
                    Some(json!([{"key": "dossier", "values": [{"nl": "A"}, "A-12"]}]));
            },
            Code::InvalidInput,
            "businessDataList[0].values[1] must be a TranslatedString",
        ),
        (
            "a business data name in English",
            V2,
            |c| {
                c.draft.business_data_list =
                    Some(json!([{"key": "dossier", "name": {"en": "File"}, "values": []}]));
            },
            Code::InvalidInput,
            "businessDataList[0].name must be a TranslatedString",
        ),
        (
            "a business data member the contract does not define",
            V2,
            |c| {
                c.draft.business_data_list =
                    Some(json!([{"key": "dossier", "values": [], "unit": "EUR"}]));
            },
            Code::InvalidInput,
            "businessDataList[0].unit is not a member of its definition",
        ),
        (
            "a business data description of 513 characters",
            V2,
            |c| {
                c.draft.business_data_list = Some(
                    json!([{"key": "dossier", "description": {"de": "d".repeat(MAX_STRUCTURED_TEXT_CHARS + 1)}, "values": []}]),
                );
            },
            Code::InvalidInput,
            "businessDataList[0].description.de has 513 characters; at most 512 are allowed",
        ),
        (
            "payment data that is not an object",
            V2,
            |c| {
                c.draft.payment_data = Some(json!([payment()]));
            },
            Code::InvalidInput,
            "paymentData must be an object",
        ),
        (
            "payment data without an IBAN",
            V2,
            |c| {
                remove(&mut c.draft.payment_data, "iban");
            },
            Code::InvalidInput,
            "paymentData.iban is required",
        ),
        (
            "payment data without a due date",
            V2,
            |c| {
                remove(&mut c.draft.payment_data, "dueDate");
            },
            Code::InvalidInput,
            "paymentData.dueDate is required",
        ),
        (
            "payment data without an id",
            V2,
            |c| {
                remove(&mut c.draft.payment_data, "paymentDataId");
            },
            Code::InvalidInput,
            "paymentData.paymentDataId is required",
        ),
        (
            "an amount written as text",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "amount", json!("12.50"));
            },
            Code::InvalidInput,
            "paymentData.amount must be a number",
        ),
        (
            "a negative VAT amount",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "vatAmount", json!(-1));
            },
            Code::InvalidInput,
            "paymentData.vatAmount must not be negative",
        ),
        (
            "a currency in lower case",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "currency", json!("eur"));
            },
            Code::InvalidInput,
            "paymentData.currency must be an ISO 4217 code",
        ),
        (
            "a due date that is not a date-time",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "dueDate", json!("2027-01-31"));
            },
            Code::InvalidInput,
            "paymentData.dueDate must be a date-time",
        ),
        (
            "an IBAN with wrong check digits",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "iban", json!("BE69539007547034"));
            },
            Code::InvalidInput,
            "paymentData.iban is not a valid IBAN",
        ),
        (
            "an IBAN written with spaces",
            V2,
            |c| {
                set(
                    &mut c.draft.payment_data,
                    "iban",
                    json!("BE68 5390 0754 7034"),
                );
            },
            Code::InvalidInput,
            "paymentData.iban is not a valid IBAN",
        ),
        (
            "a BIC of 9 characters",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "bic", json!("GEBABEBB1"));
            },
            Code::InvalidInput,
            "paymentData.bic is not a valid BIC",
        ),
        (
            "a payment reference that is not an object",
            V2,
            |c| {
                set(
                    &mut c.draft.payment_data,
                    "reference",
                    json!("+++090/9337/55493+++"),
                );
            },
            Code::InvalidInput,
            "paymentData.reference must be an object",
        ),
        (
            "a payment member the contract does not define",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "amountInclVat", json!(15));
            },
            Code::InvalidInput,
            "paymentData.amountInclVat is not a member of its definition",
        ),
        (
            "a payment member whose name is not a plain name",
            V2,
            |c| {
                set(&mut c.draft.payment_data, "a b", json!(15));
            },
            Code::InvalidInput,
            "paymentData has a member that is not in its definition",
        ),
        (
            "a payment id with a control character",
            V2,
            |c| {
                set(
                    &mut c.draft.payment_data,
                    "paymentDataId",
                    json!("p\u{7f}1"),
                );
            },
            Code::InvalidInput,
            "paymentData.paymentDataId contains a control character (U+007F)",
        ),
        (
            "an attention that is a national number alone",
            V2,
            |c| {
                c.draft.for_the_attention_of = Some(json!(SSIN));
            },
            Code::InvalidInput,
            "forTheAttentionOf must be an object",
        ),
        (
            "an attention id that is a number",
            V2,
            |c| {
                c.draft.for_the_attention_of = Some(json!({"id": 85073003328_u64}));
            },
            Code::InvalidInput,
            "forTheAttentionOf.id must be a string",
        ),
        (
            "an attention member the contract does not define",
            V2,
            |c| {
                c.draft.for_the_attention_of = Some(json!({"ssin": SSIN}));
            },
            Code::InvalidInput,
            "forTheAttentionOf.ssin is not a member of its definition",
        ),
        (
            "an attention name of 513 characters",
            V2,
            |c| {
                c.draft.for_the_attention_of =
                    Some(json!({"name": "n".repeat(MAX_STRUCTURED_TEXT_CHARS + 1)}));
            },
            Code::InvalidInput,
            "forTheAttentionOf.name has 513 characters; at most 512 are allowed",
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
    fn a_pdf_starts_with_its_header() {
        assert!(looks_like("application/pdf", PDF));
        assert!(looks_like("application/pdf", b"%PDF-"));
        for bytes in [&b"%PDF"[..], b" %PDF-1.4", b"%pdf-1.4", HTML, ZIP, OLE] {
            assert!(!looks_like("application/pdf", bytes), "{bytes:?}");
        }
    }

    #[test]
    fn zip_and_the_formats_built_on_it_start_with_a_local_file_header() {
        let zip_based = [
            "application/zip",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.spreadsheet",
            "application/vnd.oasis.opendocument.presentation",
            "application/vnd.oasis.opendocument.graphics",
        ];
        for media_type in zip_based {
            assert!(looks_like(media_type, ZIP), "{media_type}");
            // An empty archive (end of central directory only) is no document.
            for bytes in [&b"PK\x05\x06"[..], b"PK\x03", PDF, OLE, HTML] {
                assert!(!looks_like(media_type, bytes), "{media_type} {bytes:?}");
            }
        }
    }

    #[test]
    fn legacy_office_formats_start_with_the_ole_header() {
        for media_type in [
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
        ] {
            assert!(looks_like(media_type, OLE), "{media_type}");
            for bytes in [&OLE[..7], ZIP, PDF, HTML] {
                assert!(!looks_like(media_type, bytes), "{media_type} {bytes:?}");
            }
        }
    }

    #[test]
    fn text_is_utf8_without_nul() {
        for media_type in ["text/plain", "text/csv", "text/html", "text/xml"] {
            for bytes in [
                "Beste,\r\n\tcafé;1\n".as_bytes(),
                "\u{feff}<?xml version=\"1.0\"?><a/>".as_bytes(),
                HTML,
            ] {
                assert!(looks_like(media_type, bytes), "{media_type} {bytes:?}");
            }
            for bytes in [&b"caf\xe9"[..], b"a\0b", b"\xff\xfea\0", OLE, b"\xe2\x82"] {
                assert!(!looks_like(media_type, bytes), "{media_type} {bytes:?}");
            }
        }
    }

    #[test]
    fn every_allowed_media_type_has_a_signature_and_passes_with_it() {
        for media_type in ALLOWED_MEDIA_TYPES {
            let signature = Signature::of(media_type);
            let bytes = match signature {
                Some(Signature::Pdf) => PDF,
                Some(Signature::Zip) => ZIP,
                Some(Signature::Ole) => OLE,
                Some(Signature::Text) => HTML,
                None => panic!("{media_type} has no signature"),
            };
            let mut case = Case::v2();
            declared(&mut case, 0, media_type, bytes);
            assert_eq!(
                case.accepted().attachments[0].media_type,
                media_type,
                "{media_type}"
            );
        }
        assert_eq!(Signature::of("application/x-msdownload"), None);
        assert!(!looks_like("application/x-msdownload", PDF));
    }

    #[test]
    fn a_content_mismatch_names_the_field_without_quoting_the_bytes() {
        let mut case = Case::v2();
        declared(
            &mut case,
            0,
            "application/pdf",
            b"<html>geheim dossier\x01</html>",
        );
        let rejection = case.validate().expect_err("refused");
        assert_eq!(rejection.code, Code::MediaTypeNotAllowed);
        assert!(
            rejection.message.starts_with("attachments[0].content "),
            "{}",
            rejection.message
        );
        for quoted in ["geheim", "<html", "\\u0001"] {
            assert!(
                !rejection.message.contains(quoted),
                "{quoted} in {}",
                rejection.message
            );
        }
    }

    #[test]
    fn tabs_and_line_breaks_in_a_body_are_kept() {
        let body = "Beste,\r\n\r\n\tUw dossier is volledig.\nMet vriendelijke groeten";
        let mut case = Case::v2();
        case.draft.attachments.clear();
        case.draft.body_main_content = true;
        case.draft.body_content = Some(text(body));
        assert_eq!(case.accepted().body_content, Some(text(body)));
    }

    #[test]
    fn texts_at_their_limits_are_accepted() {
        let mut case = Case::v2();
        // Characters, not bytes: each "é" is two bytes.
        case.draft.subject = text(&"é".repeat(MAX_SUBJECT_CHARS));
        case.draft.attachments[0].file_name = format!("{}.pdf", "é".repeat(251));
        case.draft.attachments[0].attachment_title =
            Some(text(&"é".repeat(MAX_ATTACHMENT_TITLE_CHARS)));
        case.draft.body_content = Some(text(&"a".repeat(MAX_BODY_CONTENT_BYTES)));
        case.draft.original_message_id = Some("o".repeat(MAX_IDENTIFIER_CHARS));
        case.draft.business_data_list = Some(json!([
            {"key": "dossier", "name": {"fr": "Numéro « A-12 »"}, "values": [{"nl": "A-12"}]}
        ]));
        let publication = case.accepted();
        assert_eq!(publication.attachments[0].file_name.chars().count(), 255);
    }

    #[test]
    fn structured_data_as_the_contract_defines_it_is_kept_as_sent() {
        let mut case = Case::v2();
        let business = json!([
            {"key": "dossier", "name": {"nl": "Dossier"}, "description": {"fr": "Votre dossier"},
             "values": [{"nl": "A-12"}, {"fr": "B-7", "de": "B-7"}]},
            {"key": "bare", "values": []}
        ]);
        let attention = json!({"id": SSIN, "type": "ssin", "name": "Jan Peeters"});
        case.draft.business_data_list = Some(business.clone());
        case.draft.payment_data = Some(payment());
        case.draft.for_the_attention_of = Some(attention.clone());
        let publication = case.accepted();
        assert_eq!(publication.business_data_list, Some(business));
        assert_eq!(publication.payment_data, Some(payment()));
        assert_eq!(publication.for_the_attention_of, Some(attention));
        let mut minimal = Case::v2();
        remove(&mut minimal.draft.payment_data, "bic");
        if let Some(Value::Object(members)) = &mut minimal.draft.payment_data {
            members.remove("reference");
        }
        minimal.draft.for_the_attention_of = Some(json!({}));
        minimal.accepted();
    }

    #[test]
    fn ibans_are_checked_with_their_check_digits() {
        for iban in [
            "BE68539007547034",
            "NL91ABNA0417164300",
            "DE89370400440532013000",
            "GB82WEST12345698765432",
        ] {
            assert!(is_iban(iban), "{iban}");
        }
        for iban in [
            "BE68539007547035",
            "be68539007547034",
            "BE685390075",
            "BE6853900754703X",
        ] {
            assert!(!is_iban(iban), "{iban}");
        }
        assert!(is_bic("GEBABEBB") && is_bic("GEBABEBB36A") && !is_bic("GEBABE"));
    }

    #[test]
    fn a_refusal_names_the_field_without_quoting_the_text() {
        let mut subject = Case::v2();
        subject.draft.subject = text("Geheim\u{0}dossier");
        let mut name = Case::v2();
        name.draft.attachments[0].file_name = "geheim\u{202E}fdp.exe".into();
        for case in [subject, name] {
            let message = case.validate().expect_err("refused").message;
            assert!(!message.to_lowercase().contains("geheim"), "{message}");
        }
    }

    #[test]
    fn a_rejection_message_writes_control_and_bidirectional_characters_escaped() {
        let rejection = Rejection::new(Code::InvalidInput, "unknown field `a\u{0}b\u{202E}c`");
        assert_eq!(rejection.message, "unknown field `a\\u0000b\\u202ec`");
    }

    #[test]
    fn an_identifier_is_short_and_has_no_control_character() {
        let field = "the AMQP property correlation_id";
        let refused = |text: &str| identifier(field, text).expect_err("refused").message;
        assert_eq!(
            refused("corr\u{0}1"),
            "the AMQP property correlation_id contains a control character (U+0000)"
        );
        assert_eq!(
            refused(&"c".repeat(129)),
            "the AMQP property correlation_id has 129 characters; at most 128 are allowed"
        );
        assert!(identifier(field, &"c".repeat(128)).is_ok());
        assert!(identifier(field, "dossier 12/2026 — é").is_ok());
        assert!(is_identifier("corr-1"));
        assert!(!is_identifier("corr\u{7f}"));
        assert!(!is_identifier(&"c".repeat(129)));
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
