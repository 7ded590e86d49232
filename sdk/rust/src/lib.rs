//! Write meow bot plugins in Rust.
//!
//! A plugin is a type implementing [`Bot`] (every handler has a do-nothing default), exported with
//! [`export_bot!`], compiled to `wasm32-wasip2`:
//!
//! ```ignore
//! use meow_sdk::{Bot, Message, export_bot, messaging};
//!
//! struct Echo;
//!
//! impl Bot for Echo {
//!     fn on_message(msg: Message) -> Result<(), String> {
//!         if let Some(text) = &msg.text {
//!             messaging::reply(&msg.id, &format!("echo: {text}")).map_err(|e| e.to_string())?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_bot!(Echo);
//! ```
//!
//! The host functions are in [`messaging`], [`kv`], [`timers`], [`log`], [`node`], [`files`],
//! [`http`], [`mqtt`] and the others; each needs its capability granted in `meow.yaml` (logging
//! and node info are always allowed).

// The generated code names this crate by its public path, also from inside it.
extern crate self as meow_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The generated bindings of the `meow:bot` WIT world.
pub mod bindings {
    wit_bindgen::generate!({
        // `bot` plus the `mqtt-handler` export (whose default does nothing): a plugin that
        // never subscribes pays nothing for it.
        world: "mqtt-bot",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_guest",
        default_bindings_module: "meow_sdk::bindings",
        runtime_path: "meow_sdk::__wit_bindgen::rt",
    });
}

pub mod commands;
mod config;

pub use bindings::meow::bot::types::{Broadcast, Error, Event, Level, Message, Timer};
pub use bindings::meow::bot::{broadcast, directory, files, groups, http, kv, messaging, mqtt, node, timers};
pub use commands::{Commands, Role};
pub use config::Config;

/// Logging helpers (always allowed).
pub mod log {
    use crate::Level;
    use crate::bindings::meow::bot::log::log;

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// A bot: override the handlers you need.
pub trait Bot {
    /// The instance starts; `config` holds its configuration (defaults filled in by the runtime).
    fn init(_config: Config) -> Result<(), String> {
        Ok(())
    }

    /// The runtime started, or this plugin was (re)loaded.
    fn on_startup() -> Result<(), String> {
        Ok(())
    }

    /// A message arrived.
    fn on_message(_message: Message) -> Result<(), String> {
        Ok(())
    }

    /// A timer fired.
    fn on_timer(_timer: Timer) -> Result<(), String> {
        Ok(())
    }

    /// A contact was added (`via_directory`: they found us in the directory).
    fn on_contact_added(_name: String, _via_directory: bool) -> Result<(), String> {
        Ok(())
    }

    /// An emergency broadcast arrived.
    fn on_broadcast(_broadcast: Broadcast) -> Result<(), String> {
        Ok(())
    }

    /// A message arrived on an MQTT topic the instance subscribed to ([`mqtt::subscribe`]).
    fn on_mqtt(_topic: String, _payload: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

/// Routes an event to the matching [`Bot`] handler (used by [`export_bot!`]).
#[doc(hidden)]
pub fn dispatch<B: Bot>(event: Event) -> Result<(), String> {
    match event {
        Event::Startup => B::on_startup(),
        Event::Message(m) => B::on_message(m),
        Event::Timer(t) => B::on_timer(t),
        Event::ContactAdded((name, via)) => B::on_contact_added(name, via),
        Event::Broadcast(b) => B::on_broadcast(b),
    }
}

/// Exports a [`Bot`] as the plugin's entry points.
#[macro_export]
macro_rules! export_bot {
    ($bot:ty) => {
        const _: () = {
            struct MeowGuest;
            impl $crate::bindings::Guest for MeowGuest {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    <$bot as $crate::Bot>::init($crate::Config::parse(&config))
                }
                fn handle(event: $crate::Event) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::dispatch::<$bot>(event)
                }
            }
            impl $crate::bindings::exports::meow::bot::mqtt_handler::Guest for MeowGuest {
                fn on_message(
                    topic: ::std::string::String,
                    payload: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$bot as $crate::Bot>::on_mqtt(topic, payload)
                }
            }
            $crate::bindings::export_guest!(MeowGuest);
        };
    };
}
