//! Closed vocabularies: enums whose every value has one fixed spelling, shared by the wire
//! (status events, internal messages), the database (CHECK-constrained text columns) and the
//! metrics' label values. [`vocabulary!`](crate::vocabulary!) declares one; nothing else
//! spells these strings.

/// What every vocabulary offers: its values, their spelling, and the way back.
pub trait Vocabulary: Copy + Sized + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];

    /// The one spelling of this value.
    fn as_str(self) -> &'static str;

    /// The value spelt `raw`; `None` for anything else (never a default).
    fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == raw)
    }
}

/// Declares a vocabulary: the enum, its spellings, `Display`, and serde as the spelling.
///
/// ```
/// domain::vocabulary! {
///     /// A colour.
///     pub enum Colour { Red => "red", Green => "green" }
/// }
/// use domain::vocabulary::Vocabulary;
/// assert_eq!(Colour::parse("red"), Some(Colour::Red));
/// ```
#[macro_export]
macro_rules! vocabulary {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::vocabulary::Vocabulary for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl $name {
            /// The one spelling of this value.
            pub fn as_str(self) -> &'static str {
                <Self as $crate::vocabulary::Vocabulary>::as_str(self)
            }

            /// The value spelt `raw`, if any.
            pub fn parse(raw: &str) -> Option<Self> {
                <Self as $crate::vocabulary::Vocabulary>::parse(raw)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        /// Compares with a spelling, so that a test reads like the contract it checks.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&raw).ok_or_else(|| {
                    ::serde::de::Error::custom(format!(
                        "unknown {} {:?}",
                        stringify!($name),
                        raw
                    ))
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Vocabulary;

    crate::vocabulary! {
        /// A test vocabulary.
        pub enum Weather { Sunny => "sunny", Rainy => "rainy-day" }
    }

    #[test]
    fn every_value_reads_back_from_its_spelling_and_nothing_else_does() {
        for value in Weather::ALL {
            assert_eq!(Weather::parse(value.as_str()), Some(*value));
        }
        assert_eq!(Weather::parse("Sunny"), None);
        assert_eq!(
            serde_json::to_string(&Weather::Rainy).expect("serialises"),
            "\"rainy-day\""
        );
        assert!(serde_json::from_str::<Weather>("\"snowy\"").is_err());
        // Display honours width, so columns of codes line up.
        assert_eq!(format!("{:<8}|", Weather::Sunny), "sunny   |");
    }
}
