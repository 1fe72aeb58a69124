//! The spans of one call through the gateway ([`CallSpans`]), when `[telemetry]` is on.
//!
//! Each call is a trace of its own or joins the caller's: a SERVER span named after the MCP
//! method and tool (`tools/call add`) whose parent is the caller's span, with a child per
//! pipeline stage (`parse`, `price`, `decide` with its `verify` child, `limits`) and a CLIENT
//! span for the upstream. The upstream receives a `traceparent` naming that upstream span as
//! its parent, in the header and, when the request carried one there, in `params._meta` (the
//! body is then re-serialised). Events on the server span: `turnpike.challenge`,
//! `turnpike.credential_accepted`, `turnpike.credential_refused`, `turnpike.limited` (with
//! `turnpike.retry_after_ms`) and `turnpike.refund`. A caller's unsampled context is not
//! recorded (and is forwarded unchanged); a new trace is recorded at `sample_ratio`. Attributes
//! never hold a credential, a token or an address: the caller is its kind and the label the
//! dashboard shows (a salted hash for an address, [`CallSpans::end`]).
//!
//! Names and attributes follow OpenTelemetry's MCP conventions (`mcp.method.name`,
//! `gen_ai.tool.name`, …). What the gateway decided reaches this module as plain facts
//! ([`CallSummary`]); it imports none of the gateway's crates.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use turnpike_core::{Challenge, Decision, Grant, Identity, RailId};

use crate::context::TraceParent;
use crate::export::Telemetry;
use crate::span::{
    traceparent, Clock, Event, KeyValue, Span, SpanId, SpanKind, Status, StatusCode as Code,
    TraceId,
};

/// A stage of the pipeline recorded as a child span of the call ([`CallSpans::enter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The body read and the envelope checked.
    Parse,
    /// The price.
    Price,
    /// Credentials and the rails' decision (its `verify` child times the rails).
    Decide,
    /// The limits.
    Limits,
    /// The call forwarded: the upstream's own CLIENT span stands for it; no stage span.
    Forward,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Price => "price",
            Stage::Decide => "decide",
            Stage::Limits => "limits",
            Stage::Forward => "forward",
        }
    }
}

/// The spans of one call, when `[telemetry]` is on. Off, it holds nothing and every method
/// returns at once: the call path does no tracing work.
#[derive(Default)]
pub struct CallSpans(Option<Box<Recording>>);

/// What the call does, as it goes; spans are built from it when the call ends.
struct Recording {
    telemetry: Telemetry,
    clock: Clock,
    http_method: Method,
    /// The endpoint's path (`url.path`).
    path: String,
    /// `MCP-Protocol-Version`, when sane.
    protocol: Option<String>,
    ctx: Option<Ctx>,
    /// The stage in progress: its span id and start.
    stage: Option<(Stage, SpanId, Instant)>,
    /// Finished children (the stages, `verify`).
    children: Vec<Child>,
    /// Events of the server span.
    events: Vec<Event>,
    /// The upstream CLIENT span: its id and when the request went.
    upstream: Option<(SpanId, Instant)>,
}

/// The trace a call belongs to, decided once its parent is known.
struct Ctx {
    trace_id: TraceId,
    root: SpanId,
    parent: Option<SpanId>,
    sampled: bool,
}

struct Child {
    id: SpanId,
    parent: Option<SpanId>,
    name: &'static str,
    start: Instant,
    end: Instant,
    attributes: Vec<KeyValue>,
}

