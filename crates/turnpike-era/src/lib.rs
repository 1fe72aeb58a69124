//! The two MCP protocol eras, translated.
//!
//! MCP 2026-07-28 (the *modern* era) made the HTTP transport stateless: no `initialize`, no
//! `Mcp-Session-Id`, no GET stream; every request carries its protocol version and the client's
//! capabilities in `params._meta` and mirrors its method and name in the `Mcp-Method` /
//! `Mcp-Name` headers; `server/discover` tells what a server supports. The 2025 revisions (the
//! *legacy* era) start a session with `initialize` and route by session id. By the spec's own
//! table a legacy-only client cannot talk to a modern-only server, nor the other way round.
//!
//! [`EraAdapter`] sits between the gate and an upstream and makes each side see its own era:
//!
//! | client ↓ / upstream → | legacy                 | dual-era | modern-only            |
//! |-----------------------|------------------------|----------|------------------------|
//! | legacy (2025)         | passed through         | passed   | `legacy_to_modern/`    |
//! | modern (2026-07-28)   | `modern_to_legacy/`    | passed   | passed through         |
//!
//! The upstream's era is configured (`[upstream] era = "2025" | "2026-07-28"`) or probed
//! (`"auto"`, the default): a `server/discover` that succeeds means modern; a modern upstream
//! that also completes an `initialize` is dual-era (that probe session is deleted at once). The
//! answer is kept for the life of the gateway; a probe that cannot reach the upstream is not
//! kept, and the request passes through unchanged.
//!
//! A client's era is read from its request: `MCP-Protocol-Version` 2026-07-28 or later, or a
//! `server/discover`, or (without the header) a 2026-07-28 `io.modelcontextprotocol/
//! protocolVersion` in `params._meta` make it modern; everything else (an `initialize`, an
//! `Mcp-Session-Id`, an older version header, a GET or DELETE) is legacy. Routing headers are
//! checked against the body by the gate before a request gets here
//! ([`turnpike_mcp::check_routing_headers`]).
//!
//! Features with no equivalent in the other era get a JSON-RPC error with code
//! [`NOT_TRANSLATABLE`] (or -32601 for a method the other era does not have) and a message
//! that names the feature; nothing waits for an answer that cannot come. docs/ERAS.md lists
//! every mapping.

mod legacy_to_modern;
mod modern_to_legacy;
mod protocol;
pub mod seal;
pub mod wire;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};
use tower_service::Service;

pub use protocol::{
    modern_headers, modern_meta, LEGACY_VERSIONS, METHOD_NOT_FOUND, MODERN_VERSION,
    NOT_TRANSLATABLE,
};
pub use seal::{Sealer, SessionClaims};
use turnpike_upstream::BoxUpstream;

/// Which era the operator says the upstream speaks (`[upstream] era`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraSetting {
    /// Probe with `server/discover` (and `initialize`).
    #[default]
    Auto,
    /// The 2025 revisions only: modern clients are translated.
    Legacy,
    /// 2026-07-28 only: legacy clients are translated (even if the upstream would also take
    /// `initialize`).
    Modern,
}

impl EraSetting {
    /// `"auto"`, `"2025"` (or any 2025 revision date) or `"2026-07-28"`.
    pub fn parse(s: &str) -> Option<EraSetting> {
        match s {
            "auto" => Some(EraSetting::Auto),
            "2025" | "legacy" => Some(EraSetting::Legacy),
            v if LEGACY_VERSIONS.contains(&v) => Some(EraSetting::Legacy),
            "2026-07-28" | "modern" => Some(EraSetting::Modern),
            _ => None,
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EraSetting::Auto => "auto",
            EraSetting::Legacy => "2025",
            EraSetting::Modern => "2026-07-28",
        }
    }
}

/// `era = "auto" | "2025" | "2026-07-28"` (`[upstream]`, a `[[mount]]`'s upstream).
impl<'de> serde::Deserialize<'de> for EraSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = <String as serde::Deserialize>::deserialize(d)?;
        EraSetting::parse(&v).ok_or_else(|| {
            turnpike_core::conf::hinted(
                format!("unknown era {v:?}"),
                "use \"auto\", \"2025\" or \"2026-07-28\"",
            )
        })
    }
}

