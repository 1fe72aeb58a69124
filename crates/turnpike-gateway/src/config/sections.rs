//! The gateway's sections, each read by the type of the crate that owns it, and the gateway's
//! own keys in a rail's table (`[oauth]`'s identity keys: what the upstream is told), taken out
//! of the table before the rail reads the rest. Rules over keys of one section that the owner's
//! type cannot see (exactly one of `url` / `command`) are checked here, at their keys.

use std::net::SocketAddr;
use std::ops::Range;

use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use turnpike_conf::{fields, Section};
use turnpike_core::conf::{env_value, hinted};
use turnpike_oauth::Secret;

use crate::registry::RAIL_CONFS;

use super::hints::*;
use super::reader::Gx;
use super::types::{
    default_name, AdminConfig, ForwardIdentity, IdentityConfig, MergeConfig, MountConfig,
    ServerConfig, UpstreamConfig, DEFAULT_ADMIN_LISTEN,
};

const HINT_SERVER: &str = "see [server] in the configuration reference (README.md)";
const HINT_UPSTREAM: &str = "see [upstream] in the configuration reference (README.md)";
const HINT_ADMIN: &str = "write token_env = \"TURNPIKE_ADMIN_TOKEN\" (the variable holds the token, e.g. from `openssl rand -hex 24`) or token = \"<at least 16 characters>\"";

/// `[admin]` as written; the token is checked where it is given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminKeys {
    #[serde(default, deserialize_with = "admin_listen")]
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "admin_token")]
    token: Option<String>,
    #[serde(default, deserialize_with = "admin_token_env")]
    token_env: Option<String>,
    #[serde(default)]
    metrics_public: Option<bool>,
    #[serde(default, deserialize_with = "some_hosts")]
    allowed_hosts: Option<Vec<String>>,
    #[serde(default, deserialize_with = "some_origins")]
    allowed_origins: Option<Vec<String>>,
}

fn some_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    super::types::read::hosts(d).map(Some)
}

fn some_origins<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    super::types::read::origins(d).map(Some)
}

fn admin_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let v = String::deserialize(d)?;
    v.parse().map(Some).map_err(|_| {
        hinted(
            format!("listen address {v:?} is not an IP address with a port"),
            "write an IP address and port, e.g. \"127.0.0.1:8403\"",
        )
    })
}

fn long_enough<E: serde::de::Error>(token: String) -> Result<Option<String>, E> {
    if token.chars().count() < 16 {
        return Err(hinted(
            "the admin token is shorter than 16 characters",
            HINT_ADMIN,
        ));
    }
    Ok(Some(token))
}

fn admin_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    long_enough(String::deserialize(d)?)
}

fn admin_token_env<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let var = String::deserialize(d)?;
    long_enough(env_value(&var, HINT_ADMIN)?)
}

/// The rail table the gateway's own identity keys live in (`forward_identity`,
/// `identity_secret[_env]`: what the upstream is told of the caller).
pub const IDENTITY_TABLE: &str = "oauth";

/// The gateway's own keys in rail table `table` (read by [`Gx::identity`]; the rail reads the
/// rest).
pub(super) fn gateway_keys(table: &str) -> Vec<&'static str> {
    if table == IDENTITY_TABLE {
        fields::<IdentityKeys>()
    } else {
        Vec::new()
    }
}

/// `[oauth]`'s keys of the gateway's own: what the upstream learns of the caller.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityKeys {
    #[serde(default, deserialize_with = "forward_identity")]
    forward_identity: ForwardIdentity,
    #[serde(default, deserialize_with = "identity_secret")]
    identity_secret: Option<Secret>,
    #[serde(default, deserialize_with = "identity_secret_env")]
    identity_secret_env: Option<Secret>,
}

fn forward_identity<'de, D: Deserializer<'de>>(d: D) -> Result<ForwardIdentity, D::Error> {
    match String::deserialize(d)?.as_str() {
        "none" => Ok(ForwardIdentity::None),
        "signed" => Ok(ForwardIdentity::Signed),
        other => Err(hinted(
            format!("unknown forward_identity {other:?}"),
            "write forward_identity = \"none\" or \"signed\"",
        )),
    }
}

fn hex_secret<E: serde::de::Error>(v: String) -> Result<Option<Secret>, E> {
    if v.len() == 64 && v.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(Some(Secret::new(v)))
    } else {
        Err(hinted(
            "identity_secret must be 64 hex digits",
            HINT_IDENTITY_SECRET,
        ))
    }
}

fn identity_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    hex_secret(String::deserialize(d)?)
}

fn identity_secret_env<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let var = String::deserialize(d)?;
    hex_secret(env_value(&var, HINT_IDENTITY_SECRET)?)
}

