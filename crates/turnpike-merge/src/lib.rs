//! The merged endpoint: one MCP server (2026-07-28, stateless) over several mounted upstreams.
//!
//! - `tools/list` and `prompts/list` are the union of every member's list; a name two members
//!   share is published as `<mount name>_<name>` for each of them, a unique name as it is. A
//!   name still claimed twice after that (a member's own `a_b` beside member `a`'s prefixed `b`
//!   is prefixed in turn; mounts `a` and `a_b` with tools `b_c` and `c` cannot be told apart) is
//!   left out of the list, and a call to it fails closed with an error naming the fix.
//!   `resources/list` and `resources/templates/list` are unions too (URIs are not renamed).
//!   Up to 16 pages of each member are followed; the merged list is one page.
//! - `tools/call` and `prompts/get` go to the owner of the name with the original name (the
//!   `Mcp-Name` header mirrors it); `resources/read` to the member that listed the URI, else to
//!   each member in turn until one answers without error. The owner's answer streams back as it
//!   is (progress included).
//! - `server/discover` is the gateway's own: the union of the members' tools/prompts/resources
//!   capabilities. `ping` is answered here. Any other method gets -32601.
//!
//! - Prices (the gate in front of this server asks [`ToolCatalog`]): a published tool costs,
//!   in this order, the top-level `[tools."<mount>/<name>"]`, `[tools."<published name>"]`,
//!   `[tools."<name>"]` (its own name, whatever it is published as), its mount's price for it
//!   (`[mount.tools.<name>]`, else `[mount.tools.default]`), else the top-level
//!   `[tools.default]`. A name this endpoint does not publish gets the unknown-tool error, with
//!   no challenge. The list is read again (at most once a second) when a call names a tool the
//!   last list did not have; every change of the published tools is logged with their prices.
//!
//! Requests reach the members as modern requests through their era adapters, so a legacy
//! member (HTTP or stdio) is translated there. Legacy clients of the merged endpoint are
//! translated by the era adapter in front of it (sealed sessions).

use std::collections::{BTreeMap, HashMap};
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

use turnpike_core::{Policy, Price};

use turnpike_era::{wire, EraAdapter, METHOD_NOT_FOUND, MODERN_VERSION};
use turnpike_mcp::messages::{
    META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION, META_SERVER_INFO,
};
use turnpike_upstream::BoxUpstream;

const MAX_PAGES: usize = 16;

/// Least time between two readings of the members' tool lists caused by calls naming a tool
/// the last list did not have (so unknown names cannot make the gateway list every member on
/// every call).
pub const MIN_RELIST: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest a call waits for a reading of the lists already under way (then its name is unknown).
const RELIST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the merged endpoint's gate learns about a `tools/call` name.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// A published tool, and what it costs.
    Price(Price),
    /// Not a name this endpoint publishes.
    Unknown,
    /// A name more than one member claims: no price (and no owner) can be chosen.
    Conflict(String),
}

