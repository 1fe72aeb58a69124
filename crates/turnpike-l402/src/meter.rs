//! What the L402 rail counts of its own ([`turnpike_core::RailMeter`]): money three ways —
//! invoices issued (with each challenge that offers L402, paid or not), payments received (a
//! token's invoice seen paid, once per token, as the rail records it) and the amount charged
//! to calls (the per-call price or the balance debit).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{json, Value};
use turnpike_core::meter::{sats, write_series};
use turnpike_core::{Challenge, RailMeter};

/// The L402 counters: kept by the running rail, and given at zero by its recogniser where the
/// rail is off (so that the series are there either way).
#[derive(Debug, Default)]
pub struct L402Meter {
    invoices: AtomicU64,
    invoiced_msat: AtomicU64,
    paid_calls: AtomicU64,
    charged_msat: AtomicU64,
    payments: AtomicU64,
    received_msat: AtomicU64,
}

impl L402Meter {
    /// A token's payment was recorded (its invoice seen paid, the first time).
    pub fn payment(&self, amount_msat: u64) {
        self.payments.fetch_add(1, Relaxed);
        self.received_msat.fetch_add(amount_msat, Relaxed);
    }

    /// The payments recorded so far and their sum in millisatoshis.
    pub fn payments(&self) -> (u64, u64) {
        (
            self.payments.load(Relaxed),
            self.received_msat.load(Relaxed),
        )
    }
}

/// `turnpike_l402_*`; the history's `charged_msat`, `received_msat` and `invoiced_msat`; the
/// summary's `l402` (every figure).
impl RailMeter for L402Meter {
    fn challenge_issued(&self, challenge: &Challenge) {
        self.invoices.fetch_add(1, Relaxed);
        let msat = challenge.details.get("amount_msat").and_then(Value::as_u64);
        self.invoiced_msat.fetch_add(msat.unwrap_or(0), Relaxed);
    }

    fn call_granted(&self, charged_msat: u64) {
        self.paid_calls.fetch_add(1, Relaxed);
        self.charged_msat.fetch_add(charged_msat, Relaxed);
    }

    fn render(&self, out: &mut String) {
        write_series(
            out,
            "turnpike_l402_invoices_total",
            "counter",
            "L402 invoices issued (one per challenge offering L402).",
            self.invoices.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_l402_invoiced_sats_total",
            "counter",
            "Sum of the L402 invoices issued, in satoshis (msat/1000).",
            sats(self.invoiced_msat.load(Relaxed)),
        );
        write_series(
            out,
            "turnpike_l402_paid_calls_total",
            "counter",
            "Calls passed by an L402 token (per call, balance or time pass).",
            self.paid_calls.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_l402_payments_total",
            "counter",
            "L402 invoices seen paid (a token's payment confirmed at its first use), once per token.",
            self.payments.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_l402_received_sats_total",
            "counter",
            "Sum of the L402 invoices seen paid, in satoshis (msat/1000): the money received.",
            sats(self.received_msat.load(Relaxed)),
        );
        write_series(
            out,
            "turnpike_l402_settled_sats_total",
            "counter",
            "Satoshis charged for calls passed by L402 (the per-call price or the balance debit), msat/1000.",
            sats(self.charged_msat.load(Relaxed)),
        );
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("charged_msat", self.charged_msat.load(Relaxed)),
            ("received_msat", self.received_msat.load(Relaxed)),
            ("invoiced_msat", self.invoiced_msat.load(Relaxed)),
        ]
    }

    fn summary(&self) -> Option<(&'static str, Value)> {
        Some((
            "l402",
            json!({
                "invoices": self.invoices.load(Relaxed),
                "invoiced_msat": self.invoiced_msat.load(Relaxed),
                "payments": self.payments.load(Relaxed),
                "received_msat": self.received_msat.load(Relaxed),
                "paid_calls": self.paid_calls.load(Relaxed),
                "charged_msat": self.charged_msat.load(Relaxed),
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_core::RailId;

    #[test]
    fn invoices_payments_and_charges_are_apart() {
        let m = L402Meter::default();
        let invoice = |msat: u64| Challenge {
            rail: RailId::new("l402"),
            www_authenticate: String::new(),
            details: json!({ "rail": "l402", "amount_msat": msat }),
        };
        for msat in [1000, 1000, 2_000_000] {
            m.challenge_issued(&invoice(msat));
        }
        m.payment(2_000_000);
        m.call_granted(1000);
        m.call_granted(1000);
        assert_eq!(m.payments(), (1, 2_000_000));
        let (key, s) = m.summary().unwrap();
        assert_eq!(key, "l402");
        assert_eq!(
            s,
            json!({"invoices": 3, "invoiced_msat": 2_002_000, "payments": 1,
                   "received_msat": 2_000_000, "paid_calls": 2, "charged_msat": 2000})
        );
        assert_eq!(
            m.figures(),
            [
                ("charged_msat", 2000),
                ("received_msat", 2_000_000),
                ("invoiced_msat", 2_002_000)
            ]
        );
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("turnpike_l402_invoices_total 3\n"));
        assert!(text.contains("turnpike_l402_invoiced_sats_total 2002\n"));
        assert!(text.contains("turnpike_l402_payments_total 1\n"));
        assert!(text.contains("turnpike_l402_received_sats_total 2000\n"));
        assert!(text.contains("turnpike_l402_settled_sats_total 2\n"));
    }
}
