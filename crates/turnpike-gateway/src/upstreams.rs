//! The configured upstreams, built: HTTP for `url`, stdio children for `command` (all of them
//! within the gateway's one stdio budget, from `[stdio]`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use tower::util::BoxCloneService;
use turnpike_core::error_codes;
use turnpike_upstream::http::HttpUpstream;
use turnpike_upstream::stdio::{StdioBudget, StdioConfig, StdioUpstream};
use turnpike_upstream::BoxUpstream;

use crate::config::Config;
use crate::GatewayError;

/// Builds the configured upstream: HTTP for `upstream.url`, stdio for `upstream.command` (its
/// children bounded by a budget of its own, from `[stdio]`).
pub fn build_upstream(cfg: &Config) -> Result<(BoxUpstream, Option<StdioUpstream>), GatewayError> {
    build_upstream_with(cfg, &StdioBudget::new(cfg.stdio.limits().0))
}

/// [`build_upstream`], a stdio upstream's children counted against `budget` (the gateway's one
/// budget, shared with its stdio mounts).
pub fn build_upstream_with(
    cfg: &Config,
    budget: &StdioBudget,
) -> Result<(BoxUpstream, Option<StdioUpstream>), GatewayError> {
    match (&cfg.upstream.url, &cfg.upstream.command) {
        (Some(url), None) => Ok((BoxCloneService::new(HttpUpstream::new(url)?), None)),
        (None, Some(command)) => {
            let stdio = StdioUpstream::with_budget(
                StdioConfig {
                    command: command.clone(),
                    env: cfg.upstream.env.clone(),
                    idle_timeout: Duration::from_secs(cfg.upstream.idle_timeout_secs),
                    ..StdioConfig::default()
                },
                budget.clone(),
            );
            Ok((BoxCloneService::new(stdio.clone()), Some(stdio)))
        }
        // Only [[mount]]s: the main path has no endpoint.
        (None, None) if !cfg.mounts.is_empty() => Ok((
            BoxCloneService::new(tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(turnpike_http::reply::json_error(
                    StatusCode::NOT_FOUND,
                    None,
                    error_codes::INVALID_REQUEST,
                    "no MCP endpoint here",
                ))
            })),
            None,
        )),
        _ => Err(GatewayError::Upstream(
            "give exactly one of upstream url and upstream command".into(),
        )),
    }
}

/// The one budget of every stdio child of the gateway (`[upstream] command` and the stdio
/// `[[mount]]`s), from `[stdio]`; its limits are logged when there is a stdio upstream.
pub(crate) fn stdio_budget(config: &Config) -> StdioBudget {
    let (limits, avail_mib) = config.stdio.limits();
    let any_stdio = config.upstream.command.is_some()
        || config.mounts.iter().any(|m| m.upstream.command.is_some());
    if any_stdio {
        match (config.stdio.max_sessions, avail_mib) {
            (Some(_), _) => tracing::info!(
                target: "turnpike::serve",
                max_sessions = limits.max_sessions,
                max_sessions_per_caller = limits.max_sessions_per_caller,
                spawns_per_minute_per_caller = limits.spawns_per_minute_per_caller,
                "stdio children bounded ([stdio] max_sessions as configured)"
            ),
            (None, Some(mib)) => tracing::info!(
                target: "turnpike::serve",
                max_sessions = limits.max_sessions,
                mem_available_mib = mib,
                session_memory_mib = config.stdio.session_memory_mib,
                max_sessions_per_caller = limits.max_sessions_per_caller,
                spawns_per_minute_per_caller = limits.spawns_per_minute_per_caller,
                "stdio children bounded (max_sessions = MemAvailable / 2 / session_memory_mib, clamped to 8..=512)"
            ),
            (None, None) => tracing::warn!(
                target: "turnpike::serve",
                max_sessions = limits.max_sessions,
                max_sessions_per_caller = limits.max_sessions_per_caller,
                spawns_per_minute_per_caller = limits.spawns_per_minute_per_caller,
                "stdio children bounded by a fallback cap: the available memory could not be read; set [stdio] max_sessions"
            ),
        }
    }
    StdioBudget::new(limits)
}
