//! The merged endpoint: one MCP server (2026-07-28, stateless) over several mounted upstreams.
//!
//! - `tools/list` and `prompts/list` are the union of every member's list; a name two members
//!   share is published as `<mount name>_<name>` for each of them, a unique name as it is.
//!   `resources/list` and `resources/templates/list` are unions too (URIs are not renamed).
//!   Up to 16 pages of each member are followed; the merged list is one page.
//! - `tools/call` and `prompts/get` go to the owner of the name with the original name (the
//!   `Mcp-Name` header mirrors it); `resources/read` to the member that listed the URI, else to
//!   each member in turn until one answers without error. The owner's answer streams back as it
//!   is (progress included).
//! - `server/discover` is the gateway's own: the union of the members' tools/prompts/resources
//!   capabilities. `ping` is answered here. Any other method gets -32601.
//!
//! Requests reach the members as modern requests through their era adapters, so a legacy
//! member (HTTP or stdio) is translated there. Legacy clients of the merged endpoint are
//! translated by the era adapter in front of it (sealed sessions).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tower_service::Service;

use crate::era::{wire, EraAdapter, META_SERVER_INFO, METHOD_NOT_FOUND, MODERN_VERSION};
use crate::serve::BoxUpstream;

const MAX_PAGES: usize = 16;

/// The merged server. Cheap to clone.
#[derive(Clone)]
pub struct Merged {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<(String, BoxUpstreamCell)>,
    /// Published name → (member, original name), per kind ("tools", "prompts", "resources").
    routes: Mutex<HashMap<RouteKey, (usize, String)>>,
}

