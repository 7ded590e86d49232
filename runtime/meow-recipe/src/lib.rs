//! Automation recipes: YAML files that tie events to actions, Home Assistant style.
//!
//! ```yaml
//! version: 1
//! name: sensor-alert
//! mode: queued                 # single | queued | parallel | restart
//! triggers:
//!   - message: { from: sensor }
//! conditions:
//!   - "trigger.json.t > 30"
//! actions:
//!   - send: { to: owner, text: "Temperature {{ trigger.json.t }} °C" }
//!   - delay: 10m
//! ```
//!
//! [`Recipe::load`] parses a file into a checked [`Recipe`] (parse, don't validate): unknown keys,
//! bad durations, templates that use variables their triggers do not provide, unknown contacts and
//! plugins are errors naming `file:line:column: path.of.key`. The runtime then matches events
//! ([`Recipe::matches`]), evaluates conditions and renders actions; executing them is the
//! runtime's job. Nothing here does I/O, which is what makes dry runs exact.

#![forbid(unsafe_code)]

pub mod commands;
mod dryrun;
mod model;
mod recipe;
mod templates;

pub use dryrun::{DryRun, device_event, dry_run, message_event, mqtt_event, sample_event};
pub use model::{Admission, Level, Mode};
pub use recipe::{
    CheckContext, Recipe, RecipeError, Rendered, Schedule, TriggerEvent, TriggerKind, check_filter, topic_matches,
};
pub use templates::now_context;
