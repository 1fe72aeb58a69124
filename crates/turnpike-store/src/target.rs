//! Where a Redis client connects, from `[store] redis_url`: one server, or a Redis Cluster
//! through some of its nodes.
//!
//! - `redis://[user:password@]host:port[/db]` and `redis+unix:///path[?db=n]`: one server (its
//!   URL is handed to the client as given).
//! - `redis+cluster://[user:password@]host:port[,host:port…]`: a Redis Cluster. The nodes
//!   listed are where the client starts (any one that answers tells it the whole cluster); the
//!   credentials, if any, are every node's. A cluster has database 0 only: no path but `/` or
//!   `/0`, and no query.
//!
//! Parsing is pure string work (no client needed), so `turnpike check` reports a bad value
//! with or without the Redis feature.

/// A parsed `redis_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server, at this URL (as given).
    Single(String),
    /// A Redis Cluster: one `redis://[user:password@]host:port` URL per node given.
    Cluster(Vec<String>),
}

/// The scheme of a cluster URL.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// The most nodes a cluster URL may list.
const MAX_NODES: usize = 64;

/// Parses `url` (see the module documentation). The error says what is wrong, never echoing a
/// password.
pub fn parse_target(url: &str) -> Result<RedisTarget, String> {
    if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
        return parse_cluster(rest).map(RedisTarget::Cluster);
    }
    if url.starts_with("redis://") || url.starts_with("redis+unix://") {
        return Ok(RedisTarget::Single(url.to_string()));
    }
    Err(
        "must start with redis:// (one server), redis+cluster:// (a Redis Cluster) or \
         redis+unix://"
            .into(),
    )
}

fn parse_cluster(rest: &str) -> Result<Vec<String>, String> {
    if rest.contains('?') || rest.contains('#') {
        return Err("a redis+cluster:// URL takes no query or fragment".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !matches!(path, "" | "/" | "/0") {
        return Err("a Redis Cluster has database 0 only: no path but /0".into());
    }
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if let Some(u) = userinfo {
        if u.is_empty() || u.contains(',') || u.contains('/') {
            return Err("malformed credentials before @".into());
        }
    }
    let mut nodes = Vec::new();
    for node in hosts.split(',') {
        let node = node.trim();
        check_node(node)?;
        let url = match userinfo {
            Some(u) => format!("redis://{u}@{node}"),
            None => format!("redis://{node}"),
        };
        nodes.push(url);
    }
    if nodes.len() > MAX_NODES {
        return Err(format!("at most {MAX_NODES} nodes"));
    }
    Ok(nodes)
}

/// `host:port`, host a name, an IPv4 address or a bracketed IPv6 address; port 1..=65535.
fn check_node(node: &str) -> Result<(), String> {
    if node.is_empty() {
        return Err("give at least one node as host:port (no empty entries between commas)".into());
    }
    let Some(colon) = node.rfind(':') else {
        return Err(format!("node {node:?} needs a port (host:port)"));
    };
    let (host, port) = (&node[..colon], &node[colon + 1..]);
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("node {node:?}: the port must be 1 to 65535")),
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    if !host_ok {
        return Err(format!("node {node:?}: not a host name or address"));
    }
    Ok(())
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag — the part between
/// the first `{` and the next `}` when that is not empty — else of the whole key, mod 16384.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key.find('{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let mut crc = 0u16;
    for &b in tagged.unwrap_or(bytes) {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server() {
        assert_eq!(
            parse_target("redis://127.0.0.1:6379/0"),
            Ok(RedisTarget::Single("redis://127.0.0.1:6379/0".into()))
        );
        assert!(matches!(
            parse_target("redis+unix:///run/redis.sock"),
            Ok(RedisTarget::Single(_))
        ));
    }

    #[test]
    fn cluster_nodes() {
        assert_eq!(
            parse_target("redis+cluster://10.0.0.1:7000,10.0.0.2:7000, node-3.local:7001/"),
            Ok(RedisTarget::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into(),
                "redis://node-3.local:7001".into(),
            ]))
        );
        assert_eq!(
            parse_target("redis+cluster://:s3cret@[::1]:7000"),
            Ok(RedisTarget::Cluster(vec![
                "redis://:s3cret@[::1]:7000".into()
            ]))
        );
    }

    #[test]
    fn slots_as_redis_computes_them() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot("123456789"), 0x31c3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_ne!(
            key_slot("foo{}{bar}"),
            key_slot("bar"),
            "an empty tag hashes the key"
        );
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
    }

    #[test]
    fn bad_values_say_why() {
        let err = |u: &str| parse_target(u).unwrap_err();
        assert!(err("http://x:1").contains("redis+cluster://"));
        assert!(err("redis+cluster://").contains("at least one node"));
        assert!(err("redis+cluster://a:1,,b:2").contains("no empty entries"));
        assert!(err("redis+cluster://a").contains("needs a port"));
        assert!(err("redis+cluster://a:0").contains("1 to 65535"));
        assert!(err("redis+cluster://a:70000").contains("1 to 65535"));
        assert!(err("redis+cluster://a:1/3").contains("database 0"));
        assert!(err("redis+cluster://a:1?x=1").contains("no query"));
        assert!(err("redis+cluster://a b:1").contains("not a host"));
        assert!(err("redis+cluster://[zz]:1").contains("not a host"));
        let e = err("redis+cluster://u:hunter2@a");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
