//! The first-party caveats turnpike mints and understands.
//!
//! Each caveat is the UTF-8 string `key=value`:
//!
//! | caveat | meaning |
//! |---|---|
//! | `turnpike/resource=/mcp` | good only on this protected resource (the gateway's mount path) |
//! | `turnpike/methods=tools/call` | good only for these JSON-RPC methods (comma-separated) |
//! | `turnpike/tools=echo,add` | good only for `tools/call` of these tools (comma-separated) |
//! | `turnpike/expires=1767225600` | good only before this Unix time |
//! | `turnpike/mode=per_call` | how the token pays: `per_call`, `balance` or `time_pass` |
//! | `turnpike/credit_msat=100000` | a balance token may spend at most this much in total |
//! | `turnpike/amount_msat=2000` | what the token's invoice asks for (minted with every token; repeated: the minimum counts) |
//! | `preimage=<64 hex>` | the payment preimage (Aperture's convention for tokens sent in a `Macaroon` header); must match the preimage presented |
//!
//! Anyone holding a macaroon can add caveats, so caveats only ever narrow: when one kind
//! appears more than once, every occurrence must hold — lists intersect, expiry and credit
//! take the minimum, resource and mode must agree. A caveat turnpike does not know refuses the
//! token (a verifier that skipped unknown caveats would grant what their author meant to deny).

use std::collections::BTreeSet;

use turnpike_core::CallFacts;

pub use crate::offer::mode_str;
pub(crate) use crate::offer::{parse_mode, BillingMode};

/// Key of the resource caveat.
pub const RESOURCE: &str = "turnpike/resource";
/// Key of the method caveat.
pub const METHODS: &str = "turnpike/methods";
/// Key of the tool caveat.
pub const TOOLS: &str = "turnpike/tools";
/// Key of the expiry caveat.
pub const EXPIRES: &str = "turnpike/expires";
/// Key of the billing-mode caveat.
pub const MODE: &str = "turnpike/mode";
/// Key of the credit caveat.
pub const CREDIT_MSAT: &str = "turnpike/credit_msat";
/// Key of the invoice-amount caveat: what the token's invoice asks for. The gateway mints it so
/// that a token needs no stored record before it is paid; the first occurrence (the minter's)
/// is what the payment row records, and a later one can only lower what the token counts as.
pub const AMOUNT_MSAT: &str = "turnpike/amount_msat";
/// Key of the preimage caveat (Aperture's, for the `Macaroon` header form).
pub const PREIMAGE: &str = "preimage";

/// Longest list a `tools` or `methods` caveat may carry.
const MAX_LIST: usize = 256;

/// A token's first-party caveats as the access policy reads them (`identity.caveats`):
/// condition → value, each condition once, at its first occurrence (the minter's, for a
/// caveat the gateway mints; a holder's later ones narrow the token, which the rail checks,
/// but do not change what a rule reads). `preimage` caveats are left out. The caveats are
/// bounded by the macaroon's own bounds (its size and number of caveats); a caveat that is
/// not UTF-8 `key=value` (which the rail refuses) is skipped.
pub fn for_policy<'a>(
    caveats: impl IntoIterator<Item = &'a crate::macaroon::Caveat>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for cav in caveats {
        if !cav.is_first_party() {
            continue;
        }
        let Some((key, value)) = std::str::from_utf8(&cav.id)
            .ok()
            .and_then(|t| t.split_once('='))
        else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == PREIMAGE || out.iter().any(|(k, _)| k == key) {
            continue;
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    out
}

/// Why a token's caveats cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaveatError {
    #[error("caveat is not key=value text")]
    /// A caveat that is not `key=value`.
    Syntax,
    #[error("unknown caveat {0:?}")]
    /// A key this gateway does not know (refused rather than ignored).
    Unknown(String),
    #[error("caveat {0} has a malformed value")]
    /// A known key whose value does not parse.
    Value(&'static str),
    #[error("third-party caveats are not supported")]
    /// A third-party caveat.
    ThirdParty,
}

