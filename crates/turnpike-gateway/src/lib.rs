//! turnpike's HTTP gateway.

pub mod upstream;
