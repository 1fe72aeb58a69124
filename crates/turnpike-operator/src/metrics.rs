//! What the gateway counts, and its Prometheus text exposition (format 0.0.4), written by hand.
//!
//! The pipeline records each call once, when its response head is ready ([`Metrics::record`]):
//! a few relaxed atomic adds, one read-locked map look-up for the labelled call counter, and one
//! short lock for the top-callers table (dashboard only). Label values come from fixed sets:
//!
//! - `method`: the MCP method from a fixed list, `notification`, `response`, `GET`, `DELETE`,
//!   or `other`;
//! - `tool`: a tool named in the configured policy (`[tools.<name>]`), `other` for any other
//!   tool, empty for calls that are not `tools/call`;
//! - `rail`: `none`, and the name of each rail the gateway was built with (those it runs and
//!   those it only recognises, e.g. `pow`, `l402`, `oauth`), fixed when the metrics are made
//!   ([`Metrics::with_rails`]); a rail without a slot counts under `none`;
//! - `outcome`: `passed`, `challenged`, `refused`, `rate_limited`, `unavailable`,
//!   `upstream_error`, `rejected` ([`OutcomeClass`], what each pipeline [`Outcome`] comes to).
//!
//! Tool calls (`tools/call`) are counted apart from the rest of the traffic (initialize, lists,
//! notifications, responses, `GET` streams, `DELETE`) for the dashboard: its "tool calls" are
//! the former alone. What is particular to one rail (proof-of-work puzzles and effort, L402
//! invoices, payments and money charged) the rail counts itself, through its
//! [`turnpike_core::RailMeter`]: the metrics hand each rail's meter its challenges and granted
//! calls, write its series after the gateway's own latency series, and take its figures into
//! the dashboard's samples and summary. This module names no rail.
//!
//! No identity is ever a label. The dashboard's top callers live in a separate table capped at
//! [`MAX_CALLERS`] entries, anonymous callers under a keyed hash of their address.
//!
//! docs/OPERATIONS.md lists every series.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use turnpike_core::unix_now;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use turnpike_core::{Challenge, Identity, RailId, RailMeter};

/// Counts of refusals, kept apart by who refused: the gateway's own limits, or the upstream.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Calls the gateway answered 429 (or its in-band equivalent) itself.
    pub gateway_limited: AtomicU64,
    /// Calls refused 503 because the limits store was down (failure mode `closed`).
    pub store_unavailable: AtomicU64,
    /// Calls let through unlimited because the limits store was down (failure mode `open`).
    pub degraded: AtomicU64,
    /// Upstream responses with status 429 (passed on as they are, never counted as ours).
    pub upstream_429: AtomicU64,
    /// Calls over a limit let through because the limits are in shadow mode.
    pub shadow_limited: AtomicU64,
}

impl LimitCounters {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// A snapshot: (gateway 429s, store-down 503s, fail-open calls, upstream 429s).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.gateway_limited.load(Relaxed),
            self.store_unavailable.load(Relaxed),
            self.degraded.load(Relaxed),
            self.upstream_429.load(Relaxed),
        )
    }
}

/// Histogram bucket bounds, seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// At most this many distinct tool labels (beyond that: `other`).
pub const MAX_TOOLS: usize = 256;
/// At most this many callers in the top-callers table (beyond that: counted as `other`).
pub const MAX_CALLERS: usize = 4096;
/// Samples kept for the dashboard's charts (one per [`SAMPLE_EVERY`]: one hour).
pub const HISTORY: usize = 720;
/// How often the history is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The `rail` label of calls no rail granted (and of rails without a slot of their own).
const NONE: &str = "none";
const METHODS: [&str; 17] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
    "tasks/result",
];

/// The `method` label of a call.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "" => "response",
        "GET" => "GET",
        "DELETE" => "DELETE",
        m if m.starts_with("notifications/") => "notification",
        m => METHODS
            .iter()
            .find(|x| **x == m)
            .copied()
            .unwrap_or("other"),
    }
}

/// What became of one call, as the pipeline decides it. [`Outcome::as_str`] is the `outcome`
/// field of the call's log line; [`Outcome::class`] its `outcome` label in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Nothing decided yet (the inner service failed before answering): `""`.
    #[default]
    Undecided,
    /// `Host` or `Origin` not allowed: `forbidden`.
    Forbidden,
    /// Not a POST, forwarded as it is: `passthrough`.
    Passthrough,
    /// `Content-Type` not JSON: `unsupported-media-type`.
    UnsupportedMediaType,
    /// The body was too large, too slow or unreadable: `bad-body`.
    BadBody,
    /// Not exactly one JSON-RPC message: `bad-envelope`.
    BadEnvelope,
    /// The routing headers disagree with the body: `header-mismatch`.
    HeaderMismatch,
    /// A tool the merged endpoint does not publish: `unknown-tool`.
    UnknownTool,
    /// A tool the merged endpoint cannot price: `unpriced-tool`.
    UnpricedTool,
    /// Free, forwarded: `free`.
    Free,
    /// Paid by a credential, forwarded: `paid`.
    Paid,
    /// The next round of a call already paid for, forwarded: `continued`.
    Continued,
    /// No credential presented: challenged, `challenged`.
    Challenged,
    /// Only stale credentials: fresh challenges, `refused`.
    Refused,
    /// A forged or malformed credential: `invalid`.
    Invalid,
    /// No rail could decide or be offered: `unavailable`.
    Unavailable,
    /// A rail's own answer to a credential it refused (OAuth's 400/401/403, or 429/503 when a
    /// bound on checking tokens holds it back): `rail-refused`. Its `outcome` label follows
    /// the status: 429 `rate_limited`, 503 `unavailable`, else `refused`.
    RailRefused,
    /// The gateway's own limits refused the call: `rate_limited`.
    RateLimited,
    /// The limits store was down (fail closed): `limits_unavailable`.
    LimitsUnavailable,
    /// No response head from the upstream in time: `upstream_timeout`.
    UpstreamTimeout,
    /// An access policy rule refused the call (`[[policy]]`): `policy-denied`.
    PolicyDenied,
}

