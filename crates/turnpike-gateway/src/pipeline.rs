//! One call's path through the gateway.
//!
//! Every request that reaches the endpoint goes through [`Gate::handle`], whose `run` is this
//! list of steps, one method each. Each step consumes the stage the previous one gave
//! (`Parsed` → `Priced` → `Decided` → `Cleared` → `Forwarded`) and returns the next, or the
//! answer to send instead; each calls into the crate or module that owns what it checks. This
//! list is the one description of the path (docs/ARCHITECTURE.md and the crate doc point here).
//!
//! 1. **Screen** (`Gate::screen`, [`turnpike_http::hosts`]): `Host` must be an allowed host (port
//!    ignored); `Origin`, when present, an allowed host's origin or an allowed origin. Else
//!    403, -31403. Two `Host` lines, or a `Host` disagreeing with the target's authority: 400,
//!    -32600.
//! 2. **Pass through** (`Gate::pass_through`): a request that is not a POST (GET opens a server
//!    stream, DELETE ends a session) carries no priced call: its credential headers are
//!    removed and it is forwarded.
//! 3. **Parse** (`Gate::parse` → `Parsed`): `Content-Type` must be `application/json` (else
//!    415); the body is read whole within `max_body_bytes` (413, -31413) and the body time
//!    limit (408) ([`turnpike_http::body`]); it must be one JSON-RPC message
//!    ([`turnpike_mcp::parse_message`]: bad JSON → 400, -32700; a batch array, a malformed
//!    message, a repeated key or an integer beyond 64 bits → 400, -32600); from
//!    `MCP-Protocol-Version` 2026-07-28 on, `Mcp-Method` / `Mcp-Name` must mirror the body and
//!    `MCP-Protocol-Version` the body's `_meta` protocol version
//!    ([`turnpike_mcp::check_routing_headers`]: else 400, -32020). The W3C trace context is
//!    taken from `traceparent`, else `params._meta`.
//! 4. **Price** (`Gate::price` → `Priced`): [`turnpike_core::Policy::price`] by method and name
//!    ([`turnpike_mcp::call_name`]); on the merged endpoint, `tools/call` by the catalog of
//!    published tools (a name it does not publish: -32602; one it cannot price: -31403).
//!    Responses the client sends (no method) and free methods pass the rails untouched (the
//!    limits still count them, discovery on its own budget). So does the next round of a
//!    multi-round call paid by puzzle or payment ([`crate::continuation`]): a request carrying
//!    a `requestState` that an `input_required` answer to such a call returned, for the same
//!    method, name and arguments, once, on this instance (outcome `continued`).
//!    With class rules (`[[policy]] action = "class"`, [`crate::classes`]) the call's
//!    price/limit class is picked first, for every request but the handshake, discovery and
//!    list methods: the call is classified and the rules judge it on the caller known before
//!    the rails — an identity a rail verifies without spending anything
//!    ([`turnpike_core::Rail::identify`]: an OAuth bearer token), else the address; the first
//!    enforced class rule that matches names the class, whose prices then replace the
//!    gateway's (not on the merged endpoint, priced by its catalog). A class rule in shadow
//!    mode that would pick another class is logged and counted (`would_class`).
//! 5. **Decide** (`Gate::decide` → `Decided`): the call is classified
//!    ([`turnpike_mcp::classify`]: method, name and the hash of the canonical arguments — the
//!    hash only when something binds to them: a price, the next round of a paid call, the loop
//!    brake; [`turnpike_mcp::classify_named`], with the name step 4 looked up) and
//!    its credentials collected by the rails from every `Authorization` line (`PoW`,
//!    `L402`/`LSAT`, `Bearer`, `DPoP` with its `DPoP` proof), the headers they read (`Macaroon`)
//!    and their `params._meta` keys ([`crate::credentials::collect`]). Limits that must run before the rails run here: a
//!    call that presents only puzzle solutions is admitted on the caller's address (the
//!    identity a solution gets anyway) before the solution is spent, so a limited caller keeps
//!    it (the check is left pending while the rails verify, [`turnpike_limits::PendingAdmit`],
//!    and runs when the solution is about to be spent: on Redis in the same script as the
//!    spend, one round trip); a call that presents no credential is counted against the address's challenge budget
//!    before any challenge is minted (`Limiter::admit_challenge`; past it 429), which also
//!    reads the address's effort multiplier (loop-brake strikes: it is challenged at
//!    `effort × multiplier`). Then [`turnpike_core::decide`]: each rail verifies its own
//!    credential, the first pass wins — a rail that binds itself to the request through its
//!    view of it ([`turnpike_core::RailPlugin::bind`]; OAuth: method and public URL for DPoP
//!    `htm`/`htu`, and body hash). A call no rail lets through is answered here
//!    (`Gate::refuse`; fresh challenges answering a refused credential are counted against
//!    the challenge budget first): a credential its rail answers itself
//!    ([`crate::respond::rail_answer`]; a refused token gets the OAuth answer — 400 `invalid_request`, 401
//!    `invalid_token` / `invalid_dpop_proof` / `use_dpop_nonce`, 403 `insufficient_scope`) —
//!    over HTTP whatever the mode; a caller over its L402 invoice rate with no other way
//!    through gets 429; otherwise [`crate::respond::challenge`]: HTTP 402 (401 when only OAuth
//!    is offered, whatever the mode: MCP clients answer a 401 by signing in) / 401 / 503 with
//!    `WWW-Authenticate` lines and a JSON-RPC error, or in band as an HTTP 200 tool result with
//!    `isError: true`, as the delivery mode says. A credential that could not be checked (its
//!    backend down) fails the call closed: 503, no fresh challenge. Under a price in shadow
//!    mode (`mode = "shadow"`, [`turnpike_core::Price::shadow`]) a call no rail lets through
//!    goes on instead, free, whatever the reason (undecidable too), logged and counted
//!    (`Metrics::price_would_refuse`); one with no credential mints no challenge and spends no
//!    challenge budget.
//! 6. **Authorize** (`Gate::authorize`, [`crate::access`], with `[[policy]]` rules only): the
//!    access policy ([`turnpike_policy`], CEL) judges the call for its caller — the granting
//!    rail's identity, else one a rail verifies without spending anything
//!    ([`turnpike_core::Rail::identify`]: an OAuth bearer token on a free call), else the
//!    caller's address. Refused → 403, -31403 with the rule's reason (in band: an `isError`
//!    result for `tools/call`), or for a `tools/call` of a tool the caller's list hides the
//!    unknown-tool answer (200, -32602); a paid call refused here is settled as failed (debit
//!    refunded, single-use credential released). A rule in shadow mode that would refuse is
//!    logged and counted, and the call goes on. The handshake, `ping` and the discovery and
//!    list methods are not judged; the caller of `tools/list`, `resources/list` or
//!    `prompts/list` is kept for step 9.
//! 7. **Admit** (`Gate::admit_call` → `Cleared`): the limits ([`crate::limits`],
//!    `turnpike_limits::Limiter::admit`) for every request, on the granting rail's identity,
//!    else the caller's address (a puzzle-only call keeps the admission of step 5); a call
//!    whose class (step 4) has a bucket of its own is checked against it in place of
//!    `[limits.rails.*]` / `[limits.default]`, on the identity the class was picked on when
//!    no rail granted one. Limited →
//!    429 with `Retry-After`, `RateLimit-Policy`, `RateLimit` and JSON-RPC error -31429 (in
//!    band: an `isError` result for `tools/call`); store down → 503 / -31503 (or let through,
//!    `failure_mode = "open"`). A balance debit (L402) is then counted against its identity's
//!    daily msat budget ([`crate::limits::spend_msat`]; over it 429, store down 503). A call
//!    refused here has its debit refunded.
//! 8. **Forward** (`Gate::forward` → `Forwarded`): the credentials are stripped — the
//!    `Authorization`, `Macaroon`, `DPoP` and `Turnpike-*` headers, and every `turnpike/*` key
//!    of `params._meta` and every other key a rail reads there (`org.paymentauth/credential`)
//!    ([`turnpike_mcp::strip_meta`]; the body is re-serialised only
//!    when something was removed, otherwise the received bytes go on); a call a token paid for
//!    may gain the gateway's signed `Turnpike-Identity` header ([`crate::identity`]) and the
//!    `Authorization` its rail gives for the upstream (a token exchanged for the caller's, RFC
//!    8693: `PassNotes::upstream_authorization`). The call
//!    goes to the inner service (an upstream, or the MCP server itself when the gate is a tower
//!    layer); its response streams back as it arrives, within the upstream's time limits
//!    ([`crate::deadline`]: 504 / -31504, and `notifications/cancelled` upstream for a call
//!    given up on or whose caller went away).
//! 9. **Finish** (`Gate::finish`): the call is settled with the rail that granted it
//!    ([`turnpike_core::Rail::settle`]), with whether the upstream answered it: for grants whose
//!    rail needs the JSON-RPC outcome (a balance debit) that outcome decides ([`crate::settle`]),
//!    for the rest the HTTP status; a non-2xx answer (refused before being served) also
//!    releases a single-use credential ([`turnpike_core::Rail::release`]). A round paid by
//!    puzzle or payment is remembered for its next round ([`crate::continuation`]); a 2xx
//!    answer gains what the granting rail adds on success (the MPP receipt: `Payment-Receipt`
//!    and `result._meta`, [`crate::result_meta`]);
//!    `tools/list` responses are filtered to the tools the caller may call, with the
//!    upstream's annotations remembered for step 6 ([`crate::access`]), and annotated with
//!    each tool's price ([`crate::annotate`]; with class rules, the price of the class a
//!    `tools/call` of it, with no arguments, would be in); `resources/list` and
//!    `prompts/list` are filtered likewise (each item judged as its `resources/read` or
//!    `prompts/get`); `server/discover` answers gain the MCP extensions the rails speak in
//!    `capabilities.extensions` ([`turnpike_core::RailPlugin::mcp_extensions`]: x402's
//!    `org.x402/payment`); an
//!    admitted call carries `RateLimit-Policy` / `RateLimit` and holds its in-flight slot until
//!    the response body has ended.
//!
//! One log line per call records method, tool, rail, outcome
//! ([`turnpike_operator::metrics::Outcome`]), status and latency; never a credential. With
//! `[telemetry]`, the call's spans ([`turnpike_telemetry::CallSpans`]) follow the same steps:
//! `run` marks each stage boundary, and the call's end hands them to the exporter.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tower::{Service, ServiceExt};
use turnpike_core::{
    error_codes, About, BoundRail, CallFacts, Decision, EdgeRequest, Grant, Identity, Policy,
    Price, Rail, RailId, RailPlugin, Refusal,
};
use turnpike_limits::{
    Admission, Admitted, CallInfo, CallKind, Limiter, PendingAdmit, SpendReceipt,
};
use turnpike_mcp::MessageKind;