/// Why a token's caveats do not allow a call. The texts are safe to show the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unsatisfied {
    #[error("token expired")]
    /// Past its `expires` caveat.
    Expired,
    #[error("token is for another resource")]
    /// A `resource` caveat that excludes this endpoint.
    Resource,
    #[error("token is not valid for this method")]
    /// A `methods` caveat that excludes this method.
    Method,
    #[error("token is not valid for this tool")]
    /// A `tools` caveat that excludes this tool.
    Tool,
    #[error("token is for another billing mode")]
    /// A `mode` caveat for another billing mode.
    Mode,
    #[error("token names no billing mode")]
    /// No `mode` caveat at all.
    NoMode,
    #[error("token's preimage caveat does not match")]
    /// A preimage caveat that does not match the presented preimage.
    Preimage,
}

/// All of a token's caveats, folded (narrowing only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    /// The resources every `resource` caveat allows.
    pub resources: Option<BTreeSet<String>>,
    /// The methods every `methods` caveat allows.
    pub methods: Option<BTreeSet<String>>,
    /// The tools every `tools` caveat allows.
    pub tools: Option<BTreeSet<String>>,
    /// The earliest `expires` caveat (Unix seconds).
    pub expires: Option<u64>,
    /// The modes every `mode` caveat allows (an empty set when they disagree).
    pub modes: Option<BTreeSet<&'static str>>,
    /// The smallest `credit_msat` caveat.
    pub credit_msat: Option<u64>,
    /// The smallest `amount_msat` caveat (what the invoice asked for, as the token says).
    pub amount_msat: Option<u64>,
    /// Every `preimage` caveat (all must match the presented preimage).
    pub preimages: Vec<[u8; 32]>,
}

fn narrow(slot: &mut Option<BTreeSet<String>>, new: BTreeSet<String>) {
    *slot = Some(match slot.take() {
        Some(old) => old.intersection(&new).cloned().collect(),
        None => new,
    });
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_list(s: &str, what: &'static str) -> Result<BTreeSet<String>, CaveatError> {
    if s.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut out = BTreeSet::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() || out.len() >= MAX_LIST {
            return Err(CaveatError::Value(what));
        }
        out.insert(item.to_string());
    }
    Ok(out)
}

