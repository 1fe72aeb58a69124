//! The admin listener: `/metrics`, the JSON admin API and the dashboard.
//!
//! Served on `[admin] listen` (default `127.0.0.1:8403`), apart from the MCP endpoint, and only
//! when the configuration has an `[admin]` table with a token. Every `/admin/api/…` request
//! needs `Authorization: Bearer <admin token>`, compared in constant time; `/metrics` too unless
//! `metrics_public = true` (the default). The dashboard's page, script and style sheet are
//! public (they hold no data); the page asks for the token and keeps it in the tab's
//! `sessionStorage` (or takes it from the URL fragment, `#token=…`, which browsers never send).
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /admin/` | the dashboard (HTML; its script and style under `/admin/assets/`) |
//! | `GET /admin/api/summary` | figures: totals (every request, and tool calls alone), each rail's own (L402 invoices, payments and charges), rails, effort, top tools and callers, history, recent ledger rows |
//! | `GET /admin/api/ledger?format=csv\|jsonl&after=<id>&limit=<n>` | the ledger, oldest first |
//! | `POST /admin/api/tokens/<token id hex>/revoke` | revokes an L402 token |
//! | `POST /admin/api/balances/<token id hex>/adjust` `{"delta_msat": n, "note": "…"}` | changes a balance's credit, with a ledger row |
//! | `POST /admin/api/reload` | reloads the configuration (as SIGHUP does) |
//!
//! docs/OPERATIONS.md is the reference.

use std::convert::Infallible;
use std::sync::Arc;
use turnpike_core::unix_now;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use turnpike_l402::store::{L402Store, LedgerEntry, LedgerKind};

use turnpike_http::conns::{ConnRules, Tracker};
use turnpike_http::hosts::HostPolicy;

use crate::metrics::{OutcomeClass, SAMPLE_EVERY};
use crate::Operated;

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");

/// Largest admin request body.
const MAX_BODY: usize = 16 * 1024;
/// Most ledger rows in one export answer.
const MAX_EXPORT: usize = 100_000;

/// The admin listener's state.
pub struct Admin {
    op: Arc<dyn Operated>,
    token_digest: [u8; 32],
    metrics_public: bool,
    hosts: HostPolicy,
}

/// The admin listener's settings (the gateway's `[admin]`).
#[derive(Debug, Clone, Copy)]
pub struct AdminSettings<'a> {
    /// The admin token (at least 16 characters; the gateway's configuration checks it).
    pub token: &'a str,
    /// Whether `/metrics` answers without the token.
    pub metrics_public: bool,
    /// Host header values accepted (port ignored; `"*"`: any).
    pub allowed_hosts: &'a [String],
    /// Origins accepted besides `http(s)://<allowed host>[:port]`.
    pub allowed_origins: &'a [String],
}

impl Admin {
    /// The admin service for the gateway behind `op`, with `settings`.
    pub fn new(op: Arc<dyn Operated>, settings: AdminSettings<'_>) -> Arc<Admin> {
        Arc::new(Admin {
            op,
            token_digest: Sha256::digest(settings.token.as_bytes()).into(),
            metrics_public: settings.metrics_public,
            hosts: HostPolicy::new(settings.allowed_hosts, settings.allowed_origins),
        })
    }

