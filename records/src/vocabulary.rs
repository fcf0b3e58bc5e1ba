//! Reading a vocabulary back from a text column.

use domain::Vocabulary;

/// The value spelt `raw` in `column`; an unknown spelling is a decode error (the row was not
/// written by this code, or by a newer release), never a default.
pub fn decode<V: Vocabulary>(raw: &str, column: &str) -> sqlx::Result<V> {
    V::parse(raw).ok_or_else(|| {
        sqlx::Error::Decode(
            format!("{column} holds {raw:?}, which this release does not know").into(),
        )
    })
}
