//! The MEOW runtime as a library: a home with its embedded server, plugin instances (WASM, Lua
//! or native Rust handlers), recipes, limits, an event bus and a typed control API.
//!
//! ```no_run
//! # async fn run(home: &std::path::Path) -> Result<(), meow_runtime::RuntimeError> {
//! use meow_runtime::{Runtime, RunConfig, control::Request};
//!
//! let node = meow_node::Node::open(home, b"password")?;
//! let runtime = Runtime::builder(home, node, RunConfig::default()).start().await?;
//! let events = runtime.subscribe();
//! let contacts = runtime.request(Request::Contacts).await;
//! # drop((events, contacts));
//! runtime.run_until_stopped().await
//! # }
//! ```
//!
//! The `meow` binary is a thin shell over this crate: it parses arguments, turns them into
//! [`control::Request`]s, sends them to a running daemon or runs them on the home, and formats
//! the [`control::Response`].

#![forbid(unsafe_code)]

pub mod config;
pub mod control;
mod core;
mod direct;
mod error;
pub mod files;
pub mod home;
pub mod http;
pub mod log;
pub mod mqtt;
pub mod native;
pub mod recipes;
mod services;
mod supervisor;
pub mod views;

pub use crate::config::RunConfig;
pub use crate::core::{
    Core, EngineFactory, Engines, Runtime, RuntimeBuilder, RuntimeEvent, handle_direct, plugin_event,
};
pub use crate::error::{Result, RuntimeError};
pub use crate::supervisor::Status;
