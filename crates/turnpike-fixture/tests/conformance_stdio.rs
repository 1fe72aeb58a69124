//! The `--conformance` fixture in a 2025 session (over stdio): the tools that answer
//! `input_required` to 2026-07-28 requests ask the same questions with server-to-client
//! requests instead, and end with the same result.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

struct Session {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Session {
    /// Starts `turnpike-fixture --stdio --conformance` and initializes a 2025-11-25 session
    /// whose client can answer elicitation, sampling and roots requests.
    fn start() -> Session {
        let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike-fixture"))
            .args(["--stdio", "--conformance"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Session { child, stdin, out };
        s.send(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25",
            "capabilities":{"elicitation":{},"sampling":{},"roots":{}},
            "clientInfo":{"name":"t","version":"1"}}}),
        );
        let init = s.recv();
        let caps = &init["result"]["capabilities"];
        assert_eq!(caps["resources"]["subscribe"], true, "{init}");
        assert_eq!(caps["prompts"]["listChanged"], true, "{init}");
        assert!(caps["completions"].is_object(), "{init}");
        s.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        s
    }

    fn send(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Sends request `id`, answering every server-to-client request with `answer(method,
    /// params)` until the response to `id` comes; returns it and the methods asked, in order.
    fn request(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
        answer: impl Fn(&str, &Value) -> Value,
    ) -> (Value, Vec<String>) {
        self.send(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}));
        let mut asked = Vec::new();
        loop {
            let m = self.recv();
            if m["id"] == id && m.get("method").is_none() {
                return (m, asked);
            }
            if let (Some(method), Some(rid)) = (m["method"].as_str(), m.get("id")) {
                asked.push(method.to_owned());
                let result = answer(method, &m["params"]);
                self.send(json!({"jsonrpc":"2.0","id":rid,"result":result}));
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that answers like the conformance suite's mock responses.
fn suite_client(method: &str, params: &Value) -> Value {
    match method {
        "elicitation/create" => {
            let props = &params["requestedSchema"]["properties"];
            if props.get("color").is_some() {
                json!({"action":"accept","content":{"color":"blue"}})
            } else if props.get("ok").is_some() {
                json!({"action":"accept","content":{"ok":true}})
            } else if props.get("context").is_some() {
                json!({"action":"accept","content":{"context":"test context"}})
            } else {
                json!({"action":"accept","content":{"name":"Alice"}})
            }
        }
        "sampling/createMessage" => json!({"role":"assistant",
            "content":{"type":"text","text":"Hello there!"},"model":"test-model","stopReason":"endTurn"}),
        "roots/list" => json!({"roots":[{"uri":"file:///test/root","name":"Test Root"}]}),
        other => panic!("unexpected server request {other}"),
    }
}

fn call(name: &str) -> Value {
    json!({"name": name, "arguments": {}})
}

fn text(r: &Value) -> &str {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {r}"))
}

#[test]
fn input_required_tools_ask_with_server_requests_in_a_2025_session() {
    let mut s = Session::start();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "test_input_required_result_elicitation",
            &["elicitation/create"],
            "Hello, Alice!",
        ),
        (
            "test_input_required_result_sampling",
            &["sampling/createMessage"],
            "Sampling result: Hello there!",
        ),
        (
            "test_input_required_result_list_roots",
            &["roots/list"],
            "Found 1 root(s)",
        ),
        (
            "test_input_required_result_request_state",
            &["elicitation/create"],
            "state-ok: requestState validated",
        ),
        (
            "test_input_required_result_multi_round",
            &["elicitation/create", "elicitation/create"],
            "Multi-round complete for Alice who likes blue",
        ),
        (
            "test_input_required_result_tampered_state",
            &["elicitation/create"],
            "integrity-ok: state verified",
        ),
        // Task tools: no tasks in a 2025 session, the same questions and results.
        (
            "test_tool_with_task",
            &["elicitation/create"],
            "Hello, Alice!",
        ),
        (
            "multi_input",
            &["elicitation/create", "elicitation/create"],
            "Got Alice and Alice",
        ),
    ];
    for (i, (tool, methods, want)) in cases.iter().enumerate() {
        let (r, asked) = s.request(10 + i as u64, "tools/call", call(tool), suite_client);
        assert_eq!(text(&r), *want, "{tool}: {r}");
        assert_eq!(asked, *methods, "{tool}");
        assert!(r["result"].get("resultType").is_none(), "{tool}: {r}");
    }

    let keys = std::cell::RefCell::new(Vec::new());
    let (r, mut asked) = s.request(
        30,
        "tools/call",
        call("test_input_required_result_multiple_inputs"),
        |method, params| {
            // Each request names the key its 2026-07-28 variant uses.
            let key = params["_meta"]["turnpike-fixture/inputKey"].as_str();
            keys.borrow_mut().push(key.unwrap_or("").to_owned());
            suite_client(method, params)
        },
    );
    let mut keys = keys.into_inner();
    keys.sort();
    assert_eq!(keys, ["client_roots", "greeting", "user_name"]);
    assert_eq!(text(&r), "Name: Alice; Greeting: Hello there!; Roots: 1");
    asked.sort();
    assert_eq!(
        asked,
        ["elicitation/create", "roots/list", "sampling/createMessage"]
    );

    // The session declared elicitation and sampling: both are asked.
    let (r, asked) = s.request(
        31,
        "tools/call",
        call("test_input_required_result_capabilities"),
        suite_client,
    );
    assert_eq!(
        text(&r),
        "capabilities-ok: received elicit_input,sample_input"
    );
    assert_eq!(asked.len(), 2);

    let (r, asked) = s.request(
        32,
        "prompts/get",
        json!({"name": "test_input_required_result_prompt"}),
        suite_client,
    );
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"],
        "Prompt with context: test context"
    );
    assert_eq!(asked, ["elicitation/create"]);
}

