//! Test support shared by turnpike's crates.

pub mod postgres;
pub mod redis;
