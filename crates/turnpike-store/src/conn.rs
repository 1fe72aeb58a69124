//! A Redis connection for turnpike's Redis state: one server or a Redis Cluster
//! ([`crate::target`]), reconnecting by itself, created without waiting for the server.
//!
//! - One server: a [`redis::aio::ConnectionManager`].
//! - A cluster: a [`redis::cluster_async::ClusterConnection`], which learns the slot map from
//!   the nodes given, sends each command to the master of its key's slot, follows `MOVED` and
//!   `ASK` redirections and reconnects to a node that went away. Every script turnpike runs
//!   touches keys of one hash slot only (the keys share a `{…}` hash tag), so it runs on one
//!   node, as Redis Cluster requires; `SCRIPT LOAD` goes to every master.
//!
//! Callers bound every operation with their own timeout; a timeout or a refused command is
//! unavailability, on which they fail closed (or as the operator says for limits).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::target::{parse_target, RedisTarget};

/// A connection to one Redis or to a Redis Cluster. Cheap to clone (clones share the
/// connections).
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
    /// The URL it was opened with: two connections with the same URL reach the same data.
    target: Arc<str>,
}

#[derive(Clone)]
enum Inner {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not shown.
        f.write_str(match self.inner {
            Inner::Single(_) => "RedisConn::Single",
            Inner::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// A connection to `url` (`redis://…`, `redis+unix://…` or `redis+cluster://host:port,…`),
    /// created without waiting for the server. Each attempt to connect and each answer waits at
    /// most `timeout`. Must be called inside a Tokio runtime.
    pub fn open(url: &str, timeout: Duration) -> Result<RedisConn, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the Redis client must be created inside a Tokio runtime".into());
        }
        let inner = match parse_target(url).map_err(|e| format!("bad Redis URL: {e}"))? {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url).map_err(|e| format!("bad Redis URL: {e}"))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(timeout);
                ConnectionManager::new_lazy_with_config(client, config)
                    .map(Inner::Single)
                    .map_err(|e| e.to_string())?
            }
            RedisTarget::Cluster(nodes) => {
                // Few retries, short waits: the caller's timeout bounds the whole operation,
                // and a slot whose master is down must fail fast (closed), not queue.
                let client = ClusterClientBuilder::new(nodes)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()
                    .map_err(|e| format!("bad Redis Cluster URL: {e}"))?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Inner::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        Ok(RedisConn {
            inner,
            target: Arc::from(url),
        })
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// The URL the connection was opened with (it may carry a password: never log it).
    pub fn target(&self) -> &Arc<str> {
        &self.target
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}
