//! Reference data: the registered senders, their applications and the message types they may
//! publish. The operator's YAML file is the source of truth; `ebox registry load` applies it.

use crate::cbe::CbeNumber;
use crate::ids::SenderId;
use crate::translated::TranslatedString;
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
    pub name: TranslatedString,
    #[serde(default)]
    pub applications: Vec<ApplicationEntry>,
    #[serde(default)]
    pub message_types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationEntry {
    pub id: String,
    pub name: TranslatedString,
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
    /// Parses and checks the whole file, reporting every problem at once: the message types
    /// first, then the senders (which name the types), then the partners.
    pub fn parse(yaml: &str) -> Result<Self, Vec<String>> {
        let file: RegistryFile = serde_yaml_ng::from_str(yaml).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let type_ids = check_message_types(&file.message_types, &mut problems);
        check_senders(&file.senders, &type_ids, &mut problems);
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
fn check_senders(senders: &[SenderEntry], type_ids: &HashSet<&str>, problems: &mut Vec<String>) {
    let mut sender_ids = HashSet::new();
    for sender in senders {
        if !sender_ids.insert(sender.id.as_str()) {
            problems.push(format!("sender {} is listed twice", sender.id));
        }
        if !sender.name.has_any() {
            problems.push(format!("sender {} has no name", sender.id));
        }
        check_applications(sender, problems);
        for type_id in &sender.message_types {
            if !type_ids.contains(type_id.as_str()) {
                problems.push(format!(
                    "sender {} names message type {type_id}, which the file does not define",
                    sender.id
                ));
            }
        }
    }
}

fn check_applications(sender: &SenderEntry, problems: &mut Vec<String>) {
    let mut app_ids = HashSet::new();
    for application in &sender.applications {
        if !app_ids.insert(application.id.as_str()) {
            problems.push(format!(
                "sender {} lists application {} twice",
                sender.id, application.id
            ));
        }
        if !application.name.has_any() {
            problems.push(format!(
                "application {} of sender {} has no name",
                application.id, sender.id
            ));
        }
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
