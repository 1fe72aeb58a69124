//! The client: sends a JSON-RPC message to a gated MCP endpoint and gets it through, answering
//! every challenge on the way (HTTP 402/401/403, or in band) within the user's policy and budgets.
//!
//! For each refused call it reads what the gate offers ([`Offers`]), picks a rail
//! ([`Policy`]), gets a credential and retries the same call with it:
//!
//! - **OAuth**: a token for the resource from the configured client (client credentials), reused
//!   until it expires; `invalid_token` fetches a new one; `insufficient_scope` asks for the union
//!   of the scopes (step-up).
//! - **Proof-of-work**: solved on every core when the local estimate (effort ÷ this machine's
//!   measured hash rate) is within the CPU-time cap; an absurd effort is refused, not attempted.
//! - **L402**: the invoice is decoded (signature checked) and its amount — never the challenge's
//!   text — is checked against the advertised price (a higher invoice is a lie and is refused),
//!   the rail policy's maximum and every budget, under the state directory's lock; then the wallet
//!   pays and the spend is logged. Balance and time-pass tokens are kept for later calls.
//! - **x402** (`exact` on an EVM chain): an offer in a token the user allowed, whose amount in
//!   dollars is within the per-call cap and the daily dollar budget (checked under the state
//!   directory's lock), is paid with an EIP-3009 authorization signed by the user's key, sent as
//!   `PAYMENT-SIGNATURE`; the spend log names the recipient.
//! - **MPP `evm`** (the `Payment` scheme's `evm` charge method): a challenge in a token the user
//!   allowed and whose EIP-712 domain the user gave (the challenge does not carry it), within
//!   the same dollar cap and budget, is paid with an EIP-3009 authorization as mppx signs it
//!   (nonce keccak256(challenge id ‖ realm), valid until the challenge expires), sent as
//!   `Authorization: Payment` (in `params._meta["org.paymentauth/credential"]` when the
//!   challenge came in band). One call signs at most one authorization, of either kind.
//!
//! A rail that cannot be used for a call — over a budget or the policy's `max_pay_sat`, a wallet
//! that fails, an invoice that lies, a puzzle over the CPU-time cap, an OAuth grant that fails —
//! does not end the call: the next rail offered is tried, and the call fails only when no rail
//! is left, with every rail's reason.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use turnpike_lightning::{decode_for_payment, Wallet, WalletError};

use crate::budget::{self, Budgets, SpendEntry};
use crate::oauth::{self, OAuthClientConfig};
use crate::offers::{is_in_band_challenge, L402Offer, Offers};
use crate::parse::ParsedChallenge;
use crate::store::{self, Credentials, StoredL402, StoredToken};
use crate::transport::Transport;
use crate::x402::{fmt_usd, usd_to_micro, X402Payer};
use crate::ClientError;
use turnpike_core::unix_now;

/// Largest JSON body read into memory (a challenge or a non-streamed answer).
const MAX_BODY: usize = 32 << 20;
/// Most challenge rounds for one call.
const MAX_ROUNDS: usize = 4;

/// Which rail to use first when several are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rail {
    /// Sign in (costs nothing).
    Oauth,
    /// Solve a puzzle (costs CPU time).
    Pow,
    /// Pay over Lightning: an L402 invoice, or MPP's Lightning charge where the gate offers no
    /// L402 (costs sats).
    L402,
    /// Pay over Lightning with MPP's Lightning charge only (costs sats).
    Mpp,
    /// Pay with x402 (costs US dollars in a stablecoin).
    X402,
    /// Pay with MPP's `evm` charge method (costs US dollars in a stablecoin).
    #[serde(rename = "mpp-evm")]
    MppEvm,
}

impl std::str::FromStr for Rail {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "oauth" => Ok(Rail::Oauth),
            "pow" => Ok(Rail::Pow),
            "l402" => Ok(Rail::L402),
            "mpp" => Ok(Rail::Mpp),
            "x402" => Ok(Rail::X402),
            "mpp-evm" => Ok(Rail::MppEvm),
            other => Err(format!(
                "rail {other:?}: expected oauth, pow, l402, mpp, x402 or mpp-evm"
            )),
        }
    }
}

/// How to choose among the rails a gate offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Solve a puzzle when it is expected to take at most this long here (seconds)…
    pub solve_under_secs: f64,
    /// … else pay, up to this many sats for one call …
    pub max_pay_sat: u64,
    /// … and if paying is not possible, solve anyway up to this CPU-time cap (seconds). A
    /// puzzle expected to take longer is refused (an absurd effort).
    pub pow_max_secs: f64,
    /// Routing-fee limit for one payment, sats (counted against budgets with the amount).
    pub max_fee_sat: u64,
    /// Try this rail first when it is offered and possible.
    pub prefer: Option<Rail>,
    /// The rails to use, in order of preference (none: every rail, in the default order).
    /// A rail left out is never used; proof-of-work takes its place in the list, up to the
    /// CPU-time cap.
    pub rails: Option<Vec<Rail>>,
    /// … and pay with x402 or MPP `evm` up to this many US dollars for one call.
    pub max_pay_usd: f64,
    /// Solver threads (0: one per core).
    pub threads: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            solve_under_secs: 2.0,
            max_pay_sat: 10,
            pow_max_secs: 30.0,
            max_fee_sat: 1,
            prefer: None,
            rails: None,
            max_pay_usd: 0.05,
            threads: 0,
        }
    }
}

/// Everything a [`Client`] needs.
#[derive(Clone)]
pub struct ClientConfig {
    /// Where credentials and the spend log live (created 0700).
    pub state_dir: PathBuf,
    /// Spending limits.
    pub budgets: Budgets,
    /// Rail choice.
    pub policy: Policy,
    /// The wallet that pays L402 invoices (none: L402 is never used).
    pub wallet: Option<Arc<dyn Wallet>>,
    /// The OAuth client (none: OAuth challenges cannot be answered).
    pub oauth: Option<OAuthClientConfig>,
    /// The x402 payer: its key and the assets it may pay with (none: x402 is never used).
    pub x402: Option<X402Payer>,
    /// Measured solver speed (hashes/s on all threads); measured on first use when `None`.
    pub hashrate: Option<f64>,
    /// The agent key every request is signed with (Web Bot Auth), and its key directory's URL
    /// (none: requests are not signed).
    pub agent: Option<AgentSigning>,
}

/// Signing every request as a verified agent: RFC 9421 with the Web Bot Auth profile, the
/// signature covering `@authority` and `Signature-Agent`, which names `directory`.
#[derive(Clone)]
pub struct AgentSigning {
    /// The Ed25519 key.
    pub signer: Arc<turnpike_webbotauth::Signer>,
    /// The URL of the key directory that publishes it (sent in `Signature-Agent`).
    pub directory: String,
    /// How long each signature is valid, in seconds.
    pub validity_secs: u64,
}

