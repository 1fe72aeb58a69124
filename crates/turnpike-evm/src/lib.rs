//! EIP-3009 payments on an EVM chain, shared by the rails that take them (x402's `exact`
//! scheme, MPP's `evm` charge method), so that neither rail imports the other.
//!
//! - [`evm`]: Keccak-256, addresses, the EIP-712 hash of a `TransferWithAuthorization`,
//!   secp256k1 signing and signer recovery, the token calls and a signed EIP-155 transaction
//!   (pure functions);
//! - [`chain`]: the node's JSON-RPC and a facilitator's `/settle`, bounded and timed;
//! - [`token`]: [`token::Token`], what every EIP-3009 payment shares whichever protocol carries
//!   it: the chain, the token and its domain, who is paid, the bounds on payments checked and
//!   their answers, the signer's recovery, the chain's state, the settlement;
//! - [`spend`]: the spend log, every settlement attempted (`<data_dir>/x402-payments.jsonl`);
//! - [`conf`]: the gateway's `[x402]` table read from the sections, and the one shared
//!   [`token::Token`] of a build.
//!
//! The `[x402]` table keeps its name: it is the x402 rail's settings, and the token of MPP's
//! `evm` method (docs/X402.md, docs/MPP.md §10).

pub mod chain;
pub mod conf;
pub mod evm;
pub mod spend;
pub mod token;

/// The x402 protocol version a facilitator is spoken to in (and x402 payments are made in).
pub const X402_VERSION: u64 = 2;
/// x402's scheme of an EIP-3009 payment: `exact`.
pub const EXACT: &str = "exact";
