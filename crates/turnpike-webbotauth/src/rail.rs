//! The `agent` rail: verified agents (Web Bot Auth) through the gateway.
//!
//! A tool priced `agent = true` (any allowed directory) or `agent = { directories = [...] }`
//! lets a request through when its Web Bot Auth signature verifies under a key of one of those
//! directories; the call is then the agent's ([`Identity::Agent`]: directory and key id), which
//! limits key on. Nothing is paid and nothing is settled.
//!
//! - Credentials: `Signature-Input`, `Signature` and `Signature-Agent` ([`AgentCredentials`]);
//!   a request carrying `Signature-Input` presents one credential, read whole by the view bound
//!   to the request ([`RailPlugin::bind`]), which holds what the signature base reads (method,
//!   authority, path and query, the covered fields). The three headers are stripped before
//!   forwarding. When the call does not offer the rail they are not read.
//! - Verification ([`AgentView`]): the claim (label, key id, `Signature-Agent`) is read first;
//!   a directory that is not allowed is refused without a fetch (401); the components the
//!   configuration requires must be covered (401); the directory's copy is looked up
//!   ([`crate::fetch`]: fetched, bounded, cached; unreachable with no copy → 503); then the
//!   [`Verifier`] (time, coverage, key, Ed25519), and only then the nonce is spent in the
//!   gateway's `agent` spent set (memory or Redis: a replay is refused on every instance; the
//!   set unreachable → 503).
//! - Challenges: the rail has nothing a client can obtain by answering; its challenge has no
//!   `WWW-Authenticate` line and says in its details and in band which directories the tool
//!   accepts, so that an agent knows it may sign instead of paying.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use turnpike_core::credential::CredentialParseError;
use turnpike_core::plugin::Parsed;
use turnpike_core::{
    BoundRail, BoxFuture, CallFacts, Challenge, Credential, CredentialReader, EdgeRequest, Grant,
    Identity, Offer, Rail, RailId, RailPlugin, Refusal, Verdict,
};
use turnpike_store::SpentSet;

use crate::base::RequestParts;
use crate::fetch::{Directories, Lookup};
use crate::verifier::{claim, Clock, NonceGuard, NonceRefused, Policy, SystemClock, Verifier};

/// The agent rail's identifier: `agent` on the wire, in configuration and in metrics.
pub const RAIL: RailId = RailId::new("agent");

/// The headers this rail reads, stripped before forwarding.
pub const HEADERS: &[&str] = &["signature-input", "signature", "signature-agent"];

/// The most header lines of one request copied for the signature base.
const MAX_COPIED_LINES: usize = 64;

/// An agent offer: a verified agent of one of `directories` (empty: any allowed directory).
/// Published as `{"rail": "agent", "directories": [...]}`.
pub fn offer(directories: Vec<String>) -> Offer {
    let mut terms = serde_json::Map::new();
    terms.insert(
        "directories".into(),
        Value::Array(directories.into_iter().map(Value::String).collect()),
    );
    Offer::new(RAIL, terms)
}

