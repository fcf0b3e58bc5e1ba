//! Everything that touches the broker.
//!
//! - [`topology`]: exchange and queue names (the sender contract's among them) and their
//!   declaration (each queue's type, once);
//! - [`publisher`]: the confirmed publisher (mandatory publishes, confirms awaited), each
//!   publish a span whose `traceparent` the message carries;
//! - [`propagation`]: W3C trace context in AMQP headers;
//! - [`status`]: status events to senders;
//! - [`parked`]: messages the broker would not take, parked in PostgreSQL and published again
//!   by a background job;
//! - [`handoff`]: what travels between the stages after intake, checked against the record;
//! - [`driver`]: the one consumer driver that runs every stage's [`driver::Handler`];
//! - [`lanes`]: the queues a stage consumes, taken in turn, and the waits of senders over
//!   their limits;
//! - [`give_up`]: what happens when a stage gives up on a delivery (a final status, an audit
//!   record, the dead-letter queue).
//! - [`permissions`]: one broker user per component, with only the rights it needs;
//! - [`policies`]: the broker policies (dead-lettering, delivery limit, lengths and ages), the
//!   knobs that may change on a live broker;
//! - [`tls`]: whom an `amqps://` connection trusts and which client certificate it presents.

pub mod driver;
pub mod give_up;
pub mod handoff;
pub mod lanes;
pub mod parked;
pub mod permissions;
pub mod policies;
pub mod propagation;
pub mod publisher;
pub mod status;
pub mod tls;
pub mod topology;

pub use driver::{
    Decode, DriverSettings, Handler, HandlerError, Incoming, InternalMessage, Outcome, Raw,
    ResultExt,
};
pub use lanes::{LaneSpec, LaneWait};
pub use publisher::{Outgoing, Publisher};
