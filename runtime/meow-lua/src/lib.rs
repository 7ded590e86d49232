//! meow-lua
