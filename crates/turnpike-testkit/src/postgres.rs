//! A real PostgreSQL server of the test's own: a cluster made with `initdb` in a temp dir,
//! started with `pg_ctl` on a free loopback port (trust authentication, loopback only, fsync
//! off), stopped and removed when dropped. Run as the `postgres` user when the test runs as
//! root (PostgreSQL refuses to run as root).
//!
//! `initdb` runs once per machine and PostgreSQL version: its result is kept as a template
//! (`$TMPDIR/turnpike-pg-template-<version>-<uid>`) and copied for each server, so a server
//! starts in well under a second.
//!
//! Where no PostgreSQL binaries are installed, [`PgDb::new`] falls back to the machine's
//! server (`TURNPIKE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`); every
//! [`PgDb`] works in a schema of its own either way.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the PostgreSQL server binaries are: `initdb` on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// uid and gid to run the server as: the `postgres` user when we are root, else ourselves.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    #[allow(unsafe_code)]
    let uid = unsafe { libc_getuid() };
    if uid != 0 {
        return None;
    }
    let out = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(o.stdout).ok()?.trim().parse().ok()
    };
    Some((
        out("-u").expect("running as root needs a `postgres` user"),
        out("-g")?,
    ))
}

extern "C" {
    #[link_name = "getuid"]
    fn libc_getuid() -> u32;
}

fn command(bin: &Path, name: &str, as_user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin.join(name));
    if let Some((uid, gid)) = as_user {
        c.uid(uid).gid(gid);
    }
    c.env("LC_ALL", "C").stdin(Stdio::null());
    c
}

fn chown_tree(path: &Path, as_user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = as_user {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "chown {}", path.display());
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

/// The initdb'd template for this machine, made once (race-safe: made aside, then renamed).
fn template(bin: &Path, as_user: Option<(u32, u32)>) -> PathBuf {
    let version = Command::new(bin.join("pg_ctl"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let version: String = version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or("x")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let uid = as_user.map(|u| u.0).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("turnpike-pg-template-{version}-{uid}"));
    if dir.join("PG_VERSION").is_file() && dir.join("postgresql.conf").is_file() {
        return dir;
    }
    let work = std::env::temp_dir().join(format!(
        "turnpike-pg-initdb-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create the initdb dir");
    chown_tree(&work, as_user);
    let data = work.join("data");
    let out = command(bin, "initdb", as_user)
        .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
        .arg("-D")
        .arg(&data)
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::fs::rename(&data, &dir).is_err() {
        // Someone else made it first.
        assert!(dir.join("PG_VERSION").is_file(), "template missing");
    }
    let _ = std::fs::remove_dir_all(&work);
    dir
}

/// Stops and removes the servers of test processes that died without dropping theirs (killed
/// by a timeout, say): their directories name the process id.
fn reap_orphans(bin: &Path, as_user: Option<(u32, u32)>) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("turnpike-pg-test-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = e.path();
        if dir.join("postmaster.pid").is_file() {
            let _ = command(bin, "pg_ctl", as_user)
                .arg("-D")
                .arg(&dir)
                .args(["-m", "immediate", "-w", "-t", "10", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A PostgreSQL server of the test's own.
pub struct PgServer {
    bin: PathBuf,
    as_user: Option<(u32, u32)>,
    dir: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    running: bool,
}

impl PgServer {
    /// Makes a cluster (copied from the template) and starts it on a free loopback port.
    /// Panics when PostgreSQL is not installed; see [`PgServer::available`].
    pub fn start() -> PgServer {
        let bin = bin_dir().expect("PostgreSQL server binaries (initdb, pg_ctl) not found");
        let as_user = run_as();
        reap_orphans(&bin, as_user);
        let template = template(&bin, as_user);
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("turnpike-pg-test-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "copy the PostgreSQL template");
            chown_tree(&dir, as_user);
            let mut s = PgServer {
                bin: bin.clone(),
                as_user,
                dir,
                port,
                running: false,
            };
            if s.pg_start() {
                return s;
            }
            let _ = std::fs::remove_dir_all(&s.dir);
        }
        panic!("could not start PostgreSQL on a free loopback port");
    }

    /// Whether [`PgServer::start`] can work here.
    pub fn available() -> bool {
        bin_dir().is_some()
    }

    fn pg_start(&mut self) -> bool {
        let opts = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=on -c full_page_writes=off -c max_connections=200 -c shared_buffers=16MB",
            self.port,
            self.dir.display()
        );
        let ok = command(&self.bin, "pg_ctl", self.as_user)
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &opts, "-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        self.running = ok;
        ok
    }

    fn pg_stop(&mut self, mode: &str) {
        let _ = command(&self.bin, "pg_ctl", self.as_user)
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", mode, "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server abruptly (`pg_ctl stop -m immediate`: no checkpoint, as in a crash;
    /// committed transactions survive through the WAL).
    pub fn kill(&mut self) {
        self.pg_stop("immediate");
    }

    /// Starts it again on the same port, with the same data.
    pub fn restart(&mut self) {
        if self.running {
            self.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.pg_start() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not come back on its port"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the server is up (false after [`PgServer::kill`], until [`PgServer::restart`]).
    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            self.pg_stop("immediate");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database for one test: a server of its own where PostgreSQL is installed, else the
/// machine's; and a schema of its own (`schema`) in it.
pub struct PgDb {
    /// The test's own server, when PostgreSQL is installed here (`None`: the machine's server).
    pub server: Option<PgServer>,
    url: String,
    /// The schema this test owns (`t_<pid>_<nanos>`).
    pub schema: String,
}

impl PgDb {
    /// A fresh schema on a server of the test's own, or on the machine's server
    /// (`TURNPIKE_TEST_PG_URL`, else `postgres://postgres@127.0.0.1:5432/test`) when PostgreSQL
    /// is not installed here.
    pub fn new() -> PgDb {
        let schema = format!(
            "t_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        if PgServer::available() {
            let s = PgServer::start();
            PgDb {
                url: s.url(),
                server: Some(s),
                schema,
            }
        } else {
            PgDb {
                url: std::env::var("TURNPIKE_TEST_PG_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
                server: None,
                schema,
            }
        }
    }

    /// The server's connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server, when the test started its own (fault tests need one).
    pub fn server_mut(&mut self) -> Option<&mut PgServer> {
        self.server.as_mut()
    }
}

impl Default for PgDb {
    fn default() -> Self {
        Self::new()
    }
}
