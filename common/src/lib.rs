//! What every part of the eBox pipeline shares.
//!
//! - Domain types, parsed once at the edge: [`ssin::Ssin`] (masked in logs),
//!   [`cbe::CbeNumber`], [`ids`] (sender id, sender reference, eBox message id),
//!   [`translated::TranslatedString`], [`digest::Sha256Digest`].
//! - The sender contract's outcomes: [`status`] (statuses and stable codes); the federation's
//!   events: [`events`].
//! - The internal message between stages: [`publication::Publication`]; the record of
//!   accepted messages and their status: [`messages`]; what each stage decided:
//!   [`decisions`].
//! - Reference data: [`registry`] (senders, applications, message types, partners) and
//!   [`citizens`] (consent with its history, notification preferences).
//! - Infrastructure: [`config`] (`EBOX_*` settings), [`telemetry`] (logs), [`metrics`]
//!   (Prometheus and health probes), [`db`] (pool and migrations), [`audit`] (the audit trail).

pub mod audit;
pub mod cbe;
pub mod citizens;
pub mod config;
pub mod db;
pub mod decisions;
pub mod digest;
pub mod events;
pub mod ids;
pub mod messages;
pub mod metrics;
pub mod publication;
pub mod registry;
pub mod ssin;
pub mod status;
pub mod telemetry;
pub mod translated;
