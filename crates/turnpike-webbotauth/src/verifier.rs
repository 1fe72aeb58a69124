//! The Web Bot Auth profile of RFC 9421: which signature counts, what it must cover, its
//! time window, its key, its nonce; and the Ed25519 check itself.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use ring::signature::{UnparsedPublicKey, ED25519};

use crate::base::{signature_base, BaseError, RequestParts};
use crate::directory::{DirectoryKey, KeyDirectory};
use crate::sf::{self, BareItem, InnerList, Member, SfError};

/// The `tag` a Web Bot Auth signature carries.
pub const TAG: &str = "web-bot-auth";
/// The longest nonce accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 256;

/// The time source, in seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Why a nonce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefused {
    /// Seen before, within its signature's lifetime.
    Replayed,
    /// The store holding spent nonces is full.
    Full,
}

/// The set of nonces already spent. The gateway backs this with its spent set (memory or
/// Redis); [`MemoryNonces`] is the in-process one.
pub trait NonceGuard: Send + Sync {
    /// Marks `nonce` of `keyid` spent until `until` (seconds since the epoch), or refuses it
    /// when already spent.
    fn spend(&self, keyid: &str, nonce: &str, now: u64, until: u64) -> Result<(), NonceRefused>;
}

/// Spent nonces in memory, at most `capacity` live at once (expired ones are dropped first).
#[derive(Debug)]
pub struct MemoryNonces {
    capacity: usize,
    spent: Mutex<HashMap<String, u64>>,
}

impl MemoryNonces {
    /// An empty set holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            spent: Mutex::new(HashMap::new()),
        }
    }
}

impl NonceGuard for MemoryNonces {
    fn spend(&self, keyid: &str, nonce: &str, now: u64, until: u64) -> Result<(), NonceRefused> {
        let key = format!("{keyid} {nonce}");
        let mut spent = self.spent.lock();
        if let Some(&expiry) = spent.get(&key) {
            if expiry >= now {
                return Err(NonceRefused::Replayed);
            }
        }
        if spent.len() >= self.capacity {
            spent.retain(|_, expiry| *expiry >= now);
            if spent.len() >= self.capacity {
                return Err(NonceRefused::Full);
            }
        }
        spent.insert(key, until);
        Ok(())
    }
}

/// The time and nonce rules, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Clock difference tolerated in either direction.
    pub max_skew: u64,
    /// The oldest `created` accepted, counted back from now.
    pub max_age: u64,
    /// The furthest `expires` accepted, counted forward from now.
    pub max_validity: u64,
    /// Whether a signature without `nonce` is refused.
    pub require_nonce: bool,
}

impl Default for Policy {
    /// 30 s of skew, signatures at most 10 minutes old and valid for at most 10 more minutes,
    /// nonce optional (spent when present).
    fn default() -> Self {
        Self {
            max_skew: 30,
            max_age: 600,
            max_validity: 600,
            require_nonce: false,
        }
    }
}

/// An agent whose request signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAgent {
    /// The key directory's URL (the `Signature-Agent` value, or the directory the key was
    /// found in when the request names none).
    pub agent: String,
    /// The key's JWK thumbprint.
    pub keyid: String,
    /// The signature's label in `Signature-Input`.
    pub label: String,
    /// `created`, seconds since the epoch.
    pub created: u64,
    /// `expires`, seconds since the epoch.
    pub expires: u64,
    /// The nonce, when the signature carried one (now spent).
    pub nonce: Option<String>,
}

