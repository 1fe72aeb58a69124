//! Credential headers: `Authorization` (PoW, L402/LSAT, Bearer, DPoP), `Macaroon`, `DPoP`, as the
//! gateway collects them through the rails (`turnpike_gateway::credentials::collect`), each
//! parser on its own (`turnpike_core::credential`, `turnpike_pow`, `turnpike_l402`,
//! `turnpike_oauth`), and the client's
//! `WWW-Authenticate` / challenge-body parsers.
//!
//! Input: header lines `name: value` up to the first empty line, then a JSON-RPC body (which may
//! carry `_meta` credentials).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use turnpike_core::credential::{parse_auth_params, split_scheme};
use turnpike_core::{EdgeRequest, RailPlugin};
use turnpike_pow::credential::{parse_nonce_list, parse_pow_meta, parse_pow_params};

#[path = "common/headers.rs"]
mod headers;
use headers::split;

const DEFAULT_BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

/// The three rails at the edge, built once.
fn rails() -> &'static [Arc<dyn RailPlugin>] {
    static RAILS: OnceLock<Vec<Arc<dyn RailPlugin>>> = OnceLock::new();
    RAILS.get_or_init(|| {
        let cfg = turnpike_gateway::Config::default();
        let spent = || turnpike_gateway::rails::spent_set(&cfg, "fuzz").expect("memory set");
        let keys = turnpike_pow::KeyRing::from_secrets(vec![(1, [7; 32])]).expect("keys");
        let pow = Arc::new(turnpike_pow::PowRail::new(
            turnpike_pow::PowConfig::default(),
            keys,
            spent(),
        ));
        let dev =
            turnpike_lightning::dev::DevBackend::new(&turnpike_lightning::config::DevConfig {
                network: "regtest".into(),
                key_hex: None,
                custodial: false,
            })
            .expect("dev backend");
        let l402 = Arc::new(turnpike_l402::L402Rail::new(
            Default::default(),
            Arc::new(dev),
            Arc::new(turnpike_l402::MemoryStore::new()),
            spent(),
        ));
        let oauth = Arc::new(
            turnpike_oauth::OAuthRail::new(
                turnpike_oauth::OAuthConfig::new("https://auth.example.com")
                    .with_default_resource("https://mcp.example.com/mcp"),
                spent(),
            )
            .expect("oauth rail"),
        );
        vec![pow, l402, oauth]
    })
}

fuzz_target!(|data: &[u8]| {
    let (headers, body) = split(data);
    let msg = turnpike_mcp::parse_message(body)
        .or_else(|_| turnpike_mcp::parse_message(DEFAULT_BODY))
        .expect("the default body parses");
    let req = EdgeRequest {
        method: "POST",
        public_url: None,
        body,
        headers: &turnpike_gateway::credentials::Lines(&headers),
    };
    let collected = turnpike_gateway::credentials::collect(rails(), &req, &msg);
    let _ = collected.creds.len() + collected.malformed.len();
    let _ = turnpike_oauth::credentials_from_headers(&headers);

    let proofs: Vec<&str> = headers
        .get_all("dpop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for v in headers.values() {
        let Ok(s) = v.to_str() else { continue };
        if let Some(pairs) = parse_auth_params(s) {
            for (name, _) in &pairs {
                assert_eq!(
                    name,
                    &name.to_ascii_lowercase(),
                    "auth-param names are lower-cased"
                );
            }
        }
        let (scheme, rest) = split_scheme(s);
        let _ = parse_pow_params(rest);
        let _ = parse_nonce_list(rest);
        let _ = turnpike_l402::parse_authorization(scheme, rest);
        let _ = turnpike_l402::parse_macaroon_header(s);
        let _ = turnpike_oauth::parse_authorization(scheme, rest, &proofs);
        let _ = turnpike_oauth::credential::is_token68(s);
        let _ = turnpike_client::parse::parse_www_authenticate(s);
        let _ = turnpike_client::parse_challenges(s);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = turnpike_client::parse_challenges(text);
        let _ = turnpike_client::parse::parse_www_authenticate(text);
        let _ = parse_auth_params(text);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = turnpike_l402::parse_meta(&v);
        let _ = parse_pow_meta(&v);
    }
});
