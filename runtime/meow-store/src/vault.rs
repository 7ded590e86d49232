//! vault (next)
