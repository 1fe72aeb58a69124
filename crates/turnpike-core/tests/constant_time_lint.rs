//! A lint, run as a test: secrets are compared in constant time.
//!
//! Comparing a secret with `==` / `!=` can leak, through timing, how many leading bytes of a
//! guess were right. Every comparison of secret-bearing values in the workspace's non-test code
//! goes through `turnpike_core::ct_eq` (subtle). This test reads every `crates/*/src/**/*.rs`
//! (up to its `#[cfg(test)]` module) and fails on a `==` or `!=` with an operand whose name says
//! it carries a secret: a MAC tag, a signature, a preimage, a root key, a secret, a password, an
//! API key, a macaroon, a rune, a DPoP `ath` / `jkt` / thumbprint, a session id.
//!
//! A hit that compares something public (a length, a constant, a payment hash) goes into
//! `ALLOWED` with the reason; anything else must be rewritten with `turnpike_core::ct_eq`.

use std::path::{Path, PathBuf};

/// Operand names (or name parts) that carry secrets.
const SECRET_NAMES: &[&str] = &[
    "tag",
    "tags",
    "signature",
    "sig",
    "preimage",
    "root_key",
    "rootkey",
    "secret",
    "password",
    "api_key",
    "macaroon",
    "macaroon_hex",
    "rune",
    "ath",
    "jkt",
    "thumbprint",
    "session_id",
    "hmac",
    "mac",
];

/// `(file path suffix, code on the line, reason)`: reviewed comparisons of non-secret values.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "turnpike-evm/src/evm.rs",
        "sig.v != 27 && sig.v != 28",
        "the recovery byte of an ECDSA signature the payer published: a public value checked for \
         range, not a secret",
    ),
    (
        "turnpike-evm/src/token.rs",
        "evm::recover(&digest, sig) == Some(a.from)",
        "the address recovered from a public signature against the payer's public address in the \
         same payload: nothing secret is compared",
    ),
    (
        "turnpike-x402/src/rail.rs",
        "name != wire::SIGNATURE_HEADER",
        "a header name against a constant: not a secret",
    ),
    (
        "turnpike-client/src/client.rs",
        "t.macaroon != mac",
        "the client removing its own stored credential from its credential file: no secret is \
         checked against an attacker's guess",
    ),
    (
        "turnpike-pow/src/load.rs",
        "cur >> 32 == tag",
        "the effort controller's packed generation counter, not a MAC tag",
    ),
    (
        "turnpike-l402/src/caveat.rs",
        "if key == PREIMAGE || out.iter().any(|(k, _)| k == key) {",
        "a caveat's condition (its key, public text) against the constant `preimage`, to leave \
         that caveat out of what the access policy reads: no preimage is compared",
    ),
    (
        "turnpike-l402/src/macaroon.rs",
        "t != FIELD_SIGNATURE",
        "the field type byte of the V2 encoding, a constant",
    ),
    (
        "turnpike-webbotauth/src/directory.rs",
        "k.thumbprint == keyid",
        "the key id a signed request names, looked up among the directory's public keys' \
         thumbprints: both public",
    ),
    (
        "turnpike-webbotauth/src/verifier.rs",
        "i.bare == BareItem::String(\"signature-agent\"",
        "a covered component's name, matched against a constant header name",
    ),
    (
        "turnpike-webbotauth/src/verifier.rs",
        "if tag == TAG",
        "the signature's `tag` parameter (the application it is for, `web-bot-auth`), a public \
         label, not a MAC tag",
    ),
];

fn sources(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                // Only `src` trees of crates: tests may compare whatever they like.
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !matches!(name, "tests" | "benches" | "examples" | "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.components().any(|c| c.as_os_str() == "src")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn is_operand_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '.' | '(' | ')' | '&' | '*' | '[' | ']' | ':' | '"')
}

/// The operand text right before `at` and right after `at + 2`.
fn operands(line: &str, at: usize) -> (String, String) {
    let before: String = line[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(|&c| is_operand_char(c))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let after: String = line[at + 2..]
        .trim_start()
        .chars()
        .take_while(|&c| is_operand_char(c))
        .collect();
    (before, after)
}

fn is_secret_operand(op: &str) -> bool {
    if op.ends_with("len()") || op.ends_with("is_empty()") {
        return false;
    }
    let t = op.trim_matches(|c| c == '(' || c == ')' || c == '&' || c == '*');
    if t.is_empty()
        || t.starts_with('"')
        || t.chars().next().is_some_and(|c| c.is_ascii_digit())
        || t == "None"
    {
        return false;
    }
    t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|s| !s.is_empty())
        .any(|seg| {
            let s = seg.to_ascii_lowercase();
            SECRET_NAMES.iter().any(|n| {
                s == *n || s.ends_with(&format!("_{n}")) || s.starts_with(&format!("{n}_"))
            })
        })
}

/// Every `==` / `!=` with a secret-bearing operand in one file's non-test code.
fn hits(path: &Path, text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        if raw.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let line = match raw.find("//") {
            Some(i) => &raw[..i],
            None => raw,
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i + 1 < bytes.len() {
            let op = &bytes[i..i + 2];
            let is_cmp = (op == b"==" || op == b"!=")
                && bytes.get(i + 2) != Some(&b'=')
                && (i == 0 || !matches!(bytes[i - 1], b'=' | b'<' | b'>' | b'!'));
            if is_cmp {
                let (l, r) = operands(line, i);
                for o in [l, r] {
                    if is_secret_operand(&o) {
                        out.push((n + 1, o, raw.trim().to_string()));
                    }
                }
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    let _ = path;
    out
}

#[test]
fn secrets_are_compared_in_constant_time() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = sources(&crates);
    assert!(
        files.len() > 50,
        "the lint found only {} source files",
        files.len()
    );
    let mut bad = Vec::new();
    let mut used = vec![false; ALLOWED.len()];
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source");
        let shown = f.to_string_lossy().replace('\\', "/");
        for (line, op, code) in hits(f, &text) {
            match ALLOWED
                .iter()
                .position(|(file, c, _)| shown.ends_with(file) && code.contains(c))
            {
                Some(i) => used[i] = true,
                None => bad.push(format!("{shown}:{line}: `{op}` in `{code}`")),
            }
        }
    }
    assert!(
        bad.is_empty(),
        "secret-bearing values compared with == / != (use turnpike_core::ct_eq, or add a \
         reviewed entry to ALLOWED with the reason the value is public):\n{}",
        bad.join("\n")
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|((f, o, _), _)| format!("{f}: {o}"))
        .collect();
    // Not a failure (the code they excused may simply have gone), but worth pruning.
    if !stale.is_empty() {
        eprintln!("ALLOWED entries that match nothing any more: {stale:?}");
    }
}

#[test]
fn the_lint_catches_what_it_should() {
    let code = "fn f() {\n    if tag == expected { }\n    if a.signature != b { }\n    if sig.len() == 64 { }\n    if x == 3 { }\n    if ct_eq(&tag, &t) { }\n    if token.tag() == other.tag() { }\n}\n#[cfg(test)]\nmod tests { fn g() { assert!(tag == t); } }\n";
    let found: Vec<usize> = hits(Path::new("x.rs"), code).iter().map(|h| h.0).collect();
    assert_eq!(found, vec![2, 3, 7, 7]);
}