    /// Serves on `listener` under `rules` (connection caps and timers, [`turnpike_http::conns`]) until
    /// the task is dropped; `cancel` shuts its connections down.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        rules: Arc<ConnRules>,
        cancel: CancellationToken,
    ) {
        let tracker = Tracker::new(rules.max_connections, rules.max_per_address);
        turnpike_http::conns::accept_loop(
            listener,
            tracker,
            rules,
            cancel,
            "admin",
            move |_peer| {
                let this = self.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req.map(Body::new)).await) }
                })
            },
        )
        .await;
    }

    /// Whether `headers` carry the admin token (`Authorization: Bearer …`), compared in
    /// constant time (over SHA-256 digests, so the length leaks nothing either).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .unwrap_or("");
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        turnpike_core::ct_eq(&d, &self.token_digest) && !presented.is_empty()
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        // DNS rebinding: a page of another site must not read /metrics through a name that
        // resolves to this machine.
        if let Err(refusal) = self.hosts.check(req.headers(), req.uri()) {
            return json_answer(refusal.status(), &json!({"error": refusal.message()}));
        }
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/") => redirect("/admin/"),
            (Method::GET, "/admin") => redirect("/admin/"),
            (Method::GET, "/admin/") => asset("text/html; charset=utf-8", DASHBOARD_HTML),
            (Method::GET, "/admin/assets/dashboard.js") => {
                asset("text/javascript; charset=utf-8", DASHBOARD_JS)
            }
            (Method::GET, "/admin/assets/dashboard.css") => {
                asset("text/css; charset=utf-8", DASHBOARD_CSS)
            }
            (Method::GET, "/metrics") => {
                if !self.metrics_public && !self.authorized(req.headers()) {
                    return unauthorized();
                }
                self.metrics_text().await
            }
            (_, p) if p.starts_with("/admin/api/") => {
                if !self.authorized(req.headers()) {
                    return unauthorized();
                }
                self.api(req).await
            }
            _ => json_answer(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
        }
    }

    async fn metrics_text(&self) -> Response<Body> {
        let up = self.op.health().await;
        let body = self.op.metrics().render(&up);
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    async fn api(&self, req: Request<Body>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let method = req.method().clone();
        let rest = path.trim_start_matches("/admin/api/");
        let segs: Vec<&str> = rest.split('/').collect();
        match (method, segs.as_slice()) {
            (Method::GET, ["summary"]) => json_answer(StatusCode::OK, &self.summary().await),
            (Method::GET, ["ledger"]) => self.ledger_export(&query).await,
            (Method::POST, ["tokens", id, "revoke"]) => self.revoke(id).await,
            (Method::POST, ["balances", id, "adjust"]) => {
                let id = id.to_string();
                match read_json(req).await {
                    Ok(v) => self.adjust(&id, &v).await,
                    Err(r) => r,
                }
            }
            (Method::POST, ["reload"]) => self.reload().await,
            _ => json_answer(
                StatusCode::NOT_FOUND,
                &json!({"error": "no such admin call"}),
            ),
        }
    }

    fn store(&self) -> Option<Arc<dyn L402Store>> {
        self.op.l402_store()
    }

    /// The dashboard's figures: the gateway's part ([`Operated::summary`]) with the totals,
    /// the busiest tools and callers, the history, the recent ledger and the dry runs beside
    /// what enforcing refused ([`crate::metrics::Metrics::dry_runs`]).
    pub async fn summary(&self) -> Value {
        let m = self.op.metrics();
        let (gw429, store_down, degraded, up429) = m.limit_counters().snapshot();
        let ledger = match self.store() {
            // Money that moved: payments, debits, refunds, adjustments (and revocations). The
            // rail writes no row when it offers an invoice; a database from an older version
            // may hold such rows, which are left out.
            Some(s) => match s.recent(25).await {
                Ok(rows) => json!(rows
                    .iter()
                    .filter(|e| e.kind != LedgerKind::Invoice)
                    .map(entry_json)
                    .collect::<Vec<_>>()),
                Err(e) => json!({"error": e.to_string()}),
            },
            None => Value::Null,
        };
        let mut out = self.op.summary();
        let figures = json!({
            "now": unix_now(),
            "totals": by_outcome(|o| m.outcome_total(o)),
            "tool_calls": by_outcome(|o| m.tool_calls_total(o)),
            "rail_labels": m.rail_labels(),
            "limits": {"gateway_429": gw429, "upstream_429": up429,
                       "store_unavailable": store_down, "fail_open": degraded},
            "top_tools": m.top_tools(10).into_iter()
                .map(|(t, n)| json!({"tool": t, "calls": n})).collect::<Vec<_>>(),
            "top_callers": m.top_callers(10),
            "history": m.history(),
            "sample_every_secs": SAMPLE_EVERY.as_secs(),
            "ledger": ledger,
            "dry_runs": m.dry_runs(),
        });
        if let Value::Object(f) = figures {
            out.extend(f);
        }
        // Each rail's own figures under its key (L402: invoices, payments, money charged).
        for (key, v) in m.rail_summaries() {
            out.insert(key.to_owned(), v);
        }
        Value::Object(out)
    }

    async fn ledger_export(&self, query: &str) -> Response<Body> {
        let Some(store) = self.store() else {
            return json_answer(
                StatusCode::NOT_FOUND,
                &json!({"error": "the L402 rail is not configured: no ledger"}),
            );
        };
        let mut format = "jsonl";
        let mut after = 0u64;
        let mut limit = MAX_EXPORT;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "format" if v == "csv" || v == "jsonl" => {
                    format = if v == "csv" { "csv" } else { "jsonl" }
                }
                "after" => match v.parse() {
                    Ok(n) => after = n,
                    Err(_) => return bad_request("after must be a row id"),
                },
                "limit" => match v.parse::<usize>() {
                    Ok(n) => limit = n.min(MAX_EXPORT),
                    Err(_) => return bad_request("limit must be a number"),
                },
                _ => return bad_request("the parameters are format=csv|jsonl, after and limit"),
            }
        }
        let rows = match store.page(after, limit).await {
            Ok(r) => r,
            Err(e) => return unavailable(&e.to_string()),
        };
        let mut out = String::new();
        if format == "csv" {
            out.push_str("id,at,token_id,kind,amount_msat,reference\n");
            for e in &rows {
                out.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    e.id,
                    e.at,
                    hex::encode(e.token_id),
                    e.kind.as_str(),
                    e.amount_msat,
                    csv_field(e.reference.as_deref().unwrap_or(""))
                ));
            }
        } else {
            for e in &rows {
                out.push_str(&entry_json(e).to_string());
                out.push('\n');
            }
        }
        let mut r = Response::new(Body::from(out));
        let ct = if format == "csv" {
            "text/csv; charset=utf-8"
        } else {
            "application/jsonl"
        };
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    async fn revoke(&self, id: &str) -> Response<Body> {
        let Some(token_id) = token_id(id) else {
            return bad_request("the token id is 64 hex digits");
        };
        let Some(store) = self.store() else {
            return json_answer(
                StatusCode::NOT_FOUND,
                &json!({"error": "the L402 rail is not configured"}),
            );
        };
        match store.revoke(token_id, unix_now()).await {
            Ok(true) => {
                tracing::info!(target: "turnpike::admin", token_id = %hex::encode(token_id), "token revoked");
                json_answer(StatusCode::OK, &json!({"revoked": true}))
            }
            Ok(false) => json_answer(StatusCode::NOT_FOUND, &json!({"error": "unknown token"})),
            Err(e) => unavailable(&e.to_string()),
        }
    }

    async fn adjust(&self, id: &str, body: &Value) -> Response<Body> {
        let Some(token_id) = token_id(id) else {
            return bad_request("the token id is 64 hex digits");
        };
        let Some(delta) = body.get("delta_msat").and_then(Value::as_i64) else {
            return bad_request("give {\"delta_msat\": <signed integer>, \"note\": \"…\"}");
        };
        if delta == 0 {
            return bad_request("delta_msat is 0");
        }
        let note = body
            .get("note")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Some(store) = self.store() else {
            return json_answer(
                StatusCode::NOT_FOUND,
                &json!({"error": "the L402 rail is not configured"}),
            );
        };
        match store.adjust(token_id, delta, note, unix_now()).await {
            Ok(Ok(Some((credit, spent)))) => {
                tracing::info!(target: "turnpike::admin", token_id = %hex::encode(token_id), delta_msat = delta, "balance adjusted");
                json_answer(
                    StatusCode::OK,
                    &json!({"credit_msat": credit, "spent_msat": spent,
                            "remaining_msat": credit.saturating_sub(spent)}),
                )
            }
            Ok(Ok(None)) => json_answer(
                StatusCode::NOT_FOUND,
                &json!({"error": "no balance for this token (not a paid balance token)"}),
            ),
            Ok(Err(why)) => json_answer(StatusCode::CONFLICT, &json!({"error": why})),
            Err(e) => unavailable(&e.to_string()),
        }
    }

    async fn reload(&self) -> Response<Body> {
        let op = self.op.clone();
        let r = tokio::task::spawn_blocking(move || op.reload("admin")).await;
        match r {
            Ok(None) => json_answer(
                StatusCode::CONFLICT,
                &json!({"error": "this server was started without a configuration file"}),
            ),
            Ok(Some(Ok(changed))) => json_answer(
                StatusCode::OK,
                &json!({"reloaded": true, "changed": changed}),
            ),
            Ok(Some(Err(e))) => json_answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"reloaded": false, "error": e}),
            ),
            Err(_) => unavailable("reload task failed"),
        }
    }
}

