//! Budgets in satoshis (Lightning) and in US dollars (x402), and the spend log.
//!
//! Every payment is checked against four limits before the wallet is asked to pay: the most one
//! call may cost, the most spent in the last hour, in the last day, and on one server in the
//! last day. What was spent is read from the spend log (`spend.jsonl` in the state directory),
//! so the limits hold across restarts and across several bridges sharing the directory (the
//! check, the payment and the log entry happen under the directory's lock).
//!
//! A payment whose outcome the wallet could not tell (`unknown`) counts as spent; a payment that
//! certainly failed is logged as `failed` and counts nothing. An x402 authorization handed to a
//! server (`signed`) counts as spent: whoever holds it can settle it until it expires.
//!
//! x402 payments are counted in micro-dollars against their own limits (the policy's per-call
//! cap and [`Budgets::per_day_usd`]), apart from the satoshi budgets.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

use crate::ClientError;
use turnpike_fs::open_private_append;

/// Spending limits, in satoshis (and US dollars for x402). `None` means no limit of that kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budgets {
    /// The most one call may cost (invoice amount plus the fee limit).
    pub per_call_sat: Option<u64>,
    /// The most spent in any 60 minutes.
    pub per_hour_sat: Option<u64>,
    /// The most spent in any 24 hours.
    pub per_day_sat: Option<u64>,
    /// The most spent on one server in any 24 hours.
    pub per_server_sat: Option<u64>,
    /// The most paid with x402 in any 24 hours, in US dollars.
    pub per_day_usd: Option<f64>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            per_call_sat: Some(10),
            per_hour_sat: Some(100),
            per_day_sat: Some(1000),
            per_server_sat: Some(500),
            per_day_usd: Some(1.0),
        }
    }
}

/// One line of the spend log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendEntry {
    /// Unix seconds.
    pub at: u64,
    /// The server's endpoint URL.
    pub server: String,
    /// The JSON-RPC method of the call.
    #[serde(default)]
    pub method: Option<String>,
    /// The tool (or prompt, or resource) of the call.
    #[serde(default)]
    pub name: Option<String>,
    /// `l402`, `mpp`, `x402` or `pow`.
    pub rail: String,
    /// `paid`, `unknown` (may have been paid: counted), `failed` (not paid: not counted),
    /// `signed` (an x402 authorization handed over: counted), or `solved` (proof-of-work:
    /// nothing spent but CPU).
    pub status: String,
    /// Invoice amount, msat (0 for proof-of-work).
    #[serde(default)]
    pub amount_msat: u64,
    /// Routing fee, msat, when known.
    #[serde(default)]
    pub fee_msat: u64,
    /// The invoice's payment hash (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_hash: Option<String>,
    /// Hashes computed (proof-of-work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<u64>,
    /// Milliseconds spent (proof-of-work solve, or the payment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
    /// A short note (the wallet's error, the billing mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// x402: the amount in micro-dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_micro: Option<u64>,
    /// x402: the amount in the token's atomic units (decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    /// x402: the token, `eip155:<chain id>/<contract>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// x402: who is paid (the offer's `payTo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
}

impl SpendEntry {
    /// Whether this entry counts as money spent.
    fn counts(&self) -> bool {
        matches!(self.status.as_str(), "paid" | "unknown" | "signed")
    }

    /// What this entry counts against budgets, msat.
    pub fn counted_msat(&self) -> u64 {
        if self.counts() {
            self.amount_msat.saturating_add(self.fee_msat)
        } else {
            0
        }
    }

    /// What this entry counts against the dollar budget, micro-dollars.
    pub fn counted_usd_micro(&self) -> u64 {
        if self.counts() {
            self.usd_micro.unwrap_or(0)
        } else {
            0
        }
    }
}

/// Micro-dollars paid with x402 in the 24 hours before `now`.
pub fn spent_usd_day(entries: &[SpendEntry], now: u64) -> u64 {
    entries
        .iter()
        .filter(|e| e.at + 86_400 > now)
        .map(SpendEntry::counted_usd_micro)
        .fold(0u64, u64::saturating_add)
}

/// Reads every entry of `dir/spend.jsonl` (lines that do not parse are skipped).
pub fn read_log(dir: &Path) -> Result<Vec<SpendEntry>, ClientError> {
    let path = dir.join("spend.jsonl");
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ClientError::State(format!("{}: {e}", path.display()))),
    };
    Ok(std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

/// Appends one entry to `dir/spend.jsonl` (created 0600).
pub fn append_log(dir: &Path, entry: &SpendEntry) -> Result<(), ClientError> {
    let path = dir.join("spend.jsonl");
    let mut line = serde_json::to_string(entry)
        .map_err(|e| ClientError::State(format!("encoding a spend entry: {e}")))?;
    line.push('\n');
    let mut f = open_private_append(&path)
        .map_err(|e| ClientError::State(format!("{}: {e}", path.display())))?;
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| ClientError::State(format!("{}: {e}", path.display())))
}

