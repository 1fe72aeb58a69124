//! The configuration seam: a rail the gateway has never heard of, its configuration side
//! written here against `turnpike_conf::RailConf` alone, reads its own table and its key in a
//! price beside proof-of-work's, and its mistakes are placed and worded as every other's: an
//! unknown key in its table, a price naming it while its table is missing, the tables and
//! price keys listed in hints — with no line of the gateway's configuration module knowing it.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use serde_json::{json, Map};
use turnpike_conf::{fields, Cx, DeValue, Host, RailConf, Section, Sections, Spanned};
use turnpike_core::{Offer, RailId};
use turnpike_gateway::config::parse_with;

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
}

static RAILS: &[&dyn RailConf] = &[&TollConf, &turnpike_pow::conf::PowConf];

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
        "t.toml:7:2: unknown table `lightning`\n    hint: the tables are [server], [upstream], [[mount]], [merge], [tools.<name>], [methods.\"<method>\"], [toll], [pow], [limits],",
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
