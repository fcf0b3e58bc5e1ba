//! Audit exports for the other parties (E.17): JSON Lines, one audit record per line, then a
//! last line `{"manifest": "<JWS>"}` whose payload (a [`Manifest`]) states the record count,
//! the first and last record, the seals that cover them, and the SHA-256 of every byte before
//! that line. Checking one needs `sha256sum` and any JOSE library; nothing of ours.

use crate::keys::{Keyring, Signer};
use crate::proof::{VerifyError, sign_json, verify_json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The provider that exported.
    pub iss: String,
    pub exported_at: DateTime<Utc>,
    /// The period asked for: records with `from <= at < to`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The sender the export is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub record_count: usize,
    pub first_record: Option<i64>,
    pub last_record: Option<i64>,
    /// The seals covering the exported records (some records may be too recent to be sealed).
    pub seals: Vec<i64>,
    /// Hex SHA-256 of every byte of the export before the manifest line.
    pub sha256: String,
}

impl Manifest {
    /// The manifest line: `{"manifest":"<JWS>"}`.
    pub fn line(&self, signer: &Signer) -> anyhow::Result<String> {
        Ok(serde_json::json!({ "manifest": sign_json(signer, self)? }).to_string())
    }
}

/// Hashes the lines of an export as they are written.
#[derive(Default)]
pub struct Digest(Sha256);

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the export has no manifest line")]
    NoManifest,
    #[error("the manifest does not verify: {0}")]
    Manifest(#[from] VerifyError),
    #[error(
        "the export's bytes hash to {actual}, the manifest says {stated}: the export was changed"
    )]
    Changed { stated: String, actual: String },
    #[error("the export holds {actual} records, the manifest says {stated}")]
    Count { stated: usize, actual: usize },
}

/// Checks a whole export: the manifest's signature, the digest of everything before it, and
/// the record count. Returns the manifest.
pub fn verify(keyring: &Keyring, export: &[u8]) -> Result<Manifest, ExportError> {
    let body_end = export[..export.len().saturating_sub(1)]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let (body, last) = export.split_at(body_end);
    let line: serde_json::Value =
        serde_json::from_slice(last).map_err(|_| ExportError::NoManifest)?;
    let jws = line["manifest"].as_str().ok_or(ExportError::NoManifest)?;
    let manifest: Manifest = verify_json(keyring, jws)?;
    let mut digest = Digest::default();
    digest.update(body);
    let actual = digest.hex();
    if actual != manifest.sha256 {
        return Err(ExportError::Changed {
            stated: manifest.sha256,
            actual,
        });
    }
    let records = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    if records != manifest.record_count {
        return Err(ExportError::Count {
            stated: manifest.record_count,
            actual: records,
        });
    }
    Ok(manifest)
}
