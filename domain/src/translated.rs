//! `TranslatedString`: a text in the federation's three languages.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Nl,
    Fr,
    De,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::Nl, Language::Fr, Language::De];

    pub fn code(self) -> &'static str {
        match self {
            Language::Nl => "nl",
            Language::Fr => "fr",
            Language::De => "de",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslatedString {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub de: Option<String>,
}

impl TranslatedString {
    pub fn get(&self, language: Language) -> Option<&str> {
        match language {
            Language::Nl => self.nl.as_deref(),
            Language::Fr => self.fr.as_deref(),
            Language::De => self.de.as_deref(),
        }
        .filter(|text| !text.trim().is_empty())
    }

    /// True when at least one language has a non-blank text.
    pub fn has_any(&self) -> bool {
        Language::ALL.iter().any(|l| self.get(*l).is_some())
    }

    /// Every language filled: a missing one takes the first present among nl, fr, de (the
    /// federation's rule for what the portal shows).
    pub fn filled(&self) -> TranslatedString {
        let fallback = Language::ALL
            .iter()
            .find_map(|l| self.get(*l))
            .map(str::to_owned);
        let pick = |l: Language| self.get(l).map(str::to_owned).or_else(|| fallback.clone());
        TranslatedString {
            nl: pick(Language::Nl),
            fr: pick(Language::Fr),
            de: pick(Language::De),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_language_is_filled_from_another() {
        let text = TranslatedString {
            fr: Some("Attestation".into()),
            ..Default::default()
        };
        let filled = text.filled();
        assert_eq!(filled.nl.as_deref(), Some("Attestation"));
        assert_eq!(filled.de.as_deref(), Some("Attestation"));
    }

    #[test]
    fn blank_texts_do_not_count() {
        let text = TranslatedString {
            nl: Some("  ".into()),
            ..Default::default()
        };
        assert!(!text.has_any());
    }
}
