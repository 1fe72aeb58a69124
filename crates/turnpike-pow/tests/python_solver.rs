//! The Python solver printed in docs/POW.md solves real challenges: the code block marked
//! ```` ```python title="solver.py" ```` is extracted, run with `python3` on a challenge minted
//! by `PowRail`, and its output verified by `PowRail`.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use turnpike_core::credential::split_scheme;
use turnpike_core::{CallFacts, Credential, Rail, Verdict};
use turnpike_pow::credential::parse_pow_params;
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

const FENCE: &str = "```python title=\"solver.py\"";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the rail's futures never wait with a memory store"),
    }
}

fn solver_source() -> String {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/POW.md");
    let text = std::fs::read_to_string(&doc)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
    let start = text
        .find(FENCE)
        .unwrap_or_else(|| panic!("docs/POW.md has no {FENCE} block"));
    let body = &text[start + FENCE.len()..];
    let body = body.strip_prefix('\n').unwrap_or(body);
    let end = body
        .find("\n```")
        .expect("the solver.py block in docs/POW.md is closed");
    format!("{}\n", &body[..end])
}

fn python3() -> &'static str {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 is needed to check the solver in docs/POW.md: install it (e.g. `apt-get install \
         python3`) and run the test again"
    );
    "python3"
}

fn run_solver(script: &std::path::Path, arg: &str) -> String {
    let out = Command::new(python3())
        .arg(script)
        .arg(arg)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "solver.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn documented_python_solver_passes_verification() {
    let src = solver_source();
    let code_lines = src
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    assert!(
        code_lines <= 20,
        "the documented solver should stay short: {code_lines} lines of code"
    );
    let dir = std::env::temp_dir().join(format!(
        "turnpike-python-solver-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("solver.py");
    std::fs::write(&script, &src).expect("write solver.py");

    let rail = PowRail::new(
        PowConfig::default(),
        KeyRing::from_secrets(vec![(1, [0x42; 32])]).expect("key ring"),
        Arc::new(MemorySpentSet::new()),
    );
    let call = CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("add".into()),
        args_hash: [5; 32],
        caller: None,
        peer: None,
        now: now(),
    };
    let offer = turnpike_pow::offer(40_000);

    // Given the whole WWW-Authenticate value (after an L402 challenge, as a gateway may send),
    // and given the bare token.
    for form in 0..2 {
        let ch = block_on(rail.challenge(&call, &offer)).expect("PoW offered");
        let arg = match form {
            0 => format!(
                "L402 macaroon=\"AgEEbHNhdA==\", invoice=\"lnbcrt1\", {}",
                ch.www_authenticate
            ),
            _ => ch.details["challenge"]
                .as_str()
                .expect("token string")
                .to_string(),
        };
        let printed = run_solver(&script, &arg);
        let (scheme, params) = split_scheme(&printed);
        assert_eq!(scheme, "PoW", "{printed}");
        let cred = parse_pow_params(params).unwrap_or_else(|e| panic!("{e}: {printed}"));
        assert_eq!(cred.solution.len(), 4);
        let cred = Credential::from(cred);
        let v = block_on(rail.verify(&call, &offer, &cred));
        assert!(matches!(v, Verdict::Pass(_)), "form {form}: {v:?}");
        let v = block_on(rail.verify(&call, &offer, &cred));
        assert!(matches!(v, Verdict::Stale(_)), "replayed: {v:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
