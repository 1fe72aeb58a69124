//! Paying x402 offers (version 2, the `exact` scheme on an EVM chain) and MPP's `evm` charges:
//! the payer's key, the assets the user allows, amounts in US dollars, and the choice of one
//! offered `PaymentRequirements`.
//!
//! An offer is paid only when its network and token are among the assets the user allowed
//! (each with its decimals; USD stablecoins, so one whole token is one dollar), and its amount,
//! in dollars, is within the per-call cap and the daily budget ([`crate::Policy`],
//! [`crate::Budgets`]). The payment is an EIP-3009 authorization signed here
//! ([`turnpike_x402::payer::pay`]); the server settles it.

use k256::ecdsa::SigningKey;
use std::path::Path;
use std::sync::Arc;

use turnpike_x402::evm::{self, Address};
use turnpike_x402::rail::{chain_id_of, parse_key};
use turnpike_x402::PaymentRequirements;

use crate::ClientError;

/// Micro-dollars in one dollar.
pub const MICRO_USD: u64 = 1_000_000;

/// A token the user allows paying with: its chain and contract, and its decimals (USD
/// stablecoins: one whole token is one dollar), and its EIP-712 domain's name and version when
/// known (an x402 offer carries them; an MPP `evm` challenge does not, so that method pays only
/// in a token whose domain the user gave).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X402Asset {
    /// The chain id (`eip155:<id>`).
    pub chain_id: u64,
    /// The token contract.
    pub asset: Address,
    /// Its decimals (6 for USDC).
    pub decimals: u32,
    /// Its EIP-712 domain's `name` and `version` (`USD Coin`, `2` for USDC on Base).
    pub domain: Option<(String, String)>,
}

impl X402Asset {
    /// `network` (`eip155:<id>` or the bare chain id), `asset` (`0x` and 40 hex digits) and
    /// `decimals` (at most 36).
    pub fn parse(network: &str, asset: &str, decimals: u32) -> Result<Self, String> {
        let n = network.trim();
        let chain_id = chain_id_of(n)
            .or_else(|| chain_id_of(&format!("eip155:{n}")))
            .ok_or_else(|| format!("network {n:?} is not eip155:<chain id> or a chain id"))?;
        let asset = evm::parse_address(asset.trim())
            .ok_or_else(|| format!("asset {asset:?} is not 0x and 40 hex digits"))?;
        if decimals > 36 {
            return Err(format!("decimals {decimals}: at most 36"));
        }
        Ok(X402Asset {
            chain_id,
            asset,
            decimals,
            domain: None,
        })
    }

    /// The asset with its EIP-712 domain's `name` and `version` (what MPP's `evm` method signs
    /// under; the challenge does not carry them).
    pub fn with_domain(mut self, name: &str, version: &str) -> Self {
        self.domain = Some((name.to_string(), version.to_string()));
        self
    }

    /// `eip155:<id>`.
    pub fn network(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }

    /// `atomic` units of this token in micro-dollars, rounded up (never under-counted).
    pub fn micro_usd(&self, atomic: u128) -> u64 {
        let v = if self.decimals >= 6 {
            let div = 10u128.pow(self.decimals - 6);
            atomic / div + u128::from(atomic % div != 0)
        } else {
            atomic.saturating_mul(10u128.pow(6 - self.decimals))
        };
        u64::try_from(v).unwrap_or(u64::MAX)
    }
}

/// The payer: the EVM key that signs authorizations, and the assets it may pay with.
#[derive(Clone)]
pub struct X402Payer {
    /// The secp256k1 key (never logged).
    pub key: Arc<SigningKey>,
    /// Its address.
    pub address: Address,
    /// The tokens it may pay with.
    pub assets: Vec<X402Asset>,
}

impl std::fmt::Debug for X402Payer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Payer")
            .field("address", &evm::checksum(&self.address))
            .field("assets", &self.assets)
            .finish()
    }
}

impl X402Payer {
    /// A payer from a hex key (64 hex digits, `0x` allowed).
    pub fn from_hex(key: &str, assets: Vec<X402Asset>) -> Result<Self, ClientError> {
        let key = parse_key(key).ok_or_else(|| {
            ClientError::Config("the x402 key is not 64 hex digits of a secp256k1 key".into())
        })?;
        let address = evm::address_of(key.verifying_key());
        Ok(X402Payer {
            key: Arc::new(key),
            address,
            assets,
        })
    }

    /// A payer whose key is in `path` (hex). The file must be readable by its owner alone.
    pub fn from_file(path: &Path, assets: Vec<X402Asset>) -> Result<Self, ClientError> {
        let bad = |e: String| ClientError::Config(format!("x402 key {}: {e}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| bad(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "readable by other users (mode {:o}); chmod 600 it",
                    mode & 0o777
                )));
            }
        }
        let text =
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        Self::from_hex(&text, assets).map_err(|_| bad("not 64 hex digits of a key".into()))
    }

    /// The allowed asset on chain `chain_id` at `asset`, when there is one.
    pub fn allowed(&self, chain_id: u64, asset: &Address) -> Option<&X402Asset> {
        self.assets
            .iter()
            .find(|a| a.chain_id == chain_id && a.asset == *asset)
    }

    /// The allowed asset an offered `req` pays in, when there is one.
    pub fn asset_of(&self, req: &PaymentRequirements) -> Option<&X402Asset> {
        let chain = chain_id_of(&req.network)?;
        let asset = evm::parse_address(&req.asset)?;
        self.assets
            .iter()
            .find(|a| a.chain_id == chain && a.asset == asset)
    }
}

/// `m` micro-dollars as `$0.01`, `$1.234567`.
pub fn fmt_usd(m: u64) -> String {
    let whole = m / MICRO_USD;
    let frac = m % MICRO_USD;
    if frac == 0 {
        return format!("${whole}.00");
    }
    let mut f = format!("{frac:06}");
    while f.len() > 2 && f.ends_with('0') {
        f.pop();
    }
    format!("${whole}.{f}")
}

/// Dollars (a non-negative number from a flag or a file) in micro-dollars.
pub fn usd_to_micro(usd: f64) -> Option<u64> {
    (0.0..1e12)
        .contains(&usd)
        .then(|| (usd * MICRO_USD as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_from_atomic_units() {
        let usdc = X402Asset::parse("eip155:8453", &format!("0x{}", "11".repeat(20)), 6).unwrap();
        assert_eq!(usdc.micro_usd(10_000), 10_000);
        assert_eq!(fmt_usd(usdc.micro_usd(10_000)), "$0.01");
        let dai = X402Asset::parse("1", &format!("0x{}", "22".repeat(20)), 18).unwrap();
        assert_eq!(dai.network(), "eip155:1");
        // 1 wei is rounded up to a micro-dollar, never down to nothing.
        assert_eq!(dai.micro_usd(1), 1);
        assert_eq!(dai.micro_usd(2 * 10u128.pow(18)), 2 * MICRO_USD);
        let two = X402Asset::parse("eip155:1", &format!("0x{}", "33".repeat(20)), 2).unwrap();
        assert_eq!(two.micro_usd(150), 1_500_000);
        assert_eq!(fmt_usd(1_500_000), "$1.50");
        assert_eq!(fmt_usd(1_234_567), "$1.234567");
        assert_eq!(usd_to_micro(0.05), Some(50_000));
        assert_eq!(usd_to_micro(-1.0), None);
        assert!(X402Asset::parse("eip155:x", "0x00", 6).is_err());
        assert!(X402Asset::parse("8453", "0x1234", 6).is_err());
    }
}
