//! The stdio upstream in front of a tiny stdio "server" written inline in Python, for the cases
//! a well-behaved server does not produce: garbage on stdout, over-long lines, crashes, a
//! refused or never-answered `initialize`, a command that does not exist.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "stdio_support.rs"]
mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use support::*;
use turnpike_core::error_codes::UPSTREAM_FAILED;
use turnpike_gateway::upstream::stdio::StdioConfig;

/// Answers requests by method:
/// - `initialize`: a result (an error when `params.fail` is set), after a garbage line;
/// - `crash`: exits with status 3 without answering;
/// - `big`: a 17 MiB line, then a result;
/// - `garbage`: lines that are not JSON-RPC objects, then a result;
/// - `silent`: never answers;
/// - `notify`: a server notification, then a result;
/// - anything else: a result echoing the params.
///
/// Every message is also logged to stderr. With `STUBBORN` set in its environment it ignores
/// SIGTERM and keeps running after its stdin closes.
const SERVER: &str = r#"
import json, os, signal, sys, time
if os.environ.get("STUBBORN"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    if not line.strip():
        continue
    m = json.loads(line)
    meth, i = m.get("method"), m.get("id")
    sys.stderr.write("SECRET-STDERR got %s\n" % meth); sys.stderr.flush()
    if i is None:
        continue
    if meth == "initialize":
        sys.stdout.write("this line is not json\n")
        if m["params"].get("fail"):
            send({"jsonrpc": "2.0", "id": i, "error": {"code": -32602, "message": "refused"}})
        else:
            send({"jsonrpc": "2.0", "id": i, "result": {"protocolVersion": "2025-11-25",
                  "capabilities": {}, "serverInfo": {"name": "inline", "version": "0"}}})
    elif meth == "crash":
        sys.exit(3)
    elif meth == "big":
        sys.stdout.write("x" * (17 * 1024 * 1024) + "\n")
        send({"jsonrpc": "2.0", "id": i, "result": {"after": "big"}})
    elif meth == "garbage":
        sys.stdout.write("{broken\n[1, 2]\n\n   \n\"str\"\n")
        send({"jsonrpc": "2.0", "id": i, "result": {"after": "garbage"}})
    elif meth == "silent":
        pass
    elif meth == "notify":
        send({"jsonrpc": "2.0", "method": "notifications/message",
              "params": {"level": "info", "data": "hello"}})
        send({"jsonrpc": "2.0", "id": i, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": i, "result": {"echo": m.get("params")}})
if os.environ.get("STUBBORN"):
    while True:
        time.sleep(1)
"#;

fn inline_config() -> StdioConfig {
    StdioConfig::new(["python3", "-u", "-c", SERVER])
}

fn call(id: u64, method: &str) -> serde_json::Value {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":{}})
}

#[tokio::test]
async fn garbage_and_long_lines_are_skipped_and_stderr_stays_private() {
    let gw = Gateway::start(inline_config()).await;
    let sid = gw.open_session(json!({})).await;

    let r = gw.post(Some(&sid), ACCEPT_JSON, &call(2, "garbage")).await;
    assert_eq!(r.json()["result"]["after"], "garbage");
    let r = gw.post(Some(&sid), ACCEPT_BOTH, &call(3, "big")).await;
    assert_eq!(r.message()["result"]["after"], "big");
    assert!(r.body.len() < 1024, "the long line was not forwarded");
    let r = gw.post(Some(&sid), ACCEPT_JSON, &call(4, "other")).await;
    assert_eq!(r.json()["id"], 4);
    assert!(!String::from_utf8_lossy(&r.body).contains("SECRET-STDERR"));
}

#[tokio::test]
async fn a_crash_fails_pending_requests_and_ends_the_session() {
    let gw = Gateway::start(inline_config()).await;
    let sid = gw.open_session(json!({})).await;
    let pid = gw.upstream.child_pid(&sid).unwrap();

    // A request the child will never answer, streamed, is failed by the crash too.
    let mut silent = gw.post_sse(Some(&sid), &call(2, "silent")).await;
    let started = Instant::now();
    let crash = gw.post(Some(&sid), ACCEPT_JSON, &call(3, "crash")).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(crash.status, StatusCode::OK);
    let body = crash.json();
    assert_eq!(body["id"], 3);
    assert_eq!(body["error"]["code"], UPSTREAM_FAILED);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exited") && message.contains("exit status: 3"),
        "{message}"
    );

    let ev = silent.next_within(Duration::from_secs(3)).await.unwrap();
    assert_eq!(ev["id"], 2);
    assert_eq!(ev["error"]["code"], UPSTREAM_FAILED);
    assert!(silent.next_within(Duration::from_secs(2)).await.is_none());

    wait_gone(pid, Duration::from_secs(5)).await;
    let after = gw.post(Some(&sid), ACCEPT_JSON, &call(4, "x")).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    let note = gw.post(Some(&sid), ACCEPT_JSON, &initialized()).await;
    assert_eq!(note.status, StatusCode::NOT_FOUND);

    let fresh = gw.open_session(json!({})).await;
    assert_ne!(gw.upstream.child_pid(&fresh).unwrap(), pid);
}

#[tokio::test]
async fn a_refused_initialize_gives_no_session() {
    let gw = Gateway::start(inline_config()).await;
    let mut init = initialize(1, json!({}));
    init["params"]["fail"] = json!(true);
    let r = gw.post(None, ACCEPT_JSON, &init).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.session_id().is_none());
    assert_eq!(r.json()["error"]["message"], "refused");
    wait_until("the child is ended", Duration::from_secs(5), || {
        gw.upstream.session_count() == 0
    })
    .await;
}

#[tokio::test]
async fn a_child_that_exits_or_cannot_start_gives_502() {
    let gw = Gateway::start(StdioConfig::new(["sh", "-c", "echo starting >&2; exit 7"])).await;
    let r = gw.post(None, ACCEPT_BOTH, &initialize(1, json!({}))).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.session_id().is_none());
    let body = r.json();
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["code"], UPSTREAM_FAILED);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exit status: 7"));
    assert_eq!(gw.upstream.session_count(), 0);

    let gw = Gateway::start(StdioConfig::new(["/nonexistent/turnpike-no-such-program"])).await;
    let r = gw.post(None, ACCEPT_JSON, &initialize(1, json!({}))).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be started"));
    assert_eq!(gw.upstream.session_count(), 0);
}

