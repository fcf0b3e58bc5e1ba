//! The load: citizens (nine in ten consenting, each with an e-mail preference), one
//! publication per citizen carrying a PDF of the requested size, and the messages of a run,
//! each with its sender, its citizen and the final status it should end in.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use domain::citizen::{Channel, Consent, Preferences, SsinHasher};
use domain::digest::Sha256Digest;
use domain::ssin::Ssin;
use domain::status::Status;
use domain::translated::Language;
use sqlx::PgPool;

/// One citizen in ten (the tenth, the twentieth…) never consented.
pub fn consents(citizen: usize) -> bool {
    citizen % 10 != 9
}

/// A valid national number for citizen `index`: born between 1960 and 1999, with a serial
/// number and its check digits; distinct for the first 13 million indexes.
pub fn ssin(index: usize) -> anyhow::Result<Ssin> {
    let serial = 1 + index % 997;
    let day = 1 + (index / 997) % 28;
    let month = 1 + (index / (997 * 28)) % 12;
    let year = 60 + (index / (997 * 28 * 12)) % 40;
    let base = year * 10_000_000 + month * 100_000 + day * 1000 + serial;
    let check = 97 - base % 97;
    Ssin::parse(&format!("{base:09}{check:02}")).context("a generated national number is invalid")
}

/// Records the consent and an e-mail preference of every consenting citizen (the others never
/// consented), in one transaction, as the portal would have.
pub async fn record_citizens(
    pool: &PgPool,
    hasher: &SsinHasher,
    citizens: usize,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await?;
    for index in (0..citizens).filter(|&i| consents(i)) {
        let ssin = ssin(index)?;
        records::citizens::record_consent(&mut tx, hasher, &ssin, Consent::Granted, now, "bench")
            .await?;
        let preferences = Preferences {
            language: Language::ALL[index % Language::ALL.len()],
            channel: Channel::Email {
                email: format!("citizen-{index}@bench.example"),
            },
        };
        records::citizens::record_preferences(&mut tx, hasher, &ssin, &preferences, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A PDF of exactly `size` bytes (at least a hundred or so): a header, one stream of
/// incompressible bytes that differ with `seed`, a trailer. Intake checks the `%PDF-` magic and
/// the digest; nobody renders it.
pub fn pdf(size: usize, seed: u64) -> Vec<u8> {
    const HEAD: &[u8] =
        b"%PDF-1.7\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n3 0 obj <</Length 0>>\nstream\n";
    const TAIL: &[u8] = b"\nendstream\nendobj\ntrailer <</Root 1 0 R>>\n%%EOF\n";
    let stream = size.saturating_sub(HEAD.len() + TAIL.len());
    let mut pdf = Vec::with_capacity(size.max(HEAD.len() + TAIL.len()));
    pdf.extend_from_slice(HEAD);
    // xorshift64*: cheap, deterministic, and as incompressible as a real PDF's deflated streams.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while pdf.len() < HEAD.len() + stream {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let room = HEAD.len() + stream - pdf.len();
        pdf.extend_from_slice(&word[..room.min(8)]);
    }
    pdf.extend_from_slice(TAIL);
    pdf
}

/// The v2 publication for citizen `index`: their national number, a PDF of `pdf_bytes`, its
/// digest.
pub fn publication(index: usize, pdf_bytes: usize, message_type: &str) -> anyhow::Result<Vec<u8>> {
    let pdf = pdf(pdf_bytes, index as u64);
    let body = serde_json::json!({
        "recipient": {"eboxType": "citizen", "eboxIdValue": ssin(index)?.expose()},
        "subject": {"nl": "Uw attest", "fr": "Votre attestation", "de": "Ihre Bescheinigung"},
        "messageTypeId": message_type,
        "attachments": [{
            "fileName": "attest.pdf",
            "mediaType": "application/pdf",
            "mainContent": true,
            "content": STANDARD.encode(&pdf),
            "digest": {"digestMethod": "sha_256", "digestValue": Sha256Digest::of(&pdf).to_base64url()}
        }],
        "bodyMainContent": false,
        "replyAuthorized": false
    });
    Ok(serde_json::to_vec(&body)?)
}

/// What the pipeline carries between stages after intake, for the bare chain's later hops:
/// a hand-off of the same size as the stages'.
pub fn handoff() -> anyhow::Result<Vec<u8>> {
    let handoff: domain::handoff::Handoff = serde_json::from_value(serde_json::json!({
        "messageId": uuid::Uuid::new_v4(),
        "recipient": ssin(0)?.expose(),
    }))?;
    Ok(serde_json::to_vec(&handoff)?)
}

/// Every citizen's publication, built before any clock starts.
pub struct Publications {
    bodies: Vec<Vec<u8>>,
}

impl Publications {
    pub fn build(citizens: usize, pdf_bytes: usize, message_type: &str) -> anyhow::Result<Self> {
        let bodies = (0..citizens)
            .map(|i| publication(i, pdf_bytes, message_type))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { bodies })
    }

    pub fn of(&self, citizen: usize) -> &[u8] {
        &self.bodies[citizen % self.bodies.len()]
    }

    /// The mean size of a publication, in bytes.
    pub fn mean_bytes(&self) -> usize {
        self.bodies.iter().map(Vec::len).sum::<usize>() / self.bodies.len().max(1)
    }
}

/// One message of a run.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// Index into the run's senders.
    pub sender: usize,
    pub citizen: usize,
}

