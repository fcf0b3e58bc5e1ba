//! The proof of deposit: what store signs when it keeps a document (see `evidence::proof`).

use chrono::{DateTime, Utc};
use domain::digest::Sha256Digest;
use domain::publication::Publication;
use evidence::keys::Signer;
use evidence::proof::{AttachmentDigest, ProofClaims, ProofKind, recipient_digest, sign};

/// Signs the proof that `publication` was deposited at `deposited_at`.
pub fn proof_of_deposit(
    signer: &Signer,
    provider_id: &str,
    publication: &Publication,
    deposited_at: DateTime<Utc>,
    audit_record: i64,
) -> anyhow::Result<String> {
    let message_id = publication.message_id.to_string();
    let body_sha256 = match &publication.body_content {
        Some(body) => Some(Sha256Digest::of(&serde_json::to_vec(body)?).to_base64url()),
        None => None,
    };
    let claims = ProofClaims {
        proof: ProofKind::Deposit,
        iss: provider_id.to_owned(),
        iat: Utc::now().timestamp(),
        recipient: recipient_digest(publication.recipient.expose(), &message_id),
        message_id,
        sender_reference: publication.sender_reference.as_str().to_owned(),
        sender: publication.sender_id.to_string(),
        sender_organization_id: publication.sender_organization_id.clone(),
        message_type_id: publication.message_type_id.clone(),
        attachments: publication
            .attachments
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
        expiration_date: publication.expiration_date,
        audit_record: Some(audit_record),
    };
    sign(signer, &claims)
}
