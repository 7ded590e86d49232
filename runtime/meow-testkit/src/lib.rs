//! Test doubles and a simulated world, shared by the tests of every crate (and the plugin
//! benchmark):
//!
//! - [`services`]: the plugin host services as fakes: [`NullServices`] (does nothing) and
//!   [`RecordingServices`] (remembers what a plugin asked for).
//! - [`sim`]: [`SimServer`], the server's sans-IO rules driven on a virtual clock, one request
//!   at a time, stepping until quiet (quinn-proto's `Pair::drive` is the model); and [`World`], a
//!   virtual clock, a seeded generator and an in-process network on which real servers and homes
//!   run without sockets.
//! - [`radio`]: simulated RNode and Meshtastic devices on a shared [`radio::Air`], and a
//!   null-modem cable of two pseudo-terminals that a test can cut.
//!
//! Nothing here sleeps (but the pseudo-terminal helpers, which serve real processes): time
//! moves when a test moves the clock.

#![forbid(unsafe_code)]
// A test kit fails the test that uses it, loudly, when its world cannot be built.
#![allow(clippy::panic)]

pub mod mixsim;
pub mod radio;
pub mod services;
pub mod sim;

pub use services::{NullServices, RecordingServices};
pub use sim::{SimServer, World};
