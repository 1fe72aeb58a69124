//! Lightning backends for turnpike, behind one trait.
//!
//! The L402 and MPP rails need two things from a Lightning node: an invoice for an amount, and later
//! whether that invoice was paid. [`LightningBackend`] is exactly that; each module implements
//! it for one node API:
//!
//! | module | node | authentication |
//! |---|---|---|
//! | [`lnd`] | LND REST (`/v1/invoices`, `/v1/invoice/{r_hash}`) | `Grpc-Metadata-macaroon: <hex>` |
//! | [`cln`] | Core Lightning `clnrest` (`/v1/invoice`, `/v1/listinvoices`) | `Rune: <rune>` |
//! | [`phoenixd`] | phoenixd (`/createinvoice`, `/payments/incoming/{hash}`) | HTTP basic, password only |
//! | [`lnbits`] | LNbits (`/api/v1/payments`) | `X-Api-Key: <invoice key>` |
//! | [`nwc`] | Nostr Wallet Connect (NIP-47) wallet service, over one relay WebSocket (`make_invoice`, `lookup_invoice`) | the connection URI's secret key (BIP-340 signed, NIP-04 encrypted events) |
//! | [`dev`] | none: a local key signs real BOLT11 invoices | — **never for production** |
//!
//! Every backend fails closed: an unreachable node, a timeout, an error status or a response
//! that does not parse is a [`LightningError`], never a guess. Lookups are retried a bounded
//! number of times on transport errors; invoice creation is never retried (it is not
//! idempotent).
//!
//! [`connect`] builds a backend from a [`BackendConfig`] (the gateway's TOML).

pub mod bolt11;
pub mod cln;
pub mod config;
pub mod dev;
mod http;
pub mod invoice_limit;
pub mod lnbits;
pub mod lnd;
pub mod node;
pub mod nwc;
pub mod phoenixd;
pub mod wallet;

use std::sync::Arc;

pub use config::{BackendConfig, HttpSettings, NwcConfig, Secret};
pub(crate) use turnpike_core::unix_now;
pub use turnpike_core::BoxFuture;
pub use wallet::{connect_wallet, decode_for_payment, Paid, Wallet, WalletError};

/// An invoice a backend created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// The BOLT11 payment request.
    pub bolt11: String,
    /// SHA-256 of the preimage that paying the invoice reveals.
    pub payment_hash: [u8; 32],
    /// The amount the invoice asks for (backends that work in whole satoshis round up).
    pub amount_msat: u64,
    /// Unix time after which the invoice cannot be paid.
    pub expires_at: u64,
}

/// The state of an invoice, as its backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceState {
    /// Not paid yet, and still payable.
    Open,
    /// Paid. The preimage, when the backend reports it.
    Settled {
        /// The payment preimage.
        preimage: Option<[u8; 32]>,
    },
    /// Expired or cancelled without payment.
    Expired,
}

/// Why a backend call failed. Every variant means "do not grant anything".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightningError {
    /// The backend's configuration is unusable (bad URL, missing credential, unreadable file).
    #[error("lightning backend misconfigured: {0}")]
    Config(String),
    /// The backend could not be reached (connection refused, TLS failure, reset).
    #[error("lightning backend unreachable: {0}")]
    Unreachable(String),
    /// The backend did not answer in time.
    #[error("lightning backend timed out")]
    Timeout,
    /// The backend answered with an error.
    #[error("lightning backend refused ({status}): {message}")]
    Rejected {
        /// The HTTP status (for NWC, the nearest HTTP status to its error code).
        status: u16,
        /// The backend's message.
        message: String,
    },
    /// The backend does not know the invoice.
    #[error("invoice not found at the lightning backend")]
    NotFound,
    /// The backend's answer could not be understood or contradicts itself.
    #[error("unexpected answer from the lightning backend: {0}")]
    Protocol(String),
}

/// A Lightning node that can create invoices and report whether they were paid.
pub trait LightningBackend: Send + Sync {
    /// A short name for logs and metrics (`lnd`, `cln`, `phoenixd`, `lnbits`, `dev`).
    fn name(&self) -> &'static str;

    /// Whether someone other than the operator's own node holds the preimages (an account on a
    /// shared service). A preimage then does not prove payment on its own, and the L402 rail
    /// confirms settlement with the backend once per token.
    fn is_custodial(&self) -> bool;

    /// Creates an invoice for `amount_msat` with description `memo`, payable for `expiry_secs`.
    fn create_invoice<'a>(
        &'a self,
        amount_msat: u64,
        memo: &'a str,
        expiry_secs: u64,
    ) -> BoxFuture<'a, Result<Invoice, LightningError>>;

    /// Reports the state of the invoice with this payment hash.
    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>>;
}

/// Builds the backend a configuration names.
pub fn connect(cfg: &BackendConfig) -> Result<Arc<dyn LightningBackend>, LightningError> {
    Ok(match cfg {
        BackendConfig::Lnd(c) => Arc::new(lnd::LndBackend::new(c)?),
        BackendConfig::Cln(c) => Arc::new(cln::ClnBackend::new(c)?),
        BackendConfig::Phoenixd(c) => Arc::new(phoenixd::PhoenixdBackend::new(c)?),
        BackendConfig::Lnbits(c) => Arc::new(lnbits::LnbitsBackend::new(c)?),
        BackendConfig::Dev(c) => Arc::new(dev::DevBackend::new(c)?),
        BackendConfig::Nwc(c) => Arc::new(nwc::NwcBackend::new(c)?),
    })
}

/// Checks a backend's answer against the payment request it returned: the request must decode
/// with a valid signature and carry the payment hash the backend reported. Returns the invoice
/// with amount and expiry taken from the request itself.
pub(crate) fn checked_invoice(
    bolt11: String,
    reported_hash: [u8; 32],
    requested_msat: u64,
) -> Result<Invoice, LightningError> {
    let d = bolt11::decode(&bolt11)
        .map_err(|e| LightningError::Protocol(format!("payment request does not decode: {e}")))?;
    if d.payment_hash != reported_hash {
        return Err(LightningError::Protocol(
            "payment request and reported payment hash differ".into(),
        ));
    }
    let amount_msat = d
        .amount_msat
        .ok_or_else(|| LightningError::Protocol("payment request has no amount".into()))?;
    if amount_msat < requested_msat {
        return Err(LightningError::Protocol(format!(
            "payment request asks for {amount_msat} msat, less than the {requested_msat} requested"
        )));
    }
    Ok(Invoice {
        bolt11,
        payment_hash: d.payment_hash,
        amount_msat,
        expires_at: d.expires_at(),
    })
}

/// Parses a 32-byte value written as hex.
pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

/// Parses a 32-byte value written as base64 (standard or URL-safe, padded or not).
pub(crate) fn b64_32(s: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let s = s.trim().trim_end_matches('=');
    let v = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
        .ok()?;
    v.try_into().ok()
}

/// Rounds msat up to whole satoshis, for backends that take amounts in sat.
pub(crate) fn msat_to_sat_ceil(msat: u64) -> u64 {
    msat.div_ceil(1000)
}
