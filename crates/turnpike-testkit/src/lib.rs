//! Test support shared by turnpike's crates.

// Every caller is a test: a failed unwrap or expect here is that test's failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod postgres;
pub mod redis;
