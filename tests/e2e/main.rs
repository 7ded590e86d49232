//! End-to-end tests: real `meow` processes talking over 127.0.0.1.
//!
//! One test binary for every area (server, homes, plugins, recipes, groups), so the machine
//! links it once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bridges;
mod containment;
mod devices;
mod files;
mod guides;
mod home;
mod languages;
mod matriochka;
mod offgrid;
mod plugins;
mod recipes;
mod server;
mod social;
mod support;
