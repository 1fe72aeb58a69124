//! Requests signed by the PyPI `http-message-signatures` package (from `.venv`, installed by
//! scripts/setup-test-deps) verify here: every derived component this crate knows,
//! `@query-param`, and `Signature-Agent` as a dictionary covered with `;key`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{At, NOW};

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::Request;
use serde_json::{json, Value};
use turnpike_webbotauth::{
    ed25519_thumbprint, KeyDirectory, MemoryNonces, Policy, Refusal, Verifier,
};

const AGENT: &str = "https://agent.example/.well-known/http-message-signatures-directory";

fn public() -> [u8; 32] {
    URL_SAFE_NO_PAD
        .decode("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs")
        .unwrap()
        .try_into()
        .unwrap()
}

fn sign(cases: &Value) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: install the test peers with scripts/setup-test-deps",
        python.display()
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/http_message_signatures_signer.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = json!({ "keyid": ed25519_thumbprint(&public()), "cases": cases });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "signer failed (is http-message-signatures in .venv? scripts/setup-test-deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn request(method: &str, url: &str, headers: &Value) -> Request<()> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers.as_object().unwrap() {
        builder = builder.header(name.as_str(), value.as_str().unwrap());
    }
    builder.body(()).unwrap()
}

#[test]
fn python_signatures_verify() {
    let url = "https://Shop.Example:443/tools/call?tool=search&q=caf%C3%A9+au+lait";
    let cases = json!([
        {
            "name": "everything", "method": "POST", "url": url, "label": "sig1",
            "headers": { "Signature-Agent": format!("\"{AGENT}\""), "Content-Type": "application/json" },
            "components": ["@method", "@authority", "@scheme", "@target-uri", "@path", "@query",
                           "@request-target", "signature-agent", "content-type",
                           "\"@query-param\";name=\"q\""],
            "created": NOW - 2, "expires": NOW + 60, "nonce": "py-1",
        },
        {
            "name": "dictionary", "method": "GET", "url": "https://shop.example/", "label": "agent7",
            "headers": { "Signature-Agent": format!("agent7=\"{AGENT}\", other=\"https://x.example/\"") },
            "components": ["@authority", "\"signature-agent\";key=\"agent7\""],
            "created": NOW - 2, "expires": NOW + 60, "nonce": "py-2",
        },
        {
            "name": "tampered", "method": "POST", "url": url, "label": "sig1",
            "headers": { "Signature-Agent": format!("\"{AGENT}\""), "Content-Type": "application/json" },
            "components": ["@method", "@authority", "@path", "signature-agent", "content-type"],
            "created": NOW - 2, "expires": NOW + 60, "nonce": "py-3",
        },
    ]);
    let signed = sign(&cases);
    let mut verifier = Verifier::new(
        Policy::default(),
        Arc::new(At),
        Arc::new(MemoryNonces::new(16)),
    );
    verifier.set_directory(AGENT, KeyDirectory::from_ed25519(&[public()]));

    let everything = verifier
        .verify(&request("POST", url, &signed["everything"]), "https")
        .unwrap();
    assert_eq!(everything.agent, AGENT);
    assert_eq!(everything.nonce.as_deref(), Some("py-1"));

    let dictionary = verifier
        .verify(
            &request("GET", "https://shop.example/", &signed["dictionary"]),
            "https",
        )
        .unwrap();
    assert_eq!(
        (dictionary.agent.as_str(), dictionary.label.as_str()),
        (AGENT, "agent7")
    );

    let mut headers = signed["tampered"].clone();
    headers["Content-Type"] = json!("text/plain");
    assert_eq!(
        verifier.verify(&request("POST", url, &headers), "https"),
        Err(Refusal::BadSignature)
    );
}
