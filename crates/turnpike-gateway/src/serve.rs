//! Running the gateway: listener, upstream, gate, HTTP server, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use turnpike_core::error_codes;

use crate::config::Config;
use crate::pipeline::PeerAddr;
use crate::upstreams::{build_upstream_with, stdio_budget};
use crate::{Gate, GatewayError, TurnpikeService};

/// What a running server may do beyond serving: reload its configuration.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Loads the configuration again (file plus overrides) on SIGHUP, on `POST
    /// /admin/api/reload`, and on changes to `watch` ([`crate::reload`]).
    pub reload: Option<crate::reload::Loader>,
    /// The file to watch for changes (with `[server] watch_config = true`).
    pub watch: Option<std::path::PathBuf>,
    /// Called once the server is ready, with the gate it runs and the admin listener's address.
    pub on_ready: Option<OnReady>,
}

/// A callback run once the server is ready: the live gate and the admin listener's address.
pub type OnReady = Arc<dyn Fn(&Arc<crate::reload::LiveGate>, Option<SocketAddr>) + Send + Sync>;

/// How often a watched configuration file is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long the start-up probe of an HTTP upstream waits for a TCP connection.
const UPSTREAM_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub use turnpike_upstream::BoxUpstream;

/// Binds `config.server.listen` and serves until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    config.validate()?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| GatewayError::Bind(config.server.listen, e))?;
    serve_listener(listener, config, shutdown).await
}

/// [`serve`] with reloads ([`ServeOptions`]).
pub async fn serve_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    opts: ServeOptions,
) -> Result<(), GatewayError> {
    config.validate()?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| GatewayError::Bind(config.server.listen, e))?;
    serve_listener_with(listener, config, shutdown, opts).await
}

/// Serves on an already bound listener (e.g. port 0 in tests) until `shutdown` completes, then
/// stops accepting and gives open connections a few seconds to finish.
///
/// Without `server.public_url`, the public URL (the OAuth resource, DPoP `htu`) is
/// `http://<the listener's address><path>`.
pub async fn serve_listener(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    serve_listener_with(listener, config, shutdown, ServeOptions::default()).await
}

