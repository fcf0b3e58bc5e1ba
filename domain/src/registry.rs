//! Reference data: the registered senders, their applications and the message types they may
//! publish. The operator's YAML file is the source of truth; `ebox registry load` applies it.
//!
//! A sender and each of its applications may also carry what the Message Registry contract
//! shows the citizen: a long name, a URL, helpdesk contacts and logos. A logo is a file named
//! in the registry; [`RegistryFile::parse_with`] reads it through the reader it is given (this
//! crate does no I/O) and checks that its bytes are what its `mediaType` says.

use crate::cbe::CbeNumber;
use crate::ids::SenderId;
use crate::translated::{Language, TranslatedString};
use chrono::{DateTime, Days, Months, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryFile {
    #[serde(default)]
    pub senders: Vec<SenderEntry>,
    #[serde(default)]
    pub message_types: Vec<MessageTypeEntry>,
    #[serde(default)]
    pub partners: Vec<PartnerEntry>,
}

/// A service provider's interface (partner app) that citizens may choose for notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartnerEntry {
    pub id: String,
    pub name: TranslatedString,
    /// Where notifications are POSTed: https, or http to a loopback address (for tests).
    pub webhook_url: String,
    /// The environment variable that holds the partner's signing secret:
    /// `EBOX_PARTNER_<NAME>_SECRET`.
    pub secret_env: String,
}

