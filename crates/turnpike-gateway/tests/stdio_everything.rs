//! The stdio upstream in front of a real stdio MCP server: `@modelcontextprotocol/server-everything`
//! (npm), run with `node` in its default stdio mode, driven over real HTTP.

#[path = "stdio_support.rs"]
mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use turnpike_core::error_codes::UPSTREAM_FAILED;
use turnpike_gateway::upstream::stdio::{StdioBudget, StdioLimits};

#[tokio::test]
async fn session_lifecycle_tools_and_delete() {
    let gw = Gateway::start(everything_config()).await;

    // initialize, answered as JSON when only JSON is accepted.
    let init = gw.post(None, ACCEPT_JSON, &initialize(1, json!({}))).await;
    assert_eq!(init.status, StatusCode::OK);
    assert!(init.content_type().starts_with("application/json"));
    let sid = init.session_id().expect("session id");
    assert!(sid.len() >= 22, "at least 128 bits: {sid}");
    assert!(sid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    let body = init.json();
    assert_eq!(body["id"], 1);
    assert_eq!(
        body["result"]["serverInfo"]["name"],
        "mcp-servers/everything"
    );
    let pid = gw
        .upstream
        .child_pid(&sid)
        .expect("a child for the session");
    assert!(alive(pid));

    // notifications/initialized: 202, no body.
    let note = gw.post(Some(&sid), ACCEPT_BOTH, &initialized()).await;
    assert_eq!(note.status, StatusCode::ACCEPTED);
    assert!(note.body.is_empty());

    // tools/list as JSON.
    let list = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let tools = list.json();
    assert_eq!(tools["id"], 2);
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(
        names.contains(&"trigger-long-running-operation"),
        "{names:?}"
    );

    // tools/call echo, answered as SSE when SSE is accepted.
    let echo = gw
        .post(
            Some(&sid),
            ACCEPT_BOTH,
            &tool_call(3, "echo", json!({"message": "over the turnpike"})),
        )
        .await;
    assert_eq!(echo.status, StatusCode::OK);
    assert!(echo.content_type().starts_with("text/event-stream"));
    let msg = echo.message();
    assert_eq!(msg["id"], 3);
    assert_eq!(
        msg["result"]["content"][0]["text"],
        "Echo: over the turnpike"
    );

    // A string id is kept as a string.
    let ping = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":"p-1","method":"ping"}),
        )
        .await;
    assert_eq!(ping.json()["id"], "p-1");

    // DELETE ends the session and its child.
    let del = gw.delete(&sid).await;
    assert_eq!(del.status, StatusCode::OK);
    wait_gone(pid, Duration::from_secs(5)).await;
    assert_eq!(gw.upstream.session_count(), 0);
    let after = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":4,"method":"tools/list"}),
        )
        .await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    let err = after.json();
    assert_eq!(err["id"], 4);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("initialize"));
    assert_eq!(gw.delete(&sid).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn progress_arrives_event_by_event_before_the_result() {
    let gw = Gateway::start(everything_config()).await;
    let sid = gw.open_session(json!({})).await;

    let call = json!({"jsonrpc":"2.0","id":10,"method":"tools/call","params":{
        "name": "trigger-long-running-operation",
        "arguments": {"duration": 3, "steps": 3},
        "_meta": {"progressToken": "tok-1"}
    }});
    let sent = Instant::now();
    let mut sse = gw.post_sse(Some(&sid), &call).await;
    assert_eq!(sse.status, StatusCode::OK);
    assert!(sse.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(
        sent.elapsed() < Duration::from_millis(800),
        "the stream opens before the first step (1 s) is done"
    );

    let mut progress = Vec::new();
    let result = loop {
        let ev = sse
            .next_within(Duration::from_secs(10))
            .await
            .expect("stream ended before the result");
        if ev["method"] == "notifications/progress" {
            assert_eq!(ev["params"]["progressToken"], "tok-1");
            progress.push((Instant::now(), ev["params"]["progress"].as_f64().unwrap()));
        } else if ev.get("id") == Some(&json!(10)) {
            break (Instant::now(), ev);
        }
        // Other server messages (e.g. list_changed) may ride along; they are not progress.
    };
    assert!(
        sse.next_within(Duration::from_secs(2)).await.is_none(),
        "the stream ends after the result"
    );

    assert_eq!(
        progress.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0]
    );
    // Each step takes 1 s: events that were not buffered arrive about that far apart.
    for pair in progress.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(500),
            "progress events {gap:?} apart"
        );
    }
    assert!(
        result.0 - progress[0].0 >= Duration::from_millis(1200),
        "the first progress event came well before the result"
    );
    assert!(result.1["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Long running operation completed"));

    // Without SSE in Accept the same call is answered with the result alone.
    let plain = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":11,"method":"tools/call","params":{
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 0.2, "steps": 2},
                "_meta": {"progressToken": 7}
            }}),
        )
        .await;
    assert!(plain.content_type().starts_with("application/json"));
    assert_eq!(plain.json()["id"], 11);
}

