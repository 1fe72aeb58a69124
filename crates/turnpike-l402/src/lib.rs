//! The L402 rail of turnpike.
