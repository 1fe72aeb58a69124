//! The refusals the third-party signers cannot be made to produce, on requests signed here
//! with ring and RFC 9421's test-key-ed25519: each is its own `Refusal`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{key, public, At, NOW};

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::Request;
use turnpike_webbotauth::sf::{parse_dictionary, Member};
use turnpike_webbotauth::{
    ed25519_thumbprint, signature_base, KeyDirectory, MemoryNonces, Policy, Refusal, RequestParts,
    Verifier,
};

const AGENT: &str = "https://agent.example/";

fn keyid() -> String {
    ed25519_thumbprint(&public())
}

fn verifier(policy: Policy) -> Verifier {
    let mut v = Verifier::new(policy, Arc::new(At), Arc::new(MemoryNonces::new(16)));
    v.set_directory(AGENT, KeyDirectory::from_ed25519(&[public()]));
    v
}

/// `GET https://shop.example/` with `Signature-Input: <input>` and a valid signature for its
/// `label` member (when it has one that builds).
fn signed(input: &str, label: &str) -> Request<()> {
    let mut req = Request::get("https://shop.example/")
        .header("signature-input", input)
        .body(())
        .unwrap();
    let sig = match parse_dictionary(input.as_bytes())
        .ok()
        .and_then(|d| d.get(label).cloned())
    {
        Some(Member::InnerList(list)) => {
            match signature_base(&RequestParts::from_request(&req, "https"), &list) {
                Ok(base) => key().sign(&base).as_ref().to_vec(),
                Err(_) => vec![0; 64],
            }
        }
        _ => vec![0; 64],
    };
    req.headers_mut().insert(
        "signature",
        format!("{label}=:{}:", STANDARD.encode(sig))
            .parse()
            .unwrap(),
    );
    req
}

fn params(extra: &str) -> String {
    format!(
        r#"sig1=("@authority");created={};expires={};keyid="{}";tag="web-bot-auth"{extra}"#,
        NOW - 1,
        NOW + 60,
        keyid()
    )
}

#[test]
fn a_well_formed_request_verifies() {
    let agent = verifier(Policy::default())
        .verify(&signed(&params(""), "sig1"), "https")
        .unwrap();
    assert_eq!((agent.agent.as_str(), agent.nonce), (AGENT, None));
}

#[test]
fn the_first_web_bot_auth_signature_is_the_one_checked() {
    let input = format!(
        r#"other=("@method");created=1;keyid="x", {}"#,
        params("").replacen("sig1=", "wba=", 1)
    );
    let agent = verifier(Policy::default())
        .verify(&signed(&input, "wba"), "https")
        .unwrap();
    assert_eq!(agent.label, "wba");
}