/// `EBOX_PARTNER_<NAME>_SECRET`, NAME in A-Z, 0-9 and `_`: the variables that may hold a
/// partner's signing secret.
pub fn is_partner_secret_name(name: &str) -> bool {
    name.strip_prefix("EBOX_PARTNER_")
        .and_then(|rest| rest.strip_suffix("_SECRET"))
        .is_some_and(|middle| {
            !middle.is_empty()
                && middle
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// True for https URLs, and for http URLs to this machine only.
pub fn webhook_url_allowed(url: &str) -> bool {
    url.starts_with("https://")
        || ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|prefix| {
                url.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SenderEntry {
    pub id: SenderId,
    pub organization_id: CbeNumber,
    /// The contract's `organizationShortName`.
    pub name: TranslatedString,
    /// The contract's `organizationLongName`.
    #[serde(default)]
    pub long_name: Option<TranslatedString>,
    /// The contract's `organizationUrl`: an https URL per language.
    #[serde(default)]
    pub url: Option<TranslatedString>,
    /// The contract's `contactBusiness`: what a citizen may use to ask a business question.
    #[serde(default)]
    pub contact_business: Option<String>,
    /// The contract's `contactTechnical`: the technical team's helpdesk (not for citizens).
    #[serde(default)]
    pub contact_technical: Option<String>,
    /// The contract's `organizationLogos`.
    #[serde(default)]
    pub logos: Vec<ImageEntry>,
    #[serde(default)]
    pub applications: Vec<ApplicationEntry>,
    #[serde(default)]
    pub message_types: Vec<String>,
    /// Where the sender's status events are also POSTed (docs/sender-contract.md, "Status
    /// callbacks"), when it asked for them: https, or http to a loopback address (for tests).
    #[serde(default)]
    pub status_webhook_url: Option<String>,
    /// The variable that holds the callbacks' signing secret, named like a partner's
    /// (`EBOX_PARTNER_<NAME>_SECRET`, one mechanism for every secret we sign with). Required
    /// with `statusWebhookUrl`.
    #[serde(default)]
    pub status_secret_env: Option<String>,
    /// How much the sender may publish (docs/operations.md, "Sender limits"): over a limit,
    /// intake waits before it takes more from the sender's lane; nothing is refused.
    #[serde(default)]
    pub limits: SenderLimits,
}

/// A sender's limits. Each is optional: no limit, no wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SenderLimits {
    /// Publications intake takes per second, on average (a second's worth may come at once).
    #[serde(default)]
    pub messages_per_second: Option<u32>,
    /// Bytes of publications intake takes per day (UTC); past them, the rest waits for the next
    /// day.
    #[serde(default)]
    pub bytes_per_day: Option<u64>,
}

impl SenderLimits {
    /// The most a limit may be: PostgreSQL keeps them as signed integers.
    pub const MAX_MESSAGES_PER_SECOND: u32 = 1_000_000;

    pub fn any(&self) -> bool {
        self.messages_per_second.is_some() || self.bytes_per_day.is_some()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationEntry {
    pub id: String,
    /// The contract's `applicationName`.
    pub name: TranslatedString,
    /// The contract's `applicationDescription`.
    #[serde(default)]
    pub description: Option<TranslatedString>,
    /// The contract's `applicationUrl`: an https URL per language.
    #[serde(default)]
    pub url: Option<TranslatedString>,
    /// The contract's `contactBusiness`.
    #[serde(default)]
    pub contact_business: Option<String>,
    /// The contract's `contactTechnical`.
    #[serde(default)]
    pub contact_technical: Option<String>,
    /// The contract's `applicationLogos`.
    #[serde(default)]
    pub logos: Vec<ImageEntry>,
}

/// At most this many characters in a contact (`contactBusiness`, `contactTechnical`: a
/// helpdesk's web form, phone or e-mail, never a person).
pub const MAX_CONTACT_CHARS: usize = 500;

/// A logo: the contract's `Image`, its bytes read from `path`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageEntry {
    /// The contract's `imageId`: 1 to [`MAX_IMAGE_ID_CHARS`] letters, digits, `.`, `_` or `-`
    /// (it is a segment of the image's URL).
    pub id: String,
    /// The file, relative to the registry file's directory (or absolute).
    pub path: String,
    /// One of [`IMAGE_MEDIA_TYPES`].
    pub media_type: String,
    /// The language the image is for, when it has one (the contract's nl, fr or de).
    #[serde(default)]
    pub language: Option<Language>,
    /// The bytes, once [`RegistryFile::parse_with`] has read and checked them.
    #[serde(skip)]
    pub content: Vec<u8>,
}

impl std::fmt::Debug for ImageEntry {
    /// The bytes by their length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageEntry")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("media_type", &self.media_type)
            .field("language", &self.language)
            .field("content", &format_args!("{} bytes", self.content.len()))
            .finish()
    }
}

/// The media types a logo may have: the contract's `Image.mediaType`, less `image/jpg`, which
/// is no registered media type (write `image/jpeg`).
pub const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/svg+xml"];

/// The largest logo, in bytes: a logo is a small picture, and the registry (with its logos)
/// travels as a Kubernetes ConfigMap, itself at most 1 MiB.
pub const MAX_IMAGE_BYTES: usize = 256 * 1024;

/// The longest image id.
pub const MAX_IMAGE_ID_CHARS: usize = 64;

/// Why `bytes` are not an image of `media_type` (one of [`IMAGE_MEDIA_TYPES`]), if they are
/// not: the file signature of PNG, JPEG and GIF; for SVG, UTF-8 text that is an XML document
/// with an `<svg` element.
pub fn image_mismatch(media_type: &str, bytes: &[u8]) -> Option<&'static str> {
    let matches = match media_type {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/svg+xml" => std::str::from_utf8(bytes).is_ok_and(|text| {
            text.trim_start_matches('\u{feff}')
                .trim_start()
                .starts_with('<')
                && text.contains("<svg")
        }),
        _ => return Some("it is not one of the media types a logo may have"),
    };
    (!matches).then_some(match media_type {
        "image/png" => "its bytes do not start with the PNG signature",
        "image/jpeg" => "its bytes do not start with the JPEG signature",
        "image/gif" => "its bytes do not start with the GIF signature",
        _ => "it is not an SVG document (UTF-8 XML with an <svg> element)",
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageTypeEntry {
    pub id: String,
    pub name: TranslatedString,
    #[serde(default)]
    pub description: Option<TranslatedString>,
    pub validity_period: ValidityPeriod,
}

/// How long messages of a type stay available when the sender does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidityPeriod {
    pub validity_period_number: u32,
    pub validity_period_unit: PeriodUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodUnit {
    Day,
    Month,
    Year,
}

impl PeriodUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodUnit::Day => "day",
            PeriodUnit::Month => "month",
            PeriodUnit::Year => "year",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day" => Some(PeriodUnit::Day),
            "month" => Some(PeriodUnit::Month),
            "year" => Some(PeriodUnit::Year),
            _ => None,
        }
    }
}

impl ValidityPeriod {
    /// The end of the period started at `from`; `None` if it leaves the calendar.
    pub fn end_from(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let n = self.validity_period_number;
        match self.validity_period_unit {
            PeriodUnit::Day => from.checked_add_days(Days::new(n.into())),
            PeriodUnit::Month => from.checked_add_months(Months::new(n)),
            PeriodUnit::Year => from.checked_add_months(Months::new(n.checked_mul(12)?)),
        }
    }
}

impl RegistryFile {
    /// Parses and checks a file that names no logo (a logo is refused: its file cannot be read
    /// from a string alone; see [`RegistryFile::parse_with`]).
    pub fn parse(yaml: &str) -> Result<Self, Vec<String>> {
        Self::parse_with(yaml, |_: &str| {
            Err(
                "cannot be read: no directory to read it from (load the registry from its file)"
                    .to_owned(),
            )
        })
    }

    /// Parses and checks the whole file, reading each logo's bytes with `read`, and reports
    /// every problem at once: the message types first, then the senders (which name the
    /// types), each with its applications and logos, then the partners.
    ///
    /// `read` is given a logo's `path` as the file writes it and returns its bytes (at most
    /// [`MAX_IMAGE_BYTES`] + 1 need be read), or why they could not be read
    /// (`"cannot be read: …"`).
    pub fn parse_with(
        yaml: &str,
        mut read: impl FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Self, Vec<String>> {
        let mut file: RegistryFile =
            serde_yaml_ng::from_str(yaml).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let type_ids = check_message_types(&file.message_types, &mut problems);
        check_senders(&mut file.senders, &type_ids, &mut read, &mut problems);
        check_partners(&file.partners, &mut problems);
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(problems)
        }
    }
}

/// Checks each message type; returns the ids the file defines, for the senders' check.
fn check_message_types<'a>(
    message_types: &'a [MessageTypeEntry],
    problems: &mut Vec<String>,
) -> HashSet<&'a str> {
    let mut type_ids = HashSet::new();
    for message_type in message_types {
        if message_type.id.trim().is_empty() {
            problems.push("a message type has an empty id".to_owned());
        }
        if !type_ids.insert(message_type.id.as_str()) {
            problems.push(format!("message type {} is listed twice", message_type.id));
        }
        if !message_type.name.has_any() {
            problems.push(format!("message type {} has no name", message_type.id));
        }
        if message_type.validity_period.validity_period_number == 0 {
            problems.push(format!(
                "message type {} has a validity period of 0",
                message_type.id
            ));
        }
    }
    type_ids
}