use crate::classes::{Classes, GateClass};
use crate::config::{ChallengeMode, Config};
use crate::credentials;
use crate::deadline::Settlement;
use crate::identity::{IdentitySigner, IDENTITY_HEADER};
use crate::limits::LimitCounters;
use crate::rails::Rails;
use crate::respond::{self, json_error};
use crate::GatewayError;
use turnpike_http::body::{self, BodyError};
use turnpike_http::hosts::HostPolicy;
use turnpike_operator::metrics::{CallRecord, Metrics, Outcome};
use turnpike_telemetry::{context, CallSpans, CallSummary, Stage};

pub use turnpike_http::{JsonRpcId, PeerAddr};

/// Settings of a [`Gate`] that do not come from the policy or the rails.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The protected resource: the endpoint path (part of every challenge's scope).
    pub resource: String,
    /// Allowed `Host` values (port ignored; `"*"` for any).
    pub allowed_hosts: Vec<String>,
    /// Extra allowed `Origin` values.
    pub allowed_origins: Vec<String>,
    /// How challenges are delivered.
    pub challenge_mode: ChallengeMode,
    /// Largest accepted POST body.
    pub max_body_bytes: usize,
    /// Time a client has to send its body.
    pub body_read_timeout: Duration,
    /// The public URL of the endpoint, as callers reach it: DPoP proofs must name it (`htu`).
    /// `None`: the OAuth rail's `endpoint_url`, else its resource.
    pub public_url: Option<String>,
    /// Time the upstream has to send a forwarded request's response head
    /// (`[upstream] response_timeout_secs`, [`crate::deadline`]).
    pub response_timeout: Duration,
    /// Longest silence within a streamed answer before the call's response
    /// (`[upstream] stream_idle_timeout_secs`).
    pub stream_idle_timeout: Duration,
}

impl Default for GateOptions {
    fn default() -> Self {
        let s = crate::config::ServerConfig::default();
        let u = crate::config::UpstreamConfig::default();
        GateOptions {
            resource: s.path,
            allowed_hosts: s.allowed_hosts,
            allowed_origins: s.allowed_origins,
            challenge_mode: s.challenge_mode,
            max_body_bytes: s.max_body_bytes,
            body_read_timeout: Duration::from_secs(s.body_read_timeout_secs),
            public_url: None,
            response_timeout: Duration::from_secs(u.response_timeout_secs),
            stream_idle_timeout: Duration::from_secs(u.stream_idle_timeout_secs),
        }
    }
}

