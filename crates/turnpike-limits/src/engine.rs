//! The limiter: a call's limits resolved from the config, checked in one backend round trip,
//! and turned into what the gateway answers with.

use serde_json::json;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use turnpike_core::{Identity, RailId};
use turnpike_store::fuse::{RedisSpend, SpendCode};

use crate::backend::{
    Check, CheckOutcome, Class, ConcurrencyCheck, Denial, InFlight, LimitBackend, LimitError,
    LoopBrake, LoopCheck, RateCheck, SpendOutcome, SpendReceipt,
};
use crate::config::{
    BudgetsConfig, FailureMode, IdentityQuotaConfig, LimitsConfig, OAuthKey, RailClass,
};
use crate::headers::{self, PolicyStatus, QuotaUnit};
use crate::quota::{ceil_secs, Quota, RateDecision};

/// What kind of call this is, for choosing its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind<'a> {
    /// `initialize`, `ping`, `server/discover`, the list methods, notifications: the discovery
    /// budget.
    Discovery,
    /// `tools/call` of this tool.
    Tool(&'a str),
    /// Another method (e.g. `resources/read`, `prompts/get`), by method name.
    Method(&'a str),
}

impl<'a> CallKind<'a> {
    /// Classifies a JSON-RPC method (and the tool name of a `tools/call`).
    pub fn classify(method: &'a str, name: Option<&'a str>) -> CallKind<'a> {
        if method == "tools/call" {
            return CallKind::Tool(name.unwrap_or(""));
        }
        if method.starts_with("notifications/")
            || turnpike_core::policy::DEFAULT_FREE_METHODS.contains(&method)
            || method.ends_with("/list")
        {
            return CallKind::Discovery;
        }
        CallKind::Method(method)
    }
}

/// One call, as the limiter needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallInfo<'a> {
    /// Who: [`turnpike_core::Identity::scope_key`] of the identity the call is attributed to
    /// (the granting rail's identity, else the anonymous address prefix).
    pub scope: &'a str,
    /// The rail that let the call through (`None` for a free call).
    pub rail: Option<RailId>,
    /// What.
    pub kind: CallKind<'a>,
    /// SHA-256 of the canonical arguments (`CallFacts::args_hash`), for the loop brake.
    pub args_hash: Option<&'a [u8; 32]>,
}

/// Why a call was limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// A rate limit (GCRA) ran out.
    Rate,
    /// The same call was repeated too often (loop brake).
    LoopBrake,
    /// The identity's daily call budget is spent.
    DailyBudget,
    /// Too many of the identity's calls are in flight.
    Concurrency,
    /// The L402 token's daily spending cap (`budgets.msat_per_token_per_day`) is reached.
    SpendBudget,
}

impl LimitReason {
    /// A short label for logs, metrics and `error.data.reason`: `rate`, `loop_brake`,
    /// `daily_budget`, `concurrency`, `spend_budget`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::Rate => "rate",
            LimitReason::LoopBrake => "loop_brake",
            LimitReason::DailyBudget => "daily_budget",
            LimitReason::Concurrency => "concurrency",
            LimitReason::SpendBudget => "spend_budget",
        }
    }
}

/// A call let through.
#[derive(Debug)]
pub struct Admitted {
    /// The policies that applied and what remains under each (for `RateLimit-Policy` and
    /// `RateLimit` on the response). Empty when limits are off or failed open.
    pub status: Vec<PolicyStatus>,
    /// The in-flight slot: keep it alive until the response has been sent (it is given back
    /// when dropped).
    pub in_flight: Option<InFlight>,
    /// The identity's effort multiplier (1 unless its calls have been braked).
    pub effort_multiplier: u32,
    /// True when the backend was down and the limiter failed open.
    pub degraded: bool,
}

/// A call refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Why.
    pub reason: LimitReason,
    /// The policy that refused it (its name in the header fields).
    pub policy: Cow<'static, str>,
    /// How long until the call would fit.
    pub retry_after: Duration,
    /// The policies that applied and what remains under each.
    pub status: Vec<PolicyStatus>,
    /// The identity's effort multiplier.
    pub effort_multiplier: u32,
}

