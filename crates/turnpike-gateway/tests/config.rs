//! The configuration file: every key read, every mistake reported at its line and column.

use std::path::Path;

use turnpike_gateway::config::*;
use turnpike_lightning::BackendConfig;

/// `[pow]` of a configuration.
fn pow(c: &Config) -> turnpike_pow::PowConfig {
    turnpike_pow::conf::section(&c.rails)
}

/// The proof-of-work effort of a price.
fn effort(p: &PriceConfig) -> Option<u64> {
    p.offer(turnpike_pow::RAIL).and_then(turnpike_pow::effort)
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
path = "/gate"
allowed_hosts = ["localhost"]
challenge_mode = "in-band"
max_body_bytes = 1000

[upstream]
url = "http://127.0.0.1:3001/mcp"

[pow]
expiry_secs = 60
subpuzzles = 2

[tools.default]
pow = 200000
[tools.echo]
free = true
[tools.longRunningOperation]
pow = 2000000
[methods."resources/read"]
pow = 100000
"#;

#[test]
fn nwc_backend_parses_and_refuses_http_keys() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.default]\nl402 = { sat = 1 }\n[lightning]\nbackend = \"nwc\"\n";
    let uri = "uri = \"nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4?relay=wss%3A%2F%2Frelay.example&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c\"\n";
    let c = parse(&format!("{base}{uri}timeout_secs = 5\n"), "t.toml").unwrap();
    match turnpike_l402::conf::lightning(&c.rails).map(|l| &l.backend) {
        Some(BackendConfig::Nwc(n)) => {
            assert_eq!(n.timeout_secs, 5);
            assert!(n.uri.is_some());
        }
        other => panic!("{other:?}"),
    }
    let e = parse(&format!("{base}{uri}lookup_retries = 2\n"), "t.toml").unwrap_err();
    assert!(e.to_string().contains("lookup_retries"), "{e}");
    let e = parse(
        &format!("{base}uri_env = \"TURNPIKE_TEST_UNSET_NWC_URI\"\n"),
        "t.toml",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("TURNPIKE_TEST_UNSET_NWC_URI is not set"),
        "{e}"
    );
}

