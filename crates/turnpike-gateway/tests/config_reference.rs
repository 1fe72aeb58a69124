//! The configuration as the documents show it cannot drift from the code that reads it:
//!
//! - every ```toml block in README.md and docs/*.md parses: a block with `[upstream]` or
//!   `[[mount]]` is a whole configuration; any other is a fragment, read beside a minimal
//!   `[upstream]` (so its keys and values are still checked); a block after a line
//!   `<!-- toml: syntax only -->` is checked as TOML only (a shape the gateway does not read);
//! - every key each section's serde type accepts (serde's own field list, see
//!   `config::reference_keys`) appears under that section's header in a block of the README's
//!   configuration reference or of the rail document it links to.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use turnpike_gateway::config;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documents: README.md and docs/*.md, with their text.
fn documents() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

struct Block {
    /// `file:line` of the opening fence.
    place: String,
    text: String,
    syntax_only: bool,
}

fn toml_blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    let mut previous = "";
    while let Some((i, line)) = lines.next() {
        if line.trim_start() == "```toml" {
            let indent = line.len() - line.trim_start().len();
            let mut body = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim_start() == "```" {
                    break;
                }
                body.push_str(l.get(indent..).unwrap_or(l.trim_start()));
                body.push('\n');
            }
            out.push(Block {
                place: format!("{file}:{}", i + 1),
                text: body,
                syntax_only: previous.trim() == "<!-- toml: syntax only -->",
            });
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    out
}

#[test]
fn every_configuration_in_the_documents_parses() {
    // What the documents' configurations read from the environment.
    for (var, value) in [
        ("TURNPIKE_ADMIN_TOKEN", "0123456789abcdef0123"),
        ("TURNPIKE_IDENTITY_SECRET", &"ab".repeat(32)),
        (
            "TURNPIKE_POSTGRES_URL",
            "postgres://turnpike@127.0.0.1:5432/turnpike",
        ),
        (
            "TURNPIKE_NWC_URI",
            "nostr+walletconnect://0000?relay=wss%3A%2F%2Frelay.example&secret=00",
        ),
    ] {
        std::env::set_var(var, value);
    }
    let mut failures = Vec::new();
    let mut count = 0;
    for (file, text) in documents() {
        for b in toml_blocks(&file, &text) {
            count += 1;
            if let Err(e) = toml::from_str::<toml::Table>(&b.text) {
                failures.push(format!("{}: not TOML: {e}", b.place));
                continue;
            }
            if b.syntax_only {
                continue;
            }
            let whole = b.text.contains("[upstream]") || b.text.contains("[[mount]]");
            let src = if whole {
                b.text.clone()
            } else {
                format!(
                    "{}\n[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n",
                    b.text
                )
            };
            if let Err(e) = config::parse(&src, &b.place) {
                failures.push(e.to_string());
            }
        }
    }
    assert!(count > 10, "found only {count} blocks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The keys each section shows in the documents' blocks, commented-out lines included.
fn documented_keys() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in documents() {
        for b in toml_blocks(&file, &text) {
            let mut section = String::new();
            for line in b.text.lines() {
                let l = line.trim_start_matches(['#', ' ']).trim_end();
                if let Some(h) = l.strip_prefix('[') {
                    let name = h.trim_start_matches('[');
                    if let Some(end) = name.find(']') {
                        section = name[..end].trim().to_string();
                        // `[limits.tools."x"]` shows the key `tools` of [limits].
                        let parts: Vec<&str> = section.split('.').collect();
                        for i in 1..parts.len() {
                            out.entry(parts[..i].join("."))
                                .or_default()
                                .insert(parts[i].to_string());
                        }
                        continue;
                    }
                }
                let Some((key, _)) = l.split_once('=') else {
                    continue;
                };
                let key = key.trim();
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
                {
                    continue;
                }
                out.entry(section.clone())
                    .or_default()
                    .insert(key.to_string());
            }
        }
    }
    out
}

#[test]
fn every_key_the_code_reads_is_in_the_reference() {
    let documented = documented_keys();
    let mut missing = Vec::new();
    for (section, keys) in config::reference_keys() {
        assert!(!keys.is_empty(), "serde gave no keys for [{section}]");
        // One backend's keys are documented under [lightning].
        let header = section.split(" (").next().unwrap_or(&section);
        let shown = documented.get(header);
        for k in keys {
            if !shown.is_some_and(|s| s.contains(k)) {
                missing.push(format!("[{section}] {k}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys read by the code but shown in no configuration block of README.md or docs/*.md:\n{}",
        missing.join("\n")
    );
}
