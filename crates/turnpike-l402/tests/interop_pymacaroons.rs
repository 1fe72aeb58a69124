//! Interoperability with pymacaroons (PyPI), an implementation written elsewhere:
//! (a) pymacaroons reads and verifies a macaroon the L402 rail minted, with its caveats, and
//!     writes back the very same bytes;
//! (b) turnpike reads and verifies a V2 macaroon pymacaroons minted, byte for byte, and the rail
//!     accepts it as a credential;
//! (c) a tampered pymacaroons macaroon is refused.
//!
//! Needs `<repo>/.venv/bin/python` with `pymacaroons` installed (scripts/test installs it).
//! This test fails — it does not skip — when that is missing.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use turnpike_core::{CallFacts, Credential, Rail, Verdict};
use turnpike_l402::store::{TokenRecord, TokenStore};
use turnpike_l402::BillingMode;
use turnpike_l402::{Identifier, L402Config, L402Rail, Limits, Macaroon, MemoryStore};
use turnpike_lightning::dev::DevBackend;
use turnpike_store::MemorySpentSet;
use zeroize::Zeroizing;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import pymacaroons"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "pymacaroons is not installed in {}: run scripts/test (its deps stage installs it), \
         or `python3 -m venv .venv && .venv/bin/pip install pymacaroons==0.13.0`",
        py.display()
    );
    py
}

fn peer(args: &[&str]) -> Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pymacaroons_peer.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pymacaroons peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("peer prints JSON")
}

fn call(tool: &str) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some(tool.into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now: 1_800_000_000,
    }
}

#[test]
fn pymacaroons_reads_what_turnpike_mints() {
    let root = [0x5a; 32];
    let id = Identifier {
        payment_hash: [0x11; 32],
        token_id: [0x22; 32],
    };
    let caveats = [
        "turnpike/resource=/mcp",
        "turnpike/methods=tools/call",
        "turnpike/tools=echo,add",
        "turnpike/mode=balance",
        "turnpike/expires=1800000000",
        "turnpike/credit_msat=100000",
    ];
    let mut m = Macaroon::new(&root, id.encode().to_vec(), "turnpike");
    for c in caveats {
        m.add_first_party_caveat(c);
    }
    let b64 = m.to_base64();
    let mut args = vec!["verify", b64.as_str()];
    let root_hex = hex::encode(root);
    args.push(&root_hex);
    args.extend(caveats);
    let got = peer(&args);
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(got["version"], 2);
    assert_eq!(got["location"], "turnpike");
    assert_eq!(got["identifier"], hex::encode(id.encode()));
    assert_eq!(
        got["caveats"],
        serde_json::json!(caveats.to_vec()),
        "caveats in order"
    );
    assert_eq!(got["signature"], hex::encode(m.signature()));
    assert_eq!(
        got["reserialized"],
        hex::encode(m.encode()),
        "pymacaroons writes back the same bytes"
    );

    // pymacaroons really checks: a missing caveat satisfier or another key fails there too.
    let mut fewer = vec!["verify", b64.as_str(), root_hex.as_str()];
    fewer.extend(&caveats[..5]);
    assert_eq!(peer(&fewer)["verified"], false);
    let other_key = hex::encode([0x5b; 32]);
    let mut wrong = vec!["verify", b64.as_str(), other_key.as_str()];
    wrong.extend(caveats);
    assert_eq!(peer(&wrong)["verified"], false);
}

#[tokio::test]
async fn pymacaroons_reads_a_rail_challenge() {
    // A real challenge from the rail: pymacaroons can read its macaroon (padded standard base64)
    // and sees the caveats turnpike minted.
    let rail = L402Rail::new(
        L402Config::default(),
        Arc::new(DevBackend::regtest()),
        Arc::new(MemoryStore::new()),
        Arc::new(MemorySpentSet::new()),
    );
    let offer = turnpike_l402::offer(2000, BillingMode::PerCall, 0);
    let ch = rail.challenge(&call("echo"), &offer).await.unwrap();
    let mac = ch.details["macaroon"].as_str().unwrap();
    let got = peer(&["verify", mac, &hex::encode([0; 32])]);
    assert_eq!(got["verified"], false, "the root key stays on the server");
    let ours = Macaroon::from_base64(mac, Limits::default()).unwrap();
    assert_eq!(got["reserialized"], hex::encode(ours.encode()));
    let cavs: Vec<String> = got["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(
        cavs.contains(&"turnpike/tools=echo".to_string()),
        "{cavs:?}"
    );
    assert!(
        cavs.contains(&"turnpike/mode=per_call".to_string()),
        "{cavs:?}"
    );
}

