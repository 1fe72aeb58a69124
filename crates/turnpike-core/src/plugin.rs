//! What a rail does at the gateway's edge, beside its verdicts: the [`RailPlugin`] trait.
//!
//! The gateway runs every rail through [`crate::Rail`] (challenges, verdicts, settlement) and
//! this trait (everything that touches the request and the response): which `Authorization`
//! schemes, headers and `params._meta` keys it reads its credentials from (its
//! [`CredentialReader`], which also serves while the rail is off), where its challenge
//! goes among the others and what it says in band, how it binds to one request (a proof that
//! signs the request's method, URL and body), what it adds to the response after a pass, its
//! own answer to a credential it refused, the documents it serves beside the endpoint and what
//! it counts of its own ([`RailPlugin::meter`]). Every method has a default for a rail that needs nothing, so a rail names
//! only what it does. Nothing here knows an HTTP library: headers are read through
//! [`HeaderLines`] and written as name/value pairs.

use std::sync::Arc;

use serde_json::Value;

use crate::credential::CredentialParseError;
use crate::{Challenge, Credential, Identity, Offer, Rail, RailId, RailMeter, Refusal};

/// A parsed credential, or why what was presented is not one.
pub type Parsed = Result<Credential, CredentialParseError>;

/// The header lines of one request, by lower-case name.
pub trait HeaderLines {
    /// Every line of header `name`, in order; a line that is not visible ASCII is given as
    /// `"\u{0}"`, which no credential parser accepts.
    fn lines(&self, name: &str) -> Vec<&str>;
}

/// The request as a rail sees it at the edge.
pub struct EdgeRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The authority the request was sent to (`host[:port]`): the request target's when it is
    /// absolute (HTTP/2's `:authority`), else the `Host` field's.
    pub authority: Option<&'a str>,
    /// The request target's path and query, as received (`/mcp?x=1`).
    pub target: &'a str,
    /// The public URL of the endpoint, as callers reach it, when the gateway knows it.
    pub public_url: Option<&'a str>,
    /// The body, read whole.
    pub body: &'a [u8],
    /// The header lines.
    pub headers: &'a (dyn HeaderLines + Sync),
}

/// What a rail adds when a call it bound to passes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassNotes {
    /// Headers for the response (e.g. a fresh proof nonce).
    pub response_headers: Vec<(&'static str, String)>,
    /// The identity the gateway may vouch for to the upstream, with its scopes.
    pub vouch: Option<(Identity, Vec<String>)>,
    /// Headers for a successful (2xx) response only (e.g. a payment receipt, which an error
    /// answer must not carry).
    pub success_headers: Vec<(&'static str, String)>,
    /// Members added to the JSON-RPC result's `_meta` (e.g. a payment receipt), in a JSON
    /// answer or each result event of an SSE one; an error answer gets none.
    pub result_meta: Vec<(&'static str, Value)>,
    /// The `Authorization` value the upstream gets for this call (e.g. a token the
    /// authorization server issued for the upstream in exchange for the caller's), in place of
    /// the caller's credentials, which are always removed.
    pub upstream_authorization: Option<UpstreamAuthorization>,
}

/// An `Authorization` header value for the upstream. Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamAuthorization(pub String);

impl std::fmt::Debug for UpstreamAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamAuthorization(<redacted>)")
    }
}