/// What the pipeline knows of a call when it ends (its log line's facts).
pub struct CallSummary<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The caller's trace context, if any.
    pub parent: Option<&'a TraceParent>,
    /// The MCP method (the HTTP method for a request passed through; empty when unknown).
    pub method: &'a str,
    /// The tool or prompt name.
    pub tool: Option<&'a str>,
    /// The rail that granted the call.
    pub rail: Option<RailId>,
    /// How the call ended, as the log line and the metrics name it (`paid`, `challenged`, …).
    pub outcome: &'static str,
    /// Whether `method` is an MCP method: false for a request passed through as it came (its
    /// `method` is then the HTTP method).
    pub mcp: bool,
    /// The upstream sent no response head in time.
    pub upstream_timed_out: bool,
    /// Why the gateway's limits refused it.
    pub limit_reason: Option<&'static str>,
    /// Millisatoshis charged.
    pub paid_msat: u64,
    /// Who called.
    pub caller: Option<&'a Identity>,
    /// The time the upstream took to its response head.
    pub upstream: Option<Duration>,
    /// The upstream answered 429 itself.
    pub upstream_429: bool,
    /// The status sent to the caller.
    pub status: StatusCode,
}

impl CallSpans {
    /// Starts recording a call that arrived now, when telemetry is on.
    pub fn start(
        telemetry: Option<&Telemetry>,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
    ) -> Self {
        let Some(t) = telemetry else {
            return CallSpans(None);
        };
        let protocol = headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 32 && v.bytes().all(|c| c.is_ascii_graphic()))
            .map(str::to_owned);
        CallSpans(Some(Box::new(Recording {
            telemetry: t.clone(),
            clock: Clock::now(),
            http_method: method.clone(),
            path: path.to_owned(),
            protocol,
            ctx: None,
            stage: None,
            children: Vec::with_capacity(6),
            events: Vec::new(),
            upstream: None,
        })))
    }

    /// Whether this call is being recorded at all.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Ends the stage in progress and begins `stage`.
    pub fn enter(&mut self, stage: Stage) {
        let Some(r) = self.0.as_deref_mut() else {
            return;
        };
        let now = Instant::now();
        r.close_stage(now);
        if stage != Stage::Forward {
            r.stage = Some((stage, SpanId::random(), now));
        }
    }

    /// Runs the rails' decision (`decide`), timed as a `verify` span under the stage in
    /// progress; records what it decided as events of the call.
    pub async fn verify(
        &mut self,
        presented: &[turnpike_core::Credential],
        decide: impl std::future::Future<Output = Decision>,
    ) -> Decision {
        let Some(r) = self.0.as_deref_mut() else {
            return decide.await;
        };
        let start = Instant::now();
        let decision = decide.await;
        let end = Instant::now();
        let mut attributes = Vec::with_capacity(3);
        let mut kinds: Vec<&'static str> = presented.iter().map(|c| c.rail().as_str()).collect();
        kinds.dedup();
        if !kinds.is_empty() {
            attributes.push(KeyValue::new("turnpike.credentials", kinds.join(",")));
        }
        let verdict = match &decision {
            Decision::Free => "free",
            Decision::Pass(g) => {
                attributes.push(KeyValue::new("turnpike.rail", g.rail.as_str()));
                r.event(
                    end,
                    "turnpike.credential_accepted",
                    vec![KeyValue::new("turnpike.rail", g.rail.as_str())],
                );
                "pass"
            }
            Decision::Challenge { refusals, .. } => {
                for f in refusals {
                    r.refused(end, f);
                }
                "challenge"
            }
            Decision::Invalid { refusal, .. } => {
                attributes.push(KeyValue::new("turnpike.rail", refusal.rail.as_str()));
                r.refused(end, refusal);
                "invalid"
            }
            Decision::Unavailable { refusals } => {
                for f in refusals {
                    r.refused(end, f);
                }
                "unavailable"
            }
        };
        attributes.push(KeyValue::new("turnpike.verdict", verdict));
        let parent = r.stage.as_ref().map(|(_, id, _)| *id);
        r.children.push(Child {
            id: SpanId::random(),
            parent,
            name: "verify",
            start,
            end,
            attributes,
        });
        decision
    }

    /// Challenges were issued (`turnpike.challenge`, with the rails offered).
    pub fn challenged(&mut self, challenges: &[Challenge]) {
        let Some(r) = self.0.as_deref_mut() else {
            return;
        };
        let rails: Vec<&str> = challenges.iter().map(|c| c.rail.as_str()).collect();
        r.event(
            Instant::now(),
            "turnpike.challenge",
            vec![KeyValue::new("turnpike.rails", rails.join(","))],
        );
    }

    /// The gateway's limits refused the call (`turnpike.limited`): why (`rate`, `loop_brake`,
    /// …), the policy that refused it and how long until it would fit.
    pub fn limited(&mut self, reason: &'static str, policy: &str, retry_after: Duration) {
        let Some(r) = self.0.as_deref_mut() else {
            return;
        };
        let ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        r.event(
            Instant::now(),
            "turnpike.limited",
            vec![
                KeyValue::new("turnpike.limit.reason", reason),
                KeyValue::new("turnpike.limit.policy", policy.to_owned()),
                KeyValue::new("turnpike.retry_after_ms", ms),
            ],
        );
    }

    /// A granted call is given back: a debit refunded, a single-use credential released
    /// (`turnpike.refund`, with why).
    pub fn refund(&mut self, grant: Option<&Grant>, why: &'static str) {
        let (Some(r), Some(g)) = (self.0.as_deref_mut(), grant) else {
            return;
        };
        r.event(
            Instant::now(),
            "turnpike.refund",
            vec![
                KeyValue::new("turnpike.rail", g.rail.as_str()),
                KeyValue::new("turnpike.refund.reason", why),
            ],
        );
    }

    /// The upstream answered a granted call with `status`: a non-2xx answer settles it as not
    /// served (`turnpike.refund`).
    pub fn upstream_answered(&mut self, grant: Option<&Grant>, status: StatusCode) {
        if !status.is_success() {
            self.refund(grant, "upstream_refused");
        }
    }

    /// Sets the upstream's `traceparent` header, naming the upstream span as its parent, when
    /// the call is recorded (the caller's `tracestate` goes on as it came). Otherwise the
    /// headers stay as they are.
    pub fn upstream_headers(&mut self, headers: &mut HeaderMap, parent: Option<&TraceParent>) {
        let Some(tp) = self.upstream_traceparent(parent) else {
            return;
        };
        if let Ok(v) = HeaderValue::from_str(&tp) {
            headers.insert("traceparent", v);
        }
    }

    /// Replaces `params._meta.traceparent` of `message`, when it has one and the call is
    /// recorded, with the upstream span's; whether it did.
    pub fn rewrite_meta(&mut self, message: &mut Value, parent: Option<&TraceParent>) -> bool {
        if self.0.is_none() {
            return false;
        }
        let has = message
            .get("params")
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("traceparent"))
            .is_some();
        if !has {
            return false;
        }
        let Some(tp) = self.upstream_traceparent(parent) else {
            return false;
        };
        match message.pointer_mut("/params/_meta/traceparent") {
            Some(v) => {
                *v = Value::String(tp);
                true
            }
            None => false,
        }
    }

    /// The upstream span's `traceparent` (its id chosen on first use), when recorded.
    fn upstream_traceparent(&mut self, parent: Option<&TraceParent>) -> Option<String> {
        let r = self.0.as_deref_mut()?;
        let (trace_id, sampled) = {
            let ctx = r.ctx(parent);
            (ctx.trace_id, ctx.sampled)
        };
        if !sampled {
            return None;
        }
        let (id, _) = *r
            .upstream
            .get_or_insert_with(|| (SpanId::random(), Instant::now()));
        Some(traceparent(&trace_id, &id, 1))
    }

    /// Ends the call: its spans go to the exporter when it is recorded. `hash_label` gives the
    /// label an address or an account is shown under (`anon-<salted hash>`, as the dashboard
    /// shows anonymous callers).
    pub fn end(&mut self, call: &CallSummary<'_>, hash_label: &dyn Fn(&str) -> String) {
        let Some(mut r) = self.0.take() else {
            return;
        };
        let end = Instant::now();
        r.close_stage(end);
        let ctx = r.ctx(call.parent);
        if !ctx.sampled {
            return;
        }
        let (trace_id, root, parent) = (ctx.trace_id, ctx.root, ctx.parent);
        let name = span_name(call.method, call.tool, &r.http_method);
        let mut spans = Vec::with_capacity(r.children.len() + 2);
        let span = |id, parent, name, kind, start, end, attributes, events, status| Span {
            trace_id,
            span_id: id,
            parent_span_id: parent,
            trace_state: String::new(),
            flags: 1,
            name,
            kind,
            start_time_unix_nano: r.clock.unix_nanos(start),
            end_time_unix_nano: r.clock.unix_nanos(end),
            attributes,
            events,
            status,
        };
        for c in r.children.drain(..) {
            spans.push(span(
                c.id,
                Some(c.parent.unwrap_or(root)),
                Cow::Borrowed(c.name),
                SpanKind::Internal,
                c.start,
                c.end,
                c.attributes,
                Vec::new(),
                Status::default(),
            ));
        }
        if let (Some((id, start)), Some(took)) = (r.upstream, call.upstream) {
            let mut a = mcp_attributes(call);
            a.push(KeyValue::new(
                "http.response.status_code",
                i64::from(call.status.as_u16()),
            ));
            if call.upstream_429 {
                a.push(KeyValue::new("turnpike.upstream_429", true));
            }
            let status = if call.upstream_timed_out {
                Status {
                    code: Code::Error,
                    message: "no answer in time".into(),
                }
            } else {
                Status::default()
            };
            spans.push(span(
                id,
                Some(root),
                name.clone(),
                SpanKind::Client,
                start,
                start + took,
                a,
                Vec::new(),
                status,
            ));
        }
        let attributes = root_attributes(&r, call, hash_label);
        let status = if call.status.is_server_error() {
            Status {
                code: Code::Error,
                message: call.outcome.to_owned(),
            }
        } else {
            Status::default()
        };
        let events = std::mem::take(&mut r.events);
        spans.push(span(
            root,
            parent,
            name,
            SpanKind::Server,
            r.clock.start(),
            end,
            attributes,
            events,
            status,
        ));
        r.telemetry.record(spans);
    }
}

