//! The fixture binary over stdio: newline-delimited JSON-RPC on stdin/stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

#[test]
fn stdio_session_answers_calls_and_reports_no_headers() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike-fixture"))
        .arg("--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| {
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    };
    let mut recv = || -> Value {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };

    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
    );
    let init = recv();
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "turnpike-fixture");
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));

    send(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":-4,"b":10}}}),
    );
    let r = recv();
    assert_eq!(r["id"], 2);
    assert_eq!(r["result"]["content"][0]["text"], "6");

    send(
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
        "name":"slow","arguments":{"steps":2,"delay_ms":5},"_meta":{"progressToken":42}}}),
    );
    let p1 = recv();
    let p2 = recv();
    let done = recv();
    assert_eq!(p1["method"], "notifications/progress");
    assert_eq!(p1["params"]["progressToken"], 42);
    assert_eq!(p2["params"]["progress"], json!(2.0));
    assert_eq!(done["id"], 3);
    assert_eq!(done["result"]["content"][0]["text"], "done");

    send(
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"whoami","arguments":{}}}),
    );
    let w = recv();
    assert_eq!(w["result"]["structuredContent"]["transport"], "stdio");
    assert_eq!(w["result"]["structuredContent"]["headers"], json!({}));

    // Closing stdin ends the session and the process.
    drop(stdin);
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the fixture did not exit when stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