/// [`serve_listener`] with reloads ([`ServeOptions`]). On `shutdown`: stops accepting, lets
/// in-flight calls and streams finish for up to `[server] shutdown_timeout_secs`, then drops
/// the gate, which closes the L402 store (its ledger rows are committed as they are written).
pub async fn serve_listener_with(
    listener: TcpListener,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send,
    opts: ServeOptions,
) -> Result<(), GatewayError> {
    if config.server.public_url.is_none() {
        if let Ok(local) = listener.local_addr() {
            config.server.public_url = Some(format!("http://{local}{}", config.server.path));
        }
    }
    config.validate()?;
    let telemetry = start_telemetry(&config)?;
    let live = Arc::new(
        crate::reload::LiveGate::new(
            config.clone(),
            Gate::from_config(&config)?.with_telemetry(telemetry.clone()),
        )
        .with_loader(opts.reload.clone()),
    );
    let operated: Arc<dyn turnpike_operator::Operated> = live.clone();
    let gate = live.gate();
    if let Some(oauth) = gate.rails().get::<turnpike_oauth::OAuthRail>() {
        tracing::info!(
            target: "turnpike::serve",
            issuer = %oauth.config().issuer,
            resource = %oauth.resource(),
            metadata = %oauth.resource_metadata_url(),
            "OAuth rail on"
        );
    }
    let budget = stdio_budget(&config);
    let (upstream, stdio) = build_upstream_with(&config, &budget)?;
    let upstream = turnpike_era::adapt(
        upstream,
        config.upstream.era,
        config.upstream.command.is_some(),
        &config.server.data_dir,
    )
    .map_err(GatewayError::Upstream)?;
    let mounts = Arc::new(crate::mount::Mounts::build(
        &config,
        gate.metrics().clone(),
        &budget,
        telemetry.as_ref(),
    )?);
    let _dev_wallet = start_dev_wallet(&config, &gate).await?;
    let endpoint: Arc<str> = Arc::from(config.server.path.as_str());
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::info!(
        target: "turnpike::serve",
        listen = %local,
        path = %endpoint,
        upstream = config.upstream.url.as_deref().unwrap_or("stdio"),
        "gateway listening"
    );
    if let Some(url) = config.upstream.url.clone() {
        // Said once at start, never fatal: the upstream may come up after the gateway.
        tokio::spawn(async move {
            if let Err(why) = turnpike_upstream::http::probe(&url, UPSTREAM_PROBE_TIMEOUT).await {
                tracing::warn!(
                    target: "turnpike::serve",
                    upstream = %url,
                    error = %why,
                    "the upstream does not answer; calls get 502 until it does"
                );
            }
        });
    }

    // Connections: the caps and timers of [server] (turnpike_http::conns), the total fitted to the
    // open-file limit, raised to the hard limit first.
    let open_files = turnpike_http::conns::raise_open_file_limit();
    let rules = Arc::new(config.server.conn_rules().fit_open_files(open_files));
    let cancel = CancellationToken::new();
    drop(gate);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tasks = tokio::task::JoinSet::new();
    let admin_addr = match &config.admin {
        Some(a) => {
            let admin = turnpike_operator::admin::Admin::new(
                operated.clone(),
                turnpike_operator::admin::AdminSettings {
                    token: a.token.expose(),
                    metrics_public: a.metrics_public,
                    allowed_hosts: &a.allowed_hosts,
                    allowed_origins: &a.allowed_origins,
                },
            );
            let l = TcpListener::bind(a.listen)
                .await
                .map_err(|e| GatewayError::AdminBind(a.listen, e))?;
            let addr = l.local_addr().ok();
            let shown = addr.unwrap_or(a.listen);
            tracing::info!(
                target: "turnpike::serve",
                listen = %shown,
                dashboard = %format!("http://{shown}/admin/"),
                "admin listening (metrics, API, dashboard)"
            );
            if !a.listen.ip().is_loopback() {
                tracing::warn!(
                    target: "turnpike::serve",
                    listen = %a.listen,
                    "the admin listener is not on loopback: /metrics, the dashboard and the admin API are reachable from the network"
                );
            }
            tasks.spawn(admin.serve(l, Arc::new(rules.for_admin()), cancel.clone()));
            addr
        }
        None => None,
    };
    tasks.spawn(turnpike_operator::triggers::sample_history(
        operated.clone(),
    ));
    if opts.reload.is_some() {
        #[cfg(unix)]
        tasks.spawn(turnpike_operator::triggers::on_sighup(operated.clone()));
        if let (Some(path), true) = (&opts.watch, config.server.watch_config) {
            tasks.spawn(turnpike_operator::triggers::watch_file(
                operated.clone(),
                path.clone(),
                WATCH_EVERY,
            ));
        }
    }
    if let Some(f) = &opts.on_ready {
        f(&live, admin_addr);
    }

    let tracker = turnpike_http::conns::Tracker::new(rules.max_connections, rules.max_per_address);
    let (serving_live, serving_mounts) = (live.clone(), mounts.clone());
    let accept = turnpike_http::conns::accept_loop(
        listener,
        tracker.clone(),
        rules.clone(),
        cancel.clone(),
        "endpoint",
        move |peer| {
            let upstream = upstream.clone();
            let endpoint = endpoint.clone();
            let mounts = serving_mounts.clone();
            let live = serving_live.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                // The gate in force when the request arrives serves it to the end.
                let gate = live.gate();
                let svc = TurnpikeService::new(gate.clone(), upstream.clone());
                route(svc, gate, endpoint.clone(), mounts.clone(), peer, req)
            })
        },
    );
    // Accepting stops when the accept loop is dropped (with the listener).
    tokio::select! {
        () = accept => {}
        () = &mut shutdown => {}
    }
    tracing::info!(target: "turnpike::serve", "shutting down");
    mounts.shutdown();
    if let Some(stdio) = &stdio {
        stdio.shutdown();
    }
    let grace = Duration::from_secs(live.config().server.shutdown_timeout_secs);
    cancel.cancel();
    if tokio::time::timeout(grace, tracker.drained())
        .await
        .is_err()
    {
        tracing::warn!(target: "turnpike::serve", "connections still open after the drain period");
    }
    tasks.shutdown().await;
    if let Some(t) = &telemetry {
        // The spans of the last calls go out before the process ends.
        t.flush(TELEMETRY_FLUSH).await;
        let stats = t.stats();
        tracing::info!(
            target: "turnpike::telemetry",
            spans_exported = stats.exported,
            spans_dropped = stats.dropped,
            spans_failed = stats.failed,
            "telemetry flushed"
        );
    }
    // The last gate goes, and with it the rails and the L402 store (closed, rows committed).
    drop(live);
    tracing::info!(target: "turnpike::serve", "stopped");
    Ok(())
}

