//! Evidence a third party can check without our code: signed proofs of deposit and of
//! reading ([`proof`]) and signed, chained seals over the audit trail ([`seal`]), with the
//! platform's Ed25519 keys ([`keys`]) published as a JWKS.

pub mod export;
pub mod keys;
pub mod proof;
pub mod seal;