impl std::fmt::Debug for AgentSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSigning")
            .field("keyid", &self.signer.keyid())
            .field("directory", &self.directory)
            .finish()
    }
}

impl AgentSigning {
    /// Adds `Signature-Agent`, `Signature-Input` and `Signature` to `req` (replacing any).
    pub fn sign<B>(&self, req: &mut Request<B>, now: u64) -> Result<(), ClientError> {
        let bad = |e: String| ClientError::Http(format!("signing the request: {e}"));
        let agent = turnpike_webbotauth::Signer::signature_agent(&self.directory)
            .ok_or_else(|| bad("the directory URL is not visible ASCII".into()))?;
        let h = req.headers_mut();
        for name in ["signature", "signature-input"] {
            h.remove(name);
        }
        h.insert(
            "signature-agent",
            HeaderValue::from_str(&agent).map_err(|e| bad(e.to_string()))?,
        );
        let scheme = req.uri().scheme_str().unwrap_or("https").to_owned();
        let fields = self
            .signer
            .sign(
                &turnpike_webbotauth::RequestParts::from_request(req, &scheme),
                now,
                now + self.validity_secs,
            )
            .map_err(|e| bad(e.to_string()))?;
        let h = req.headers_mut();
        h.insert(
            "signature-input",
            HeaderValue::from_str(&fields.signature_input).map_err(|e| bad(e.to_string()))?,
        );
        h.insert(
            "signature",
            HeaderValue::from_str(&fields.signature).map_err(|e| bad(e.to_string()))?,
        );
        Ok(())
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("state_dir", &self.state_dir)
            .field("budgets", &self.budgets)
            .field("policy", &self.policy)
            .field("wallet", &self.wallet.as_ref().map(|w| w.name()))
            .field("oauth", &self.oauth)
            .field("x402", &self.x402)
            .field("agent", &self.agent)
            .finish()
    }
}

impl ClientConfig {
    /// Defaults: the default state directory, default budgets and policy, no wallet, no OAuth.
    pub fn new(state_dir: PathBuf) -> Self {
        ClientConfig {
            state_dir,
            budgets: Budgets::default(),
            policy: Policy::default(),
            wallet: None,
            oauth: None,
            x402: None,
            hashrate: None,
            agent: None,
        }
    }
}

/// What one call is, for pricing and logs.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    /// The endpoint URL.
    pub server: String,
    /// The JSON-RPC id (requests only).
    pub id: Option<Value>,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The tool / prompt / resource it names.
    pub name: Option<String>,
}

impl CallInfo {
    /// Reads a JSON-RPC message.
    pub fn of(server: &str, msg: &Value) -> Self {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        let params = msg.get("params");
        let name = match method.as_deref() {
            Some("tools/call") | Some("prompts/get") => params.and_then(|p| p.get("name")),
            Some("resources/read")
            | Some("resources/subscribe")
            | Some("resources/unsubscribe") => params.and_then(|p| p.get("uri")),
            _ => None,
        }
        .and_then(Value::as_str)
        .map(str::to_string);
        CallInfo {
            server: server.to_string(),
            id: msg.get("id").filter(|_| method.is_some()).cloned(),
            method,
            name,
        }
    }

    fn describe(&self) -> String {
        match (&self.method, &self.name) {
            (Some(m), Some(n)) => format!("{m} {n}"),
            (Some(m), None) => m.clone(),
            _ => "this call".into(),
        }
    }
}

/// The final answer to one message.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status of the last attempt.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// The JSON-RPC response to the call (from a JSON body or the SSE stream), when there was
    /// one.
    pub message: Option<Value>,
    /// The body when it was neither JSON nor SSE (e.g. an error page).
    pub other_body: Option<Bytes>,
    /// How many challenges were answered on the way.
    pub challenges_answered: usize,
}

/// Credentials presented on a retry, and what to do if they fail.
#[derive(Default)]
struct Attempt {
    /// `Authorization` values for the next try.
    auth: Vec<HeaderValue>,
    /// Other headers for the next try (`PAYMENT-SIGNATURE`).
    extra: Vec<(HeaderName, HeaderValue)>,
    /// Members of `params._meta` for the next try (an MPP credential answering a challenge
    /// that came in band).
    meta: Vec<(&'static str, Value)>,
    /// Whether the last challenge came in band (a JSON-RPC answer over HTTP 200).
    in_band: bool,
    /// Whether an EIP-3009 authorization (x402, or MPP `evm`) was signed for this call already
    /// (one call signs at most one: an authorization is a bearer instrument, and a server
    /// asking again gets no second one).
    x402_signed: bool,
    /// The stored L402 token presented, if any (dropped when the gate refuses it).
    stored_l402: Option<String>,
    /// Whether an OAuth token was presented.
    bearer: Option<String>,
    /// Rounds so far.
    rounds: usize,
    /// The scopes asked for so far (step-up).
    scopes: String,
}

/// The client. Cheap to share (`Arc`).
pub struct Client {
    transport: Transport,
    cfg: ClientConfig,
    hashrate: OnceLock<f64>,
    creds: Mutex<Credentials>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("cfg", &self.cfg).finish()
    }
}