/// What the limiter decided about one call.
#[derive(Debug)]
pub enum Admission {
    /// Forward the call.
    Allowed(Admitted),
    /// Answer 429 (or the in-band equivalent).
    Limited(Limited),
    /// The backend is down and the failure mode is `closed`: answer 503.
    Unavailable(LimitError),
}

/// Header fields for a response, as (name, value) pairs.
pub type HeaderPairs = Vec<(&'static str, String)>;

/// The `RateLimit-Policy` and `RateLimit` fields for `status` (none when empty).
pub fn status_headers(status: &[PolicyStatus]) -> HeaderPairs {
    let mut h = Vec::with_capacity(2);
    if let Some(p) = headers::ratelimit_policy(status) {
        h.push(("RateLimit-Policy", p));
    }
    if let Some(r) = headers::ratelimit(status) {
        h.push(("RateLimit", r));
    }
    h
}

impl Admitted {
    /// The header fields a successful response carries: `RateLimit-Policy` and `RateLimit`.
    pub fn headers(&self) -> HeaderPairs {
        status_headers(&self.status)
    }
}

impl Limited {
    /// `Retry-After` in whole seconds (rounded up, at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        headers::retry_after_secs(self.retry_after)
    }

    /// The header fields of the 429: `Retry-After`, `RateLimit-Policy`, `RateLimit`.
    pub fn headers(&self) -> HeaderPairs {
        let mut h = vec![("Retry-After", self.retry_after_secs().to_string())];
        h.extend(status_headers(&self.status));
        h
    }

    /// One sentence for the JSON-RPC error message and the in-band text.
    pub fn message(&self) -> String {
        let s = self.retry_after_secs();
        match self.reason {
            LimitReason::Rate => format!(
                "Rate limit \"{}\" reached; retry the same call after {s} s.",
                self.policy
            ),
            LimitReason::LoopBrake => format!(
                "The same call with the same arguments was repeated too often; \
                 retry after {s} s, or change the arguments."
            ),
            LimitReason::DailyBudget => {
                format!("The daily call budget is used up; it renews in {s} s (UTC midnight).")
            }
            LimitReason::Concurrency => format!(
                "Too many calls in flight at once; retry after {s} s, when one has finished."
            ),
            LimitReason::SpendBudget => format!(
                "This L402 token's daily spending cap is reached; it renews in {s} s (UTC midnight)."
            ),
        }
    }

    /// The refusal of a spend [`Limiter::spend_msat`] did not accept: reason
    /// [`LimitReason::SpendBudget`], policy `msat_daily`, retry at the next UTC midnight. No
    /// `RateLimit` fields (their units are calls, not millisatoshis).
    pub fn spend_budget(o: &SpendOutcome) -> Limited {
        Limited {
            reason: LimitReason::SpendBudget,
            policy: Cow::Borrowed("msat_daily"),
            retry_after: o.reset,
            status: Vec::new(),
            effort_multiplier: 1,
        }
    }

    /// `error.data` of the JSON-RPC error (and `structuredContent.turnpike` of the in-band
    /// result): `{"retry_after": s, "reason": …, "policy": …, "limits": [...]}`.
    pub fn error_data(&self) -> serde_json::Value {
        json!({
            "retry_after": self.retry_after_secs(),
            "reason": self.reason.as_str(),
            "policy": self.policy,
            "limits": self.status,
        })
    }
}

const MAX_NAME: usize = 64;

fn policy_name(prefix: &str, name: &str) -> Cow<'static, str> {
    let mut s = String::with_capacity(prefix.len() + name.len().min(MAX_NAME));
    s.push_str(prefix);
    s.extend(name.chars().take(MAX_NAME));
    Cow::Owned(s)
}

fn rate_status(policy: Cow<'static, str>, q: &Quota, d: &RateDecision) -> PolicyStatus {
    PolicyStatus {
        policy,
        quota: u64::from(q.burst),
        window: Some(q.window_secs()),
        unit: QuotaUnit::Requests,
        remaining: u64::from(d.remaining),
        reset: Some(d.effective_window_secs()),
    }
}

