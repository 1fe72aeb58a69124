//! Parser differential: the gate and an independent JSON parser (CPython's `json`, which is what
//! a Python MCP server behind the gate parses with) must agree on the method, the tool name and
//! the arguments of every message the gate accepts.
//!
//! Messages are generated as text, with what makes parsers disagree: repeated keys (which the
//! gate must refuse), `\uXXXX` escapes (surrogate pairs included) and `\/`, raw non-ASCII, odd
//! whitespace, member order, integers at and past the 64-bit limits, exponents, negative zero,
//! long mantissas. Python runs as one child process for the whole test (`.venv/bin/python`, made
//! by scripts/setup-test-deps; `python3` otherwise).
//!
//! Values are compared exactly: strings, booleans, null, arrays, objects (as key sets), integers
//! as decimal text, floats by their IEEE-754 bits. One spelling is read differently and allowed:
//! the integer literal `-0` is `-0.0` to serde_json and `0` to Python (zero either way).

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use proptest::prelude::*;
use serde_json::{json, Value};
use turnpike_mcp::{call_name, parse_message, EnvelopeError};

const PEER: &str = r#"
import base64, json, struct, sys

def tag(v):
    if v is None: return ["n"]
    if isinstance(v, bool): return ["b", v]
    if isinstance(v, int): return ["i", str(v)]
    if isinstance(v, float): return ["f", struct.pack(">d", v).hex()]
    if isinstance(v, str): return ["s", v]
    if isinstance(v, list): return ["a", [tag(x) for x in v]]
    if isinstance(v, dict): return ["o", [[k, tag(v[k])] for k in sorted(v)]]
    return ["?", repr(v)]

NAME_KEY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
            "resources/subscribe": "uri", "resources/unsubscribe": "uri"}

for line in sys.stdin:
    raw = base64.b64decode(line.strip())
    try:
        m = json.loads(raw)
    except Exception as e:
        print(json.dumps({"ok": False, "error": str(e)}), flush=True)
        continue
    out = {"ok": True}
    if isinstance(m, dict):
        method = m.get("method")
        out["method"] = method if isinstance(method, str) else None
        params = m.get("params")
        name = None
        args = None
        if isinstance(params, dict):
            k = NAME_KEY.get(method) if isinstance(method, str) else None
            if k is not None and isinstance(params.get(k), str):
                name = params[k]
            if "arguments" in params:
                args = tag(params["arguments"])
        out["name"] = name
        out["arguments"] = args
    print(json.dumps(out), flush=True)
"#;

struct Peer {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

static PEER_PROC: Mutex<Option<Peer>> = Mutex::new(None);

fn ask(body: &[u8]) -> Value {
    use base64::Engine;
    let mut guard = PEER_PROC.lock().unwrap_or_else(|e| e.into_inner());
    let peer = guard.get_or_insert_with(|| {
        let mut child = Command::new(python())
            .arg("-c")
            .arg(PEER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Peer {
            _child: child,
            stdin,
            stdout,
        }
    });
    let line = base64::engine::general_purpose::STANDARD.encode(body);
    writeln!(peer.stdin, "{line}").expect("write to python");
    peer.stdin.flush().expect("flush");
    let mut answer = String::new();
    peer.stdout
        .read_line(&mut answer)
        .expect("read from python");
    serde_json::from_str(&answer).expect("python answers JSON")
}

/// The gate's values in the peer's tagged form.
fn tag(v: &Value) -> Value {
    match v {
        Value::Null => json!(["n"]),
        Value::Bool(b) => json!(["b", b]),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(["i", i.to_string()])
            } else if let Some(u) = n.as_u64() {
                json!(["i", u.to_string()])
            } else {
                let f = n.as_f64().expect("a finite number");
                json!(["f", format!("{:016x}", f.to_bits())])
            }
        }
        Value::String(s) => json!(["s", s]),
        Value::Array(a) => json!(["a", a.iter().map(tag).collect::<Vec<_>>()]),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            json!([
                "o",
                keys.iter()
                    .map(|k| json!([k, tag(&o[*k])]))
                    .collect::<Vec<_>>()
            ])
        }
    }
}

// ---- generators: JSON text --------------------------------------------------------------------

fn ws() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(&[" ", "\t", "\n", "\r", ""][..]),
        0..3,
    )
    .prop_map(|v| v.concat())
}