impl Client {
    /// A client with this configuration; creates the state directory.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        store::ensure_dir(&cfg.state_dir)?;
        let mut creds = Credentials::load(&cfg.state_dir)?;
        creds.prune(unix_now());
        let hashrate = OnceLock::new();
        if let Some(h) = cfg.hashrate.filter(|h| *h > 0.0) {
            let _ = hashrate.set(h);
        }
        Ok(Client {
            transport: Transport::new()?,
            cfg,
            hashrate,
            creds: Mutex::new(creds),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The HTTP transport (for requests that need no challenge handling, e.g. the GET stream).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// This machine's solver speed, hashes/s over all threads (measured once, ~50 ms).
    pub fn hashrate(&self) -> f64 {
        *self
            .hashrate
            .get_or_init(|| measure_hashrate(self.cfg.policy.threads))
    }

    /// Sends one JSON-RPC message (POST) with `headers`, answering challenges, and returns the
    /// reply. Messages the server sends before the reply on an SSE stream (progress, requests
    /// to the client) are handed to `on_message` as they arrive.
    pub async fn post(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
        on_message: &(dyn Fn(Value) + Send + Sync),
    ) -> Result<Reply, ClientError> {
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let call = CallInfo::of(url, &msg);
        let mut at = Attempt::default();
        let mut answered = 0;
        loop {
            let mut auth = std::mem::take(&mut at.auth);
            let extra = std::mem::take(&mut at.extra);
            let meta = std::mem::take(&mut at.meta);
            let sent = if meta.is_empty() {
                body.clone()
            } else {
                with_meta(&body, &meta)
            };
            if at.rounds == 0 {
                auth.extend(self.stored_auth(&call, &mut at));
            } else if let Some(t) = &at.bearer {
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}")) {
                    auth.push(v);
                }
            }
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(url)
                .body(Full::new(sent))
                .map_err(|e| ClientError::Http(format!("request: {e}")))?;
            *req.headers_mut() = headers.clone();
            let h = req.headers_mut();
            h.entry(header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            h.entry(header::ACCEPT).or_insert(HeaderValue::from_static(
                "application/json, text/event-stream",
            ));
            for mut a in auth {
                a.set_sensitive(true);
                h.append(header::AUTHORIZATION, a);
            }
            for (k, mut v) in extra {
                v.set_sensitive(true);
                h.insert(k, v);
            }
            if let Some(agent) = &self.cfg.agent {
                agent.sign(&mut req, unix_now())?;
            }
            let resp = self.transport.send(req).await?;
            let status = resp.status();
            let (parts, incoming) = resp.into_parts();
            let is_sse = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
            let (message, other_body) = if is_sse && status.is_success() {
                (read_sse(incoming, &call, on_message).await?, None)
            } else {
                let bytes = Limited::new(incoming, MAX_BODY)
                    .collect()
                    .await
                    .map_err(|e| ClientError::Http(format!("reading the response: {e}")))?
                    .to_bytes();
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => (Some(v), None),
                    Err(_) if bytes.is_empty() => (None, None),
                    Err(_) => (None, Some(bytes)),
                }
            };
            let challenged = match status {
                StatusCode::PAYMENT_REQUIRED | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    true
                }
                s if s.is_success() => {
                    call.id.is_some() && message.as_ref().is_some_and(is_in_band_challenge)
                }
                _ => false,
            };
            let offers = if challenged {
                Offers::read(&parts.headers, message.as_ref())
            } else {
                Offers::default()
            };
            let insufficient = offers
                .oauth
                .as_ref()
                .is_some_and(|o| o.error.as_deref() == Some("insufficient_scope"));
            if !challenged
                || offers.is_empty()
                || (status == StatusCode::FORBIDDEN && !insufficient)
            {
                return Ok(Reply {
                    status,
                    headers: parts.headers,
                    message,
                    other_body,
                    challenges_answered: answered,
                });
            }
            if at.rounds >= MAX_ROUNDS {
                return Err(ClientError::Refused(format!(
                    "the server kept refusing {} after {} credentials{}",
                    call.describe(),
                    at.rounds,
                    refusal_suffix(&offers)
                )));
            }
            at.rounds += 1;
            at.in_band = status.is_success();
            self.answer(&call, &offers, &mut at).await?;
            answered += 1;
        }
    }

    /// Sends one JSON-RPC message and returns the JSON-RPC reply (a convenience over
    /// [`Client::post`] for library users: no session handling, extra messages dropped).
    pub async fn rpc(&self, url: &str, message: &Value) -> Result<Value, ClientError> {
        let body = Bytes::from(message.to_string());
        let r = self.post(url, &HeaderMap::new(), body, &|_| {}).await?;
        r.message.ok_or_else(|| {
            ClientError::Http(format!(
                "HTTP {} without a JSON-RPC answer",
                r.status.as_u16()
            ))
        })
    }

    /// Credentials kept from before that fit this call.
    fn stored_auth(&self, call: &CallInfo, at: &mut Attempt) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        let now = unix_now();
        let creds = self.creds.lock();
        if self.cfg.oauth.is_some() {
            if let Some(t) = creds
                .oauth
                .iter()
                .find(|t| same_resource(&t.resource, &call.server))
            {
                if t.expires_at == 0 || t.expires_at > now + 5 {
                    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", t.access_token)) {
                        out.push(v);
                        at.bearer = Some(t.access_token.clone());
                        at.scopes = t.scope.clone();
                    }
                }
            }
        }
        if let Some(name) = &call.name {
            if let Some(t) = creds.l402.iter().find(|t| {
                t.server == call.server
                    && (t.expires == 0 || t.expires > now)
                    && t.tools.iter().any(|x| x == name)
            }) {
                if let Ok(v) = HeaderValue::from_str(&format!("L402 {}:{}", t.macaroon, t.preimage))
                {
                    out.push(v);
                    at.stored_l402 = Some(t.macaroon.clone());
                }
            }
        }
        out
    }

    fn save_creds(&self, f: impl FnOnce(&mut Credentials)) -> Result<(), ClientError> {
        let _lock = store::lock_dir(&self.cfg.state_dir)?;
        // Merge with what other processes saved meanwhile.
        let mut on_disk = Credentials::load(&self.cfg.state_dir).unwrap_or_default();
        f(&mut on_disk);
        on_disk.prune(unix_now());
        on_disk.save(&self.cfg.state_dir)?;
        *self.creds.lock() = on_disk;
        Ok(())
    }

    /// Answers one challenge: fills `at.auth` with the credentials for the retry.
    async fn answer(
        &self,
        call: &CallInfo,
        offers: &Offers,
        at: &mut Attempt,
    ) -> Result<(), ClientError> {
        // A kept L402 token that the gate refused is used up (or expired): forget it.
        if let Some(mac) = at.stored_l402.take() {
            self.save_creds(|c| c.l402.retain(|t| t.macaroon != mac))?;
        }
        // Why each rail could not be used. A refusal of one rail (over a budget or the rail
        // policy's maximum, a wallet that failed, a dishonest invoice, a puzzle over the CPU-time
        // cap) moves on to the next rail offered; the call fails only when none is left.
        let mut refusals: Vec<Refusal> = Vec::new();
        // OAuth first when offered and configured: it costs nothing.
        let rails = self.cfg.policy.rails.as_deref();
        let allowed = |r: Rail| rails.is_none_or(|l| l.contains(&r));
        let oauth_first = allowed(Rail::Oauth)
            && (match rails {
                Some(l) => l.first() == Some(&Rail::Oauth),
                None => self.cfg.policy.prefer.is_none_or(|p| p == Rail::Oauth),
            } || (offers.pow.is_empty()
                && offers.l402.is_empty()
                && offers.mpp.is_empty()
                && offers.mpp_evm.is_empty()
                && offers.x402.is_empty()));
        if oauth_first {
            match self.try_oauth(call, offers, at).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => refusals.push(Refusal::new("OAuth", e)),
            }
        }
        // Proof-of-work and L402 in the order the policy says.
        let rate = if offers.pow.is_empty() {
            0.0
        } else {
            self.hashrate()
        };
        let pow = offers
            .pow
            .iter()
            .filter(|c| !c.is_expired(unix_now()))
            .min_by_key(|c| c.effort());
        let pow_secs = pow.map(|c| c.effort() as f64 / rate.max(1.0));
        let mut order: Vec<(Rail, bool)> = Vec::new();
        match (rails, self.cfg.policy.prefer) {
            (Some(l), _) => order.extend(l.iter().map(|r| (*r, false))),
            (None, Some(Rail::L402)) => order.extend([
                (Rail::L402, true),
                (Rail::X402, true),
                (Rail::MppEvm, true),
                (Rail::Pow, false),
            ]),
            (None, Some(Rail::Mpp)) => order.extend([
                (Rail::Mpp, true),
                (Rail::L402, true),
                (Rail::X402, true),
                (Rail::MppEvm, true),
                (Rail::Pow, false),
            ]),
            (None, Some(Rail::X402)) => order.extend([
                (Rail::X402, true),
                (Rail::MppEvm, true),
                (Rail::L402, true),
                (Rail::Pow, false),
            ]),
            (None, Some(Rail::MppEvm)) => order.extend([
                (Rail::MppEvm, true),
                (Rail::X402, true),
                (Rail::L402, true),
                (Rail::Pow, false),
            ]),
            (None, Some(Rail::Pow)) => order.extend([
                (Rail::Pow, false),
                (Rail::L402, true),
                (Rail::X402, true),
                (Rail::MppEvm, true),
            ]),
            (None, _) => order.extend([
                (Rail::Pow, true),
                (Rail::L402, true),
                (Rail::X402, true),
                (Rail::MppEvm, true),
                (Rail::Pow, false),
            ]),
        }
        let mut tried_pow = false;
        let mut tried_l402 = false;
        let mut tried_mpp = false;
        let mut tried_x402 = false;
        let mut tried_evm = false;
        for (rail, quick_only) in order {
            match rail {
                Rail::Pow if !tried_pow => {
                    let (Some(c), Some(secs)) = (pow, pow_secs) else {
                        continue;
                    };
                    if quick_only && secs > self.cfg.policy.solve_under_secs {
                        continue;
                    }
                    tried_pow = true;
                    if secs > self.cfg.policy.pow_max_secs {
                        refusals.push(Refusal::said(
                            "proof-of-work",
                            format!(
                                "effort {} hashes would take about {} here, over the {} s \
                                 CPU-time cap (refused)",
                                c.effort(),
                                human_secs(secs),
                                self.cfg.policy.pow_max_secs
                            ),
                        ));
                        continue;
                    }
                    match self.solve(call, c, rate).await {
                        Ok(v) => {
                            note_fallback(call, &refusals, "solved the proof-of-work");
                            at.auth.push(v);
                            return Ok(());
                        }
                        Err(e) => refusals.push(Refusal::new("proof-of-work", e)),
                    }
                }
                // Lightning. `l402`: an L402 invoice, else (none offered) an MPP one;
                // `mpp`: an MPP (Payment scheme, Lightning charge) invoice only.
                Rail::L402 | Rail::Mpp => {
                    let l402 = if rail == Rail::L402 && !tried_l402 {
                        offers.l402.first()
                    } else {
                        None
                    };
                    let mpp = if l402.is_none()
                        && !tried_mpp
                        && (rail == Rail::Mpp || offers.l402.is_empty())
                    {
                        offers.mpp.first()
                    } else {
                        None
                    };
                    let name = match (l402, mpp) {
                        (Some(_), _) => {
                            tried_l402 = true;
                            "L402"
                        }
                        (None, Some(_)) => {
                            tried_mpp = true;
                            "MPP"
                        }
                        (None, None) => continue,
                    };
                    let Some(wallet) = &self.cfg.wallet else {
                        refusals.push(Refusal::said(name, "no wallet is configured".into()));
                        continue;
                    };
                    let paid = match (l402, mpp) {
                        (Some(offer), _) => self.pay(call, offer, wallet.as_ref()).await,
                        (None, Some(c)) => self.pay_mpp(call, c, wallet.as_ref()).await,
                        (None, None) => continue,
                    };
                    match paid {
                        Ok(v) => {
                            note_fallback(call, &refusals, "paid the invoice");
                            at.auth.push(v);
                            return Ok(());
                        }
                        Err(e) => refusals.push(Refusal::new(name, e)),
                    }
                }
                Rail::X402 if !tried_x402 => {
                    if offers.x402.is_empty() {
                        continue;
                    }
                    tried_x402 = true;
                    if at.x402_signed {
                        refusals.push(Refusal::said(
                            "x402",
                            "a payment was signed for this call already and the server asks \
                             again; no second one is signed"
                                .into(),
                        ));
                        continue;
                    }
                    let Some(payer) = &self.cfg.x402 else {
                        refusals.push(Refusal::said(
                            "x402",
                            "no x402 key is configured (--x402-key)".into(),
                        ));
                        continue;
                    };
                    match self.pay_x402(call, &offers.x402, payer).await {
                        Ok(v) => {
                            note_fallback(call, &refusals, "signed an x402 payment");
                            at.x402_signed = true;
                            at.extra.push((
                                HeaderName::from_static(turnpike_x402::wire::SIGNATURE_HEADER),
                                v,
                            ));
                            return Ok(());
                        }
                        Err(e) => refusals.push(Refusal::new("x402", e)),
                    }
                }
                Rail::MppEvm if !tried_evm => {
                    let Some(c) = offers.mpp_evm.first() else {
                        continue;
                    };
                    tried_evm = true;
                    if at.x402_signed {
                        refusals.push(Refusal::said(
                            "MPP evm",
                            "an authorization was signed for this call already and the server \
                             asks again; no second one is signed"
                                .into(),
                        ));
                        continue;
                    }
                    let Some(payer) = &self.cfg.x402 else {
                        refusals.push(Refusal::said(
                            "MPP evm",
                            "no EVM key is configured (--x402-key)".into(),
                        ));
                        continue;
                    };
                    match self.pay_mpp_evm(call, c, payer).await {
                        Ok(cred) => {
                            note_fallback(call, &refusals, "signed an MPP evm payment");
                            at.x402_signed = true;
                            if at.in_band {
                                at.meta
                                    .push((turnpike_mpp::wire::META_CREDENTIAL, cred.to_json()));
                            } else {
                                let v =
                                    HeaderValue::from_str(&cred.authorization()).map_err(|_| {
                                        ClientError::Refused(
                                            "the MPP credential is not a header value".into(),
                                        )
                                    })?;
                                at.auth.push(v);
                            }
                            return Ok(());
                        }
                        Err(e) => refusals.push(Refusal::new("MPP evm", e)),
                    }
                }
                _ => {}
            }
        }
        if !oauth_first && allowed(Rail::Oauth) {
            match self.try_oauth(call, offers, at).await {
                Ok(true) => {
                    note_fallback(call, &refusals, "signed in");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => refusals.push(Refusal::new("OAuth", e)),
            }
        }
        if offers.oauth.is_some() && self.cfg.oauth.is_none() {
            refusals.push(Refusal::said(
                "OAuth",
                "no OAuth client is configured".into(),
            ));
        }
        Err(no_rail_left(call, offers, refusals))
    }

    /// Gets a token when OAuth is offered and configured. `Ok(false)`: not applicable.
    async fn try_oauth(
        &self,
        call: &CallInfo,
        offers: &Offers,
        at: &mut Attempt,
    ) -> Result<bool, ClientError> {
        let (Some(offer), Some(cfg)) = (&offers.oauth, &self.cfg.oauth) else {
            return Ok(false);
        };
        let stored = self
            .creds
            .lock()
            .oauth
            .iter()
            .find(|t| same_resource(&t.resource, &call.server))
            .cloned();
        let mut scope: Option<String> = None;
        match offer.error.as_deref() {
            Some("insufficient_scope") => {
                let need = offer.scope.clone().unwrap_or_default();
                let had = if at.scopes.is_empty() {
                    stored.as_ref().map(|s| s.scope.clone()).unwrap_or_default()
                } else {
                    at.scopes.clone()
                };
                let want = oauth::union_scopes(&had, &need);
                if at.bearer.is_some() && want == had {
                    return Err(ClientError::OAuth(format!(
                        "the token already has every scope asked for ({want}) and is still \
                         refused"
                    )));
                }
                scope = Some(want);
            }
            _ if at.bearer.is_some() && at.rounds > 1 && offer.error.is_none() => {
                // A token was presented and the gate still asks for one without saying why.
            }
            _ => {}
        }
        // A refused or expired token is refreshed when the server gave a refresh token (and a
        // full grant is run when the refresh fails).
        let refresh = stored.as_ref().filter(|s| s.refresh_token.is_some());
        let tok = oauth::fetch_token(
            &self.transport,
            cfg,
            &call.server,
            offer,
            scope.as_deref(),
            refresh,
        )
        .await;
        let tok = match (tok, refresh) {
            (Err(_), Some(_)) => {
                oauth::fetch_token(
                    &self.transport,
                    cfg,
                    &call.server,
                    offer,
                    scope.as_deref(),
                    None,
                )
                .await?
            }
            (r, _) => r?,
        };
        at.bearer = Some(tok.access_token.clone());
        at.scopes = tok.scope.clone();
        let server = call.server.clone();
        let keep = StoredToken {
            resource: if same_resource(&tok.resource, &server) {
                tok.resource.clone()
            } else {
                server.clone()
            },
            ..tok
        };
        self.save_creds(move |c| {
            c.oauth.retain(|t| !same_resource(&t.resource, &server));
            c.oauth.push(keep);
        })?;
        Ok(true)
    }

    /// Solves a puzzle within the CPU-time cap.
    async fn solve(
        &self,
        call: &CallInfo,
        c: &ParsedChallenge,
        rate: f64,
    ) -> Result<HeaderValue, ClientError> {
        let token = c.token.clone();
        let threads = self.cfg.policy.threads;
        let max_hashes = (self.cfg.policy.pow_max_secs * rate).max(1.0) as u64;
        let started = Instant::now();
        let solved = tokio::task::spawn_blocking(move || {
            crate::solve_with(
                &token,
                &crate::SolveOptions {
                    threads,
                    max_hashes: Some(max_hashes),
                    ..crate::SolveOptions::default()
                },
            )
        })
        .await
        .map_err(|e| ClientError::Solve(format!("solver task: {e}")))?
        .map_err(|e| ClientError::Solve(e.to_string()))?;
        let entry = SpendEntry {
            at: unix_now(),
            server: call.server.clone(),
            method: call.method.clone(),
            name: call.name.clone(),
            rail: "pow".into(),
            status: "solved".into(),
            amount_msat: 0,
            fee_msat: 0,
            payment_hash: None,
            hashes: Some(solved.hashes),
            millis: Some(started.elapsed().as_millis() as u64),
            note: None,
            ..SpendEntry::default()
        };
        let dir = self.cfg.state_dir.clone();
        // The log line is informational for proof-of-work; a failure to write it is not fatal.
        let _ = tokio::task::spawn_blocking(move || budget::append_log(&dir, &entry)).await;
        HeaderValue::from_str(&crate::authorization_value(&c.challenge, &solved.nonces))
            .map_err(|_| ClientError::Solve("the challenge is not a header value".into()))
    }

    /// Pays an MPP challenge's invoice (the Lightning `charge` method) within policy and
    /// budgets: the invoice must carry the payment hash the challenge names and ask no more than
    /// its amount; the credential echoes the challenge with the preimage.
    async fn pay_mpp(
        &self,
        call: &CallInfo,
        c: &turnpike_mpp::PaymentChallenge,
        wallet: &dyn Wallet,
    ) -> Result<HeaderValue, ClientError> {
        let lie = |why: &str| ClientError::Lie(format!("{why}; refused, nothing paid"));
        if c.expires
            .as_deref()
            .and_then(turnpike_mpp::wire::parse_rfc3339)
            .is_some_and(|t| t <= unix_now())
        {
            return Err(ClientError::Refused(
                "the MPP challenge has expired; nothing paid".into(),
            ));
        }
        let request = c
            .request_json()
            .map_err(|e| lie(&format!("the MPP challenge's request: {e}")))?;
        let (sats, hash) = turnpike_mpp::charge::ChargeRequest::terms(&request)
            .ok_or_else(|| lie("the MPP challenge is not a lightning charge in sat"))?;
        let invoice = request
            .get("methodDetails")
            .and_then(|m| m.get("invoice"))
            .and_then(Value::as_str)
            .ok_or_else(|| lie("the MPP challenge carries no invoice"))?;
        let d = decode_for_payment(invoice).map_err(ClientError::Wallet)?;
        if d.payment_hash != hash {
            return Err(lie("the MPP challenge's payment hash is not its invoice's"));
        }
        let offer = L402Offer {
            macaroon: String::new(),
            invoice: invoice.to_owned(),
            advertised_msat: Some(sats.saturating_mul(1000)),
            mode: None,
            expires: None,
        };
        let preimage = self.pay_invoice(call, &offer, wallet, "mpp").await?;
        let mut payload = serde_json::Map::new();
        payload.insert("preimage".into(), Value::from(preimage));
        let cred = turnpike_mpp::PaymentCredential {
            challenge: c.clone(),
            source: None,
            payload,
        };
        HeaderValue::from_str(&cred.authorization())
            .map_err(|_| ClientError::Refused("the MPP credential is not a header value".into()))
    }

    /// Takes the state directory's lock (off the async threads: it may wait for another
    /// process).
    async fn lock_state(&self) -> Result<store::DirLock, ClientError> {
        let dir = self.cfg.state_dir.clone();
        tokio::task::spawn_blocking(move || store::lock_dir(&dir))
            .await
            .map_err(|e| ClientError::State(format!("lock task: {e}")))?
    }

    /// Before a dollar payment (`usd` micro-dollars; `what`: the offer, for the messages) is
    /// signed: checks it against the per-call cap (`--max-pay-usd`), takes the state
    /// directory's lock and checks it against the daily dollar budget in the spend log. The
    /// lock is returned held, to be kept across the signature and the log entry, with the time
    /// of the check.
    async fn lock_within_usd(
        &self,
        usd: u64,
        what: &str,
    ) -> Result<(store::DirLock, u64), ClientError> {
        let cap = usd_to_micro(self.cfg.policy.max_pay_usd).unwrap_or(0);
        if usd > cap {
            return Err(ClientError::Budget(format!(
                "the server asks {what}, but the rail policy pays at most {} at once \
                 (--max-pay-usd); nothing signed",
                fmt_usd(cap)
            )));
        }
        let lock = self.lock_state().await?;
        let log = budget::read_log(&self.cfg.state_dir)?;
        let now = unix_now();
        self.cfg
            .budgets
            .check_usd(usd, budget::spent_usd_day(&log, now))
            .map_err(|m| ClientError::Budget(format!("{m}; nothing signed (the offer: {what})")))?;
        Ok((lock, now))
    }

    /// Pays an x402 offer: the cheapest of `offers` in an allowed asset, within the per-call
    /// cap and the daily dollar budget, checked and logged under the state directory's lock. The
    /// `PAYMENT-SIGNATURE` value: base64 of the signed `PaymentPayload`.
    async fn pay_x402(
        &self,
        call: &CallInfo,
        offers: &[turnpike_x402::PaymentRequirements],
        payer: &X402Payer,
    ) -> Result<HeaderValue, ClientError> {
        use turnpike_x402::evm;
        let mut not_allowed = Vec::new();
        let chosen = offers
            .iter()
            .filter_map(|r| {
                let units = evm::parse_decimal(&r.amount).filter(|u| *u > 0);
                match (
                    r.scheme == turnpike_x402::wire::SCHEME,
                    payer.asset_of(r),
                    units,
                ) {
                    (true, Some(a), Some(u)) => Some((r, a, u, a.micro_usd(u))),
                    _ => {
                        not_allowed.push(format!("{} {} on {}", r.scheme, r.asset, r.network));
                        None
                    }
                }
            })
            .min_by_key(|(_, _, _, usd)| *usd);
        let Some((req, asset, units, usd)) = chosen else {
            return Err(ClientError::Refused(format!(
                "the server asks for payment in {}, not an asset allowed here (--x402-asset); \
                 nothing signed",
                not_allowed.join(", ")
            )));
        };
        let pay_to = evm::parse_address(&req.pay_to)
            .map(|a| evm::checksum(&a))
            .ok_or_else(|| {
                ClientError::Lie("the x402 offer's payTo is not an address; nothing signed".into())
            })?;
        let what = format!(
            "{} ({units} units of {}) to {pay_to} for {}",
            fmt_usd(usd),
            evm::checksum(&asset.asset),
            call.describe()
        );
        let (lock, now) = self.lock_within_usd(usd, &what).await?;
        // Valid from now until the offer's timeout (at least 10 s, at most an hour).
        let valid_before = now + req.max_timeout_seconds.clamp(10, 3600) as u64;
        let nonce: [u8; 32] = rand::random();
        let payload = turnpike_x402::payer::pay(req, &payer.key, nonce, 0, valid_before)
            .ok_or_else(|| {
                ClientError::Refused(
                    "the x402 offer cannot be signed (its extra.name/version, the EIP-712 \
                     domain of the token, are missing); nothing signed"
                        .into(),
                )
            })?;
        let value = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&payload).unwrap_or_default())
        };
        let header = HeaderValue::from_str(&value)
            .map_err(|_| ClientError::Refused("the x402 payment is not a header value".into()))?;
        let asset = format!("{}/{}", asset.network(), evm::checksum(&asset.asset));
        let entry = signed_usd(call, now, "x402", usd, units, asset, pay_to);
        budget::append_log(&self.cfg.state_dir, &entry)?;
        drop(lock);
        Ok(header)
    }

    /// Pays an MPP `evm` charge challenge as mppx's `evm` method does: the request's token must
    /// be an allowed asset whose EIP-712 domain is known here, its amount in dollars within the
    /// per-call cap and the daily dollar budget (checked and logged under the state directory's
    /// lock); the EIP-3009 authorization pays the request's recipient its amount, valid from 0
    /// until the challenge expires, with the nonce keccak256(challenge id ‖ realm). The
    /// credential echoes the challenge, names the payer as its `did:pkh` source and carries the
    /// authorization and its signature.
    async fn pay_mpp_evm(
        &self,
        call: &CallInfo,
        c: &turnpike_mpp::PaymentChallenge,
        payer: &X402Payer,
    ) -> Result<turnpike_mpp::PaymentCredential, ClientError> {
        use turnpike_mpp::evm as mpp_evm;
        use turnpike_x402::evm;
        let lie = |why: &str| ClientError::Lie(format!("{why}; refused, nothing signed"));
        let now = unix_now();
        let expires = c
            .expires
            .as_deref()
            .and_then(turnpike_mpp::wire::parse_rfc3339)
            .ok_or_else(|| lie("the MPP evm challenge has no expiry to bound the authorization"))?;
        if expires <= now {
            return Err(ClientError::Refused(
                "the MPP challenge has expired; nothing signed".into(),
            ));
        }
        let request = c
            .request_json()
            .map_err(|e| lie(&format!("the MPP challenge's request: {e}")))?;
        let terms = mpp_evm::Terms::of(&request)
            .filter(|t| t.amount > 0)
            .ok_or_else(|| lie("the MPP challenge is not an evm charge taking authorizations"))?;
        let token = evm::checksum(&terms.currency);
        let Some(asset) = payer.allowed(terms.chain_id, &terms.currency) else {
            return Err(ClientError::Refused(format!(
                "the server asks for payment in {token} on eip155:{}, not an asset allowed here \
                 (--x402-asset); nothing signed",
                terms.chain_id
            )));
        };
        let Some((name, version)) = asset.domain.clone() else {
            return Err(ClientError::Refused(format!(
                "the EIP-712 domain of {token} is not known here (--x402-asset-name and \
                 --x402-asset-version); nothing signed"
            )));
        };
        let units = terms.amount;
        let usd = asset.micro_usd(units);
        let pay_to = evm::checksum(&terms.recipient);
        let what = format!(
            "{} ({units} units of {token}) to {pay_to} for {}",
            fmt_usd(usd),
            call.describe()
        );
        let (lock, now) = self.lock_within_usd(usd, &what).await?;
        let authorization = evm::Authorization {
            from: payer.address,
            to: terms.recipient,
            value: units,
            valid_after: 0,
            valid_before: u128::from(expires),
            nonce: mpp_evm::challenge_nonce(&c.id, &c.realm),
        };
        let domain = evm::Domain {
            name,
            version,
            chain_id: terms.chain_id,
            verifying_contract: terms.currency,
        };
        let sig = evm::sign(&payer.key, &authorization.digest_with(&domain.separator()))
            .ok_or_else(|| ClientError::Refused("the authorization cannot be signed".into()))?;
        let mut sig_bytes = Vec::with_capacity(65);
        sig_bytes.extend_from_slice(&sig.r);
        sig_bytes.extend_from_slice(&sig.s);
        sig_bytes.push(sig.v);
        let payload = serde_json::json!({
            "type": mpp_evm::CREDENTIAL_TYPE,
            "from": evm::checksum(&authorization.from),
            "to": pay_to,
            "value": units.to_string(),
            "validAfter": "0",
            "validBefore": expires.to_string(),
            "nonce": format!("0x{}", hex::encode(authorization.nonce)),
            "signature": format!("0x{}", hex::encode(sig_bytes)),
        });
        let cred = turnpike_mpp::PaymentCredential {
            challenge: c.clone(),
            source: Some(mpp_evm::source_of(terms.chain_id, &payer.address)),
            payload: match payload {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
        };
        let asset = format!("eip155:{}/{token}", terms.chain_id);
        let entry = signed_usd(call, now, "mpp-evm", usd, units, asset, pay_to);
        budget::append_log(&self.cfg.state_dir, &entry)?;
        drop(lock);
        Ok(cred)
    }

    /// Pays an L402 invoice within policy and budgets.
    async fn pay(
        &self,
        call: &CallInfo,
        offer: &L402Offer,
        wallet: &dyn Wallet,
    ) -> Result<HeaderValue, ClientError> {
        let preimage = self.pay_invoice(call, offer, wallet, "l402").await?;
        let amount = decode_for_payment(&offer.invoice)
            .map_err(ClientError::Wallet)?
            .amount_msat
            .unwrap_or(0);
        let mode = offer.mode.clone().unwrap_or_else(|| "per_call".into());
        if mode == "balance" || mode == "time_pass" {
            if let Some(name) = &call.name {
                let keep = StoredL402 {
                    server: call.server.clone(),
                    macaroon: offer.macaroon.clone(),
                    preimage: preimage.clone(),
                    mode,
                    tools: vec![name.clone()],
                    expires: offer.expires.unwrap_or(0),
                    paid_msat: amount,
                };
                self.save_creds(|c| c.l402.push(keep))?;
            }
        }
        HeaderValue::from_str(&format!("L402 {}:{}", offer.macaroon, preimage))
            .map_err(|_| ClientError::Refused("the macaroon is not a header value".into()))
    }

    /// Pays `offer`'s invoice for `rail` (its name in the spend log) within policy and budgets;
    /// the preimage in hex.
    async fn pay_invoice(
        &self,
        call: &CallInfo,
        offer: &L402Offer,
        wallet: &dyn Wallet,
        rail: &str,
    ) -> Result<String, ClientError> {
        let d = decode_for_payment(&offer.invoice).map_err(ClientError::Wallet)?;
        let amount = d.amount_msat.unwrap_or(0);
        if let Some(adv) = offer.advertised_msat {
            if amount > adv {
                return Err(ClientError::Lie(format!(
                    "the server's invoice asks for {} msat but it advertised {} msat; refused, \
                     nothing paid",
                    amount, adv
                )));
            }
        }
        let buying = purchase(call, offer, amount);
        if amount > self.cfg.policy.max_pay_sat.saturating_mul(1000) {
            return Err(ClientError::Budget(format!(
                "the server asks {buying}, but the rail policy pays at most {} sat at once \
                 (--max-pay); nothing paid",
                self.cfg.policy.max_pay_sat
            )));
        }
        let fee_limit = self.cfg.policy.max_fee_sat.saturating_mul(1000);
        let cost = amount.saturating_add(fee_limit);
        let dir = self.cfg.state_dir.clone();
        // The lock is held across the check, the payment and the log entry.
        let lock = self.lock_state().await?;
        let log = budget::read_log(&dir)?;
        let spent = budget::spent(&log, &call.server, unix_now());
        self.cfg.budgets.check(cost, &spent).map_err(|m| {
            ClientError::Budget(format!("{m}; nothing paid (the invoice: {buying})"))
        })?;
        let started = Instant::now();
        let result = wallet.pay(&offer.invoice, fee_limit).await;
        let mut entry = SpendEntry {
            at: unix_now(),
            server: call.server.clone(),
            method: call.method.clone(),
            name: call.name.clone(),
            rail: rail.into(),
            status: String::new(),
            amount_msat: amount,
            fee_msat: 0,
            payment_hash: Some(hex::encode(d.payment_hash)),
            hashes: None,
            millis: Some(started.elapsed().as_millis() as u64),
            note: offer.mode.clone(),
            ..SpendEntry::default()
        };
        match result {
            Ok(paid) => {
                entry.status = "paid".into();
                entry.fee_msat = paid.fee_msat.unwrap_or(0);
                budget::append_log(&dir, &entry)?;
                drop(lock);
                Ok(hex::encode(paid.preimage))
            }
            Err(e) => {
                entry.status = if e.may_have_paid() {
                    "unknown"
                } else {
                    "failed"
                }
                .into();
                entry.note = Some(e.to_string().chars().take(200).collect());
                if !matches!(e, WalletError::Invoice(_) | WalletError::Config(_)) {
                    budget::append_log(&dir, &entry)?;
                }
                drop(lock);
                Err(ClientError::Wallet(e))
            }
        }
    }
}

