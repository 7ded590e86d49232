//! meow-recipe
