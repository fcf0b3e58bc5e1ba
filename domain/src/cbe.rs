//! The enterprise number (CBE/KBO/BCE) of a sender organisation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CbeNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CbeError {
    #[error("an enterprise number has 10 digits and starts with 0 or 1")]
    Format,
    #[error("the enterprise number's check digits do not match")]
    CheckDigits,
}

impl CbeNumber {
    /// Accepts the 10 digits, optionally written with dots (`0406.798.006`).
    pub fn parse(raw: &str) -> Result<Self, CbeError> {
        let digits: String = raw.chars().filter(|c| !matches!(c, '.' | ' ')).collect();
        if digits.len() != 10
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !matches!(digits.as_bytes()[0], b'0' | b'1')
        {
            return Err(CbeError::Format);
        }
        let value = |range: std::ops::Range<usize>| -> u64 {
            digits[range]
                .bytes()
                .fold(0, |acc, b| acc * 10 + u64::from(b - b'0'))
        };
        if 97 - value(0..8) % 97 != value(8..10) {
            return Err(CbeError::CheckDigits);
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CbeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CbeNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CbeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CbeNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_onem_number_is_valid() {
        assert_eq!(
            CbeNumber::parse("0406.798.006").map(|n| n.to_string()),
            Ok("0406798006".to_owned())
        );
    }

    #[test]
    fn a_wrong_check_or_first_digit_is_refused() {
        assert_eq!(CbeNumber::parse("0406798007"), Err(CbeError::CheckDigits));
        assert_eq!(CbeNumber::parse("2406798006"), Err(CbeError::Format));
        assert_eq!(CbeNumber::parse("040679800"), Err(CbeError::Format));
    }
}