/// Why a request's signature was refused. Each refusal is its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Signature-Input` field.
    #[error("the request has no Signature-Input field")]
    NoSignatureInput,
    /// No `Signature` field.
    #[error("the request has no Signature field")]
    NoSignature,
    /// A field is not visible ASCII.
    #[error("the {0} field is not visible ASCII")]
    FieldNotText(&'static str),
    /// `Signature-Input` is not a valid dictionary.
    #[error("Signature-Input: {0}")]
    BadSignatureInput(SfError),
    /// `Signature` is not a valid dictionary.
    #[error("Signature: {0}")]
    BadSignatureField(SfError),
    /// No signature is tagged `web-bot-auth`.
    #[error("no signature is tagged web-bot-auth (found tag {0})")]
    WrongTag(String),
    /// The `Signature` field has no byte sequence for the label.
    #[error("the Signature field has no byte sequence for label {0}")]
    NoSignatureForLabel(String),
    /// A required signature parameter is absent or of the wrong type.
    #[error("signature parameter {0} is missing or not of its type")]
    BadParameter(&'static str),
    /// `alg` names an algorithm other than `ed25519`.
    #[error("signature algorithm {0} is not ed25519")]
    UnsupportedAlg(String),
    /// The nonce is longer than [`MAX_NONCE_LEN`].
    #[error("nonce longer than {MAX_NONCE_LEN} bytes")]
    NonceTooLong,
    /// `created` is later than now, beyond the skew.
    #[error("signature created at {created}, in the future (now {now})")]
    CreatedInFuture {
        /// `created`.
        created: u64,
        /// Now.
        now: u64,
    },
    /// `created` is older than the policy's maximum age.
    #[error("signature created at {created}, too long ago (now {now})")]
    TooOld {
        /// `created`.
        created: u64,
        /// Now.
        now: u64,
    },
    /// `expires` has passed.
    #[error("signature expired at {expires} (now {now})")]
    Expired {
        /// `expires`.
        expires: u64,
        /// Now.
        now: u64,
    },
    /// `expires` is further ahead than the policy allows.
    #[error("signature expires at {expires}, too far ahead (now {now})")]
    ExpiresTooFar {
        /// `expires`.
        expires: u64,
        /// Now.
        now: u64,
    },
    /// `expires` is not after `created`.
    #[error("signature expires ({expires}) before it was created ({created})")]
    ExpiresBeforeCreated {
        /// `created`.
        created: u64,
        /// `expires`.
        expires: u64,
    },
    /// `@authority` is not among the covered components.
    #[error("the signature does not cover @authority")]
    AuthorityNotCovered,
    /// The request has `Signature-Agent` but the signature does not cover it.
    #[error("the request names a Signature-Agent the signature does not cover")]
    SignatureAgentNotCovered,
    /// `Signature-Agent` is neither a string nor a dictionary with a string for the label.
    #[error("Signature-Agent is not a structured string naming the key directory")]
    BadSignatureAgent,
    /// No directory is known for the named agent.
    #[error("no key directory is known for agent {0}")]
    UnknownAgent(String),
    /// The `keyid` is not in the directory.
    #[error("keyid {0} is not in the agent's key directory")]
    UnknownKey(String),
    /// The signature base could not be built.
    #[error("signature base: {0}")]
    Base(BaseError),
    /// The signature does not verify under the key.
    #[error("the signature does not verify")]
    BadSignature,
    /// The policy requires a nonce and there is none.
    #[error("the signature has no nonce")]
    MissingNonce,
    /// The nonce was spent before.
    #[error("nonce already used")]
    Replayed,
    /// The spent-nonce store is full.
    #[error("too many live nonces; try again later")]
    NonceStoreFull,
}

/// What a request's Web Bot Auth signature claims, read before any key is needed: which key
/// directory and key it names and what it covers. Nothing here is verified yet; a gateway reads
/// it to know which directory to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureClaim {
    /// The signature's label in `Signature-Input`.
    pub label: String,
    /// The `keyid` parameter.
    pub keyid: String,
    /// The key directory `Signature-Agent` names, when the request has that field.
    pub agent: Option<String>,
    /// The names of the covered components, without their parameters, in order.
    pub components: Vec<String>,
}