impl Constraints {
    /// Folds caveat predicates. Fails on the first caveat turnpike cannot read.
    pub fn from_caveats<'a>(
        caveats: impl IntoIterator<Item = &'a crate::macaroon::Caveat>,
    ) -> Result<Self, CaveatError> {
        let mut c = Constraints::default();
        for cav in caveats {
            if !cav.is_first_party() {
                return Err(CaveatError::ThirdParty);
            }
            c.add(&cav.id)?;
        }
        Ok(c)
    }

    /// Folds one predicate in.
    pub fn add(&mut self, predicate: &[u8]) -> Result<(), CaveatError> {
        let text = std::str::from_utf8(predicate).map_err(|_| CaveatError::Syntax)?;
        let (key, value) = text.split_once('=').ok_or(CaveatError::Syntax)?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            RESOURCE => narrow(&mut self.resources, BTreeSet::from([value.to_string()])),
            METHODS => narrow(&mut self.methods, parse_list(value, METHODS)?),
            TOOLS => narrow(&mut self.tools, parse_list(value, TOOLS)?),
            EXPIRES => {
                let v = parse_u64(value).ok_or(CaveatError::Value(EXPIRES))?;
                self.expires = Some(self.expires.map_or(v, |old| old.min(v)));
            }
            CREDIT_MSAT => {
                let v = parse_u64(value).ok_or(CaveatError::Value(CREDIT_MSAT))?;
                self.credit_msat = Some(self.credit_msat.map_or(v, |old| old.min(v)));
            }
            AMOUNT_MSAT => {
                let v = parse_u64(value).ok_or(CaveatError::Value(AMOUNT_MSAT))?;
                self.amount_msat = Some(self.amount_msat.map_or(v, |old| old.min(v)));
            }
            MODE => {
                let m = mode_str(parse_mode(value).ok_or(CaveatError::Value(MODE))?);
                self.modes = Some(match self.modes.take() {
                    Some(old) => old.into_iter().filter(|&x| x == m).collect(),
                    None => BTreeSet::from([m]),
                });
            }
            PREIMAGE => {
                let mut p = [0u8; 32];
                hex::decode_to_slice(value, &mut p).map_err(|_| CaveatError::Value(PREIMAGE))?;
                self.preimages.push(p);
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(CaveatError::Unknown(shown));
            }
        }
        Ok(())
    }

    /// The billing mode the token names, when its mode caveats agree on exactly one.
    pub fn mode(&self) -> Option<BillingMode> {
        let modes = self.modes.as_ref()?;
        if modes.len() != 1 {
            return None;
        }
        modes.iter().next().and_then(|m| parse_mode(m))
    }

    /// Checks the constraints against a call billed as `mode`, with `preimage` presented.
    pub fn check(
        &self,
        call: &CallFacts,
        mode: BillingMode,
        preimage: &[u8],
    ) -> Result<(), Unsatisfied> {
        if self
            .preimages
            .iter()
            .any(|p| !turnpike_core::ct_eq(p, preimage))
        {
            return Err(Unsatisfied::Preimage);
        }
        match &self.modes {
            None => return Err(Unsatisfied::NoMode),
            Some(m) if !m.contains(mode_str(mode)) => return Err(Unsatisfied::Mode),
            Some(_) => {}
        }
        if let Some(exp) = self.expires {
            if call.now >= exp {
                return Err(Unsatisfied::Expired);
            }
        }
        if let Some(r) = &self.resources {
            if !r.contains(&call.resource) {
                return Err(Unsatisfied::Resource);
            }
        }
        if let Some(m) = &self.methods {
            if !m.contains(&call.method) {
                return Err(Unsatisfied::Method);
            }
        }
        if let Some(t) = &self.tools {
            let ok =
                call.method == "tools/call" && call.name.as_ref().is_some_and(|n| t.contains(n));
            if !ok {
                return Err(Unsatisfied::Tool);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy reads each condition once, at its first occurrence, and never a preimage.
    #[test]
    fn caveats_for_the_policy() {
        use crate::macaroon::Caveat;
        let cavs: Vec<Caveat> = [
            "turnpike/mode=balance",
            "turnpike/tools = a,b",
            "preimage=00",
            "turnpike/tools=b",
            "no equals sign",
        ]
        .into_iter()
        .map(Caveat::first_party)
        .collect();
        let got = for_policy(&cavs);
        let want = [("turnpike/mode", "balance"), ("turnpike/tools", "a,b")];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
    }

    fn call(tool: &str, now: u64) -> CallFacts {
        CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some(tool.into()),
            args_hash: [0; 32],
            caller: None,
            peer: None,
            now,
        }
    }

    fn fold(preds: &[&str]) -> Result<Constraints, CaveatError> {
        let mut c = Constraints::default();
        for p in preds {
            c.add(p.as_bytes())?;
        }
        Ok(c)
    }

    #[test]
    fn all_must_hold() {
        let c = fold(&[
            "turnpike/resource=/mcp",
            "turnpike/methods=tools/call",
            "turnpike/tools=echo,add",
            "turnpike/expires=100",
            "turnpike/mode=per_call",
        ])
        .unwrap();
        assert_eq!(
            c.check(&call("echo", 50), BillingMode::PerCall, &[]),
            Ok(())
        );
        assert_eq!(
            c.check(&call("other", 50), BillingMode::PerCall, &[]),
            Err(Unsatisfied::Tool)
        );
        assert_eq!(
            c.check(&call("echo", 100), BillingMode::PerCall, &[]),
            Err(Unsatisfied::Expired)
        );
        assert_eq!(
            c.check(&call("echo", 50), BillingMode::Balance, &[]),
            Err(Unsatisfied::Mode)
        );
        let mut other = call("echo", 50);
        other.resource = "/other".into();
        assert_eq!(
            c.check(&other, BillingMode::PerCall, &[]),
            Err(Unsatisfied::Resource)
        );
        let mut read = call("echo", 50);
        read.method = "resources/read".into();
        assert_eq!(
            c.check(&read, BillingMode::PerCall, &[]),
            Err(Unsatisfied::Method)
        );
    }

    #[test]
    fn later_caveats_only_narrow() {
        let c = fold(&[
            "turnpike/mode=balance",
            "turnpike/tools=echo,add",
            "turnpike/tools=add,delete",
            "turnpike/expires=100",
            "turnpike/expires=500",
            "turnpike/credit_msat=9000",
            "turnpike/credit_msat=99999",
        ])
        .unwrap();
        assert_eq!(c.tools, Some(BTreeSet::from(["add".to_string()])));
        assert_eq!(c.expires, Some(100));
        assert_eq!(c.credit_msat, Some(9000));
        let amounts = fold(&["turnpike/amount_msat=700", "turnpike/amount_msat=9000"]).unwrap();
        assert_eq!(amounts.amount_msat, Some(700));
        assert_eq!(
            fold(&["turnpike/amount_msat=x"]),
            Err(CaveatError::Value(AMOUNT_MSAT))
        );
        assert_eq!(
            c.check(&call("echo", 1), BillingMode::Balance, &[]),
            Err(Unsatisfied::Tool)
        );
        assert_eq!(
            c.check(&call("delete", 1), BillingMode::Balance, &[]),
            Err(Unsatisfied::Tool)
        );
        let widened = fold(&["turnpike/mode=per_call", "turnpike/mode=time_pass"]).unwrap();
        assert_eq!(widened.mode(), None);
        assert_eq!(
            widened.check(&call("x", 1), BillingMode::TimePass, &[]),
            Err(Unsatisfied::Mode)
        );
        let two_resources = fold(&[
            "turnpike/mode=per_call",
            "turnpike/resource=/mcp",
            "turnpike/resource=/x",
        ])
        .unwrap();
        assert_eq!(
            two_resources.check(&call("x", 1), BillingMode::PerCall, &[]),
            Err(Unsatisfied::Resource)
        );
    }

    #[test]
    fn unknown_and_malformed_refuse() {
        assert_eq!(
            fold(&["turnpike/admin=true"]),
            Err(CaveatError::Unknown("turnpike/admin".into()))
        );
        assert_eq!(fold(&["time < 2030"]), Err(CaveatError::Syntax));
        assert_eq!(
            fold(&["turnpike/expires=-1"]),
            Err(CaveatError::Value(EXPIRES))
        );
        assert_eq!(fold(&["turnpike/mode=free"]), Err(CaveatError::Value(MODE)));
        assert_eq!(
            fold(&["turnpike/tools=a,,b"]),
            Err(CaveatError::Value(TOOLS))
        );
        let mut c = Constraints::default();
        assert_eq!(c.add(&[0xff, b'=']), Err(CaveatError::Syntax));
        let none = fold(&[]).unwrap();
        assert_eq!(
            none.check(&call("x", 1), BillingMode::PerCall, &[]),
            Err(Unsatisfied::NoMode)
        );
    }

    #[test]
    fn preimage_caveat_must_match() {
        let p = [5u8; 32];
        let c = fold(&[
            "turnpike/mode=per_call",
            &format!("preimage={}", hex::encode(p)),
        ])
        .unwrap();
        assert_eq!(c.check(&call("x", 1), BillingMode::PerCall, &p), Ok(()));
        assert_eq!(
            c.check(&call("x", 1), BillingMode::PerCall, &[6u8; 32]),
            Err(Unsatisfied::Preimage)
        );
    }
}