impl Recording {
    fn close_stage(&mut self, now: Instant) {
        if let Some((stage, id, start)) = self.stage.take() {
            self.children.push(Child {
                id,
                parent: None,
                name: stage.name(),
                start,
                end: now,
                attributes: Vec::new(),
            });
        }
    }

    fn event(&mut self, at: Instant, name: &'static str, attributes: Vec<KeyValue>) {
        self.events.push(Event {
            time_unix_nano: self.clock.unix_nanos(at),
            name,
            attributes,
        });
    }

    fn refused(&mut self, at: Instant, f: &turnpike_core::Refusal) {
        let reason: String = f.reason.chars().take(200).collect();
        self.event(
            at,
            "turnpike.credential_refused",
            vec![
                KeyValue::new("turnpike.rail", f.rail.as_str()),
                KeyValue::new("turnpike.reason", reason),
            ],
        );
    }

    /// The call's trace: the caller's (sampled as it says), else a new one (sampled at the
    /// configured ratio). Decided once.
    fn ctx(&mut self, parent: Option<&TraceParent>) -> &Ctx {
        let telemetry = &self.telemetry;
        self.ctx.get_or_insert_with(|| {
            let from = parent.and_then(|p| {
                Some((
                    TraceId::from_hex(&p.trace_id)?,
                    SpanId::from_hex(&p.parent_id)?,
                    p.flags,
                ))
            });
            match from {
                Some((trace_id, parent, flags)) => Ctx {
                    trace_id,
                    root: SpanId::random(),
                    parent: Some(parent),
                    sampled: telemetry.should_sample(Some(flags), &trace_id),
                },
                None => {
                    let trace_id = TraceId::random();
                    Ctx {
                        trace_id,
                        root: SpanId::random(),
                        parent: None,
                        sampled: telemetry.should_sample(None, &trace_id),
                    }
                }
            }
        })
    }
}