/// (kind, published name).
type RouteKey = (&'static str, String);

/// A member's service behind a lock, so the merged server is `Sync`.
struct BoxUpstreamCell(Mutex<BoxUpstream>);

impl BoxUpstreamCell {
    fn get(&self) -> BoxUpstream {
        self.0.lock().clone()
    }
}

impl Merged {
    /// A merged server over `(name, member)` pairs.
    pub fn new(members: Vec<(String, EraAdapter)>) -> Merged {
        Merged {
            inner: Arc::new(Inner {
                members: members
                    .into_iter()
                    .map(|(n, a)| (n, BoxUpstreamCell(Mutex::new(a.boxed()))))
                    .collect(),
                routes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Boxed, as an upstream.
    pub fn boxed(self) -> BoxUpstream {
        tower::util::BoxCloneService::new(self)
    }

    async fn handle(self, req: Request<Body>) -> Response<Body> {
        if req.method() != http::Method::POST {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            return r;
        }
        let (parts, body) = req.into_parts();
        let Ok(bytes) = Limited::new(body, wire::MAX_READ).collect().await else {
            return bad(None, "the request body could not be read");
        };
        let bytes = bytes.to_bytes();
        let Ok(msg) = serde_json::from_slice::<Value>(&bytes) else {
            return bad(None, "the request body is not JSON");
        };
        let Some(id) = msg.get("id").cloned() else {
            return wire::accepted();
        };
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let meta = msg.pointer("/params/_meta").cloned();
        match method {
            "ping" => ok(&id, json!({})),
            "server/discover" => self.discover(&parts.uri, &id, meta).await,
            "tools/list" => {
                self.list(&parts.uri, &id, meta, "tools", "tools", true)
                    .await
            }
            "prompts/list" => {
                self.list(&parts.uri, &id, meta, "prompts", "prompts", true)
                    .await
            }
            "resources/list" => {
                self.list(&parts.uri, &id, meta, "resources", "resources", false)
                    .await
            }
            "resources/templates/list" => {
                self.list(
                    &parts.uri,
                    &id,
                    meta,
                    "resourceTemplates",
                    "templates",
                    false,
                )
                .await
            }
            "tools/call" => self.route(parts, msg, "tools", "tools/list", "name").await,
            "prompts/get" => {
                self.route(parts, msg, "prompts", "prompts/list", "name")
                    .await
            }
            "resources/read" => self.read(parts, msg).await,
            other => wire::json_response(
                StatusCode::OK,
                &wire::error_value(
                    Some(&id),
                    METHOD_NOT_FOUND,
                    &format!("{other} is not offered by the merged endpoint"),
                ),
            ),
        }
    }

    /// Sends a modern request to member `i` and returns its answer.
    async fn ask(&self, i: usize, uri: &Uri, method: &str, params: Value) -> Result<Value, String> {
        let req_id = json!(format!("turnpike-merge-{i}"));
        let body = json!({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params});
        let mut h = HeaderMap::new();
        crate::era::modern_headers(&mut h, &body);
        let svc = self.inner.members[i].1.get();
        let resp = wire::send(&svc, wire::post(uri, h, &body)).await;
        let (_, v) = wire::answer(resp, &req_id).await?;
        match v.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned()),
        }
    }

    async fn discover(&self, uri: &Uri, id: &Value, meta: Option<Value>) -> Response<Body> {
        let mut caps = serde_json::Map::new();
        for i in 0..self.inner.members.len() {
            if let Ok(r) = self
                .ask(i, uri, "server/discover", with_meta(meta.clone()))
                .await
            {
                if let Some(c) = r.get("capabilities").and_then(Value::as_object) {
                    for k in ["tools", "prompts", "resources"] {
                        if c.contains_key(k) {
                            caps.insert(k.into(), json!({}));
                        }
                    }
                }
            }
        }
        ok(
            id,
            json!({
                "supportedVersions": [MODERN_VERSION],
                "capabilities": caps,
                "instructions": "A turnpike merged endpoint: the tools, prompts and resources of several MCP servers.",
                "ttlMs": 0,
                "cacheScope": "private",
                "_meta": {META_SERVER_INFO: {"name": "turnpike-merged", "version": env!("CARGO_PKG_VERSION")}},
            }),
        )
    }

    /// The members' lists of `key`, merged; names routed under `kind` (for tools and prompts).
    async fn list(
        &self,
        uri: &Uri,
        id: &Value,
        meta: Option<Value>,
        key: &'static str,
        kind: &'static str,
        rename: bool,
    ) -> Response<Body> {
        let method = match key {
            "tools" => "tools/list",
            "prompts" => "prompts/list",
            "resources" => "resources/list",
            _ => "resources/templates/list",
        };
        let mut per_member: Vec<Vec<Value>> = Vec::new();
        for i in 0..self.inner.members.len() {
            let mut items = Vec::new();
            let mut cursor: Option<Value> = None;
            for _ in 0..MAX_PAGES {
                let mut params = with_meta(meta.clone());
                if let Some(c) = &cursor {
                    params["cursor"] = c.clone();
                }
                let Ok(r) = self.ask(i, uri, method, params).await else {
                    break;
                };
                if let Some(a) = r.get(key).and_then(Value::as_array) {
                    items.extend(a.iter().cloned());
                }
                cursor = r.get("nextCursor").filter(|c| c.is_string()).cloned();
                if cursor.is_none() {
                    break;
                }
            }
            per_member.push(items);
        }
        let field = if key == "resources" || key == "resourceTemplates" {
            if key == "resources" {
                "uri"
            } else {
                "uriTemplate"
            }
        } else {
            "name"
        };
        let mut count: HashMap<String, usize> = HashMap::new();
        for items in &per_member {
            for it in items {
                if let Some(n) = it.get(field).and_then(Value::as_str) {
                    *count.entry(n.to_owned()).or_default() += 1;
                }
            }
        }
        let mut out = Vec::new();
        let mut routes = self.inner.routes.lock();
        for (i, items) in per_member.into_iter().enumerate() {
            for mut it in items {
                let Some(n) = it.get(field).and_then(Value::as_str).map(str::to_owned) else {
                    continue;
                };
                let published = if rename && count.get(&n).copied().unwrap_or(0) > 1 {
                    format!("{}_{n}", self.inner.members[i].0)
                } else {
                    n.clone()
                };
                if rename {
                    it[field] = json!(published);
                }
                routes.insert((kind, published), (i, n));
                out.push(it);
            }
        }
        drop(routes);
        let mut result = serde_json::Map::new();
        result.insert(key.into(), Value::Array(out));
        result.insert("ttlMs".into(), json!(0));
        result.insert("cacheScope".into(), json!("private"));
        ok(id, Value::Object(result))
    }

    fn lookup(&self, kind: &'static str, name: &str) -> Option<(usize, String)> {
        self.inner
            .routes
            .lock()
            .get(&(kind, name.to_owned()))
            .cloned()
    }

    /// Sends a call to the owner of its name, with the original name.
    async fn route(
        &self,
        parts: http::request::Parts,
        mut msg: Value,
        kind: &'static str,
        list: &str,
        field: &str,
    ) -> Response<Body> {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let name = msg
            .pointer(&format!("/params/{field}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut owner = self.lookup(kind, &name);
        if owner.is_none() {
            // Not listed yet on this instance: list, then look again.
            let meta = msg.pointer("/params/_meta").cloned();
            let key = if kind == "tools" { "tools" } else { "prompts" };
            let _ = self.list(&parts.uri, &id, meta, key, kind, true).await;
            owner = self.lookup(kind, &name);
        }
        let _ = list;
        let Some((i, original)) = owner else {
            return wire::json_response(
                StatusCode::OK,
                &wire::error_value(
                    Some(&id),
                    turnpike_core::error_codes::INVALID_PARAMS,
                    &format!("no member of the merged endpoint offers {name:?}"),
                ),
            );
        };
        msg["params"][field] = json!(original);
        self.forward(i, parts, &msg).await
    }

    async fn read(&self, parts: http::request::Parts, msg: Value) -> Response<Body> {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let uri = msg
            .pointer("/params/uri")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some((i, _)) = self.lookup("resources", &uri) {
            return self.forward(i, parts, &msg).await;
        }
        let mut last = None;
        for i in 0..self.inner.members.len() {
            let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
            match self.ask(i, &parts.uri, "resources/read", params).await {
                Ok(r) => return ok(&id, r),
                Err(e) => last = Some(e),
            }
        }
        wire::json_response(
            StatusCode::OK,
            &wire::error_value(
                Some(&id),
                -32002,
                &format!(
                    "resource not found on any member: {}",
                    last.unwrap_or_default()
                ),
            ),
        )
    }

    async fn forward(&self, i: usize, parts: http::request::Parts, msg: &Value) -> Response<Body> {
        let mut headers = parts.headers.clone();
        crate::era::modern_headers(&mut headers, msg);
        let mut req = wire::post(&parts.uri, headers, msg);
        *req.extensions_mut() = parts.extensions;
        let svc = self.inner.members[i].1.get();
        wire::send(&svc, req).await
    }
}

fn with_meta(meta: Option<Value>) -> Value {
    match meta {
        Some(m) => json!({"_meta": m}),
        None => json!({}),
    }
}

fn ok(id: &Value, mut result: Value) -> Response<Body> {
    if let Some(o) = result.as_object_mut() {
        o.insert("resultType".into(), json!("complete"));
    }
    wire::json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}

fn bad(id: Option<&Value>, msg: &str) -> Response<Body> {
    wire::json_response(StatusCode::BAD_REQUEST, &wire::error_value(id, -32600, msg))
}

impl Service<Request<Body>> for Merged {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