/// A rail's own answer to a credential it refused, in place of the challenges (always over
/// HTTP). The JSON-RPC error code follows the status (503 unavailable, 403 forbidden, else
/// credential invalid); the other rails' challenges follow its own `WWW-Authenticate` lines
/// unless the status is 503.
#[derive(Debug, Clone, PartialEq)]
pub struct RailAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON-RPC error message.
    pub message: String,
    /// Its `WWW-Authenticate` lines, before any other rail's.
    pub www_authenticate: Vec<String>,
    /// Other headers for the response.
    pub headers: Vec<(&'static str, String)>,
    /// Members added to the JSON-RPC error's `data`.
    pub data: Vec<(&'static str, Value)>,
}

/// A rail's challenges in band under a standard of its own ([`RailPlugin::in_band_form`]: the
/// MPP transport's JSON-RPC error `-32042`).
#[derive(Debug, Clone, PartialEq)]
pub struct InBandForm {
    /// The JSON-RPC error code to answer with when every challenge is this rail's.
    pub code: i64,
    /// Its message.
    pub message: String,
    /// Its `data`.
    pub data: Value,
    /// The member added to the `_meta` of an in-band `tools/call` result that lists other
    /// rails' challenges beside this rail's.
    pub result_meta: (&'static str, Value),
}

/// The request an in-band answer is for ([`RailPlugin::in_band_result`]).
#[derive(Debug, Clone, Copy)]
pub struct InBandCall<'a> {
    /// The JSON-RPC method (`tools/call`, `resources/read`, …).
    pub method: &'a str,
    /// Whether the request is of MCP 2026-07-28 or later, whose results carry `resultType`.
    pub modern: bool,
    /// The extensions the client advertised in this request's capabilities (2026-07-28:
    /// `params._meta["io.modelcontextprotocol/clientCapabilities"].extensions`), by name.
    pub extensions: &'a [String],
}

impl InBandCall<'_> {
    /// Whether the client advertised extension `name` (a 2026-07-28 request only).
    pub fn advertises(&self, name: &str) -> bool {
        self.modern && self.extensions.iter().any(|e| e == name)
    }
}

/// A rail's challenges in band as a method result under a standard of its own
/// ([`RailPlugin::in_band_result`]: x402's MCP transport, a `tools/call` result with `isError`
/// whose `structuredContent` is its `PaymentRequired`).
#[derive(Debug, Clone, PartialEq)]
pub struct InBandResult {
    /// The JSON-RPC `result` answered when every challenge is this rail's. A `resultType` of
    /// its own is kept; otherwise a 2026-07-28 request's result gains `"complete"`.
    pub result: Value,
    /// Members put into the `structuredContent` of turnpike's in-band `tools/call` result when
    /// other rails' challenges are listed beside this rail's (`turnpike` stays turnpike's).
    pub structured: Vec<(String, Value)>,
}

/// A rail bound to one request ([`RailPlugin::bind`]).
pub trait BoundRail: Send + Sync {
    /// The view that verifies this request's credentials in place of the rail.
    fn rail(&self) -> Arc<dyn Rail>;

    /// What the response gains when a credential of this rail passed.
    fn passed(&self) -> PassNotes {
        PassNotes::default()
    }

    /// The rail's own answer when no credential paid for the call and one of its own was
    /// refused (`offer`: its offer in the call's price), or `None` for the usual challenges.
    fn answer(&self, _offer: &Offer) -> Option<RailAnswer> {
        None
    }
}

/// A document a rail serves beside the endpoint (e.g. OAuth protected-resource metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct RailDocument {
    /// The JSON document.
    pub body: Value,
    /// What it is, in words (`protected-resource metadata`), for the answer to a wrong method.
    pub what: &'static str,
}

/// How a rail's credentials are read from one request: the `Authorization` schemes, the other
/// headers and the `params._meta` keys it reads, and their parsers. Every method has a default
/// for a rail that reads nothing there.
///
/// A running rail gives its reader through [`RailPlugin::reader`]. The same reader serves a
/// gateway where the rail is off (a plugin whose [`RailPlugin::reader`] is it and nothing
/// else): the rail's credentials are then still read (and refused, as for a call that does not
/// accept that rail) and its headers still stripped.
pub trait CredentialReader: Send + Sync {
    /// Parses one `Authorization` line whose scheme is `scheme` (as sent, any case) and whose
    /// parameters are `params`, or `None` when the scheme is not this rail's.
    fn parse_authorization(
        &self,
        _scheme: &str,
        _params: &str,
        _req: &EdgeRequest<'_>,
    ) -> Option<Parsed> {
        None
    }

    /// The request headers other than `Authorization` this rail reads (lower case): each line
    /// goes to [`CredentialReader::parse_header`], and all are removed before the call is
    /// forwarded.
    fn credential_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Parses one line of header `name` (one of [`CredentialReader::credential_headers`]), or
    /// `None` when that header carries no credential on its own (e.g. a proof that goes with an
    /// `Authorization` line).
    fn parse_header(&self, _name: &str, _value: &str) -> Option<Parsed> {
        None
    }

    /// The keys of `params._meta` this rail reads (under `turnpike/`, or a standard's own key
    /// such as `org.paymentauth/credential`), each stripped before forwarding.
    fn meta_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Parses `params._meta[key]` (one of [`CredentialReader::meta_keys`]).
    fn parse_meta(&self, _key: &str, _value: &Value) -> Option<Parsed> {
        None
    }
}