#[tokio::test]
async fn turnpike_verifies_what_pymacaroons_mints() {
    // The server side of a token: its root key and record in the store, as minting leaves them.
    let store = Arc::new(MemoryStore::new());
    let root = [0x77u8; 32];
    let preimage = [0x33u8; 32];
    let payment_hash: [u8; 32] = Sha256::digest(preimage).into();
    let id = Identifier {
        payment_hash,
        token_id: [0x44; 32],
    };
    store
        .issue(
            TokenRecord {
                token_id: id.token_id,
                payment_hash,
                mode: BillingMode::PerCall,
                amount_msat: 1000,
                credit_msat: 0,
                expires_at: 1_900_000_000,
                created_at: 1_800_000_000,
                paid_at: None,
            },
            Zeroizing::new(root),
        )
        .await
        .unwrap();
    let rail = L402Rail::new(
        L402Config::default(),
        Arc::new(DevBackend::regtest()),
        store,
        Arc::new(MemorySpentSet::new()),
    );
    let offer = turnpike_l402::offer(1000, BillingMode::PerCall, 0);

    // pymacaroons mints it (V2 binary), with turnpike's caveats.
    let caveats = [
        "turnpike/resource=/mcp",
        "turnpike/tools=echo",
        "turnpike/mode=per_call",
        "turnpike/expires=1900000000",
    ];
    let root_hex = hex::encode(root);
    let id_hex = hex::encode(id.encode());
    let mut args = vec!["mint", root_hex.as_str(), id_hex.as_str(), "turnpike"];
    args.extend(caveats);
    let minted = peer(&args);
    let raw = hex::decode(minted["raw"].as_str().unwrap()).unwrap();
    let b64url = minted["base64url"].as_str().unwrap();

    // Byte for byte: what turnpike would have minted with the same inputs.
    let mut ours = Macaroon::new(&root, id.encode().to_vec(), "turnpike");
    for c in caveats {
        ours.add_first_party_caveat(c);
    }
    assert_eq!(raw, ours.encode(), "identical V2 bytes");
    assert_eq!(minted["signature"], hex::encode(ours.signature()));

    // Turnpike reads pymacaroons' URL-safe unpadded base64 and verifies the chain.
    let m = Macaroon::from_base64(b64url, Limits::default()).unwrap();
    assert!(m.verify_signature(&root));
    assert_eq!(m.caveats().len(), 4);

    // The rail accepts it as a credential (and only once: per-call billing).
    let cred =
        turnpike_l402::parse_authorization("L402", &format!("{b64url}:{}", hex::encode(preimage)))
            .unwrap()
            .unwrap();
    let v = rail.verify(&call("echo"), &offer, &cred).await;
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
    assert!(matches!(
        rail.verify(&call("echo"), &offer, &cred).await,
        Verdict::Stale(_)
    ));

    // Tampered: one caveat edited after signing (tools=echo → tools=ech0): the chain breaks.
    let mut tampered = raw.clone();
    let pos = tampered
        .windows(b"tools=echo".len())
        .position(|w| w == b"tools=echo")
        .unwrap();
    tampered[pos + 9] = b'0';
    let tm = Macaroon::decode(&tampered, Limits::default()).unwrap();
    assert!(!tm.verify_signature(&root));
    let v = rail
        .verify(
            &call("ech0"),
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: tampered,
                preimage: preimage.to_vec(),
            }),
        )
        .await;
    assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");

    // Tampered: a caveat dropped by pymacaroons' holder (re-serialised without re-signing).
    let mut dropped_args = vec!["mint", root_hex.as_str(), id_hex.as_str(), "turnpike"];
    dropped_args.extend(&caveats[..3]);
    let fewer = peer(&dropped_args);
    let mut bytes = hex::decode(fewer["raw"].as_str().unwrap()).unwrap();
    let n = bytes.len();
    bytes[n - 32..].copy_from_slice(ours.signature());
    let v = rail
        .verify(
            &call("echo"),
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: bytes,
                preimage: preimage.to_vec(),
            }),
        )
        .await;
    assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
}
