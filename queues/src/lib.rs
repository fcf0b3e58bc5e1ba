//! Everything that touches the broker.
//!
//! - [`topology`]: exchange and queue names (the sender contract's among them) and their
//!   declaration;
//! - [`publisher`]: the confirmed publisher (mandatory publishes, confirms awaited);
//! - [`status`]: status events to senders;
//! - [`driver`]: the one consumer driver that runs every stage's [`driver::Handler`].

pub mod driver;
pub mod publisher;
pub mod status;
pub mod topology;

pub use driver::{
    Decode, DriverSettings, Handler, HandlerError, Incoming, InternalMessage, Outcome, Raw,
    ResultExt,
};
pub use publisher::{Outgoing, Publisher};