#[tokio::test]
async fn session_errors_unknown_missing_stateless_and_methods() {
    let gw = Gateway::start(everything_config()).await;
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});

    let unknown = gw
        .post(
            Some("no-such-session-id-at-all-0123456789"),
            ACCEPT_JSON,
            &list,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["id"], 1);
    assert!(unknown.json()["error"]["code"].is_i64());

    let missing = gw.post(None, ACCEPT_JSON, &list).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Mcp-Session-Id"));

    let stateless = gw
        .send(
            Method::POST,
            None,
            ACCEPT_BOTH,
            Some(&json!({"jsonrpc":"2.0","id":5,"method":"server/discover"})),
            &[("mcp-protocol-version", "2026-07-28")],
        )
        .await;
    assert_eq!(stateless.status, StatusCode::BAD_REQUEST);
    let msg = stateless.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("needs a session"), "{msg}");
    assert_eq!(stateless.json()["id"], 5);

    let put = gw
        .send(Method::PUT, None, ACCEPT_BOTH, Some(&list), &[])
        .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(put.headers["allow"].to_str().unwrap().contains("POST"));

    assert_eq!(gw.upstream.session_count(), 0, "no child was started");
}

#[tokio::test]
async fn two_sessions_have_two_children() {
    let gw = Gateway::start(everything_config()).await;
    let a = gw.open_session(json!({})).await;
    let b = gw.open_session(json!({})).await;
    assert_ne!(a, b);
    let pa = gw.upstream.child_pid(&a).unwrap();
    let pb = gw.upstream.child_pid(&b).unwrap();
    assert_ne!(pa, pb);
    assert_eq!(gw.upstream.session_count(), 2);

    for (sid, word) in [(&a, "alpha"), (&b, "beta")] {
        let r = gw
            .post(
                Some(sid),
                ACCEPT_JSON,
                &tool_call(2, "echo", json!({"message": word})),
            )
            .await;
        assert_eq!(
            r.json()["result"]["content"][0]["text"],
            format!("Echo: {word}")
        );
    }
    // Ending one leaves the other working.
    assert_eq!(gw.delete(&a).await.status, StatusCode::OK);
    wait_gone(pa, Duration::from_secs(5)).await;
    assert!(alive(pb));
    let r = gw
        .post(
            Some(&b),
            ACCEPT_JSON,
            &tool_call(3, "echo", json!({"message": "still"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_killed_child_fails_the_pending_call_and_a_new_session_works() {
    let gw = Gateway::start(everything_config()).await;
    let sid = gw.open_session(json!({})).await;
    let pid = gw.upstream.child_pid(&sid).unwrap();

    let call = json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{
        "name": "trigger-long-running-operation",
        "arguments": {"duration": 30, "steps": 60},
        "_meta": {"progressToken": "k"}
    }});
    let mut sse = gw.post_sse(Some(&sid), &call).await;
    // Wait for the call to be under way.
    loop {
        let ev = sse.next_within(Duration::from_secs(10)).await.unwrap();
        if ev["method"] == "notifications/progress" {
            break;
        }
    }
    // And a second call on the same session, answered as JSON.
    let json_req = json!({"jsonrpc":"2.0","id":99,"method":"tools/call","params":{
        "name": "trigger-long-running-operation",
        "arguments": {"duration": 30, "steps": 2}
    }});
    let pending_json = gw.post(Some(&sid), ACCEPT_JSON, &json_req);

    let killed_at = Instant::now();
    let (error_event, json_answer) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            kill9(pid);
            loop {
                let ev = sse
                    .next_within(Duration::from_secs(5))
                    .await
                    .expect("the stream must end with an error, not silently");
                if ev.get("id").is_some() {
                    break ev;
                }
            }
        },
        pending_json
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "the error came promptly"
    );
    assert_eq!(error_event["id"], "slow");
    assert_eq!(error_event["error"]["code"], UPSTREAM_FAILED);
    let message = error_event["error"]["message"].as_str().unwrap();
    assert!(message.contains("exited"), "{message}");
    assert!(
        message.contains("SIGKILL") || message.contains('9'),
        "{message}"
    );
    assert!(sse.next_within(Duration::from_secs(2)).await.is_none());

    assert_eq!(json_answer.status, StatusCode::OK);
    let j = json_answer.json();
    assert_eq!(j["id"], 99);
    assert_eq!(j["error"]["code"], UPSTREAM_FAILED);

    wait_gone(pid, Duration::from_secs(5)).await;
    let later = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &tool_call(5, "echo", json!({"message": "x"})),
        )
        .await;
    assert_eq!(later.status, StatusCode::NOT_FOUND);

    let fresh = gw.open_session(json!({})).await;
    let fresh_pid = gw.upstream.child_pid(&fresh).unwrap();
    assert_ne!(fresh_pid, pid);
    let r = gw
        .post(
            Some(&fresh),
            ACCEPT_JSON,
            &tool_call(6, "echo", json!({"message": "again"})),
        )
        .await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "Echo: again");
}