/// The gate: policy, rails and request rules. Shared by every connection through an `Arc`;
/// nothing in it is locked on the request path.
pub struct Gate {
    opts: GateOptions,
    hosts: HostPolicy,
    policy: Policy,
    rails: Rails,
    /// The headers the rails read a credential from besides `Authorization` (`Macaroon`,
    /// `DPoP`, …), parsed once: every forwarded request is stripped of them.
    credential_headers: Vec<http::HeaderName>,
    identity: Option<IdentitySigner>,
    limiter: Option<Arc<Limiter>>,
    counters: Arc<LimitCounters>,
    metrics: Arc<Metrics>,
    continuations: Arc<crate::continuation::Continuations>,
    /// The names and prices of the tools the endpoint publishes, when it knows them (the
    /// merged endpoint): `tools/call` is priced by it, and a name it does not publish refused.
    catalog: Option<Arc<dyn turnpike_merge::ToolCatalog>>,
    /// Where each call's spans go (`[telemetry]`); `None`: no tracing work at all.
    telemetry: Option<turnpike_telemetry::Telemetry>,
    /// The access policy (`[[policy]]`); empty: every call allowed, nothing evaluated.
    access: Arc<turnpike_policy::Policy>,
    /// The tools' annotations from the upstream's last `tools/list` (`call.annotations`).
    annotations: Arc<crate::access::Annotations>,
    /// The price/limit classes the access policy's class rules pick ([`crate::classes`]).
    classes: Arc<Classes>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("opts", &self.opts)
            .field("policy", &self.policy)
            .field(
                "rails",
                &self.rails.all.iter().map(|r| r.kind()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Gate {
    /// A gate from a whole configuration: every rail the configuration asks for
    /// ([`crate::rails::Rails::from_config`]).
    pub fn from_config(cfg: &Config) -> Result<Gate, GatewayError> {
        let rails = crate::rails::Rails::from_config(cfg)?;
        Gate::from_config_with_rails(cfg, rails)
    }

    /// A gate from a configuration over rails already built (a reload keeps the rails, whose
    /// keys, spent sets and stores must outlive it).
    pub fn from_config_with_rails(cfg: &Config, rails: Rails) -> Result<Gate, GatewayError> {
        let s = &cfg.server;
        let opts = GateOptions {
            resource: s.path.clone(),
            allowed_hosts: s.allowed_hosts.clone(),
            allowed_origins: s.allowed_origins.clone(),
            challenge_mode: s.challenge_mode,
            max_body_bytes: s.max_body_bytes,
            body_read_timeout: Duration::from_secs(s.body_read_timeout_secs),
            public_url: Some(cfg.public_url()),
            response_timeout: Duration::from_secs(cfg.upstream.response_timeout_secs),
            stream_idle_timeout: Duration::from_secs(cfg.upstream.stream_idle_timeout_secs),
        };
        let identity = crate::rails::identity_signer(cfg, &rails)?;
        let access = crate::config::compile_policy(&cfg.policy_rules).map_err(|e| {
            GatewayError::Config(crate::config::ConfigError {
                file: String::new(),
                problems: vec![crate::config::Problem {
                    line: 0,
                    col: 0,
                    message: e,
                    hint: "see docs/POLICY.md".into(),
                }],
            })
        })?;
        let mut gate = Gate::with_rails(opts, cfg.policy(), rails)
            .with_access_policy(access)
            .with_classes(Classes::from_config(cfg));
        gate.limiter = crate::limits::limiter_from_config(cfg)?;
        gate.identity = identity;
        Ok(gate)
    }

    /// A gate over a built rail set: the configured one ([`Rails::from_config`]), or one made
    /// by hand, e.g. a single rail with the others recognised ([`Rails::only`]). Its metrics
    /// have a `rail` label slot for each rail of the set, with the rail's own meter
    /// ([`Rails::meters`]); [`Gate::with_metrics`] shares others instead.
    pub fn with_rails(opts: GateOptions, policy: Policy, rails: Rails) -> Gate {
        let metrics = Arc::new(Metrics::with_rails(rails.meters()));
        let credential_headers = rails
            .edge()
            .iter()
            .flat_map(|r| r.reader().credential_headers())
            .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        Gate {
            hosts: HostPolicy::new(&opts.allowed_hosts, &opts.allowed_origins),
            opts,
            policy,
            rails,
            credential_headers,
            identity: None,
            limiter: None,
            counters: Arc::default(),
            metrics: Arc::default(),
            continuations: Arc::default(),
            catalog: None,
            telemetry: None,
            access: Arc::default(),
            annotations: Arc::default(),
            classes: Arc::default(),
        }
        .with_metrics(metrics)
    }

    /// Counts into `metrics` (shared by the gates of one process, so that figures survive a
    /// reload); the limit counters become the ones `metrics` holds.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Gate {
        metrics.register_tools(
            (self.policy.tools.keys().map(String::as_str)).chain(self.classes.tool_names()),
        );
        self.counters = metrics.limit_counters();
        self.metrics = metrics;
        self
    }

    /// Prices `tools/call` by `catalog` ([`turnpike_merge::ToolCatalog`]) rather than by the
    /// policy's tool names.
    pub fn with_catalog(mut self, catalog: Arc<dyn turnpike_merge::ToolCatalog>) -> Gate {
        self.catalog = Some(catalog);
        self
    }

    /// Decides who may call what by `policy` ([`crate::access`]; [`Gate::from_config`] gives
    /// the configured `[[policy]]` rules).
    pub fn with_access_policy(mut self, policy: turnpike_policy::Policy) -> Gate {
        self.access = Arc::new(policy);
        self
    }

    /// Prices and limits the callers the access policy's class rules put in a class by that
    /// class ([`crate::classes`]; [`Gate::from_config`] gives the configured
    /// `[classes.<name>]`).
    pub fn with_classes(mut self, classes: Classes) -> Gate {
        self.metrics.register_tools(classes.tool_names());
        self.classes = Arc::new(classes);
        self
    }

    /// Records each call's spans through `telemetry` ([`turnpike_telemetry::CallSpans`]).
    pub fn with_telemetry(mut self, telemetry: Option<turnpike_telemetry::Telemetry>) -> Gate {
        self.telemetry = telemetry;
        self
    }

    /// Where this gate's spans go, if anywhere.
    pub fn telemetry(&self) -> Option<&turnpike_telemetry::Telemetry> {
        self.telemetry.as_ref()
    }

    /// What this gate counts ([`crate::metrics`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Applies `limiter` to every call (see [`crate::limits`]). Gates built by
    /// [`Gate::from_config`] have the configured one; the other constructors none.
    pub fn with_limiter(mut self, limiter: Option<Arc<Limiter>>) -> Gate {
        self.limiter = limiter;
        self
    }

    /// The limiter in force, if any.
    pub fn limiter(&self) -> Option<&Arc<Limiter>> {
        self.limiter.as_ref()
    }

    /// How many calls the gateway's own limits refused, apart from the upstream's 429s.
    pub fn limit_counters(&self) -> &LimitCounters {
        &self.counters
    }

    /// Signs a `Turnpike-Identity` header for callers who come in with a token (see
    /// [`crate::identity`]).
    pub fn with_identity_signer(mut self, signer: IdentitySigner) -> Gate {
        self.identity = Some(signer);
        self
    }

    /// The response for a request to `path` when it is a document a rail serves beside the
    /// endpoint ([`turnpike_core::RailPlugin::document`]; the OAuth rail's RFC 9728 protected-resource
    /// metadata at the path-inserted form of the resource, the form of this endpoint's path,
    /// or the root form): `GET`/`HEAD` get the JSON document with
    /// `Access-Control-Allow-Origin: *`, `OPTIONS` a CORS preflight answer, other methods 405.
    /// `Host` is checked like the endpoint's; `Origin` is not (a public document for browser
    /// clients on any origin). `None` for every other path.
    pub fn metadata_response(&self, req: &Request<Body>) -> Option<Response<Body>> {
        let path = req.uri().path();
        let doc = self
            .rails
            .edge()
            .iter()
            .find_map(|r| r.document(path, &self.opts.resource))?;
        // Host only: the document is public and read cross-origin by browser clients.
        let mut headers = req.headers().clone();
        headers.remove(header::ORIGIN);
        if let Err(refusal) = self.hosts.check(&headers, req.uri()) {
            return Some(json_error(
                refusal.status(),
                None,
                refusal.code(),
                refusal.message(),
            ));
        }
        Some(respond::document(req.method(), &doc))
    }

    /// The rails in force.
    pub fn rails(&self) -> &Rails {
        &self.rails
    }

    /// The options in force.
    pub fn options(&self) -> &GateOptions {
        &self.opts
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs one request through the gate, forwarding it to `inner` when it may pass.
    pub async fn handle<S, B>(
        &self,
        req: Request<Body>,
        inner: S,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let started = Instant::now();
        let mut log = CallLog {
            request_id: context::request_id(req.headers()),
            spans: CallSpans::start(
                self.telemetry.as_ref(),
                req.method(),
                req.headers(),
                &self.opts.resource,
            ),
            ..CallLog::default()
        };
        self.metrics.call_started();
        let mut resp = match self.run(req, inner, &mut log).await {
            Ok(r) => r,
            Err(e) => {
                log.record(&self.metrics, StatusCode::BAD_GATEWAY, started);
                return Err(e);
            }
        };
        log.finish(resp.status(), started);
        log.record(&self.metrics, resp.status(), started);
        if let Ok(v) = HeaderValue::from_str(&log.request_id) {
            resp.headers_mut()
                .insert(context::REQUEST_ID_HEADER.clone(), v);
        }
        Ok(resp)
    }

    /// The steps of the module doc, in order: each consumes the previous stage and gives the
    /// next, or the answer to send instead.
    async fn run<S, B>(
        &self,
        req: Request<Body>,
        inner: S,
        log: &mut CallLog,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        macro_rules! step {
            ($e:expr) => {
                match $e {
                    Ok(stage) => stage,
                    Err(answer) => return Ok(*answer),
                }
            };
        }
        let req = step!(self.screen(req, log));
        if req.method() != Method::POST {
            return self.pass_through(req, inner, log).await;
        }
        log.spans.enter(Stage::Parse);
        let parsed = step!(self.parse(req, log).await);
        log.spans.enter(Stage::Price);
        let priced = step!(self.price(parsed, log).await);
        log.spans.enter(Stage::Decide);
        let decided = step!(self.decide(priced, log).await);
        let decided = step!(self.authorize(decided, log).await);
        log.spans.enter(Stage::Limits);
        let cleared = step!(self.admit_call(decided, log).await);
        log.spans.enter(Stage::Forward);
        let forwarded = self.forward(cleared, inner, log).await?;
        Ok(self.finish(forwarded).await)
    }

    /// Step 1, screen: `Host` and `Origin`.
    fn screen(&self, req: Request<Body>, log: &mut CallLog) -> Step<Request<Body>> {
        match self.hosts.check(req.headers(), req.uri()) {
            Ok(()) => Ok(req),
            Err(refusal) => {
                log.outcome = Outcome::Forbidden;
                Err(Box::new(json_error(
                    refusal.status(),
                    None,
                    refusal.code(),
                    refusal.message(),
                )))
            }
        }
    }

    /// Step 2, pass through: GET, DELETE and the rest carry no priced call: forwarded without
    /// credentials.
    async fn pass_through<S, B>(
        &self,
        req: Request<Body>,
        inner: S,
        log: &mut CallLog,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        log.method = req.method().as_str().to_owned();
        let (mut parts, body) = req.into_parts();
        self.strip_credentials(&mut parts.headers);
        log.outcome = Outcome::Passthrough;
        log.trace = context::find(&parts.headers, None).map(|t| t.0);
        log.tag_upstream_request(&mut parts.headers);
        let up = Instant::now();
        let resp = pass_on(inner, Request::from_parts(parts, body)).await;
        log.upstream = Some(up.elapsed());
        resp
    }

    /// Step 3, parse: Content-Type, the body within its limits, the envelope, the era's routing
    /// headers (and the trace context).
    async fn parse(&self, req: Request<Body>, log: &mut CallLog) -> Step<Parsed> {
        if !body::is_json(req.headers()) {
            log.outcome = Outcome::UnsupportedMediaType;
            return Err(Box::new(json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                error_codes::INVALID_REQUEST,
                "Content-Type must be application/json",
            )));
        }
        let (mut parts, body) = req.into_parts();
        let bytes = body::read_limited(
            &parts.headers,
            body,
            self.opts.max_body_bytes,
            self.opts.body_read_timeout,
        )
        .await
        .map_err(|e| {
            log.outcome = Outcome::BadBody;
            Box::new(body_error(e))
        })?;
        let msg = turnpike_mcp::parse_message(&bytes).map_err(|e| {
            log.outcome = Outcome::BadEnvelope;
            Box::new(json_error(
                StatusCode::BAD_REQUEST,
                None,
                e.code(),
                &e.to_string(),
            ))
        })?;
        if let Err(e) = turnpike_mcp::check_routing_headers(&parts.headers, &msg) {
            log.outcome = Outcome::HeaderMismatch;
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                msg.id(),
                error_codes::HEADER_MISMATCH,
                &e.to_string(),
            )));
        }
        if let Some((tp, src)) = context::find(&parts.headers, Some(msg.value())) {
            if src == turnpike_telemetry::TraceSource::Meta {
                context::propagate_meta(&mut parts.headers, &tp, Some(msg.value()));
            }
            log.trace = Some(tp);
        }
        Ok(Parsed { parts, bytes, msg })
    }

    /// Step 4, price: by the policy, or by the merged endpoint's catalog. The next round of a
    /// multi-round call that was paid for is not priced again ([`crate::continuation`]).
    async fn price<'g>(&'g self, call: Parsed, log: &mut CallLog) -> Step<Priced<'g>> {
        let msg = &call.msg;
        let method = msg.method().unwrap_or("");
        log.method = method.to_owned();
        log.tool = turnpike_mcp::call_name(msg).map(str::to_owned);
        // Only a request that carries a requestState is looked up (hashing its arguments here).
        let continued = msg.kind() == MessageKind::Request
            && crate::continuation::request_state(msg.params()).is_some_and(|state| {
                let args = turnpike_mcp::canonical::arguments_hash(msg.params());
                crate::continuation::binding(method, log.tool.as_deref(), &args)
                    .is_some_and(|b| self.continuations.take(state, &b))
            });
        let mut listed = None;
        // The name the limits know a merged tool by (the first of `<mount>/<name>`, the
        // published name and its own name that has a `[limits.tools.*]` class).
        let mut limit_name: Option<String> = None;
        if let (Some(catalog), MessageKind::Request, "tools/call", false) =
            (&self.catalog, msg.kind(), method, continued)
        {
            let name = log.tool.as_deref().unwrap_or("");
            match catalog.resolve(name).await {
                turnpike_merge::Resolved::Price(p) => {
                    listed = Some(p);
                    if let Some(limiter) = &self.limiter {
                        limit_name = catalog
                            .names_of(name)
                            .into_iter()
                            .find(|n| limiter.has_tool_class(n));
                    }
                }
                turnpike_merge::Resolved::Unknown => {
                    log.outcome = Outcome::UnknownTool;
                    return Err(Box::new(crate::access::unknown_tool(msg.id(), name)));
                }
                turnpike_merge::Resolved::Conflict(why) => {
                    log.outcome = Outcome::UnpricedTool;
                    return Err(Box::new(json_error(
                        StatusCode::OK,
                        msg.id(),
                        error_codes::FORBIDDEN,
                        &why,
                    )));
                }
            }
        }
        // The caller's price/limit class, picked before the price on the caller known before
        // the rails (crate::classes).
        let (mut class, mut identified, mut facts) = (None, None, None);
        if self.access.has_classes()
            && msg.kind() == MessageKind::Request
            && !turnpike_core::policy::DEFAULT_FREE_METHODS.contains(&method)
        {
            let peer = peer_ip(&call.parts.extensions);
            let f =
                turnpike_mcp::classify(msg, &self.opts.resource, peer, turnpike_core::unix_now());
            let caller = self.identified(&call, &f).await;
            class = self.pick_class(caller.as_ref(), peer, method, log.tool.as_deref(), msg);
            identified = Some(Box::new(caller));
            facts = Some(Box::new(f));
        }
        let prices = class.map_or(&self.policy, |c: &GateClass| &c.prices);
        let price = if msg.kind() == MessageKind::Response || continued {
            None
        } else {
            Some(match listed {
                Some(p) => Cow::Owned(p),
                None => Cow::Borrowed(prices.price(method, log.tool.as_deref())),
            })
            .filter(|p| !p.is_free())
        };
        Ok(Priced {
            call,
            continued,
            price,
            limit_name: limit_name.or_else(|| log.tool.clone()),
            class,
            identified,
            facts,
        })
    }

    /// Step 5, decide: credentials and the rails' decision (with the limits that must run before
    /// it: a puzzle-only call's admission, the challenge budget). A call no rail lets through
    /// is answered here.
    async fn decide<'g>(
        &'g self,
        mut priced: Priced<'g>,
        log: &mut CallLog,
    ) -> Step<Box<Decided<'g>>> {
        let peer = peer_ip(&priced.call.parts.extensions);
        // The caller's address as an identity, built once for the whole call.
        let anon = anonymous(peer);
        log.caller = Some(anon.clone());
        let early = priced.facts.take();
        // Classified in step 4 (with class rules) or now; the arguments are hashed only for a
        // call something binds to them.
        let hashed = early.is_some() || self.binds_arguments(&priced);
        let msg = &priced.call.msg;
        let facts = early.map(|f| *f).or_else(|| {
            (msg.kind() != MessageKind::Response).then(|| {
                // The call's name as step 4 found it (the same lookup).
                let name = log.tool.as_deref();
                let (resource, now) = (&self.opts.resource, turnpike_core::unix_now());
                turnpike_mcp::classify_named(msg, name, resource, peer, now, hashed)
            })
        });
        let judged = match (&priced.price, &facts) {
            (Some(price), Some(facts)) => self.judge(&priced, price, facts, &anon, log).await?,
            _ => Judged::default(),
        };
        // Boxed: the stage is passed on through three more steps, each a move of a pointer
        // rather than of the whole stage.
        let mut decided = Box::new(Decided {
            priced,
            peer,
            anon,
            facts,
            hashed,
            grant: None,
            pre_admitted: judged.pre_admitted,
            response_headers: Vec::new(),
            result_meta: (Vec::new(), Vec::new()),
            identity_header: None,
            lister: None,
            upstream_authorization: None,
        });
        match judged.decision {
            Decision::Free => {}
            Decision::Pass(grant) => {
                // What the granting rail, bound to this request, adds after a pass.
                if let Some((_, bound)) = judged.bound.iter().find(|(r, _)| *r == grant.rail) {
                    let notes = bound.passed();
                    decided.response_headers = notes.response_headers;
                    decided.result_meta = (notes.success_headers, notes.result_meta);
                    decided.upstream_authorization = notes.upstream_authorization;
                    decided.identity_header = notes.vouch.and_then(|(id, scopes)| {
                        self.identity
                            .as_ref()?
                            .sign(&id, &scopes, turnpike_core::unix_now())
                    });
                }
                decided.grant = Some(grant);
            }
            refused if decided.priced.price.as_ref().is_some_and(|p| p.shadow) => {
                // A price in shadow mode: the call goes on free, logged and counted as one the
                // price would have refused. (An undecidable credential too: the price refuses
                // nobody, so an outage of its rail is no reason to refuse either.)
                let reason = price_reason(&refused);
                let prices = decided.priced.class.map_or(&self.policy, |c| &c.prices);
                let tool = self.shadow_label(prices, &log.method, log.tool.as_deref());
                self.metrics.price_would_refuse(tool, reason);
                tracing::info!(
                    target: "turnpike::price",
                    tool,
                    reason,
                    "a price in shadow mode would refuse this call"
                );
            }
            refused => {
                let counted = judged.challenge_counted || decided.pre_admitted.is_some();
                return Err(self
                    .refuse(&decided, refused, judged.bound, counted, log)
                    .await);
            }
        }
        Ok(decided)
    }

    /// Whether anything binds to the call's arguments, so that their hash must be computed: a
    /// price (a credential is bound to the call's scope, arguments included), the next round
    /// of a paid call (remembered by its arguments), or the loop brake (it counts repeats of
    /// the same arguments). A free call the brake does not watch needs no hash.
    fn binds_arguments(&self, priced: &Priced<'_>) -> bool {
        if priced.price.is_some() || priced.continued {
            return true;
        }
        let Some(limiter) = &self.limiter else {
            return false;
        };
        let msg = &priced.call.msg;
        let name = priced.limit_name.as_deref();
        match CallKind::classify(msg.method().unwrap_or(""), name) {
            CallKind::Discovery => false,
            CallKind::Tool(n) | CallKind::Method(n) => limiter.loop_brake_watches(n, None),
        }
    }

    /// The request as the rails see it at the edge: method, authority (the target's, else the
    /// `Host` field's), target, the public URL, the body and the header `lines`.
    fn edge_request<'a>(
        &'a self,
        parts: &'a http::request::Parts,
        bytes: &'a [u8],
        lines: &'a credentials::Lines<'a>,
    ) -> EdgeRequest<'a> {
        EdgeRequest {
            method: parts.method.as_str(),
            authority: parts.uri.authority().map(|a| a.as_str()).or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            }),
            target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            public_url: self.opts.public_url.as_deref(),
            body: bytes,
            headers: lines,
        }
    }

    /// The rails' decision on a priced call, with the limits that run before it.
    async fn judge(
        &self,
        priced: &Priced<'_>,
        price: &Price,
        facts: &CallFacts,
        anon: &Identity,
        log: &mut CallLog,
    ) -> Step<Judged> {
        let Parsed { parts, bytes, msg } = &priced.call;
        let lines = credentials::Lines(&parts.headers);
        let edge = self.edge_request(parts, bytes, &lines);
        let collected = credentials::collect(self.rails.edge(), &edge, msg);
        let mut judged = Judged::default();
        // A price in shadow mode and no credential a rail could verify (none, or only
        // malformed ones): the call goes on free, and no challenge is minted for it (no
        // invoice, no challenge budget spent).
        if price.shadow && collected.creds.is_empty() {
            judged.decision = match collected.malformed.into_iter().next() {
                Some(refusal) => Decision::Invalid {
                    refusal,
                    challenges: Vec::new(),
                },
                None => Decision::Challenge {
                    challenges: Vec::new(),
                    refusals: Vec::new(),
                },
            };
            return Ok(judged);
        }
        let method = msg.method().unwrap_or("");
        let kind = || CallKind::classify(method, priced.limit_name.as_deref());
        // Only credentials of a rail that knows its callers by their address presented (puzzle
        // solutions): the identity is the caller's address whatever the verdict, so the limit
        // is checked before a single-use credential is spent — a limited caller keeps it for
        // the retry. The check is left pending while the rails verify
        // ([`turnpike_limits::PendingAdmit`]): it runs when a solution is about to be spent,
        // in the same Redis script as the spend (one round trip), and spends nothing when it
        // refuses; a call whose solution never reached its spend is checked after the rails.
        // (Not in shadow mode: a dry run must spend the solution of a call it lets through.)
        let pending = match (&self.limiter, self.address_rail(&collected)) {
            (Some(limiter), Some(rail)) if !limiter.shadow() => {
                let call = CallInfo {
                    scope: &limiter.scope_of(anon),
                    rail: Some(rail),
                    kind: kind(),
                    args_hash: Some(&facts.args_hash),
                };
                let bucket = priced.class.and_then(|c| c.limits);
                Some(Arc::new(
                    PendingAdmit::new(limiter.clone(), &call).in_bucket(bucket),
                ))
            }
            _ => None,
        };
        // No credential: a challenge follows, counted against the address's challenge budget
        // before it is minted (429 past it). An identity the loop brake struck is asked for
        // more work. Limits reads on the challenge path only.
        let mut price = Cow::Borrowed(price);
        if let (Some(limiter), true) = (&self.limiter, collected.creds.is_empty()) {
            let scope = limiter.scope_of(anon);
            let admission = limiter.admit_challenge(&scope).await;
            let a = self.admission_answer(admission, &parts.headers, msg.id(), log)?;
            judged.challenge_counted = true;
            if let Some(p) = self.scaled_price(&price, a.effort_multiplier) {
                price = Cow::Owned(p);
            }
        }
        // A rail the price offers may see this request through a view bound to it (the OAuth
        // rail: method, public URL and body, for DPoP proofs).
        for rail in self.rails.edge() {
            let Some(offer) = price.offer(rail.id()) else {
                continue;
            };
            let malformed = collected.first_error(rail.id());
            if let Some(b) = rail.clone().bind(&edge, offer, &collected.creds, malformed) {
                judged.bound.push((rail.id(), b));
            }
        }
        let swapped: Vec<Arc<dyn Rail>>;
        let rails = if judged.bound.is_empty() {
            &self.rails.all[..]
        } else {
            swapped = self
                .rails
                .all
                .iter()
                .map(
                    |r| match judged.bound.iter().find(|(id, _)| *id == r.kind()) {
                        Some((_, b)) => b.rail(),
                        None => r.clone(),
                    },
                )
                .collect();
            &swapped[..]
        };
        let decide = turnpike_core::decide(rails, facts, &price, &collected.creds);
        let decision = match &pending {
            Some(p) => {
                let decide = turnpike_store::fuse::with_pending_check(p.clone(), decide);
                log.spans.verify(&collected.creds, decide).await
            }
            None => log.spans.verify(&collected.creds, decide).await,
        };
        // The limits first, as if they had run before the rails: refused → answered here (the
        // solution was not spent).
        if let Some(p) = pending {
            let admission = p.admission().await;
            judged.pre_admitted =
                Some(self.admission_answer(admission, &parts.headers, msg.id(), log)?);
        }
        judged.decision = with_malformed(decision, collected.malformed, self.rails.edge());
        Ok(judged)
    }

    /// The answer to a call no rail let through: the fresh challenges (counted against the
    /// address's challenge budget unless its limits already ran for this call), a bound rail's
    /// own answer to a credential it refused (the OAuth rail's to a token), or 429 when the
    /// caller is over a rail's own issuing rate (L402 invoices).
    async fn refuse(
        &self,
        decided: &Decided<'_>,
        refused: Decision,
        bound: Vec<(RailId, Box<dyn BoundRail>)>,
        counted: bool,
        log: &mut CallLog,
    ) -> Box<Response<Body>> {
        let Parsed { parts, msg, .. } = &decided.priced.call;
        let price = decided.priced.price.as_deref();
        // Fresh challenges in answer to a refused credential count against the address's
        // challenge budget too.
        if let (Some(limiter), false, Decision::Challenge { .. } | Decision::Invalid { .. }) =
            (&self.limiter, counted, &refused)
        {
            let scope = limiter.scope_of(&decided.anon);
            let admission = limiter.admit_challenge(&scope).await;
            if let Err(resp) = self.admission_answer(admission, &parts.headers, msg.id(), log) {
                return resp;
            }
        }
        log.outcome = outcome_of(&refused);
        // Counted by the labels a price in shadow mode counts under (the dashboard's dry runs).
        let prices = decided.priced.class.map_or(&self.policy, |c| &c.prices);
        self.metrics.price_refused(
            self.shadow_label(prices, &log.method, log.tool.as_deref()),
            price_reason(&refused),
        );
        match &refused {
            Decision::Challenge { challenges, .. } | Decision::Invalid { challenges, .. } => {
                self.metrics.challenges(challenges);
                log.spans.challenged(challenges);
            }
            Decision::Unavailable { refusals } => {
                refusals
                    .iter()
                    .for_each(|r| self.metrics.rail_unavailable(r.rail));
            }
            _ => {}
        }
        // No way through because the caller is over a rail's own issuing rate (e.g. L402
        // invoices, when L402 was the only rail offered): 429 with Retry-After, not 503.
        if let (Decision::Unavailable { .. }, Some(facts), Some(p)) =
            (&refused, &decided.facts, price)
        {
            let wait = p
                .offers
                .iter()
                .filter_map(|o| self.rail(o.rail()))
                .find_map(|r| r.issue_wait(facts));
            if let Some((wait, policy)) = wait {
                LimitCounters::bump(&self.counters.gateway_limited);
                log.outcome = Outcome::RateLimited;
                log.limit_reason = Some(policy);
                let l = turnpike_limits::Limited {
                    reason: turnpike_limits::LimitReason::Rate,
                    policy: policy.into(),
                    retry_after: wait,
                    status: Vec::new(),
                    effort_multiplier: 1,
                };
                log.spans
                    .limited(l.reason.as_str(), &l.policy, l.retry_after);
                let mode = respond::mode_for(self.opts.challenge_mode, &parts.headers);
                return Box::new(crate::limits::limited_response(
                    mode,
                    &log.method,
                    msg.id(),
                    &l,
                ));
            }
        }
        let offers = price.map(|p| p.offers.as_slice()).unwrap_or(&[]);
        // A credential its rail refused and answers itself (a token: the OAuth answer), over
        // HTTP (the caller speaks that rail's protocol, and MCP clients handle these statuses
        // themselves).
        for (rail, b) in &bound {
            let answer = offers
                .iter()
                .find(|o| o.rail() == *rail)
                .and_then(|o| b.answer(o));
            if let Some(answer) = answer {
                log.outcome = Outcome::RailRefused;
                return Box::new(respond::rail_answer(
                    answer,
                    *rail,
                    msg.id(),
                    refused,
                    self.rails.edge(),
                ));
            }
        }
        let mut mode = respond::mode_for(self.opts.challenge_mode, &parts.headers);
        // Only sign-in rails offered (OAuth): 401 whatever the mode (MCP clients answer it by
        // signing in).
        if !offers.is_empty()
            && offers
                .iter()
                .all(|o| respond::signs_in(self.rails.edge(), o.rail()))
        {
            mode = ChallengeMode::Http;
        }
        // The header was checked in step 3; a result's shape follows the era, and a rail's own
        // result may follow the extensions the client advertised.
        let era = turnpike_mcp::era(&parts.headers).unwrap_or(turnpike_mcp::Era::Session);
        let extensions = turnpike_mcp::messages::RequestMeta::of(msg.value())
            .map(|m| m.client_extensions())
            .unwrap_or_default();
        Box::new(respond::challenge(
            mode,
            era,
            &log.method,
            msg.id(),
            &extensions,
            refused,
            self.rails.edge(),
        ))
    }

    /// Step 6, authorize: the access policy ([`crate::access`]) on the caller — the granting
    /// rail's identity, else one a rail verifies without spending anything
    /// ([`Rail::identify`]: an OAuth bearer token on a free call), else the address. A
    /// `tools/list` only learns its caller here (its answer is filtered in step 9).
    async fn authorize<'g>(
        &'g self,
        mut decided: Box<Decided<'g>>,
        log: &mut CallLog,
    ) -> Step<Box<Decided<'g>>> {
        if self.access.is_empty() || decided.priced.call.msg.kind() != MessageKind::Request {
            return Ok(decided);
        }
        let method = log.method.as_str();
        // The handshake, liveness and discovery are never judged; the lists of tools,
        // resources and prompts are filtered.
        let list = crate::access::list_kind(method);
        if list.is_none() && turnpike_core::policy::DEFAULT_FREE_METHODS.contains(&method) {
            return Ok(decided);
        }
        if list.is_none() && self.access.only_classes() {
            return Ok(decided);
        }
        let who = self.who(&decided).await;
        if list.is_some() {
            decided.lister = Some(Box::new(who));
            return Ok(decided);
        }
        let msg = &decided.priced.call.msg;
        let arguments = if self.access.reads_arguments() {
            msg.params().and_then(|p| p.get("arguments"))
        } else {
            None
        };
        let tool = log.tool.as_deref();
        let annotations = match (method, tool) {
            ("tools/call", Some(t)) => self.annotations.get(t),
            _ => None,
        };
        let call = turnpike_policy::CallView {
            method,
            tool,
            arguments,
            annotations: annotations.as_ref(),
        };
        let mode = respond::mode_for(self.opts.challenge_mode, &decided.priced.call.parts.headers);
        let Some(answer) = self.judge_access(&who, &call, mode, msg.id()) else {
            return Ok(decided);
        };
        log.outcome = Outcome::PolicyDenied;
        // Not forwarded: a debit goes back, a single-use credential is released.
        log.spans.refund(decided.grant.as_ref(), "policy");
        self.settle_failed(decided.grant.as_ref()).await;
        Err(Box::new(answer))
    }

    /// The access policy's judgement of `call` by `who`: `None` when it goes on (a rule in
    /// shadow mode that would refuse it logged and counted), else the answer to send.
    fn judge_access(
        &self,
        who: &crate::access::Who,
        call: &turnpike_policy::CallView<'_>,
        mode: ChallengeMode,
        id: Option<&Value>,
    ) -> Option<Response<Body>> {
        let caller = who.caller();
        let scope = self.access.scope(&caller, turnpike_core::unix_now() as i64);
        let judged = scope.judge(call);
        if let Some(rule) = judged.would_refuse {
            self.metrics.policy_decision(rule.name(), true);
            tracing::info!(
                target: "turnpike::policy",
                rule = rule.name(),
                method = call.method,
                tool = call.tool.unwrap_or(""),
                identity = caller.kind,
                "a rule in shadow mode would refuse this call; let through"
            );
        }
        let rule = judged.refused?;
        self.metrics.policy_decision(rule.name(), false);
        tracing::info!(
            target: "turnpike::policy",
            rule = rule.name(),
            method = call.method,
            tool = call.tool.unwrap_or(""),
            identity = caller.kind,
            "refused by the access policy"
        );
        let hidden = call.method == "tools/call"
            && !scope.may_list(call.tool.unwrap_or(""), call.annotations);
        Some(crate::access::refused(
            mode,
            call,
            id,
            rule.reason(),
            hidden,
        ))
    }

    /// The caller as the access policy sees it: the granting rail's identity and what its
    /// credential says (scopes, claims, caveats: [`turnpike_core::Grant::about`]), else
    /// one a rail verifies without spending anything ([`Rail::identify`]), else the address.
    async fn who(&self, decided: &Decided<'_>) -> crate::access::Who {
        let peer = decided.peer;
        if let Some(g) = &decided.grant {
            if let Some(id) = &g.identity {
                return crate::access::Who::new(id, g.about.clone(), peer);
            }
        }
        if let (None, Some(facts)) = (&decided.grant, &decided.facts) {
            // Asked already when the class was picked (step 4), else now.
            let known = match &decided.priced.identified {
                Some(known) => Option::clone(known),
                None => self.identified(&decided.priced.call, facts).await,
            };
            if let Some((id, about)) = known {
                return crate::access::Who::new(&id, Some(about), peer);
            }
        }
        crate::access::Who::new(&decided.anon, None, peer)
    }

    /// Who presents a credential a rail verifies without spending anything
    /// ([`Rail::identify`]: an OAuth bearer token), with what its credential says of it
    /// (scopes, claims, caveats); `None`: no such caller.
    async fn identified(&self, call: &Parsed, facts: &CallFacts) -> Option<Known> {
        let Parsed { parts, bytes, msg } = call;
        let lines = credentials::Lines(&parts.headers);
        let edge = self.edge_request(parts, bytes, &lines);
        let collected = credentials::collect(self.rails.edge(), &edge, msg);
        for cred in &collected.creds {
            if let Some(rail) = self.rail(cred.rail()) {
                if let Some((id, about)) = rail.identify(facts, cred).await {
                    return Some((id, Arc::new(about)));
                }
            }
        }
        None
    }

    /// The class the access policy's class rules put this call in (step 4, before the price):
    /// the first enforced class rule that matches, on `caller` (else the address). A class
    /// rule in shadow mode that would have picked another is logged and counted.
    fn pick_class(
        &self,
        caller: Option<&(Identity, Arc<About>)>,
        peer: Option<IpAddr>,
        method: &str,
        tool: Option<&str>,
        msg: &turnpike_mcp::Message,
    ) -> Option<&GateClass> {
        let who = match caller {
            Some((id, about)) => crate::access::Who::new(id, Some(about.clone()), peer),
            None => crate::access::Who::new(&anonymous(peer), None, peer),
        };
        let arguments = if self.access.reads_arguments() {
            msg.params().and_then(|p| p.get("arguments"))
        } else {
            None
        };
        let annotations = match (method, tool) {
            ("tools/call", Some(t)) => self.annotations.get(t),
            _ => None,
        };
        let call = turnpike_policy::CallView {
            method,
            tool,
            arguments,
            annotations: annotations.as_ref(),
        };
        let caller = who.caller();
        let scope = self.access.scope(&caller, turnpike_core::unix_now() as i64);
        let picked = scope.class(&call);
        if let Some(rule) = picked.would_class {
            self.metrics.policy_class(rule.name(), true);
            tracing::info!(
                target: "turnpike::policy",
                rule = rule.name(),
                class = rule.class().unwrap_or(""),
                method,
                tool = tool.unwrap_or(""),
                identity = caller.kind,
                "a class rule in shadow mode would put this call in another class"
            );
        }
        let rule = picked.class?;
        self.metrics.policy_class(rule.name(), false);
        self.classes.get(rule.class()?)
    }

    /// Step 7, admit: the rate limits and budgets for the identity the rails
    /// found (else the caller's address), and a balance debit's daily msat budget.
    async fn admit_call<'g>(
        &'g self,
        mut decided: Box<Decided<'g>>,
        log: &mut CallLog,
    ) -> Step<Cleared<'g>> {
        let remember_round = self.account(&decided, log);
        let pre_admitted = decided.pre_admitted.take();
        let admitted = match (pre_admitted, &self.limiter, &decided.facts) {
            // Checked before the puzzle was verified, on the same identity.
            (Some(a), _, _)
                if decided
                    .grant
                    .as_ref()
                    .and_then(|g| self.rail(g.rail))
                    .is_some_and(|r| r.identity_is_address()) =>
            {
                Some(a)
            }
            (_, Some(limiter), Some(facts)) => {
                match self.admit(limiter, &decided, facts, log).await {
                    Ok(a) => Some(a),
                    Err(resp) => {
                        // Not forwarded: a balance debit goes back.
                        log.spans.refund(decided.grant.as_ref(), "limited");
                        self.settle_failed(decided.grant.as_ref()).await;
                        return Err(resp);
                    }
                }
            }
            _ => None,
        };
        // The daily msat budget of the paying identity, for a balance debit (fails closed).
        let mut msat_spend = None;
        let granted = (decided.grant.as_ref()).and_then(|g| Some((g, self.rail(g.rail)?)));
        if let (Some(limiter), Some((g, rail))) = (&self.limiter, granted) {
            match crate::limits::spend_msat(limiter, rail.as_ref(), g).await {
                Ok(r) => msat_spend = r.map(|r| (limiter.clone(), r)),
                Err(refusal) => {
                    log.spans.refund(Some(g), "spend_budget");
                    self.settle_failed(Some(g)).await;
                    let Parsed { parts, msg, .. } = &decided.priced.call;
                    let mode = respond::mode_for(self.opts.challenge_mode, &parts.headers);
                    return Err(Box::new(self.spend_refused(refusal, mode, msg.id(), log)));
                }
            }
        }
        Ok(Cleared {
            decided,
            admitted,
            msat_spend,
            remember_round,
        })
    }

    /// Step 8, forward: credentials stripped, the call forwarded within the upstream's time
    /// limits ([`crate::deadline`]).
    async fn forward<S, B>(
        &self,
        cleared: Cleared<'_>,
        inner: S,
        log: &mut CallLog,
    ) -> Result<Forwarded, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let Cleared {
            decided,
            admitted,
            msat_spend,
            remember_round,
        } = cleared;
        let Decided {
            priced,
            grant,
            response_headers,
            result_meta,
            identity_header,
            lister,
            upstream_authorization,
            ..
        } = *decided;
        let Parsed {
            mut parts,
            bytes,
            mut msg,
        } = priced.call;
        // A list answer to filter for its caller (with an access policy) or, tools/list, to
        // annotate with prices.
        let list_kind = crate::access::list_kind(&log.method)
            .filter(|k| k.items == "tools" || lister.is_some());
        let list_id = (list_kind.is_some() && msg.kind() == MessageKind::Request)
            .then(|| msg.id().cloned())
            .flatten();
        // A server/discover answer to advertise the rails' MCP extensions in.
        let discover_id = (log.method == "server/discover"
            && msg.kind() == MessageKind::Request
            && self
                .rails
                .edge()
                .iter()
                .any(|r| !r.mcp_extensions().is_empty()))
        .then(|| msg.id().cloned())
        .flatten();
        // Strip credentials; re-serialise only when the body changed.
        self.strip_credentials(&mut parts.headers);
        if let Some(v) = identity_header.and_then(|v| HeaderValue::from_str(&v).ok()) {
            parts.headers.insert(IDENTITY_HEADER, v);
        }
        // The upstream's own credentials for this caller, from the granting rail (an exchanged
        // token); the caller's were removed above.
        if let Some(mut v) = upstream_authorization.and_then(|a| HeaderValue::from_str(&a.0).ok()) {
            v.set_sensitive(true);
            parts.headers.insert(header::AUTHORIZATION, v);
        }
        // The body is whole now: it goes on with its exact length.
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.remove(header::EXPECT);
        let meta_keys: Vec<&str> = self
            .rails
            .edge()
            .iter()
            .flat_map(|r| r.reader().meta_keys().iter().copied())
            .collect();
        let meta_changed = turnpike_mcp::strip_meta(msg.value_mut(), &meta_keys)
            | log.spans.rewrite_meta(msg.value_mut(), log.trace.as_ref());
        let body = if meta_changed {
            serde_json::to_vec(msg.value()).map_or(bytes, Bytes::from)
        } else {
            bytes
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let body = Body::from(body);
        let request_id = (msg.kind() == MessageKind::Request)
            .then(|| msg.id().cloned())
            .flatten();
        drop(msg);
        // Forward, within the upstream's time limits (crate::deadline).
        if let Some(id) = &request_id {
            parts.extensions.insert(JsonRpcId(id.clone()));
        }
        log.tag_upstream_request(&mut parts.headers);
        // The rail that settles the call (with the call's msat spend, if any).
        let settle_with = grant.as_ref().and_then(|g| {
            let rail = self.rails.all.iter().find(|r| r.kind() == g.rail)?;
            let rail = match msat_spend {
                Some((limiter, receipt)) => {
                    crate::settle::WithSpend::wrap(rail.clone(), limiter, receipt)
                }
                None => rail.clone(),
            };
            Some((rail, g.clone()))
        });
        // What a cancellation would need, kept cheaply; the service itself goes with the
        // request and is used again only if a cancellation is sent.
        let target = request_id
            .as_ref()
            .map(|id| crate::deadline::CancelTarget::new(&parts, id.clone()));
        let mut pending = crate::deadline::PendingCall::new(inner, target, settle_with);
        let up = Instant::now();
        let head = self.opts.response_timeout;
        let req = Request::from_parts(parts, body);
        let forwarded = async {
            let svc = pending.service();
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            svc.call(req).await.map(|r| r.map(Body::new))
        };
        let deadline = tokio::time::Instant::from_std(up) + head;
        let answer = tokio::time::timeout_at(deadline, forwarded).await;
        let (cancel, settle_with) = pending.disarm();
        let mut resp = match answer {
            Ok(r) => {
                let resp = r?;
                match &request_id {
                    Some(id) => crate::deadline::bound_body(
                        resp,
                        id.clone(),
                        self.opts.stream_idle_timeout,
                        cancel,
                    ),
                    None => resp,
                }
            }
            Err(_) => {
                if let Some(c) = cancel {
                    c.fire("the upstream did not answer in time");
                }
                log.outcome = Outcome::UpstreamTimeout;
                crate::deadline::head_timeout(request_id.as_ref(), head)
            }
        };
        log.upstream = Some(up.elapsed());
        log.spans.upstream_answered(grant.as_ref(), resp.status());
        if grant.is_some() && matches!(resp.status().as_u16(), 429 | 503) {
            // A paid call the upstream refused as overloaded: load a rail's price may follow.
            self.rails.all.iter().for_each(|r| r.upstream_overloaded());
        }
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            // The upstream's own 429: passed on as it is, counted apart from ours.
            LimitCounters::bump(&self.counters.upstream_429);
            log.upstream_429 = true;
        }
        for (name, value) in response_headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        Ok(Forwarded {
            resp,
            settle_with,
            request_id,
            list_id,
            discover_id,
            list_kind,
            lister,
            remember_round,
            admitted,
            result_meta,
        })
    }

    /// Step 9, finish: settlement by the granting rail, the next round of a paid call
    /// remembered, `tools/list` annotated, and the remaining quota on the response (its
    /// in-flight slot held as long as the body).
    async fn finish(&self, f: Forwarded) -> Response<Body> {
        let Forwarded {
            mut resp,
            settle_with,
            request_id,
            list_id,
            discover_id,
            list_kind,
            lister,
            remember_round,
            admitted,
            result_meta: (success_headers, result_meta),
        } = f;
        // Settle, by the JSON-RPC outcome where the rail needs it.
        if let Some((rail, grant)) = settle_with {
            resp = crate::settle::after_upstream(resp, rail, grant, request_id.clone()).await;
        }
        if let (Some(binding), Some(id)) = (remember_round, &request_id) {
            resp =
                crate::continuation::watch(resp, self.continuations.clone(), binding, id.clone());
        }
        // What the granting rail adds to a successful answer (a payment receipt).
        if resp.status().is_success() {
            for (name, value) in success_headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    resp.headers_mut().insert(name, v);
                }
            }
            if let Some(id) = &request_id {
                resp = crate::result_meta::add(resp, id.clone(), result_meta).await;
            }
        }
        // Filter tools/list for its caller (with an access policy), and annotate it.
        let mut resp = match (list_id, list_kind) {
            (Some(id), Some(kind)) if resp.status().is_success() => {
                let prices = (kind.items == "tools").then(|| self.price_table());
                // Each tool priced as its class for this caller (crate::classes).
                let classer = lister
                    .clone()
                    .filter(|_| kind.items == "tools" && !self.classes.is_empty())
                    .filter(|_| self.access.has_classes())
                    .map(|who| (who, self.access.clone(), self.classes.clone()));
                let filter = lister.map(|who| crate::access::ListFilter {
                    policy: self.access.clone(),
                    who: *who,
                    now: turnpike_core::unix_now() as i64,
                });
                let cache = self.annotations.clone();
                crate::annotate::tools_list_edit(resp, id, move |v| {
                    let filtered = filter
                        .as_ref()
                        .is_some_and(|f| crate::access::filter_list(v, kind, f, &cache));
                    let priced = prices.as_ref().is_some_and(|p| match &classer {
                        Some((who, access, classes)) => {
                            let caller = who.caller();
                            let scope = access.scope(&caller, turnpike_core::unix_now() as i64);
                            let picker = std::cell::RefCell::new(scope.class_lister());
                            turnpike_mcp::annotate_tools_list(v, &|name| {
                                let annotations = cache.get(name);
                                let class = picker
                                    .borrow_mut()
                                    .class(name, annotations.as_ref())
                                    .and_then(|r| classes.get(r.class()?));
                                p.annotation_in(name, class.map(|c| &c.prices))
                            })
                        }
                        None => turnpike_mcp::annotate_tools_list(v, &|name| p.annotation(name)),
                    });
                    filtered | priced
                })
                .await
            }
            _ => resp,
        };
        // The rails' MCP extensions in server/discover's capabilities (x402's payment
        // extension).
        if let (Some(id), true) = (discover_id, resp.status().is_success()) {
            let names: Vec<&'static str> = self
                .rails
                .edge()
                .iter()
                .flat_map(|r| r.mcp_extensions().iter().copied())
                .collect();
            resp = crate::annotate::tools_list_edit(resp, id, move |v| {
                turnpike_mcp::advertise_extensions(v, &names)
            })
            .await;
        }
        // The remaining quota on the response; the in-flight slot lives as long as its body.
        if let Some(a) = admitted {
            crate::limits::add_headers(&mut resp, a.headers());
            if let Some(guard) = a.in_flight {
                resp = resp.map(|b| crate::limits::GuardedBody::wrap(b, guard));
            }
        }
        resp
    }

    /// Settles `grant` as failed (a call that will not be forwarded: its debit goes back, a
    /// single-use credential is released).
    async fn settle_failed(&self, grant: Option<&turnpike_core::Grant>) {
        if let Some(g) = grant {
            if let Some(rail) = self.rails.all.iter().find(|r| r.kind() == g.rail) {
                rail.settle(g, false).await;
                rail.release(g).await;
            }
        }
    }

    /// The answer to an L402 call whose daily msat budget refused it (429, reason
    /// `spend_budget`) or could not be counted (503: payments fail closed).
    fn spend_refused(
        &self,
        refusal: crate::limits::SpendRefusal,
        mode: ChallengeMode,
        id: Option<&Value>,
        log: &mut CallLog,
    ) -> Response<Body> {
        match refusal {
            crate::limits::SpendRefusal::Budget(l) => {
                log.spans
                    .limited(l.reason.as_str(), &l.policy, l.retry_after);
                LimitCounters::bump(&self.counters.gateway_limited);
                log.outcome = Outcome::RateLimited;
                log.limit_reason = Some(l.reason.as_str());
                crate::limits::limited_response(mode, &log.method, id, &l)
            }
            crate::limits::SpendRefusal::Unavailable(e) => {
                LimitCounters::bump(&self.counters.store_unavailable);
                tracing::warn!(
                    target: "turnpike::limits",
                    error = %e,
                    "msat budget store unavailable; paid call refused"
                );
                log.outcome = Outcome::LimitsUnavailable;
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    error_codes::UNAVAILABLE,
                    "the limits store is unavailable; retry shortly",
                )
            }
        }
    }

    /// Runs the limiter on a decided call, for the identity the rails found (else the
    /// caller's address): the admission, or the answer to send instead (429 or its in-band
    /// form; 503 when the store is down and limits fail closed).
    async fn admit(
        &self,
        limiter: &Limiter,
        decided: &Decided<'_>,
        facts: &CallFacts,
        log: &mut CallLog,
    ) -> Step<Admitted> {
        let grant = decided.grant.as_ref();
        let Parsed { parts, msg, .. } = &decided.priced.call;
        // A class with a bucket of its own counts it on the caller its class was picked on.
        let class = decided.priced.class;
        let bucket = class.and_then(|c| c.limits.as_ref());
        let identity = grant
            .and_then(|g| g.identity.as_ref())
            .or_else(|| {
                bucket?;
                let (id, _) = decided.priced.identified.as_deref()?.as_ref()?;
                Some(id)
            })
            .unwrap_or(&decided.anon);
        let call = CallInfo {
            scope: &limiter.scope_of(identity),
            rail: grant.map(|g| g.rail),
            kind: CallKind::classify(
                msg.method().unwrap_or(""),
                decided.priced.limit_name.as_deref(),
            ),
            args_hash: decided.hashed.then_some(&facts.args_hash),
        };
        let admission = limiter.admit_in(&call, bucket).await;
        self.admission_answer(admission, &parts.headers, msg.id(), log)
    }

    /// An admission, or the answer to send instead (429 or its in-band form; 503 when the
    /// store is down and limits fail closed).
    fn admission_answer(
        &self,
        admission: Admission,
        headers: &HeaderMap,
        id: Option<&Value>,
        log: &mut CallLog,
    ) -> Step<Admitted> {
        match admission {
            Admission::Allowed(a) => {
                if a.degraded {
                    LimitCounters::bump(&self.counters.degraded);
                    tracing::warn!(
                        target: "turnpike::limits",
                        "limits store down; call let through (failure_mode = open)"
                    );
                }
                Ok(a)
            }
            Admission::Limited(l) if self.limiter.as_ref().is_some_and(|l| l.shadow()) => {
                // A dry run: the call goes on (without an in-flight slot, as a refused call
                // would hold none) and is counted as one the limits would have refused.
                LimitCounters::bump(&self.counters.shadow_limited);
                tracing::info!(
                    target: "turnpike::limits",
                    reason = l.reason.as_str(),
                    policy = %l.policy,
                    retry_after_ms = l.retry_after.as_millis() as u64,
                    "over a limit; let through ([limits] mode = \"shadow\")"
                );
                log.limit_reason = Some(l.reason.as_str());
                Ok(Admitted {
                    status: l.status,
                    in_flight: None,
                    effort_multiplier: l.effort_multiplier,
                    degraded: false,
                })
            }
            Admission::Limited(l) => {
                log.spans
                    .limited(l.reason.as_str(), &l.policy, l.retry_after);
                LimitCounters::bump(&self.counters.gateway_limited);
                log.outcome = Outcome::RateLimited;
                log.limit_reason = Some(l.reason.as_str());
                let mode = respond::mode_for(self.opts.challenge_mode, headers);
                Err(Box::new(crate::limits::limited_response(
                    mode,
                    &log.method,
                    id,
                    &l,
                )))
            }
            Admission::Unavailable(e) => {
                LimitCounters::bump(&self.counters.store_unavailable);
                tracing::warn!(
                    target: "turnpike::limits",
                    error = %e,
                    "limits store unavailable; call refused (failure_mode = closed)"
                );
                log.outcome = Outcome::LimitsUnavailable;
                Err(Box::new(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    error_codes::UNAVAILABLE,
                    "the gateway's limits store is unavailable; retry shortly",
                )))
            }
        }
    }

    /// Removes every header that carries a credential: those of [`strip_credential_headers`]
    /// and each header a rail reads ([`turnpike_core::CredentialReader::credential_headers`]).
    fn strip_credentials(&self, h: &mut HeaderMap) {
        strip_where(h, |k| self.credential_headers.contains(k));
    }

    /// A snapshot of what each tool costs now, for one `tools/list` response.
    fn price_table(&self) -> PriceTable {
        PriceTable {
            policy: self.policy.clone(),
            rails: self.rails.all.clone(),
            catalog: self.catalog.clone(),
        }
    }

    /// The rail of `kind`, when the gate runs it.
    fn rail(&self, kind: RailId) -> Option<&Arc<dyn Rail>> {
        self.rails.all.iter().find(|r| r.kind() == kind)
    }

    /// The name a price in shadow mode counts a call under: the tool as the configuration
    /// or the merged catalog names it (a tool priced by `[tools.default]`: `default`), or the
    /// priced method — never a name only the caller chose.
    fn shadow_label<'a>(&self, prices: &Policy, method: &'a str, tool: Option<&'a str>) -> &'a str {
        if method != "tools/call" {
            return method;
        }
        match tool {
            Some(t) if self.catalog.is_some() || prices.tools.contains_key(t) => t,
            _ => "default",
        }
    }

    /// The rail whose credentials are all a call presents, when that rail knows its callers
    /// by their address whatever the verdict ([`Rail::identity_is_address`]): the address's
    /// limits then run before the credentials are verified.
    fn address_rail(&self, collected: &credentials::Collected) -> Option<RailId> {
        let first = collected.creds.first()?.rail();
        let same = collected.creds.iter().all(|c| c.rail() == first);
        (same && collected.malformed.is_empty())
            .then(|| self.rail(first))
            .flatten()
            .filter(|r| r.identity_is_address())
            .map(|_| first)
    }

    /// `price` with each offer made dearer by its rail for a caller whose limits asked for
    /// `multiplier` times the work ([`Rail::scaled_offer`]); `None` when nothing changes.
    fn scaled_price(&self, price: &Price, multiplier: u32) -> Option<Price> {
        let mut changed = false;
        let offers = price
            .offers
            .iter()
            .map(|o| {
                match self
                    .rail(o.rail())
                    .and_then(|r| r.scaled_offer(o, multiplier))
                {
                    Some(scaled) => {
                        changed = true;
                        scaled
                    }
                    None => o.clone(),
                }
            })
            .collect();
        changed.then_some(Price {
            offers,
            shadow: price.shadow,
        })
    }

    /// Records who a decided call is and what it paid in its log line; returns the binding
    /// under which its round is remembered when the granting rail says it paid for it
    /// ([`Rail::pays_for_round`]; an `input_required` answer's next round is then not priced
    /// again).
    fn account(&self, decided: &Decided<'_>, log: &mut CallLog) -> Option<[u8; 32]> {
        let continued = decided.priced.continued;
        let grant = decided.grant.as_ref();
        log.rail = grant.map(|g| g.rail);
        log.outcome = match (grant, continued) {
            (Some(_), _) => Outcome::Paid,
            (None, true) => Outcome::Continued,
            (None, false) => Outcome::Free,
        };
        let granted_by = grant.and_then(|g| Some((g, self.rail(g.rail)?)));
        if let Some((g, rail)) = granted_by {
            if let Some(id) = &g.identity {
                log.caller = Some(id.clone());
            }
            if let Some(offer) = decided
                .priced
                .price
                .as_deref()
                .and_then(|p| p.offer(g.rail))
            {
                log.paid_msat = rail.charged_msat(g, offer);
            }
        }
        let paid_round = continued || granted_by.is_some_and(|(g, r)| r.pays_for_round(g));
        match (&decided.facts, decided.priced.call.msg.kind()) {
            (Some(f), MessageKind::Request) if paid_round => {
                crate::continuation::binding(&log.method, log.tool.as_deref(), &f.args_hash)
            }
            _ => None,
        }
    }
}