/// The directories an agent offer names (empty: any allowed); `None` for another rail's offer.
pub fn directories(offer: &Offer) -> Option<Vec<String>> {
    if offer.rail() != RAIL {
        return None;
    }
    Some(
        offer
            .term("directories")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// A request's Web Bot Auth signature, presented (its fields are read by the bound view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSignature;

/// Reads the rail's credentials: a `Signature-Input` line presents the request's signature;
/// `Signature` and `Signature-Agent` go with it. Serves while the rail is off too.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentCredentials;

impl CredentialReader for AgentCredentials {
    fn credential_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn parse_header(&self, name: &str, _value: &str) -> Option<Parsed> {
        (name == "signature-input").then(|| Ok(Credential::new(RAIL, AgentSignature)))
    }
}

impl RailPlugin for AgentCredentials {
    fn id(&self) -> RailId {
        RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        self
    }
}

/// What the rail checks beside the verifier's own rules.
#[derive(Debug, Clone)]
pub struct AgentPolicy {
    /// The verifier's time and nonce rules.
    pub policy: Policy,
    /// Components every signature must cover (beyond `@authority`, and `signature-agent` when
    /// the request has that field, which the verifier always requires).
    pub required: Vec<String>,
}

/// The running rail: the allowed directories and the spent nonces.
pub struct AgentRail {
    policy: AgentPolicy,
    directories: Directories,
    spent: Arc<dyn SpentSet>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AgentRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRail")
            .field("policy", &self.policy)
            .field("directories", &self.directories)
            .finish_non_exhaustive()
    }
}

impl AgentRail {
    /// A rail over `directories`, spending nonces in `spent`.
    pub fn new(policy: AgentPolicy, directories: Directories, spent: Arc<dyn SpentSet>) -> Self {
        Self {
            policy,
            directories,
            spent,
            clock: Arc::new(SystemClock),
        }
    }

    /// The allowed directories and their cache.
    pub fn directories(&self) -> &Directories {
        &self.directories
    }

    /// Checks the request's signature: who signed it, or the verdict refusing it.
    async fn check(&self, req: &OwnedRequest) -> Result<Identity, Verdict> {
        let invalid = |reason: String| Verdict::Invalid(Refusal::new(RAIL, reason));
        if let Some(why) = &req.problem {
            return Err(invalid(why.clone()));
        }
        let parts = req.parts();
        let claim = claim(&parts).map_err(|r| invalid(r.to_string()))?;
        for c in &self.policy.required {
            if !claim.components.iter().any(|have| have == c) {
                return Err(invalid(format!("the signature does not cover {c}")));
            }
        }
        // Only allowed directories are ever fetched.
        let candidates: Vec<&str> = match &claim.agent {
            Some(url) if self.directories.allows(url) => vec![url.as_str()],
            Some(url) => {
                return Err(invalid(format!(
                    "Signature-Agent {url:?} is not a key directory this gateway accepts"
                )))
            }
            None => self.directories.urls(),
        };
        let mut unavailable = None;
        let mut found = None;
        for url in candidates {
            match self.directories.lookup(url, &claim.keyid).await {
                Lookup::Found(dir) => {
                    found = Some((url, dir));
                    break;
                }
                Lookup::Unknown => {}
                Lookup::Unavailable(why) => unavailable = Some(why),
            }
        }
        let Some((url, dir)) = found else {
            if let Some(why) = unavailable {
                return Err(Verdict::Unavailable(Refusal::new(
                    RAIL,
                    format!("the agent's key directory cannot be loaded: {why}"),
                )));
            }
            return Err(invalid(format!(
                "keyid {} is not in the agent's key directory",
                claim.keyid
            )));
        };
        let nonce = Arc::new(Held::default());
        let mut verifier = Verifier::new(self.policy.policy, self.clock.clone(), nonce.clone());
        verifier.set_directory(url, (*dir).clone());
        let agent = verifier
            .verify_parts(&parts)
            .map_err(|r| invalid(r.to_string()))?;
        // The signature verified: only now is its nonce spent, on every instance.
        if let Some((key, until)) = nonce.taken() {
            let now = self.clock.now();
            match self
                .spent
                .insert_issued(key, agent.created, until, now)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    return Err(invalid(
                        "nonce already used (or the signature was created before this gateway's \
                         record of spent nonces began: sign the request again)"
                            .into(),
                    ))
                }
                Err(e) => {
                    return Err(Verdict::Unavailable(Refusal::new(
                        RAIL,
                        format!("spent nonces: {e}"),
                    )))
                }
            }
        }
        Ok(Identity::Agent {
            directory: agent.agent,
            key_id: agent.keyid,
        })
    }
}

/// The nonce a verification would spend, taken aside to be spent in the gateway's set once the
/// signature verified (the key: SHA-256 over the key id and the nonce).
#[derive(Default)]
struct Held(parking_lot::Mutex<Option<([u8; 32], u64)>>);

impl Held {
    fn taken(&self) -> Option<([u8; 32], u64)> {
        *self.0.lock()
    }
}

impl NonceGuard for Held {
    fn spend(&self, keyid: &str, nonce: &str, _now: u64, until: u64) -> Result<(), NonceRefused> {
        let mut h = Sha256::new();
        h.update(b"turnpike-agent-nonce\0");
        h.update(keyid.as_bytes());
        h.update([0]);
        h.update(nonce.as_bytes());
        *self.0.lock() = Some((h.finalize().into(), until));
        Ok(())
    }
}

/// What the signature base of one request reads, copied at the edge.
struct OwnedRequest {
    method: Method,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    /// Why the fields cannot be read (not visible ASCII, too many lines).
    problem: Option<String>,
}