#[tokio::test]
async fn idle_sessions_are_ended() {
    let mut config = everything_config();
    config.idle_timeout = Duration::from_secs(1);
    let gw = Gateway::start(config).await;
    let sid = gw.open_session(json!({})).await;
    let pid = gw.upstream.child_pid(&sid).unwrap();

    // Activity keeps it alive.
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = gw
            .post(
                Some(&sid),
                ACCEPT_JSON,
                &json!({"jsonrpc":"2.0","id":i,"method":"ping"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "still alive after {i} pings");
    }
    // A call longer than the idle timeout is not cut off.
    let long = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &tool_call(
                20,
                "trigger-long-running-operation",
                json!({"duration": 2.5, "steps": 2}),
            ),
        )
        .await;
    assert!(long.json()["result"].is_object(), "{:?}", long.json());

    // Then silence ends it.
    wait_gone(pid, Duration::from_secs(6)).await;
    wait_until("session removed", Duration::from_secs(2), || {
        gw.upstream.session_count() == 0
    })
    .await;
    let r = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":9,"method":"ping"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sampling_request_travels_on_the_call_stream_and_the_answer_is_accepted() {
    let gw = Gateway::start(everything_config()).await;
    let sid = gw.open_session(json!({"sampling": {}})).await;

    let mut sse = gw
        .post_sse(
            Some(&sid),
            &tool_call(
                30,
                "trigger-sampling-request",
                json!({"prompt": "say hi", "maxTokens": 5}),
            ),
        )
        .await;
    let request = loop {
        let ev = sse.next_within(Duration::from_secs(10)).await.unwrap();
        if ev["method"] == "sampling/createMessage" {
            break ev;
        }
        assert!(
            ev.get("result").is_none(),
            "result before the sampling request: {ev}"
        );
    };
    let answer = json!({"jsonrpc":"2.0","id": request["id"].clone(), "result": {
        "role": "assistant",
        "content": {"type": "text", "text": "hi from the client"},
        "model": "test-model",
        "stopReason": "endTurn"
    }});
    let accepted = gw.post(Some(&sid), ACCEPT_BOTH, &answer).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert!(accepted.body.is_empty());

    let result = loop {
        let ev = sse.next_within(Duration::from_secs(10)).await.unwrap();
        if ev.get("id") == Some(&json!(30)) {
            break ev;
        }
    };
    let text = result["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("hi from the client"), "{text}");
    assert!(sse.next_within(Duration::from_secs(2)).await.is_none());
}

#[tokio::test]
async fn uncorrelated_messages_wait_for_the_get_stream() {
    let gw = Gateway::start(everything_config()).await;
    // With roots declared, the server asks for them ~350 ms after notifications/initialized,
    // and announces its new tools: messages that belong to no request.
    let init = gw
        .post(
            None,
            ACCEPT_BOTH,
            &initialize(1, json!({"roots": {"listChanged": true}})),
        )
        .await;
    let sid = init.session_id().unwrap();
    assert_eq!(
        gw.post(Some(&sid), ACCEPT_BOTH, &initialized())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Opened afterwards, the GET stream gets what was kept for it.
    let mut get = gw.get_sse(&sid).await;
    assert_eq!(get.status, StatusCode::OK);
    assert!(get.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut saw_list_changed = false;
    let roots = loop {
        let ev = get.next_within(Duration::from_secs(5)).await.unwrap();
        assert!(
            ev.get("result").is_none() && ev.get("error").is_none(),
            "no responses on GET: {ev}"
        );
        if ev["method"] == "notifications/tools/list_changed" {
            saw_list_changed = true;
        }
        if ev["method"] == "roots/list" {
            break ev;
        }
    };
    assert!(saw_list_changed);

    // One GET stream per session.
    let second = gw
        .send(Method::GET, Some(&sid), "text/event-stream", None, &[])
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    // GET needs SSE in Accept.
    let wrong = gw
        .send(Method::GET, Some(&sid), "application/json", None, &[])
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_ACCEPTABLE);

    // The answer to the server's request goes in as a POST: 202, and the server's log
    // notification about it arrives on the GET stream.
    let answer = json!({"jsonrpc":"2.0","id": roots["id"].clone(),
                        "result": {"roots": [{"uri": "file:///tmp", "name": "tmp"}]}});
    assert_eq!(
        gw.post(Some(&sid), ACCEPT_BOTH, &answer).await.status,
        StatusCode::ACCEPTED
    );
    let logged = get.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(logged["method"], "notifications/message", "{logged}");
    assert!(logged["params"]["data"]
        .as_str()
        .unwrap()
        .contains("1 root"));

    // Ending the session ends the GET stream.
    gw.delete(&sid).await;
    assert!(get.next_within(Duration::from_secs(5)).await.is_none());
    // And a new GET after the first was dropped would have been allowed: checked by opening
    // one on a fresh session after closing the first stream.
    let sid2 = gw.open_session(json!({})).await;
    let first = gw.get_sse(&sid2).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = gw.get_sse(&sid2).await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn global_cap_reclaims_an_idle_session_and_refuses_when_none_is_idle() {
    let budget = StdioBudget::new(StdioLimits {
        max_sessions: 1,
        max_sessions_per_caller: 1,
        spawns_per_minute_per_caller: 100,
    });
    let gw = Gateway::start_with_budget(everything_config(), budget.clone()).await;
    let a = gw.open_session(json!({})).await;
    let pid_a = gw.upstream.child_pid(&a).unwrap();

    // Full, but `a` is idle: it is ended to make room, and its child is gone before `b`'s
    // starts (the cap counts processes).
    let b = gw.open_session(json!({})).await;
    assert!(
        !alive(pid_a),
        "the reclaimed child exited before the new one was started"
    );
    assert_eq!(budget.live(), 1);
    let gone = gw
        .post(
            Some(&a),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // `b` with a request in flight is not idle: the next initialize is refused with 503.
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name": "trigger-long-running-operation",
        "arguments": {"duration": 20, "steps": 20},
        "_meta": {"progressToken": "busy"}
    }});
    let mut busy = gw.post_sse(Some(&b), &call).await;
    assert_eq!(busy.status, StatusCode::OK);
    // Wait for the first progress report (other notifications may come first).
    loop {
        let ev = busy.next_within(Duration::from_secs(10)).await.unwrap();
        if ev["method"] == "notifications/progress" {
            break;
        }
    }
    let refused = gw.post(None, ACCEPT_BOTH, &initialize(3, json!({}))).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.session_id().is_none());
    assert!(refused.headers.contains_key("retry-after"));
    let body = refused.json();
    assert_eq!(body["id"], 3);
    assert_eq!(
        body["error"]["code"],
        turnpike_core::error_codes::UNAVAILABLE
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limit of 1") && message.contains("[stdio] max_sessions"),
        "{message}"
    );
    assert_eq!(budget.live(), 1);

    // The client of the call goes away: `b` is idle again and is reclaimed.
    let pid_b = gw.upstream.child_pid(&b).unwrap();
    drop(busy);
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        let init = gw.post(None, ACCEPT_BOTH, &initialize(4, json!({}))).await;
        if init.status == StatusCode::OK {
            break init.session_id().unwrap();
        }
        // Until the server has seen the client go, `b` still has its call in flight.
        assert_eq!(init.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "b was not reclaimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!alive(pid_b));
    assert_ne!(b, c);
    assert_eq!(budget.live(), 1);
}

#[tokio::test]
async fn shutdown_and_drop_end_every_child() {
    let gw = Gateway::start(everything_config()).await;
    let a = gw.open_session(json!({})).await;
    let b = gw.open_session(json!({})).await;
    let pids: Vec<u32> = [&a, &b]
        .iter()
        .map(|s| gw.upstream.child_pid(s).unwrap())
        .collect();
    gw.upstream.shutdown();
    for pid in &pids {
        wait_gone(*pid, Duration::from_secs(5)).await;
    }
    assert_eq!(gw.upstream.session_count(), 0);
    let r = gw
        .post(
            Some(&a),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A session started after shutdown ends when the last handle to the upstream is dropped.
    let c = gw.open_session(json!({})).await;
    let pid = gw.upstream.child_pid(&c).unwrap();
    gw.stop().await;
    wait_gone(pid, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tools_list_body_matches_a_direct_stdio_conversation() {
    // What the upstream returns is exactly what the child wrote: compare tools/list through
    // the upstream with tools/list straight from a second child over its pipes.
    let gw = Gateway::start(everything_config()).await;
    let sid = gw.open_session(json!({})).await;
    let via = gw
        .post(
            Some(&sid),
            ACCEPT_JSON,
            &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        )
        .await
        .json();

    let direct = tokio::task::spawn_blocking(|| {
        use std::io::{BufRead, BufReader, Write};
        let mut child = std::process::Command::new("node")
            .arg(server_everything())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        for m in [initialize(1, json!({})), initialized()] {
            writeln!(stdin, "{m}").unwrap();
        }
        writeln!(
            stdin,
            "{}",
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})
        )
        .unwrap();
        let mut found = Value::Null;
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            let v: Value = serde_json::from_str(&line).unwrap();
            line.clear();
            if v["id"] == 2 {
                found = v;
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        found
    })
    .await
    .unwrap();
    assert_eq!(via, direct);
}