/// A step's answer instead of going on.
type Step<T> = Result<T, Box<Response<Body>>>;

/// Stage after step 3: a POST read whole, one JSON-RPC message whose routing headers agree
/// with it.
struct Parsed {
    parts: http::request::Parts,
    bytes: Bytes,
    msg: turnpike_mcp::Message,
}

/// Stage after step 4: a parsed call and what it costs.
struct Priced<'g> {
    call: Parsed,
    /// The next round of a call already paid for (not priced again).
    continued: bool,
    /// What the call costs; `None` when it is free (or a response the client sends).
    price: Option<Cow<'g, Price>>,
    /// The name the limits know the call by: a merged tool's first name that has a
    /// `[limits.tools.*]` class, else the name the call carries ([`turnpike_mcp::call_name`]).
    limit_name: Option<String>,
    /// The caller's price/limit class, when a class rule picked one.
    class: Option<&'g GateClass>,
    /// Who the caller is by a credential verified without spending anything, when asked
    /// before the price (with class rules): `Some(None)` for nobody.
    /// (Boxed, as `facts`: both are there only with class rules.)
    identified: Option<Box<Option<Known>>>,
    /// The classified call, when classified before the price.
    facts: Option<Box<CallFacts>>,
}

/// A caller a rail verified without spending anything, with what its credential says of it.
type Known = (Identity, Arc<About>);