/// Reads an SSE response until the reply to `call` arrives; hands every other message to
/// `on_message`. `None` when the stream ends without a reply.
async fn read_sse(
    mut body: hyper::body::Incoming,
    call: &CallInfo,
    on_message: &(dyn Fn(Value) + Send + Sync),
) -> Result<Option<Value>, ClientError> {
    let mut parser = turnpike_mcp::sse::SseParser::new();
    loop {
        while let Some(ev) = parser.next_event() {
            let Some(data) = ev.data else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            let is_reply = v.get("method").is_none()
                && (v.get("result").is_some() || v.get("error").is_some())
                && call.id.as_ref().is_some_and(|id| v.get("id") == Some(id));
            if is_reply {
                return Ok(Some(v));
            }
            on_message(v);
        }
        if parser.buffered() > MAX_BODY {
            return Err(ClientError::Http("an SSE event exceeds 32 MiB".into()));
        }
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(ClientError::Http(format!("reading the stream: {e}"))),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    parser.push(&d);
                }
            }
        }
    }
}

/// Whether a token's resource identifier names this endpoint (scheme/host case and a trailing
/// `/` do not matter).
fn same_resource(a: &str, b: &str) -> bool {
    let n = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    n(a) == n(b)
}

fn refusal_suffix(o: &Offers) -> String {
    if o.refusals.is_empty() {
        String::new()
    } else {
        format!(" (the server said: {})", o.refusals.join("; "))
    }
}

