//! The `ebox` command: administration (`migrate`, `registry load`), the workers
//! (`worker <name>`, `run`) and the sender-side `demo`.
//!
//! - [`cli`]: the subcommands;
//! - [`audit`]: the audit sealer and `ebox audit verify|trace`;
//! - [`admin`]: applying reference data to the database and the broker;
//! - [`bench`]: the throughput benchmark (pipeline against a bare chain of queues);
//! - [`workers`]: which stages exist and how a process runs them;
//! - [`notifications`]: notifications held up by an outage, sent now or queued again;
//! - [`events`]: the federation's events outbox — status, parked events, retries;
//! - [`proof`]: proof keys and offline verification of proofs;
//! - [`dlq`]: what the stages set aside, listed, shown, replayed or purged;
//! - [`demo`]: a sender publishing v1 and v2 messages and reading its status queue;
//! - [`smtp_sink`]: a development SMTP server (the demo's relay, the tests' SMTP peer);
//! - [`token`]: development tokens for the API (the demo's and the tests');
//! - [`watch`]: the stuck-message check.

pub mod admin;
pub mod audit;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod demo;
pub mod dlq;
pub mod events;
pub mod notifications;
pub mod proof;
pub mod smtp_sink;
pub mod token;
pub mod watch;
pub mod workers;