#[test]
fn legacy_suite_tools_report_what_the_client_answered() {
    let mut s = Session::start();
    let (r, _) = s.request(
        2,
        "tools/call",
        json!({"name":"test_sampling","arguments":{"prompt":"Test prompt for sampling"}}),
        |method, params| {
            assert_eq!(method, "sampling/createMessage");
            assert_eq!(
                params["messages"][0]["content"]["text"],
                "Test prompt for sampling"
            );
            suite_client(method, params)
        },
    );
    assert_eq!(text(&r), "LLM response: Hello there!");

    let (r, _) = s.request(
        3,
        "tools/call",
        json!({"name":"test_elicitation_sep1034_defaults","arguments":{}}),
        |_, params| {
            let p = &params["requestedSchema"]["properties"];
            assert_eq!(p["name"]["default"], "John Doe");
            assert_eq!(p["age"]["default"], 30);
            assert_eq!(p["verified"]["default"], true);
            json!({"action":"decline"})
        },
    );
    assert_eq!(
        text(&r),
        "Elicitation completed: action=decline, content={}"
    );
}

#[test]
fn resources_prompts_completion_and_change_notifications() {
    let mut s = Session::start();
    let none = |m: &str, _: &Value| -> Value { panic!("unexpected server request {m}") };
    let (r, _) = s.request(2, "resources/list", json!({}), none);
    let uris: Vec<&str> = r["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        [
            "test://static-text",
            "test://static-binary",
            "test://watched-resource"
        ]
    );
    let (r, _) = s.request(
        3,
        "resources/read",
        json!({"uri":"test://template/7/data"}),
        none,
    );
    let body: Value =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["id"], "7");
    let (r, _) = s.request(4, "resources/read", json!({"uri":"test://nope"}), none);
    assert_eq!(r["error"]["data"]["uri"], "test://nope", "{r}");

    let (r, _) = s.request(
        5,
        "prompts/get",
        json!({"name":"test_prompt_with_arguments","arguments":{"arg1":"a","arg2":"b"}}),
        none,
    );
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='a', arg2='b'"
    );
    let (r, _) = s.request(
        6,
        "completion/complete",
        json!({"ref":{"type":"ref/prompt","name":"test_prompt_with_arguments"},
            "argument":{"name":"arg1","value":"testV"}}),
        none,
    );
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["testValue1", "testValue2"])
    );

    // Subscribed: the update of the watched resource arrives, after the list change.
    let (r, _) = s.request(
        7,
        "resources/subscribe",
        json!({"uri":"test://watched-resource"}),
        none,
    );
    assert!(r["result"].is_object(), "{r}");
    s.send(json!({"jsonrpc":"2.0","id":8,"method":"tools/call",
        "params":{"name":"test_trigger_resource_change","arguments":{}}}));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = s.recv();
        if let Some(method) = m["method"].as_str() {
            if method == "notifications/resources/updated" {
                assert_eq!(m["params"]["uri"], "test://watched-resource");
            }
            seen.push(method.to_owned());
        } else {
            assert_eq!(m["id"], 8);
            seen.push("result".to_owned());
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "notifications/resources/list_changed",
            "notifications/resources/updated",
            "result"
        ]
    );

    // Unsubscribed: only the list change.
    s.request(
        9,
        "resources/unsubscribe",
        json!({"uri":"test://watched-resource"}),
        none,
    );
    s.send(json!({"jsonrpc":"2.0","id":10,"method":"tools/call",
        "params":{"name":"test_trigger_resource_change","arguments":{}}}));
    s.send(json!({"jsonrpc":"2.0","id":11,"method":"tools/call",
        "params":{"name":"test_trigger_tool_change","arguments":{}}}));
    let mut methods = Vec::new();
    let mut results = 0;
    while results < 2 || methods.len() < 2 {
        let m = s.recv();
        match m["method"].as_str() {
            Some(method) => methods.push(method.to_owned()),
            None => results += 1,
        }
    }
    methods.sort();
    assert_eq!(
        methods,
        [
            "notifications/resources/list_changed",
            "notifications/tools/list_changed"
        ]
    );
}