/// The limits engine the gateway calls once per call.
pub struct Limiter {
    cfg: LimitsConfig,
    budgets: BudgetsConfig,
    brake: Option<LoopBrake>,
    backend: Arc<dyn LimitBackend>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("backend", &self.backend.name())
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl Limiter {
    /// A limiter with `cfg` and `budgets` over `backend`. Validate the config first
    /// ([`LimitsConfig::validate`]); out-of-range values are clamped here.
    pub fn new(
        cfg: LimitsConfig,
        budgets: BudgetsConfig,
        backend: Arc<dyn LimitBackend>,
    ) -> Limiter {
        let brake = cfg.loop_brake.brake();
        Limiter {
            cfg,
            budgets,
            brake,
            backend,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn LimitBackend> {
        &self.backend
    }

    /// The failure mode in force.
    pub fn failure_mode(&self) -> FailureMode {
        self.cfg.failure_mode
    }

    /// Whether the limits only count what they would refuse (`mode = "shadow"`).
    pub fn shadow(&self) -> bool {
        self.cfg.mode == crate::config::LimitMode::Shadow
    }

    /// The key limits are counted under for `identity`: its scope key, without the OAuth client
    /// id when `limits.oauth_per = "subject"`.
    pub fn scope_of(&self, identity: &Identity) -> String {
        match (identity, self.cfg.oauth_per) {
            (
                Identity::OAuth {
                    issuer, subject, ..
                },
                OAuthKey::Subject,
            ) => Identity::OAuth {
                issuer: issuer.clone(),
                subject: subject.clone(),
                client_id: None,
            }
            .scope_key(),
            // The key of most calls, built without the formatting machinery (the same string
            // as `Identity::scope_key`).
            (Identity::Anonymous { addr_prefix }, _) => ["anon:", addr_prefix.as_str()].concat(),
            _ => identity.scope_key(),
        }
    }

    /// Whether `[limits.tools.<tool>]` gives `tool` a class of its own.
    pub fn has_tool_class(&self, tool: &str) -> bool {
        self.cfg.tools.contains_key(tool)
    }

    /// The quota for a tool call of `tool` let through by `rail`.
    pub fn tool_quota(&self, tool: &str, rail: Option<RailId>) -> Quota {
        self.tool_quota_in(tool, rail, None)
    }

    /// The quota for a tool call of `tool` let through by `rail`, for a caller whose class
    /// gives it `bucket` (which replaces `[limits.rails.<rail>]` and `[limits.default]`; a
    /// tool's own table still wins).
    pub fn tool_quota_in(
        &self,
        tool: &str,
        rail: Option<RailId>,
        bucket: Option<&IdentityQuotaConfig>,
    ) -> Quota {
        match self.cfg.tools.get(tool) {
            Some(q) => q.quota(),
            None => self.tool_quota_default(rail, bucket),
        }
    }

    fn method_quota(
        &self,
        method: &str,
        rail: Option<RailId>,
        bucket: Option<&IdentityQuotaConfig>,
    ) -> Quota {
        match self.cfg.methods.get(method) {
            Some(q) => q.quota(),
            None => self.tool_quota_default(rail, bucket),
        }
    }

    fn tool_quota_default(
        &self,
        rail: Option<RailId>,
        bucket: Option<&IdentityQuotaConfig>,
    ) -> Quota {
        let d = bucket.unwrap_or_else(|| {
            self.cfg
                .rails
                .get(&RailClass::from(rail))
                .unwrap_or(&self.cfg.default)
        });
        Quota {
            burst: d.burst.max(1),
            rate: d.rate,
        }
    }

    fn concurrency(
        &self,
        rail: Option<RailId>,
        bucket: Option<&IdentityQuotaConfig>,
    ) -> Option<u32> {
        bucket
            .and_then(|b| b.concurrency)
            .or_else(|| {
                self.cfg
                    .rails
                    .get(&RailClass::from(rail))
                    .and_then(|r| r.concurrency)
            })
            .or(self.cfg.default.concurrency)
            .map(|c| c.max(1))
    }

    /// The loop brake's part of a check of `name`, when the brake is on and watches this call
    /// (by default only calls a paying rail let through: [`LoopBrakeConfig::watches`]).
    ///
    /// [`LoopBrakeConfig::watches`]: crate::config::LoopBrakeConfig::watches
    fn loop_check<'c>(&self, name: &'c str, call: &CallInfo<'c>) -> Option<LoopCheck<'c>> {
        let brake = self.brake?;
        let args_hash = call.args_hash?;
        self.cfg
            .loop_brake
            .watches(name, call.rail)
            .then_some(LoopCheck {
                tool: name,
                args_hash: *args_hash,
                brake,
            })
    }

    /// Whether the loop brake watches a call of `name` let through by `rail`.
    pub fn loop_brake_watches(&self, name: &str, rail: Option<RailId>) -> bool {
        self.brake.is_some() && self.cfg.loop_brake.watches(name, rail)
    }

    fn allowed_unlimited(&self, degraded: bool) -> Admission {
        Admission::Allowed(Admitted {
            status: Vec::new(),
            in_flight: None,
            effort_multiplier: 1,
            degraded,
        })
    }

    /// Checks and counts every limit on one call, in one backend round trip.
    pub async fn admit(&self, call: &CallInfo<'_>) -> Admission {
        self.admit_then_spend(call, None).await.0
    }

    /// [`Limiter::admit`], and then, when the call is allowed, `spend` in the same round trip
    /// if the backend can run it with the check ([`LimitBackend::check_and_spend`]). The
    /// second answer is the spend's: `None` when it was not run here (not allowed, limits off,
    /// or the backend cannot); an error when the round trip failed (the spend did not happen,
    /// whatever the failure mode says for the limits).
    pub async fn admit_then_spend(
        &self,
        call: &CallInfo<'_>,
        spend: Option<&RedisSpend>,
    ) -> (Admission, Option<Result<SpendCode, LimitError>>) {
        self.admit_then_spend_in(call, spend, None).await
    }

    /// [`Limiter::admit`] for a caller whose price/limit class gives it `bucket`: the tool
    /// and method quotas and the in-flight cap come from it instead of `[limits.rails.*]` and
    /// `[limits.default]` (a tool's or method's own table still wins; discovery keeps its
    /// budget).
    pub async fn admit_in(
        &self,
        call: &CallInfo<'_>,
        bucket: Option<&IdentityQuotaConfig>,
    ) -> Admission {
        self.admit_then_spend_in(call, None, bucket).await.0
    }

    /// [`Limiter::admit_then_spend`] within `bucket` ([`Limiter::admit_in`]).
    pub async fn admit_then_spend_in(
        &self,
        call: &CallInfo<'_>,
        spend: Option<&RedisSpend>,
        bucket: Option<&IdentityQuotaConfig>,
    ) -> (Admission, Option<Result<SpendCode, LimitError>>) {
        if !self.cfg.enabled {
            return (self.allowed_unlimited(false), None);
        }
        let (primary, primary_name, loop_brake, daily_cap, concurrency) = match call.kind {
            CallKind::Discovery => (
                RateCheck {
                    class: Class::Discovery,
                    quota: self.cfg.discovery.quota(),
                },
                Cow::Borrowed("discovery"),
                None,
                None,
                None,
            ),
            CallKind::Tool(tool) => (
                RateCheck {
                    class: Class::Tool(tool),
                    quota: self.tool_quota_in(tool, call.rail, bucket),
                },
                policy_name("tool:", tool),
                self.loop_check(tool, call),
                self.budgets.calls_per_day,
                self.concurrency(call.rail, bucket),
            ),
            CallKind::Method(m) => (
                RateCheck {
                    class: Class::Method(m),
                    quota: self.method_quota(m, call.rail, bucket),
                },
                policy_name("method:", m),
                self.loop_check(m, call),
                self.budgets.calls_per_day,
                self.concurrency(call.rail, bucket),
            ),
        };
        let mut list = [primary; 2];
        let mut n = 1;
        if let (CallKind::Tool(_), Some(all)) = (call.kind, &self.cfg.all_tools) {
            list[1] = RateCheck {
                class: Class::AllTools,
                quota: all.quota(),
            };
            n = 2;
        }
        let used_names = [primary_name, Cow::Borrowed("tools")];
        let check = Check {
            scope: call.scope,
            rates: &list[..n],
            loop_brake,
            daily_cap,
            concurrency: concurrency.map(|max| ConcurrencyCheck {
                max,
                lease: Duration::from_secs(self.cfg.lease_secs.max(1)),
            }),
        };
        let fused = spend.and_then(|sp| self.backend.check_and_spend(&check, sp));
        let (out, spent) = match fused {
            Some(f) => match f.await {
                Ok((out, code)) => (Ok(out), code.map(Ok)),
                Err(e) => (Err(e.clone()), Some(Err(e))),
            },
            None => (self.backend.check(&check).await, None),
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let admission = match self.cfg.failure_mode {
                    FailureMode::Open => self.allowed_unlimited(true),
                    FailureMode::Closed => Admission::Unavailable(e),
                };
                return (admission, spent);
            }
        };
        (self.admission(&check, &used_names[..n], out), spent)
    }

    fn admission(
        &self,
        check: &Check<'_>,
        names: &[Cow<'static, str>],
        mut out: CheckOutcome,
    ) -> Admission {
        let mut status = Vec::with_capacity(4);
        for ((rc, d), name) in check.rates.iter().zip(&out.rates).zip(names) {
            status.push(rate_status(name.clone(), &rc.quota, d));
        }
        if let (Some(l), Some(d)) = (&check.loop_brake, &out.loop_brake) {
            if !d.allowed {
                status.push(rate_status("repeat".into(), &l.brake.quota(), d));
            }
        }
        if let Some(d) = &out.daily {
            status.push(PolicyStatus {
                policy: "daily".into(),
                quota: d.cap,
                window: Some(86_400),
                unit: QuotaUnit::Requests,
                remaining: d.cap.saturating_sub(d.used),
                reset: Some(ceil_secs(d.reset)),
            });
        }
        if let Some(c) = &out.concurrency {
            status.push(PolicyStatus {
                policy: "concurrency".into(),
                quota: u64::from(c.max),
                window: None,
                unit: QuotaUnit::ConcurrentRequests,
                remaining: u64::from(c.max.saturating_sub(c.in_flight)),
                reset: None,
            });
        }
        if out.allowed {
            let in_flight = out
                .lease
                .take()
                .map(|l| InFlight::new(self.backend.clone(), l));
            return Admission::Allowed(Admitted {
                status,
                in_flight,
                effort_multiplier: out.effort_multiplier,
                degraded: false,
            });
        }
        let (reason, policy) = match out.denied_by {
            Some(Denial::Rate(i)) => (
                LimitReason::Rate,
                names.get(i).cloned().unwrap_or(Cow::Borrowed("rate")),
            ),
            Some(Denial::LoopBrake) => (LimitReason::LoopBrake, Cow::Borrowed("repeat")),
            Some(Denial::Daily) => (LimitReason::DailyBudget, Cow::Borrowed("daily")),
            Some(Denial::Concurrency) | None => {
                (LimitReason::Concurrency, Cow::Borrowed("concurrency"))
            }
        };
        Admission::Limited(Limited {
            reason,
            policy,
            retry_after: out.retry_after,
            status,
            effort_multiplier: out.effort_multiplier,
        })
    }

    /// Counts one challenge issued to the identity `scope` against its challenge budget
    /// (`limits.challenges`; class [`Class::Challenge`], policy `challenge`), before the
    /// challenge is minted. When allowed, [`Admitted::effort_multiplier`] is the identity's
    /// loop-brake multiplier to scale the proof-of-work offer by (a second read only when the
    /// brake is on). No in-flight slot, no daily budget: a challenge forwards nothing.
    pub async fn admit_challenge(&self, scope: &str) -> Admission {
        if !self.cfg.enabled {
            return self.allowed_unlimited(false);
        }
        let rates = [RateCheck {
            class: Class::Challenge,
            quota: self.cfg.challenges.quota(),
        }];
        let check = Check {
            scope,
            rates: &rates,
            loop_brake: None,
            daily_cap: None,
            concurrency: None,
        };
        let out = match self.backend.check(&check).await {
            Ok(o) => o,
            Err(e) => {
                return match self.cfg.failure_mode {
                    FailureMode::Open => self.allowed_unlimited(true),
                    FailureMode::Closed => Admission::Unavailable(e),
                };
            }
        };
        match self.admission(&check, &[Cow::Borrowed("challenge")], out) {
            Admission::Allowed(mut a) => {
                a.effort_multiplier = self.effort_multiplier(scope).await;
                Admission::Allowed(a)
            }
            other => other,
        }
    }

    /// The effort multiplier for the identity `scope`, for the proof-of-work rail to scale its
    /// offer by. 1 when the brake is off, the identity has no strikes, or the backend is down.
    pub async fn effort_multiplier(&self, scope: &str) -> u32 {
        match &self.brake {
            Some(b) => self.backend.effort_multiplier(scope, b).await.unwrap_or(1),
            None => 1,
        }
    }

    /// Counts `msat` against the daily cap of `account` (an L402 token; keyed by its
    /// [`Identity::scope_key`], `l402:<token id>`). Accepted without a backend call when no cap
    /// is configured. Errors are the caller's to fail closed on: payments never fail open.
    pub async fn spend_msat(
        &self,
        account: &Identity,
        msat: u64,
    ) -> Result<SpendOutcome, LimitError> {
        match self.budgets.msat_per_token_per_day {
            Some(cap) => {
                let key = account.scope_key();
                self.backend.spend(&key, msat, cap).await
            }
            None => Ok(SpendOutcome {
                accepted: true,
                spent: 0,
                cap: u64::MAX,
                reset: Duration::ZERO,
                receipt: None,
            }),
        }
    }

    /// Takes back a spend whose call failed upstream.
    pub async fn refund_msat(&self, receipt: &SpendReceipt) -> Result<(), LimitError> {
        self.backend.refund(receipt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Limiter>();
        let lim = Limiter::new(
            LimitsConfig::default(),
            BudgetsConfig::default(),
            Arc::new(MemoryBackend::new()),
        );
        let call = CallInfo {
            scope: "anon:1.2.3.4",
            rail: None,
            kind: CallKind::Discovery,
            args_hash: None,
        };
        send(&lim.admit(&call));
        send(&lim.effort_multiplier("anon:1.2.3.4"));
        send(&lim.spend_msat(
            &Identity::L402 {
                token_id: "ab".into(),
            },
            1,
        ));
    }

    #[tokio::test]
    async fn challenges_have_their_own_budget_per_identity() {
        let cfg: LimitsConfig = toml::from_str(
            r#"
            [challenges]
            burst = 3
            rate = "1/min"
            "#,
        )
        .unwrap();
        let lim = Limiter::new(
            cfg,
            BudgetsConfig::default(),
            Arc::new(MemoryBackend::new()),
        );
        for _ in 0..3 {
            assert!(matches!(
                lim.admit_challenge("anon:127.0.0.2").await,
                Admission::Allowed(_)
            ));
        }
        match lim.admit_challenge("anon:127.0.0.2").await {
            Admission::Limited(l) => {
                assert_eq!(l.reason, LimitReason::Rate);
                assert_eq!(l.policy, "challenge");
                assert!(l.retry_after_secs() >= 1);
            }
            other => panic!("{other:?}"),
        }
        // Another address, and the paid call itself, are untouched.
        assert!(matches!(
            lim.admit_challenge("anon:127.0.0.3").await,
            Admission::Allowed(_)
        ));
        let call = CallInfo {
            scope: "anon:127.0.0.2",
            rail: Some(RailId::new("pow")),
            kind: CallKind::Tool("echo"),
            args_hash: None,
        };
        assert!(matches!(lim.admit(&call).await, Admission::Allowed(_)));
        // The defaults apply without a [limits] section.
        assert_eq!(LimitsConfig::default().challenges.burst, 60);
    }

    async fn admit_n(lim: &Limiter, call: &CallInfo<'_>, n: usize) -> Vec<Option<LimitReason>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match lim.admit(call).await {
                Admission::Allowed(_) => None,
                Admission::Limited(l) => Some(l.reason),
                Admission::Unavailable(e) => panic!("{e}"),
            });
        }
        out
    }

    #[tokio::test]
    async fn the_default_brake_watches_paid_calls_only() {
        let lim = Limiter::new(
            LimitsConfig::default(),
            BudgetsConfig::default(),
            Arc::new(MemoryBackend::new()),
        );
        let none = [0u8; 32];
        // A free, argument-less polling tool, 30 times at once from one address: never braked
        // (the tool's own rate, burst 50, is what bounds it).
        let poll = CallInfo {
            scope: "anon:127.0.0.9",
            rail: None,
            kind: CallKind::Tool("status"),
            args_hash: Some(&none),
        };
        assert!(admit_n(&lim, &poll, 30).await.iter().all(Option::is_none));
        // So is a free resources/read of one resource.
        let read = CallInfo {
            kind: CallKind::Method("resources/read"),
            ..poll
        };
        assert!(admit_n(&lim, &read, 30).await.iter().all(Option::is_none));
        // A call paid by puzzle or by payment that repeats its arguments is braked after 10.
        for rail in [RailId::new("pow"), RailId::new("l402")] {
            let paid = CallInfo {
                rail: Some(rail),
                kind: CallKind::Tool("search"),
                scope: if rail == RailId::new("pow") {
                    "anon:127.0.0.9"
                } else {
                    "l402:ab"
                },
                ..poll
            };
            let got = admit_n(&lim, &paid, 11).await;
            assert!(got[..10].iter().all(Option::is_none), "{rail:?}: {got:?}");
            assert_eq!(got[10], Some(LimitReason::LoopBrake), "{rail:?}");
        }
        // OAuth calls are not watched by default.
        let oauth = CallInfo {
            rail: Some(RailId::new("oauth")),
            scope: "oauth:https://as:alice:agent",
            ..poll
        };
        assert!(admit_n(&lim, &oauth, 30).await.iter().all(Option::is_none));
        assert!(!lim.loop_brake_watches("status", None));
        assert!(lim.loop_brake_watches("status", Some(RailId::new("l402"))));
    }

    #[tokio::test]
    async fn brake_tools_opt_in_and_out() {
        let cfg: LimitsConfig = toml::from_str(
            r#"
            [loop_brake]
            tools = ["echo"]
            exempt_tools = ["job_status"]
            max_repeats = 3
            "#,
        )
        .unwrap();
        assert!(cfg
            .validate(&BudgetsConfig::default(), &Default::default())
            .is_empty());
        let lim = Limiter::new(
            cfg,
            BudgetsConfig::default(),
            Arc::new(MemoryBackend::new()),
        );
        let h = [1u8; 32];
        // Opted in: braked although free.
        let echo = CallInfo {
            scope: "anon:127.0.0.9",
            rail: None,
            kind: CallKind::Tool("echo"),
            args_hash: Some(&h),
        };
        let got = admit_n(&lim, &echo, 4).await;
        assert_eq!(got, [None, None, None, Some(LimitReason::LoopBrake)]);
        // Opted out: a priced tool meant to be polled.
        let status = CallInfo {
            rail: Some(RailId::new("pow")),
            kind: CallKind::Tool("job_status"),
            ..echo
        };
        assert!(admit_n(&lim, &status, 20).await.iter().all(Option::is_none));
        // Both lists name one tool: a problem at its path.
        let cfg: LimitsConfig =
            toml::from_str("[loop_brake]\ntools = [\"a\"]\nexempt_tools = [\"a\"]\n").unwrap();
        let p = cfg.validate(&BudgetsConfig::default(), &Default::default());
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "limits.loop_brake.exempt_tools");
        // The rails are named as elsewhere.
        let cfg: LimitsConfig =
            toml::from_str("[loop_brake]\nrails = [\"pow\", \"l402\", \"oauth\", \"free\"]\n")
                .unwrap();
        assert!(cfg.loop_brake.watches("x", None));
        // Any name is read; one no rail has is reported against the rails the gateway knows.
        let cfg: LimitsConfig = toml::from_str("[loop_brake]\nrails = [\"card\"]\n").unwrap();
        let unknown = cfg.unknown_rails(&["pow", "l402", "oauth"]);
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert_eq!(unknown[0].problem.path, "limits.loop_brake.rails");
    }

