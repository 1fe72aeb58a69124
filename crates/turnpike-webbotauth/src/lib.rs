//! Web Bot Auth verification: agents that sign their HTTP requests with RFC 9421 HTTP Message
//! Signatures (Ed25519), tagged `web-bot-auth`, naming their key directory in
//! `Signature-Agent` (draft-meunier-web-bot-auth-architecture,
//! draft-meunier-http-message-signatures-directory).
//!
//! - [`sf`]: the RFC 8941 structured fields the signature fields are written in.
//! - [`base`]: the RFC 9421 signature base of a request.
//! - [`directory`]: key directories (JWK sets) and RFC 7638 thumbprints.
//! - [`verifier`]: the profile's checks and the Ed25519 verification.
//!
//! The gateway does not use this crate yet; see docs/WEB-BOT-AUTH.md.
//!
//! One verification with the directory cached (a `Signature-Input` of two components, with
//! nonce) takes about BENCH_FIGURE on the build machine:
//! `cargo bench -p turnpike-webbotauth --bench verify`.

pub mod base;
pub mod directory;
pub mod sf;
pub mod verifier;

pub use base::{signature_base, BaseError, RequestParts};
pub use directory::{ed25519_thumbprint, DirectoryError, DirectoryKey, KeyDirectory};
pub use verifier::{
    Clock, MemoryNonces, NonceGuard, NonceRefused, Policy, Refusal, SystemClock, VerifiedAgent,
    Verifier, TAG,
};
