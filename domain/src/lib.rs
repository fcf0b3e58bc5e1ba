//! The eBox pipeline's vocabulary, as pure types: no database, broker or HTTP here.
//!
//! - Identifiers parsed once at the edge: [`ssin::Ssin`] (masked in logs), [`cbe::CbeNumber`],
//!   [`ids`] (sender id, sender reference, eBox message id), [`citizen::CitizenKey`] (the
//!   keyed hash that stands for a citizen).
//! - Values: [`translated::TranslatedString`], [`digest::Sha256Digest`].
//! - The sender contract's outcomes: [`status`] (statuses and stable codes); the federation's
//!   events: [`events`]; a message as intake accepted it: [`publication::Publication`]; what
//!   travels between the later stages: [`handoff::Handoff`].
//! - Decisions and evidence: [`decision`] (what each stage decided), [`audit`] (stages and
//!   actions of the audit trail), [`citizen`] (consent and notification channels).
//! - Reference data as the operator writes it: [`registry`].
//!
//! Every closed set of strings is a [`vocabulary::Vocabulary`]: one spelling per value, for
//! the wire, the database and the metrics alike.

pub mod audit;
pub mod cbe;
pub mod citizen;
pub mod decision;
pub mod digest;
pub mod events;
pub mod handoff;
pub mod ids;
pub mod publication;
pub mod registry;
pub mod ssin;
pub mod status;
pub mod translated;
pub mod vocabulary;

pub use vocabulary::Vocabulary;