/// What the upstream turned out to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamEra {
    /// Sessions and `initialize` only.
    Legacy,
    /// 2026-07-28 only.
    Modern,
    /// Both: nothing is translated.
    Dual,
}

/// Which era a client request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEra {
    /// The 2025 revisions.
    Legacy,
    /// 2026-07-28.
    Modern,
}

/// The era of a client request when its method and headers decide it, whatever its body: not a
/// POST, a version header, or a session id ([`client_era`] reads the body only when this is
/// `None`).
fn client_era_by_headers(method: &Method, headers: &HeaderMap) -> Option<ClientEra> {
    if method != Method::POST {
        return Some(ClientEra::Legacy);
    }
    match turnpike_mcp::era(headers) {
        Ok(turnpike_mcp::Era::RoutingHeaders) => return Some(ClientEra::Modern),
        Ok(turnpike_mcp::Era::Session)
            if headers.contains_key(turnpike_mcp::headers::PROTOCOL_VERSION) =>
        {
            return Some(ClientEra::Legacy)
        }
        _ => {}
    }
    if headers.contains_key(turnpike_mcp::headers::SESSION_ID) {
        return Some(ClientEra::Legacy);
    }
    None
}

/// Whether a request of `client`'s era reaches an upstream of `upstream`'s as it is.
fn same_era(client: ClientEra, upstream: UpstreamEra) -> bool {
    matches!(
        (client, upstream),
        (_, UpstreamEra::Dual)
            | (ClientEra::Legacy, UpstreamEra::Legacy)
            | (ClientEra::Modern, UpstreamEra::Modern)
    )
}

/// The era of a client request (see the module docs). `body` is the parsed POST body.
pub fn client_era(method: &Method, headers: &HeaderMap, body: Option<&Value>) -> ClientEra {
    if let Some(era) = client_era_by_headers(method, headers) {
        return era;
    }
    let Some(body) = body else {
        return ClientEra::Legacy;
    };
    match turnpike_mcp::messages::Envelope::of(body).method {
        Some("initialize") => return ClientEra::Legacy,
        Some("server/discover") => return ClientEra::Modern,
        _ => {}
    }
    let meta = turnpike_mcp::messages::RequestMeta::of(body);
    match meta.as_ref().and_then(|m| m.version()) {
        Some(v) if v >= MODERN_VERSION => ClientEra::Modern,
        _ => ClientEra::Legacy,
    }
}

/// Settings of an [`EraAdapter`].
#[derive(Debug)]
pub struct EraOptions {
    /// What the upstream speaks, or probe.
    pub setting: EraSetting,
    /// Seals the sessions of legacy clients of a modern upstream.
    pub sealer: Sealer,
    /// The most pooled upstream sessions for modern clients of a legacy upstream.
    pub pool_size: usize,
}

impl Default for EraOptions {
    fn default() -> Self {
        EraOptions {
            setting: EraSetting::Auto,
            sealer: Sealer::random(24 * 3600),
            pool_size: 64,
        }
    }
}

/// An upstream made to speak both eras (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct EraAdapter {
    inner: Arc<parking_lot::Mutex<BoxUpstream>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EraAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EraAdapter")
            .field("setting", &self.shared.setting)
            .field("detected", &self.shared.detected.get())
            .finish()
    }
}

pub(crate) struct Shared {
    setting: EraSetting,
    detected: tokio::sync::OnceCell<UpstreamEra>,
    pub(crate) legacy: legacy_to_modern::session::State,
    pub(crate) modern: modern_to_legacy::pool::State,
    /// Upstream calls waiting for a modern client's retry with the input they asked for.
    pub(crate) pending: modern_to_legacy::server_requests::State,
}

impl EraAdapter {
    /// `inner` made to speak both eras.
    pub fn new(inner: BoxUpstream, opts: EraOptions) -> EraAdapter {
        EraAdapter {
            inner: Arc::new(parking_lot::Mutex::new(inner)),
            shared: Arc::new(Shared {
                setting: opts.setting,
                detected: tokio::sync::OnceCell::new(),
                legacy: legacy_to_modern::session::State::new(opts.sealer),
                modern: modern_to_legacy::pool::State::new(opts.pool_size),
                pending: modern_to_legacy::server_requests::State::new(),
            }),
        }
    }

