//! Rate limits in the pipeline: building the [`Limiter`] from the configuration, the answer to
//! a limited call, and the response body that holds an in-flight slot until it has been sent.
//!
//! The engine and its model are `turnpike_limits` (docs/LIMITS.md); this module only turns its
//! [`Admission`](turnpike_limits::Admission) into HTTP.

use std::pin::Pin;

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};
use serde_json::{json, Value};
use turnpike_core::{error_codes, Grant, Rail};
use turnpike_limits::{InFlight, LimitError, Limited, Limiter, SpendReceipt};

use crate::config::{ChallengeMode, Config};

use crate::respond::json_response;
use crate::GatewayError;
/// The limits crate's config vocabulary, for callers of the gateway (e.g. `turnpike check`).
pub use turnpike_limits::{DurableBackend, FailureMode, Rate, StoreBackend};

/// The limiter `[limits]`, `[budgets]` and `[store]` ask for; `None` when `limits.enabled` is
/// false. Call inside a Tokio runtime (a Redis backend is created there, without waiting for
/// the server).
pub fn limiter_from_config(cfg: &Config) -> Result<Option<Arc<Limiter>>, GatewayError> {
    if !cfg.limits.enabled {
        return Ok(None);
    }
    let backend = turnpike_limits::backend_from_config(&cfg.store)
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    Ok(Some(Arc::new(Limiter::new(
        cfg.limits.clone(),
        cfg.budgets,
        backend,
    ))))
}

/// Why a balance debit was not counted against its identity's daily msat budget.
#[derive(Debug)]
pub enum SpendRefusal {
    /// Over `budgets.msat_per_token_per_day`: answer 429 (reason `spend_budget`).
    Budget(Limited),
    /// The limits store could not count it: payments fail closed, answer 503.
    Unavailable(LimitError),
}

/// Counts the millisatoshis `grant` debited from a prepaid balance (as its `rail` says:
/// [`Rail::debited_msat`]) against the daily cap of its identity
/// (`budgets.msat_per_token_per_day`), atomically. `Ok(None)` when nothing needed counting
/// (not a balance debit, or no cap: no store round trip); `Ok(Some(receipt))` when it was
/// counted (give it back with [`Limiter::refund_msat`] if the upstream fails). On `Err` the
/// caller refunds the debit and refuses the call — whatever `failure_mode` says.
pub async fn spend_msat(
    limiter: &Limiter,
    rail: &dyn Rail,
    grant: &Grant,
) -> Result<Option<SpendReceipt>, SpendRefusal> {
    let Some(msat) = rail.debited_msat(grant) else {
        return Ok(None);
    };
    let Some(account) = &grant.identity else {
        return Ok(None);
    };
    match limiter.spend_msat(account, msat).await {
        Ok(o) if o.accepted => Ok(o.receipt),
        Ok(o) => Err(SpendRefusal::Budget(Limited::spend_budget(&o))),
        Err(e) => Err(SpendRefusal::Unavailable(e)),
    }
}

pub use turnpike_operator::metrics::LimitCounters;

/// Adds `pairs` (e.g. `RateLimit-Policy`, `RateLimit`) to `resp`, replacing any the upstream
/// set.
pub fn add_headers(resp: &mut Response<Body>, pairs: Vec<(&'static str, String)>) {
    for (name, value) in pairs {
        // The string becomes the value's bytes (checked, not copied).
        if let Ok(v) = HeaderValue::try_from(value) {
            resp.headers_mut().insert(lower(name).clone(), v);
        }
    }
}

// The names parsed once (every answer a limit saw carries two of them).
static RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static UNKNOWN: HeaderName = HeaderName::from_static("x-turnpike-unknown");

fn lower(name: &'static str) -> &'static HeaderName {
    match name {
        "Retry-After" => &RETRY_AFTER,
        "RateLimit-Policy" => &RATELIMIT_POLICY,
        "RateLimit" => &RATELIMIT,
        _ => &UNKNOWN,
    }
}

/// The answer to a call a limit refused. HTTP mode (and every method but `tools/call`): 429
/// with `Retry-After`, `RateLimit-Policy`, `RateLimit` and the JSON-RPC error -31429 whose
/// `data` is [`Limited::error_data`]. In band, for `tools/call`: HTTP 200 with an `isError`
/// tool result saying when to retry, `structuredContent.turnpike.rate_limit` = the same data,
/// and the same header fields.
pub fn limited_response(
    mode: ChallengeMode,
    method: &str,
    id: Option<&Value>,
    l: &Limited,
) -> Response<Body> {
    let data = l.error_data();
    let id = id.cloned().unwrap_or(Value::Null);
    let mut resp = if mode == ChallengeMode::InBand && method == "tools/call" {
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": {
                "isError": true,
                "content": [{"type": "text", "text": l.message()}],
                "structuredContent": {"turnpike": {"rate_limit": data}},
            }
        });
        json_response(StatusCode::OK, &body)
    } else {
        let mut body =
            turnpike_mcp::error_response(Some(&id), error_codes::RATE_LIMITED, &l.message());
        body["error"]["data"] = data;
        json_response(StatusCode::TOO_MANY_REQUESTS, &body)
    };
    add_headers(&mut resp, l.headers());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A response body that keeps an in-flight slot until the body has been sent to the end (or
/// dropped: the client went away).
pub struct GuardedBody {
    inner: Body,
    guard: Option<InFlight>,
}

impl GuardedBody {
    /// `inner`, holding `guard` while it lasts.
    pub fn wrap(inner: Body, guard: InFlight) -> Body {
        Body::new(GuardedBody {
            inner,
            guard: Some(guard),
        })
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            // The body is done: give the slot back now rather than when the connection drops
            // the body.
            this.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