/// The names and prices of the tools an endpoint publishes, for the gate in front of it.
pub trait ToolCatalog: Send + Sync {
    /// The price of a call to tool `name` (reading the list again if the name is new).
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolved>;
    /// The price of a published tool, from the last list.
    fn price_of(&self, name: &str) -> Option<Price>;
    /// The names the configuration may give published tool `name`, in the order prices are
    /// looked up: `<mount>/<own name>`, the published name, its own name (empty when the last
    /// list does not publish it). Limit classes follow the tool by the same names.
    fn names_of(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The prices that may apply to a merged tool: the merged endpoint's and each member's.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    /// The top-level `[tools.*]` (prices of the merged endpoint).
    pub merged: Policy,
    /// Per member, in member order: its `[mount.tools.*]`, and whether it names a default.
    pub members: Vec<(Policy, bool)>,
}

impl Pricing {
    /// The price of tool `original` of member `i` (named `mount`) published as `published`.
    pub fn price(&self, i: usize, mount: &str, original: &str, published: &str) -> Price {
        let top = &self.merged.tools;
        let own = self.members.get(i);
        top.get(&format!("{mount}/{original}"))
            .or_else(|| top.get(published))
            .or_else(|| top.get(original))
            .or_else(|| own.and_then(|(p, _)| p.tools.get(original)))
            .or_else(|| {
                own.filter(|(_, has_default)| *has_default)
                    .map(|(p, _)| &p.default_tool)
            })
            .unwrap_or(&self.merged.default_tool)
            .clone()
    }
}

/// Names more than one member claims → the claimants (member, own name).
type Conflicts = BTreeMap<String, Vec<(usize, String)>>;

/// The tools published by the last list: name → (member, original name), and the names
/// more than one member claims.
#[derive(Debug, Default, PartialEq)]
struct Published {
    names: BTreeMap<String, (usize, String)>,
    conflicts: Conflicts,
}

/// The merged server. Cheap to clone.
#[derive(Clone)]
pub struct Merged {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<(String, BoxUpstreamCell)>,
    /// The endpoint's path (the URI of the lists it asks for itself).
    path: Uri,
    pricing: Pricing,
    /// The tools of the last `tools/list`.
    tools: Mutex<Published>,
    /// When the list was last read because of an unknown name (single flight).
    relisted: tokio::sync::Mutex<Option<std::time::Instant>>,
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
    /// A merged server at `path` over `(name, member)` pairs, its tools priced by `pricing`.
    pub fn new(path: &str, members: Vec<(String, EraAdapter)>, pricing: Pricing) -> Merged {
        Merged {
            inner: Arc::new(Inner {
                members: members
                    .into_iter()
                    .map(|(n, a)| (n, BoxUpstreamCell(Mutex::new(a.boxed()))))
                    .collect(),
                path: path.parse().unwrap_or_else(|_| Uri::from_static("/")),
                pricing,
                tools: Mutex::new(Published::default()),
                relisted: tokio::sync::Mutex::new(None),
                routes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Reads the members' tool lists (at most once per [`MIN_RELIST`]), logging any change.
    pub async fn relist_tools(&self) {
        // One reading at a time; a call does not wait long for another's.
        let Ok(mut last) = tokio::time::timeout(RELIST_WAIT, self.inner.relisted.lock()).await
        else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < MIN_RELIST) {
            return;
        }
        let path = self.inner.path.clone();
        let meta = json!({
            META_PROTOCOL_VERSION: MODERN_VERSION,
            META_CLIENT_CAPABILITIES: {},
            META_CLIENT_INFO: {"name": "turnpike-merged", "version": env!("CARGO_PKG_VERSION")},
        });
        let _ = self
            .list(&path, &json!(0), Some(meta), "tools", "tools", true)
            .await;
        *last = Some(std::time::Instant::now());
    }

    fn lookup_tool(&self, name: &str) -> Option<Resolved> {
        let t = self.inner.tools.lock();
        if let Some((i, o)) = t.names.get(name) {
            let mount = &self.inner.members.get(*i)?.0;
            return Some(Resolved::Price(
                self.inner.pricing.price(*i, mount, o, name),
            ));
        }
        t.conflicts
            .get(name)
            .map(|c| Resolved::Conflict(self.conflict_message(name, c)))
    }

    fn conflict_message(&self, name: &str, claims: &[(usize, String)]) -> String {
        let who: Vec<String> = claims
            .iter()
            .map(|(i, o)| {
                let m = self.inner.members.get(*i).map_or("?", |m| m.0.as_str());
                format!("mount {m:?}'s tool {o:?}")
            })
            .collect();
        format!(
            "the merged endpoint cannot tell which tool {name:?} is ({}), so it neither prices nor runs it: give one of these mounts another name ([[mount]] name)",
            who.join(", ")
        )
    }

    /// Records the published tools; logs the list and its prices when it changed.
    fn publish_tools(&self, new: Published) {
        let mut cur = self.inner.tools.lock();
        if *cur == new {
            return;
        }
        for (name, claims) in &new.conflicts {
            tracing::error!(target: "turnpike::merge", tool = %name, "{}", self.conflict_message(name, claims));
        }
        let priced: Vec<String> = new
            .names
            .iter()
            .map(|(p, (i, o))| {
                let mount = self.inner.members.get(*i).map_or("", |m| m.0.as_str());
                let price = self.inner.pricing.price(*i, mount, o, p);
                format!("{p} ({mount}/{o}): {}", describe(&price))
            })
            .collect();
        tracing::info!(target: "turnpike::merge", path = %self.inner.path, "merged tools: {}", priced.join("; "));
        *cur = new;
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
                &turnpike_mcp::error_response(
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
        turnpike_era::modern_headers(&mut h, &body);
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
        // Members that answered the first page: a list none answered (the caller's request was
        // refused by all, or all are down) does not replace the published tools.
        let mut answered = 0;
        for i in 0..self.inner.members.len() {
            let mut items = Vec::new();
            let mut cursor: Option<Value> = None;
            for page in 0..MAX_PAGES {
                let mut params = with_meta(meta.clone());
                if let Some(c) = &cursor {
                    params["cursor"] = c.clone();
                }
                let Ok(r) = self.ask(i, uri, method, params).await else {
                    break;
                };
                if page == 0 {
                    answered += 1;
                }
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
        let mut entries: Vec<(usize, Value, String)> = Vec::new();
        for (i, items) in per_member.into_iter().enumerate() {
            for it in items {
                if let Some(n) = it.get(field).and_then(Value::as_str).map(str::to_owned) {
                    entries.push((i, it, n));
                }
            }
        }
        let mounts: Vec<&str> = self.inner.members.iter().map(|m| m.0.as_str()).collect();
        let pairs: Vec<(usize, String)> = entries.iter().map(|(i, _, n)| (*i, n.clone())).collect();
        let (names, conflicts) = if rename {
            publish_names(&mounts, &pairs)
        } else {
            (
                pairs.iter().map(|(_, n)| Some(n.clone())).collect(),
                BTreeMap::new(),
            )
        };
        let named: Vec<(usize, Value, String, String)> = entries
            .into_iter()
            .zip(names)
            .filter_map(|((i, it, n), p)| p.map(|p| (i, it, n, p)))
            .collect();
        let mut out = Vec::new();
        let mut published = Published::default();
        let mut routes = self.inner.routes.lock();
        if rename {
            // The list replaces what an earlier one published (a name may have become prefixed).
            routes.retain(|(k, _), _| *k != kind);
        }
        for (i, mut it, n, p) in named {
            if rename {
                it[field] = json!(p);
            }
            if kind == "tools" {
                published.names.insert(p.clone(), (i, n.clone()));
            }
            routes.insert((kind, p), (i, n));
            out.push(it);
        }
        drop(routes);
        if kind == "tools" && answered > 0 {
            published.conflicts = conflicts;
            self.publish_tools(published);
        }
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
        if owner.is_none() && kind == "tools" {
            // Not listed yet on this instance: list (at most once per MIN_RELIST), look again.
            self.relist_tools().await;
            owner = self.lookup(kind, &name);
        } else if owner.is_none() {
            let meta = msg.pointer("/params/_meta").cloned();
            let _ = self
                .list(&parts.uri, &id, meta, "prompts", kind, true)
                .await;
            owner = self.lookup(kind, &name);
        }
        let _ = list;
        let Some((i, original)) = owner else {
            return wire::json_response(
                StatusCode::OK,
                &turnpike_mcp::error_response(
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
            &turnpike_mcp::error_response(
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
        turnpike_era::modern_headers(&mut headers, msg);
        let mut req = wire::post(&parts.uri, headers, msg);
        *req.extensions_mut() = parts.extensions;
        let svc = self.inner.members[i].1.get();
        wire::send(&svc, req).await
    }
}

/// The published name of each `(member, name)` pair (`None`: left out), and the names left
/// out with their claimants. A name two members share is published as `<mount>_<name>` for each;
/// then an own name equal to another's prefixed one is prefixed too; a name still claimed twice
/// (mounts `a` and `a_b` with tools `b_c` and `c`, or one member listing a name twice) cannot be
/// told apart and is left out.
fn publish_names(mounts: &[&str], pairs: &[(usize, String)]) -> (Vec<Option<String>>, Conflicts) {
    let prefixed = |i: usize, n: &str| format!("{}_{n}", mounts.get(i).copied().unwrap_or(""));
    fn claims(names: &[String]) -> HashMap<&str, usize> {
        let mut c: HashMap<&str, usize> = HashMap::new();
        for p in names {
            *c.entry(p.as_str()).or_default() += 1;
        }
        c
    }
    let own: Vec<String> = pairs.iter().map(|(_, n)| n.clone()).collect();
    let first = claims(&own);
    let mut names: Vec<String> = pairs
        .iter()
        .map(|(i, n)| match first.get(n.as_str()) {
            Some(c) if *c > 1 => prefixed(*i, n),
            _ => n.clone(),
        })
        .collect();
    let second = claims(&names);
    let again: Vec<bool> = names
        .iter()
        .zip(pairs)
        .map(|(p, (_, n))| p == n && second.get(p.as_str()).is_some_and(|c| *c > 1))
        .collect();
    for ((p, (i, n)), again) in names.iter_mut().zip(pairs).zip(again) {
        if again {
            *p = prefixed(*i, n);
        }
    }
    let third = claims(&names);
    let twice: Vec<bool> = names
        .iter()
        .map(|p| third.get(p.as_str()).is_some_and(|c| *c > 1))
        .collect();
    drop(third);
    let mut conflicts = Conflicts::new();
    let out = names
        .into_iter()
        .zip(pairs)
        .zip(twice)
        .map(|((p, (i, n)), twice)| {
            if twice {
                conflicts.entry(p).or_default().push((*i, n.clone()));
                None
            } else {
                Some(p)
            }
        })
        .collect();
    (out, conflicts)
}

impl ToolCatalog for Merged {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolved> {
        Box::pin(async move {
            if let Some(r) = self.lookup_tool(name) {
                return r;
            }
            self.relist_tools().await;
            self.lookup_tool(name).unwrap_or(Resolved::Unknown)
        })
    }

    fn price_of(&self, name: &str) -> Option<Price> {
        match self.lookup_tool(name)? {
            Resolved::Price(p) => Some(p),
            _ => None,
        }
    }

    fn names_of(&self, name: &str) -> Vec<String> {
        let t = self.inner.tools.lock();
        let Some((i, own)) = t.names.get(name) else {
            return Vec::new();
        };
        let Some(mount) = self.inner.members.get(*i).map(|m| m.0.as_str()) else {
            return Vec::new();
        };
        vec![format!("{mount}/{own}"), name.to_owned(), own.clone()]
    }
}

/// A price in a log line: `free`, or its offers.
fn describe(p: &Price) -> String {
    if p.is_free() {
        return "free".into();
    }
    let offers: Vec<String> = p.offers.iter().map(|o| format!("{o:?}")).collect();
    offers.join(" or ")
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
    wire::json_response(
        StatusCode::BAD_REQUEST,
        &turnpike_mcp::error_response(id, -32600, msg),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_core::{Offer, RailId};

    fn pow(effort: u64) -> Price {
        let mut terms = serde_json::Map::new();
        terms.insert("effort".into(), serde_json::Value::from(effort));
        Price::of(vec![Offer::new(RailId::new("pow"), terms)])
    }

    fn names(mounts: &[&str], pairs: &[(usize, &str)]) -> Vec<Option<String>> {
        let pairs: Vec<(usize, String)> = pairs.iter().map(|(i, n)| (*i, n.to_string())).collect();
        publish_names(mounts, &pairs).0
    }

    #[test]
    fn shared_names_are_prefixed_and_collisions_left_out() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            names(&["spy", "ev"], &[(0, "echo"), (1, "echo"), (1, "add")]),
            vec![s("spy_echo"), s("ev_echo"), s("add")]
        );
        // ev's own `spy_echo` would be published beside spy's prefixed echo: prefixed in turn.
        assert_eq!(
            names(&["spy", "ev"], &[(0, "echo"), (1, "echo"), (1, "spy_echo")]),
            vec![s("spy_echo"), s("ev_echo"), s("ev_spy_echo")]
        );
        // Mounts `a` and `a_b`: `a_b_c` is both a's `b_c` and a_b's `c`.
        let pairs = [
            (0usize, "b_c".to_string()),
            (1, "b_c".into()),
            (0, "c".into()),
            (1, "c".into()),
        ];
        let (out, conflicts) = publish_names(&["a", "a_b"], &pairs);
        assert_eq!(
            conflicts.get("a_b_c"),
            Some(&vec![(0, "b_c".to_string()), (1, "c".to_string())])
        );
        assert_eq!(out[1], s("a_b_b_c"));
        assert_eq!(out[2], s("a_c"));
        assert_eq!(out[0], None);
        assert_eq!(out[3], None);
    }

    #[test]
    fn price_order() {
        let mut merged = Policy {
            default_tool: pow(1),
            ..Policy::default()
        };
        merged.tools.insert("echo".into(), pow(20000));
        merged.tools.insert("spy/echo".into(), pow(21000));
        merged.tools.insert("ev_add".into(), Price::free());
        let mut spy = Policy {
            default_tool: pow(30000),
            ..Policy::default()
        };
        spy.tools.insert("sum".into(), pow(25000));
        let pricing = Pricing {
            merged,
            members: vec![(spy, true), (Policy::default(), false)],
        };
        // "<mount>/<name>" first, whatever the tool is published as.
        assert_eq!(pricing.price(0, "spy", "echo", "spy_echo"), pow(21000));
        assert_eq!(pricing.price(0, "spy", "echo", "echo"), pow(21000));
        // Then the published name, then the tool's own name.
        assert_eq!(pricing.price(1, "ev", "add", "ev_add"), Price::free());
        assert_eq!(pricing.price(1, "ev", "echo", "ev_echo"), pow(20000));
        // Then the mount's own price for it, then the mount's default.
        assert_eq!(pricing.price(0, "spy", "sum", "spy_sum"), pow(25000));
        assert_eq!(pricing.price(0, "spy", "other", "other"), pow(30000));
        // A mount that prices nothing: the merged endpoint's default.
        assert_eq!(pricing.price(1, "ev", "other", "other"), pow(1));
    }
}
