//! A 2025 client's server stream (GET) and `resources/subscribe` in front of an MCP 2026-07-28
//! upstream, bridged to `subscriptions/listen`: against a small modern server over real HTTP
//! that records every listen filter it is sent and sends the notifications a test triggers.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tower::{Service, ServiceExt};
use turnpike_gateway::era::{EraAdapter, EraOptions, EraSetting};
use turnpike_gateway::serve::BoxUpstream;
use turnpike_gateway::upstream::http::HttpUpstream;

const SUB_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// What the modern server saw and how to make it talk.
struct Upstream {
    caps: Value,
    /// Whether its `server/discover` result may be cached (`public`, one minute).
    public: bool,
    /// Triggered messages, sent on every listen stream whose filter asks for them; `{"end":
    /// true}` ends every listen stream with its result.
    events: broadcast::Sender<Value>,
    /// Each `subscriptions/listen` request received (body and headers).
    listens: Mutex<Vec<(Value, HeaderMap)>>,
    /// Listen streams the server is still writing (dropped when the connection closes).
    open: AtomicUsize,
    discovers: AtomicUsize,
}

impl Upstream {
    fn filters(&self) -> Vec<Value> {
        self.listens
            .lock()
            .iter()
            .map(|(b, _)| b["params"]["notifications"].clone())
            .collect()
    }
    fn last_filter(&self) -> Value {
        self.filters().last().cloned().unwrap_or(Value::Null)
    }
    fn send(&self, v: Value) {
        let _ = self.events.send(v);
    }
}

struct OpenGuard(Arc<Upstream>);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn wanted(v: &Value, filter: &Value) -> bool {
    let on = |k: &str| filter.get(k) == Some(&json!(true));
    match v["method"].as_str() {
        Some("notifications/tools/list_changed") => on("toolsListChanged"),
        Some("notifications/prompts/list_changed") => on("promptsListChanged"),
        Some("notifications/resources/list_changed") => on("resourcesListChanged"),
        Some("notifications/resources/updated") => filter["resourceSubscriptions"]
            .as_array()
            .is_some_and(|a| a.contains(&v["params"]["uri"])),
        _ => false,
    }
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {v}\n\n"))
}

