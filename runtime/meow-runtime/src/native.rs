//! Native handlers: Rust code of the program that embeds the runtime, run as a plugin instance
//! (its own thread, queue, watchdog and capabilities), with the same [`Host`] API as WASM and Lua
//! plugins.
//!
//! ```no_run
//! use meow_plugin::{Event, Host};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl meow_runtime::native::Handler for Echo {
//!     fn handle(&mut self, host: &Host, event: &Event) -> Result<(), String> {
//!         if let Event::Message(m) = event {
//!             host.reply(&m.id, &format!("echo: {}", m.text.as_deref().unwrap_or("")))
//!                 .map_err(|e| e.to_string())?;
//!         }
//!         Ok(())
//!     }
//! }
//! ```

use std::sync::Arc;

use meow_plugin::{Event, Failure, Host, Instance};

use crate::supervisor::NativeFactory;

/// Rust code that reacts to events.
pub trait Handler: Send + 'static {
    /// Called once when the instance starts, with its configuration (JSON).
    fn init(&mut self, host: &Host, config: &str) -> Result<(), String> {
        let _ = (host, config);
        Ok(())
    }

    /// Called for every event. An error is logged; the instance keeps running.
    fn handle(&mut self, host: &Host, event: &Event) -> Result<(), String>;
}

struct NativeInstance<H> {
    host: Host,
    handler: H,
}

impl<H: Handler> Instance for NativeInstance<H> {
    fn init(&mut self, config: &str) -> Result<(), Failure> {
        self.handler.init(&self.host, config).map_err(Failure::Error)
    }

    fn handle(&mut self, event: &Event) -> Result<(), Failure> {
        self.handler.handle(&self.host, event).map_err(Failure::Error)
    }
}

/// An instance factory for a handler made by `make`.
pub(crate) fn factory<H: Handler>(make: impl Fn() -> H + Send + Sync + 'static) -> NativeFactory {
    Arc::new(move |host| Box::new(NativeInstance { host, handler: make() }))
}