/// Why one rail could not be used for a call.
struct Refusal {
    /// The rail, as people name it (`L402`, `proof-of-work`, `OAuth`).
    rail: &'static str,
    /// The error, when the rail failed with one (a budget, the wallet, a lie, the solver, OAuth).
    error: Option<ClientError>,
    /// Or the reason, when the rail was not attempted.
    reason: String,
}

impl Refusal {
    fn new(rail: &'static str, error: ClientError) -> Self {
        Refusal {
            rail,
            reason: error.to_string(),
            error: Some(error),
        }
    }

    fn said(rail: &'static str, reason: String) -> Self {
        Refusal {
            rail,
            error: None,
            reason,
        }
    }
}

/// The error for a call no offered rail could get through. A single refusal that is a budget, a
/// wallet failure or a dishonest invoice keeps its own kind (the caller can tell "over budget"
/// from "nothing I can answer"); anything else, and any combination, is
/// [`ClientError::Refused`] naming every rail's reason.
/// `body` (a JSON-RPC request) with `meta`'s members set in its `params._meta`; unchanged when
/// it is not a JSON object.
fn with_meta(body: &Bytes, meta: &[(&'static str, Value)]) -> Bytes {
    let Ok(mut msg) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    let Some(obj) = msg.as_object_mut() else {
        return body.clone();
    };
    let params = obj
        .entry("params")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(params) = params.as_object_mut() else {
        return body.clone();
    };
    let m = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(m) = m.as_object_mut() else {
        return body.clone();
    };
    for (k, v) in meta {
        m.insert((*k).to_string(), v.clone());
    }
    Bytes::from(msg.to_string())
}

fn no_rail_left(call: &CallInfo, offers: &Offers, mut refusals: Vec<Refusal>) -> ClientError {
    if refusals.len() == 1
        && matches!(
            refusals[0].error,
            Some(ClientError::Budget(_) | ClientError::Wallet(_) | ClientError::Lie(_))
        )
    {
        if let Some(e) = refusals.pop().and_then(|r| r.error) {
            return e;
        }
    }
    let reasons = if refusals.is_empty() {
        "nothing offered that this client can answer".to_string()
    } else {
        refusals
            .iter()
            .map(|r| format!("{}: {}", r.rail, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    ClientError::Refused(format!(
        "could not get {} through: {reasons}{}",
        call.describe(),
        refusal_suffix(offers)
    ))
}

/// Logs that a call got through by another rail after one was refused (the host only sees the
/// answer, so this is where the reason stays visible).
fn note_fallback(call: &CallInfo, refusals: &[Refusal], how: &str) {
    for r in refusals {
        tracing::info!(
            call = %call.describe(),
            rail = r.rail,
            reason = %r.reason,
            "{how} instead"
        );
    }
}

/// What an L402 invoice buys, for messages: the call itself, prepaid credit (a balance) or a
/// time pass. A balance bundle is not the price of the call, and a message must not say it is.
fn purchase(call: &CallInfo, offer: &L402Offer, amount_msat: u64) -> String {
    let amount = fmt_msat(amount_msat);
    let what = call.describe();
    match offer.mode.as_deref() {
        Some("balance") => {
            format!("{amount} of prepaid credit (a balance that pays for {what} and later calls)")
        }
        Some("time_pass") => match offer.expires {
            Some(t) if t > 0 => format!(
                "{amount} for a time pass ({what} until {})",
                budget::fmt_time(t)
            ),
            _ => format!("{amount} for a time pass ({what} for a while)"),
        },
        _ => format!("{amount} for {what}"),
    }
}

fn fmt_msat(m: u64) -> String {
    if m % 1000 == 0 {
        format!("{} sat", m / 1000)
    } else {
        format!("{m} msat")
    }
}

fn human_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.0} h", s / 3600.0)
    } else {
        format!("{:.0} days", s / 86_400.0)
    }
}

/// Hashes per second on `threads` threads (0: all cores), from ~40 ms of hashing on one.
pub fn measure_hashrate(threads: usize) -> f64 {
    let t = if threads == 0 {
        crate::default_threads()
    } else {
        threads
    };
    let mut h = turnpike_pow::puzzle::PuzzleHasher::new(&[0x5a; turnpike_pow::puzzle::TOKEN_LEN]);
    let start = Instant::now();
    let mut n = 0u64;
    let mut hits = 0u64;
    while start.elapsed() < Duration::from_millis(40) {
        for _ in 0..2048 {
            if h.check(0, n, u64::MAX / 2) {
                hits += 1;
            }
            n += 1;
        }
    }
    std::hint::black_box(hits);
    let one = n as f64 / start.elapsed().as_secs_f64();
    one * t as f64
}

/// The spend-log entry of a dollar payment signed at `now` on `rail` for `call`: `usd`
/// micro-dollars, `units` of `asset` (`network/token`) to `pay_to`.
fn signed_usd(
    call: &CallInfo,
    now: u64,
    rail: &str,
    usd: u64,
    units: u128,
    asset: String,
    pay_to: String,
) -> SpendEntry {
    SpendEntry {
        at: now,
        server: call.server.clone(),
        method: call.method.clone(),
        name: call.name.clone(),
        rail: rail.into(),
        status: "signed".into(),
        usd_micro: Some(usd),
        units: Some(units.to_string()),
        asset: Some(asset),
        pay_to: Some(pay_to),
        ..SpendEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(mode: Option<&str>, expires: Option<u64>) -> L402Offer {
        L402Offer {
            macaroon: "m".into(),
            invoice: "i".into(),
            advertised_msat: None,
            mode: mode.map(str::to_string),
            expires,
        }
    }

    #[test]
    fn a_purchase_says_what_is_bought() {
        let call = CallInfo::of(
            "http://gw/mcp",
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo"}}),
        );
        assert_eq!(
            purchase(&call, &offer(Some("per_call"), None), 2_000),
            "2 sat for tools/call echo"
        );
        let balance = purchase(&call, &offer(Some("balance"), None), 20_000);
        assert!(balance.starts_with("20 sat of prepaid credit"), "{balance}");
        assert!(balance.contains("later calls"), "{balance}");
        assert!(!balance.contains("costs"), "{balance}");
        assert_eq!(
            purchase(&call, &offer(Some("time_pass"), Some(1_767_225_600)), 5_000),
            "5 sat for a time pass (tools/call echo until 2026-01-01 00:00:00Z)"
        );
    }
}