/// Checks each sender, then its applications, then the message types it names.
fn check_senders(
    senders: &mut [SenderEntry],
    type_ids: &HashSet<&str>,
    read: &mut impl FnMut(&str) -> Result<Vec<u8>, String>,
    problems: &mut Vec<String>,
) {
    let mut sender_ids = HashSet::new();
    for sender in senders {
        let owner = format!("sender {}", sender.id);
        if !sender_ids.insert(sender.id.as_str().to_owned()) {
            problems.push(format!("{owner} is listed twice"));
        }
        if !sender.name.has_any() {
            problems.push(format!("{owner} has no name"));
        }
        let shown = Shown {
            text: ("longName", sender.long_name.as_ref()),
            url: sender.url.as_ref(),
            contacts: [
                ("contactBusiness", sender.contact_business.as_deref()),
                ("contactTechnical", sender.contact_technical.as_deref()),
            ],
        };
        shown.check(&owner, problems);
        check_images(&owner, &mut sender.logos, read, problems);
        check_applications(sender.id.as_str(), &mut sender.applications, read, problems);
        check_status_webhook(&owner, sender, problems);
        check_limits(&owner, &sender.limits, problems);
        for type_id in &sender.message_types {
            if !type_ids.contains(type_id.as_str()) {
                problems.push(format!(
                    "{owner} names message type {type_id}, which the file does not define"
                ));
            }
        }
    }
}

fn check_applications(
    sender_id: &str,
    applications: &mut [ApplicationEntry],
    read: &mut impl FnMut(&str) -> Result<Vec<u8>, String>,
    problems: &mut Vec<String>,
) {
    let mut app_ids = HashSet::new();
    for application in applications {
        let owner = format!("application {} of sender {sender_id}", application.id);
        if !app_ids.insert(application.id.clone()) {
            problems.push(format!(
                "sender {sender_id} lists application {} twice",
                application.id
            ));
        }
        if !application.name.has_any() {
            problems.push(format!("{owner} has no name"));
        }
        let shown = Shown {
            text: ("description", application.description.as_ref()),
            url: application.url.as_ref(),
            contacts: [
                ("contactBusiness", application.contact_business.as_deref()),
                ("contactTechnical", application.contact_technical.as_deref()),
            ],
        };
        shown.check(&owner, problems);
        check_images(&owner, &mut application.logos, read, problems);
    }
}

/// The optional texts a sender or an application shows the citizen, as the file gives them.
struct Shown<'a> {
    /// `longName` of a sender, `description` of an application.
    text: (&'static str, Option<&'a TranslatedString>),
    url: Option<&'a TranslatedString>,
    contacts: [(&'static str, Option<&'a str>); 2],
}

impl Shown<'_> {
    /// A text given is not blank in every language; a URL is https in each language it has; a
    /// contact is not blank and at most [`MAX_CONTACT_CHARS`] characters.
    fn check(&self, owner: &str, problems: &mut Vec<String>) {
        let (field, text) = self.text;
        if text.is_some_and(|text| !text.has_any()) {
            problems.push(format!("{owner} has an empty {field}"));
        }
        if let Some(url) = self.url {
            if !url.has_any() {
                problems.push(format!("{owner} has an empty url"));
            }
            for language in Language::ALL {
                if let Some(value) = url.get(language).filter(|value| !is_https_url(value)) {
                    problems.push(format!(
                        "{owner} has url.{} {value:?}: it must be an https URL",
                        language.code()
                    ));
                }
            }
        }
        for (field, contact) in self.contacts {
            match contact {
                Some(contact) if contact.trim().is_empty() => {
                    problems.push(format!("{owner} has an empty {field}"));
                }
                Some(contact) if contact.chars().count() > MAX_CONTACT_CHARS => {
                    problems.push(format!(
                        "{owner} has a {field} longer than {MAX_CONTACT_CHARS} characters"
                    ));
                }
                _ => {}
            }
        }
    }
}