#[test]
fn each_refusal() {
    let v = verifier(Policy::default());
    let check = |input: &str| v.verify(&signed(input, "sig1"), "https");
    assert_eq!(
        check(&params(r#";alg="rsa-pss-sha512""#)),
        Err(Refusal::UnsupportedAlg("rsa-pss-sha512".into()))
    );
    assert_eq!(
        check(&params(";alg=ed25519")),
        Err(Refusal::BadParameter("alg"))
    );
    assert_eq!(
        check(&params(&format!(r#";nonce="{}""#, "n".repeat(257)))),
        Err(Refusal::NonceTooLong)
    );
    assert_eq!(
        check(&params(";nonce=1")),
        Err(Refusal::BadParameter("nonce"))
    );
    let no_created = format!(
        r#"sig1=("@authority");expires={};keyid="{}";tag="web-bot-auth""#,
        NOW + 60,
        keyid()
    );
    assert_eq!(check(&no_created), Err(Refusal::BadParameter("created")));
    let no_expires = format!(
        r#"sig1=("@authority");created={};keyid="{}";tag="web-bot-auth""#,
        NOW - 1,
        keyid()
    );
    assert_eq!(check(&no_expires), Err(Refusal::BadParameter("expires")));
    let no_keyid = format!(
        r#"sig1=("@authority");created={};expires={};tag="web-bot-auth""#,
        NOW - 1,
        NOW + 60
    );
    assert_eq!(check(&no_keyid), Err(Refusal::BadParameter("keyid")));
    let backwards = format!(
        r#"sig1=("@authority");created={};expires={};keyid="{}";tag="web-bot-auth""#,
        NOW - 1,
        NOW - 2,
        keyid()
    );
    assert_eq!(
        check(&backwards),
        Err(Refusal::ExpiresBeforeCreated {
            created: NOW - 1,
            expires: NOW - 2
        })
    );
    let old = format!(
        r#"sig1=("@authority");created={};expires={};keyid="{}";tag="web-bot-auth""#,
        NOW - 3600,
        NOW + 60,
        keyid()
    );
    assert_eq!(
        check(&old),
        Err(Refusal::TooOld {
            created: NOW - 3600,
            now: NOW
        })
    );
    let untagged = params("").replace(r#";tag="web-bot-auth""#, "");
    assert_eq!(check(&untagged), Err(Refusal::WrongTag("none".into())));
    assert!(matches!(
        check("sig1=(\"@authority\""),
        Err(Refusal::BadSignatureInput(_))
    ));

    // The Signature field: absent, malformed, without the label.
    let mut req = signed(&params(""), "sig1");
    req.headers_mut().remove("signature");
    assert_eq!(v.verify(&req, "https"), Err(Refusal::NoSignature));
    req.headers_mut()
        .insert("signature", "sig1=:not base64:".parse().unwrap());
    assert!(matches!(
        v.verify(&req, "https"),
        Err(Refusal::BadSignatureField(_))
    ));
    req.headers_mut()
        .insert("signature", "sig2=:AAAA:".parse().unwrap());
    assert_eq!(
        v.verify(&req, "https"),
        Err(Refusal::NoSignatureForLabel("sig1".into()))
    );
    req.headers_mut().remove("signature-input");
    assert_eq!(v.verify(&req, "https"), Err(Refusal::NoSignatureInput));

    // Signature-Agent that is neither a string nor a dictionary with one for the label.
    let mut req = signed(&params(""), "sig1");
    req.headers_mut()
        .insert("signature-agent", "https://agent.example/".parse().unwrap());
    assert_eq!(v.verify(&req, "https"), Err(Refusal::BadSignatureAgent));
}

#[test]
fn a_policy_can_require_a_nonce() {
    let v = verifier(Policy {
        require_nonce: true,
        ..Policy::default()
    });
    assert_eq!(
        v.verify(&signed(&params(""), "sig1"), "https"),
        Err(Refusal::MissingNonce)
    );
    let agent = v
        .verify(&signed(&params(r#";nonce="n-1""#), "sig1"), "https")
        .unwrap();
    assert_eq!(agent.nonce.as_deref(), Some("n-1"));
}

#[test]
fn a_full_nonce_store_refuses_rather_than_grows() {
    let mut v = Verifier::new(
        Policy::default(),
        Arc::new(At),
        Arc::new(MemoryNonces::new(1)),
    );
    v.set_directory(AGENT, KeyDirectory::from_ed25519(&[public()]));
    v.verify(&signed(&params(r#";nonce="a""#), "sig1"), "https")
        .unwrap();
    assert_eq!(
        v.verify(&signed(&params(r#";nonce="b""#), "sig1"), "https"),
        Err(Refusal::NonceStoreFull)
    );
}

#[test]
fn a_forged_request_does_not_spend_the_nonce() {
    let v = verifier(Policy::default());
    let good = signed(&params(r#";nonce="once""#), "sig1");
    let mut forged = good.clone();
    forged.headers_mut().insert(
        "signature",
        format!("sig1=:{}:", STANDARD.encode([1u8; 64]))
            .parse()
            .unwrap(),
    );
    assert_eq!(v.verify(&forged, "https"), Err(Refusal::BadSignature));
    v.verify(&good, "https").unwrap();
    assert_eq!(v.verify(&good, "https"), Err(Refusal::Replayed));
}
