//! The registration seam: a rail the gateway has never heard of, its registration written
//! here against `turnpike_conf::RailConf` alone and registered with one line (its entry in
//! [`RAILS`]), reads its own table and its key in a price beside proof-of-work's, its mistakes
//! are placed and worded as every other's (an unknown key in its table, a price naming it while
//! its table is missing, the tables and price keys listed in hints), and it is built by its own
//! `build` when its table is there — with no line of the gateway's configuration module or
//! rail set knowing it.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map};
use turnpike_conf::{
    fields, Build, BuildError, Built, Cx, DeValue, Host, RailConf, Section, Sections, Spanned,
};
use turnpike_core::{
    BoxFuture, CallFacts, Challenge, Credential, CredentialReader, Offer, RailId, RailPlugin,
    Refusal, Verdict,
};
use turnpike_gateway::config::parse_with;
use turnpike_gateway::Rails;

const TOLL: RailId = RailId::new("toll");

/// `[toll]`: the booth that takes the toll.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TollSection {
    booth: String,
    #[serde(default)]
    max_fee: Option<u64>,
}

struct TollConf;

/// The running rail: a booth that names itself in its challenge and lets nobody through.
struct Booth(String);

impl turnpike_core::Rail for Booth {
    fn kind(&self) -> RailId {
        TOLL
    }

    fn challenge<'a>(
        &'a self,
        _call: &'a CallFacts,
        _offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        let details = json!({ "booth": self.0 });
        Box::pin(async move {
            Some(Challenge {
                rail: TOLL,
                www_authenticate: String::new(),
                details,
            })
        })
    }

    fn verify<'a>(
        &'a self,
        _call: &'a CallFacts,
        _offer: &'a Offer,
        _credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move { Verdict::Invalid(Refusal::new(TOLL, "closed")) })
    }
}

/// The booth reads no credentials of its own.
struct NoTickets;

impl CredentialReader for NoTickets {}

impl RailPlugin for Booth {
    fn id(&self) -> RailId {
        TOLL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &NoTickets
    }
}

fn toll(fee: u64) -> Offer {
    let Some(terms) = json!({ "fee": fee }).as_object().cloned() else {
        return Offer::new(TOLL, Map::new());
    };
    Offer::new(TOLL, terms)
}

impl RailConf for TollConf {
    fn id(&self) -> RailId {
        TOLL
    }

    fn tables(&self) -> &'static [&'static str] {
        &["toll"]
    }

    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some(("toll", "add a [toll] table naming the booth"))
    }

    fn read(
        &self,
        cx: &mut Cx<'_>,
        _name: &str,
        value: &Spanned<DeValue<'_>>,
        _host: &Host<'_>,
        out: &mut Sections,
    ) {
        let s = Section::new("[toll]", "see the toll booth's manual");
        if let Some(t) = cx.section::<TollSection>(value, s) {
            out.set("toll", t);
        }
    }

    fn price(&self, cx: &mut Cx<'_>, value: &Spanned<DeValue<'_>>) -> Option<Offer> {
        let fee: u64 = cx.value(value, "write toll = <fee>")?;
        Some(toll(fee))
    }

    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)> {
        vec![("toll".into(), fields::<TollSection>())]
    }

    fn describe(&self, offer: &Offer, _sections: &Sections) -> String {
        format!("toll {}", offer.u64_term("fee").unwrap_or(0))
    }

    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        let Some(t) = build.sections.get::<TollSection>("toll") else {
            return Err(BuildError("toll rail: no [toll] section".into()));
        };
        if t.booth.is_empty() {
            return Err(BuildError("toll rail: the booth has no name".into()));
        }
        Ok(Built::new(Arc::new(Booth(t.booth.clone()))))
    }
}

/// The rails of a gateway that takes tolls: the one line that registers the toll, and
/// proof-of-work.
static RAILS: &[&dyn RailConf] = &[&TollConf, &turnpike_pow::conf::PowConf];

/// The toll alone (proof-of-work, always on, would keep its keys in the data directory).
static TOLL_ONLY: &[&dyn RailConf] = &[&TollConf];

const UPSTREAM: &str = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n";

#[test]
fn a_rail_of_its_own_reads_its_table_and_its_price() {
    let src = format!(
        "{UPSTREAM}[toll]\nbooth = \"north\"\n[pow]\nexpiry_secs = 60\n[tools.default]\npow = 1000\ntoll = 5\n"
    );
    let c = parse_with(&src, "t.toml", RAILS).unwrap();
    c.validate().unwrap();
    let t = c.rails.get::<TollSection>("toll").unwrap();
    assert_eq!((t.booth.as_str(), t.max_fee), ("north", None));
    assert_eq!(turnpike_pow::conf::section(&c.rails).expiry_secs, 60);
    // The offers come in the order the rails are registered.
    assert_eq!(
        c.tools["default"].offers,
        vec![toll(5), turnpike_pow::offer(1000)]
    );
    assert_eq!(
        c.policy().price("tools/call", Some("any")).offers,
        vec![toll(5), turnpike_pow::offer(1000)]
    );
}

