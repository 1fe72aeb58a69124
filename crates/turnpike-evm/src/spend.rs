//! The spend log: one line for every EIP-3009 settlement the gateway attempts, and what came of
//! it — x402's payments and MPP's `evm` ones alike (one log per [`crate::token::Token`]).
//!
//! Each line is a [`PaymentRecord`] as JSON: when, the outcome (`settled`; `refused`: the
//! transfer reverted or would, or the facilitator refused it, nothing moved; `failed`: the node
//! or facilitator could not be reached before anything was sent; `unknown`: sent but not
//! confirmed in time, the money may have moved), the rail and its payment method that took it
//! (`x402` `exact`, or `mpp` `evm`), the transaction (settled only), the payer,
//! the amount in atomic units, the asset, the network, who was paid, the method and tool of
//! the call, and the reason of a failure. The file is `<data_dir>/x402-payments.jsonl`,
//! created 0600 and appended to (one `write` per line, by a blocking task off the async
//! workers); the newest [`RECENT`] are also kept in memory for the admin summary
//! (the x402 rail's meter, `turnpike_x402::rail::X402Meter`). A settlement is written whether
//! or not its line reaches the disk: a write that fails is logged (warn), never blocks the call.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

/// The spend log's file under the data directory.
pub const FILE: &str = "x402-payments.jsonl";

/// Settlements kept in memory for the admin summary, newest first.
pub const RECENT: usize = 25;

/// A rail's settlements counted by outcome: `settled`, `refused` (nothing moved), `failed`
/// (not reached, or the outcome unknown); a counter series for the metrics page.
#[derive(Debug, Default)]
pub struct Settlements {
    settled: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Settlements {
    /// One settlement settled.
    pub fn settled(&self) {
        self.settled.fetch_add(1, Relaxed);
    }

    /// One settlement refused.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// One settlement failed.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Relaxed);
    }

    /// The counts: settled, refused, failed.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.settled.load(Relaxed),
            self.refused.load(Relaxed),
            self.failed.load(Relaxed),
        )
    }

    /// Writes the counter series `name`, with its `help` line, one sample per outcome.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        let (settled, refused, failed) = self.counts();
        for (outcome, n) in [
            ("settled", settled),
            ("refused", refused),
            ("failed", failed),
        ] {
            out.push_str(&format!("{name}{{outcome=\"{outcome}\"}} {n}\n"));
        }
    }
}

/// One settlement attempted, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    /// Unix seconds.
    pub at: u64,
    /// `settled`, `refused`, `failed` or `unknown` (see the module docs).
    pub outcome: &'static str,
    /// The rail that took the payment: `x402` or `mpp`.
    pub rail: &'static str,
    /// Its payment method: x402's scheme `exact`, or MPP's charge method `evm`.
    pub payment_method: &'static str,
    /// The transaction's hash, when it settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// Who paid (EIP-55).
    pub payer: String,
    /// Atomic units of the asset, decimal.
    pub amount: String,
    /// The token (EIP-55).
    pub asset: String,
    /// CAIP-2.
    pub network: String,
    /// Who was paid (EIP-55).
    pub pay_to: String,
    /// The JSON-RPC method of the call paid for.
    pub method: String,
    /// The tool (or resource, or prompt) of the call paid for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Why it did not settle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The spend log: the file, when there is one, and the newest records.
#[derive(Default)]
pub struct SpendLog {
    file: Option<(PathBuf, Arc<Mutex<std::fs::File>>)>,
    recent: Mutex<VecDeque<PaymentRecord>>,
}

impl std::fmt::Debug for SpendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendLog")
            .field("file", &self.path())
            .finish()
    }
}

impl SpendLog {
    /// A log kept in memory only.
    pub fn memory() -> Self {
        SpendLog::default()
    }

    /// A log appended to `path` (created 0600 when missing).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let f = turnpike_fs::open_private_append(path)?;
        Ok(SpendLog {
            file: Some((path.to_path_buf(), Arc::new(Mutex::new(f)))),
            recent: Mutex::new(VecDeque::new()),
        })
    }

    /// The file written to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Records one settlement: in memory at once, in the file by a blocking task.
    pub fn record(&self, rec: PaymentRecord) {
        if let Some((path, file)) = &self.file {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            let file = file.clone();
            let path = path.clone();
            let write = move || {
                if let Err(e) = file.lock().write_all(&line) {
                    tracing::warn!(error = %e, file = %path.display(), "x402: could not write the spend log");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(write);
                }
                Err(_) => write(),
            }
        }
        let mut recent = self.recent.lock();
        recent.push_front(rec);
        recent.truncate(RECENT);
    }

    /// The newest records, newest first.
    pub fn recent(&self) -> Vec<PaymentRecord> {
        self.recent.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> PaymentRecord {
        PaymentRecord {
            at: n,
            outcome: "settled",
            rail: "x402",
            payment_method: "exact",
            transaction: Some(format!("0x{n:064x}")),
            payer: "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A".into(),
            amount: "10000".into(),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            network: "eip155:8453".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            method: "tools/call".into(),
            tool: Some("dear".into()),
            reason: None,
        }
    }

    #[test]
    fn lines_are_appended_and_the_newest_kept() {
        let dir = std::env::temp_dir().join(format!(
            "turnpike-x402-spend-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        let log = SpendLog::open(&path).unwrap();
        for n in 0..30 {
            log.record(rec(n));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].at, 29);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 30);
        assert_eq!(
            lines[3],
            serde_json::json!({"at": 3, "outcome": "settled", "rail": "x402",
                "payment_method": "exact",
                "transaction": format!("0x{:064x}", 3), "payer": rec(3).payer,
                "amount": "10000", "asset": rec(3).asset, "network": "eip155:8453",
                "pay_to": rec(3).pay_to, "method": "tools/call", "tool": "dear"})
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Opened again, it appends.
        drop(log);
        SpendLog::open(&path).unwrap().record(rec(99));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 31);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