    /// Boxed, as the gateway's upstream.
    pub fn boxed(self) -> BoxUpstream {
        tower::util::BoxCloneService::new(self)
    }

    /// What the upstream speaks, once known (configured, or probed by an earlier request).
    pub fn upstream_era(&self) -> Option<UpstreamEra> {
        match self.shared.setting {
            EraSetting::Legacy => Some(UpstreamEra::Legacy),
            EraSetting::Modern => Some(UpstreamEra::Modern),
            EraSetting::Auto => self.shared.detected.get().copied(),
        }
    }

    /// What the upstream speaks: configured, or probed now (`None`: the probe could not reach
    /// it; not remembered).
    pub async fn resolve_era(&self) -> Option<UpstreamEra> {
        if let Some(e) = self.upstream_era() {
            return Some(e);
        }
        self.shared
            .detected
            .get_or_try_init(|| probe(self.inner()))
            .await
            .ok()
            .copied()
    }

    async fn handle(self, req: Request<Body>) -> Response<Body> {
        let Some(upstream) = self.resolve_era().await else {
            return wire::send(&self.inner(), req).await;
        };
        // A dual-era upstream, or a method and headers in the upstream's era: the body is not
        // read.
        if passes_as_it_is(&req, upstream) {
            return wire::send(&self.inner(), req).await;
        }
        if req.method() != Method::POST {
            // A GET or DELETE to a modern-only upstream.
            return legacy_to_modern::requests::not_post(&self, req).await;
        }
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, wire::MAX_READ).collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => {
                return wire::json_response(
                    http::StatusCode::BAD_REQUEST,
                    &turnpike_mcp::error_response(
                        None,
                        -32600,
                        "the request body could not be read",
                    ),
                )
            }
        };
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        let Some(value) = value.filter(Value::is_object) else {
            return wire::send(&self.inner(), Request::from_parts(parts, Body::from(bytes))).await;
        };
        match (
            client_era(&parts.method, &parts.headers, Some(&value)),
            upstream,
        ) {
            (ClientEra::Legacy, UpstreamEra::Modern) => {
                legacy_to_modern::requests::post(&self, parts, value).await
            }
            (ClientEra::Modern, UpstreamEra::Legacy) => {
                if let Some(refused) = modern_to_legacy::checks::check(&value) {
                    return refused;
                }
                modern_to_legacy::requests::post(&self, parts, value).await
            }
            _ => wire::send(&self.inner(), Request::from_parts(parts, Body::from(bytes))).await,
        }
    }

    /// How long a modern client's pending exchange (an `input_required` result translated from
    /// a 2025 server's request) waits for the retry before it is cancelled upstream (default
    /// five minutes).
    pub fn set_input_wait(&self, wait: std::time::Duration) {
        self.shared.pending.set_wait(wait);
    }

    /// The most pending exchanges kept on this instance (default 1024); one more cancels the
    /// oldest.
    pub fn set_max_pending_inputs(&self, max: usize) {
        self.shared.pending.set_max(max);
    }

    /// How many exchanges wait for a modern client's retry on this instance.
    pub fn pending_inputs(&self) -> usize {
        self.shared.pending.len()
    }

    /// The upstream service (a clone).
    pub(crate) fn inner(&self) -> BoxUpstream {
        self.inner.lock().clone()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Service<Request<Body>> for EraAdapter {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // A request that passes as it is (the upstream's era known, and the request's method
        // and headers in it) gets the upstream's own future, not one of this adapter's around
        // it: no second boxed future, no clone of the upstream service.
        if self
            .upstream_era()
            .is_some_and(|up| passes_as_it_is(&req, up))
        {
            let mut inner = self.inner.lock();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if let Poll::Ready(Ok(())) = inner.poll_ready(&mut cx) {
                return inner.call(req);
            }
        }
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// Whether `req` goes on as it is to an upstream of era `up`, judging by its method and headers
/// alone (`false` when it is translated, or when its body must be read to tell).
fn passes_as_it_is(req: &Request<Body>, up: UpstreamEra) -> bool {
    match up {
        UpstreamEra::Dual => true,
        _ if req.method() != Method::POST => up != UpstreamEra::Modern,
        _ => client_era_by_headers(req.method(), req.headers())
            .is_some_and(|client| same_era(client, up)),
    }
}

/// How long a sealed legacy session lives.
pub const SESSION_TTL_SECS: u64 = 24 * 3600;

/// An upstream made to speak both eras: an [`EraAdapter`] with `setting`, sealing sessions
/// with the key in `data_dir` ([`seal::KEY_FILE`]). A stdio upstream (`over_stdio`) is of the
/// session era whatever it speaks on its pipe (the stdio bridge is session-shaped), so `auto`
/// means `2025` there without a probe. The error names the session key file that could not be
/// read or created.
pub fn adapt(
    upstream: BoxUpstream,
    setting: EraSetting,
    over_stdio: bool,
    data_dir: &std::path::Path,
) -> Result<BoxUpstream, String> {
    let setting = match (setting, over_stdio) {
        (EraSetting::Auto, true) => EraSetting::Legacy,
        (e, _) => e,
    };
    let sealer = if setting == EraSetting::Legacy {
        Sealer::random(SESSION_TTL_SECS)
    } else {
        Sealer::load_or_create(data_dir, SESSION_TTL_SECS).map_err(|e| {
            format!(
                "session key {}: {e}",
                data_dir.join(seal::KEY_FILE).display()
            )
        })?
    };
    Ok(EraAdapter::new(
        upstream,
        EraOptions {
            setting,
            sealer,
            ..EraOptions::default()
        },
    )
    .boxed())
}

/// Asks the upstream what it speaks: `server/discover`, then (modern) `initialize`.
async fn probe(inner: BoxUpstream) -> Result<UpstreamEra, ()> {
    let uri = Uri::from_static("/");
    let discover = json!({
        "jsonrpc": "2.0", "id": "turnpike-probe", "method": "server/discover",
        "params": {"_meta": modern_meta(&json!({}), &json!({"name": "turnpike", "version": env!("CARGO_PKG_VERSION")}))},
    });
    let mut h = HeaderMap::new();
    modern_headers(&mut h, &discover);
    let resp = wire::send(&inner, wire::post(&uri, h, &discover)).await;
    let status = resp.status();
    if status == http::StatusCode::BAD_GATEWAY || status == http::StatusCode::GATEWAY_TIMEOUT {
        return Err(());
    }
    let modern = match wire::answer(resp, &json!("turnpike-probe")).await {
        Ok((_, v)) => turnpike_mcp::messages::Envelope::of(&v)
            .result
            .is_some_and(|r| {
                turnpike_mcp::messages::DiscoverResult::from_value(r)
                    .speaks_at_least(MODERN_VERSION)
            }),
        Err(_) => false,
    };
    if !status.is_success() || !modern {
        tracing::info!(target: "turnpike::era", "upstream speaks the 2025 revisions (no server/discover)");
        return Ok(UpstreamEra::Legacy);
    }
    // Modern: does it also take initialize?
    let init = json!({
        "jsonrpc": "2.0", "id": "turnpike-probe-init", "method": "initialize",
        "params": {"protocolVersion": LEGACY_VERSIONS[0], "capabilities": {},
                   "clientInfo": {"name": "turnpike-probe", "version": env!("CARGO_PKG_VERSION")}},
    });
    let mut h = HeaderMap::new();
    h.insert(
        turnpike_mcp::headers::PROTOCOL_VERSION,
        HeaderValue::from_static("2025-11-25"),
    );
    let resp = wire::send(&inner, wire::post(&uri, h, &init)).await;
    let ok = resp.status().is_success();
    let session = resp
        .headers()
        .get(turnpike_mcp::headers::SESSION_ID)
        .cloned();
    let legacy_too = ok
        && wire::answer(resp, &json!("turnpike-probe-init"))
            .await
            .is_ok_and(|(_, v)| turnpike_mcp::messages::Envelope::of(&v).result.is_some());
    if let Some(sid) = session {
        let mut del = Request::new(Body::empty());
        *del.method_mut() = Method::DELETE;
        *del.uri_mut() = uri.clone();
        del.headers_mut()
            .insert(turnpike_mcp::headers::SESSION_ID, sid);
        let _ = wire::send(&inner, del).await;
    }
    let era = if legacy_too {
        UpstreamEra::Dual
    } else {
        UpstreamEra::Modern
    };
    tracing::info!(target: "turnpike::era", era = ?era, "upstream era probed");
    Ok(era)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn eras_of_requests() {
        let post = Method::POST;
        let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}});
        let disc = json!({"jsonrpc":"2.0","id":1,"method":"server/discover"});
        let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        let inline = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{turnpike_mcp::messages::META_PROTOCOL_VERSION: "2026-07-28"}}});
        assert_eq!(client_era(&post, &h(&[]), Some(&init)), ClientEra::Legacy);
        assert_eq!(client_era(&post, &h(&[]), Some(&disc)), ClientEra::Modern);
        assert_eq!(client_era(&post, &h(&[]), Some(&list)), ClientEra::Legacy);
        assert_eq!(client_era(&post, &h(&[]), Some(&inline)), ClientEra::Modern);
        assert_eq!(
            client_era(
                &post,
                &h(&[("mcp-protocol-version", "2026-07-28")]),
                Some(&list)
            ),
            ClientEra::Modern
        );
        assert_eq!(
            client_era(
                &post,
                &h(&[("mcp-protocol-version", "2025-06-18")]),
                Some(&inline)
            ),
            ClientEra::Legacy
        );
        assert_eq!(
            client_era(&post, &h(&[("mcp-session-id", "x")]), Some(&disc)),
            ClientEra::Legacy
        );
        assert_eq!(client_era(&Method::GET, &h(&[]), None), ClientEra::Legacy);
    }

    fn req(method: Method, headers: &[(&str, &str)], body: Body) -> Request<Body> {
        let mut r = Request::new(body);
        *r.method_mut() = method;
        *r.headers_mut() = h(headers);
        r
    }

    #[test]
    fn what_passes_as_it_is_by_its_headers() {
        let old = [("mcp-protocol-version", "2025-06-18")];
        let new = [("mcp-protocol-version", "2026-07-28")];
        let session = [("mcp-session-id", "x")];
        let cases = [
            // (method, headers, passes to legacy, to modern, to dual)
            (Method::GET, &[][..], true, false, true),
            (Method::DELETE, &session[..], true, false, true),
            (Method::POST, &old[..], true, false, true),
            (Method::POST, &session[..], true, false, true),
            (Method::POST, &new[..], false, true, true),
            // No header says: the body decides, so it is read first.
            (Method::POST, &[][..], false, false, true),
        ];
        for (m, hs, legacy, modern, dual) in cases {
            let r = req(m.clone(), hs, Body::empty());
            assert_eq!(
                passes_as_it_is(&r, UpstreamEra::Legacy),
                legacy,
                "{m} {hs:?}"
            );
            assert_eq!(
                passes_as_it_is(&r, UpstreamEra::Modern),
                modern,
                "{m} {hs:?}"
            );
            assert_eq!(passes_as_it_is(&r, UpstreamEra::Dual), dual, "{m} {hs:?}");
        }
    }

    /// A request in the upstream's era by its headers reaches the upstream with its body
    /// unread: a body that cannot be read is the upstream's to find out, not a 400 from here.
    #[tokio::test]
    async fn a_request_in_the_upstreams_era_is_not_read() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::ServiceExt;
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let inner =
            tower::util::BoxCloneService::new(tower::service_fn(move |_req: Request<Body>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(Body::from("upstream"))) }
            }));
        let adapter = EraAdapter::new(
            inner,
            EraOptions {
                setting: EraSetting::Legacy,
                ..EraOptions::default()
            },
        );
        let broken = || {
            Body::from_stream(futures_util::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("cut"))
            }))
        };
        let r = req(
            Method::POST,
            &[("mcp-protocol-version", "2025-06-18")],
            broken(),
        );
        let resp = adapter.clone().oneshot(r).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Without a header that says its era, the body is read (here: it cannot be).
        let r = req(Method::POST, &[], broken());
        let resp = adapter.oneshot(r).await.unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn settings() {
        assert_eq!(EraSetting::parse("auto"), Some(EraSetting::Auto));
        assert_eq!(EraSetting::parse("2025"), Some(EraSetting::Legacy));
        assert_eq!(EraSetting::parse("2025-06-18"), Some(EraSetting::Legacy));
        assert_eq!(EraSetting::parse("2026-07-28"), Some(EraSetting::Modern));
        assert_eq!(EraSetting::parse("2027"), None);
    }
}
