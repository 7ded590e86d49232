//! meow-node