#[tokio::test]
async fn requests_are_matched_by_id_with_several_in_flight() {
    let gw = Gateway::start(inline_config()).await;
    let sid = gw.open_session(json!({})).await;
    let reqs: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                json!({"jsonrpc":"2.0","id":i,"method":"m","params":{"n":i}})
            } else {
                json!({"jsonrpc":"2.0","id":i.to_string(),"method":"m","params":{"n":i}})
            }
        })
        .collect();
    let answers =
        futures_util::future::join_all(reqs.iter().map(|r| gw.post(Some(&sid), ACCEPT_JSON, r)))
            .await;
    for (req, ans) in reqs.iter().zip(answers) {
        let v = ans.json();
        assert_eq!(v["id"], req["id"]);
        assert_eq!(v["result"]["echo"]["n"], req["params"]["n"]);
    }
}

#[tokio::test]
async fn a_cancelled_request_ends_its_stream_and_notifications_are_routed() {
    let gw = Gateway::start(inline_config()).await;
    let sid = gw.open_session(json!({})).await;
    let mut silent = gw.post_sse(Some(&sid), &call(7, "silent")).await;
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
                        "params":{"requestId": 7, "reason": "test"}});
    assert_eq!(
        gw.post(Some(&sid), ACCEPT_BOTH, &cancel).await.status,
        StatusCode::ACCEPTED
    );
    assert!(silent.next_within(Duration::from_secs(3)).await.is_none());

    // A notification written while one streamed request is in flight belongs to it.
    let mut s = gw.post_sse(Some(&sid), &call(8, "notify")).await;
    let first = s.next_within(Duration::from_secs(3)).await.unwrap();
    assert_eq!(first["method"], "notifications/message");
    let second = s.next_within(Duration::from_secs(3)).await.unwrap();
    assert_eq!(second["id"], 8);
    assert!(s.next_within(Duration::from_secs(2)).await.is_none());
}