/// A JSON string literal for `s`, each character written plainly or as an escape.
fn encode_str(s: &str, style: &[u8]) -> String {
    let mut out = String::from("\"");
    for (i, ch) in s.chars().enumerate() {
        let pick = style.get(i % style.len().max(1)).copied().unwrap_or(0) % 4;
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if pick == 1 => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if pick == 2 || pick == 3 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    if pick == 2 {
                        out.push_str(&format!("\\u{unit:04x}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04X}"));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/_]{0,8}",
        "\\PC{0,8}",
        proptest::collection::vec(
            proptest::sample::select(
                &[
                    'é',
                    '😀',
                    '\u{2028}',
                    '\u{fffd}',
                    '\u{0}',
                    '\u{1f}',
                    '\\',
                    '"',
                    '/',
                    'a',
                    'Ω',
                    '\u{10ffff}'
                ][..]
            ),
            0..6
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

fn string_lit() -> impl Strategy<Value = String> {
    (text(), proptest::collection::vec(any::<u8>(), 1..4)).prop_map(|(s, st)| encode_str(&s, &st))
}

fn number_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        proptest::sample::select(
            &[
                "0",
                "-0",
                "0.0",
                "-0.0",
                "1e2",
                "1E+2",
                "1e-2",
                "-1.5e-7",
                "9007199254740993",
                "18446744073709551615",
                "18446744073709551616",
                "-9223372036854775808",
                "-9223372036854775809",
                "123456789012345678901234567890",
                "1.7976931348623157e308",
                "5e-324",
                "2.2250738585072011e-308",
                "0.1",
                "100000000000000000000",
                "1e400",
                "1e-400",
            ][..]
        )
        .prop_map(str::to_string),
        (
            "-?[1-9][0-9]{0,25}",
            "[0-9]{1,25}",
            proptest::option::of(-320i32..320)
        )
            .prop_map(|(i, f, e)| {
                match e {
                    Some(e) => format!("{i}.{f}e{e}"),
                    None => format!("{i}.{f}"),
                }
            }),
    ]
}

fn value_lit() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        number_lit(),
        string_lit(),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (proptest::collection::vec((inner.clone(), ws()), 0..4)).prop_map(|v| {
                let items: Vec<String> = v.into_iter().map(|(x, w)| format!("{w}{x}{w}")).collect();
                format!("[{}]", items.join(","))
            }),
            object_lit(inner),
        ]
    })
}

/// An object with generated members; now and then one key is repeated.
fn object_lit(inner: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(
            (text(), proptest::collection::vec(any::<u8>(), 1..3), inner),
            0..4,
        ),
        ws(),
        proptest::option::weighted(
            0.1,
            (
                any::<prop::sample::Index>(),
                proptest::collection::vec(any::<u8>(), 1..3),
            ),
        ),
    )
        .prop_map(|(members, w, dup)| {
            let mut seen = std::collections::BTreeSet::new();
            let mut parts = Vec::new();
            for (k, style, v) in &members {
                if seen.insert(k.clone()) {
                    parts.push(format!("{w}{}{w}:{w}{v}", encode_str(k, style)));
                }
            }
            if let (Some((i, style)), false) = (dup, members.is_empty()) {
                let (k, _, v) = &members[i.index(members.len())];
                // The same key, possibly spelled with other escapes.
                parts.push(format!("{}:{v}", encode_str(k, &style)));
            }
            format!("{{{}}}", parts.join(","))
        })
}

const METHOD_NAMES: &[&str] = &[
    "tools/call",
    "prompts/get",
    "resources/read",
    "tools/list",
    "initialize",
    "ping",
];

/// A whole JSON-RPC request: members in random order with random whitespace and escapes, and
/// sometimes a repeated top-level or `params` key.
fn message() -> impl Strategy<Value = (String, bool)> {
    (
        proptest::sample::select(METHOD_NAMES),
        proptest::collection::vec(any::<u8>(), 1..4),
        text(),
        proptest::collection::vec(any::<u8>(), 1..4),
        value_lit(),
        proptest::sample::select(&["1", "\"x\"", "0", "-1", "1.5", "\"\\u0031\""][..]),
        ws(),
        any::<bool>(),
        any::<prop::sample::Index>(),
        proptest::option::weighted(0.15, 0u8..4),
        proptest::bool::weighted(0.7),
    )
        .prop_map(
            |(method, mstyle, name, nstyle, args, id, w, args_obj, order, dup, use_uri)| {
                let name_key = if method.starts_with("resources/") && use_uri {
                    "uri"
                } else {
                    "name"
                };
                let args = if args_obj && !args.starts_with('{') {
                    format!("{{\"v\":{args}}}")
                } else {
                    args
                };
                let mut params = vec![
                    format!("{w}\"{name_key}\"{w}:{w}{}", encode_str(&name, &nstyle)),
                    format!("\"arguments\":{w}{args}"),
                ];
                let mut top = vec![
                    format!("\"jsonrpc\":{w}\"2.0\""),
                    format!("{w}\"id\":{id}"),
                    format!("\"method\":{}", encode_str(method, &mstyle)),
                ];
                let mut dup_injected = false;
                match dup {
                    Some(0) => {
                        top.push(format!("\"method\":{}", encode_str("tools/call", &mstyle)));
                        dup_injected = true;
                    }
                    Some(1) => {
                        params.push(format!("\"{name_key}\":\"other\""));
                        dup_injected = true;
                    }
                    Some(2) => {
                        params.push("\"argu\\u006dents\":{}".to_string());
                        dup_injected = true;
                    }
                    _ => {}
                }
                let i = order.index(params.len());
                params.rotate_left(i);
                top.push(format!("\"params\":{w}{{{}}}{w}", params.join(",")));
                let j = order.index(top.len());
                top.rotate_left(j);
                (format!("{w}{{{}}}{w}", top.join(",")), dup_injected)
            },
        )
}

