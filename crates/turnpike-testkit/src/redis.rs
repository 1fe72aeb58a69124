//! A real redis-server of the test's own: on a free loopback port, in a temp dir, nothing
//! persisted, killed when dropped. Never the machine's own instance. [`RedisCluster`]: three
//! such servers in cluster mode, made one Redis Cluster.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process of the test's own; killed and its directory removed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// The loopback port it listens on.
    pub port: u16,
    dir: PathBuf,
    /// Arguments added to every start (cluster mode and its bus port).
    extra: Vec<String>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

fn connect(port: u16) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    Some(s)
}

fn ping(port: u16) -> bool {
    let Some(mut s) = connect(port) else {
        return false;
    };
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// The process id of the server answering on `port` (so a test never talks to a server it did
/// not start).
fn server_pid(port: u16) -> Option<u32> {
    let mut s = connect(port)?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains("process_id:") || !text[text.find("process_id:")?..].contains('\n') {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let rest = &text[text.find("process_id:")? + "process_id:".len()..];
    rest.lines().next()?.trim().parse().ok()
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new)
    }

    /// Starts a server on a free port with the arguments `extra` gives (asked again on each
    /// attempt, so ports in them are fresh too).
    fn start_with(extra: impl Fn() -> Vec<String>) -> RedisServer {
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("turnpike-redis-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the server's temp dir");
            let mut s = RedisServer {
                child: None,
                port,
                dir,
                extra: extra(),
            };
            if s.spawn() {
                return s;
            }
            let _ = std::fs::remove_dir_all(&s.dir);
        }
        panic!("could not start redis-server on a free loopback port");
    }

    /// Starts redis-server on `self.port`; true once it answers (and is ours).
    fn spawn(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let pid = child.id();
        self.child = Some(child);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false; // exited: a port is taken
            }
            if ping(self.port) {
                if server_pid(self.port) == Some(pid) {
                    return true;
                }
                break; // someone else's server answers on this port
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        false
    }

    /// The server's URL (`redis://127.0.0.1:<port>/0`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(!ping(self.port), "redis-server still answers after kill");
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come back on its port"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `cmd` (inline form: words separated by spaces) and returns the raw reply (a
    /// bulk reply such as `INFO`'s read whole), `None` when the server does not answer.
    pub fn command(&self, cmd: &str) -> Option<String> {
        command(self.port, cmd)
    }

    /// Whether the server process is up (false after [`RedisServer::kill`]).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `redis-server` can be run here (tests that need one skip, saying so, when not).
pub fn redis_server_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends one inline command to the server on `port`; its first reply line (up to 64 KiB of
/// reply for multi-line answers such as `CLUSTER INFO`).
fn command(port: u16, cmd: &str) -> Option<String> {
    let mut s = connect(port)?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        // A status or error line, or a bulk string read to its end.
        let done = match text.strip_prefix('$') {
            Some(rest) => rest
                .split_once("\r\n")
                .is_some_and(|(len, body)| len.parse::<usize>().is_ok_and(|l| body.len() >= l + 2)),
            None => text.ends_with("\r\n"),
        };
        if done || out.len() > 65_536 {
            break;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// A Redis Cluster of the test's own: three masters (no replicas), each a redis-server child on
/// free loopback ports (its client port and its cluster bus port, both picked by binding port 0
/// and retried on collision), slots split in three, nothing persisted. Killed, and its
/// directories removed, on drop.
///
/// Without replicas, a master that goes away takes its slots with it (after the node timeout,
/// one second here, the whole cluster refuses: full coverage is required); restarted with
/// [`RedisCluster::restart_node`], it rejoins with its slots (its `nodes.conf` is kept) but
/// empty.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// The slots of each of the three masters.
const SLOT_RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

impl RedisCluster {
    /// Starts three nodes and makes them one cluster; returns once every node reports the
    /// cluster up (within 30 s, else panics). `None`, after saying so on stderr, when
    /// redis-server is not installed.
    pub fn start() -> Option<RedisCluster> {
        if !redis_server_installed() {
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let extra = || {
            [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--cluster-port",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([free_port().to_string()])
            .collect()
        };
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_with(extra)).collect();
        let cluster = RedisCluster { nodes };
        for (node, (first, last)) in cluster.nodes.iter().zip(SLOT_RANGES) {
            let r = command(node.port, &format!("CLUSTER ADDSLOTSRANGE {first} {last}"));
            assert!(
                r.as_deref().is_some_and(|r| r.starts_with("+OK")),
                "CLUSTER ADDSLOTSRANGE: {r:?}"
            );
        }
        for node in &cluster.nodes[1..] {
            let bus = node.bus_port();
            let r = command(
                cluster.nodes[0].port,
                &format!("CLUSTER MEET 127.0.0.1 {} {bus}", node.port),
            );
            assert!(
                r.as_deref().is_some_and(|r| r.starts_with("+OK")),
                "CLUSTER MEET: {r:?}"
            );
        }
        cluster.wait_until_up(Duration::from_secs(30));
        Some(cluster)
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The client ports of the three masters.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Whether every node that runs reports `cluster_state:ok` and knows all three.
    pub fn is_up(&self) -> bool {
        self.nodes.iter().all(|n| {
            n.is_running()
                && command(n.port, "CLUSTER INFO").is_some_and(|i| {
                    i.contains("cluster_state:ok") && i.contains("cluster_known_nodes:3")
                })
        })
    }

    /// Waits (polling) until [`RedisCluster::is_up`]; panics past `limit`.
    pub fn wait_until_up(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.is_up() {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills master `i` (SIGKILL): its slots are unreachable until it is restarted.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts master `i` again on its ports, from its `nodes.conf` (its slots, its id), empty;
    /// waits until the cluster is up again.
    pub fn restart_node(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_until_up(Duration::from_secs(30));
    }

    /// `key`'s hash slot, as the cluster computes it (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .map_or(0, |n| n.port);
        let reply = command(port, &format!("CLUSTER KEYSLOT {key}")).unwrap_or_default();
        reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The index of the master that holds `key`'s slot.
    pub fn node_of(&self, key: &str) -> usize {
        let slot = self.slot_of(key);
        SLOT_RANGES
            .iter()
            .position(|(first, last)| (*first..=*last).contains(&slot))
            .unwrap_or(0)
    }
}

impl RedisServer {
    /// The cluster bus port given with `--cluster-port` (0 when not in cluster mode).
    fn bus_port(&self) -> u16 {
        self.extra
            .iter()
            .position(|a| a == "--cluster-port")
            .and_then(|i| self.extra.get(i + 1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }
}
