//! The gate as a tower [`Layer`]: put it in front of any MCP server's HTTP service.
//!
//! ```ignore
//! let gate = Arc::new(Gate::with_rails(opts, policy, Rails::only(pow_rail)));
//! let service = ServiceBuilder::new().layer(TurnpikeLayer::new(gate)).service(mcp_service);
//! ```
//!
//! The inner service takes `http::Request<axum::body::Body>` and may answer with any body whose
//! data is [`Bytes`]; the layered service answers with `axum::body::Body`.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::Gate;

/// Wraps services in the gate.
#[derive(Clone, Debug)]
pub struct TurnpikeLayer {
    gate: Arc<Gate>,
}

impl TurnpikeLayer {
    /// A layer sharing `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        TurnpikeLayer { gate }
    }
}

impl<S> Layer<S> for TurnpikeLayer {
    type Service = TurnpikeService<S>;
    fn layer(&self, inner: S) -> TurnpikeService<S> {
        TurnpikeService {
            gate: self.gate.clone(),
            inner,
        }
    }
}

/// A service behind the gate (made by [`TurnpikeLayer`]).
#[derive(Clone, Debug)]
pub struct TurnpikeService<S> {
    gate: Arc<Gate>,
    inner: S,
}

impl<S> TurnpikeService<S> {
    /// `inner` behind `gate`.
    pub fn new(gate: Arc<Gate>, inner: S) -> Self {
        TurnpikeService { gate, inner }
    }
}

impl<S, B> Service<Request<Body>> for TurnpikeService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // The inner service is driven to readiness per call (on a clone), after the gate has
        // decided: a refused call never waits on the upstream.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let gate = self.gate.clone();
        Box::pin(async move { gate.handle(req, inner).await })
    }
}