/// What has been spent in the windows the budgets look at, msat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    /// In the last hour.
    pub hour_msat: u64,
    /// In the last day.
    pub day_msat: u64,
    /// On this server in the last day.
    pub server_day_msat: u64,
}

/// Sums the log for `server` at `now`.
pub fn spent(entries: &[SpendEntry], server: &str, now: u64) -> Spent {
    let mut s = Spent::default();
    for e in entries {
        let c = e.counted_msat();
        if c == 0 || e.at + 86_400 <= now {
            continue;
        }
        s.day_msat = s.day_msat.saturating_add(c);
        if e.at + 3_600 > now {
            s.hour_msat = s.hour_msat.saturating_add(c);
        }
        if e.server == server {
            s.server_day_msat = s.server_day_msat.saturating_add(c);
        }
    }
    s
}

fn sat(msat: u64) -> String {
    if msat % 1000 == 0 {
        format!("{} sat", msat / 1000)
    } else {
        format!("{:.3} sat", msat as f64 / 1000.0)
    }
}

impl Budgets {
    /// Checks a payment of `cost_msat` (invoice plus fee limit) to `server`, given what was
    /// spent. The error is a sentence a person (or an agent) can act on.
    pub fn check(&self, cost_msat: u64, spent: &Spent) -> Result<(), String> {
        let over = |limit_sat: u64, used: u64, what: &str| -> Result<(), String> {
            let limit = limit_sat.saturating_mul(1000);
            if used.saturating_add(cost_msat) > limit {
                Err(format!(
                    "paying {} would exceed the {what} budget of {} ({} already spent)",
                    sat(cost_msat),
                    sat(limit),
                    sat(used)
                ))
            } else {
                Ok(())
            }
        };
        if let Some(l) = self.per_call_sat {
            over(l, 0, "per-call")?;
        }
        if let Some(l) = self.per_hour_sat {
            over(l, spent.hour_msat, "hourly")?;
        }
        if let Some(l) = self.per_day_sat {
            over(l, spent.day_msat, "daily")?;
        }
        if let Some(l) = self.per_server_sat {
            over(l, spent.server_day_msat, "per-server daily")?;
        }
        Ok(())
    }
}

impl Budgets {
    /// Checks an x402 payment of `cost` micro-dollars against the daily dollar budget, given
    /// `spent_day` micro-dollars already paid in the last 24 hours.
    pub fn check_usd(&self, cost: u64, spent_day: u64) -> Result<(), String> {
        let Some(limit) = self.per_day_usd else {
            return Ok(());
        };
        let limit = crate::x402::usd_to_micro(limit).unwrap_or(0);
        if spent_day.saturating_add(cost) > limit {
            return Err(format!(
                "paying {} would exceed the daily budget of {} ({} already spent; \
                 --budget-usd-per-day)",
                crate::x402::fmt_usd(cost),
                crate::x402::fmt_usd(limit),
                crate::x402::fmt_usd(spent_day)
            ));
        }
        Ok(())
    }
}

