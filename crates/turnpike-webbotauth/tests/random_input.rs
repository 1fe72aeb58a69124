//! Random bytes never panic the structured-field parsers or the verifier; whatever parses
//! serializes to something that parses to the same value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Request;
use proptest::prelude::*;
use std::sync::Arc;
use turnpike_webbotauth::sf::{parse_dictionary, parse_item, serialize_inner_list, Member};
use turnpike_webbotauth::{KeyDirectory, MemoryNonces, Policy, SystemClock, Verifier};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_item(&bytes);
        if let Ok(dict) = parse_dictionary(&bytes) {
            for (_, member) in dict.iter() {
                if let Member::InnerList(list) = member {
                    let mut text = String::new();
                    serialize_inner_list(&mut text, list);
                    let again = parse_dictionary(format!("a={text}").as_bytes()).unwrap();
                    prop_assert_eq!(again.get("a"), Some(member));
                }
            }
        }
    }

    #[test]
    fn structured_looking_input_never_panics(
        text in r#"[a-z*][a-z0-9_.*-]{0,3}=(\(("[@a-z-]{0,6}"(;[a-z]+(=[0-9"a-z:?=-]{0,5})?)? ?){0,4}\))?(;[a-z]+=[-0-9a-z":?.+/=]{0,12}){0,4}(, )?"#
    ) {
        let _ = parse_dictionary(text.as_bytes());
    }

    #[test]
    fn verifier_never_panics(
        input in proptest::collection::vec(any::<u8>(), 0..256),
        signature in proptest::collection::vec(any::<u8>(), 0..128),
        agent in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut verifier = Verifier::new(
            Policy::default(),
            Arc::new(SystemClock),
            Arc::new(MemoryNonces::new(16)),
        );
        verifier.set_directory("https://a.example/", KeyDirectory::from_ed25519(&[[7; 32]]));
        let mut req = Request::get("https://a.example/x").body(()).unwrap();
        for (name, value) in [("signature-input", &input), ("signature", &signature), ("signature-agent", &agent)] {
            if let Ok(v) = http::HeaderValue::from_bytes(value) {
                req.headers_mut().insert(name, v);
            }
        }
        prop_assert!(verifier.verify(&req, "https").is_err());
    }
}
