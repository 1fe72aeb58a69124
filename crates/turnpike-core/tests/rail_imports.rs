//! A lint, run as a test: no rail imports another rail (docs/ARCHITECTURE.md). What two rails
//! share lives in a crate of its own below them (turnpike-evm: the EIP-3009 code of x402 and
//! MPP's `evm` method; turnpike-lightning: the node of L402 and MPP's Lightning method).
//!
//! This test reads the `[dependencies]` of every rail crate's `Cargo.toml` and fails when one
//! names another rail crate.

use std::path::PathBuf;

/// The crates that are rails.
const RAILS: &[&str] = &[
    "turnpike-pow",
    "turnpike-l402",
    "turnpike-mpp",
    "turnpike-x402",
    "turnpike-oauth",
    "turnpike-webbotauth",
];

/// The crate names in the `[dependencies]` table of `manifest` (the lines up to the next table).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            inside = l == "[dependencies]";
            continue;
        }
        if inside {
            if let Some((name, _)) = l.split_once(['=', '.']) {
                let name = name.trim();
                if !name.is_empty() && !name.starts_with('#') {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn no_rail_imports_another_rail() {
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for rail in RAILS {
        let path = crates.join(rail).join("Cargo.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let deps = dependencies(&text);
        assert!(
            deps.iter().any(|d| d == "turnpike-core"),
            "{rail}: its dependencies were not read ({deps:?})"
        );
        for d in deps {
            if RAILS.contains(&d.as_str()) && d != *rail {
                found.push(format!("{rail} imports {d}"));
            }
        }
    }
    assert!(found.is_empty(), "a rail imports another: {found:?}");
}

#[test]
fn reads_a_dependencies_table() {
    let m = "[package]\nname = \"x\"\n\n[dependencies]\nturnpike-core.workspace = true\nserde = { version = \"1\" }\n# turnpike-x402 = {}\n\n[dev-dependencies]\nturnpike-x402.workspace = true\n";
    assert_eq!(dependencies(m), ["turnpike-core", "serde"]);
}