#[test]
fn upstream_time_limits() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:1/mcp\"\n";
    let c = parse(base, "t.toml").unwrap();
    assert_eq!(c.upstream.response_timeout_secs, 60);
    assert_eq!(c.upstream.stream_idle_timeout_secs, 120);
    let c = parse(
        &format!("{base}response_timeout_secs = 5\nstream_idle_timeout_secs = 7\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.upstream.response_timeout_secs, 5);
    assert_eq!(c.upstream.stream_idle_timeout_secs, 7);
    let e = parse(
        &format!("{base}response_timeout_secs = 0\nstream_idle_timeout_secs = \"x\"\n"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("t.toml:3:25: response_timeout_secs must be between 1 and 86400"),
        "{e}"
    );
    assert!(e.contains("t.toml:4:28:"), "{e}");
    let e = parse(
        &format!("{base}stream_idle_timeout_secs = 86401\n"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("t.toml:3:28: stream_idle_timeout_secs must be"),
        "{e}"
    );
}

#[test]
fn reference_config_parses() {
    let c = parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.server.path, "/gate");
    assert_eq!(c.server.challenge_mode, ChallengeMode::InBand);
    assert_eq!(c.server.max_body_bytes, 1000);
    assert_eq!(c.server.allowed_origins, Vec::<String>::new());
    assert_eq!(c.upstream.url.as_deref(), Some("http://127.0.0.1:3001/mcp"));
    assert_eq!(pow(&c).expiry_secs, 60);
    assert_eq!(pow(&c).subpuzzles, 2);
    let p = c.policy();
    assert_eq!(p.default_tool.offers, vec![turnpike_pow::offer(200000)]);
    assert!(p.price("tools/call", Some("echo")).is_free());
    assert_eq!(
        p.price("tools/call", Some("longRunningOperation")).offers,
        vec![turnpike_pow::offer(2000000)]
    );
    assert_eq!(
        p.price("resources/read", Some("x")).offers,
        vec![turnpike_pow::offer(100000)]
    );
    c.validate().unwrap();
}

#[test]
fn mount_names() {
    assert_eq!(default_name("/files/mcp"), "files");
    assert_eq!(default_name("/"), "mount");
}

#[test]
fn defaults() {
    let c = parse("[upstream]\ncommand = [\"srv\", \"--stdio\"]\n", "t").unwrap();
    assert_eq!(c.server, ServerConfig::default());
    assert_eq!(
        c.upstream.command,
        Some(vec!["srv".into(), "--stdio".into()])
    );
    assert_eq!(c.upstream.idle_timeout_secs, 900);
    assert!(
        c.policy().price("tools/call", Some("x")).is_free(),
        "no tools table = free"
    );
}

#[test]
fn mounts_and_merge() {
    let src = r#"[server]
path = "/mcp"

[[mount]]
path = "/a/mcp"
upstream = { url = "http://127.0.0.1:1/mcp", era = "2026-07-28" }
[mount.tools.default]
pow = 1000

[[mount]]
path = "/b/mcp"
name = "local"
upstream = { command = ["srv"] }

[merge]
path = "/all/mcp"
"#;
    let c = parse(src, "m.toml").unwrap();
    c.validate().unwrap();
    assert_eq!(c.mounts.len(), 2);
    assert_eq!(c.mounts[0].name, "a");
    assert_eq!(c.mounts[0].upstream.era, turnpike_era::EraSetting::Modern);
    assert_eq!(effort(&c.mounts[0].tools["default"]), Some(1000));
    assert_eq!(c.mounts[1].name, "local");
    assert_eq!(c.mounts[1].upstream.command, Some(vec!["srv".to_owned()]));
    assert_eq!(c.merge.as_ref().unwrap().path, "/all/mcp");
    // Problems at their place.
    let bad = "[[mount]]\npath = \"rel\"\nupstream = { url = \"ftp://x\" }\nbogus = 1\n";
    let e = parse(bad, "b.toml").unwrap_err().to_string();
    assert!(
        e.contains("b.toml:2:8: path \"rel\" is not an absolute path"),
        "{e}"
    );
    assert!(e.contains("b.toml:3:20: upstream url"), "{e}");
    assert!(
        e.contains("b.toml:4:1: unknown key `bogus` in [[mount]]"),
        "{e}"
    );
}

#[test]
fn merged_tool_keys_name_a_merged_mount() {
    let mounts = "[[mount]]\npath = \"/spy/mcp\"\nname = \"spy\"\nupstream = { url = \"http://x/mcp\" }\n[[mount]]\npath = \"/ev/mcp\"\nname = \"ev\"\nupstream = { command = [\"srv\"] }\n";
    let ok = format!("[tools.\"spy/echo\"]\npow = 5\n[tools.echo]\npow = 4\n{mounts}[merge]\npath = \"/all/mcp\"\n");
    let c = parse(&ok, "t.toml").unwrap();
    assert_eq!(effort(&c.tools["spy/echo"]), Some(5));
    // A mount the merged endpoint does not merge, no [merge] at all, no tool.
    let only_ev = format!(
        "[tools.\"spy/echo\"]\npow = 5\n{mounts}[merge]\npath = \"/all/mcp\"\nmounts = [\"ev\"]\n"
    );
    let e = parse(&only_ev, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("t.toml:1:8: [tools.\"spy/echo\"] names mount \"spy\", which no [merge] endpoint merges"),
        "{e}"
    );
    let no_merge = format!("[tools.\"spy/echo\"]\npow = 5\n{mounts}");
    assert!(parse(&no_merge, "t.toml").is_err());
    let no_tool = format!("[tools.\"ev/\"]\npow = 5\n{mounts}[merge]\npath = \"/all/mcp\"\n");
    let e = parse(&no_tool, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("t.toml:1:8: [tools.\"ev/\"] names no tool"),
        "{e}"
    );
    // Mount names: no `/`, and each its own.
    let slash =
        "[[mount]]\npath = \"/a/mcp\"\nname = \"a/b\"\nupstream = { url = \"http://x/mcp\" }\n";
    let e = parse(slash, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("t.toml:3:8: mount name \"a/b\" is empty or has a `/`"),
        "{e}"
    );
    let twice = "[[mount]]\npath = \"/a/mcp\"\nupstream = { url = \"http://x/mcp\" }\n[[mount]]\npath = \"/a/other\"\nupstream = { url = \"http://y/mcp\" }\n";
    let e = parse(twice, "t.toml").unwrap_err().to_string();
    assert!(e.contains("two mounts named \"a\""), "{e}");
}

#[test]
fn upstream_era() {
    use turnpike_era::EraSetting;
    let c = parse("[upstream]\nurl = \"http://x/mcp\"\n", "t").unwrap();
    assert_eq!(c.upstream.era, EraSetting::Auto);
    let c = parse(
        "[upstream]\nurl = \"http://x/mcp\"\nera = \"2026-07-28\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.upstream.era, EraSetting::Modern);
    let c = parse("[upstream]\nurl = \"http://x/mcp\"\nera = \"2025\"\n", "t").unwrap();
    assert_eq!(c.upstream.era, EraSetting::Legacy);
    let e = parse(
        "[upstream]\nurl = \"http://x/mcp\"\nera = \"2024\"\n",
        "e.toml",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("e.toml:3:7: unknown era \"2024\""),
        "{e}"
    );
}

#[test]
fn stdio_bounds() {
    let base = "[upstream]\ncommand = [\"srv\"]\n";
    let c = parse(base, "t").unwrap();
    assert_eq!(c.stdio, StdioSection::default());
    assert_eq!(c.stdio.max_sessions, None);
    assert_eq!(c.stdio.max_sessions_per_caller, 4);
    assert_eq!(c.stdio.spawns_per_minute_per_caller, 20);
    assert_eq!(c.stdio.session_memory_mib, 64);
    let (limits, _) = c.stdio.limits();
    assert!((8..=512).contains(&limits.max_sessions), "{limits:?}");
    let c = parse(
        &format!(
            "{base}[stdio]\nmax_sessions = 8\nmax_sessions_per_caller = 2\n\
             spawns_per_minute_per_caller = 6\nsession_memory_mib = 32\n"
        ),
        "t",
    )
    .unwrap();
    let (limits, avail) = c.stdio.limits();
    assert_eq!(
        (limits.max_sessions, limits.max_sessions_per_caller),
        (8, 2)
    );
    assert_eq!(limits.spawns_per_minute_per_caller, 6);
    assert_eq!(avail, None, "a configured cap is not sized to memory");
    let e = parse(
        &format!("{base}[stdio]\nmax_sessions = 0\nmax_sessions_per_caller = -1\nper_caller = 3\n"),
        "s.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("s.toml:4:16: [stdio] max_sessions must be between 1 and"),
        "{e}"
    );
    assert!(e.contains("s.toml:5:27:"), "{e}");
    assert!(
        e.contains("s.toml:6:1: unknown key `per_caller` in [stdio]"),
        "{e}"
    );
}

#[test]
fn telemetry_section() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n";
    assert_eq!(parse(base, "t").unwrap().telemetry, None);
    let c = parse(
        &format!(
            "{base}[telemetry]\notlp_endpoint = \"https://c.example/v1/traces\"\n\
             headers = {{ authorization = \"Bearer s3cret\" }}\n"
        ),
        "t",
    )
    .unwrap();
    let t = c.telemetry.as_ref().unwrap();
    assert_eq!(
        (t.service_name.as_str(), t.sample_ratio, t.queue_size),
        ("turnpike", 1.0, 4096)
    );
    assert!(!format!("{c:?}").contains("s3cret"));
    let e = parse(
        &format!(
            "{base}[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 2\n\
             batch_size = 0\nqueue = 5\n"
        ),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("t.toml:4:17: otlp_endpoint \"http://127.0.0.1:4318\" has no path"),
        "{e}"
    );
    assert!(
        e.contains("t.toml:5:16: sample_ratio must be between 0 and 1"),
        "{e}"
    );
    assert!(
        e.contains("t.toml:6:14: batch_size must be at least 1"),
        "{e}"
    );
    assert!(
        e.contains("t.toml:7:1: unknown key `queue` in [telemetry]"),
        "{e}"
    );
    // The endpoint has its own problem; it is not reported missing too.
    assert!(!e.contains("missing field"), "{e}");
    assert_eq!(
        e.lines().filter(|l| l.starts_with("t.toml:")).count(),
        4,
        "{e}"
    );
}

#[test]
fn every_problem_with_its_place() {
    let src = r#"[server]
listen = "localhost"
path = "mcp"
challenge_mode = "sometimes"
colour = "blue"

[upstream]
url = "ftp://x/mcp"
command = ["a"]

[pow]
subpuzzles = 65

[tools.a]
pow = 0
[tools.b]
free = true
pow = 5
[tools.c]
l402 = { msat = 1000 }
[tools.d]
cost = 3
[tools.e]
free = false

[methods."tools/call"]
pow = 1
"#;
    let e = parse(src, "bad.toml").unwrap_err();
    let text = e.to_string();
    let expect = [
        "bad.toml:2:10: listen address \"localhost\"",
        "bad.toml:3:8: path \"mcp\"",
        "bad.toml:4:18: unknown challenge_mode",
        "bad.toml:5:1: unknown key `colour` in [server]",
        "bad.toml:7:1: [upstream] sets both url and command",
        "bad.toml:8:7: upstream url \"ftp://x/mcp\": the scheme must be http or https",
        "bad.toml:12:14: subpuzzles",
        "bad.toml:15:7: pow effort must be at least 1",
        "bad.toml:17:8: [tools.b] is both free and priced",
        "bad.toml:20:8: this price names l402, but there is no [lightning] section",
        "bad.toml:22:1: unknown rail or key `cost` in [tools.d]",
        "bad.toml:24:8: [tools.e] says free = false but names no price",
        "bad.toml:26:10: tools/call cannot be priced under [methods]",
    ];
    for x in expect {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
    assert_eq!(e.problems.len(), expect.len(), "{text}");
    assert!(e.problems.iter().all(|p| !p.hint.is_empty()));
    assert!(text.contains("\n    hint: "));
}

#[test]
fn invoice_rates_are_checked_with_their_place() {
    let cfg = parse(
        "[upstream]\nurl = \"http://a/mcp\"\n[l402]\ninvoices_per_minute_per_caller = 3\ninvoices_per_minute = 50\n",
        "i.toml",
    )
    .unwrap();
    assert_eq!(
        turnpike_l402::conf::section(&cfg.rails)
            .rail
            .invoices_per_minute_per_caller,
        3
    );
    assert_eq!(
        turnpike_l402::conf::section(&cfg.rails)
            .rail
            .invoices_per_minute,
        50
    );
    let cfg = parse("[upstream]\nurl = \"http://a/mcp\"\n", "i.toml").unwrap();
    assert_eq!(
        turnpike_l402::conf::section(&cfg.rails)
            .rail
            .invoices_per_minute_per_caller,
        20
    );
    assert_eq!(
        turnpike_l402::conf::section(&cfg.rails)
            .rail
            .invoices_per_minute,
        600
    );
    let e = parse(
        "[upstream]\nurl = \"http://a/mcp\"\n[l402]\ninvoices_per_minute_per_caller = -1\ninvoices_per_minute = \"many\"\n",
        "i.toml",
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("i.toml:4:34:"), "{text}");
    assert!(text.contains("i.toml:5:23:"), "{text}");
    assert_eq!(e.problems.len(), 2, "{text}");
}

#[test]
fn syntax_errors_have_places() {
    let e = parse("[server\nlisten = 1\n", "s.toml").unwrap_err();
    assert!(e.to_string().starts_with("s.toml:1:"), "{e}");
    let e = parse(
        "[upstream]\nurl = \"http://a/\"\nurl = \"http://b/\"\n",
        "d.toml",
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("d.toml:3:"), "{e}");
}

#[test]
fn type_errors_and_missing_upstream() {
    let e = parse("[server]\nmax_body_bytes = \"big\"\n", "t.toml").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("t.toml:2:18:"), "{text}");
    assert!(text.contains("no [upstream] table"), "{text}");
    let e = parse("server = 5\n[upstream]\nurl=\"http://x\"\n", "t.toml").unwrap_err();
    assert!(
        e.to_string()
            .contains("t.toml:1:10: [server] must be a table"),
        "{e}"
    );
    let e = parse("[upstream]\n", "t.toml").unwrap_err();
    assert!(
        e.to_string().contains("sets neither url nor command"),
        "{e}"
    );
}

#[test]
fn validate_after_overrides() {
    let mut c = Config::default();
    assert!(c.validate().is_err());
    c.upstream.url = Some("http://127.0.0.1:1/mcp".into());
    c.validate().unwrap();
    c.upstream.command = Some(vec!["x".into()]);
    let e = c.validate().unwrap_err();
    assert!(e.to_string().contains("both url and command"), "{e}");
}

#[test]
fn oauth_prices_and_section() {
    let src = r#"[server]
listen = "127.0.0.1:9000"
[upstream]
url = "http://127.0.0.1:3001/mcp"
[tools.deploy]
oauth = { scopes = ["deploy:write", "deploy:write", "mcp:tools"] }
pow = 1000
[tools.read]
oauth = true
[oauth]
issuer = "http://127.0.0.1:4000"
scopes_supported = ["mcp:tools"]
forward_identity = "signed"
identity_secret = "0000000000000000000000000000000000000000000000000000000000000000"
"#;
    let c = parse(src, "o.toml").unwrap();
    c.validate().unwrap();
    assert_eq!(c.public_url(), "http://127.0.0.1:9000/mcp");
    let o = turnpike_oauth::conf::section(&c.rails, &c.public_url()).unwrap();
    assert_eq!(o.resource.as_deref(), Some("http://127.0.0.1:9000/mcp"));
    assert_eq!(
        c.identity.as_ref().unwrap().forward_identity,
        ForwardIdentity::Signed
    );
    let p = c.policy();
    assert_eq!(
        p.price("tools/call", Some("deploy")).offers,
        vec![
            turnpike_pow::offer(1000),
            turnpike_oauth::offer(vec!["deploy:write".into(), "mcp:tools".into()])
        ]
    );
    assert_eq!(
        p.price("tools/call", Some("read")).offers,
        vec![turnpike_oauth::offer(vec![])]
    );
}

#[test]
fn oauth_mistakes_have_places() {
    let src = r#"[server]
public_url = "https://mcp.example.com/mcp?x=1"
[upstream]
url = "http://127.0.0.1:3001/mcp"
[tools.a]
oauth = { scopes = ["two words"] }
[tools.b]
oauth = false
[tools.c]
oauth = { scope = ["x"] }
[oauth]
issuer = "http://as.example.com"
clock_skew_secs = "soon"
colour = 1
forward_identity = "maybe"
"#;
    let e = parse(src, "o.toml").unwrap_err();
    let text = e.to_string();
    for x in [
        "o.toml:2:14: public_url",
        "o.toml:6:9: \"two words\" is not a scope",
        "o.toml:8:9: oauth = false",
        "o.toml:10:",
        "o.toml:13:19: [oauth] clock_skew_secs",
        "o.toml:14:1: unknown key `colour` in [oauth]",
        "o.toml:15:20: unknown forward_identity",
    ] {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
    let src = "[upstream]\nurl = \"http://x/mcp\"\n[tools.a]\noauth = true\n";
    let e = parse(src, "n.toml").unwrap_err();
    assert!(
        e.to_string()
            .contains("n.toml:4:9: this price names oauth, but there is no [oauth] section"),
        "{e}"
    );
    assert!(
        e.to_string().contains("hint: add an [oauth] section"),
        "{e}"
    );
    let src = "[upstream]\nurl = \"http://x/mcp\"\n[oauth]\nissuer = \"http://as.example.com\"\nforward_identity = \"signed\"\n";
    let e = parse(src, "p.toml").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("p.toml:4:10: oauth.issuer: plain http"),
        "{text}"
    );
}

#[test]
fn oauth_flood_bounds_are_checked_at_their_keys() {
    let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[oauth]
issuer = "https://as.example.com"
jwks_fetch_spacing_ms = 90000
[oauth.introspection]
client_id = "rs"
client_secret = "s"
per_address_per_minute = 0
max_in_flight = 5000
"#;
    let e = parse(src, "f.toml").unwrap_err();
    let text = e.to_string();
    for x in [
        "f.toml:5:25: oauth.jwks_fetch_spacing_ms: at most 60000",
        "f.toml:9:26: oauth.introspection.per_address_per_minute: must be at least 1",
        "f.toml:10:17: oauth.introspection.max_in_flight: must be 1 to 1024",
    ] {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
    let ok = parse(
        "[upstream]\nurl = \"http://x/mcp\"\n[oauth]\nissuer = \"https://as.example.com\"\n\
         jwks_fetch_spacing_ms = 500\n[oauth.introspection]\nclient_id = \"rs\"\n\
         client_secret = \"s\"\nnegative_cache_secs = 10\nper_address_per_minute = 30\n\
         per_minute = 600\nmax_in_flight = 8\n",
        "g.toml",
    )
    .unwrap();
    let o = turnpike_oauth::conf::section(&ok.rails, &ok.public_url()).unwrap();
    assert_eq!(o.jwks_fetch_spacing_ms, 500);
    let i = o.introspection.unwrap();
    assert_eq!(
        (
            i.negative_cache_secs,
            i.per_address_per_minute,
            i.per_minute,
            i.max_in_flight
        ),
        (10, 30, 600, 8)
    );
}

#[test]
fn durable_store_postgres() {
    let ok = parse(
        r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[store]
backend = "redis"
redis_url = "redis://127.0.0.1:6379/0"
durable = "postgres"
postgres_url = "postgres://turnpike@127.0.0.1:5432/turnpike"
postgres_schema = "gw"
"#,
        "ok.toml",
    )
    .unwrap();
    assert_eq!(ok.store.durable, turnpike_limits::DurableBackend::Postgres);
    assert_eq!(ok.store.postgres_schema.as_deref(), Some("gw"));
    assert_eq!(
        Config::default().store.durable,
        turnpike_limits::DurableBackend::Embedded
    );
    let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[store]
durable = "postgres"
postgres_url_env = "TURNPIKE_TEST_UNSET_PG_URL"
postgres_schema = "No-Good"
"#;
    let text = parse(src, "bad.toml").unwrap_err().to_string();
    for x in [
        "bad.toml:6:19: store.postgres_schema: lower-case letters",
        "bad.toml:5:20: store.postgres_url_env: the environment variable TURNPIKE_TEST_UNSET_PG_URL is not set",
    ] {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
    let src = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[store]\ndurable = \"postgres\"\n";
    let text = parse(src, "bad.toml").unwrap_err().to_string();
    assert!(
        text.contains("bad.toml:4:11: store.durable: durable = \"postgres\" needs postgres_url"),
        "{text}"
    );
    let src = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[store]\ndurable = \"sql\"\n";
    let text = parse(src, "bad.toml").unwrap_err().to_string();
    assert!(text.contains("bad.toml:4:"), "{text}");
}

#[test]
fn limits_budgets_and_store() {
    let ok = parse(
        r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[limits]
failure_mode = "open"
[limits.default]
burst = 80
rate = "40/s"
concurrency = 32
[limits.tools."search.v2"]
burst = 5
rate = "1/s"
[limits.rails.pow]
burst = 10
rate = "2/s"
[budgets]
calls_per_day = 10000
[store]
backend = "redis"
redis_url = "redis://127.0.0.1:6379/0"
"#,
        "ok.toml",
    )
    .unwrap();
    assert_eq!(ok.limits.default.burst, 80);
    assert_eq!(ok.limits.default.concurrency, Some(32));
    assert_eq!(ok.limits.tools["search.v2"].burst, 5);
    assert_eq!(ok.budgets.calls_per_day, Some(10000));
    assert_eq!(ok.store.backend, turnpike_limits::StoreBackend::Redis);
    // Defaults: on, agent-sized.
    let d = Config::default();
    assert!(d.limits.enabled);
    assert_eq!(d.limits.default.burst, 50);
    assert_eq!(d.limits.default.concurrency, Some(16));
    assert_eq!(d.store.backend, turnpike_limits::StoreBackend::Memory);

    // Values: each problem at its key.
    let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[limits.tools."search.v2"]
burst = 0
rate = "1/s"
[store]
backend = "redis"
"#;
    let e = parse(src, "bad.toml").unwrap_err();
    let text = e.to_string();
    for x in [
        "bad.toml:4:9: limits.tools.search.v2.burst: burst must be at least 1",
        "bad.toml:6:1: store.redis_url: the redis backend needs redis_url",
    ] {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
    assert_eq!(e.problems.len(), 2, "{text}");
    // Types and syntax: where the bad value is.
    let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[limits.discovery]
burst = 5
rate = "often"
[budgets]
calls_a_day = 5
"#;
    let e = parse(src, "bad.toml").unwrap_err();
    let text = e.to_string();
    for x in [
        "bad.toml:5:8: a rate is written",
        "bad.toml:7:1: unknown field `calls_a_day`",
    ] {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
}

#[test]
fn connection_keys_and_admin_hosts() {
    let src = r#"[server]
max_connections = 500
max_connections_per_address = 8
first_byte_timeout_secs = 2
connection_idle_timeout_secs = 30
http2_max_concurrent_streams = 16
http2_keepalive_secs = 10

[upstream]
url = "http://127.0.0.1:3001/mcp"

[admin]
token = "0123456789abcdef"
allowed_hosts = ["admin.internal"]
allowed_origins = ["https://ops.example.com"]
"#;
    let c = parse(src, "t.toml").unwrap();
    assert_eq!(c.server.max_connections, 500);
    assert_eq!(c.server.max_connections_per_address, 8);
    assert_eq!(c.server.first_byte_timeout_secs, 2);
    assert_eq!(c.server.connection_idle_timeout_secs, 30);
    assert_eq!(c.server.http2_max_concurrent_streams, 16);
    assert_eq!(c.server.http2_keepalive_secs, 10);
    let admin = c.admin.as_ref().unwrap();
    assert_eq!(admin.allowed_hosts, vec!["admin.internal".to_string()]);
    assert_eq!(
        admin.allowed_origins,
        vec!["https://ops.example.com".to_string()]
    );
    assert!(warnings(src, &c).is_empty(), "loopback by default");
    // Defaults: loopback names for the admin listener too.
    let c = parse(
        "[upstream]\nurl = \"http://a/\"\n[admin]\ntoken = \"0123456789abcdef\"\n",
        "t",
    )
    .unwrap();
    let admin = c.admin.unwrap();
    assert_eq!(admin.allowed_hosts, ServerConfig::default().allowed_hosts);
    assert!(admin.allowed_origins.is_empty());

    let bad = r#"[server]
max_connections = 0
max_connections_per_address = -1
first_byte_timeout_secs = 0
connection_idle_timeout_secs = 0
http2_max_concurrent_streams = 5000000000
http2_keepalive_secs = 0

[upstream]
url = "http://127.0.0.1:3001/mcp"

[admin]
token = "0123456789abcdef"
allowed_hosts = []
allowed_origins = ["ops.example.com"]
"#;
    let e = parse(bad, "bad.toml").unwrap_err();
    let text = e.to_string();
    let expect = [
        "bad.toml:2:19: max_connections must be at least 1",
        "bad.toml:3:31: ",
        "bad.toml:4:27: first_byte_timeout_secs must be at least 1",
        "bad.toml:5:32: connection_idle_timeout_secs must be at least 1",
        "bad.toml:6:32: http2_max_concurrent_streams must be a whole number",
        "bad.toml:7:24: http2_keepalive_secs must be at least 1",
        "bad.toml:14:17: allowed_hosts is empty",
        "bad.toml:15:19: \"ops.example.com\" is not an origin",
    ];
    for x in expect {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
    assert_eq!(e.problems.len(), expect.len(), "{text}");
}

#[test]
fn an_admin_listener_off_loopback_is_a_warning_at_its_place() {
    for (listen, warned) in [
        ("0.0.0.0:8403", true),
        ("[::]:8403", true),
        ("10.1.2.3:8403", true),
        ("127.0.0.1:8403", false),
        ("[::1]:8403", false),
    ] {
        let src = format!(
            "[upstream]\nurl = \"http://a/\"\n\n[admin]\nlisten = \"{listen}\"\ntoken = \"0123456789abcdef\"\n"
        );
        let c = parse(&src, "t.toml").unwrap();
        let w = warnings(&src, &c);
        assert_eq!(w.len(), usize::from(warned), "{listen}: {w:?}");
        if let Some(p) = w.first() {
            assert_eq!((p.line, p.col), (5, 10));
            assert!(p.message.starts_with("warning: the admin listener binds"));
            assert!(!p.hint.is_empty());
        }
    }
}

#[test]
fn challenge_budget_and_load_intervals_are_checked_at_their_line() {
    let d = Config::default();
    assert_eq!(d.limits.challenges.burst, 60);
    assert_eq!(pow(&d).load.raise_interval_secs, 5);
    assert_eq!(pow(&d).load.lower_interval_secs, 5);
    let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[pow.load]
raise_interval_secs = 0
[limits.challenges]
burst = 0
rate = "5/s"
"#;
    let e = parse(src, "bad.toml").unwrap_err();
    let text = e.to_string();
    for x in [
        "bad.toml:4:23: ",
        "must be between 1 and 3600 seconds",
        "bad.toml:6:9: limits.challenges.burst: burst must be at least 1",
    ] {
        assert!(text.contains(x), "missing {x:?} in:\n{text}");
    }
    let ok = parse(
        "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[pow.load]\nlower_interval_secs = 30\n\
         [limits.challenges]\nburst = 10\nrate = \"2/s\"\n",
        "ok.toml",
    )
    .unwrap();
    assert_eq!(pow(&ok).load.lower_interval_secs, 30);
    assert_eq!(ok.limits.challenges.burst, 10);
}

/// Places computed anew when the sections moved to their owners' types: rules the owner
/// checks after reading (`at:` a key), secrets from the environment, the keys of an
/// unknown-key hint from serde's own list.
#[test]
fn owners_problems_keep_their_places() {
    std::env::set_var("TURNPIKE_TEST_CONFIG_TOKEN", "0123456789abcdef");
    std::env::set_var("TURNPIKE_TEST_CONFIG_HEX", "0".repeat(64));
    let up = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n";
    let check = |src: &str, expect: &[(&str, &str)]| {
        let e = parse(src, "p.toml").unwrap_err();
        let text = e.to_string();
        for (place, what) in expect {
            let p = e
                .problems
                .iter()
                .find(|p| format!("{}:{}", p.line, p.col) == *place)
                .unwrap_or_else(|| panic!("nothing at {place} in:\n{text}"));
            assert!(
                p.message.contains(what) || p.hint.contains(what),
                "{place}: {p:?}"
            );
            assert!(!p.hint.is_empty(), "{p:?}");
        }
        let places: std::collections::BTreeSet<&str> = expect.iter().map(|(p, _)| *p).collect();
        assert_eq!(e.problems.len(), places.len(), "{text}");
    };
    check(
        &format!("{up}[lightning]\nbackend = \"lnd\"\nurl = \"https://127.0.0.1:8080\"\nmacaroon_hex = \"00\"\nmacaroon_env = \"TURNPIKE_TEST_CONFIG_TOKEN\"\n"),
        &[("7:16", "give macaroon_hex one way only: inline, as a file or from macaroon_env")],
    );
    check(
        &format!("{up}[lightning]\nbackend = \"cln\"\nurl = \"https://127.0.0.1:3010\"\nrune_env = \"TURNPIKE_TEST_UNSET_RUNE\"\ncolour = 1\n"),
        &[
            ("6:12", "environment variable TURNPIKE_TEST_UNSET_RUNE is not set"),
            ("7:1", "unknown key `colour` in [lightning] (cln)"),
            ("7:1", "rune_env"),
        ],
    );
    check(
        &format!(
            "{up}[lightning]\nbackend = \"dev\"\n[lightning.dev_wallet]\nlisten = \"0.0.0.0:1\"\n"
        ),
        &[("6:10", "\"0.0.0.0:1\" is not a loopback address")],
    );
    check(
        &format!("{up}[admin]\ntoken = \"0123456789abcdef\"\ntoken_env = \"TURNPIKE_TEST_CONFIG_TOKEN\"\n"),
        &[("5:13", "give the admin token one way only")],
    );
    check(
        &format!("{up}[admin]\ntoken = \"short\"\n"),
        &[("4:9", "the admin token is shorter than 16 characters")],
    );
    check(
        &format!("{up}[oauth]\nissuer = \"https://as.example.com\"\nidentity_secret = \"{}\"\nidentity_secret_env = \"TURNPIKE_TEST_CONFIG_HEX\"\n", "0".repeat(64)),
        &[("6:23", "give identity_secret one way only")],
    );
    check(
        &format!("{up}[oauth]\nissuer = \"https://as.example.com\"\nidentity_secret = \"{}\"\nforward_identity = \"signed\"\nidentity_secret_env = \"TURNPIKE_TEST_CONFIG_TOKEN\"\n", "0".repeat(64)).replace("identity_secret_env = \"TURNPIKE_TEST_CONFIG_TOKEN\"", "identity_secret_env = \"TURNPIKE_TEST_CONFIG_UNSET\""),
        &[("7:23", "environment variable TURNPIKE_TEST_CONFIG_UNSET is not set")],
    );
    check(
        &format!("{up}[l402]\npass_secs = 0\nstore = \"disk\"\nmemo = 5\n"),
        &[
            ("4:13", "[l402] pass_secs must be at least 1"),
            ("5:9", "unknown store \"disk\""),
            ("6:8", "invalid type"),
        ],
    );
    check(
        &format!("{up}[l402]\nstorage = 1\n"),
        &[("4:1", "unknown key `storage` in [l402]"), ("4:1", "store")],
    );
}

#[test]
fn load_reports_missing_file() {
    let e = load(Path::new("/nonexistent/turnpike.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/turnpike.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn an_unknown_table_names_every_table_mounts_included() {
    let e = parse(
        "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[mounts]\npath = \"/a\"\n",
        "t.toml",
    )
    .unwrap_err();
    let p = &e.problems[0];
    assert_eq!((p.line, p.col), (3, 2), "{p:?}");
    assert!(p.message.contains("unknown table `mounts`"), "{p:?}");
    assert!(
        p.hint.contains("[[mount]]") && p.hint.contains("[merge]"),
        "{p:?}"
    );
}

#[test]
fn prices_built_in_code_are_checked_by_their_rails() {
    let mut c = Config::default();
    c.upstream.url = Some("http://127.0.0.1:1/mcp".into());
    let mut p = PriceConfig::of(vec![turnpike_oauth::offer(Vec::new())]);
    p.set_offer(turnpike_pow::offer(5));
    p.set_offer(turnpike_l402::offer(
        0,
        turnpike_l402::BillingMode::PerCall,
        0,
    ));
    p.set_offer(turnpike_pow::offer(0));
    // Each offer takes its rail's place, whatever order they were set in.
    assert_eq!(
        p.offers,
        vec![
            turnpike_l402::offer(0, turnpike_l402::BillingMode::PerCall, 0),
            turnpike_pow::offer(0),
            turnpike_oauth::offer(Vec::new()),
        ]
    );
    c.tools.insert("default".into(), p);
    let e = c.validate().unwrap_err().to_string();
    for want in [
        "<config>: [tools.default] l402 price is 0",
        "<config>: [tools.default] pow = 0",
        "<config>: a price names l402 but there is no [lightning] section",
        "<config>: a price names oauth but there is no [oauth] section",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    c.tools.insert("default".into(), PriceConfig::free());
    c.validate().unwrap();
}

/// `[[policy]]` rules and a tool's `policy`: read in order (a tool's first), and each CEL
/// expression that does not compile reported at its own line:col with CEL's words.
#[test]
fn policy_rules_and_their_cel_errors() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.echo]\nfree = true\npolicy = \"'admin' in identity.scopes\"\n";
    let rules = r#"
[[policy]]
name = "no-anon-writes"
when = "identity.kind == 'anonymous' && !call.annotations.readOnlyHint"
action = "deny"
reason = "sign in to write"
tools = ["write"]
mode = "shadow"

[[policy]]
name = "rest"
when = "true"
action = "allow"
"#;
    let c = parse(&format!("{base}{rules}"), "t.toml").unwrap();
    let names: Vec<&str> = c.policy_rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["tools.echo", "no-anon-writes", "rest"]);
    assert_eq!(c.policy_rules[1].mode, turnpike_policy::Mode::Shadow);
    assert_eq!(
        c.policy_rules[1].reason.as_deref(),
        Some("sign in to write")
    );
    assert_eq!(c.policy_rules[0].tools, Some(vec!["echo".to_string()]));
    assert!(compile_policy(&c.policy_rules).is_ok());

    // A syntax error: at its place in the file (line 9, the `when` line), in CEL's words.
    let bad = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n\n[[policy]]\nname = \"ok\"\nwhen = \"true\"\naction = \"allow\"\n[[policy]]\nwhen = \"identity.kind == 'x' &&\"\nname = \"bad\"\naction = \"deny\"\n";
    let e = parse(bad, "t.toml").unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    let p = &e.problems[0];
    assert_eq!(p.line, 9, "{e}");
    assert!(p.col > "when = \"identity.kind == 'x'".len(), "{e}");
    assert!(p.message.contains("[[policy]] \"bad\""), "{e}");
    assert!(p.message.contains("CEL expression does not compile"), "{e}");
    assert!(e.to_string().contains("t.toml:9:"), "{e}");

    // Every mistake at once: a second line of a multi-line expression, a bound, a bad action,
    // an unknown key, a tool's policy, a policy where none is taken.
    let many = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[tools.echo]
free = true
policy = "call.tool =="
[tools.default]
free = true
policy = "true"
[[policy]]
name = "two-lines"
when = """
identity.kind == 'oauth' &&
  call.tool ++ 'x'"""
action = "deny"
[[policy]]
name = "nested"
when = "[1].all(x, [x].exists(y, y == x))"
action = "deny"
[[policy]]
name = "act"
when = "true"
action = "refuse"
[[policy]]
name = "extra"
when = "true"
action = "deny"
colour = "red"
"#;
    let e = parse(many, "t.toml").unwrap_err();
    let at: Vec<(usize, &str)> = e
        .problems
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect();
    assert!(
        at.iter()
            .any(|(l, m)| *l == 5 && m.contains("[tools.echo] policy")),
        "{e}"
    );
    assert!(
        at.iter()
            .any(|(l, m)| *l == 8 && m.contains("cannot have a policy")),
        "{e}"
    );
    assert!(
        at.iter()
            .any(|(l, m)| *l == 13 && m.contains("\"two-lines\"")),
        "{e}"
    );
    assert!(
        at.iter()
            .any(|(l, m)| *l == 17 && m.contains("comprehension")),
        "{e}"
    );
    assert!(
        at.iter()
            .any(|(l, m)| *l == 22 && m.contains("\"allow\", \"deny\" or \"class\"")),
        "{e}"
    );
    assert!(
        at.iter().any(|(l, m)| *l == 27 && m.contains("colour")),
        "{e}"
    );
}
