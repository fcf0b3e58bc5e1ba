//! The audit trail as evidence: the sealer (a background job) and `ebox audit`.
//!
//! - [`Sealer`]: every few seconds, seals the records no seal covers yet (in the store
//!   process, which holds the signing key): the SHA-256 of their canonical lines, chained to
//!   the previous seal, signed with the proofs' Ed25519 key (`evidence::seal`). One sealer at
//!   a time (an advisory lock), so the seals form one chain.
//! - `ebox audit verify`: recomputes every seal's digest, chain and signature, and finds
//!   records no seal covers; exits non-zero naming the first record or seal that does not
//!   match.
//! - `ebox audit trace <messageId | sender:reference>`: a message's journey, one JSON line per
//!   record, with the seal that covers it.

use anyhow::Context;
use chrono::{SubsecRound as _, Utc};
use evidence::keys::{Keyring, Signer};
use evidence::seal::{SealClaims, records_sha256};
use records::seals::{self, SealRow};
use runtime::jobs::{Job, Pass};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// How often the sealer looks for records to seal.
pub const SEAL_EVERY: Duration = Duration::from_secs(2);
/// How old a record must be before it is sealed: the transaction that wrote it has committed.
const SETTLE: Duration = Duration::from_secs(2);
/// Records per seal, at most.
const SEAL_SIZE: i64 = 10_000;
/// How far below the last sealed id a late-committed record may be looked for.
const LATE_WINDOW: i64 = 100_000;
/// How old an unsealed record must be for `verify` to call it out.
pub const VERIFY_GRACE: Duration = Duration::from_secs(60);

pub struct Sealer {
    pool: PgPool,
    signer: Arc<Signer>,
    settle: Duration,
}

impl Sealer {
    pub fn new(pool: PgPool, signer: Arc<Signer>) -> Self {
        Self {
            pool,
            signer,
            settle: SETTLE,
        }
    }

    /// Seals records as soon as they are there (tests, where nothing else writes).
    pub fn without_settling(mut self) -> Self {
        self.settle = Duration::ZERO;
        self
    }

    /// Seals what is due; returns how many records the new seal covers (0: none made).
    pub async fn seal_due(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        if !seals::lock_sealing(&mut tx).await? {
            return Ok(0);
        }
        let last = seals::last_seal(&mut tx).await?;
        let floor = last
            .as_ref()
            .map_or(0, |seal| (seal.last_record - LATE_WINDOW).max(0));
        let records = seals::unsealed(&mut tx, floor, self.settle, SEAL_SIZE).await?;
        let (Some(first), Some(last_record)) = (records.first(), records.last()) else {
            return Ok(0);
        };
        let claims = SealClaims {
            seq: last.as_ref().map_or(1, |seal| seal.seq + 1),
            sealed_at: Utc::now().trunc_subsecs(6),
            record_count: i32::try_from(records.len()).unwrap_or(i32::MAX),
            first_record: first.0,
            last_record: last_record.0,
            records_sha256: records_sha256(records.iter().map(|(_, line)| line.as_str())),
            previous_seal: last.map(|seal| seal.seal_sha256).unwrap_or_default(),
        };
        let row = SealRow {
            seq: claims.seq,
            sealed_at: claims.sealed_at,
            record_count: claims.record_count,
            first_record: claims.first_record,
            last_record: claims.last_record,
            records_sha256: claims.records_sha256.clone(),
            previous_seal: claims.previous_seal.clone(),
            seal_sha256: claims.seal_sha256(),
            jws: claims.sign(&self.signer)?,
        };
        let ids: Vec<i64> = records.iter().map(|(id, _)| *id).collect();
        seals::insert_seal(&mut tx, &row, &ids).await?;
        tx.commit().await?;
        Ok(records.len())
    }
}

impl Job for Sealer {
    fn name(&self) -> &'static str {
        "audit-sealer"
    }

    async fn pass(&mut self) -> anyhow::Result<Pass> {
        let sealed = self.seal_due().await?;
        Ok(if sealed as i64 == SEAL_SIZE {
            Pass::More
        } else {
            Pass::Idle
        })
    }
}

/// What `verify` found wrong first.
#[derive(Debug, thiserror::Error)]
pub enum Tampered {
    #[error("seal {seq}: {what}")]
    Seal { seq: i64, what: String },
    #[error("record {id} (seal {seq}) is missing: it was deleted")]
    Missing { id: i64, seq: i64 },
    #[error(
        "record {id}: no seal covers it, though it is older than the sealer's delay: it was inserted behind the trail's back"
    )]
    Unsealed { id: i64 },
}