fn listen_stream(up: Arc<Upstream>, id: Value, filter: Value) -> Response<Body> {
    let rx = up.events.subscribe();
    up.open.fetch_add(1, Ordering::SeqCst);
    let guard = OpenGuard(up.clone());
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": filter, "_meta": {SUB_ID: id}}});
    let state = (Some(event(&ack)), rx, id, filter, guard, false);
    let stream = futures_util::stream::unfold(
        state,
        |(first, mut rx, id, filter, guard, done)| async move {
            if done {
                return None;
            }
            if let Some(b) = first {
                return Some((Ok::<_, Infallible>(b), (None, rx, id, filter, guard, false)));
            }
            loop {
                let mut v = rx.recv().await.ok()?;
                if v.get("end").is_some() {
                    let result = json!({"jsonrpc": "2.0", "id": id,
                        "result": {"resultType": "complete", "_meta": {SUB_ID: id}}});
                    return Some((Ok(event(&result)), (None, rx, id, filter, guard, true)));
                }
                if !wanted(&v, &filter) {
                    continue;
                }
                let p = v
                    .as_object_mut()
                    .unwrap()
                    .entry("params")
                    .or_insert_with(|| json!({}));
                p["_meta"] = json!({SUB_ID: id});
                return Some((Ok(event(&v)), (None, rx, id, filter, guard, false)));
            }
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A stateless MCP 2026-07-28 server with capabilities `caps` on a loopback port.
async fn modern_server(caps: Value, public: bool) -> (String, Arc<Upstream>) {
    let (events, _) = broadcast::channel(64);
    let up = Arc::new(Upstream {
        caps,
        public,
        events,
        listens: Mutex::new(Vec::new()),
        open: AtomicUsize::new(0),
        discovers: AtomicUsize::new(0),
    });
    let u2 = up.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let up = u2.clone();
            async move {
                let body = body.0;
                let id = body.get("id").cloned().unwrap_or(Value::Null);
                let result = match body["method"].as_str() {
                    Some("server/discover") => {
                        up.discovers.fetch_add(1, Ordering::SeqCst);
                        let (scope, ttl) = if up.public {
                            ("public", 60_000)
                        } else {
                            ("private", 0)
                        };
                        json!({"supportedVersions": ["2026-07-28"], "capabilities": up.caps,
                               "cacheScope": scope, "ttlMs": ttl,
                               "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "modern", "version": "1"}}})
                    }
                    Some("subscriptions/listen") => {
                        let filter = body["params"]["notifications"].clone();
                        up.listens.lock().push((body.clone(), headers));
                        return listen_stream(up, id, filter);
                    }
                    _ => json!({"resultType": "complete"}),
                };
                let v = json!({"jsonrpc": "2.0", "id": id, "result": result});
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(v.to_string()))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/mcp"), up)
}

fn adapter(url: &str) -> BoxUpstream {
    let raw = tower::util::BoxCloneService::new(HttpUpstream::new(url).unwrap());
    EraAdapter::new(
        raw,
        EraOptions {
            setting: EraSetting::Modern,
            ..EraOptions::default()
        },
    )
    .boxed()
}

fn request(method: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri("/mcp");
    if body.is_some() {
        b = b
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
    } else if method == "GET" {
        b = b.header("accept", "text/event-stream");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
        .unwrap()
}

async fn call(svc: &mut BoxUpstream, req: Request<Body>) -> Response<Body> {
    let r: Result<Response<Body>, Infallible> = svc.ready().await.unwrap().call(req).await;
    r.unwrap()
}

async fn json_of(resp: Response<Body>) -> Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// A legacy session: its id.
async fn legacy_session(svc: &mut BoxUpstream) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let resp = call(svc, request("POST", Some(&init), &[])).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A legacy client: the adapter and its session's headers.
struct Client {
    svc: BoxUpstream,
    sid: String,
}

impl Client {
    async fn new(url: &str) -> Client {
        let mut svc = adapter(url);
        let sid = legacy_session(&mut svc).await;
        Client { svc, sid }
    }
    fn headers(&self) -> [(&str, &str); 2] {
        [
            ("mcp-session-id", self.sid.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
        ]
    }
    async fn get(&mut self) -> Response<Body> {
        let h = self.headers();
        let req = request("GET", None, &h);
        let mut svc = self.svc.clone();
        tokio::time::timeout(Duration::from_secs(20), call(&mut svc, req))
            .await
            .expect("the GET is answered")
    }
    async fn rpc(&mut self, id: i64, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let h = self.headers();
        let req = request("POST", Some(&body), &h);
        let mut svc = self.svc.clone();
        let resp = tokio::time::timeout(Duration::from_secs(20), call(&mut svc, req))
            .await
            .expect("the request is answered");
        assert_eq!(resp.status(), 200);
        json_of(resp).await
    }
}

type Events =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// The client's side of an SSE response.
struct Sse {
    stream: Events,
    buf: String,
}

impl Sse {
    fn of(resp: Response<Body>) -> Sse {
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            stream: Box::pin(resp.into_body().into_data_stream()),
            buf: String::new(),
        }
    }

    /// The next JSON-RPC message, or `None` when the stream ended (bounded wait).
    async fn next(&mut self) -> Option<Value> {
        let fut = async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let event: String = self.buf.drain(..end + 2).collect();
                    let data: Vec<&str> = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                        return Some(v);
                    }
                    continue;
                }
                let chunk = self.stream.next().await?.ok()?;
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .expect("a message or the end of the stream in time")
    }
}

/// Waits (bounded, generously) for `what` to become true.
async fn eventually(what: impl Fn() -> bool) -> bool {
    for _ in 0..400 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    what()
}

fn all_caps() -> Value {
    json!({"tools": {"listChanged": true}, "prompts": {"listChanged": true},
           "resources": {"subscribe": true}})
}

fn tools_changed() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
}

fn updated(uri: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_stream_carries_list_changed() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut c = Client::new(&url).await;
    let mut sse = Sse::of(c.get().await);
    // One upstream listen, asking for what the server advertises and nothing else.
    assert_eq!(up.listens.lock().len(), 1);
    assert_eq!(
        up.last_filter(),
        json!({"toolsListChanged": true, "promptsListChanged": true})
    );
    {
        let listens = up.listens.lock();
        let (body, headers) = &listens[0];
        assert_eq!(headers["mcp-method"], "subscriptions/listen");
        assert_eq!(headers["mcp-protocol-version"], "2026-07-28");
        assert!(!headers.contains_key("mcp-session-id"));
        let meta = &body["params"]["_meta"];
        assert_eq!(
            meta["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
        assert_eq!(
            meta["io.modelcontextprotocol/clientCapabilities"],
            json!({})
        );
        assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "t");
    }
    up.send(json!({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}));
    up.send(tools_changed());
    // The acknowledgement is not passed on; the notification is, without the subscription id.
    let note = sse.next().await.expect("a notification");
    assert_eq!(
        note,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
        "{note}"
    );
    up.send(
        json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed", "params": {}}),
    );
    let note = sse.next().await.expect("a notification");
    assert_eq!(note["method"], "notifications/prompts/list_changed");
    assert!(note
        .pointer(&format!("/params/_meta/{}", SUB_ID.replace('/', "~1")))
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_unsubscribe_change_the_upstream_filter() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut c = Client::new(&url).await;
    // Taken before any stream is open: the GET's listen asks for it.
    let r = c
        .rpc(2, "resources/subscribe", json!({"uri": "file:///early"}))
        .await;
    assert_eq!(r, json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    let mut sse = Sse::of(c.get().await);
    assert_eq!(
        up.last_filter()["resourceSubscriptions"],
        json!(["file:///early"])
    );
    // Taken with the stream open: the listen is opened again, the old one closed.
    let r = c
        .rpc(3, "resources/subscribe", json!({"uri": "file:///a"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert_eq!(up.listens.lock().len(), 2);
    assert_eq!(
        up.last_filter(),
        json!({"toolsListChanged": true, "promptsListChanged": true,
               "resourceSubscriptions": ["file:///early", "file:///a"]})
    );
    assert!(
        eventually(|| up.open.load(Ordering::SeqCst) == 1).await,
        "the old listen was closed"
    );
    up.send(updated("file:///a"));
    let note = sse.next().await.expect("the update");
    assert_eq!(note, updated("file:///a"));
    // The same URI again changes nothing upstream.
    let r = c
        .rpc(4, "resources/subscribe", json!({"uri": "file:///a"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert_eq!(up.listens.lock().len(), 2);
    // Unsubscribed: the filter drops it, and its updates stop.
    let r = c
        .rpc(5, "resources/unsubscribe", json!({"uri": "file:///a"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert_eq!(up.listens.lock().len(), 3);
    assert_eq!(
        up.last_filter()["resourceSubscriptions"],
        json!(["file:///early"])
    );
    up.send(updated("file:///a"));
    up.send(updated("file:///early"));
    let note = sse.next().await.expect("a notification");
    assert_eq!(
        note,
        updated("file:///early"),
        "no update for the unsubscribed URI"
    );
    assert!(eventually(|| up.open.load(Ordering::SeqCst) == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_alone_open_a_stream() {
    // No list-changed capability, only subscriptions: the stream is held open without an
    // upstream listen until something is subscribed.
    let (url, up) = modern_server(json!({"resources": {"subscribe": true}}), false).await;
    let mut c = Client::new(&url).await;
    let mut sse = Sse::of(c.get().await);
    assert_eq!(up.listens.lock().len(), 0);
    let r = c
        .rpc(2, "resources/subscribe", json!({"uri": "mem://x"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert_eq!(
        up.last_filter(),
        json!({"resourceSubscriptions": ["mem://x"]})
    );
    up.send(tools_changed());
    up.send(updated("mem://x"));
    assert_eq!(sse.next().await.expect("the update"), updated("mem://x"));
    // Nothing left to listen for: the upstream listen is closed, the client's stream stays.
    let r = c
        .rpc(3, "resources/unsubscribe", json!({"uri": "mem://x"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert!(eventually(|| up.open.load(Ordering::SeqCst) == 0).await);
    let r = c
        .rpc(4, "resources/subscribe", json!({"uri": "mem://y"}))
        .await;
    assert_eq!(r["result"], json!({}));
    up.send(updated("mem://y"));
    assert_eq!(sse.next().await.expect("the update"), updated("mem://y"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_capabilities_get_is_405_and_subscribe_an_error() {
    let (url, up) = modern_server(json!({"tools": {}, "resources": {}}), false).await;
    let mut c = Client::new(&url).await;
    let resp = c.get().await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST, DELETE");
    for (id, method) in [(2, "resources/subscribe"), (3, "resources/unsubscribe")] {
        let r = c.rpc(id, method, json!({"uri": "file:///a"})).await;
        assert_eq!(r["id"], id);
        assert_eq!(r["error"]["code"], -32601, "{r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(method) && msg.contains("does not support resource subscriptions"),
            "{msg}"
        );
    }
    assert_eq!(up.listens.lock().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_get_closes_the_upstream_listen() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut c = Client::new(&url).await;
    let resp = c.get().await;
    assert_eq!(resp.status(), 200);
    assert!(eventually(|| up.open.load(Ordering::SeqCst) == 1).await);
    drop(resp);
    // The next event the upstream writes finds the connection gone.
    let closed = eventually(|| {
        up.send(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
        up.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert!(closed, "the upstream listen was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_ending_its_listen_ends_the_get_stream() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut c = Client::new(&url).await;
    let mut sse = Sse::of(c.get().await);
    up.send(json!({"end": true}));
    assert_eq!(sse.next().await, None, "the client's stream ended");
    // The client opens it again.
    let mut sse = Sse::of(c.get().await);
    assert_eq!(up.listens.lock().len(), 2);
    up.send(tools_changed());
    assert_eq!(
        sse.next().await.unwrap()["method"],
        "notifications/tools/list_changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_event_ends_the_stream() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut c = Client::new(&url).await;
    let mut sse = Sse::of(c.get().await);
    up.send(
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                   "params": {"padding": "x".repeat(300 * 1024)}}),
    );
    assert_eq!(sse.next().await, None, "the client's stream ended");
    assert!(
        eventually(|| {
            up.send(tools_changed());
            up.open.load(Ordering::SeqCst) == 0
        })
        .await,
        "and so did the upstream listen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_get_replaces_the_first() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut c = Client::new(&url).await;
    let mut first = Sse::of(c.get().await);
    let mut second = Sse::of(c.get().await);
    assert_eq!(first.next().await, None, "the first stream ended");
    assert!(eventually(|| up.open.load(Ordering::SeqCst) == 1).await);
    up.send(tools_changed());
    assert_eq!(
        second.next().await.unwrap()["method"],
        "notifications/tools/list_changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_stream_and_the_subscriptions() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut c = Client::new(&url).await;
    let r = c
        .rpc(2, "resources/subscribe", json!({"uri": "file:///a"}))
        .await;
    assert_eq!(r["result"], json!({}));
    let mut sse = Sse::of(c.get().await);
    let h = c.headers();
    let resp = call(&mut c.svc.clone(), request("DELETE", None, &h)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sse.next().await, None, "the stream ended with the session");
    assert!(
        eventually(|| {
            up.send(tools_changed());
            up.open.load(Ordering::SeqCst) == 0
        })
        .await
    );
    assert_eq!(c.get().await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_subscriptions_are_bounded() {
    // A public discover result is cached, so the hundreds of subscribes below cost one.
    let (url, up) = modern_server(all_caps(), true).await;
    let mut c = Client::new(&url).await;
    let huge = format!("file:///{}", "x".repeat(4096));
    let r = c.rpc(2, "resources/subscribe", json!({"uri": huge})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = c.rpc(3, "resources/subscribe", json!({"uri": 7})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = c.rpc(4, "resources/subscribe", json!({})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    for i in 0..256 {
        let r = c
            .rpc(
                10 + i,
                "resources/subscribe",
                json!({"uri": format!("file:///{i}")}),
            )
            .await;
        assert_eq!(r["result"], json!({}), "{r}");
    }
    let r = c
        .rpc(9, "resources/subscribe", json!({"uri": "file:///one-more"}))
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("256"));
    assert_eq!(up.discovers.load(Ordering::SeqCst), 1);
    // The stream's listen carries all 256.
    let _sse = Sse::of(c.get().await);
    assert_eq!(
        up.last_filter()["resourceSubscriptions"]
            .as_array()
            .unwrap()
            .len(),
        256
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_without_a_valid_session_is_refused() {
    let (url, up) = modern_server(all_caps(), false).await;
    let mut svc = adapter(&url);
    let resp = call(&mut svc, request("GET", None, &[])).await;
    assert_eq!(resp.status(), 400);
    let resp = call(
        &mut svc,
        request("GET", None, &[("mcp-session-id", "v1.forged.tag")]),
    )
    .await;
    assert_eq!(resp.status(), 404);
    // A GET that does not accept an event stream.
    let sid = legacy_session(&mut svc).await;
    let req = Request::builder()
        .method("GET")
        .uri("/mcp")
        .header("accept", "application/json")
        .header("mcp-session-id", sid)
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&mut svc, req).await.status(), 406);
    assert_eq!(up.listens.lock().len(), 0);
}