/// The rails' decision on one priced call, and what was learnt on the way.
struct Judged {
    decision: Decision,
    /// The rails bound to this request (those offered that asked for a view of it).
    bound: Vec<(RailId, Box<dyn BoundRail>)>,
    /// The admission checked before a puzzle solution was verified.
    pre_admitted: Option<Admitted>,
    /// The call was counted against the address's challenge budget.
    challenge_counted: bool,
}

impl Default for Judged {
    fn default() -> Self {
        Judged {
            decision: Decision::Free,
            bound: Vec::new(),
            pre_admitted: None,
            challenge_counted: false,
        }
    }
}

/// Stage after step 5: a priced call the rails let through (free, or granted).
struct Decided<'g> {
    priced: Priced<'g>,
    peer: Option<IpAddr>,
    /// The caller's address as an identity (the identity of a call no rail named).
    anon: Identity,
    /// Whether `facts` carries the arguments' hash ([`Gate::binds_arguments`]; all zero
    /// otherwise).
    hashed: bool,
    /// The classified call (`None` for a response the client sends).
    facts: Option<CallFacts>,
    grant: Option<Grant>,
    /// The admission checked before a puzzle solution was verified.
    pre_admitted: Option<Admitted>,
    /// Headers the granting rail adds to the response (`DPoP-Nonce`, `Payment-Receipt`).
    response_headers: Vec<(&'static str, String)>,
    /// Headers for a successful answer and members for the result's `_meta` that the
    /// granting rail adds (a payment receipt).
    result_meta: OnSuccess,
    /// The signed `Turnpike-Identity` for the upstream.
    identity_header: Option<String>,
    /// A `tools/list` request's caller, by whom the answer is filtered (with an access policy).
    lister: Option<Box<crate::access::Who>>,
    /// The `Authorization` value the upstream gets, from the granting rail.
    upstream_authorization: Option<turnpike_core::UpstreamAuthorization>,
}

