//! meow-store