/// Verifies the whole trail; returns how many seals and records it checked.
pub async fn verify(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<(usize, usize)> {
    verify_period(pool, keyring, (None, None)).await
}

/// Verifies the seals made in `period` (from inclusive, to exclusive; open ends for none) and
/// the records written in it: every seal's signature and the whole chain are checked, the
/// records only of the seals in the period. Returns the seals and records recomputed.
pub async fn verify_period(
    pool: &PgPool,
    keyring: &Keyring,
    period: (Option<chrono::DateTime<Utc>>, Option<chrono::DateTime<Utc>>),
) -> anyhow::Result<(usize, usize)> {
    let in_period = |at: chrono::DateTime<Utc>| {
        period.0.is_none_or(|from| at >= from) && period.1.is_none_or(|to| at < to)
    };
    let mut conn = pool.acquire().await?;
    let mut checked = 0;
    let mut previous = String::new();
    let mut records = 0;
    let all = seals::all_seals(&mut conn).await?;
    // Seals whose records were purged (past their retention) keep their signature and their
    // place in the chain; only their records cannot be recomputed.
    let purged_up_to = seals::purged_up_to(&mut conn).await?;
    for (index, seal) in all.iter().enumerate() {
        let fail = |what: String| Tampered::Seal {
            seq: seal.seq,
            what,
        };
        if seal.seq != index as i64 + 1 {
            return Err(fail(format!(
                "expected seal {} here: a seal is missing",
                index + 1
            ))
            .into());
        }
        let claims = evidence::seal::verify(keyring, &seal.jws)
            .map_err(|e| fail(format!("its signature does not verify: {e}")))?;
        let stored = SealClaims {
            seq: seal.seq,
            sealed_at: seal.sealed_at,
            record_count: seal.record_count,
            first_record: seal.first_record,
            last_record: seal.last_record,
            records_sha256: seal.records_sha256.clone(),
            previous_seal: seal.previous_seal.clone(),
        };
        if claims != stored || claims.seal_sha256() != seal.seal_sha256 {
            return Err(fail("its stored fields differ from what was signed".into()).into());
        }
        if seal.previous_seal != previous {
            return Err(fail("it does not chain to the seal before it".into()).into());
        }
        if seal.seq <= purged_up_to || !in_period(seal.sealed_at) {
            previous = seal.seal_sha256.clone();
            continue;
        }
        checked += 1;
        let members = seals::member_lines(&mut conn, seal.seq).await?;
        if let Some((id, _)) = members.iter().find(|(_, line)| line.is_none()) {
            return Err(Tampered::Missing {
                id: *id,
                seq: seal.seq,
            }
            .into());
        }
        let digest = records_sha256(members.iter().filter_map(|(_, line)| line.as_deref()));
        if digest != seal.records_sha256 || members.len() != seal.record_count as usize {
            let (first, last) = (members.first().map(|m| m.0), members.last().map(|m| m.0));
            return Err(fail(format!(
                "its records ({first:?}..{last:?}) do not hash to what it sealed: one was edited, inserted or reordered"
            ))
            .into());
        }
        records += members.len();
        previous = seal.seal_sha256.clone();
    }
    if let Some(id) = seals::unsealed_older_than(&mut conn, VERIFY_GRACE, period)
        .await?
        .first()
    {
        return Err(Tampered::Unsealed { id: *id }.into());
    }
    Ok((checked, records))
}

/// One JSON line per record of a message's journey.
pub async fn trace(pool: &PgPool, target: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut conn = pool.acquire().await?;
    let rows = match uuid::Uuid::parse_str(target) {
        Ok(id) => seals::trace(&mut conn, Some(id), None).await?,
        Err(_) => {
            let (sender, reference) = target
                .split_once(':')
                .context("give a message id, or sender:reference")?;
            seals::trace(&mut conn, None, Some((sender, reference))).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            serde_json::json!({
                "seq": row.id,
                "at": row.at,
                "stage": row.stage,
                "action": row.action,
                "outcome": row.code,
                "messageId": row.message_id,
                "sender": row.sender_id,
                "senderReference": row.sender_reference,
                "seal": row.seal,
                "details": row.details,
            })
        })
        .collect())
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute every seal (digests, chain, signatures) and find unsealed records; exits
    /// non-zero naming the first that does not match.
    Verify {
        /// The keys to check seals with (default: this service's, from its settings).
        #[arg(long)]
        jwks: Option<std::path::PathBuf>,
        /// Only the seals made, and records written, from this moment (RFC 3339)...
        #[arg(long)]
        from: Option<chrono::DateTime<Utc>>,
        /// ...until this one (excluded). The chain and every signature are checked all the same.
        #[arg(long)]
        to: Option<chrono::DateTime<Utc>>,
    },
    /// A message's journey, one JSON line per record: a message id, or sender:reference.
    Trace { target: String },
    /// Write the records of a period as JSON Lines with a signed manifest last (E.17).
    Export {
        /// RFC 3339; records with from <= at < to.
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        #[arg(long)]
        to: chrono::DateTime<chrono::Utc>,
        /// Only this sender's records and the records about its messages.
        #[arg(long)]
        sender: Option<String>,
    },
    /// Delete the records past their retention date, whole seals at a time, keeping the
    /// seals (run with the owner's EBOX_MIGRATION_DATABASE_URL: the services may not delete).
    Purge,
    /// Check an export offline: the manifest's signature, the digest of every line before
    /// it, the record count.
    VerifyExport {
        file: std::path::PathBuf,
        #[arg(long)]
        jwks: std::path::PathBuf,
    },
}

