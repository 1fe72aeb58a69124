//! The rail seam: a rail the gateway has never heard of, written here against
//! `turnpike_core::{Rail, RailPlugin, CredentialReader}` alone and registered with one line, is
//! offered beside proof-of-work, reads its own `Authorization` scheme and `_meta` key (through
//! its reader), carries its challenge in a header of its own, speaks in band in its own words,
//! and lets a call through — with no line of the pipeline, credential collection or challenge
//! delivery knowing it. A second one names its callers itself and counts of its own: it has
//! its slot of the metrics' `rail` label and its own series, with no line of the operator's
//! crate knowing it.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use turnpike_core::credential::CredentialParseError;
use turnpike_core::plugin::Parsed;
use turnpike_core::{
    BoxFuture, CallFacts, Challenge, Credential, CredentialReader, EdgeRequest, Grant, Offer,
    Policy, Price, Rail, RailId, RailPlugin, Refusal, Verdict,
};
use turnpike_gateway::{Gate, GateOptions, Rails, TurnpikeLayer};
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

/// A toll booth: pay the toll by presenting the code it names.
const TOLL: RailId = RailId::new("toll");
const CODE: &str = "open-sesame";

/// What a caller presented to the toll booth.
struct TollTicket(String);

struct TollRail;

impl Rail for TollRail {
    fn kind(&self) -> RailId {
        TOLL
    }

    fn challenge<'a>(
        &'a self,
        _call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        let fee = offer.u64_term("fee").unwrap_or(0);
        Box::pin(async move {
            Some(Challenge {
                rail: TOLL,
                // No WWW-Authenticate line: the challenge travels in the rail's own header.
                www_authenticate: String::new(),
                details: json!({"rail": "toll", "fee": fee, "code_hint": "open-…"}),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        _offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        let verdict = match credential.payload::<TollTicket>() {
            Some(TollTicket(code)) if code == CODE => Verdict::Pass(Grant {
                rail: TOLL,
                identity: call.caller.clone(),
                receipt: None,
                about: None,
            }),
            _ => Verdict::Invalid(Refusal::new(TOLL, "wrong code")),
        };
        Box::pin(async move { verdict })
    }
}

/// How toll tickets are read: `Authorization: Toll <code>` and `params._meta["turnpike/toll"]`.
/// (Registered alone, it would recognise tickets where the toll booth is off.)
struct TollTickets;

impl CredentialReader for TollTickets {
    fn parse_authorization(
        &self,
        scheme: &str,
        params: &str,
        _req: &EdgeRequest<'_>,
    ) -> Option<Parsed> {
        scheme.eq_ignore_ascii_case("Toll").then(|| {
            let code = params.trim();
            if code.is_empty() {
                Err(CredentialParseError::Malformed {
                    scheme: "Toll",
                    reason: "missing code".into(),
                })
            } else {
                Ok(Credential::new(TOLL, TollTicket(code.to_owned())))
            }
        })
    }

    fn meta_keys(&self) -> &'static [&'static str] {
        &["turnpike/toll"]
    }

    fn parse_meta(&self, _key: &str, value: &Value) -> Option<Parsed> {
        Some(match value.as_str() {
            Some(code) => Ok(Credential::new(TOLL, TollTicket(code.to_owned()))),
            None => Err(CredentialParseError::Malformed {
                scheme: "toll",
                reason: "turnpike/toll must be a string".into(),
            }),
        })
    }
}

impl RailPlugin for TollRail {
    fn id(&self) -> RailId {
        TOLL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &TollTickets
    }

    fn challenge_order(&self) -> u8 {
        5
    }

    fn challenge_headers(&self, challenge: &Challenge) -> Vec<(&'static str, String)> {
        vec![("toll-required", format!("fee={}", challenge.details["fee"]))]
    }

    fn in_band_text(&self, challenge: &Challenge, _first: bool) -> String {
        format!(
            "Toll: pay {} by retrying with params._meta[\"turnpike/toll\"] = \"<code>\". ",
            challenge.details["fee"]
        )
    }
}

/// What the upstream saw of each forwarded call: its `Authorization` lines and its body.
type Seen = Arc<Mutex<Vec<(usize, Value)>>>;

fn gate() -> Arc<Gate> {
    let keys = KeyRing::from_secrets(vec![(1, [5; 32])]).unwrap();
    let pow = Arc::new(PowRail::new(
        PowConfig::default(),
        keys,
        Arc::new(MemorySpentSet::new()),
    ));
    let mut terms = serde_json::Map::new();
    terms.insert("fee".into(), json!(3));
    let mut policy = Policy::default();
    policy.tools.insert(
        "dear".into(),
        Price::of(vec![turnpike_pow::offer(1000), Offer::new(TOLL, terms)]),
    );
    let mut rails = Rails::default();
    rails.add(pow);
    rails.add(Arc::new(TollRail)); // The one registration line.
    Arc::new(Gate::with_rails(GateOptions::default(), policy, rails))
}

#[tokio::test]
async fn a_new_rail_is_offered_beside_proof_of_work_and_lets_its_callers_through() {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let upstream = tower::service_fn(move |req: Request<Body>| {
        let log = log.clone();
        async move {
            let auth = req.headers().get_all("authorization").iter().count();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let msg: Value = serde_json::from_slice(&body).unwrap();
            log.lock().unwrap().push((auth, msg.clone()));
            let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": []}});
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(answer.to_string()))
                    .unwrap(),
            )
        }
    });
    let svc = tower::ServiceBuilder::new()
        .layer(TurnpikeLayer::new(gate()))
        .service(upstream);