#[tokio::test]
async fn idle_timeout_spares_sessions_with_a_request_in_flight() {
    let mut config = inline_config();
    config.idle_timeout = Duration::from_millis(500);
    let gw = Gateway::start(config).await;
    let sid = gw.open_session(json!({})).await;
    let silent = gw.post_sse(Some(&sid), &call(2, "silent")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gw.upstream.session_count(), 1, "busy sessions are not idle");
    // Once the client goes away the request no longer counts.
    drop(silent);
    wait_until("idle session ended", Duration::from_secs(5), || {
        gw.upstream.session_count() == 0
    })
    .await;
}

#[tokio::test]
async fn malformed_posts_are_refused() {
    let gw = Gateway::start(inline_config()).await;
    let sid = gw.open_session(json!({})).await;

    let batch = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &json!([call(1, "a"), call(2, "b")]),
        )
        .await;
    assert_eq!(batch.status, StatusCode::BAD_REQUEST);
    assert_eq!(batch.json()["error"]["code"], -32600);

    let not_rpc = gw.post(Some(&sid), ACCEPT_JSON, &json!({"hello": 1})).await;
    assert_eq!(not_rpc.status, StatusCode::BAD_REQUEST);

    let dup_a = gw.post_sse(Some(&sid), &call(5, "silent")).await;
    let dup_b = gw.post(Some(&sid), ACCEPT_JSON, &call(5, "x")).await;
    assert_eq!(dup_b.status, StatusCode::BAD_REQUEST);
    drop(dup_a);

    let missing = gw
        .send(Method::GET, None, "text/event-stream", None, &[])
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let missing_del = gw.send(Method::DELETE, None, ACCEPT_BOTH, None, &[]).await;
    assert_eq!(missing_del.status, StatusCode::BAD_REQUEST);
}

/// The processes whose parent is `pid`, from `/proc/*/stat`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state, ppid, ...
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

#[tokio::test]
async fn a_wrapped_server_that_ignores_eof_and_sigterm_is_ended_with_its_group() {
    let mut config = StdioConfig::new(["sh", "-c", "python3 -u -c \"$1\"; exit 0", "sh", SERVER]);
    config.env.insert("STUBBORN".into(), "1".into());
    let gw = Gateway::start(config).await;
    let sid = gw.open_session(json!({})).await;
    let wrapper = gw.upstream.child_pid(&sid).unwrap();
    let server = children_of(wrapper);
    assert_eq!(server.len(), 1, "sh runs the server as its child");
    let server = server[0];
    assert!(alive(server));

    assert_eq!(gw.delete(&sid).await.status, StatusCode::OK);
    // The wrapper goes at SIGTERM, the server (which ignores it) with its group's SIGKILL.
    wait_gone(wrapper, Duration::from_secs(5)).await;
    wait_gone(server, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dropping_the_upstream_ends_a_wrapped_server_too() {
    let mut config = StdioConfig::new(["sh", "-c", "python3 -u -c \"$1\"; exit 0", "sh", SERVER]);
    config.env.insert("STUBBORN".into(), "1".into());
    let gw = Gateway::start(config).await;
    let sid = gw.open_session(json!({})).await;
    let wrapper = gw.upstream.child_pid(&sid).unwrap();
    let server = children_of(wrapper)[0];
    gw.stop().await;
    wait_gone(wrapper, Duration::from_secs(5)).await;
    wait_gone(server, Duration::from_secs(5)).await;
}