impl Gx<'_> {
    pub(super) fn server(&mut self, v: &Spanned<DeValue<'_>>) -> Option<ServerConfig> {
        self.section(v, Section::new("[server]", HINT_SERVER))
    }

    /// `[upstream]`, or a `[[mount]]`'s `upstream`: exactly one of url and command.
    pub(super) fn upstream(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        what: &str,
    ) -> Option<UpstreamConfig> {
        let t = self.table(v, what)?;
        let u = self.section_with(
            t,
            v.span(),
            Section::new("[upstream]", HINT_UPSTREAM),
            |d| UpstreamConfig::deserialize(d),
        );
        let has_url = t.get("url").is_some();
        if has_url == t.get("command").is_some() {
            let what = if has_url {
                "[upstream] sets both url and command"
            } else {
                "[upstream] sets neither url nor command"
            };
            self.problem(Some(v.span()), what.into(), HINT_ONE_UPSTREAM);
            return None;
        }
        u
    }

    pub(super) fn admin(&mut self, v: &Spanned<DeValue<'_>>) -> Option<AdminConfig> {
        let keys: AdminKeys = self.section(v, Section::new("[admin]", HINT_ADMIN))?;
        let t = self.table(v, "[admin]")?;
        let token = match (keys.token, keys.token_env) {
            (Some(_), Some(_)) => {
                let at = t.get("token_env").map(|v| v.span());
                self.problem(
                    at,
                    "give the admin token one way only: token or token_env".into(),
                    HINT_ADMIN,
                );
                return None;
            }
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => {
                self.problem(Some(v.span()), "[admin] needs a token".into(), HINT_ADMIN);
                return None;
            }
        };
        let server = ServerConfig::default();
        Some(AdminConfig {
            listen: keys.listen.or_else(|| DEFAULT_ADMIN_LISTEN.parse().ok())?,
            token: Secret::new(token),
            metrics_public: keys.metrics_public.unwrap_or(true),
            allowed_hosts: keys.allowed_hosts.unwrap_or(server.allowed_hosts),
            allowed_origins: keys.allowed_origins.unwrap_or(server.allowed_origins),
        })
    }

    /// `[oauth]`'s keys of the gateway's own (`forward_identity`, `identity_secret`,
    /// `identity_secret_env`), taken out of the table `t` at `span` before the rail read the
    /// rest; `before`: the number of problems before the table was read.
    pub(super) fn identity(
        &mut self,
        own: &DeTable<'_>,
        t: &DeTable<'_>,
        span: Range<usize>,
        before: usize,
    ) -> Option<IdentityConfig> {
        let own_keys = fields::<IdentityKeys>();
        let section = Section {
            extra: &own_keys,
            name_key: true,
            ..Section::new("[oauth]", HINT_OAUTH)
        };
        let ident = self.section_with(own, span, section, |d| IdentityKeys::deserialize(d))?;
        let identity_secret = match (ident.identity_secret, ident.identity_secret_env) {
            (Some(_), Some(_)) => {
                self.problem(
                    t.get("identity_secret_env").map(|v| v.span()),
                    "give identity_secret one way only: inline or from identity_secret_env".into(),
                    HINT_IDENTITY_SECRET,
                );
                None
            }
            (s, None) | (None, s) => s,
        };
        if ident.forward_identity == ForwardIdentity::Signed
            && identity_secret.is_none()
            && self.problems.len() == before
        {
            self.problem(
                t.get("forward_identity").map(|v| v.span()),
                "forward_identity = \"signed\" needs identity_secret".into(),
                HINT_IDENTITY_SECRET,
            );
        }
        Some(IdentityConfig {
            forward_identity: ident.forward_identity,
            identity_secret,
        })
    }

    /// `[[mount]]`s: each a path, a name, an upstream and its prices.
    pub(super) fn mounts(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<MountConfig> {
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(
                Some(v.span()),
                "mount must be an array of tables".into(),
                "write each one as a [[mount]] table",
            );
            return Vec::new();
        };
        let mut out: Vec<MountConfig> = Vec::new();
        for item in items.iter() {
            if let Some(m) = self.mount(item, &out) {
                out.push(m);
            }
        }
        out
    }

    fn mount(
        &mut self,
        item: &Spanned<DeValue<'_>>,
        others: &[MountConfig],
    ) -> Option<MountConfig> {
        /// A `[[mount]]` as written: the parts are read on their own.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct MountKeys {
            path: Option<toml::Value>,
            name: Option<toml::Value>,
            upstream: Option<toml::Value>,
            tools: Option<toml::Value>,
            methods: Option<toml::Value>,
        }
        let t = self.table(item, "[[mount]]")?;
        let _ = self.section_with(
            t,
            item.span(),
            Section::new("[[mount]]", HINT_UPSTREAM),
            |d| MountKeys::deserialize(d),
        );
        let mut m = MountConfig::default();
        match self.field::<String>(t, "path", HINT_PATH) {
            Some((p, span)) if p.starts_with('/') && !p.contains(['?', '#', ' ']) => {
                if others.iter().any(|o| o.path == p) {
                    self.problem(Some(span), format!("two mounts at {p:?}"), HINT_PATH);
                }
                m.path = p;
            }
            Some((p, span)) => self.problem(
                Some(span),
                format!("path {p:?} is not an absolute path"),
                HINT_PATH,
            ),
            None => self.problem(
                Some(item.span()),
                "[[mount]] has no path".into(),
                "write path = \"/name/mcp\"",
            ),
        }
        m.name = match self.field::<String>(t, "name", "write name = \"short-name\"") {
            Some((n, span)) => {
                if n.is_empty() || n.contains('/') {
                    self.problem(
                        Some(span),
                        format!("mount name {n:?} is empty or has a `/`"),
                        "write name = \"short-name\" (it prefixes clashing tool names, and [tools.\"<mount>/<tool>\"] names one mount's tool)",
                    );
                }
                n
            }
            None => default_name(&m.path),
        };
        if others.iter().any(|o| o.name == m.name) {
            self.problem(
                Some(item.span()),
                format!("two mounts named {:?}", m.name),
                "give each [[mount]] its own name = \"…\" (the merged endpoint tells their tools apart by it)",
            );
        }
        match t.get("upstream") {
            Some(u) => {
                if let Some(up) = self.upstream(u, "[[mount]] upstream") {
                    m.upstream = up;
                }
            }
            None => self.problem(
                Some(item.span()),
                "[[mount]] has no upstream".into(),
                "write upstream = { url = \"http://…\" } or upstream = { command = [\"…\"] }",
            ),
        }
        if let Some(tv) = t.get("tools") {
            if let Some(tt) = self.table(tv, "[mount.tools]") {
                m.tools = self.prices(tt, "mount.tools");
            }
        }
        if let Some(mv) = t.get("methods") {
            if let Some(mt) = self.table(mv, "[mount.methods]") {
                m.methods = self.prices(mt, "mount.methods");
            }
        }
        Some(m)
    }

    /// `[merge]`: the merged endpoint's path and the mounts it merges.
    pub(super) fn merge(&mut self, v: &Spanned<DeValue<'_>>) -> Option<MergeConfig> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct MergeKeys {
            path: Option<String>,
            #[serde(default)]
            mounts: Vec<String>,
        }
        let keys: MergeKeys =
            self.section(v, Section::new("[merge]", "write path = \"/all/mcp\""))?;
        let path = match keys.path {
            Some(p) if p.starts_with('/') => p,
            Some(p) => {
                let t = self.table(v, "[merge]")?;
                let at = t.get("path").map(|v| v.span());
                self.problem(at, format!("path {p:?} is not an absolute path"), HINT_PATH);
                return None;
            }
            None => {
                self.problem(
                    Some(v.span()),
                    "[merge] has no path".into(),
                    "write path = \"/all/mcp\"",
                );
                return None;
            }
        };
        Some(MergeConfig {
            path,
            mounts: keys.mounts,
        })
    }
}