/// How long the spans of the last calls may take to leave at shutdown.
const TELEMETRY_FLUSH: Duration = Duration::from_secs(5);

/// Starts the span exporter when `[telemetry]` is on (`None`: off, no work on the call path).
fn start_telemetry(config: &Config) -> Result<Option<turnpike_telemetry::Telemetry>, GatewayError> {
    let Some(t) = &config.telemetry else {
        return Ok(None);
    };
    let telemetry = turnpike_telemetry::Telemetry::start(t).map_err(GatewayError::Telemetry)?;
    tracing::info!(
        target: "turnpike::serve",
        collector = %t.otlp_endpoint.split('?').next().unwrap_or(""),
        service_name = %t.service_name,
        sample_ratio = t.sample_ratio,
        "telemetry on: spans exported over OTLP/HTTP"
    );
    Ok(Some(telemetry))
}

/// Where a running dev wallet's address and macaroon are written, under `server.data_dir`.
pub const DEV_WALLET_FILE: &str = "dev-wallet.json";

/// Starts the dev wallet when `[lightning] backend = "dev"` has a `[lightning.dev_wallet]`
/// table, and writes `{"url": …, "macaroon_hex": …}` to `<data_dir>/dev-wallet.json` (mode
/// 0600) so that a local client can pay through it. **Not for production.**
async fn start_dev_wallet(
    config: &Config,
    gate: &Gate,
) -> Result<Option<turnpike_lightning::dev::DevWallet>, GatewayError> {
    let (Some(dev), Some(wcfg)) = (
        gate.rails().get::<turnpike_lightning::dev::DevBackend>(),
        turnpike_l402::conf::lightning(&config.rails).and_then(|l| l.dev_wallet.clone()),
    ) else {
        return Ok(None);
    };
    let wallet = dev
        .serve_wallet(
            wcfg.listen,
            turnpike_lightning::dev::DevWalletOptions {
                router_preimage_base64: wcfg.preimage_base64,
            },
        )
        .await
        .map_err(|e| GatewayError::L402(format!("dev wallet on {}: {e}", wcfg.listen)))?;
    let path = config.server.data_dir.join(DEV_WALLET_FILE);
    let json = serde_json::json!({"url": wallet.url(), "macaroon_hex": wallet.macaroon_hex});
    std::fs::create_dir_all(&config.server.data_dir)
        .and_then(|()| turnpike_fs::write_private(&path, json.to_string().as_bytes()))
        .map_err(|e| GatewayError::L402(format!("{}: {e}", path.display())))?;
    tracing::warn!(
        target: "turnpike::serve",
        url = %wallet.url(),
        credentials = %path.display(),
        "dev wallet (LND REST look-alike) listening — NOT FOR PRODUCTION"
    );
    Ok(Some(wallet))
}

async fn route(
    mut svc: TurnpikeService<BoxUpstream>,
    gate: Arc<Gate>,
    endpoint: Arc<str>,
    mounts: Arc<crate::mount::Mounts>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(mut svc) = mounts.service(req.uri().path()) {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(PeerAddr(peer));
        return svc.call(req).await;
    }
    if req.uri().path() != &*endpoint {
        let req = req.map(Body::new);
        if let Some(r) = gate.metadata_response(&req) {
            return Ok(r);
        }
        return Ok(crate::respond::json_error(
            StatusCode::NOT_FOUND,
            None,
            error_codes::INVALID_REQUEST,
            "no MCP endpoint here",
        ));
    }
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(PeerAddr(peer));
    svc.call(req).await
}
