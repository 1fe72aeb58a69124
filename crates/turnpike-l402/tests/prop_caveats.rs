//! Property: caveats only narrow.
//!
//! Anyone holding a macaroon can append caveats, so appending must never widen what it allows:
//! for random first-party caveat lists `base` and `extra` and a random call, if `base + extra`
//! allows the call then `base` alone does, and every limit (`expires`, `credit_msat`) of
//! `base + extra` is at most that of `base`. On the macaroon itself: appending a caveat keeps the
//! signature chain valid for the root key (attenuation works offline), while dropping, changing
//! or reordering a caveat of a signed macaroon breaks it (a holder cannot widen).

use proptest::prelude::*;
use turnpike_core::CallFacts;
use turnpike_l402::caveat::Constraints;
use turnpike_l402::macaroon::{Caveat, Limits};
use turnpike_l402::BillingMode;
use turnpike_l402::Macaroon;

const TOOLS: &[&str] = &["echo", "add", "slow", "whoami"];
const METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read", "tools/list"];
const RESOURCES: &[&str] = &["/mcp", "/other"];
const MODES: &[&str] = &["per_call", "balance", "time_pass"];

fn subset(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::subsequence(items, 1..=items.len()).prop_map(|v| v.join(","))
}

fn caveat() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(RESOURCES).prop_map(|r| format!("turnpike/resource={r}")),
        subset(METHODS).prop_map(|m| format!("turnpike/methods={m}")),
        subset(TOOLS).prop_map(|t| format!("turnpike/tools={t}")),
        proptest::sample::select(MODES).prop_map(|m| format!("turnpike/mode={m}")),
        (1_000u64..1_100).prop_map(|e| format!("turnpike/expires={e}")),
        (0u64..10_000).prop_map(|c| format!("turnpike/credit_msat={c}")),
        proptest::sample::select(&[0u8, 1][..])
            .prop_map(|p| format!("preimage={}", hex::encode([p; 32]))),
    ]
}

fn mode(s: &str) -> BillingMode {
    match s {
        "per_call" => BillingMode::PerCall,
        "balance" => BillingMode::Balance,
        _ => BillingMode::TimePass,
    }
}

fn fold(preds: &[String]) -> Option<Constraints> {
    let mut c = Constraints::default();
    for p in preds {
        c.add(p.as_bytes()).ok()?;
    }
    Some(c)
}

