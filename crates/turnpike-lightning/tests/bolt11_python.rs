//! The dev backend's invoices, read by an independent BOLT11 decoder: the `bolt11` package from
//! PyPI (which recovers the payee from the signature), run from `<repo>/.venv`. This test fails
//! — it does not skip — when that package is missing: scripts/test installs it.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use turnpike_lightning::config::DevConfig;
use turnpike_lightning::dev::DevBackend;
use turnpike_lightning::{LightningBackend, Secret};

fn decode_with_python(invoices: &[String]) -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import bolt11"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the `bolt11` package is not importable from {}: run scripts/test (its deps stage \
         installs it), or `.venv/bin/pip install bolt11==2.2.0 'bitstring<5'`",
        py.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/bolt11_peer.py");
    let out = Command::new(py)
        .arg(script)
        .args(invoices)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bolt11 decoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn dev_invoices_decode_independently() {
    let key = "11".repeat(32);
    let regtest = DevBackend::new(&DevConfig {
        network: "regtest".into(),
        key_hex: Some(Secret(key.clone())),
        custodial: false,
    })
    .unwrap();
    let signet = DevBackend::new(&DevConfig {
        network: "signet".into(),
        key_hex: Some(Secret(key)),
        custodial: false,
    })
    .unwrap();
    let long_memo = "turnpike ".repeat(40);
    let cases: Vec<(&DevBackend, u64, &str, u64)> = vec![
        (&regtest, 1, "one millisatoshi", 60),
        (&regtest, 1000, "turnpike echo", 600),
        (&regtest, 2500, "", 3600),
        (&regtest, 123_456_789, "ünïcødé ⚡", 86_400),
        (&regtest, 100_000_000_000, "one bitcoin", 31),
        (&signet, 21_000, &long_memo, 1_000_000),
    ];
    let mut invoices = Vec::new();
    let mut hashes = Vec::new();
    for (b, msat, memo, expiry) in &cases {
        let inv = b.create_invoice(*msat, memo, *expiry).await.unwrap();
        hashes.push(inv.payment_hash);
        invoices.push(inv.bolt11);
    }
    let decoded = decode_with_python(&invoices);
    let payee = hex::encode(regtest.node_pubkey());
    for (i, ((b, msat, memo, expiry), d)) in cases.iter().zip(&decoded).enumerate() {
        let regtest_case = std::ptr::eq(*b, &regtest);
        assert_eq!(
            d["currency"],
            if regtest_case { "bcrt" } else { "tbs" },
            "{i}"
        );
        assert_eq!(d["is_regtest"], regtest_case, "{i}");
        assert_eq!(d["is_signet"], !regtest_case, "{i}");
        assert_eq!(d["amount_msat"], *msat, "{i}");
        assert_eq!(d["description"], *memo, "{i}");
        assert_eq!(d["expiry"], *expiry, "{i}");
        assert_eq!(d["payment_hash"], hex::encode(hashes[i]), "{i}");
        assert_eq!(d["min_final_cltv_expiry"], 80, "{i}");
        assert_eq!(
            d["payee"], payee,
            "{i}: the signature recovers the dev node's key"
        );
        assert_eq!(
            d["features"],
            serde_json::json!(["payment_secret:required", "var_onion_optin:required"]),
            "{i}"
        );
        assert_eq!(d["payment_secret"].as_str().unwrap().len(), 64, "{i}");
        // Paying reveals a preimage that hashes to the payment hash.
        let pre = b.pay(&invoices[i]).unwrap();
        let h: [u8; 32] = Sha256::digest(pre).into();
        assert_eq!(h, hashes[i]);
    }
}