    #[test]
    fn classify_methods() {
        assert_eq!(
            CallKind::classify("tools/call", Some("x")),
            CallKind::Tool("x")
        );
        assert_eq!(CallKind::classify("tools/call", None), CallKind::Tool(""));
        for m in [
            "initialize",
            "ping",
            "tools/list",
            "resources/templates/list",
            "notifications/initialized",
            "server/discover",
        ] {
            assert_eq!(CallKind::classify(m, None), CallKind::Discovery, "{m}");
        }
        assert_eq!(
            CallKind::classify("resources/read", Some("file:///a")),
            CallKind::Method("resources/read")
        );
    }

    #[test]
    fn oauth_scope_per_client_or_subject() {
        let id = Identity::OAuth {
            issuer: "https://as".into(),
            subject: "alice".into(),
            client_id: Some("agent-1".into()),
        };
        let other = Identity::OAuth {
            issuer: "https://as".into(),
            subject: "alice".into(),
            client_id: Some("agent-2".into()),
        };
        let b: Arc<dyn LimitBackend> = Arc::new(MemoryBackend::new());
        let per_client = Limiter::new(LimitsConfig::default(), BudgetsConfig::default(), b.clone());
        assert_ne!(per_client.scope_of(&id), per_client.scope_of(&other));
        assert_eq!(per_client.scope_of(&id), id.scope_key());
        let cfg = LimitsConfig {
            oauth_per: OAuthKey::Subject,
            ..LimitsConfig::default()
        };
        let per_subject = Limiter::new(cfg, BudgetsConfig::default(), b);
        assert_eq!(per_subject.scope_of(&id), per_subject.scope_of(&other));
        let anon = Identity::anonymous("2001:db8::1".parse().unwrap());
        assert_eq!(per_subject.scope_of(&anon), anon.scope_key());
        let anon = Identity::anonymous("10.0.0.7".parse().unwrap());
        assert_eq!(per_client.scope_of(&anon), anon.scope_key());
        assert_eq!(per_client.scope_of(&anon), "anon:10.0.0.7");
    }