/// Everything a rail does at the gateway's edge. See the module doc.
///
/// A running rail implements it beside [`Rail`]. Where the rail is off, its crate may still
/// register a plugin that only gives its [`CredentialReader`] (every other method left at its
/// default).
pub trait RailPlugin: Send + Sync {
    /// Which rail this is (the same as [`Rail::kind`] for a running rail).
    fn id(&self) -> RailId;

    /// How its credentials are read from a request.
    fn reader(&self) -> &dyn CredentialReader;

    /// Where its challenge goes among the others (lower first; stable among equals). L402 is 0
    /// (L402 clients read only the first challenge), proof-of-work 10, OAuth 20. The default:
    /// 15.
    fn challenge_order(&self) -> u8 {
        15
    }

    /// Headers of its own that carry `challenge` over HTTP, beside its `WWW-Authenticate`
    /// line (which may be empty: then it has none). The default: none.
    fn challenge_headers(&self, _challenge: &Challenge) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Whether its challenge asks the caller to sign in rather than to pay or work: a call
    /// whose every offer is on such rails is answered over HTTP whatever the delivery mode, and
    /// a 402 whose every challenge is such becomes 401 (what starts an MCP client's sign-in).
    fn signs_in(&self) -> bool {
        false
    }

    /// The in-band text for `challenge` (one of this rail's): what to do, and how to retry.
    /// `first`: no other way is listed before it. The default points to the structured data.
    fn in_band_text(&self, challenge: &Challenge, _first: bool) -> String {
        let rail = challenge.rail;
        format!(
            "{rail}: see structuredContent.turnpike.challenges and retry this same call with the \
             credential in params._meta[\"turnpike/{rail}\"]. "
        )
    }

    /// Whether a credential of this rail that does not parse is answered as one that cannot
    /// pay — 402 with fresh challenges, its refusal among them — rather than as a forged one
    /// (401). The `Payment` scheme asks for 402 whatever is wrong with a credential. The
    /// default: no.
    fn malformed_is_stale(&self) -> bool {
        false
    }

    /// Its challenges (`challenges`, all of this rail) and refusals in band under a standard
    /// of its own: the JSON-RPC error answered when they are the only ones, and the `_meta`
    /// member of an in-band result beside other rails' challenges. The default: none (the
    /// challenges travel in turnpike's own in-band forms only).
    fn in_band_form(
        &self,
        _challenges: &[&Challenge],
        _refusals: &[&Refusal],
    ) -> Option<InBandForm> {
        None
    }

    /// Its challenges (`challenges`, all of this rail) and refusals in band as a result of
    /// `call`'s method under a standard of its own: the result answered when they are the only
    /// ones, and what it adds to the `structuredContent` of turnpike's in-band `tools/call`
    /// result beside other rails' challenges. Checked before [`RailPlugin::in_band_form`]'s
    /// error. The default: none.
    fn in_band_result(
        &self,
        _call: &InBandCall<'_>,
        _challenges: &[&Challenge],
        _refusals: &[&Refusal],
    ) -> Option<InBandResult> {
        None
    }

    /// The MCP extensions this rail speaks (e.g. `org.x402/payment`), advertised in the
    /// `capabilities.extensions` of `server/discover` answers. The default: none.
    fn mcp_extensions(&self) -> &'static [&'static str] {
        &[]
    }

    /// Binds the rail to one request whose price offers it (`offer`), given the credentials
    /// presented and why the first of its own that did not parse failed; `None` when the
    /// request needs no view of its own (the rail itself verifies).
    fn bind(
        self: Arc<Self>,
        _req: &EdgeRequest<'_>,
        _offer: &Offer,
        _credentials: &[Credential],
        _malformed: Option<&CredentialParseError>,
    ) -> Option<Box<dyn BoundRail>> {
        None
    }

    /// A document served at `path` (outside the endpoint `endpoint_path`), when it is one of
    /// this rail's.
    fn document(&self, _path: &str, _endpoint_path: &str) -> Option<RailDocument> {
        None
    }

    /// What the rail counts of its own ([`crate::meter`]), asked once when the gateway's
    /// metrics are made (they keep it for the process). A rail that is off may give one too,
    /// so that its series are there, at zero, whether it runs or not. The default: none (the
    /// rail is counted only in the gateway's series, under its name).
    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        None
    }
}
