//! The Belgian national number (INSZ/NISS/SSIN) of a citizen.
//!
//! Parsed once at the edge; inside the pipeline nobody re-validates it. `Debug` and `Display`
//! mask it so that it cannot reach a log line by accident; the digits are only available through
//! [`Ssin::expose`], which callers use to store or forward the number on purpose.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ssin(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsinError {
    #[error("a national number has exactly 11 digits")]
    Format,
    #[error("the national number's birth date part is not a possible date")]
    BirthDate,
    #[error("the national number's check digits do not match")]
    CheckDigits,
}

impl Ssin {
    /// Accepts the 11 digits, optionally written with the usual separators (`85.07.30-033.28`).
    pub fn parse(raw: &str) -> Result<Self, SsinError> {
        let digits: String = raw
            .chars()
            .filter(|c| !matches!(c, '.' | '-' | ' '))
            .collect();
        if digits.len() != 11 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SsinError::Format);
        }
        let number = |range: std::ops::Range<usize>| -> u64 {
            digits[range]
                .bytes()
                .fold(0, |acc, b| acc * 10 + u64::from(b - b'0'))
        };
        // Bis numbers add 20 or 40 to the month; month 0 and day 0 stand for "unknown".
        let month = number(2..4);
        let day = number(4..6);
        if !matches!(month, 0..=12 | 20..=32 | 40..=52) || day > 31 {
            return Err(SsinError::BirthDate);
        }
        let base = number(0..9);
        let check = number(9..11);
        let born_before_2000 = 97 - base % 97 == check;
        let born_from_2000 = 97 - (2_000_000_000 + base) % 97 == check;
        if !born_before_2000 && !born_from_2000 {
            return Err(SsinError::CheckDigits);
        }
        Ok(Self(digits))
    }

    /// The 11 digits, for storage and for the citizen's own API: never for a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Ssin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ssin(***********)")
    }
}

impl fmt::Display for Ssin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "***********")
    }
}

impl Serialize for Ssin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Ssin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Ssin::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Replaces runs of six or more digits, separators included (`85.07.30-033.28`): a decoder's
/// message may quote a value, and a national number must not reach the audit trail or a log
/// line that way.
pub fn mask_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A run: digits, and separators that stand between two digits.
        let start = i;
        let mut digits = 0;
        while i < chars.len() {
            if chars[i].is_ascii_digit() {
                digits += 1;
                i += 1;
            } else if matches!(chars[i], '.' | '-' | ' ' | '/')
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            {
                i += 1;
            } else {
                break;
            }
        }
        if digits >= 6 {
            out.push_str("***");
        } else {
            out.extend(&chars[start..i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_born_before_2000_is_accepted() {
        assert!(Ssin::parse("85073003328").is_ok());
        assert!(Ssin::parse("85.07.30-033.28").is_ok());
    }

    #[test]
    fn a_number_born_from_2000_uses_the_2_prefix() {
        let base = 10_101_001u64;
        let check = 97 - (2_000_000_000 + base) % 97;
        assert_ne!(
            check,
            97 - base % 97,
            "the example must tell the two rules apart"
        );
        assert!(Ssin::parse(&format!("{base:09}{check:02}")).is_ok());
    }

    #[test]
    fn a_bis_number_adds_20_or_40_to_the_month() {
        for month in [27u64, 47] {
            let base = 850_000_000 + month * 100_000 + 30_033;
            let check = 97 - base % 97;
            assert!(Ssin::parse(&format!("{base:09}{check:02}")).is_ok());
        }
    }

    #[test]
    fn wrong_check_digits_are_refused() {
        assert_eq!(Ssin::parse("85073003329"), Err(SsinError::CheckDigits));
    }

    #[test]
    fn wrong_length_or_letters_are_refused() {
        assert_eq!(Ssin::parse("8507300332"), Err(SsinError::Format));
        assert_eq!(Ssin::parse("8507300332a"), Err(SsinError::Format));
    }

    #[test]
    fn an_impossible_month_is_refused() {
        let base = 851_530_033u64;
        let check = 97 - base % 97;
        assert_eq!(
            Ssin::parse(&format!("{base:09}{check:02}")),
            Err(SsinError::BirthDate)
        );
    }

    #[test]
    fn long_digit_runs_are_masked_and_positions_kept() {
        assert_eq!(
            mask_numbers(
                "invalid type: integer `85073003328`, expected a string at line 1 column 20"
            ),
            "invalid type: integer `***`, expected a string at line 1 column 20"
        );
        assert_eq!(
            mask_numbers("value \"85.07.30-033.28\" found"),
            "value \"***\" found"
        );
        assert_eq!(mask_numbers("2026-11-28"), "***");
        assert_eq!(mask_numbers("line 12 column 3"), "line 12 column 3");
    }

    #[test]
    fn the_number_never_shows_in_debug_or_display() {
        let ssin = Ssin::parse("85073003328").expect("valid");
        assert!(!format!("{ssin:?} {ssin}").contains("85073003328"));
    }
}