/// Stage after step 6: a decided call the limits let through.
struct Cleared<'g> {
    decided: Box<Decided<'g>>,
    admitted: Option<Admitted>,
    /// A balance debit's daily msat spend, to give back if the call fails.
    msat_spend: Option<(Arc<Limiter>, SpendReceipt)>,
    /// The binding under which an `input_required` answer's next round is remembered.
    remember_round: Option<[u8; 32]>,
}

/// Stage after step 7: the upstream's answer (or the gateway's in its place).
struct Forwarded {
    resp: Response<Body>,
    settle_with: Option<Settlement>,
    request_id: Option<Value>,
    list_id: Option<Value>,
    /// The id of a `server/discover` whose answer gains the rails' MCP extensions.
    discover_id: Option<Value>,
    /// The list `list_id` asked for (`tools/list`, `resources/list`, `prompts/list`).
    list_kind: Option<crate::access::ListKind>,
    /// Whom a list answer is filtered for (with an access policy).
    lister: Option<Box<crate::access::Who>>,
    remember_round: Option<[u8; 32]>,
    admitted: Option<Admitted>,
    /// Headers for a successful answer and members for the result's `_meta` (a payment
    /// receipt).
    result_meta: OnSuccess,
}

/// What a granting rail adds to a successful answer only: headers, and members of the
/// result's `_meta` ([`turnpike_core::PassNotes`]).
type OnSuccess = (Vec<(&'static str, String)>, crate::result_meta::Members);

/// What tools cost, as `tools/list` publishes it.
struct PriceTable {
    policy: Policy,
    rails: Vec<Arc<dyn Rail>>,
    catalog: Option<Arc<dyn turnpike_merge::ToolCatalog>>,
}

impl PriceTable {
    /// `{"free":true,"offers":[]}` or `{"free":false,"offers":[{"rail":"l402","msat":N,
    /// "mode":"per_call"}, {"rail":"pow","effort":N, "expected_seconds":f}, …]}`: each offer as
    /// its rail publishes it now ([`Rail::published_offer`]; proof-of-work is quoted at the
    /// current load), an offer no rail runs as priced ([`turnpike_core::Offer::published`]).
    fn annotation(&self, tool: &str) -> Value {
        self.annotation_in(tool, None)
    }

    /// [`PriceTable::annotation`] by the prices of a class (`None`: the gate's).
    fn annotation_in(&self, tool: &str, prices: Option<&Policy>) -> Value {
        let listed = self.catalog.as_ref().and_then(|c| c.price_of(tool));
        let price = listed.as_ref().unwrap_or_else(|| {
            prices
                .unwrap_or(&self.policy)
                .price("tools/call", Some(tool))
        });
        if price.is_free() {
            return json!({"free": true, "offers": []});
        }
        let offers: Vec<Value> = price
            .offers
            .iter()
            .filter_map(|o| match self.rails.iter().find(|r| r.kind() == o.rail()) {
                Some(rail) => rail.published_offer(o),
                None => Some(o.published()),
            })
            .collect();
        json!({"free": false, "offers": offers})
    }
}

/// Why a price refused a call (or, in shadow mode, would have), as the metrics name it:
/// `challenge` (no credential), `invalid` (a malformed or forged one), `unavailable` (its rail
/// could not decide) or `refused` (its rail turned it down).
fn price_reason(d: &Decision) -> &'static str {
    match d {
        Decision::Challenge { refusals, .. } if refusals.is_empty() => "challenge",
        Decision::Invalid { .. } => "invalid",
        Decision::Unavailable { .. } => "unavailable",
        _ => "refused",
    }
}

/// Forwards a request to the inner service as it is and boxes its response body.
async fn pass_on<S, B>(inner: S, req: Request<Body>) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let resp = inner.oneshot(req).await?;
    Ok(resp.map(Body::new))
}