fn check(body: &str, dup_injected: bool) -> Result<(), TestCaseError> {
    let gate = parse_message(body.as_bytes());
    if dup_injected {
        // Refused: for the repeated key, or for something else wrong earlier in the text.
        prop_assert!(gate.is_err(), "a repeated key was not refused: {}", body);
        if !matches!(gate, Err(EnvelopeError::DuplicateKey(_))) {
            prop_assert!(
                matches!(
                    gate,
                    Err(EnvelopeError::Parse(_) | EnvelopeError::Invalid(_))
                ),
                "{} -> {:?}",
                body,
                gate
            );
        }
        return Ok(());
    }
    let Ok(msg) = gate else {
        return Ok(());
    };
    let py = ask(body.as_bytes());
    prop_assert_eq!(
        &py["ok"],
        &json!(true),
        "the gate accepted what Python refuses: {}",
        body
    );
    prop_assert_eq!(
        py["method"].as_str(),
        msg.method(),
        "method differs: {}",
        body
    );
    prop_assert_eq!(
        py["name"].as_str(),
        call_name(&msg),
        "name differs: {}",
        body
    );
    let gate_args = msg.params().and_then(|p| p.get("arguments")).map(tag);
    let py_args = if py["arguments"].is_null() {
        None
    } else {
        Some(py["arguments"].clone())
    };
    let agree = match (&gate_args, &py_args) {
        (Some(g), Some(p)) => same(g, p),
        (None, None) => true,
        _ => false,
    };
    prop_assert!(
        agree,
        "arguments differ: {}\n gate:   {:?}\n python: {:?}",
        body,
        gate_args,
        py_args
    );
    Ok(())
}

/// Tagged values equal, but for the integer literal `-0` (see the module docs).
fn same(gate: &Value, py: &Value) -> bool {
    if gate == py {
        return true;
    }
    if *gate == json!(["f", "8000000000000000"]) && *py == json!(["i", "0"]) {
        return true;
    }
    match (gate[0].as_str(), py[0].as_str()) {
        (Some("a"), Some("a")) => {
            let (Some(g), Some(p)) = (gate[1].as_array(), py[1].as_array()) else {
                return false;
            };
            g.len() == p.len() && g.iter().zip(p).all(|(a, b)| same(a, b))
        }
        (Some("o"), Some("o")) => {
            let (Some(g), Some(p)) = (gate[1].as_array(), py[1].as_array()) else {
                return false;
            };
            g.len() == p.len()
                && g.iter()
                    .zip(p)
                    .all(|(a, b)| a[0] == b[0] && same(&a[1], &b[1]))
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1_500,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn gate_and_python_agree_on_accepted_messages((body, dup) in message()) {
        check(&body, dup)?;
    }
}

#[test]
fn known_hard_cases() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e\u0063ho","arguments":{"a\/b":"\ud83d\ude00"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"arguments":{"n":2.2250738585072011e-308},"name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"n":-0,"m":-0.0,"k":1E+2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"n":18446744073709551615,"m":-9223372036854775808}}}"#,
    ] {
        check(body, false).unwrap();
    }
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"free","n\u0061me":"dear"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}"#,
    ] {
        check(body, true).unwrap();
    }
}

/// The differential only compares what the gate accepts: most generated messages must be
/// accepted, or the property would hold vacuously.
#[test]
fn most_generated_messages_are_accepted() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = message();
    let (mut accepted, mut total) = (0, 0);
    for _ in 0..1_000 {
        let (body, dup) = strategy.new_tree(&mut runner).expect("a value").current();
        total += 1;
        if !dup && parse_message(body.as_bytes()).is_ok() {
            accepted += 1;
        }
    }
    eprintln!("{accepted} of {total} generated messages accepted");
    assert!(
        accepted * 2 >= total,
        "only {accepted} of {total} generated messages are accepted"
    );
}