/// Counts by outcome class, keyed by label.
fn by_outcome(count: impl Fn(OutcomeClass) -> u64) -> Value {
    Value::Object(
        OutcomeClass::ALL
            .iter()
            .map(|o| (o.as_str().to_owned(), json!(count(*o))))
            .collect(),
    )
}

fn entry_json(e: &LedgerEntry) -> Value {
    json!({
        "id": e.id,
        "at": e.at,
        "token_id": hex::encode(e.token_id),
        "kind": e.kind.as_str(),
        "amount_msat": e.amount_msat,
        "reference": e.reference,
    })
}

fn csv_field(s: &str) -> String {
    // Always quoted; a leading `=` or `@` is neutralised so that a spreadsheet does not run it.
    let s = if s.starts_with(['=', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn token_id(hex_id: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_id).ok()?;
    v.try_into().ok()
}

async fn read_json(req: Request<Body>) -> Result<Value, Response<Body>> {
    let bytes: Bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Err(bad_request("the body is too large or could not be read")),
    };
    serde_json::from_slice(&bytes).map_err(|_| bad_request("the body is not JSON"))
}

fn json_answer(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bad_request(msg: &str) -> Response<Body> {
    json_answer(StatusCode::BAD_REQUEST, &json!({"error": msg}))
}

fn unavailable(msg: &str) -> Response<Body> {
    json_answer(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": msg}))
}

fn unauthorized() -> Response<Body> {
    let mut r = json_answer(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "the admin token is required (Authorization: Bearer …)"}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"turnpike-admin\""),
    );
    r
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=cmd()"), "\"'=cmd()\"");
        assert_eq!(csv_field("+5000 top-up"), "\"+5000 top-up\"");
    }

    #[test]
    fn token_ids_are_64_hex() {
        assert!(token_id(&"ab".repeat(32)).is_some());
        assert!(token_id("abc").is_none());
        assert!(token_id(&"zz".repeat(32)).is_none());
    }
}
