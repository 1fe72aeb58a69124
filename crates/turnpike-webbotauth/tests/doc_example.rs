//! The example in docs/WEB-BOT-AUTH.md (signed by the web-bot-auth npm package with RFC 9421's
//! test-key-ed25519; Ed25519 is deterministic) verifies, and its signature base is as shown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use http::Request;
use turnpike_webbotauth::sf::{parse_dictionary, Member};
use turnpike_webbotauth::{
    signature_base, Clock, KeyDirectory, MemoryNonces, Policy, Refusal, RequestParts, Verifier,
};

const AGENT: &str = "https://agent.example/.well-known/http-message-signatures-directory";
const INPUT: &str = r#"sig1=("@authority" "signature-agent");created=1767225600;keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U";alg="ed25519";expires=1767225900;nonce="WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWg==";tag="web-bot-auth""#;
const SIGNATURE: &str = "sig1=:wYE0eCwvqcxbWL46SzVxHtXGz115zHwapau6rYEEPx7oqkULYOOr/Z7LkNDkTiUa5U6a3spbYYxrnGPWL937BA==:";
const DIRECTORY: &str =
    r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}]}"#;

struct At(u64);
impl Clock for At {
    fn now(&self) -> u64 {
        self.0
    }
}

fn request() -> Request<()> {
    Request::post("/mcp")
        .header("Host", "example.com")
        .header("Signature-Agent", format!("\"{AGENT}\""))
        .header("Signature-Input", INPUT)
        .header("Signature", SIGNATURE)
        .body(())
        .unwrap()
}

#[test]
fn the_documented_example_verifies() {
    let req = request();
    let Some(Member::InnerList(list)) = parse_dictionary(INPUT.as_bytes())
        .unwrap()
        .get("sig1")
        .cloned()
    else {
        panic!("sig1 is not an inner list")
    };
    let base = signature_base(&RequestParts::from_request(&req, "https"), &list).unwrap();
    assert_eq!(
        String::from_utf8(base).unwrap(),
        format!(
            "\"@authority\": example.com\n\"signature-agent\": \"{AGENT}\"\n\"@signature-params\": {}",
            INPUT.strip_prefix("sig1=").unwrap()
        )
    );

    let mut verifier = Verifier::new(
        Policy::default(),
        Arc::new(At(1_767_225_660)),
        Arc::new(MemoryNonces::new(16)),
    );
    verifier.set_directory(
        AGENT,
        KeyDirectory::from_json(DIRECTORY.as_bytes()).unwrap(),
    );
    let agent = verifier.verify(&req, "https").unwrap();
    assert_eq!(agent.agent, AGENT);
    assert_eq!(agent.keyid, "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U");
    assert_eq!(verifier.verify(&req, "https"), Err(Refusal::Replayed));
}
