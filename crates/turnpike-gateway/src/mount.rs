//! Several upstreams behind one gateway.
//!
//! ```toml
//! [[mount]]
//! path = "/files/mcp"                     # served here, with its own gate and policy
//! name = "files"                          # prefix for clashing names on the merged endpoint
//! upstream = { url = "http://127.0.0.1:3001/mcp", era = "auto" }   # any [upstream] key
//! [mount.tools.default]                   # this mount's prices ([tools.*] / [methods.*])
//! pow = 100000
//!
//! [[mount]]
//! path = "/local/mcp"
//! name = "local"
//! upstream = { command = ["my-stdio-server"] }
//!
//! [merge]                                 # optional: one endpoint over several mounts
//! path = "/all/mcp"
//! mounts = ["files", "local"]             # default: every mount
//! ```
//!
//! Each mount is an upstream ([`crate::upstreams::build_upstream`]) made to speak both eras
//! ([`turnpike_era::adapt`]) behind a [`Gate`] of its own: the mount's `tools`/`methods` prices
//! with the rest of the configuration (rails, limits, hosts) shared. The `[upstream]` table
//! may then be left out; when it is there it is still served at `[server] path`.
//!
//! The merged endpoint ([`crate::mount_merge`]) is a modern (2026-07-28) MCP server of the
//! gateway's own over the mounts' era adapters, itself behind an era adapter (so legacy clients
//! get sealed sessions) and a gate priced by the top-level `[tools.*]` / `[methods.*]`: a tool
//! there is named `"<mount>/<name>"`, by its published (possibly prefixed) name or by its own
//! name, and a tool none of these names gets its mount's price, else `[tools.default]`
//! ([`crate::mount_merge`] has the order).

use std::sync::Arc;

use crate::config::{Config, UpstreamConfig};
use crate::{Gate, GatewayError, TurnpikeService};
use turnpike_era::{EraAdapter, EraOptions, EraSetting};
use turnpike_upstream::stdio::StdioUpstream;
use turnpike_upstream::BoxUpstream;

/// A mounted endpoint: its path, its gate and its service.
pub struct Mounted {
    /// Endpoint path.
    pub path: String,
    /// The gate in front of it.
    pub gate: Arc<Gate>,
    /// The upstream behind the gate (era adapter over HTTP or stdio, or the merged server),
    /// locked only to clone it.
    pub upstream: parking_lot::Mutex<BoxUpstream>,
}

/// Every mount and the merged endpoint, built from the configuration.
#[derive(Default)]
pub struct Mounts {
    /// By path.
    pub endpoints: Vec<Mounted>,
    /// Stdio upstreams to stop at shutdown.
    pub stdio: Vec<StdioUpstream>,
}

impl Mounts {
    /// Builds every `[[mount]]` and the `[merge]` endpoint; their gates count into `metrics`
    /// (the process's, shared with the main gate).
    /// Stdio mounts count their children against `stdio_budget` (the gateway's one budget).
    pub fn build(
        cfg: &Config,
        metrics: Arc<turnpike_operator::metrics::Metrics>,
        stdio_budget: &turnpike_upstream::stdio::StdioBudget,
        telemetry: Option<&turnpike_telemetry::Telemetry>,
    ) -> Result<Mounts, GatewayError> {
        let mut out = Mounts::default();
        let mut members: Vec<(String, EraAdapter)> = Vec::new();
        // Each mount's own prices, beside `members`.
        let mut prices: Vec<(turnpike_core::Policy, bool)> = Vec::new();
        for m in &cfg.mounts {
            let mut sub = cfg.clone();
            sub.upstream = m.upstream.clone();
            sub.tools = m.tools.clone();
            sub.methods = m.methods.clone();
            sub.server.path = m.path.clone();
            sub.server.public_url = None;
            sub.mounts.clear();
            sub.merge = None;
            let (raw, stdio) = crate::upstreams::build_upstream_with(&sub, stdio_budget)?;
            if let Some(s) = stdio {
                out.stdio.push(s);
            }
            let adapter = adapter_for(raw, &m.upstream, &cfg.server.data_dir)?;
            members.push((m.name.clone(), adapter.clone()));
            prices.push((sub.policy(), m.tools.contains_key("default")));
            out.endpoints.push(Mounted {
                path: m.path.clone(),
                gate: Arc::new(
                    Gate::from_config(&sub)?
                        .with_metrics(metrics.clone())
                        .with_telemetry(telemetry.cloned()),
                ),
                upstream: parking_lot::Mutex::new(adapter.boxed()),
            });
        }
        if let Some(merge) = &cfg.merge {
            let (chosen, chosen_prices): (Vec<(String, EraAdapter)>, Vec<_>) = members
                .into_iter()
                .zip(prices)
                .filter(|((n, _), _)| merge.mounts.is_empty() || merge.mounts.contains(n))
                .unzip();
            let pricing = turnpike_merge::Pricing {
                merged: cfg.policy(),
                members: chosen_prices,
            };
            let merged = turnpike_merge::Merged::new(&merge.path, chosen, pricing);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                // Read (and log) the merged tools and their prices at start.
                let m = merged.clone();
                rt.spawn(async move { m.relist_tools().await });
            }
            let catalog: Arc<dyn turnpike_merge::ToolCatalog> = Arc::new(merged.clone());
            let front = EraAdapter::new(
                merged.boxed(),
                EraOptions {
                    setting: EraSetting::Modern,
                    sealer: turnpike_era::Sealer::load_or_create(
                        &cfg.server.data_dir,
                        turnpike_era::SESSION_TTL_SECS,
                    )
                    .map_err(|e| GatewayError::Upstream(format!("session key: {e}")))?,
                    ..EraOptions::default()
                },
            );
            let mut sub = cfg.clone();
            sub.server.path = merge.path.clone();
            sub.server.public_url = None;
            sub.mounts.clear();
            sub.merge = None;
            out.endpoints.push(Mounted {
                path: merge.path.clone(),
                gate: Arc::new(
                    Gate::from_config(&sub)?
                        .with_metrics(metrics.clone())
                        .with_telemetry(telemetry.cloned())
                        .with_catalog(catalog),
                ),
                upstream: parking_lot::Mutex::new(front.boxed()),
            });
        }
        Ok(out)
    }

    /// The gated service for `path`, if a mount serves it.
    pub fn service(&self, path: &str) -> Option<TurnpikeService<BoxUpstream>> {
        self.endpoints
            .iter()
            .find(|m| m.path == path)
            .map(|m| TurnpikeService::new(m.gate.clone(), m.upstream.lock().clone()))
    }

    /// Stops the stdio children.
    pub fn shutdown(&self) {
        for s in &self.stdio {
            s.shutdown();
        }
    }
}

fn adapter_for(
    raw: BoxUpstream,
    up: &UpstreamConfig,
    data_dir: &std::path::Path,
) -> Result<EraAdapter, GatewayError> {
    let setting = match (up.era, up.command.is_some()) {
        (EraSetting::Auto, true) => EraSetting::Legacy,
        (e, _) => e,
    };
    let sealer = turnpike_era::Sealer::load_or_create(data_dir, turnpike_era::SESSION_TTL_SECS)
        .map_err(|e| GatewayError::Upstream(format!("session key: {e}")))?;
    Ok(EraAdapter::new(
        raw,
        EraOptions {
            setting,
            sealer,
            ..EraOptions::default()
        },
    ))
}
