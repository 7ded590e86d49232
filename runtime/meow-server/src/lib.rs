//! meow-server