/// A credential that did not even parse makes an otherwise unpaid call `Invalid` (401).
fn with_malformed(
    decision: Decision,
    malformed: Vec<Refusal>,
    rails: &[Arc<dyn RailPlugin>],
) -> Decision {
    // A rail may answer its unparseable credentials as stale ones (402): the Payment scheme.
    let stale = |r: &Refusal| {
        rails
            .iter()
            .find(|p| p.id() == r.rail)
            .is_some_and(|p| p.malformed_is_stale())
    };
    let (soft, mut hard): (Vec<Refusal>, Vec<Refusal>) = malformed.into_iter().partition(stale);
    match decision {
        Decision::Challenge { challenges, .. } if !hard.is_empty() => Decision::Invalid {
            refusal: hard.swap_remove(0),
            challenges,
        },
        Decision::Challenge {
            challenges,
            mut refusals,
        } => {
            refusals.extend(soft);
            Decision::Challenge {
                challenges,
                refusals,
            }
        }
        d => d,
    }
}

/// Removes every header that carries a credential: `Authorization`, `Turnpike-*` and
/// `rail_headers` (those the rails read besides: `Macaroon`, `DPoP`).
pub fn strip_credential_headers<'a>(
    h: &mut HeaderMap,
    rail_headers: impl IntoIterator<Item = &'a str>,
) {
    let rail_headers: Vec<&str> = rail_headers.into_iter().collect();
    strip_where(h, |k| {
        rail_headers
            .iter()
            .any(|n| k.as_str().eq_ignore_ascii_case(n))
    });
}