impl OwnedRequest {
    /// Copies the request's method, authority, target and the fields the signature may cover
    /// (the three signature fields, and each field `Signature-Input` names).
    fn of(req: &EdgeRequest<'_>) -> Self {
        let scheme = req
            .public_url
            .and_then(|u| u.split_once("://"))
            .map_or("http", |(s, _)| s)
            .to_ascii_lowercase();
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (req.target.to_owned(), None),
        };
        let mut headers = HeaderMap::new();
        let mut problem: Option<String> = None;
        let mut names: Vec<String> = HEADERS.iter().map(|s| (*s).to_owned()).collect();
        for line in req.headers.lines("signature-input") {
            if let Ok(d) = crate::sf::parse_dictionary(line.as_bytes()) {
                for (_, m) in d.iter() {
                    if let crate::sf::Member::InnerList(l) = m {
                        for i in &l.items {
                            if let crate::sf::BareItem::String(s) = &i.bare {
                                if !s.starts_with('@') && !names.contains(s) {
                                    names.push(s.clone());
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut copied = 0;
        for name in names {
            let Ok(hname) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            for line in req.headers.lines(&name) {
                copied += 1;
                if copied > MAX_COPIED_LINES {
                    problem.get_or_insert_with(|| {
                        format!(
                            "the signature fields and the fields they cover span more than \
                             {MAX_COPIED_LINES} header lines"
                        )
                    });
                    break;
                }
                match HeaderValue::from_str(line) {
                    Ok(v) if line != "\u{0}" => {
                        headers.append(hname.clone(), v);
                    }
                    _ => {
                        problem.get_or_insert_with(|| {
                            format!("the {name} field is not visible ASCII")
                        });
                    }
                }
            }
        }
        Self {
            method: Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::POST),
            scheme,
            authority: req.authority.unwrap_or("").to_owned(),
            path,
            query,
            headers,
            problem,
        }
    }

    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            scheme: &self.scheme,
            authority: &self.authority,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
        }
    }
}

/// The rail bound to one request: verifies its signature once, however many `Signature-Input`
/// lines presented it.
pub struct AgentView {
    rail: Arc<AgentRail>,
    req: OwnedRequest,
    outcome: tokio::sync::OnceCell<Result<Identity, Verdict>>,
}

impl Rail for AgentView {
    fn kind(&self) -> RailId {
        RAIL
    }

    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        self.rail.challenge(call, offer)
    }

    fn verify<'a>(
        &'a self,
        _call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if credential.payload::<AgentSignature>().is_none() {
                return Verdict::Invalid(Refusal::new(RAIL, "not a request signature"));
            }
            let outcome = self
                .outcome
                .get_or_init(|| self.rail.check(&self.req))
                .await;
            let identity = match outcome {
                Ok(id) => id.clone(),
                Err(v) => return v.clone(),
            };
            let allowed = directories(offer).unwrap_or_default();
            if let Identity::Agent { directory, .. } = &identity {
                if !allowed.is_empty() && !allowed.iter().any(|d| d == directory) {
                    return Verdict::Stale(Refusal::new(
                        RAIL,
                        format!(
                            "this call accepts agents of {} only, not of {directory}",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
            Verdict::Pass(Grant {
                rail: RAIL,
                identity: Some(identity),
                receipt: None,
                about: None,
            })
        })
    }
}

struct Bound(Arc<AgentView>);

impl BoundRail for Bound {
    fn rail(&self) -> Arc<dyn Rail> {
        self.0.clone()
    }
}

impl Rail for AgentRail {
    fn kind(&self) -> RailId {
        RAIL
    }

    /// Nothing to obtain: the challenge only says which key directories the call accepts.
    fn challenge<'a>(
        &'a self,
        _call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        let named = directories(offer).unwrap_or_default();
        let dirs: Vec<String> = if named.is_empty() {
            self.directories
                .urls()
                .into_iter()
                .map(str::to_owned)
                .collect()
        } else {
            named
        };
        Box::pin(async move {
            Some(Challenge {
                rail: RAIL,
                www_authenticate: String::new(),
                details: json!({
                    "rail": RAIL.as_str(),
                    "scheme": "web-bot-auth",
                    "directories": dirs,
                }),
            })
        })
    }

    /// Only the view bound to a request can read its signature.
    fn verify<'a>(
        &'a self,
        _call: &'a CallFacts,
        _offer: &'a Offer,
        _credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async {
            Verdict::Invalid(Refusal::new(RAIL, "the request's signature was not read"))
        })
    }
}

impl RailPlugin for AgentRail {
    fn id(&self) -> RailId {
        RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &AgentCredentials
    }

    /// After every rail a client can answer.
    fn challenge_order(&self) -> u8 {
        30
    }

    fn in_band_text(&self, challenge: &Challenge, first: bool) -> String {
        in_band_text(challenge, first)
    }

    fn bind(
        self: Arc<Self>,
        req: &EdgeRequest<'_>,
        _offer: &Offer,
        credentials: &[Credential],
        _malformed: Option<&CredentialParseError>,
    ) -> Option<Box<dyn BoundRail>> {
        if !credentials
            .iter()
            .any(|c| c.payload::<AgentSignature>().is_some())
        {
            return None;
        }
        Some(Box::new(Bound(Arc::new(AgentView {
            rail: self,
            req: OwnedRequest::of(req),
            outcome: tokio::sync::OnceCell::new(),
        }))))
    }
}

/// The in-band words for the agent rail's challenge: which directories the call accepts.
pub fn in_band_text(challenge: &Challenge, first: bool) -> String {
    let dirs: Vec<&str> = challenge
        .details
        .get("directories")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let lead = if first {
        ""
    } else {
        "Or, as a verified agent: "
    };
    format!(
        "{lead}Verified agents pass without paying: sign the HTTP request with Web Bot Auth \
         (RFC 9421, tag \"web-bot-auth\", covering @authority and signature-agent) under a key \
         of one of these key directories: {}. ",
        dirs.join(", ")
    )
}
