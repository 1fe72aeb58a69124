//! Credential headers: `Authorization` (PoW, L402/LSAT, Bearer, DPoP), `Macaroon`, `DPoP`, as the
//! gateway collects them (`turnpike_gateway::credentials::collect`), each parser on its own
//! (`turnpike_core::credential`, `turnpike_l402`, `turnpike_oauth`), and the client's
//! `WWW-Authenticate` / challenge-body parsers.
//!
//! Input: header lines `name: value` up to the first empty line, then a JSON-RPC body (which may
//! carry `_meta` credentials).
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_core::credential::{
    parse_auth_params, parse_nonce_list, parse_pow_params, split_scheme,
};

#[path = "common/headers.rs"]
mod headers;
use headers::split;

const DEFAULT_BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = split(data);
    let msg = turnpike_mcp::parse_message(body)
        .or_else(|_| turnpike_mcp::parse_message(DEFAULT_BODY))
        .expect("the default body parses");
    let collected = turnpike_gateway::credentials::collect(&headers, &msg);
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
    }
});