/// `tools/call add`, `prompts/get review`, `initialize`; the HTTP method when there is no MCP
/// method (a GET passed through, a request refused before its body was read).
fn span_name(method: &str, tool: Option<&str>, http: &Method) -> Cow<'static, str> {
    match (method, tool) {
        ("", _) => Cow::Owned(http.as_str().to_owned()),
        ("tools/call" | "prompts/get", Some(t)) => Cow::Owned(format!("{method} {t}")),
        (m, _) => Cow::Owned(m.to_owned()),
    }
}

/// `mcp.method.name` and the tool or prompt, by the OpenTelemetry MCP conventions.
fn mcp_attributes(call: &CallSummary<'_>) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(12);
    if !call.method.is_empty() && call.mcp {
        a.push(KeyValue::new("mcp.method.name", call.method.to_owned()));
    }
    match (call.method, call.tool) {
        ("tools/call", Some(t)) => {
            a.push(KeyValue::new("gen_ai.tool.name", t.to_owned()));
            a.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        ("prompts/get", Some(p)) => a.push(KeyValue::new("gen_ai.prompt.name", p.to_owned())),
        _ => {}
    }
    a
}

fn root_attributes(
    r: &Recording,
    call: &CallSummary<'_>,
    hash_label: &dyn Fn(&str) -> String,
) -> Vec<KeyValue> {
    let mut a = mcp_attributes(call);
    a.push(KeyValue::new(
        "http.request.method",
        r.http_method.as_str().to_owned(),
    ));
    a.push(KeyValue::new(
        "http.response.status_code",
        i64::from(call.status.as_u16()),
    ));
    a.push(KeyValue::new("url.path", r.path.clone()));
    if let Some(v) = &r.protocol {
        a.push(KeyValue::new("mcp.protocol.version", v.clone()));
    }
    if call.status.is_client_error() || call.status.is_server_error() {
        a.push(KeyValue::new("error.type", call.status.as_str().to_owned()));
    }
    a.push(KeyValue::new(
        "turnpike.request_id",
        call.request_id.to_owned(),
    ));
    a.push(KeyValue::new("turnpike.outcome", call.outcome));
    if let Some(rail) = call.rail {
        a.push(KeyValue::new("turnpike.rail", rail.as_str()));
    }
    if call.paid_msat > 0 {
        a.push(KeyValue::new("turnpike.paid_msat", call.paid_msat));
    }
    if let Some(why) = call.limit_reason {
        a.push(KeyValue::new("turnpike.limit.reason", why));
    }
    if let Some(id) = call.caller {
        let (kind, label) = caller_label(id, hash_label);
        a.push(KeyValue::new("turnpike.caller.kind", kind));
        a.push(KeyValue::new("turnpike.caller", label));
    }
    a
}

/// A caller as spans name it: its kind and a label that is no credential and no address — a
/// salted hash of the address (as the dashboard shows anonymous callers), the token id's first
/// 16 hex digits (L402, as the dashboard), a salted hash of the scope key (OAuth: issuer,
/// subject and client; an agent: its directory and key id; another rail's caller: its rail and
/// id), after the kind.
fn caller_label(id: &Identity, hash_label: &dyn Fn(&str) -> String) -> (String, String) {
    let kind = id.kind().to_owned();
    let label = match id {
        Identity::Anonymous { addr_prefix } => hash_label(addr_prefix),
        Identity::L402 { token_id } => token_id.chars().take(16).collect(),
        // A person's account (OAuth) or another rail's caller: hashed, as an address is.
        Identity::OAuth { .. } | Identity::Agent { .. } | Identity::Rail { .. } => {
            let h = hash_label(&id.scope_key());
            format!("{kind}-{}", h.trim_start_matches("anon-"))
        }
    };
    (kind, label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn telemetry(ratio: f64) -> Telemetry {
        let cfg: crate::TelemetryConfig = toml::from_str(&format!(
            "otlp_endpoint = \"http://127.0.0.1:9/v1/traces\"\nsample_ratio = {ratio}"
        ))
        .unwrap();
        Telemetry::start(&cfg).unwrap()
    }

    fn recording(t: Option<&Telemetry>) -> CallSpans {
        CallSpans::start(t, &Method::POST, &HeaderMap::new(), "/mcp")
    }

    #[test]
    fn off_changes_nothing() {
        let mut spans = recording(None);
        assert!(!spans.is_on());
        let tp = TraceParent::parse(TP).unwrap();
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(TP));
        spans.upstream_headers(&mut h, Some(&tp));
        assert_eq!(h["traceparent"], TP);
        let mut msg = json!({"params": {"_meta": {"traceparent": TP}}});
        assert!(!spans.rewrite_meta(&mut msg, Some(&tp)));
        assert_eq!(msg["params"]["_meta"]["traceparent"], TP);
    }

    #[tokio::test]
    async fn a_sampled_parent_is_joined_and_the_upstream_gets_our_span() {
        let t = telemetry(0.0);
        let mut spans = recording(Some(&t));
        let tp = TraceParent::parse(TP).unwrap();
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(TP));
        let mut msg = json!({"params": {"_meta": {"traceparent": TP, "k": 1}}});
        assert!(spans.rewrite_meta(&mut msg, Some(&tp)));
        spans.upstream_headers(&mut h, Some(&tp));
        let sent = h["traceparent"].to_str().unwrap().to_owned();
        let ours = TraceParent::parse(&sent).unwrap();
        // Same trace (ratio 0 does not matter: the caller sampled it), a span of the gateway's.
        assert_eq!(ours.trace_id, tp.trace_id);
        assert_ne!(ours.parent_id, tp.parent_id);
        assert_eq!(ours.flags, 1);
        assert_eq!(msg["params"]["_meta"]["traceparent"], sent.as_str());
        assert_eq!(msg["params"]["_meta"]["k"], 1);
    }

    #[tokio::test]
    async fn an_unsampled_parent_or_ratio_leaves_the_request_alone() {
        let t = telemetry(0.0);
        let quiet = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let tp = TraceParent::parse(quiet).unwrap();
        let mut spans = recording(Some(&t));
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(quiet).unwrap());
        spans.upstream_headers(&mut h, Some(&tp));
        assert_eq!(h["traceparent"], quiet);
        // No parent and a ratio of 0: no new trace, no header.
        let mut spans = recording(Some(&t));
        let mut h = HeaderMap::new();
        spans.upstream_headers(&mut h, None);
        assert!(!h.contains_key("traceparent"));
    }

    #[test]
    fn span_names_follow_the_mcp_conventions() {
        assert_eq!(
            span_name("tools/call", Some("add"), &Method::POST),
            "tools/call add"
        );
        assert_eq!(
            span_name("prompts/get", Some("p"), &Method::POST),
            "prompts/get p"
        );
        assert_eq!(
            span_name("resources/read", Some("file:///x"), &Method::POST),
            "resources/read"
        );
        assert_eq!(span_name("", None, &Method::GET), "GET");
    }

    #[test]
    fn callers_are_labels_not_addresses() {
        // As the metrics label callers: a salted hash, here a stand-in.
        let m = |key: &str| format!("anon-{:x}", key.len());
        let (kind, label) = caller_label(&Identity::anonymous("203.0.113.7".parse().unwrap()), &m);
        assert_eq!(kind, "anonymous");
        assert!(
            label.starts_with("anon-") && !label.contains("203.0.113"),
            "{label}"
        );
        let oauth = Identity::OAuth {
            issuer: "https://issuer".into(),
            subject: "alice@example.com".into(),
            client_id: None,
        };
        let (kind, label) = caller_label(&oauth, &m);
        assert_eq!(kind, "oauth");
        assert!(
            label.starts_with("oauth-") && !label.contains("alice"),
            "{label}"
        );
        let other = Identity::Rail {
            rail: "x402".into(),
            id: "0xalice".into(),
        };
        let (kind, label) = caller_label(&other, &m);
        assert_eq!(kind, "x402");
        assert!(
            label.starts_with("x402-") && !label.contains("alice"),
            "{label}"
        );
    }
}