/// `https://` and a host, with no space or control character anywhere.
fn is_https_url(url: &str) -> bool {
    url.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with(['/', '?', '#'])
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// An image id: 1 to [`MAX_IMAGE_ID_CHARS`] letters, digits, `.`, `_` or `-`.
fn is_image_id(id: &str) -> bool {
    (1..=MAX_IMAGE_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks each logo of `owner` and reads its bytes into it: an id of its own, a media type a
/// logo may have, a file that can be read, not empty, at most [`MAX_IMAGE_BYTES`], whose bytes
/// are what the media type says.
fn check_images(
    owner: &str,
    images: &mut [ImageEntry],
    read: &mut impl FnMut(&str) -> Result<Vec<u8>, String>,
    problems: &mut Vec<String>,
) {
    let mut ids = HashSet::new();
    for (index, image) in images.iter_mut().enumerate() {
        let field = format!("{owner}: logos[{index}]");
        if !is_image_id(&image.id) {
            problems.push(format!(
                "{field}.id {:?} must be 1 to {MAX_IMAGE_ID_CHARS} letters, digits, '.', '_' or '-'",
                image.id
            ));
        } else if !ids.insert(image.id.clone()) {
            problems.push(format!("{owner} lists logo {} twice", image.id));
        }
        let known_type = IMAGE_MEDIA_TYPES.contains(&image.media_type.as_str());
        if !known_type {
            problems.push(format!(
                "{field}.mediaType {:?} is not one of {}",
                image.media_type,
                IMAGE_MEDIA_TYPES.join(", ")
            ));
        }
        if image.path.trim().is_empty() {
            problems.push(format!("{field}.path is empty"));
            continue;
        }
        let bytes = match read(&image.path) {
            Ok(bytes) => bytes,
            Err(reason) => {
                problems.push(format!("{field}.path {:?} {reason}", image.path));
                continue;
            }
        };
        if bytes.is_empty() {
            problems.push(format!("{field}.path {:?} is an empty file", image.path));
        } else if bytes.len() > MAX_IMAGE_BYTES {
            problems.push(format!(
                "{field}.path {:?} is larger than {MAX_IMAGE_BYTES} bytes",
                image.path
            ));
        } else if known_type && let Some(reason) = image_mismatch(&image.media_type, &bytes) {
            problems.push(format!(
                "{field}.path {:?} is not {}: {reason}",
                image.path, image.media_type
            ));
        } else {
            image.content = bytes;
        }
    }
}

/// A status webhook, when there is one, is a URL partners' webhooks could have, with a secret
/// named like theirs; neither comes without the other.
fn check_status_webhook(owner: &str, sender: &SenderEntry, problems: &mut Vec<String>) {
    match (&sender.status_webhook_url, &sender.status_secret_env) {
        (None, None) => {}
        (Some(url), Some(secret_env)) => {
            if !webhook_url_allowed(url) {
                problems.push(format!(
                    "{owner} has statusWebhookUrl {url:?}: it must be https (http only to this machine)"
                ));
            }
            if !is_partner_secret_name(secret_env) {
                problems.push(format!(
                    "{owner} has statusSecretEnv {secret_env:?}: name a variable EBOX_PARTNER_<NAME>_SECRET"
                ));
            }
        }
        (Some(_), None) => problems.push(format!(
            "{owner} has a statusWebhookUrl without statusSecretEnv (the callbacks are signed)"
        )),
        (None, Some(_)) => problems.push(format!(
            "{owner} has a statusSecretEnv without statusWebhookUrl"
        )),
    }
}

/// Limits are positive and fit PostgreSQL's integers.
fn check_limits(owner: &str, limits: &SenderLimits, problems: &mut Vec<String>) {
    if let Some(rate) = limits.messages_per_second
        && !(1..=SenderLimits::MAX_MESSAGES_PER_SECOND).contains(&rate)
    {
        problems.push(format!(
            "{owner} has limits.messagesPerSecond {rate}: it must be 1 to {}",
            SenderLimits::MAX_MESSAGES_PER_SECOND
        ));
    }
    if let Some(bytes) = limits.bytes_per_day
        && !(1..=i64::MAX as u64).contains(&bytes)
    {
        problems.push(format!(
            "{owner} has limits.bytesPerDay {bytes}: it must be at least 1"
        ));
    }
}

fn check_partners(partners: &[PartnerEntry], problems: &mut Vec<String>) {
    let mut partner_ids = HashSet::new();
    for partner in partners {
        if !partner_ids.insert(partner.id.as_str()) {
            problems.push(format!("partner {} is listed twice", partner.id));
        }
        if !webhook_url_allowed(&partner.webhook_url) {
            problems.push(format!(
                "partner {} has webhookUrl {:?}: it must be https (http only to this machine)",
                partner.id, partner.webhook_url
            ));
        }
        if !is_partner_secret_name(&partner.secret_env) {
            problems.push(format!(
                "partner {} has secretEnv {:?}: name a variable EBOX_PARTNER_<NAME>_SECRET",
                partner.id, partner.secret_env
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
senders:
  - id: onem
    organizationId: "0406798006"
    name: {nl: RVA, fr: ONEM, de: LfA}
    applications: [{id: unemployment, name: {nl: Werkloosheid, fr: Chômage, de: Arbeitslosigkeit}}]
    messageTypes: [unemployment-certificate]
messageTypes:
  - id: unemployment-certificate
    name: {nl: Attest, fr: Attestation, de: Bescheinigung}
    validityPeriod: {validityPeriodNumber: 1, validityPeriodUnit: year}
"#;

    #[test]
    fn a_status_webhook_is_https_or_loopback_and_comes_with_its_secret() {
        let with = |extra: &str| {
            EXAMPLE.replacen(
                "    messageTypes: [unemployment-certificate]\n",
                &format!("    messageTypes: [unemployment-certificate]\n{extra}"),
                1,
            )
        };
        let file = RegistryFile::parse(&with(
            "    statusWebhookUrl: https://onem.example/ebox/status\n    statusSecretEnv: EBOX_PARTNER_ONEM_SECRET\n",
        ))
        .expect("valid");
        assert_eq!(
            file.senders[0].status_webhook_url.as_deref(),
            Some("https://onem.example/ebox/status")
        );
        assert!(
            RegistryFile::parse(&with(
                "    statusWebhookUrl: http://127.0.0.1:8080/status\n    statusSecretEnv: EBOX_PARTNER_ONEM_SECRET\n"
            ))
            .is_ok()
        );
        for (extra, problem) in [
            (
                "    statusWebhookUrl: http://onem.example/status\n    statusSecretEnv: EBOX_PARTNER_ONEM_SECRET\n",
                "it must be https",
            ),
            (
                "    statusWebhookUrl: https://onem.example/status\n",
                "without statusSecretEnv",
            ),
            (
                "    statusWebhookUrl: https://onem.example/status\n    statusSecretEnv: ONEM_SECRET\n",
                "name a variable",
            ),
            (
                "    statusSecretEnv: EBOX_PARTNER_ONEM_SECRET\n",
                "without statusWebhookUrl",
            ),
        ] {
            let problems = RegistryFile::parse(&with(extra)).expect_err(problem);
            assert!(
                problems.iter().any(|p| p.contains(problem)),
                "{problem}: {problems:?}"
            );
        }
    }

    #[test]
    fn limits_are_optional_positive_and_named_when_wrong() {
        let with = |extra: &str| {
            EXAMPLE.replacen(
                "    messageTypes: [unemployment-certificate]\n",
                &format!("    messageTypes: [unemployment-certificate]\n{extra}"),
                1,
            )
        };
        let file = RegistryFile::parse(EXAMPLE).expect("valid");
        assert_eq!(file.senders[0].limits, SenderLimits::default());
        assert!(!file.senders[0].limits.any());
        let file = RegistryFile::parse(&with(
            "    limits: {messagesPerSecond: 50, bytesPerDay: 10737418240}\n",
        ))
        .expect("valid");
        assert_eq!(
            file.senders[0].limits,
            SenderLimits {
                messages_per_second: Some(50),
                bytes_per_day: Some(10_737_418_240),
            }
        );
        for (extra, problem) in [
            (
                "    limits: {messagesPerSecond: 0}\n",
                "messagesPerSecond 0",
            ),
            ("    limits: {bytesPerDay: 0}\n", "bytesPerDay 0"),
            (
                "    limits: {messagesPerSecond: 2000000}\n",
                "messagesPerSecond 2000000",
            ),
        ] {
            let problems = RegistryFile::parse(&with(extra)).expect_err(problem);
            assert!(
                problems.iter().any(|p| p.contains(problem)),
                "{problem}: {problems:?}"
            );
        }
        assert!(
            RegistryFile::parse(&with("    limits: {perHour: 3}\n")).is_err(),
            "an unknown limit is refused, not ignored"
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let file = RegistryFile::parse(EXAMPLE).expect("valid");
        assert_eq!(file.senders[0].message_types, ["unemployment-certificate"]);
    }

    #[test]
    fn a_sender_naming_an_undefined_type_or_a_bad_cbe_is_refused() {
        let bad_type = EXAMPLE.replace("[unemployment-certificate]", "[pension]");
        let problems = RegistryFile::parse(&bad_type).expect_err("invalid");
        assert!(problems[0].contains("pension"), "{problems:?}");
        let bad_cbe = EXAMPLE.replace("0406798006", "0406798007");
        assert!(RegistryFile::parse(&bad_cbe).is_err());
    }

    /// One valid entry of each section, written inline so a test can repeat or alter it.
    const TYPE: &str = "{id: certificate, name: {nl: Attest}, \
        validityPeriod: {validityPeriodNumber: 1, validityPeriodUnit: year}}";
    const SENDER: &str = "{id: onem, organizationId: '0406798006', name: {nl: RVA}, \
        applications: [{id: unemployment, name: {nl: Werkloosheid}}], messageTypes: [certificate]}";
    const PARTNER: &str = "{id: mybox, name: {nl: MyBox}, \
        webhookUrl: 'https://mybox.example/hook', secretEnv: EBOX_PARTNER_MYBOX_SECRET}";

    fn file(types: &str, senders: &str, partners: &str) -> String {
        format!("messageTypes: [{types}]\nsenders: [{senders}]\npartners: [{partners}]\n")
    }

    #[test]
    fn one_valid_entry_per_section_parses() {
        let parsed = RegistryFile::parse(&file(TYPE, SENDER, PARTNER)).expect("valid");
        assert_eq!(parsed.partners[0].secret_env, "EBOX_PARTNER_MYBOX_SECRET");
    }

    #[test]
    fn each_registry_problem_is_reported_in_its_own_words() {
        let twice = |entry: &str| format!("{entry}, {entry}");
        let rows = [
            (
                file(&twice(TYPE), SENDER, PARTNER),
                "message type certificate is listed twice",
            ),
            (
                file(&TYPE.replace("id: certificate", "id: ' '"), "", PARTNER),
                "a message type has an empty id",
            ),
            (
                file(&TYPE.replace("{nl: Attest}", "{}"), SENDER, PARTNER),
                "message type certificate has no name",
            ),
            (
                file(
                    &TYPE.replace("validityPeriodNumber: 1", "validityPeriodNumber: 0"),
                    SENDER,
                    PARTNER,
                ),
                "message type certificate has a validity period of 0",
            ),
            (
                file(TYPE, &twice(SENDER), PARTNER),
                "sender onem is listed twice",
            ),
            (
                file(TYPE, &SENDER.replace("{nl: RVA}", "{nl: ' '}"), PARTNER),
                "sender onem has no name",
            ),
            (
                file(
                    TYPE,
                    &SENDER.replace(
                        "applications: [{id: unemployment, name: {nl: Werkloosheid}}]",
                        "applications: [{id: unemployment, name: {nl: A}}, {id: unemployment, name: {nl: B}}]",
                    ),
                    PARTNER,
                ),
                "sender onem lists application unemployment twice",
            ),
            (
                file(TYPE, &SENDER.replace("{nl: Werkloosheid}", "{}"), PARTNER),
                "application unemployment of sender onem has no name",
            ),
            (
                file(TYPE, &SENDER.replace("[certificate]", "[pension]"), PARTNER),
                "sender onem names message type pension, which the file does not define",
            ),
            (
                file(TYPE, SENDER, &twice(PARTNER)),
                "partner mybox is listed twice",
            ),
            (
                file(
                    TYPE,
                    SENDER,
                    &PARTNER.replace("https://mybox.example", "http://mybox.example"),
                ),
                "partner mybox has webhookUrl \"http://mybox.example/hook\": \
                 it must be https (http only to this machine)",
            ),
            (
                file(
                    TYPE,
                    SENDER,
                    &PARTNER.replace("EBOX_PARTNER_MYBOX_SECRET", "MYBOX_SECRET"),
                ),
                "partner mybox has secretEnv \"MYBOX_SECRET\": \
                 name a variable EBOX_PARTNER_<NAME>_SECRET",
            ),
        ];
        for (yaml, problem) in rows {
            assert_eq!(
                RegistryFile::parse(&yaml).err(),
                Some(vec![problem.to_owned()]),
                "{yaml}"
            );
        }
    }

    #[test]
    fn problems_are_listed_section_by_section_in_file_order() {
        let yaml = file(
            &format!(
                "{}, {TYPE}",
                TYPE.replace("validityPeriodNumber: 1", "validityPeriodNumber: 0")
            ),
            &format!(
                "{}, {SENDER}",
                SENDER
                    .replace("[certificate]", "[pension]")
                    .replace("{nl: RVA}", "{}")
            ),
            &format!(
                "{}, {PARTNER}",
                PARTNER.replace("EBOX_PARTNER_MYBOX_SECRET", "SECRET")
            ),
        );
        assert_eq!(
            RegistryFile::parse(&yaml).err(),
            Some(vec![
                "message type certificate has a validity period of 0".to_owned(),
                "message type certificate is listed twice".to_owned(),
                "sender onem has no name".to_owned(),
                "sender onem names message type pension, which the file does not define"
                    .to_owned(),
                "sender onem is listed twice".to_owned(),
                "partner mybox has secretEnv \"SECRET\": name a variable EBOX_PARTNER_<NAME>_SECRET"
                    .to_owned(),
                "partner mybox is listed twice".to_owned(),
            ])
        );
    }

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const SVG: &[u8] =
        b"\xef\xbb\xbf<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";

    /// The logo files of the tests: `logo.png`, `logo.svg`, `gif.png` (a GIF named .png),
    /// `empty.png`, `big.png`; any other path cannot be read.
    fn files(path: &str) -> Result<Vec<u8>, String> {
        match path {
            "logo.png" => Ok(PNG.to_vec()),
            "logo.svg" => Ok(SVG.to_vec()),
            "gif.png" => Ok(b"GIF89a\x01\0".to_vec()),
            "empty.png" => Ok(Vec::new()),
            "big.png" => Ok([PNG, &vec![0; MAX_IMAGE_BYTES]].concat()),
            _ => Err("cannot be read: no such file".to_owned()),
        }
    }

    /// A sender showing everything the contract lets it show, and an application likewise.
    const SHOWING: &str = "{id: onem, organizationId: '0406798006', name: {nl: RVA}, \
        longName: {nl: Rijksdienst voor Arbeidsvoorziening, fr: Office national de l'emploi}, \
        url: {nl: 'https://www.rva.be/nl', fr: 'https://www.onem.be/fr'}, \
        contactBusiness: 'https://www.rva.be/contact', contactTechnical: 'helpdesk@rva.be', \
        logos: [{id: rva-logo, path: logo.png, mediaType: image/png}, \
                {id: onem-logo, path: logo.svg, mediaType: image/svg+xml, language: fr}], \
        applications: [{id: unemployment, name: {nl: Werkloosheid}, \
            description: {nl: Uitkeringen}, url: {nl: 'https://www.rva.be/uitkering'}, \
            contactBusiness: '02 515 44 44', \
            logos: [{id: app, path: logo.png, mediaType: image/png}]}], \
        messageTypes: [certificate]}";

    #[test]
    fn a_sender_shows_its_long_name_url_contacts_and_logos_read_beside_the_file() {
        let parsed = RegistryFile::parse_with(&file(TYPE, SHOWING, PARTNER), files).expect("valid");
        let sender = &parsed.senders[0];
        assert_eq!(
            sender.long_name.as_ref().and_then(|t| t.fr.as_deref()),
            Some("Office national de l'emploi")
        );
        assert_eq!(
            sender.url.as_ref().and_then(|t| t.nl.as_deref()),
            Some("https://www.rva.be/nl")
        );
        assert_eq!(sender.contact_technical.as_deref(), Some("helpdesk@rva.be"));
        assert_eq!(sender.logos[0].content, PNG);
        assert_eq!(sender.logos[1].content, SVG);
        assert_eq!(sender.logos[1].language, Some(Language::Fr));
        let application = &sender.applications[0];
        assert_eq!(
            application.contact_business.as_deref(),
            Some("02 515 44 44")
        );
        assert_eq!(application.logos[0].content, PNG);
    }

    #[test]
    fn a_logo_cannot_be_read_from_a_string_alone() {
        assert_eq!(
            RegistryFile::parse(&file(TYPE, SHOWING, PARTNER))
                .err()
                .map(|problems| problems.len()),
            Some(3),
            "each of the three logos"
        );
    }

    #[test]
    fn each_problem_of_what_a_sender_shows_names_its_field() {
        let logo = "{id: rva-logo, path: logo.png, mediaType: image/png}";
        let rows = [
            (
                SHOWING.replace("fr: 'https://www.onem.be/fr'", "fr: 'http://www.onem.be/fr'"),
                "sender onem has url.fr \"http://www.onem.be/fr\": it must be an https URL",
            ),
            (
                SHOWING.replace("url: {nl: 'https://www.rva.be/uitkering'}", "url: {}"),
                "application unemployment of sender onem has an empty url",
            ),
            (
                SHOWING.replace(
                    "longName: {nl: Rijksdienst voor Arbeidsvoorziening, fr: Office national de l'emploi}",
                    "longName: {nl: ' '}",
                ),
                "sender onem has an empty longName",
            ),
            (
                SHOWING.replace("description: {nl: Uitkeringen}", "description: {}"),
                "application unemployment of sender onem has an empty description",
            ),
            (
                SHOWING.replace("'helpdesk@rva.be'", "' '"),
                "sender onem has an empty contactTechnical",
            ),
            (
                SHOWING.replace("'02 515 44 44'", &"x".repeat(MAX_CONTACT_CHARS + 1)),
                "application unemployment of sender onem has a contactBusiness longer than 500 characters",
            ),
            (
                SHOWING.replace("path: logo.png, mediaType: image/png}, ", "path: gif.png, mediaType: image/png}, "),
                "sender onem: logos[0].path \"gif.png\" is not image/png: \
                 its bytes do not start with the PNG signature",
            ),
            (
                SHOWING.replace("path: logo.svg, mediaType: image/svg+xml", "path: logo.png, mediaType: image/svg+xml"),
                "sender onem: logos[1].path \"logo.png\" is not image/svg+xml: \
                 it is not an SVG document (UTF-8 XML with an <svg> element)",
            ),
            (
                SHOWING.replace("{id: app, path: logo.png, mediaType: image/png}", "{id: app, path: logo.png, mediaType: image/jpg}"),
                "application unemployment of sender onem: logos[0].mediaType \"image/jpg\" \
                 is not one of image/png, image/jpeg, image/gif, image/svg+xml",
            ),
            (
                SHOWING.replace("path: logo.png, mediaType: image/png}, ", "path: missing.png, mediaType: image/png}, "),
                "sender onem: logos[0].path \"missing.png\" cannot be read: no such file",
            ),
            (
                SHOWING.replace("path: logo.png, mediaType: image/png}, ", "path: empty.png, mediaType: image/png}, "),
                "sender onem: logos[0].path \"empty.png\" is an empty file",
            ),
            (
                SHOWING.replace("path: logo.png, mediaType: image/png}, ", "path: big.png, mediaType: image/png}, "),
                "sender onem: logos[0].path \"big.png\" is larger than 262144 bytes",
            ),
            (
                SHOWING.replace("path: logo.png, mediaType: image/png}, ", "path: ' ', mediaType: image/png}, "),
                "sender onem: logos[0].path is empty",
            ),
            (
                SHOWING.replace("id: rva-logo", "id: 'rva logo'"),
                "sender onem: logos[0].id \"rva logo\" must be 1 to 64 letters, digits, '.', '_' or '-'",
            ),
            (
                SHOWING.replace("id: onem-logo", "id: rva-logo"),
                "sender onem lists logo rva-logo twice",
            ),
        ];
        for (sender, problem) in rows {
            assert_eq!(
                RegistryFile::parse_with(&file(TYPE, &sender, PARTNER), files).err(),
                Some(vec![problem.to_owned()]),
                "{sender}"
            );
        }
        let same_id_elsewhere =
            SHOWING.replace("logos: [{id: app", &format!("logos: [{logo}, {{id: app"));
        assert!(
            RegistryFile::parse_with(&file(TYPE, &same_id_elsewhere, PARTNER), files).is_ok(),
            "a logo id is its owner's: an application may use its sender's"
        );
    }

    #[test]
    fn a_logo_is_what_its_media_type_says() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0];
        let cases: [(&str, &[u8], bool); 9] = [
            ("image/png", PNG, true),
            ("image/png", &jpeg, false),
            ("image/jpeg", &jpeg, true),
            ("image/jpeg", PNG, false),
            ("image/gif", b"GIF87a\x01", true),
            ("image/svg+xml", SVG, true),
            ("image/svg+xml", b"  <svg/>", true),
            ("image/svg+xml", b"<html><svg/></html>\xff", false),
            ("image/bmp", b"BM", false),
        ];
        for (media_type, bytes, fits) in cases {
            assert_eq!(
                image_mismatch(media_type, bytes).is_none(),
                fits,
                "{media_type} {bytes:?}"
            );
        }
    }

    #[test]
    fn webhooks_must_be_https_except_to_this_machine() {
        assert!(webhook_url_allowed("https://partner.example/hook"));
        assert!(webhook_url_allowed("http://127.0.0.1:8080/hook"));
        assert!(!webhook_url_allowed("http://partner.example/hook"));
        assert!(!webhook_url_allowed("http://127.0.0.1.evil.example/hook"));
    }

    #[test]
    fn a_year_is_twelve_months() {
        let period = ValidityPeriod {
            validity_period_number: 1,
            validity_period_unit: PeriodUnit::Year,
        };
        let from = DateTime::parse_from_rfc3339("2026-02-28T10:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(
            period.end_from(from).map(|d| d.to_rfc3339()),
            Some("2027-02-28T10:00:00+00:00".to_owned())
        );
    }
}
