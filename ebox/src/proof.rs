//! `ebox proof`: the platform's proof keys and offline verification of a proof.
//!
//! - `keygen`: a new Ed25519 signing key (PKCS#8 PEM) for development and tests;
//! - `jwks [--key PEM...]`: the public keys as a JWKS — of these signing keys, or the
//!   service's (what the API serves at `/.well-known/jwks.json`);
//! - `verify FILE|- --jwks FILE`: checks a proof (a JWS compact serialization) against a JWKS
//!   and prints its claims; exits non-zero when it does not verify.

use anyhow::Context;
use evidence::keys::{Keyring, Signer, generate_pem};
use std::io::Read as _;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum ProofCommand {
    /// Print a new Ed25519 signing key (PKCS#8 PEM), or write it to --out (mode 0600).
    Keygen {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the public keys as a JWKS: of these signing keys, or (without --key) the
    /// service's, from EBOX_PROOF_SIGNING_KEY_FILE and EBOX_PROOF_PREVIOUS_KEYS_FILE.
    Jwks {
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
    },
    /// Verify a proof (FILE, or - for standard input) against a JWKS; print its claims.
    Verify {
        proof: String,
        #[arg(long)]
        jwks: PathBuf,
    },
}

pub fn run(command: ProofCommand) -> anyhow::Result<()> {
    match command {
        ProofCommand::Keygen { out } => keygen(out),
        ProofCommand::Jwks { keys } => {
            let ring = if keys.is_empty() {
                service_keys()?
            } else {
                let mut ring = Keyring::default();
                for key in keys {
                    ring.add(Signer::from_pem_file(&key)?.verifying_key());
                }
                ring
            };
            println!("{}", serde_json::to_string_pretty(&ring.jwks())?);
            Ok(())
        }
        ProofCommand::Verify { proof, jwks } => {
            let claims = verify(&proof, &jwks)?;
            println!("{}", serde_json::to_string_pretty(&claims)?);
            Ok(())
        }
    }
}

/// The service's keys, as the API serves them: the previous keys, then the signing key's.
fn service_keys() -> anyhow::Result<Keyring> {
    let mut ring = match std::env::var_os("EBOX_PROOF_PREVIOUS_KEYS_FILE") {
        Some(path) => Keyring::from_jwks(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("Failed to read {}", path.to_string_lossy()))?,
        )?,
        None => Keyring::default(),
    };
    let signing = std::env::var_os("EBOX_PROOF_SIGNING_KEY_FILE")
        .context("give --key PEM, or set EBOX_PROOF_SIGNING_KEY_FILE")?;
    ring.add(Signer::from_pem_file(std::path::Path::new(&signing))?.verifying_key());
    Ok(ring)
}

fn keygen(out: Option<PathBuf>) -> anyhow::Result<()> {
    let pem = generate_pem()?;
    let Some(path) = out else {
        print!("{pem}");
        return Ok(());
    };
    write_private(&path, &pem)
        .with_context(|| format!("Failed to write the key to {}", path.display()))?;
    eprintln!("signing key written to {}", path.display());
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(pem.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, pem: &str) -> std::io::Result<()> {
    std::fs::write(path, pem)
}

/// Verifies the proof in `source` (a file, or `-`) against the JWKS file.
pub fn verify(
    source: &str,
    jwks: &std::path::Path,
) -> anyhow::Result<evidence::proof::ProofClaims> {
    let token = if source == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("Failed to read {source}"))?
    };
    let json = std::fs::read_to_string(jwks)
        .with_context(|| format!("Failed to read the JWKS {}", jwks.display()))?;
    let ring = Keyring::from_jwks(&json)?;
    Ok(evidence::proof::verify(&ring, token.trim())?)
}