#[test]
fn its_mistakes_are_placed_and_worded_as_every_other() {
    let src = format!(
        "{UPSTREAM}[tools.default]\ntoll = 5\n[tools.x]\nl402 = {{ sat = 1 }}\n[lightning]\nbackend = \"dev\"\n"
    );
    let e = parse_with(&src, "t.toml", RAILS).unwrap_err().to_string();
    for want in [
        "t.toml:4:8: this price names toll, but there is no [toll] section\n    hint: add a [toll] table naming the booth",
        // A rail this gateway does not run is neither a price key nor a table.
        "t.toml:6:1: unknown rail or key `l402` in [tools.x]\n    hint: the keys of [tools.x] are: free, toll, pow",
        "t.toml:7:2: unknown table `lightning`\n    hint: the tables are [server], [upstream], [[mount]], [merge], [[policy]], [classes.<name>], [tools.<name>], [methods.\"<method>\"], [toll], [pow], [limits],",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }

    let src = format!("{UPSTREAM}[toll]\nbooth = \"north\"\nfee = 3\nmax_fee = \"high\"\n");
    let e = parse_with(&src, "t.toml", RAILS).unwrap_err().to_string();
    for want in [
        "t.toml:5:1: unknown key `fee` in [toll]\n    hint: the keys of [toll] are: booth, max_fee",
        "t.toml:6:11: invalid type: string \"high\", expected u64\n    hint: see the toll booth's manual",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
}

#[test]
fn the_reference_keys_come_from_the_rails_registered() {
    let keys = turnpike_gateway::config::reference_keys();
    for table in [
        "pow",
        "pow.load",
        "l402",
        "lightning (lnd)",
        "oauth",
        "oauth.introspection",
    ] {
        assert!(
            keys.iter().any(|(t, _)| t == table),
            "no keys for [{table}]"
        );
    }
    assert_eq!(
        TollConf.reference_keys(),
        vec![("toll".to_string(), vec!["booth", "max_fee"])]
    );
}

#[test]
fn it_is_built_by_its_own_build_when_its_table_is_there() {
    let src = format!("{UPSTREAM}[toll]\nbooth = \"north\"\n[tools.default]\ntoll = 5\n");
    let c = parse_with(&src, "t.toml", TOLL_ONLY).unwrap();
    let rails = Rails::from_config_with(&c, TOLL_ONLY).unwrap();
    assert_eq!(rails.get::<Booth>().unwrap().0, "north");
    assert_eq!(rails.plugin(TOLL).unwrap().id(), TOLL);
    assert_eq!(rails.all.len(), 1);

    // Off without its table: not built (and it has no recogniser to leave in its place).
    let c = parse_with(UPSTREAM, "t.toml", TOLL_ONLY).unwrap();
    let rails = Rails::from_config_with(&c, TOLL_ONLY).unwrap();
    assert!(rails.get::<Booth>().is_none() && rails.edge().is_empty());

    // Its own error, in its own words.
    let src = format!("{UPSTREAM}[toll]\nbooth = \"\"\n");
    let c = parse_with(&src, "t.toml", TOLL_ONLY).unwrap();
    let e = Rails::from_config_with(&c, TOLL_ONLY).err().unwrap();
    assert_eq!(e.to_string(), "toll rail: the booth has no name");
}

#[test]
fn the_gateways_own_rails_leave_their_recognisers_when_off() {
    let c = turnpike_gateway::config::parse(UPSTREAM, "t.toml").unwrap();
    let dir = std::env::temp_dir().join(format!("turnpike-rail-conf-seam-{}", std::process::id()));
    let mut c = c;
    c.server.data_dir = dir.clone();
    let rails = Rails::from_config(&c).unwrap();
    let ids: Vec<&str> = rails.edge().iter().map(|r| r.id().as_str()).collect();
    assert_eq!(ids, ["pow", "l402", "mpp", "x402", "oauth", "agent"]);
    assert_eq!(rails.all.len(), 1);
    assert!(rails.get::<turnpike_pow::PowRail>().is_some());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_hint_of_a_price_lists_the_rails_registered() {
    let src = format!("{UPSTREAM}[tools.default]\n");
    let e = turnpike_gateway::config::parse(&src, "t.toml")
        .unwrap_err()
        .to_string();
    let want = "hint: write `free = true`, or `pow = <effort>` and/or `l402 = { sat = <n> }` and/or `mpp = { sat = <n> }` and/or `x402 = { amount = \"<n>\" }` and/or `oauth = true` and/or `agent = true`, e.g. `pow = 200000`";
    assert!(e.contains(want), "{e}");
    // A rail that gives no hint is left out of it.
    let e = parse_with(&src, "t.toml", RAILS).unwrap_err().to_string();
    let want = "hint: write `free = true`, or `pow = <effort>`, e.g. `pow = 200000`";
    assert!(e.contains(want), "{e}");
}

#[test]
fn it_has_a_limit_class_and_a_metrics_slot_of_its_own() {
    // `[limits.rails.toll]` is the toll's class; the loop brake may watch it by name.
    let src = format!(
        "{UPSTREAM}[toll]\nbooth = \"north\"\n[limits.rails.toll]\nburst = 3\nrate = \"1/s\"\n[limits.loop_brake]\nrails = [\"toll\"]\n"
    );
    let c = parse_with(&src, "t.toml", TOLL_ONLY).unwrap();
    let class = turnpike_limits::RailClass::from(Some(TOLL));
    assert_eq!(c.limits.rails[&class].burst, 3);
    assert!(c.limits.loop_brake.watches("anything", Some(TOLL)));

    // A name no registered rail has: at its place, with the names that are.
    let src = format!(
        "{UPSTREAM}[limits.rails.gold]\nburst = 3\nrate = \"1/s\"\n[limits.loop_brake]\nrails = [\"toll\", \"silver\"]\n"
    );
    let e = parse_with(&src, "t.toml", RAILS).unwrap_err().to_string();
    for want in [
        "t.toml:3:1: limits.rails.gold: unknown rail `gold`, expected one of `pow`, `toll`, `free`",
        "t.toml:7:18: limits.loop_brake.rails: unknown rail `silver`, expected one of `pow`, `toll`, `free`",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    // The gateway's own rails: the same words, with their names.
    let e = turnpike_gateway::config::parse(&src, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml:7:10: limits.loop_brake.rails: unknown rail `toll`, expected one of `pow`, `l402`, `mpp`, `x402`, `oauth`, `agent`, `free`"),
        "{e}"
    );

    // Its slot of the metrics' `rail` label, from the rails the gate was built with.
    let src = format!("{UPSTREAM}[toll]\nbooth = \"north\"\n");
    let c = parse_with(&src, "t.toml", TOLL_ONLY).unwrap();
    let rails = Rails::from_config_with(&c, TOLL_ONLY).unwrap();
    let gate = turnpike_gateway::Gate::with_rails(
        turnpike_gateway::GateOptions::default(),
        c.policy(),
        rails,
    );
    assert_eq!(gate.metrics().rail_labels(), ["none", "toll"]);
}

#[test]
fn the_gateways_metrics_have_a_slot_and_the_series_of_every_registered_rail() {
    // Proof-of-work alone runs; L402, MPP, x402, OAuth and agent are off, their recognisers in
    // their place: each still has its slot, and L402's, MPP's and x402's series are there at
    // zero.
    let mut c = turnpike_gateway::config::parse(UPSTREAM, "t.toml").unwrap();
    let dir = std::env::temp_dir().join(format!("turnpike-rail-slots-{}", std::process::id()));
    c.server.data_dir = dir.clone();
    let gate = turnpike_gateway::Gate::from_config(&c).unwrap();
    let m = gate.metrics();
    assert_eq!(
        m.rail_labels(),
        ["none", "pow", "l402", "mpp", "x402", "oauth", "agent"]
    );
    let text = m.render(&[]);
    for want in [
        "turnpike_pow_puzzles_issued_total 0\n",
        "turnpike_pow_effort_multiplier 1\n",
        "turnpike_l402_invoices_total 0\n",
        "turnpike_l402_settled_sats_total 0\n",
        "turnpike_rail_unavailable_total{rail=\"pow\"} 0\nturnpike_rail_unavailable_total{rail=\"l402\"} 0\nturnpike_rail_unavailable_total{rail=\"mpp\"} 0\nturnpike_rail_unavailable_total{rail=\"x402\"} 0\nturnpike_rail_unavailable_total{rail=\"oauth\"} 0\n",
        "turnpike_x402_settlements_total{outcome=\"failed\"} 0\n",
        "turnpike_mpp_evm_settlements_total{outcome=\"settled\"} 0\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