impl Outcome {
    /// The word in the call's log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Undecided => "",
            Outcome::Forbidden => "forbidden",
            Outcome::Passthrough => "passthrough",
            Outcome::UnsupportedMediaType => "unsupported-media-type",
            Outcome::BadBody => "bad-body",
            Outcome::BadEnvelope => "bad-envelope",
            Outcome::HeaderMismatch => "header-mismatch",
            Outcome::UnknownTool => "unknown-tool",
            Outcome::UnpricedTool => "unpriced-tool",
            Outcome::Free => "free",
            Outcome::Paid => "paid",
            Outcome::Continued => "continued",
            Outcome::Challenged => "challenged",
            Outcome::Refused => "refused",
            Outcome::Invalid => "invalid",
            Outcome::Unavailable => "unavailable",
            Outcome::RailRefused => "rail-refused",
            Outcome::RateLimited => "rate_limited",
            Outcome::LimitsUnavailable => "limits_unavailable",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::PolicyDenied => "policy-denied",
        }
    }

    /// The `outcome` label, from the response status and whether the call was forwarded.
    pub fn class(self, status: u16, forwarded: bool) -> OutcomeClass {
        match self {
            Outcome::Paid | Outcome::Free | Outcome::Continued | Outcome::Passthrough => {
                if forwarded && (status >= 500 || status == 429) {
                    OutcomeClass::UpstreamError
                } else {
                    OutcomeClass::Passed
                }
            }
            Outcome::Challenged => OutcomeClass::Challenged,
            Outcome::RailRefused => match status {
                429 => OutcomeClass::RateLimited,
                503 => OutcomeClass::Unavailable,
                _ => OutcomeClass::Refused,
            },
            Outcome::Refused | Outcome::Invalid | Outcome::Forbidden | Outcome::PolicyDenied => {
                OutcomeClass::Refused
            }
            Outcome::RateLimited => OutcomeClass::RateLimited,
            Outcome::Unavailable | Outcome::LimitsUnavailable => OutcomeClass::Unavailable,
            Outcome::Undecided
            | Outcome::UnsupportedMediaType
            | Outcome::BadBody
            | Outcome::BadEnvelope
            | Outcome::HeaderMismatch
            | Outcome::UnknownTool
            | Outcome::UnpricedTool
            | Outcome::UpstreamTimeout => OutcomeClass::Rejected,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `outcome` label of a call in the metrics: what [`Outcome`]s come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeClass {
    /// Forwarded and answered: `passed`.
    Passed,
    /// `challenged`.
    Challenged,
    /// `refused`.
    Refused,
    /// `rate_limited`.
    RateLimited,
    /// `unavailable`.
    Unavailable,
    /// Forwarded, and the upstream answered 5xx or 429: `upstream_error`.
    UpstreamError,
    /// Anything the gateway turned away as malformed: `rejected`.
    Rejected,
}

impl OutcomeClass {
    /// Every class, in index order.
    pub const ALL: [OutcomeClass; 7] = [
        OutcomeClass::Passed,
        OutcomeClass::Challenged,
        OutcomeClass::Refused,
        OutcomeClass::RateLimited,
        OutcomeClass::Unavailable,
        OutcomeClass::UpstreamError,
        OutcomeClass::Rejected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Passed => "passed",
            OutcomeClass::Challenged => "challenged",
            OutcomeClass::Refused => "refused",
            OutcomeClass::RateLimited => "rate_limited",
            OutcomeClass::Unavailable => "unavailable",
            OutcomeClass::UpstreamError => "upstream_error",
            OutcomeClass::Rejected => "rejected",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// One call, as the pipeline reports it to [`Metrics::record`].
#[derive(Debug)]
pub struct CallRecord<'a> {
    /// The JSON-RPC method.
    pub method: &'a str,
    /// The tool, for `tools/call`.
    pub tool: Option<&'a str>,
    /// The rail that granted the call, if one did.
    pub rail: Option<RailId>,
    /// What became of the call.
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    /// Time from the request to the response head.
    pub total: Duration,
    /// Time the upstream took to its response head, when the call was forwarded.
    pub upstream: Option<Duration>,
    /// Millisatoshis the granting rail charged for this call ([`turnpike_core::Rail::charged_msat`]).
    pub paid_msat: u64,
    /// Who called (the granted identity, else the address).
    pub caller: Option<&'a Identity>,
}

type CallKey = (&'static str, Arc<str>, &'static str, OutcomeClass);

/// A map keyed by labels the gate chose (methods, the policy's tool names, rails, outcomes):
/// hashed with foldhash (seeded per process) rather than SipHash, a tenth of the work on every
/// call; no caller can add a key to it, a caller's name only ever looks one up.
type LabelMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One caller in the top-callers table.
#[derive(Debug, Clone, Serialize)]
pub struct CallerStat {
    /// `anonymous`, or the rail that verified the caller (`oauth`, `l402`, …:
    /// [`Identity::kind`]).
    pub kind: String,
    /// Hashed for anonymous callers; otherwise [`Identity::label`]: the subject (OAuth), the
    /// token id's first 16 hex digits (L402), another rail's id.
    pub label: String,
    /// Tool calls (`tools/call`) seen.
    pub calls: u64,
    /// Other requests seen (initialize, lists, notifications, streams…).
    pub other: u64,
    /// Millisatoshis paid.
    pub paid_msat: u64,
    /// Calls refused: a credential turned down, or a limit reached.
    pub refused: u64,
    /// Unix seconds of the last call.
    pub last_seen: u64,
}

/// A caller's key in the top-callers table: an anonymous caller's keyed hash, or a verified
/// caller's `kind:label`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CallerKey {
    Anonymous(u64),
    Named(String),
}

/// The dashboard's label of an anonymous caller whose keyed hash is `h` (48 bits):
/// `anon-` and twelve hex digits.
fn anon_label(h: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(17);
    s.push_str("anon-");
    for i in (0..12).rev() {
        s.push(char::from(HEX[((h >> (4 * i)) & 0xf) as usize]));
    }
    s
}

/// One sample of the running totals, for the dashboard's charts.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub t: u64,
    /// Tool calls passed, by the `rail` label's slots ([`Metrics::rail_labels`]: `none`
    /// first; running totals).
    pub passed: Vec<u64>,
    /// Other requests passed (initialize, lists, notifications, streams; running total).
    pub other_passed: u64,
    /// Calls challenged (running total).
    pub challenged: u64,
    /// Calls with a credential turned down (invalid, refused, forbidden; running total).
    pub refused: u64,
    /// 429 answers the gateway gave (running total).
    pub gateway_429: u64,
    /// 429 answers from the upstream (running total).
    pub upstream_429: u64,
    /// Calls the upstream failed (running total).
    pub upstream_errors: u64,
    /// The rails' own figures at that moment ([`RailMeter::figures`]), beside the others
    /// (e.g. `charged_msat`, `received_msat`, `invoiced_msat` of L402, `pow_multiplier`).
    #[serde(flatten)]
    pub rails: Figures,
}

/// Named figures, written as the keys of a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures(pub Vec<(&'static str, u64)>);

impl Figures {
    /// The figure named `name`, if a rail gave one.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

impl Serialize for Figures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One slot of the `rail` label: its value, and the rail's meter if it has one.
struct Slot {
    label: &'static str,
    meter: Option<Arc<dyn RailMeter>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("label", &self.label)
            .field("meter", &self.meter.is_some())
            .finish()
    }
}

/// Everything the gateway counts. Shared by every gate a process runs (it survives a reload).
#[derive(Debug)]
pub struct Metrics {
    started: SystemTime,
    /// The random key of the anonymous callers' labels.
    label_key: RandomState,
    tools: RwLock<LabelMap<String, Arc<str>>>,
    other: Arc<str>,
    empty: Arc<str>,
    calls: RwLock<LabelMap<CallKey, AtomicU64>>,
    /// The `rail` label's values, `none` first, with each rail's meter; the vectors below are
    /// indexed by slot.
    slots: Vec<Slot>,
    /// Totals by rail and outcome (for the dashboard, without walking the map).
    by_rail: Vec<[AtomicU64; OutcomeClass::ALL.len()]>,
    /// The same for `tools/call` alone.
    tools_by_rail: Vec<[AtomicU64; OutcomeClass::ALL.len()]>,
    gateway_seconds: Vec<Histogram>,
    upstream_seconds: Histogram,
    in_flight: AtomicI64,
    /// Rail backend health from the last decision: 1 up, 0 down, -1 not seen.
    rail_up: Vec<AtomicI64>,
    rail_unavailable: Vec<AtomicU64>,
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
    last_reload: AtomicU64,
    limits: Arc<LimitCounters>,
    callers: Mutex<HashMap<CallerKey, CallerStat>>,
    callers_overflow: AtomicU64,
    history: Mutex<VecDeque<Sample>>,
    /// Access policy decisions by rule name and decision (`refused`, `would_refuse`,
    /// `classed`, `would_class`).
    policy: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Calls a price in shadow mode would have refused, by tool (or priced method) and reason.
    price_shadow: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Calls an enforced price refused, by the same labels as `price_shadow`.
    price_refused: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty counters with no rail slot but `none` (every call counts under it).
    pub fn new() -> Metrics {
        Metrics::with_rails(std::iter::empty())
    }

    /// Empty counters with a `rail` label slot for each of `rails` (by its name, in this order,
    /// after `none`; a name given twice keeps its first slot), each with the rail's own meter
    /// if it has one ([`turnpike_core::RailPlugin::meter`]).
    pub fn with_rails(
        rails: impl IntoIterator<Item = (RailId, Option<Arc<dyn RailMeter>>)>,
    ) -> Metrics {
        let mut slots = vec![Slot {
            label: NONE,
            meter: None,
        }];
        for (id, meter) in rails {
            if !slots.iter().any(|s| s.label == id.as_str()) {
                slots.push(Slot {
                    label: id.as_str(),
                    meter,
                });
            }
        }
        let n = slots.len();
        Metrics {
            started: SystemTime::now(),
            label_key: RandomState::new(),
            tools: RwLock::default(),
            other: Arc::from("other"),
            empty: Arc::from(""),
            calls: RwLock::default(),
            slots,
            by_rail: (0..n).map(|_| Default::default()).collect(),
            tools_by_rail: (0..n).map(|_| Default::default()).collect(),
            gateway_seconds: (0..n).map(|_| Histogram::default()).collect(),
            upstream_seconds: Histogram::default(),
            in_flight: AtomicI64::new(0),
            rail_up: (0..n).map(|_| AtomicI64::new(-1)).collect(),
            rail_unavailable: (0..n).map(|_| AtomicU64::new(0)).collect(),
            reloads_ok: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            last_reload: AtomicU64::new(0),
            limits: Arc::default(),
            callers: Mutex::default(),
            callers_overflow: AtomicU64::new(0),
            history: Mutex::default(),
            policy: Mutex::default(),
            price_shadow: Mutex::default(),
            price_refused: Mutex::default(),
        }
    }

    /// The `rail` label's values, `none` first: the order of [`Sample::passed`].
    pub fn rail_labels(&self) -> Vec<&'static str> {
        self.slots.iter().map(|s| s.label).collect()
    }

    /// The slot of a rail (`None`, or a rail without a slot of its own: `none`'s, 0).
    fn slot(&self, r: Option<RailId>) -> usize {
        r.and_then(|r| self.slots.iter().position(|s| s.label == r.as_str()))
            .unwrap_or(0)
    }

    /// The meter of the rail in slot `i`, if it has one.
    fn meter(&self, i: usize) -> Option<&dyn RailMeter> {
        self.slots.get(i).and_then(|s| s.meter.as_deref())
    }

    /// The limit counters gates count into (shared by every gate using these metrics).
    pub fn limit_counters(&self) -> Arc<LimitCounters> {
        self.limits.clone()
    }

    /// Makes `names` (the tools the policy names) valid `tool` label values. Names already
    /// known stay; beyond [`MAX_TOOLS`] the rest count as `other`.
    pub fn register_tools<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut t = self.tools.write();
        for n in names {
            if t.len() >= MAX_TOOLS {
                break;
            }
            if !t.contains_key(n) && n != "default" {
                t.insert(n.to_owned(), Arc::from(n));
            }
        }
    }

    fn tool_label(&self, method: &str, tool: Option<&str>) -> Arc<str> {
        if method != "tools/call" {
            return self.empty.clone();
        }
        match tool.and_then(|t| self.tools.read().get(t).cloned()) {
            Some(l) => l,
            None => self.other.clone(),
        }
    }

    /// A call entered the gate.
    pub fn call_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// Records one finished call (its response head is ready).
    pub fn record(&self, c: &CallRecord<'_>) {
        self.in_flight.fetch_sub(1, Relaxed);
        let method = method_label(c.method);
        let outcome = c.outcome.class(c.status, c.upstream.is_some());
        let rail = self.slot(c.rail);
        let key = (
            method,
            self.tool_label(c.method, c.tool),
            self.slots[rail].label,
            outcome,
        );
        // Counted under the read lock: no reference taken to the counter (a shared count
        // every call would bump and drop again).
        let counted = match self.calls.read().get(&key) {
            Some(counter) => {
                counter.fetch_add(1, Relaxed);
                true
            }
            None => false,
        };
        if !counted {
            self.calls
                .write()
                .entry(key)
                .or_default()
                .fetch_add(1, Relaxed);
        }
        self.by_rail[rail][outcome.index()].fetch_add(1, Relaxed);
        let tool_call = c.method == "tools/call";
        if tool_call {
            self.tools_by_rail[rail][outcome.index()].fetch_add(1, Relaxed);
        }
        let own = c.total.saturating_sub(c.upstream.unwrap_or_default());
        self.gateway_seconds[rail].observe(own);
        if let Some(u) = c.upstream {
            self.upstream_seconds.observe(u);
        }
        if c.rail.is_some() {
            if let Some(m) = self.meter(rail) {
                m.call_granted(c.paid_msat);
            }
            self.rail_up[rail].store(1, Relaxed);
        }
        if let Some(id) = c.caller {
            self.count_caller(
                id,
                tool_call,
                c.paid_msat,
                matches!(outcome, OutcomeClass::Refused | OutcomeClass::RateLimited),
            );
        }
    }

    /// Counts the challenges of one refused call, each by its rail's meter (puzzles issued and
    /// their effort, invoices…).
    pub fn challenges(&self, challenges: &[Challenge]) {
        for c in challenges {
            let i = self.slot(Some(c.rail));
            if let Some(m) = self.meter(i) {
                m.challenge_issued(c);
            }
            self.rail_up[i].store(1, Relaxed);
        }
    }

    /// A rail answered "unavailable" (its backend is down).
    pub fn rail_unavailable(&self, rail: RailId) {
        let i = self.slot(Some(rail));
        self.rail_unavailable[i].fetch_add(1, Relaxed);
        self.rail_up[i].store(0, Relaxed);
    }

    /// Each rail's part of the dashboard's summary ([`RailMeter::summary`]), by its key.
    pub fn rail_summaries(&self) -> Vec<(&'static str, serde_json::Value)> {
        self.slots
            .iter()
            .filter_map(|s| s.meter.as_ref()?.summary())
            .collect()
    }

    /// An access policy rule refused a call (`would = false`), or would have refused one it let
    /// through (a rule in shadow mode, `would = true`).
    pub fn policy_decision(&self, rule: &str, would: bool) {
        let decision = if would { "would_refuse" } else { "refused" };
        *self
            .policy
            .lock()
            .entry((rule.to_owned(), decision))
            .or_default() += 1;
    }

    /// A class rule put a call in its class (`would = false`: decision `classed`), or in shadow
    /// mode would have put it in another class than the one it is in (`would = true`:
    /// `would_class`).
    pub fn policy_class(&self, rule: &str, would: bool) {
        let decision = if would { "would_class" } else { "classed" };
        *self
            .policy
            .lock()
            .entry((rule.to_owned(), decision))
            .or_default() += 1;
    }

    /// How many calls `rule` counted under `decision` (`refused`, `would_refuse`, `classed`,
    /// `would_class`).
    pub fn policy_count_of(&self, rule: &str, decision: &str) -> u64 {
        self.policy
            .lock()
            .iter()
            .find(|((r, d), _)| r == rule && *d == decision)
            .map_or(0, |(_, n)| *n)
    }

    /// How many calls `rule` refused (`would = false`) or would have refused (`would = true`).
    pub fn policy_count(&self, rule: &str, would: bool) -> u64 {
        let decision = if would { "would_refuse" } else { "refused" };
        self.policy
            .lock()
            .get(&(rule.to_owned(), decision))
            .copied()
            .unwrap_or(0)
    }

    /// A price in shadow mode let through a call it would have refused: `tool` is the price's
    /// name (a configured key or `default`, never a name only the caller chose), `reason`
    /// `challenge` (no credential), `refused` (a credential its rail refused), `invalid` (a
    /// malformed or stale credential) or `unavailable` (its rail could not decide).
    pub fn price_would_refuse(&self, tool: &str, reason: &'static str) {
        *self
            .price_shadow
            .lock()
            .entry((tool.to_owned(), reason))
            .or_default() += 1;
    }

    /// How many calls to `tool` a price in shadow mode let through for `reason`.
    pub fn price_would_refuse_count(&self, tool: &str, reason: &'static str) -> u64 {
        self.price_shadow
            .lock()
            .get(&(tool.to_owned(), reason))
            .copied()
            .unwrap_or(0)
    }

    /// An enforced price refused a call: `tool` and `reason` as
    /// [`Metrics::price_would_refuse`] names them, so that a price on trial and an enforced one
    /// are read side by side.
    pub fn price_refused(&self, tool: &str, reason: &'static str) {
        *self
            .price_refused
            .lock()
            .entry((tool.to_owned(), reason))
            .or_default() += 1;
    }

    /// How many calls to `tool` an enforced price refused for `reason`.
    pub fn price_refused_count(&self, tool: &str, reason: &'static str) -> u64 {
        self.price_refused
            .lock()
            .get(&(tool.to_owned(), reason))
            .copied()
            .unwrap_or(0)
    }

    /// What the dry runs would have refused beside what enforcing refused, for the admin
    /// API's summary (`dry_runs`): each access rule (`refused`, `would_refuse`, and for a
    /// class rule `classed`, `would_class`), each price by tool and reason (`refused`,
    /// `would_refuse`) and the limits (the gateway's own 429s, and the calls over a limit let
    /// through in shadow mode).
    pub fn dry_runs(&self) -> serde_json::Value {
        let mut rules: BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
            BTreeMap::new();
        for ((rule, decision), n) in self.policy.lock().iter() {
            let row = rules.entry(rule.clone()).or_insert_with(|| {
                let mut m = serde_json::Map::new();
                m.insert("rule".into(), rule.as_str().into());
                for d in ["refused", "would_refuse", "classed", "would_class"] {
                    m.insert(d.into(), 0.into());
                }
                m
            });
            row.insert((*decision).into(), (*n).into());
        }
        let mut prices: BTreeMap<(String, &'static str), (u64, u64)> = BTreeMap::new();
        for (k, n) in self.price_refused.lock().iter() {
            prices.entry(k.clone()).or_default().0 = *n;
        }
        for (k, n) in self.price_shadow.lock().iter() {
            prices.entry(k.clone()).or_default().1 = *n;
        }
        serde_json::json!({
            "rules": rules.into_values().collect::<Vec<_>>(),
            "prices": prices.into_iter().map(|((tool, reason), (refused, would))| serde_json::json!({
                "tool": tool, "reason": reason, "refused": refused, "would_refuse": would,
            })).collect::<Vec<_>>(),
            "limits": {
                "refused": self.limits.gateway_limited.load(Relaxed),
                "would_refuse": self.limits.shadow_limited.load(Relaxed),
            },
        })
    }

    /// A configuration reload was applied (`ok`) or refused.
    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Relaxed);
            self.last_reload.store(unix_now(), Relaxed);
        } else {
            self.reloads_refused.fetch_add(1, Relaxed);
        }
    }

    /// The anonymous label of an address prefix: a keyed hash, stable for this process.
    pub fn hash_label(&self, s: &str) -> String {
        anon_label(self.anon_hash(s))
    }

    /// The keyed hash behind [`Metrics::hash_label`].
    fn anon_hash(&self, s: &str) -> u64 {
        // SipHash keyed at random for the process (`RandomState`): a pseudorandom function of
        // the address (it cannot be read back, nor a label guessed, without the key), at a
        // fraction of SHA-256's cost on every call.
        let mut h = self.label_key.build_hasher();
        h.write(s.as_bytes());
        h.finish() >> 16
    }

    fn count_caller(&self, id: &Identity, tool_call: bool, paid_msat: u64, refused: bool) {
        // An anonymous caller is found by its keyed hash alone: no string is built for a
        // caller already in the table.
        let key = match id {
            Identity::Anonymous { addr_prefix } => {
                CallerKey::Anonymous(self.anon_hash(addr_prefix))
            }
            other => CallerKey::Named(format!(
                "{}:{}",
                other.kind(),
                other.label().unwrap_or_default()
            )),
        };
        let mut m = self.callers.lock();
        let len = m.len();
        let stat = match m.get_mut(&key) {
            Some(s) => s,
            None if len >= MAX_CALLERS => {
                self.callers_overflow.fetch_add(1, Relaxed);
                return;
            }
            None => {
                let label = match &key {
                    CallerKey::Anonymous(h) => anon_label(*h),
                    CallerKey::Named(_) => id.label().unwrap_or_default(),
                };
                m.entry(key).or_insert(CallerStat {
                    kind: id.kind().to_owned(),
                    label,
                    calls: 0,
                    other: 0,
                    paid_msat: 0,
                    refused: 0,
                    last_seen: 0,
                })
            }
        };
        if tool_call {
            stat.calls += 1;
        } else {
            stat.other += 1;
        }
        stat.paid_msat += paid_msat;
        stat.refused += u64::from(refused);
        stat.last_seen = unix_now();
    }

    /// The `n` callers with the most calls.
    pub fn top_callers(&self, n: usize) -> Vec<CallerStat> {
        let mut v: Vec<CallerStat> = self.callers.lock().values().cloned().collect();
        v.sort_by(|a, b| {
            (b.calls, b.other)
                .cmp(&(a.calls, a.other))
                .then(a.label.cmp(&b.label))
        });
        v.truncate(n);
        v
    }

    /// Calls by tool label (tools/call only), most first.
    pub fn top_tools(&self, n: usize) -> Vec<(String, u64)> {
        let mut by: HashMap<String, u64> = HashMap::new();
        for ((method, tool, _, _), c) in self.calls.read().iter() {
            if *method == "tools/call" {
                *by.entry(tool.to_string()).or_default() += c.load(Relaxed);
            }
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// The running totals now.
    pub fn sample(&self) -> Sample {
        let passed = OutcomeClass::Passed.index();
        let (gw, _, _, up) = self.limits.snapshot();
        let tools: Vec<u64> = self
            .tools_by_rail
            .iter()
            .map(|r| r[passed].load(Relaxed))
            .collect();
        let rails = self
            .slots
            .iter()
            .filter_map(|s| s.meter.as_ref())
            .flat_map(|m| m.figures())
            .collect();
        let other_passed = self
            .outcome_total(OutcomeClass::Passed)
            .saturating_sub(tools.iter().sum());
        Sample {
            t: unix_now(),
            passed: tools,
            other_passed,
            challenged: self.outcome_total(OutcomeClass::Challenged),
            refused: self.outcome_total(OutcomeClass::Refused),
            gateway_429: gw,
            upstream_429: up,
            upstream_errors: self.outcome_total(OutcomeClass::UpstreamError),
            rails: Figures(rails),
        }
    }

    /// Appends a sample to the history (kept to [`HISTORY`] samples).
    pub fn push_sample(&self) {
        let s = self.sample();
        let mut h = self.history.lock();
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(s);
    }

    /// The history, oldest first, with the current totals last.
    pub fn history(&self) -> Vec<Sample> {
        let mut v: Vec<Sample> = self.history.lock().iter().cloned().collect();
        v.push(self.sample());
        v
    }

    /// Requests counted so far with this outcome (every method, every rail).
    pub fn outcome_total(&self, outcome: OutcomeClass) -> u64 {
        self.by_rail
            .iter()
            .map(|r| r[outcome.index()].load(Relaxed))
            .sum()
    }

    /// Tool calls (`tools/call`) counted so far with this outcome (every rail).
    pub fn tool_calls_total(&self, outcome: OutcomeClass) -> u64 {
        self.tools_by_rail
            .iter()
            .map(|r| r[outcome.index()].load(Relaxed))
            .sum()
    }

    /// The Prometheus text exposition. `up` lists extra gauges for `turnpike_backend_up`
    /// (backend name, 1/0) that the caller probes at scrape time.
    pub fn render(&self, up: &[(&str, bool)]) -> String {
        let mut out = String::with_capacity(8192);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "turnpike_build_info",
            "gauge",
            "Build information (always 1).",
        );
        let _ = writeln!(
            out,
            "turnpike_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        head(
            &mut out,
            "turnpike_start_time_seconds",
            "gauge",
            "Unix time the process started counting.",
        );
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(out, "turnpike_start_time_seconds {start}");

        head(
            &mut out,
            "turnpike_calls_total",
            "counter",
            "Requests through the gate by MCP method, tool (configured names, else other), rail and outcome.",
        );
        let mut rows: Vec<(CallKey, u64)> = self
            .calls
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Relaxed)))
            .collect();
        rows.sort_by(|(a, _), (b, _)| {
            (a.0, &a.1, a.2, a.3.as_str()).cmp(&(b.0, &b.1, b.2, b.3.as_str()))
        });
        for ((method, tool, rail, outcome), n) in rows {
            let outcome = outcome.as_str();
            let _ = writeln!(
                out,
                "turnpike_calls_total{{method=\"{method}\",tool=\"{}\",rail=\"{rail}\",outcome=\"{outcome}\"}} {n}",
                escape(&tool)
            );
        }
        head(
            &mut out,
            "turnpike_calls_in_flight",
            "gauge",
            "Requests inside the gate now (until their response head).",
        );
        let _ = writeln!(
            out,
            "turnpike_calls_in_flight {}",
            self.in_flight.load(Relaxed).max(0)
        );
        head(
            &mut out,
            "turnpike_gateway_duration_seconds",
            "histogram",
            "The gateway's own time per request (total time to the response head minus the upstream's), by rail.",
        );
        for (slot, h) in self.slots.iter().zip(&self.gateway_seconds) {
            h.write(
                &mut out,
                "turnpike_gateway_duration_seconds",
                &format!("rail=\"{}\"", slot.label),
            );
        }
        head(
            &mut out,
            "turnpike_upstream_duration_seconds",
            "histogram",
            "Time the upstream took to its response head, for forwarded requests.",
        );
        self.upstream_seconds
            .write(&mut out, "turnpike_upstream_duration_seconds", "");

        // Each rail's own series, in slot order.
        for m in self.slots.iter().filter_map(|s| s.meter.as_ref()) {
            m.render(&mut out);
        }
        let (gw, store_down, degraded, up429) = self.limits.snapshot();
        head(
            &mut out,
            "turnpike_limit_hits_total",
            "counter",
            "429 answers by who refused: the gateway's own limits, or the upstream (passed on).",
        );
        let _ = writeln!(
            out,
            "turnpike_limit_hits_total{{source=\"gateway\"}} {gw}\nturnpike_limit_hits_total{{source=\"upstream\"}} {up429}"
        );
        let policy: Vec<((String, &'static str), u64)> = self
            .policy
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if !policy.is_empty() {
            head(
                &mut out,
                "turnpike_policy_decisions_total",
                "counter",
                "Calls an access policy rule refused (decision=refused), or would have refused in shadow mode and let through (decision=would_refuse); calls a class rule put in its class (decision=classed), or would have put in another class in shadow mode (decision=would_class); by rule name.",
            );
            for ((rule, decision), n) in policy {
                let _ = writeln!(
                    out,
                    "turnpike_policy_decisions_total{{rule=\"{}\",decision=\"{decision}\"}} {n}",
                    escape(&rule)
                );
            }
        }
        let shadowed: Vec<((String, &'static str), u64)> = self
            .price_shadow
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if !shadowed.is_empty() {
            head(
                &mut out,
                "turnpike_price_would_refuse_total",
                "counter",
                "Calls a price in shadow mode would have refused and let through free, by tool and reason (challenge, refused, invalid, unavailable).",
            );
            for ((tool, reason), n) in shadowed {
                let _ = writeln!(
                    out,
                    "turnpike_price_would_refuse_total{{tool=\"{}\",reason=\"{reason}\"}} {n}",
                    escape(&tool)
                );
            }
        }
        let refused: Vec<((String, &'static str), u64)> = self
            .price_refused
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if !refused.is_empty() {
            head(
                &mut out,
                "turnpike_price_refused_total",
                "counter",
                "Calls an enforced price refused, by tool and reason (challenge, refused, invalid, unavailable): the labels of turnpike_price_would_refuse_total.",
            );
            for ((tool, reason), n) in refused {
                let _ = writeln!(
                    out,
                    "turnpike_price_refused_total{{tool=\"{}\",reason=\"{reason}\"}} {n}",
                    escape(&tool)
                );
            }
        }
        turnpike_core::meter::write_series(
            &mut out,
            "turnpike_limit_would_refuse_total",
            "counter",
            "Calls over a limit let through because [limits] mode = \"shadow\" (each would have been a 429).",
            self.limits.shadow_limited.load(Relaxed),
        );
        turnpike_core::meter::write_series(
            &mut out,
            "turnpike_limits_store_errors_total",
            "counter",
            "Calls that met a limits store that was down (refused 503 or let through, by failure_mode).",
            store_down + degraded,
        );
        head(
            &mut out,
            "turnpike_rail_up",
            "gauge",
            "Whether a rail's backend answered its last use (1), failed it (0); absent until used.",
        );
        for (slot, up) in self.slots.iter().zip(&self.rail_up).skip(1) {
            let v = up.load(Relaxed);
            if v >= 0 {
                let _ = writeln!(out, "turnpike_rail_up{{rail=\"{}\"}} {v}", slot.label);
            }
        }
        head(
            &mut out,
            "turnpike_rail_unavailable_total",
            "counter",
            "Calls a rail could not decide because its backend was down (answered 503).",
        );
        for (slot, n) in self.slots.iter().zip(&self.rail_unavailable).skip(1) {
            let _ = writeln!(
                out,
                "turnpike_rail_unavailable_total{{rail=\"{}\"}} {}",
                slot.label,
                n.load(Relaxed)
            );
        }
        if !up.is_empty() {
            head(
                &mut out,
                "turnpike_backend_up",
                "gauge",
                "Whether a backend answered a health probe at scrape time (1) or not (0).",
            );
            for (name, ok) in up {
                let _ = writeln!(
                    out,
                    "turnpike_backend_up{{backend=\"{}\"}} {}",
                    escape(name),
                    u8::from(*ok)
                );
            }
        }
        head(
            &mut out,
            "turnpike_config_reloads_total",
            "counter",
            "Configuration reloads, applied or refused (the old configuration stayed in force).",
        );
        let _ = writeln!(
            out,
            "turnpike_config_reloads_total{{result=\"applied\"}} {}\nturnpike_config_reloads_total{{result=\"refused\"}} {}",
            self.reloads_ok.load(Relaxed),
            self.reloads_refused.load(Relaxed)
        );
        head(
            &mut out,
            "turnpike_config_last_reload_timestamp_seconds",
            "gauge",
            "Unix time of the last applied reload (0: none).",
        );
        let _ = writeln!(
            out,
            "turnpike_config_last_reload_timestamp_seconds {}",
            self.last_reload.load(Relaxed)
        );
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_core::RailPlugin;

    /// Metrics with the gateway's rail slots: proof-of-work (running, with its meter), L402
    /// (its meter: `l402`), OAuth (no meter).
    fn metrics_with(l402: Arc<turnpike_l402::meter::L402Meter>) -> Metrics {
        Metrics::with_rails(slots(l402))
    }

    fn slots(
        l402: Arc<turnpike_l402::meter::L402Meter>,
    ) -> Vec<(RailId, Option<Arc<dyn RailMeter>>)> {
        let keys = turnpike_pow::KeyRing::from_secrets(vec![(1, [9; 32])]).unwrap();
        let pow = Arc::new(turnpike_pow::PowRail::new(
            turnpike_pow::PowConfig::default(),
            keys,
            Arc::new(turnpike_store::MemorySpentSet::new()),
        ));
        vec![
            (turnpike_pow::RAIL, pow.meter()),
            (turnpike_l402::RAIL, Some(l402 as Arc<dyn RailMeter>)),
            (RailId::new("oauth"), None),
        ]
    }

    fn metrics() -> Metrics {
        metrics_with(Arc::default())
    }

    fn rec(outcome: Outcome, rail: Option<RailId>, tool: &str) -> CallRecord<'_> {
        CallRecord {
            method: "tools/call",
            tool: Some(tool),
            rail,
            outcome,
            status: 200,
            total: Duration::from_millis(3),
            upstream: Some(Duration::from_millis(2)),
            paid_msat: 0,
            caller: None,
        }
    }

    #[test]
    fn tool_labels_are_bounded_to_the_policy() {
        let m = metrics();
        m.register_tools(["echo"]);
        m.call_started();
        m.record(&rec(Outcome::Paid, Some(RailId::new("pow")), "echo"));
        m.call_started();
        m.record(&rec(Outcome::Free, None, "someone-elses-tool"));
        let text = m.render(&[]);
        assert!(text.contains(
            "turnpike_calls_total{method=\"tools/call\",tool=\"echo\",rail=\"pow\",outcome=\"passed\"} 1"
        ));
        assert!(text.contains(
            "turnpike_calls_total{method=\"tools/call\",tool=\"other\",rail=\"none\",outcome=\"passed\"} 1"
        ));
        assert!(!text.contains("someone-elses-tool"));
        assert!(text.contains("turnpike_pow_puzzles_solved_total 1"));
        assert!(text.contains("turnpike_calls_in_flight 0"));
    }

    #[test]
    fn exposition_is_well_formed() {
        let m = metrics();
        m.call_started();
        m.record(&rec(Outcome::Challenged, None, "x"));
        let text = m.render(&[("limits_store", true)]);
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let name = it.next().unwrap();
                let kind = it.next().unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(typed.insert(name.to_owned()), "two TYPE lines for {name}");
            } else if !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                let name = series.split('{').next().unwrap();
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(
                    typed.contains(name) || typed.contains(base),
                    "{name} has no TYPE"
                );
            }
        }
        assert!(text.contains("turnpike_gateway_duration_seconds_count{rail=\"none\"} 1"));
        assert!(text.contains("turnpike_upstream_duration_seconds_count 1"));
        assert!(text.contains("turnpike_backend_up{backend=\"limits_store\"} 1"));
        assert!(text.contains("# HELP turnpike_limit_hits_total 429 answers by who refused"));
    }

    /// The series, in the order they are written: the gateway's, then each rail's own (by
    /// slot), then the gateway's again.
    #[test]
    fn series_keep_their_order() {
        // The rails with series of their own: proof-of-work, L402 and x402.
        let mut rails = slots(Arc::default());
        rails.push((
            turnpike_x402::RAIL,
            Some(Arc::new(turnpike_x402::rail::X402Meter::default()) as Arc<dyn RailMeter>),
        ));
        let m = Metrics::with_rails(rails);
        let text = m.render(&[("limits_store", true)]);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "turnpike_build_info",
                "turnpike_start_time_seconds",
                "turnpike_calls_total",
                "turnpike_calls_in_flight",
                "turnpike_gateway_duration_seconds",
                "turnpike_upstream_duration_seconds",
                "turnpike_pow_puzzles_issued_total",
                "turnpike_pow_puzzles_solved_total",
                "turnpike_pow_effort",
                "turnpike_pow_effort_multiplier",
                "turnpike_l402_invoices_total",
                "turnpike_l402_invoiced_sats_total",
                "turnpike_l402_paid_calls_total",
                "turnpike_l402_payments_total",
                "turnpike_l402_received_sats_total",
                "turnpike_l402_settled_sats_total",
                "turnpike_x402_offers_total",
                "turnpike_x402_settlements_total",
                "turnpike_limit_hits_total",
                "turnpike_limit_would_refuse_total",
                "turnpike_limits_store_errors_total",
                "turnpike_rail_up",
                "turnpike_rail_unavailable_total",
                "turnpike_backend_up",
                "turnpike_config_reloads_total",
                "turnpike_config_last_reload_timestamp_seconds",
            ]
        );
        assert!(text.contains("turnpike_rail_unavailable_total{rail=\"pow\"} 0\nturnpike_rail_unavailable_total{rail=\"l402\"} 0\nturnpike_rail_unavailable_total{rail=\"oauth\"} 0\nturnpike_rail_unavailable_total{rail=\"x402\"} 0\n"));
        // Failed x402 settlements have their series, by outcome.
        for outcome in ["settled", "refused", "failed"] {
            assert!(text.contains(&format!(
                "turnpike_x402_settlements_total{{outcome=\"{outcome}\"}} 0\n"
            )));
        }
        // The series written only once something was counted, in their places.
        m.policy_decision("r", true);
        m.policy_class("c", false);
        m.price_would_refuse("t", "challenge");
        m.price_refused("t", "invalid");
        let text = m.render(&[]);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .filter(|n| {
                n.starts_with("turnpike_policy")
                    || n.starts_with("turnpike_price")
                    || *n == "turnpike_limit_would_refuse_total"
            })
            .collect();
        assert_eq!(
            names,
            [
                "turnpike_policy_decisions_total",
                "turnpike_price_would_refuse_total",
                "turnpike_price_refused_total",
                "turnpike_limit_would_refuse_total",
            ]
        );
    }

    /// The dry runs beside what enforcing refused, for the admin API: a rule's decisions on
    /// one row, a price's by tool and reason, the limits.
    #[test]
    fn dry_runs_side_by_side() {
        let m = Metrics::new();
        assert_eq!(
            m.dry_runs(),
            serde_json::json!({"rules": [], "prices": [],
                "limits": {"refused": 0, "would_refuse": 0}})
        );
        m.policy_decision("no-anon", true);
        m.policy_decision("no-anon", true);
        m.policy_decision("no-anon", false);
        m.policy_class("partners", false);
        m.price_would_refuse("search", "challenge");
        m.price_refused("search", "challenge");
        m.price_refused("search", "challenge");
        m.price_refused("add", "invalid");
        LimitCounters::bump(&m.limit_counters().shadow_limited);
        assert_eq!(
            m.dry_runs(),
            serde_json::json!({
                "rules": [
                    {"rule": "no-anon", "refused": 1, "would_refuse": 2, "classed": 0, "would_class": 0},
                    {"rule": "partners", "refused": 0, "would_refuse": 0, "classed": 1, "would_class": 0},
                ],
                "prices": [
                    {"tool": "add", "reason": "invalid", "refused": 1, "would_refuse": 0},
                    {"tool": "search", "reason": "challenge", "refused": 2, "would_refuse": 1},
                ],
                "limits": {"refused": 0, "would_refuse": 1},
            })
        );
        assert_eq!(m.price_refused_count("search", "challenge"), 2);
        assert_eq!(m.policy_count_of("partners", "classed"), 1);
    }

    /// The `rail` label's slots are the rails the metrics were made with; a rail without one
    /// counts under `none`, and a rail without a meter has the gateway's series alone.
    #[test]
    fn rail_slots_come_from_the_rails() {
        let bare = Metrics::new();
        assert_eq!(bare.rail_labels(), ["none"]);
        let m = Metrics::with_rails([
            (RailId::new("x402"), None),
            (RailId::new("mpp"), None),
            (RailId::new("x402"), None),
        ]);
        assert_eq!(m.rail_labels(), ["none", "x402", "mpp"]);
        for rail in ["x402", "unregistered"] {
            m.call_started();
            m.record(&rec(Outcome::Paid, Some(RailId::new(rail)), "t"));
        }
        m.rail_unavailable(RailId::new("mpp"));
        let text = m.render(&[]);
        assert!(text.contains(
            "turnpike_calls_total{method=\"tools/call\",tool=\"other\",rail=\"x402\",outcome=\"passed\"} 1"
        ));
        assert!(text.contains(
            "turnpike_calls_total{method=\"tools/call\",tool=\"other\",rail=\"none\",outcome=\"passed\"} 1"
        ));
        assert!(text.contains("turnpike_gateway_duration_seconds_count{rail=\"mpp\"} 0"));
        assert!(
            text.contains("turnpike_rail_up{rail=\"x402\"} 1\nturnpike_rail_up{rail=\"mpp\"} 0\n")
        );
        assert!(text.contains("turnpike_rail_unavailable_total{rail=\"mpp\"} 1"));
        assert!(!text.contains("turnpike_pow_") && !text.contains("turnpike_l402_"));
        assert_eq!(m.sample().passed, [1, 1, 0]);
    }

    #[test]
    fn outcomes_map() {
        let label = |o: Outcome, status, forwarded| o.class(status, forwarded).as_str();
        assert_eq!(label(Outcome::Paid, 200, true), "passed");
        assert_eq!(label(Outcome::Paid, 502, true), "upstream_error");
        assert_eq!(label(Outcome::Free, 429, true), "upstream_error");
        assert_eq!(label(Outcome::Invalid, 401, false), "refused");
        assert_eq!(label(Outcome::BadEnvelope, 400, false), "rejected");
        assert_eq!(label(Outcome::UpstreamTimeout, 504, true), "rejected");
        assert_eq!(label(Outcome::Forbidden, 403, false), "refused");
        assert_eq!(label(Outcome::Undecided, 502, false), "rejected");
        assert_eq!(Outcome::RailRefused.as_str(), "rail-refused");
        assert_eq!(
            Outcome::RailRefused.class(401, false),
            OutcomeClass::Refused
        );
        assert_eq!(
            Outcome::RailRefused.class(429, false),
            OutcomeClass::RateLimited
        );
        assert_eq!(
            Outcome::RailRefused.class(503, false),
            OutcomeClass::Unavailable
        );
        for (i, c) in OutcomeClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        assert_eq!(method_label("notifications/initialized"), "notification");
        assert_eq!(method_label("x/y"), "other");
    }

    #[test]
    fn tool_calls_are_counted_apart_from_protocol_traffic() {
        let m = metrics();
        m.register_tools(["add"]);
        let who = Identity::Anonymous {
            addr_prefix: "10.1.2.3".into(),
        };
        let request = |method: &'static str, outcome: Outcome| CallRecord {
            method,
            tool: None,
            rail: None,
            outcome,
            status: 200,
            total: Duration::from_millis(1),
            upstream: Some(Duration::from_millis(1)),
            paid_msat: 0,
            caller: Some(&who),
        };
        for method in [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "ping",
        ] {
            m.call_started();
            m.record(&request(method, Outcome::Free));
        }
        for method in ["GET", "DELETE"] {
            m.call_started();
            m.record(&request(method, Outcome::Passthrough));
        }
        for _ in 0..3 {
            m.call_started();
            m.record(&CallRecord {
                caller: Some(&who),
                ..rec(Outcome::Paid, Some(RailId::new("pow")), "add")
            });
        }
        m.call_started();
        m.record(&CallRecord {
            caller: Some(&who),
            upstream: None,
            ..rec(Outcome::Challenged, None, "add")
        });
        assert_eq!(m.tool_calls_total(OutcomeClass::Passed), 3);
        assert_eq!(m.tool_calls_total(OutcomeClass::Challenged), 1);
        assert_eq!(m.outcome_total(OutcomeClass::Passed), 9);
        let s = m.sample();
        assert_eq!((s.passed, s.other_passed), (vec![0, 3, 0, 0], 6));
        let top = m.top_callers(1);
        assert_eq!((top[0].calls, top[0].other), (4, 6));
        let text = m.render(&[]);
        assert!(text.contains(
            "turnpike_calls_total{method=\"initialize\",tool=\"\",rail=\"none\",outcome=\"passed\"} 1"
        ));
        assert!(text.contains(
            "turnpike_calls_total{method=\"GET\",tool=\"\",rail=\"none\",outcome=\"passed\"} 1"
        ));
    }

    #[test]
    fn invoices_payments_and_charges_are_apart() {
        let l402 = Arc::new(turnpike_l402::meter::L402Meter::default());
        let m = metrics_with(l402.clone());
        let invoice = |msat: u64| Challenge {
            rail: RailId::new("l402"),
            www_authenticate: String::new(),
            details: serde_json::json!({ "rail": "l402", "amount_msat": msat }),
        };
        // Three invoices offered; one paid (a 2000-sat balance), two calls charged to it.
        m.challenges(&[invoice(1000), invoice(1000), invoice(2_000_000)]);
        l402.payment(2_000_000);
        for _ in 0..2 {
            m.call_started();
            m.record(&CallRecord {
                paid_msat: 1000,
                ..rec(Outcome::Paid, Some(RailId::new("l402")), "echo")
            });
        }
        let summaries = m.rail_summaries();
        let money = &summaries[0].1;
        assert_eq!(summaries[0].0, "l402");
        assert_eq!(
            (&money["invoices"], &money["invoiced_msat"]),
            (&3.into(), &2_002_000.into())
        );
        assert_eq!(
            (&money["payments"], &money["received_msat"]),
            (&1.into(), &2_000_000.into())
        );
        assert_eq!(
            (&money["paid_calls"], &money["charged_msat"]),
            (&2.into(), &2000.into())
        );
        let s = m.sample();
        let f = |k| s.rails.get(k);
        assert_eq!(
            (f("invoiced_msat"), f("received_msat"), f("charged_msat")),
            (Some(2_002_000), Some(2_000_000), Some(2000))
        );
        assert_eq!(f("pow_multiplier"), Some(1));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["invoiced_msat"], 2_002_000);
        assert_eq!(json["pow_multiplier"], 1);
        assert_eq!(json["passed"], serde_json::json!([0, 0, 2, 0]));
        let text = m.render(&[]);
        assert!(text.contains("turnpike_l402_invoices_total 3\n"));
        assert!(text.contains("turnpike_l402_payments_total 1\n"));
        assert!(text.contains("turnpike_l402_received_sats_total 2000\n"));
        assert!(text.contains("turnpike_l402_settled_sats_total 2\n"));
    }

    #[test]
    fn callers_are_capped_and_anonymous_ones_hashed() {
        let m = metrics();
        for i in 0..(MAX_CALLERS + 10) {
            let id = Identity::Anonymous {
                addr_prefix: format!("10.0.{}.{}", i / 256, i % 256),
            };
            m.count_caller(&id, true, 0, false);
        }
        let top = m.top_callers(5);
        assert_eq!(top.len(), 5);
        assert!(top.iter().all(|c| c.label.starts_with("anon-")));
        assert!(!top.iter().any(|c| c.label.contains("10.0.")));
        assert_eq!(m.callers_overflow.load(Relaxed), 10);
    }

    #[test]
    fn anonymous_labels_are_the_hash_in_twelve_hex_digits() {
        for h in [0, 1, 0xabc, 0xffff_ffff_ffff, 0x0123_4567_89ab] {
            assert_eq!(anon_label(h), format!("anon-{h:012x}"));
        }
        let m = metrics();
        let id = Identity::anonymous("10.1.2.3".parse().unwrap());
        m.count_caller(&id, true, 0, false);
        m.count_caller(&id, false, 0, true);
        let top = m.top_callers(5);
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].calls, top[0].other, top[0].refused), (1, 1, 1));
        assert_eq!(top[0].label, m.hash_label("10.1.2.3"));
        assert_eq!(top[0].kind, "anonymous");
    }
}