/// Renders the spend log for people: one line per entry, then totals.
pub fn render_log(entries: &[SpendEntry], now: u64) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str("nothing spent yet\n");
        return out;
    }
    // Columns as wide as their widest entry (a 64-character cost or a long tool name must not
    // push the rest of its line out of line).
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            let what = match (&e.method, &e.name) {
                (Some(m), Some(n)) => format!("{m} {n}"),
                (Some(m), None) => m.clone(),
                _ => String::new(),
            };
            let cost = match e.rail.as_str() {
                "pow" => format!(
                    "{} hashes in {} ms",
                    e.hashes.unwrap_or(0),
                    e.millis.unwrap_or(0)
                ),
                "x402" | "mpp-evm" => format!(
                    "{} to {}",
                    crate::x402::fmt_usd(e.usd_micro.unwrap_or(0)),
                    e.pay_to.as_deref().unwrap_or("?")
                ),
                _ => {
                    let mut c = sat(e.amount_msat);
                    if e.fee_msat > 0 {
                        c.push_str(&format!(" + {} fee", sat(e.fee_msat)));
                    }
                    c
                }
            };
            [
                fmt_time(e.at),
                e.status.clone(),
                e.rail.clone(),
                cost,
                what,
                e.server.clone(),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w1, w2, w3, w4) = (width(1), width(2), width(3), width(4));
    for (r, e) in rows.iter().zip(entries) {
        out.push_str(&format!(
            "{}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {}{}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            e.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        ));
    }
    let s = spent(entries, "", now);
    let total: u64 = entries.iter().map(SpendEntry::counted_msat).sum();
    out.push_str(&format!(
        "spent: {} in the last hour, {} in the last 24 h, {} in all\n",
        sat(s.hour_msat),
        sat(s.day_msat),
        sat(total)
    ));
    if entries
        .iter()
        .any(|e| e.rail == "x402" || e.rail == "mpp-evm")
    {
        let all = entries
            .iter()
            .map(SpendEntry::counted_usd_micro)
            .fold(0u64, u64::saturating_add);
        let label = if entries.iter().any(|e| e.rail == "mpp-evm") {
            "x402 and MPP evm"
        } else {
            "x402"
        };
        out.push_str(&format!(
            "{label}: {} in the last 24 h, {} in all\n",
            crate::x402::fmt_usd(spent_usd_day(entries, now)),
            crate::x402::fmt_usd(all)
        ));
    }
    out
}

/// `YYYY-MM-DD HH:MM:SSZ` from Unix seconds (UTC).
pub fn fmt_time(t: u64) -> String {
    let days = t / 86_400;
    let secs = t % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(at: u64, server: &str, msat: u64, status: &str) -> SpendEntry {
        SpendEntry {
            at,
            server: server.into(),
            method: None,
            name: None,
            rail: "l402".into(),
            status: status.into(),
            amount_msat: msat,
            fee_msat: 0,
            payment_hash: None,
            hashes: None,
            millis: None,
            note: None,
            usd_micro: None,
            units: None,
            asset: None,
            pay_to: None,
        }
    }

    #[test]
    fn spend_log_columns_fit_their_widest_entry() {
        let mut long = e(1_000, "http://a/mcp", 2_000, "paid");
        long.method = Some("tools/call".into());
        long.name = Some("a-tool-with-a-name-longer-than-thirty-characters".into());
        let mut pow = e(1_001, "http://a/mcp", 0, "solved");
        pow.rail = "pow".into();
        pow.hashes = Some(123_456_789_012);
        pow.millis = Some(98_765);
        pow.method = Some("tools/call".into());
        pow.name = Some("x".into());
        let out = render_log(&[long, pow], 2_000);
        let lines: Vec<&str> = out.lines().take(2).collect();
        let at: Vec<usize> = lines
            .iter()
            .map(|l| l.find("http://a/mcp").unwrap())
            .collect();
        assert_eq!(at[0], at[1], "the server column lines up:\n{out}");
        let cost: Vec<usize> = lines
            .iter()
            .map(|l| l.find("tools/call").unwrap())
            .collect();
        assert_eq!(cost[0], cost[1], "the call column lines up:\n{out}");
        assert!(
            lines[0].contains("characters  http://a/mcp"),
            "no padding beyond the widest entry:\n{out}"
        );
    }

    #[test]
    fn windows_and_limits() {
        let now = 1_000_000;
        let log = vec![
            e(now - 90_000, "a", 50_000, "paid"), // older than a day
            e(now - 7_200, "a", 3_000, "paid"),   // in the day, not the hour
            e(now - 60, "b", 2_000, "unknown"),   // counted
            e(now - 30, "a", 9_000, "failed"),    // not counted
        ];
        let s = spent(&log, "a", now);
        assert_eq!(s.hour_msat, 2_000);
        assert_eq!(s.day_msat, 5_000);
        assert_eq!(s.server_day_msat, 3_000);
        let b = Budgets {
            per_call_sat: Some(5),
            per_hour_sat: Some(6),
            per_day_sat: Some(100),
            per_server_sat: Some(7),
            per_day_usd: Some(0.05),
        };
        assert!(b.check_usd(20_000, 30_000).is_ok());
        assert!(b.check_usd(20_001, 30_000).unwrap_err().contains("daily"));
        assert!(b.check(4_000, &s).is_ok());
        assert!(b.check(5_001, &s).unwrap_err().contains("per-call"));
        let s2 = Spent {
            hour_msat: 3_000,
            ..s
        };
        assert!(b.check(4_000, &s2).unwrap_err().contains("hourly"));
        let s3 = Spent {
            server_day_msat: 4_000,
            ..s
        };
        assert!(b.check(4_000, &s3).unwrap_err().contains("per-server"));
    }

    #[test]
    fn time_format() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(fmt_time(1_767_225_600), "2026-01-01 00:00:00Z");
    }
}
