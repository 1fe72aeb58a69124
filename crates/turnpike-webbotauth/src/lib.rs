//! Web Bot Auth verification: agents that sign their HTTP requests with RFC 9421 HTTP Message
//! Signatures (Ed25519), tagged `web-bot-auth`, naming their key directory in
//! `Signature-Agent` (draft-meunier-web-bot-auth-architecture,
//! draft-meunier-http-message-signatures-directory).
//!
//! - [`sf`]: the RFC 8941 structured fields the signature fields are written in.
//! - [`base`]: the RFC 9421 signature base of a request.
//! - [`directory`]: key directories (JWK sets) and RFC 7638 thumbprints.
//! - [`verifier`]: the profile's checks and the Ed25519 verification.
//! - [`sign`]: the agent's side: signing a request, and the directory entry of its key.
//!
//! With feature `rail` (on by default), the gateway's `agent` rail:
//!
//! - [`rail`]: the rail (credentials, the view bound to one request, challenges).
//! - [`fetch`]: the allowed key directories, fetched, bounded, cached and refreshed.
//! - [`conf`]: `[agent]` and `agent = …` in a price ([`conf::AgentConf`]).
//!
//! See docs/WEB-BOT-AUTH.md.
//!
//! One verification with the directory cached (`@authority` and `signature-agent` covered,
//! with a nonce) took 52.8 µs on the 2-core build machine, of which ring's Ed25519 check alone
//! is 48.1 µs (ed25519-dalek: 38.2 µs); in a second run under heavier load from other builds,
//! 74.5 µs against 70.6 µs for ring alone. Everything but the Ed25519 check costs about 4–5 µs.
//! Measured with
//! `cargo bench -p turnpike-webbotauth --bench verify -- --warm-up-time 2 --measurement-time 5`.

pub mod base;
#[cfg(feature = "rail")]
pub mod conf;
pub mod directory;
#[cfg(feature = "rail")]
pub mod fetch;
#[cfg(feature = "rail")]
pub mod rail;
pub mod sf;
pub mod sign;
pub mod verifier;

#[cfg(feature = "rail")]
pub use rail::RAIL;
pub use sign::{KeyError, SignedFields, Signer};

pub use base::{signature_base, BaseError, RequestParts};
pub use directory::{ed25519_thumbprint, DirectoryError, DirectoryKey, KeyDirectory};
pub use verifier::{
    claim, Clock, MemoryNonces, NonceGuard, NonceRefused, Policy, Refusal, SignatureClaim,
    SystemClock, VerifiedAgent, Verifier, TAG,
};