    #[test]
    fn quotas_resolve_tool_then_rail_then_default() {
        let cfg: LimitsConfig = toml::from_str(
            r#"
            [default]
            burst = 50
            rate = "20/s"
            concurrency = 16
            [tools.search]
            burst = 5
            rate = "1/s"
            [rails.pow]
            burst = 10
            rate = "2/s"
            "#,
        )
        .unwrap();
        let lim = Limiter::new(
            cfg,
            BudgetsConfig::default(),
            Arc::new(MemoryBackend::new()),
        );
        assert_eq!(lim.tool_quota("search", Some(RailId::new("pow"))).burst, 5);
        assert_eq!(lim.tool_quota("echo", Some(RailId::new("pow"))).burst, 10);
        assert_eq!(lim.tool_quota("echo", Some(RailId::new("oauth"))).burst, 50);
        assert_eq!(lim.tool_quota("echo", None).burst, 50);
        assert_eq!(
            lim.concurrency(Some(RailId::new("pow")), None),
            Some(16),
            "rails inherit the cap"
        );
        // A class's bucket replaces the rail's and the default (a tool's own table still
        // wins); its cap, when it gives one.
        let bucket: IdentityQuotaConfig =
            toml::from_str("burst = 200\nrate = \"10/s\"\nconcurrency = 64\n").unwrap();
        let pow = Some(RailId::new("pow"));
        assert_eq!(lim.tool_quota_in("echo", pow, Some(&bucket)).burst, 200);
        assert_eq!(lim.tool_quota_in("echo", None, Some(&bucket)).burst, 200);
        assert_eq!(lim.tool_quota_in("search", pow, Some(&bucket)).burst, 5);
        assert_eq!(lim.concurrency(pow, Some(&bucket)), Some(64));
        let no_cap: IdentityQuotaConfig = toml::from_str("burst = 200\nrate = \"10/s\"\n").unwrap();
        assert_eq!(lim.concurrency(pow, Some(&no_cap)), Some(16));
    }
}