/// Every section's keys, from the serde types that read them (the owners' and the gateway's,
/// the rails' from [`turnpike_conf::RailConf::reference_keys`]): `(section, keys)`, a section
/// named as in a table header (`lightning (lnd)` for one backend's keys). The README's
/// reference is tested against this list.
pub fn reference_keys() -> Vec<(String, Vec<&'static str>)> {
    let mut out: Vec<(String, Vec<&'static str>)> = vec![
        ("server".into(), fields::<ServerConfig>()),
        ("upstream".into(), fields::<UpstreamConfig>()),
        ("stdio".into(), fields::<super::types::StdioSection>()),
        (IDENTITY_TABLE.into(), fields::<IdentityKeys>()),
        ("limits".into(), fields::<turnpike_limits::LimitsConfig>()),
        ("budgets".into(), fields::<turnpike_limits::BudgetsConfig>()),
        ("store".into(), fields::<turnpike_limits::StoreConfig>()),
        ("admin".into(), fields::<AdminKeys>()),
        (
            "telemetry".into(),
            fields::<super::types::TelemetrySection>(),
        ),
        ("policy".into(), fields::<super::policy::PolicyKeys>()),
    ];
    for rail in RAIL_CONFS {
        out.extend(rail.reference_keys());
    }
    out
}