pub async fn run(
    settings: &runtime::config::Settings,
    command: AuditCommand,
) -> anyhow::Result<()> {
    if let AuditCommand::VerifyExport { file, jwks } = &command {
        // Offline: neither the database nor this service's keys.
        let keyring = Keyring::from_jwks(
            &std::fs::read_to_string(jwks)
                .with_context(|| format!("Failed to read {}", jwks.display()))?,
        )?;
        let bytes =
            std::fs::read(file).with_context(|| format!("Failed to read {}", file.display()))?;
        let manifest = evidence::export::verify(&keyring, &bytes)?;
        println!(
            "the export verifies: {} record(s), {:?}..{:?}, seals {:?}",
            manifest.record_count, manifest.first_record, manifest.last_record, manifest.seals
        );
        return Ok(());
    }
    let pool = runtime::db::connect(settings).await?;
    match command {
        AuditCommand::Verify { jwks, from, to } => {
            let keyring = match jwks {
                Some(path) => Keyring::from_jwks(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("Failed to read {}", path.display()))?,
                )?,
                None => crate::workers::proof_keyring(settings)?,
            };
            let (seals, records) = verify_period(&pool, &keyring, (from, to)).await?;
            println!("the audit trail verifies: {seals} seal(s) over {records} record(s)");
        }
        AuditCommand::Trace { target } => {
            for line in trace(&pool, &target).await? {
                println!("{line}");
            }
        }
        AuditCommand::Export { from, to, sender } => {
            let signer = crate::workers::proof_signer(settings)?;
            let mut out = std::io::stdout().lock();
            export(
                &pool,
                &signer,
                &settings.provider_id,
                (from, to),
                sender,
                &mut out,
            )
            .await?;
        }
        AuditCommand::Purge => {
            let owner = runtime::db::connect_url(&settings.migration_database_url, 1).await?;
            let mut tx = owner.begin().await?;
            let (up_to, records) = seals::purge_expired(&mut tx).await?;
            tx.commit().await?;
            println!(
                "{records} record(s) past their retention purged; seals up to {up_to} keep the chain"
            );
        }
        AuditCommand::VerifyExport { .. } => unreachable!("handled before connecting"),
    }
    Ok(())
}

/// Writes the export of `period` to `out`: the records as JSON Lines, then the signed
/// manifest line.
pub async fn export(
    pool: &PgPool,
    signer: &Signer,
    provider_id: &str,
    period: (chrono::DateTime<Utc>, chrono::DateTime<Utc>),
    sender: Option<String>,
    out: &mut impl std::io::Write,
) -> anyhow::Result<evidence::export::Manifest> {
    let mut conn = pool.acquire().await?;
    let rows = seals::export(&mut conn, period.0, period.1, sender.as_deref()).await?;
    let mut digest = evidence::export::Digest::default();
    let mut covering = std::collections::BTreeSet::new();
    for row in &rows {
        let line = serde_json::json!({
            "seq": row.id,
            "at": row.at,
            "retainUntil": row.retain_until,
            "stage": row.stage,
            "action": row.action,
            "code": row.code,
            "sender": row.sender_id,
            "messageId": row.message_id,
            "senderReference": row.sender_reference,
            "citizen": row.ssin_hash,
            "details": row.details,
            "seal": row.seal,
        })
        .to_string()
            + "\n";
        digest.update(line.as_bytes());
        out.write_all(line.as_bytes())?;
        covering.extend(row.seal);
    }
    let manifest = evidence::export::Manifest {
        iss: provider_id.to_owned(),
        exported_at: Utc::now(),
        from: period.0,
        to: period.1,
        sender,
        record_count: rows.len(),
        first_record: rows.first().map(|r| r.id),
        last_record: rows.last().map(|r| r.id),
        seals: covering.into_iter().collect(),
        sha256: digest.hex(),
    };
    writeln!(out, "{}", manifest.line(signer)?)?;
    Ok(manifest)
}