impl Planned {
    /// The final status the sender should hear.
    pub fn expected(&self) -> Status {
        if consents(self.citizen) {
            Status::Published
        } else {
            Status::NoDigitalUser
        }
    }
}

/// The messages of one run, in publishing order; message `g`'s reference is
/// `bench-<run>-<g>`.
pub struct Plan {
    pub run: String,
    pub messages: Vec<Planned>,
}

impl Plan {
    /// `messages` messages, round robin over `senders` senders and over `citizens` citizens.
    pub fn round_robin(messages: usize, senders: usize, citizens: usize) -> Self {
        let messages = (0..messages)
            .map(|g| Planned {
                sender: g % senders.max(1),
                citizen: g % citizens.max(1),
            })
            .collect();
        Self::new(messages)
    }

    pub fn new(messages: Vec<Planned>) -> Self {
        Self {
            run: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            messages,
        }
    }

    pub fn reference(&self, g: usize) -> String {
        format!("bench-{}-{g}", self.run)
    }

    /// The index of a reference of this run.
    pub fn index_of(&self, reference: &str) -> Option<usize> {
        reference
            .strip_prefix("bench-")?
            .strip_prefix(self.run.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
            .filter(|&g| g < self.messages.len())
    }

    /// The messages of sender `sender`, by index.
    pub fn share(&self, sender: usize) -> Vec<usize> {
        (0..self.messages.len())
            .filter(|&g| self.messages[g].sender == sender)
            .collect()
    }

    pub fn expected(&self, status: Status) -> usize {
        self.messages
            .iter()
            .filter(|m| m.expected() == status)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_national_numbers_are_valid_and_distinct() {
        let numbers: std::collections::HashSet<String> = (0..5000)
            .map(|i| ssin(i).expect("valid").expose().to_owned())
            .collect();
        assert_eq!(numbers.len(), 5000);
    }

    #[test]
    fn the_pdf_has_the_size_asked_for_and_looks_like_a_pdf() {
        let pdf = pdf(10 * 1024, 7);
        assert_eq!(pdf.len(), 10 * 1024);
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        assert_ne!(pdf, super::pdf(10 * 1024, 8));
    }

    #[test]
    fn a_publication_carries_its_pdf_and_the_pdfs_digest() {
        let body: serde_json::Value =
            serde_json::from_slice(&publication(3, 2048, "t").expect("built")).expect("json");
        let attachment = &body["attachments"][0];
        let content = STANDARD
            .decode(attachment["content"].as_str().expect("content"))
            .expect("base64");
        assert_eq!(content, pdf(2048, 3));
        assert_eq!(
            attachment["digest"]["digestValue"],
            Sha256Digest::of(&content).to_base64url()
        );
    }

    #[test]
    fn nine_citizens_in_ten_consent() {
        let plan = Plan::round_robin(1000, 2, 1000);
        assert_eq!(plan.expected(Status::Published), 900);
        assert_eq!(plan.expected(Status::NoDigitalUser), 100);
        assert_eq!(plan.share(0).len(), 500);
    }

    #[test]
    fn a_reference_gives_back_its_index_only_for_its_own_run() {
        let plan = Plan::round_robin(10, 2, 10);
        assert_eq!(plan.index_of(&plan.reference(7)), Some(7));
        assert_eq!(plan.index_of(&plan.reference(10)), None);
        assert_eq!(plan.index_of("bench-other-7"), None);
    }
}
