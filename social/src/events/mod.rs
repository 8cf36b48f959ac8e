//! Events between instances: the bus ([`bus`]: in-process by default, Kafka with the `kafka`
//! feature) and the outbox relay that feeds it durable events in order ([`relay`]).
//!
//! Owns: the wire form of what travels between instances. Calls: the messaging store's outbox
//! (relay). Pushing what arrives to sockets is [`crate::realtime`]'s job.

pub mod bus;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod relay;

pub use bus::{BusError, BusMessage, EventBus, InProcessBus};
