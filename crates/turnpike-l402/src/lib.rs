//! The L402 rail of turnpike: callers pay a Lightning invoice and present the macaroon they
//! were given with the invoice's preimage.
//!
//! - [`macaroon`]: macaroons in the libmacaroons V2 binary format (byte-compatible with
//!   go-macaroon and pymacaroons), the HMAC-SHA256 signature chain, strict bounded decoding;
//! - [`identifier`]: the 66-byte L402 identifier (version, payment hash, token id);
//! - [`caveat`]: the caveats turnpike mints (`turnpike/tools=…`, `turnpike/expires=…`, …) and
//!   their narrowing-only evaluation;
//! - [`credential`]: parsers for `Authorization: L402 …`, the `Macaroon` header and
//!   `params._meta["turnpike/l402"]`, producing an [`L402Credential`];
//! - [`store`], [`sqlite`] and `postgres` (feature `postgres`): root keys, issued tokens,
//!   balances and the ledger, in memory, in SQLite, or in PostgreSQL shared by instances;
//! - [`rail`]: [`L402Rail`], the [`turnpike_core::Rail`] implementation with the three billing
//!   modes;
//! - [`meter`]: what it counts for the gateway's metrics (`turnpike_l402_*`: invoices,
//!   payments, money charged).
//!
//! Lightning itself (invoices, settlement) is `turnpike_lightning`'s job.

pub mod caveat;
pub mod conf;
pub mod credential;
pub mod identifier;
pub use turnpike_lightning::invoice_limit;
pub mod macaroon;
pub mod meter;
pub mod offer;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rail;
pub mod sqlite;
pub mod store;

pub use credential::{
    parse_authorization, parse_macaroon_header, parse_meta, L402Credential, MACAROON_HEADER,
    META_L402,
};
pub use identifier::Identifier;
pub use macaroon::{Limits, Macaroon, MacaroonError};
pub use offer::{offer, terms, BillingMode, L402Terms, RAIL};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use rail::{
    check_token, decode_token, derive_root_key, minted_record, BuildError, ConfirmSettlement,
    L402Config, L402Credentials, L402Rail, L402Settings, StoreConfig,
};
pub use sqlite::{Durability, SqliteStore};
pub use store::{L402Store, MemoryStore};