/// Reads the claim of the request's first signature tagged `web-bot-auth` (see
/// [`SignatureClaim`]): refused as [`Verifier::verify_parts`] would refuse the fields.
pub fn claim(req: &RequestParts<'_>) -> Result<SignatureClaim, Refusal> {
    let chosen = choose(req)?;
    let keyid = match chosen.covered.params.get("keyid") {
        Some(BareItem::String(k)) => k.clone(),
        _ => return Err(Refusal::BadParameter("keyid")),
    };
    let agent = signature_agent(req, &chosen.label)?;
    let components = chosen
        .covered
        .items
        .iter()
        .filter_map(|i| match &i.bare {
            BareItem::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    Ok(SignatureClaim {
        label: chosen.label,
        keyid,
        agent,
        components,
    })
}

/// Verifies Web Bot Auth request signatures against known key directories.
pub struct Verifier {
    policy: Policy,
    clock: Arc<dyn Clock>,
    nonces: Arc<dyn NonceGuard>,
    directories: Vec<(String, KeyDirectory)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .field("agents", &self.directories.len())
            .finish_non_exhaustive()
    }
}

/// The signature chosen from the request's fields.
struct Chosen {
    label: String,
    covered: InnerList,
    signature: Vec<u8>,
}

impl Verifier {
    /// A verifier with no directories yet.
    pub fn new(policy: Policy, clock: Arc<dyn Clock>, nonces: Arc<dyn NonceGuard>) -> Self {
        Self {
            policy,
            clock,
            nonces,
            directories: Vec::new(),
        }
    }

    /// Adds (or replaces) the key directory of the agent at `agent` (the directory's URL, as
    /// `Signature-Agent` names it).
    pub fn set_directory(&mut self, agent: &str, directory: KeyDirectory) {
        if let Some(slot) = self.directories.iter_mut().find(|(a, _)| a == agent) {
            slot.1 = directory;
        } else {
            self.directories.push((agent.to_owned(), directory));
        }
    }

    /// Verifies the Web Bot Auth signature of `req`, received over `scheme`.
    pub fn verify<B>(
        &self,
        req: &http::Request<B>,
        scheme: &str,
    ) -> Result<VerifiedAgent, Refusal> {
        self.verify_parts(&RequestParts::from_request(req, scheme))
    }

    /// Verifies the Web Bot Auth signature of a request given by its parts.
    pub fn verify_parts(&self, req: &RequestParts<'_>) -> Result<VerifiedAgent, Refusal> {
        let chosen = choose(req)?;
        let params = &chosen.covered.params;
        let keyid = match params.get("keyid") {
            Some(BareItem::String(k)) => k.clone(),
            _ => return Err(Refusal::BadParameter("keyid")),
        };
        let created = timestamp(params.get("created"), "created")?;
        let expires = timestamp(params.get("expires"), "expires")?;
        match params.get("alg") {
            None => {}
            Some(BareItem::String(alg)) if alg == "ed25519" => {}
            Some(BareItem::String(alg)) => return Err(Refusal::UnsupportedAlg(alg.clone())),
            Some(_) => return Err(Refusal::BadParameter("alg")),
        }
        let nonce = match params.get("nonce") {
            None => None,
            Some(BareItem::String(n)) if n.len() > MAX_NONCE_LEN => {
                return Err(Refusal::NonceTooLong)
            }
            Some(BareItem::String(n)) => Some(n.clone()),
            Some(_) => return Err(Refusal::BadParameter("nonce")),
        };
        if nonce.is_none() && self.policy.require_nonce {
            return Err(Refusal::MissingNonce);
        }
        let now = self.clock.now();
        self.check_times(created, expires, now)?;

        let covers = |name: &str| {
            chosen
                .covered
                .items
                .iter()
                .any(|i| i.bare == BareItem::String(name.to_owned()) && i.params.is_empty())
        };
        if !covers("@authority") {
            return Err(Refusal::AuthorityNotCovered);
        }
        let agent_header = signature_agent(req, &chosen.label)?;
        let agent_covered = chosen.covered.items.iter().any(|i| {
            i.bare == BareItem::String("signature-agent".to_owned())
                && match i.params.iter().collect::<Vec<_>>()[..] {
                    [] => true,
                    [("key", BareItem::String(k))] => *k == chosen.label,
                    _ => false,
                }
        });
        if agent_header.is_some() && !agent_covered {
            return Err(Refusal::SignatureAgentNotCovered);
        }
        let (agent, key) = self.find_key(agent_header.as_deref(), &keyid)?;

        let base = signature_base(req, &chosen.covered).map_err(Refusal::Base)?;
        UnparsedPublicKey::new(&ED25519, &key.public)
            .verify(&base, &chosen.signature)
            .map_err(|_| Refusal::BadSignature)?;

        if let Some(n) = &nonce {
            let until = expires.saturating_add(self.policy.max_skew);
            self.nonces
                .spend(&keyid, n, now, until)
                .map_err(|e| match e {
                    NonceRefused::Replayed => Refusal::Replayed,
                    NonceRefused::Full => Refusal::NonceStoreFull,
                })?;
        }
        Ok(VerifiedAgent {
            agent: agent.to_owned(),
            keyid,
            label: chosen.label,
            created,
            expires,
            nonce,
        })
    }

    fn check_times(&self, created: u64, expires: u64, now: u64) -> Result<(), Refusal> {
        let p = &self.policy;
        if expires <= created {
            return Err(Refusal::ExpiresBeforeCreated { created, expires });
        }
        if created > now.saturating_add(p.max_skew) {
            return Err(Refusal::CreatedInFuture { created, now });
        }
        if now > expires.saturating_add(p.max_skew) {
            return Err(Refusal::Expired { expires, now });
        }
        if now > created.saturating_add(p.max_age).saturating_add(p.max_skew) {
            return Err(Refusal::TooOld { created, now });
        }
        if expires
            > now
                .saturating_add(p.max_validity)
                .saturating_add(p.max_skew)
        {
            return Err(Refusal::ExpiresTooFar { expires, now });
        }
        Ok(())
    }

    fn find_key(&self, agent: Option<&str>, keyid: &str) -> Result<(&str, &DirectoryKey), Refusal> {
        match agent {
            Some(agent) => {
                let (name, dir) = self
                    .directories
                    .iter()
                    .find(|(a, _)| a == agent)
                    .ok_or_else(|| Refusal::UnknownAgent(agent.to_owned()))?;
                let key = dir
                    .key(keyid)
                    .ok_or_else(|| Refusal::UnknownKey(keyid.to_owned()))?;
                Ok((name.as_str(), key))
            }
            None => self
                .directories
                .iter()
                .find_map(|(name, dir)| dir.key(keyid).map(|k| (name.as_str(), k)))
                .ok_or_else(|| Refusal::UnknownKey(keyid.to_owned())),
        }
    }
}

/// A field's lines joined by `", "`, or `None` when absent.
fn combined(req: &RequestParts<'_>, name: &'static str) -> Result<Option<String>, Refusal> {
    let mut out: Option<String> = None;
    for value in req.headers.get_all(name) {
        let text = value.to_str().map_err(|_| Refusal::FieldNotText(name))?;
        match &mut out {
            Some(s) => {
                s.push_str(", ");
                s.push_str(text);
            }
            None => out = Some(text.to_owned()),
        }
    }
    Ok(out)
}

/// The first signature tagged `web-bot-auth`, with its covered components and bytes.
fn choose(req: &RequestParts<'_>) -> Result<Chosen, Refusal> {
    let input = combined(req, "signature-input")?.ok_or(Refusal::NoSignatureInput)?;
    let signature = combined(req, "signature")?.ok_or(Refusal::NoSignature)?;
    let inputs = sf::parse_dictionary(input.as_bytes()).map_err(Refusal::BadSignatureInput)?;
    let mut other_tag = String::from("none");
    for (label, member) in inputs.iter() {
        let Member::InnerList(list) = member else {
            continue;
        };
        match list.params.get("tag") {
            Some(BareItem::String(tag)) if tag == TAG => {
                let signatures = sf::parse_dictionary(signature.as_bytes())
                    .map_err(Refusal::BadSignatureField)?;
                let bytes = match signatures.get(label) {
                    Some(Member::Item(item)) => match &item.bare {
                        BareItem::ByteSeq(b) => b.clone(),
                        _ => return Err(Refusal::NoSignatureForLabel(label.to_owned())),
                    },
                    _ => return Err(Refusal::NoSignatureForLabel(label.to_owned())),
                };
                return Ok(Chosen {
                    label: label.to_owned(),
                    covered: list.clone(),
                    signature: bytes,
                });
            }
            Some(BareItem::String(tag)) => other_tag = format!("{tag:?}"),
            _ => {}
        }
    }
    Err(Refusal::WrongTag(other_tag))
}

/// The key directory URL `Signature-Agent` names: a structured string, or a dictionary whose
/// member for the signature's label is one.
fn signature_agent(req: &RequestParts<'_>, label: &str) -> Result<Option<String>, Refusal> {
    let Some(text) = combined(req, "signature-agent")? else {
        return Ok(None);
    };
    if let Ok(item) = sf::parse_item(text.as_bytes()) {
        return match item.bare {
            BareItem::String(url) => Ok(Some(url)),
            _ => Err(Refusal::BadSignatureAgent),
        };
    }
    let dict = sf::parse_dictionary(text.as_bytes()).map_err(|_| Refusal::BadSignatureAgent)?;
    match dict.get(label) {
        Some(Member::Item(item)) => match &item.bare {
            BareItem::String(url) => Ok(Some(url.clone())),
            _ => Err(Refusal::BadSignatureAgent),
        },
        _ => Err(Refusal::BadSignatureAgent),
    }
}

fn timestamp(value: Option<&BareItem>, name: &'static str) -> Result<u64, Refusal> {
    match value {
        Some(BareItem::Integer(t)) if *t >= 0 => Ok(t.unsigned_abs()),
        _ => Err(Refusal::BadParameter(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_nonces_refuse_replays_and_stay_bounded() {
        let nonces = MemoryNonces::new(2);
        assert_eq!(nonces.spend("k", "a", 100, 200), Ok(()));
        assert_eq!(
            nonces.spend("k", "a", 150, 200),
            Err(NonceRefused::Replayed)
        );
        assert_eq!(nonces.spend("k2", "a", 150, 200), Ok(()));
        assert_eq!(nonces.spend("k", "b", 150, 200), Err(NonceRefused::Full));
        // Once the first two have expired they make room.
        assert_eq!(nonces.spend("k", "b", 201, 300), Ok(()));
        assert_eq!(nonces.spend("k", "a", 202, 300), Ok(()));
    }
}
