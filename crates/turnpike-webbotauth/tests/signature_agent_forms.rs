//! `Signature-Agent` as a structured string and as a dictionary keyed by the signature's
//! label (covered as `"signature-agent";key="<label>"`), signed here with ring and RFC 9421's
//! test-key-ed25519.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{key, At, NOW};

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::Request;
use ring::signature::KeyPair as _;
use turnpike_webbotauth::sf::{parse_dictionary, Member};
use turnpike_webbotauth::{
    ed25519_thumbprint, signature_base, BaseError, KeyDirectory, MemoryNonces, Policy, Refusal,
    RequestParts, Verifier,
};

const AGENT: &str = "https://agent.example/.well-known/http-message-signatures-directory";

fn verifier(public: [u8; 32]) -> Verifier {
    let mut v = Verifier::new(
        Policy::default(),
        Arc::new(At),
        Arc::new(MemoryNonces::new(16)),
    );
    v.set_directory(AGENT, KeyDirectory::from_ed25519(&[public]));
    v
}

/// Signs `GET https://shop.example/` carrying `agent_field`, covering `components`; returns
/// the request and its signature base.
fn signed(agent_field: &str, components: &str) -> (Request<()>, String) {
    let key = key();
    let public: [u8; 32] = key.public_key().as_ref().try_into().unwrap();
    let input = format!(
        r#"sig1=({components});created={};expires={};keyid="{}";tag="web-bot-auth""#,
        NOW - 1,
        NOW + 60,
        ed25519_thumbprint(&public)
    );
    let mut req = Request::get("https://shop.example/")
        .header("signature-agent", agent_field)
        .header("signature-input", &input)
        .body(())
        .unwrap();
    let Some(Member::InnerList(list)) = parse_dictionary(input.as_bytes())
        .unwrap()
        .get("sig1")
        .cloned()
    else {
        panic!("sig1")
    };
    let base = signature_base(&RequestParts::from_request(&req, "https"), &list);
    let base = match base {
        Ok(b) => String::from_utf8(b).unwrap(),
        Err(e) => return (req, format!("error: {e}")),
    };
    let sig = key.sign(base.as_bytes());
    req.headers_mut().insert(
        "signature",
        format!("sig1=:{}:", STANDARD.encode(sig.as_ref()))
            .parse()
            .unwrap(),
    );
    (req, base)
}

fn public() -> [u8; 32] {
    key().public_key().as_ref().try_into().unwrap()
}

#[test]
fn dictionary_form_covered_by_key_verifies() {
    let (req, base) = signed(
        &format!(r#"sig1="{AGENT}", other="https://elsewhere.example/""#),
        r#""@authority" "signature-agent";key="sig1""#,
    );
    assert!(
        base.contains(&format!(
            "\n\"signature-agent\";key=\"sig1\": \"{AGENT}\"\n"
        )),
        "{base}"
    );
    let agent = verifier(public()).verify(&req, "https").unwrap();
    assert_eq!(agent.agent, AGENT);
}

#[test]
fn dictionary_form_covered_whole_verifies() {
    let (req, _) = signed(
        &format!(r#"sig1="{AGENT}""#),
        r#""@authority" "signature-agent""#,
    );
    assert_eq!(
        verifier(public()).verify(&req, "https").unwrap().agent,
        AGENT
    );
}

#[test]
fn string_form_verifies() {
    let (req, _) = signed(&format!("\"{AGENT}\""), r#""@authority" "signature-agent""#);
    assert_eq!(
        verifier(public()).verify(&req, "https").unwrap().agent,
        AGENT
    );
}

#[test]
fn member_of_another_label_does_not_count_as_covered() {
    let (req, _) = signed(
        &format!(r#"sig1="{AGENT}", sig2="{AGENT}""#),
        r#""@authority" "signature-agent";key="sig2""#,
    );
    assert_eq!(
        verifier(public()).verify(&req, "https"),
        Err(Refusal::SignatureAgentNotCovered)
    );
}

#[test]
fn key_on_a_string_field_is_refused() {
    let (req, base) = signed(
        &format!("\"{AGENT}\""),
        r#""@authority" "signature-agent";key="sig1""#,
    );
    assert!(base.starts_with("error:"), "{base}");
    // Signed over nothing: the verifier refuses while rebuilding the base.
    let mut req = req;
    req.headers_mut().insert(
        "signature",
        format!("sig1=:{}:", STANDARD.encode([0u8; 64]))
            .parse()
            .unwrap(),
    );
    assert_eq!(
        verifier(public()).verify(&req, "https"),
        Err(Refusal::Base(BaseError::NotADictionary(
            "signature-agent".into()
        )))
    );
}
