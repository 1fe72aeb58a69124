//! RFC 9421 Appendix B: the test request's signature bases, byte for byte, and the signatures
//! over them that can be checked here (B.2.5 HMAC-SHA256, B.2.6 Ed25519).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::Request;
use ring::signature::{UnparsedPublicKey, ED25519};
use turnpike_webbotauth::sf::{parse_dictionary, BareItem, InnerList, Member};
use turnpike_webbotauth::{signature_base, BaseError, RequestParts};

const DIGEST: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

/// RFC 9421 §2.5's test request (the body is not part of any signature base).
fn test_request() -> Request<()> {
    Request::post("/foo?param=Value&Pet=dog")
        .header("Host", "example.com")
        .header("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("Content-Type", "application/json")
        .header("Content-Digest", DIGEST)
        .header("Content-Length", "18")
        .body(())
        .unwrap()
}

fn inner_list(signature_input: &str, label: &str) -> InnerList {
    let dict = parse_dictionary(signature_input.as_bytes()).unwrap();
    match dict.get(label) {
        Some(Member::InnerList(list)) => list.clone(),
        other => panic!("{label}: {other:?}"),
    }
}

fn signature(field: &str, label: &str) -> Vec<u8> {
    let dict = parse_dictionary(field.as_bytes()).unwrap();
    match dict.get(label) {
        Some(Member::Item(item)) => match &item.bare {
            BareItem::ByteSeq(b) => b.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn base_of(input: &str, label: &str) -> String {
    let req = test_request();
    let parts = RequestParts::from_request(&req, "https");
    String::from_utf8(signature_base(&parts, &inner_list(input, label)).unwrap()).unwrap()
}

#[test]
fn b21_minimal() {
    let input =
        r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#;
    assert_eq!(
        base_of(input, "sig-b21"),
        r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#
    );
}

#[test]
fn b22_selective() {
    let input = r#"sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example""#;
    let expected = [
        r#""@authority": example.com"#.to_owned(),
        format!(r#""content-digest": {DIGEST}"#),
        r#""@query-param";name="Pet": dog"#.to_owned(),
        r#""@signature-params": ("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example""#.to_owned(),
    ]
    .join("\n");
    assert_eq!(base_of(input, "sig-b22"), expected);
}

#[test]
fn b23_full_coverage() {
    let input = r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#;
    let expected = [
        r#""date": Tue, 20 Apr 2021 02:07:55 GMT"#.to_owned(),
        r#""@method": POST"#.to_owned(),
        r#""@path": /foo"#.to_owned(),
        r#""@query": ?param=Value&Pet=dog"#.to_owned(),
        r#""@authority": example.com"#.to_owned(),
        r#""content-type": application/json"#.to_owned(),
        format!(r#""content-digest": {DIGEST}"#),
        r#""content-length": 18"#.to_owned(),
        r#""@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#.to_owned(),
    ]
    .join("\n");
    assert_eq!(base_of(input, "sig-b23"), expected);
}

#[test]
fn b25_hmac_sha256() {
    let input = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
    let base = base_of(input, "sig-b25");
    assert_eq!(
        base,
        [
            r#""date": Tue, 20 Apr 2021 02:07:55 GMT"#,
            r#""@authority": example.com"#,
            r#""content-type": application/json"#,
            r#""@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
        ]
        .join("\n")
    );
    let secret = STANDARD
        .decode("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let sig = signature(
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
        "sig-b25",
    );
    ring::hmac::verify(&key, base.as_bytes(), &sig).unwrap();
}

#[test]
fn b26_ed25519() {
    let input = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
    let base = base_of(input, "sig-b26");
    assert_eq!(
        base,
        [
            r#""date": Tue, 20 Apr 2021 02:07:55 GMT"#,
            r#""@method": POST"#,
            r#""@path": /foo"#,
            r#""@authority": example.com"#,
            r#""content-type": application/json"#,
            r#""content-length": 18"#,
            r#""@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
        ]
        .join("\n")
    );
    let public = URL_SAFE_NO_PAD
        .decode("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs")
        .unwrap();
    let sig = signature(
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        "sig-b26",
    );
    let key = UnparsedPublicKey::new(&ED25519, &public);
    key.verify(base.as_bytes(), &sig).unwrap();
    // One byte changed and it no longer verifies.
    let mut tampered = base.into_bytes();
    tampered[10] ^= 1;
    assert!(key.verify(&tampered, &sig).is_err());
}

#[test]
fn derived_components_of_an_absolute_target() {
    let req = Request::get("https://Example.COM:443/a/b?x=1&y=%20z")
        .header("X-Multi", " one ")
        .header("X-Multi", "two\t")
        .body(())
        .unwrap();
    let parts = RequestParts::from_request(&req, "https");
    let list = inner_list(
        r#"s=("@method" "@authority" "@scheme" "@target-uri" "@path" "@query" "@request-target" "x-multi" "@query-param";name="y")"#,
        "s",
    );
    let base = String::from_utf8(signature_base(&parts, &list).unwrap()).unwrap();
    let lines: Vec<&str> = base.lines().collect();
    assert_eq!(
        lines[..9],
        [
            r#""@method": GET"#,
            r#""@authority": example.com"#,
            r#""@scheme": https"#,
            r#""@target-uri": https://Example.COM:443/a/b?x=1&y=%20z"#,
            r#""@path": /a/b"#,
            r#""@query": ?x=1&y=%20z"#,
            r#""@request-target": /a/b?x=1&y=%20z"#,
            r#""x-multi": one, two"#,
            r#""@query-param";name="y": %20z"#,
        ]
    );
}

#[test]
fn refused_components() {
    let req = test_request();
    let parts = RequestParts::from_request(&req, "https");
    let cases: [(&str, BaseError); 7] = [
        (
            r#"s=("content-digest";sf)"#,
            BaseError::UnsupportedParameter {
                component: "content-digest".into(),
                param: "sf".into(),
            },
        ),
        (
            r#"s=("x-absent")"#,
            BaseError::MissingField("x-absent".into()),
        ),
        (
            r#"s=("@status")"#,
            BaseError::UnknownDerived("@status".into()),
        ),
        (
            r#"s=("@method" "@method")"#,
            BaseError::Duplicate(r#""@method""#.into()),
        ),
        (r#"s=("Date")"#, BaseError::NotLowerCase("Date".into())),
        (
            r#"s=("@signature-params")"#,
            BaseError::SignatureParamsCovered,
        ),
        (r#"s=(date)"#, BaseError::NotAString("date".into())),
    ];
    for (input, want) in cases {
        assert_eq!(
            signature_base(&parts, &inner_list(input, "s")),
            Err(want),
            "{input}"
        );
    }
    let hostless = Request::get("/x").body(()).unwrap();
    assert_eq!(
        signature_base(
            &RequestParts::from_request(&hostless, "https"),
            &inner_list(r#"s=("@authority")"#, "s")
        ),
        Err(BaseError::NoAuthority)
    );
    let repeated = Request::get("https://example.com/?a=1&b=2&a=3")
        .body(())
        .unwrap();
    let parts = RequestParts::from_request(&repeated, "https");
    assert_eq!(
        signature_base(&parts, &inner_list(r#"s=("@query-param";name="a")"#, "s")),
        Err(BaseError::QueryParam("names a parameter the query repeats"))
    );
    assert_eq!(
        signature_base(&parts, &inner_list(r#"s=("@query-param";name="c")"#, "s")),
        Err(BaseError::QueryParam(
            "names a parameter the query does not have"
        ))
    );
}
