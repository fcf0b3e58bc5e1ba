//! The proof of deposit: what store signs when it publishes a document (see
//! `evidence::proof`), from the document as intake recorded it.

use chrono::{DateTime, Utc};
use domain::digest::Sha256Digest;
use domain::ssin::Ssin;
use evidence::keys::Signer;
use evidence::proof::{AttachmentDigest, ProofClaims, ProofKind, recipient_digest, sign};
use records::documents::{self, Document};

/// Signs the proof that `document`, with `attachments`, was deposited for `recipient` at
/// `deposited_at`.
pub fn proof_of_deposit(
    signer: &Signer,
    provider_id: &str,
    document: &Document,
    attachments: &[documents::AttachmentDigest],
    recipient: &Ssin,
    deposited_at: DateTime<Utc>,
    audit_record: i64,
) -> anyhow::Result<String> {
    let message_id = document.message_id.to_string();
    let body_sha256 = match &document.body_content {
        Some(body) => Some(Sha256Digest::of(&serde_json::to_vec(&body.0)?).to_base64url()),
        None => None,
    };
    let claims = ProofClaims {
        proof: ProofKind::Deposit,
        iss: provider_id.to_owned(),
        iat: Utc::now().timestamp(),
        recipient: recipient_digest(recipient.expose(), &message_id),
        message_id,
        sender_reference: document.sender_reference.clone(),
        sender: document.sender_id.clone(),
        sender_organization_id: document.sender_organization_id.clone(),
        message_type_id: document.message_type_id.clone(),
        attachments: attachments
            .iter()
            .map(|a| AttachmentDigest {
                file_name: a.file_name.clone(),
                media_type: a.media_type.clone(),
                main_content: a.main_content,
                sha256: a.sha256.to_base64url(),
            })
            .collect(),
        body_sha256,
        deposited_at: Some(deposited_at),
        read_at: None,
        expiration_date: document.expiration_date,
        audit_record: Some(audit_record),
    };
    sign(signer, &claims)
}