    fn call(meta: Option<Value>) -> Value {
        let mut params = json!({"name": "dear", "arguments": {}});
        if let Some(m) = meta {
            params["_meta"] = m;
        }
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})
    }

    fn request(body: &Value, headers: &[(&str, &str)]) -> Request<Body> {
        let mut b = Request::post("/mcp")
            .header("host", "localhost")
            .header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    async fn json_of(r: Response<Body>) -> Value {
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    // No credential: 402 with both ways through, the toll first (its place in the order), its
    // challenge in its own header, proof-of-work's in WWW-Authenticate.
    let r = svc
        .clone()
        .oneshot(request(&call(None), &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    assert_eq!(r.headers()["toll-required"], "fee=3");
    let www: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
    assert_eq!(
        www.len(),
        1,
        "only proof-of-work has a WWW-Authenticate line"
    );
    assert!(www[0].to_str().unwrap().starts_with("PoW "));
    let v = json_of(r).await;
    let rails: Vec<&str> = v["error"]["data"]["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rail"].as_str().unwrap())
        .collect();
    assert_eq!(rails, ["toll", "pow"]);
    assert!(seen.lock().unwrap().is_empty(), "nothing forwarded");

    // In band: the toll speaks in its own words, proof-of-work after it.
    let r = svc
        .clone()
        .oneshot(request(&call(None), &[("turnpike-challenge", "in-band")]))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("This call needs a credential before it runs: choose one of the ways below. Toll: pay 3 by retrying"),
        "{text}"
    );
    assert!(text.contains("Or, without paying: Proof-of-work"), "{text}");

    // Its own Authorization scheme: through, and the upstream never sees the credential.
    let r = svc
        .clone()
        .oneshot(request(
            &call(None),
            &[("authorization", "Toll open-sesame")],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["id"], 7);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, 0, "the Authorization line is stripped");
    }

    // Its own _meta key: through, and the key is stripped before forwarding.
    let r = svc
        .clone()
        .oneshot(request(
            &call(Some(json!({"turnpike/toll": CODE, "progressToken": 1}))),
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].1["params"]["_meta"], json!({"progressToken": 1}));
    }

    // A wrong code is refused by the rail (401, with fresh challenges); a malformed one too.
    for auth in ["Toll wrong", "Toll "] {
        let r = svc
            .clone()
            .oneshot(request(&call(None), &[("authorization", auth)]))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        assert_eq!(r.headers()["toll-required"], "fee=3");
        let v = json_of(r).await;
        assert_eq!(v["error"]["data"]["refusals"][0]["rail"], "toll");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// A ferry: pay the fare by naming your pass. It names its passengers itself
/// (`Identity::Rail`) and counts of its own (its `RailMeter`): boardings offered, crossings and
/// fares taken — with no line of the gateway's or the operator's crates knowing it.
const FERRY: RailId = RailId::new("ferry");

/// A pass presented to the ferry.
struct FerryPass(String);

/// What the ferry counts.
#[derive(Default)]
struct FerryLog {
    offered: std::sync::atomic::AtomicU64,
    crossings: std::sync::atomic::AtomicU64,
    fares_msat: std::sync::atomic::AtomicU64,
}

struct FerryRail(Arc<FerryLog>);

impl Rail for FerryRail {
    fn kind(&self) -> RailId {
        FERRY
    }

    fn challenge<'a>(
        &'a self,
        _call: &'a CallFacts,
        _offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        Box::pin(async move {
            Some(Challenge {
                rail: FERRY,
                www_authenticate: "Ferry fare=\"5\"".into(),
                details: json!({"rail": "ferry", "fare_msat": 5000}),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        _call: &'a CallFacts,
        _offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        let verdict = match credential.payload::<FerryPass>() {
            Some(FerryPass(name)) => Verdict::Pass(Grant {
                rail: FERRY,
                identity: Some(turnpike_core::Identity::Rail {
                    rail: FERRY.as_str().into(),
                    id: name.clone(),
                }),
                receipt: None,
                about: None,
            }),
            None => Verdict::Invalid(Refusal::new(FERRY, "no pass")),
        };
        Box::pin(async move { verdict })
    }

    fn charged_msat(&self, _grant: &Grant, _offer: &Offer) -> u64 {
        5000
    }
}

/// `Authorization: Ferry <name>`.
struct FerryPasses;

impl CredentialReader for FerryPasses {
    fn parse_authorization(
        &self,
        scheme: &str,
        params: &str,
        _req: &EdgeRequest<'_>,
    ) -> Option<Parsed> {
        scheme
            .eq_ignore_ascii_case("Ferry")
            .then(|| Ok(Credential::new(FERRY, FerryPass(params.trim().to_owned()))))
    }
}

impl RailPlugin for FerryRail {
    fn id(&self) -> RailId {
        FERRY
    }

    fn reader(&self) -> &dyn CredentialReader {
        &FerryPasses
    }

    fn meter(self: Arc<Self>) -> Option<Arc<dyn turnpike_core::RailMeter>> {
        Some(self.0.clone())
    }
}

impl turnpike_core::RailMeter for FerryLog {
    fn challenge_issued(&self, _challenge: &Challenge) {
        self.offered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn call_granted(&self, charged_msat: u64) {
        self.crossings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.fares_msat
            .fetch_add(charged_msat, std::sync::atomic::Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        turnpike_core::meter::write_series(
            out,
            "turnpike_ferry_crossings_total",
            "counter",
            "Calls the ferry carried.",
            n(&self.crossings),
        );
        turnpike_core::meter::write_series(
            out,
            "turnpike_ferry_fares_sats_total",
            "counter",
            "Fares taken, in satoshis.",
            turnpike_core::meter::sats(n(&self.fares_msat)),
        );
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        vec![(
            "ferry_offered",
            self.offered.load(std::sync::atomic::Ordering::Relaxed),
        )]
    }
}

#[tokio::test]
async fn a_new_rail_has_its_metrics_slot_its_own_series_and_names_its_callers() {
    let log = Arc::new(FerryLog::default());
    let mut policy = Policy::default();
    policy.tools.insert(
        "cross".into(),
        Price::of(vec![Offer::new(FERRY, serde_json::Map::new())]),
    );
    let mut rails = Rails::default();
    rails.add(Arc::new(FerryRail(log.clone()))); // The one registration line.
    let gate = Arc::new(Gate::with_rails(GateOptions::default(), policy, rails));
    let metrics = gate.metrics().clone();
    assert_eq!(metrics.rail_labels(), ["none", "ferry"]);
    let upstream = tower::service_fn(|req: Request<Body>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let msg: Value = serde_json::from_slice(&body).unwrap();
        let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": []}});
        Ok::<_, std::convert::Infallible>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(answer.to_string()))
                .unwrap(),
        )
    });
    let svc = tower::ServiceBuilder::new()
        .layer(TurnpikeLayer::new(gate))
        .service(upstream);
    let call = |auth: Option<&str>| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "cross", "arguments": {}}});
        let mut b = Request::post("/mcp")
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::from(body.to_string())).unwrap()
    };

    let r = svc.clone().oneshot(call(None)).await.unwrap();
    assert_eq!(r.status(), 402);
    for _ in 0..2 {
        let r = svc
            .clone()
            .oneshot(call(Some("Ferry alice")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let text = metrics.render(&[]);
    for want in [
        "turnpike_calls_total{method=\"tools/call\",tool=\"cross\",rail=\"ferry\",outcome=\"passed\"} 2\n",
        "turnpike_calls_total{method=\"tools/call\",tool=\"cross\",rail=\"none\",outcome=\"challenged\"} 1\n",
        "turnpike_gateway_duration_seconds_count{rail=\"ferry\"} 2\n",
        "turnpike_rail_up{rail=\"ferry\"} 1\n",
        "# TYPE turnpike_ferry_crossings_total counter\nturnpike_ferry_crossings_total 2\n",
        "turnpike_ferry_fares_sats_total 10\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let sample = metrics.sample();
    assert_eq!(sample.passed, [0, 2]);
    assert_eq!(sample.rails.get("ferry_offered"), Some(1));
    // Its passengers by the names it gave them.
    let top = metrics.top_callers(1);
    assert_eq!(
        (top[0].kind.as_str(), top[0].label.as_str(), top[0].calls),
        ("ferry", "alice", 2)
    );
}
