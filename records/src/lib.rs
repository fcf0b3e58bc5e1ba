//! Every SQL statement on the pipeline's shared records, so that workers, the API and the CLI
//! write them one way:
//!
//! - [`messages`]: accepted messages and the status their sender last heard;
//! - [`documents`]: the documents, written once by intake and published by store;
//! - [`decisions`]: what each stage decided, replayed on redelivery;
//! - [`events`]: the federation's events outbox — recorded with their cause, numbered in
//!   commit order, served as a feed and pushed by the event relay;
//! - [`citizens`]: consent (with its history) and notification preferences;
//! - [`registry`]: the operator's registry file applied, and the stages' look-ups;
//! - [`sender_limits`]: the senders' lanes, and what each limited sender used;
//! - [`audit`]: the audit writer;
//! - [`seals`]: the audit seals and the canonical lines they cover;
//! - [`withdrawals`]: a sender's withdrawal of a message — its document removed, its
//!   notifications cancelled, a tombstone kept.
//!
//! Text columns that hold a vocabulary are read back through [`vocabulary::decode`]: an
//! unknown spelling is an error, never a default.

pub mod audit;
pub mod citizens;
pub mod decisions;
pub mod documents;
pub mod events;
pub mod messages;
pub mod registry;
pub mod seals;
pub mod sender_limits;
pub mod vocabulary;
pub mod withdrawals;
