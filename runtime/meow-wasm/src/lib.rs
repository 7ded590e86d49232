//! meow-wasm