prop_compose! {
    fn call()(
        resource in proptest::sample::select(RESOURCES),
        method in proptest::sample::select(METHODS),
        tool in proptest::option::of(proptest::sample::select(TOOLS)),
        now in 990u64..1_110,
    ) -> CallFacts {
        CallFacts {
            resource: resource.into(),
            method: method.into(),
            name: tool.map(Into::into),
            args_hash: [0; 32],
            caller: None,
            peer: None,
            now,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn appending_caveats_never_widens(
        minted_mode in proptest::sample::select(MODES),
        rest in proptest::collection::vec(caveat(), 0..6),
        extra in proptest::collection::vec(caveat(), 1..4),
        c in call(),
        m in proptest::sample::select(MODES),
        preimage in proptest::sample::select(&[0u8, 1][..]),
    ) {
        // Every minted token names its mode (a token without one allows nothing at all), so the
        // base list starts with a mode caveat.
        let base: Vec<String> = std::iter::once(format!("turnpike/mode={minted_mode}")).chain(rest).collect();
        let all: Vec<String> = base.iter().chain(extra.iter()).cloned().collect();
        let (Some(narrow), Some(wide)) = (fold(&all), fold(&base)) else {
            // Every generated caveat is known, so both fold.
            return Err(TestCaseError::fail("a known caveat did not fold"));
        };
        let pre = [preimage; 32];
        if narrow.check(&c, mode(m), &pre).is_ok() {
            prop_assert!(
                wide.check(&c, mode(m), &pre).is_ok(),
                "base {:?} refuses a call that base + {:?} allows", base, extra
            );
        }
        if let Some(w) = wide.expires {
            prop_assert!(narrow.expires.is_some_and(|n| n <= w));
        }
        if let Some(w) = wide.credit_msat {
            prop_assert!(narrow.credit_msat.is_some_and(|n| n <= w));
        }
        // A mode the narrow token names is one the wide token names.
        if let Some(nm) = narrow.mode() {
            if let Some(wm) = wide.modes.as_ref() {
                prop_assert!(wm.contains(turnpike_l402::caveat::mode_str(nm)));
            }
        }
    }

    #[test]
    fn no_mode_caveat_allows_nothing(rest in proptest::collection::vec(caveat(), 0..5), c in call(), m in proptest::sample::select(MODES)) {
        let rest: Vec<String> = rest.into_iter().filter(|p| !p.starts_with("turnpike/mode=")).collect();
        let cons = fold(&rest).ok_or_else(|| TestCaseError::fail("fold"))?;
        prop_assert!(cons.check(&c, mode(m), &[0u8; 32]).is_err());
    }

    #[test]
    fn unknown_caveats_refuse(base in proptest::collection::vec(caveat(), 0..4), key in "[a-z/_]{1,20}") {
        prop_assume!(![
            "turnpike/resource", "turnpike/methods", "turnpike/tools", "turnpike/mode",
            "turnpike/expires", "turnpike/credit_msat", "preimage",
        ].contains(&key.as_str()));
        let mut all = base;
        all.push(format!("{key}=x"));
        prop_assert!(fold(&all).is_none(), "an unknown caveat {} was accepted", key);
    }

    #[test]
    fn holders_can_attenuate_but_not_widen(
        root in any::<[u8; 32]>(),
        base in proptest::collection::vec(caveat(), 1..6),
        extra in proptest::collection::vec(caveat(), 1..3),
        drop in any::<prop::sample::Index>(),
    ) {
        let mut m = Macaroon::new(&root, vec![0u8; 66], "turnpike");
        for c in &base {
            m.add_first_party_caveat(c.as_bytes().to_vec());
        }
        prop_assert!(m.verify_signature(&root));
        let wire = m.encode();
        // The forger below re-encodes correctly: the untouched caveat list still verifies.
        let same = Macaroon::decode(&reencode(&m, m.caveats()), Limits::default()).expect("re-encoded");
        prop_assert!(same.verify_signature(&root));

        // The holder appends caveats to the macaroon it was given: still genuine.
        let mut held = Macaroon::decode(&wire, Limits::default()).expect("own encoding decodes");
        for c in &extra {
            held.add_first_party_caveat(c.as_bytes().to_vec());
        }
        prop_assert!(held.verify_signature(&root));
        prop_assert!(!held.verify_signature(&[root[0] ^ 1; 32]));

        // Dropping one caveat of the signed macaroon (re-encoded with the same signature).
        let i = drop.index(base.len());
        let mut fewer: Vec<Caveat> = m.caveats().to_vec();
        fewer.remove(i);
        let forged = reencode(&m, &fewer);
        if let Ok(f) = Macaroon::decode(&forged, Limits::default()) {
            prop_assert!(!f.verify_signature(&root), "dropping caveat {} kept the signature", i);
        }
        // Changing one caveat's text.
        let mut changed: Vec<Caveat> = m.caveats().to_vec();
        changed[i].id.push(b'x');
        if let Ok(f) = Macaroon::decode(&reencode(&m, &changed), Limits::default()) {
            prop_assert!(!f.verify_signature(&root), "changing caveat {} kept the signature", i);
        }
        // Reordering (when it changes anything).
        if base.len() >= 2 && base[0] != base[base.len() - 1] {
            let mut swapped: Vec<Caveat> = m.caveats().to_vec();
            let last = swapped.len() - 1;
            swapped.swap(0, last);
            if let Ok(f) = Macaroon::decode(&reencode(&m, &swapped), Limits::default()) {
                prop_assert!(!f.verify_signature(&root), "reordering kept the signature");
            }
        }
    }
}

/// A V2 encoding of `m`'s location and identifier with other first-party caveats and `m`'s
/// signature: what a holder who tries to widen a token would send.
fn reencode(m: &Macaroon, caveats: &[Caveat]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, ty: u8, data: &[u8]) {
        out.push(ty);
        let mut n = data.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(data);
    }
    let mut out = vec![2u8];
    field(&mut out, 1, m.location().as_bytes());
    field(&mut out, 2, m.identifier());
    out.push(0);
    for c in caveats {
        field(&mut out, 2, &c.id);
        out.push(0);
    }
    out.push(0);
    field(&mut out, 6, m.signature());
    out
}
