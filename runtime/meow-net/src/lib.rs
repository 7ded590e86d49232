//! meow-net
