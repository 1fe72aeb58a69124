//! The decision engine: a call's price against the rails and the credentials presented.

use std::sync::Arc;

use crate::{CallFacts, Challenge, Credential, Grant, Price, Rail, RailId, Refusal, Verdict};

/// What the gate does with one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The call costs nothing: forward it.
    Free,
    /// A credential paid for the call: forward it, then settle with the granting rail.
    Pass(Grant),
    /// No credential paid for the call (none presented, or only stale ones): answer with
    /// every available challenge (HTTP 402, or 401 where only OAuth is offered).
    Challenge {
        /// One challenge per rail that can be offered.
        challenges: Vec<Challenge>,
        /// Why each presented credential was turned down (empty when none was presented).
        refusals: Vec<Refusal>,
    },
    /// A presented credential is forged or malformed: answer 401, with fresh challenges.
    Invalid {
        /// What was wrong with the credential.
        refusal: Refusal,
        /// Fresh challenges to try again with.
        challenges: Vec<Challenge>,
    },
    /// No rail can be offered or decide right now: fail closed (HTTP 503).
    Unavailable {
        /// Why each rail could not serve the call.
        refusals: Vec<Refusal>,
    },
}

/// Decides one call.
///
/// - A free call passes and no credential is touched.
/// - Each presented credential whose rail the price accepts is verified, in the order
///   presented; the first to pass wins, and no later credential is touched.
/// - A credential for a rail the price does not accept is refused as stale (the caller learns
///   which rails are accepted from the challenges).
/// - A credential that could not be checked because its rail's backend is down (a store, a
///   Lightning node, an issuer) fails the call closed: [`Decision::Unavailable`] (HTTP 503),
///   with no fresh challenge. The caller's credential may be perfectly good; a fresh challenge
///   would have an auto-paying client pay again and a solver solve again for nothing.
/// - Otherwise the caller gets a challenge from every offered rail that can be offered now.
pub async fn decide(
    rails: &[Arc<dyn Rail>],
    call: &CallFacts,
    price: &Price,
    credentials: &[Credential],
) -> Decision {
    if price.is_free() {
        return Decision::Free;
    }
    let rail_for = |kind: RailId| rails.iter().find(|r| r.kind() == kind);
    let mut refusals = Vec::new();
    let mut invalid = None;
    let mut unavailable = false;
    for cred in credentials {
        let kind = cred.rail();
        let (Some(offer), Some(rail)) = (price.offer(kind), rail_for(kind)) else {
            refusals.push(Refusal::new(
                kind,
                format!("this call does not accept {kind}"),
            ));
            continue;
        };
        match rail.verify(call, offer, cred).await {
            Verdict::Pass(grant) => return Decision::Pass(grant),
            Verdict::Stale(r) => refusals.push(r),
            Verdict::Unavailable(r) => {
                unavailable = true;
                refusals.push(r);
            }
            Verdict::Invalid(r) => {
                if invalid.is_none() {
                    invalid = Some(r);
                }
            }
        }
    }
    if unavailable && invalid.is_none() {
        return Decision::Unavailable { refusals };
    }
    let mut challenges = Vec::new();
    for offer in &price.offers {
        if let Some(rail) = rail_for(offer.rail()) {
            if let Some(c) = rail.challenge(call, offer).await {
                challenges.push(c);
            }
        }
    }
    if let Some(refusal) = invalid {
        return Decision::Invalid {
            refusal,
            challenges,
        };
    }
    if challenges.is_empty() {
        if refusals.is_empty() {
            refusals.push(Refusal::new(
                price.offers[0].rail(),
                "no way through can be offered right now",
            ));
        }
        return Decision::Unavailable { refusals };
    }
    Decision::Challenge {
        challenges,
        refusals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxFuture, Offer};

    const TOY: RailId = RailId::new("toy");
    const OTHER: RailId = RailId::new("other");
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A rail that passes solutions whose first nonce is 1, calls 2 stale and anything else
    /// invalid; counts verifications.
    struct Toy(AtomicUsize, bool);
    impl Rail for Toy {
        fn kind(&self) -> RailId {
            TOY
        }
        fn challenge<'a>(
            &'a self,
            _: &'a CallFacts,
            _: &'a Offer,
        ) -> BoxFuture<'a, Option<Challenge>> {
            let offer = self.1;
            Box::pin(async move {
                offer.then(|| Challenge {
                    rail: TOY,
                    www_authenticate: "Toy x=1".into(),
                    details: serde_json::json!({"rail": "toy"}),
                })
            })
        }
        fn verify<'a>(
            &'a self,
            _: &'a CallFacts,
            _: &'a Offer,
            c: &'a Credential,
        ) -> BoxFuture<'a, Verdict> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let solution = c.payload::<u64>().copied();
            Box::pin(async move {
                match solution {
                    Some(1) => Verdict::Pass(Grant {
                        rail: TOY,
                        identity: None,
                        receipt: None,
                        about: None,
                    }),
                    Some(2) => Verdict::Stale(Refusal::new(TOY, "spent")),
                    Some(4) => Verdict::Unavailable(Refusal::new(TOY, "store down")),
                    _ => Verdict::Invalid(Refusal::new(TOY, "bad")),
                }
            })
        }
    }

    fn pow(n: u64) -> Credential {
        Credential::new(TOY, n)
    }

    fn call() -> CallFacts {
        CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some("t".into()),
            args_hash: [0; 32],
            caller: None,
            peer: None,
            now: 0,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The futures here never wait, so one poll with a no-op waker finishes them.
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("toy futures never wait"),
        }
    }

    #[test]
    fn engine_paths() {
        let toy = Arc::new(Toy(AtomicUsize::new(0), true));
        let rails: Vec<Arc<dyn Rail>> = vec![toy.clone()];
        let priced = Price::of(vec![Offer::new(TOY, serde_json::Map::new())]);
        assert_eq!(
            block_on(decide(&rails, &call(), &Price::free(), &[pow(1)])),
            Decision::Free
        );
        assert_eq!(
            toy.0.load(Ordering::SeqCst),
            0,
            "free calls touch no credential"
        );

        assert!(matches!(
            block_on(decide(&rails, &call(), &priced, &[pow(1)])),
            Decision::Pass(_)
        ));
        match block_on(decide(&rails, &call(), &priced, &[])) {
            Decision::Challenge {
                challenges,
                refusals,
            } => {
                assert_eq!(challenges.len(), 1);
                assert!(refusals.is_empty());
            }
            d => panic!("{d:?}"),
        }
        match block_on(decide(&rails, &call(), &priced, &[pow(2)])) {
            Decision::Challenge { refusals, .. } => assert_eq!(refusals[0].reason, "spent"),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            block_on(decide(&rails, &call(), &priced, &[pow(3)])),
            Decision::Invalid { .. }
        ));
        // First passing credential wins even after an invalid one.
        assert!(matches!(
            block_on(decide(&rails, &call(), &priced, &[pow(3), pow(1)])),
            Decision::Pass(_)
        ));
        // A credential for a rail not offered is refused, not verified.
        let n = toy.0.load(Ordering::SeqCst);
        let oauth_only = Price::of(vec![Offer::new(OTHER, serde_json::Map::new())]);
        assert!(matches!(
            block_on(decide(&rails, &call(), &oauth_only, &[pow(1)])),
            Decision::Unavailable { .. }
        ));
        assert_eq!(toy.0.load(Ordering::SeqCst), n);
    }

    /// Found by the Lightning fault tests (tests/e2e/test_faults.py): with the node unable to
    /// confirm a payment, the caller got a fresh invoice (402) for a credential it had paid.
    #[test]
    fn a_credential_that_cannot_be_checked_fails_closed_without_a_challenge() {
        let toy = Arc::new(Toy(AtomicUsize::new(0), true));
        let rails: Vec<Arc<dyn Rail>> = vec![toy];
        let priced = Price::of(vec![Offer::new(TOY, serde_json::Map::new())]);
        match block_on(decide(&rails, &call(), &priced, &[pow(4)])) {
            Decision::Unavailable { refusals } => assert_eq!(refusals[0].reason, "store down"),
            d => panic!("{d:?}"),
        }
        // A stale credential beside it does not change that; a passing one still wins.
        assert!(matches!(
            block_on(decide(&rails, &call(), &priced, &[pow(2), pow(4)])),
            Decision::Unavailable { .. }
        ));
        assert!(matches!(
            block_on(decide(&rails, &call(), &priced, &[pow(4), pow(1)])),
            Decision::Pass(_)
        ));
        // A forged credential is still answered 401.
        assert!(matches!(
            block_on(decide(&rails, &call(), &priced, &[pow(4), pow(3)])),
            Decision::Invalid { .. }
        ));
    }

    #[test]
    fn nothing_offerable_fails_closed() {
        let toy = Arc::new(Toy(AtomicUsize::new(0), false));
        let rails: Vec<Arc<dyn Rail>> = vec![toy];
        let priced = Price::of(vec![Offer::new(TOY, serde_json::Map::new())]);
        assert!(matches!(
            block_on(decide(&rails, &call(), &priced, &[])),
            Decision::Unavailable { .. }
        ));
    }
}