/// Removes `Authorization`, every `Turnpike-*` header and those `rail_reads`. One walk over
/// the request's few names finds them, rather than a hashed lookup of every name a rail reads
/// (most requests carry none of them).
fn strip_where(h: &mut HeaderMap, rail_reads: impl Fn(&HeaderName) -> bool) {
    let carries = |k: &HeaderName| {
        *k == header::AUTHORIZATION || rail_reads(k) || k.as_str().starts_with("turnpike-")
    };
    if !h.keys().any(carries) {
        return;
    }
    let names: Vec<HeaderName> = h.keys().filter(|k| carries(k)).cloned().collect();
    for n in names {
        h.remove(n);
    }
}

fn body_error(e: BodyError) -> Response<Body> {
    match e {
        BodyError::TooLarge => json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            error_codes::TOO_LARGE,
            "the request body is larger than this gateway accepts",
        ),
        BodyError::Timeout => json_error(
            StatusCode::REQUEST_TIMEOUT,
            None,
            error_codes::INVALID_REQUEST,
            "the request body did not arrive in time",
        ),
        BodyError::Read => json_error(
            StatusCode::BAD_REQUEST,
            None,
            error_codes::INVALID_REQUEST,
            "the request body could not be read",
        ),
    }
}

fn outcome_of(d: &Decision) -> Outcome {
    match d {
        Decision::Free => Outcome::Free,
        Decision::Pass(_) => Outcome::Paid,
        Decision::Challenge { refusals, .. } if refusals.is_empty() => Outcome::Challenged,
        Decision::Challenge { .. } => Outcome::Refused,
        Decision::Invalid { .. } => Outcome::Invalid,
        Decision::Unavailable { .. } => Outcome::Unavailable,
    }
}

fn peer_ip(ext: &http::Extensions) -> Option<IpAddr> {
    turnpike_http::peer_ip(ext)
}

/// The identity of a caller no rail named: its address (an unknown address is one shared
/// identity, e.g. behind a layer without `PeerAddr`).
fn anonymous(peer: Option<IpAddr>) -> Identity {
    Identity::anonymous(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
}

/// The one log line of a call. Holds no credential.
#[derive(Default)]
struct CallLog {
    /// The caller's `X-Request-Id` (when sane) or a fresh one
    /// ([`turnpike_telemetry::request_id`]).
    request_id: String,
    /// W3C trace context from `traceparent` or `params._meta`.
    trace: Option<context::TraceParent>,
    /// Time the upstream took to its response head, when the call was forwarded.
    upstream: Option<Duration>,
    /// Who called: the granted identity, else the caller's address (metrics only).
    caller: Option<Identity>,
    /// Millisatoshis an L402 pass charged.
    paid_msat: u64,
    method: String,
    tool: Option<String>,
    rail: Option<RailId>,
    outcome: Outcome,
    /// Why the gateway's own limits refused the call (`outcome = rate_limited`).
    limit_reason: Option<&'static str>,
    /// The upstream itself answered 429 (not one of the gateway's).
    upstream_429: bool,
    /// The call's spans, when `[telemetry]` is on ([`turnpike_telemetry::CallSpans`]).
    spans: CallSpans,
}

impl CallLog {
    fn finish(&self, status: StatusCode, started: Instant) {
        tracing::info!(
            target: "turnpike::call",
            request_id = %self.request_id,
            trace_id = self.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
            parent_id = self.trace.as_ref().map_or("", |t| t.parent_id.as_str()),
            method = %self.method,
            tool = self.tool.as_deref().unwrap_or(""),
            rail = self.rail.map_or("", RailId::as_str),
            outcome = self.outcome.as_str(),
            limit_reason = self.limit_reason.unwrap_or(""),
            upstream_429 = self.upstream_429,
            status = status.as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            upstream_us = self.upstream.map_or(0, |d| d.as_micros() as u64),
            "call"
        );
    }

    /// Counts the call in `metrics`, and ends its spans.
    fn record(&mut self, metrics: &Metrics, status: StatusCode, started: Instant) {
        metrics.record(&CallRecord {
            method: &self.method,
            tool: self.tool.as_deref(),
            rail: self.rail,
            outcome: self.outcome,
            status: status.as_u16(),
            total: started.elapsed(),
            upstream: self.upstream,
            paid_msat: self.paid_msat,
            caller: self.caller.as_ref(),
        });
        if self.spans.is_on() {
            let summary = CallSummary {
                request_id: &self.request_id,
                parent: self.trace.as_ref(),
                method: &self.method,
                tool: self.tool.as_deref(),
                rail: self.rail,
                outcome: self.outcome.as_str(),
                mcp: self.outcome != Outcome::Passthrough,
                upstream_timed_out: self.outcome == Outcome::UpstreamTimeout,
                limit_reason: self.limit_reason,
                paid_msat: self.paid_msat,
                caller: self.caller.as_ref(),
                upstream: self.upstream,
                upstream_429: self.upstream_429,
                status,
            };
            self.spans.end(&summary, &|key| metrics.hash_label(key));
        }
    }

    /// The request id goes to the upstream too, and the upstream span's trace context when
    /// the call is recorded.
    fn tag_upstream_request(&mut self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert(context::REQUEST_ID_HEADER.clone(), v);
        }
        self.spans.upstream_headers(headers, self.trace.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credential_headers() {
        let mut h = HeaderMap::new();
        h.append(header::AUTHORIZATION, HeaderValue::from_static("PoW a=1"));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert("macaroon", HeaderValue::from_static("m"));
        h.insert("dpop", HeaderValue::from_static("d"));
        h.insert("turnpike-challenge", HeaderValue::from_static("http"));
        h.insert("turnpike-other", HeaderValue::from_static("x"));
        h.insert("mcp-session-id", HeaderValue::from_static("s"));
        strip_credential_headers(
            &mut h,
            [
                turnpike_l402::MACAROON_HEADER,
                turnpike_oauth::plugin::DPOP_HEADER,
            ],
        );
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("mcp-session-id"));
    }

    #[test]
    fn a_request_without_credentials_keeps_every_header() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("gate.example"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.append("x-custom", HeaderValue::from_static("1"));
        h.append("x-custom", HeaderValue::from_static("2"));
        let before = h.clone();
        strip_credential_headers(&mut h, ["Macaroon", "DPoP"]);
        assert_eq!(h, before);
        // Names compare whatever their case; every value of a stripped name goes.
        h.append("macaroon", HeaderValue::from_static("a"));
        h.append("macaroon", HeaderValue::from_static("b"));
        h.append("turnpike-identity", HeaderValue::from_static("forged"));
        strip_credential_headers(&mut h, ["Macaroon"]);
        assert_eq!(h, before);
    }
}
