//! The client's state on disk: one directory (owner-only, 0700) holding
//!
//! - `credentials.json` (0600): L402 tokens kept for reuse (balances, time passes) and OAuth
//!   tokens, per server;
//! - `spend.jsonl` (0600): the spend log, one JSON object a line, appended;
//! - `lock`: an exclusive lock (held while a budget is checked and a payment made, so that
//!   several bridges sharing the directory never overspend together).
//!
//! Files are created 0600 and replaced atomically by [`turnpike_fs`].

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::ClientError;

/// The default state directory: `$TURNPIKE_CONNECT_DIR`, else `$XDG_CONFIG_HOME/turnpike/connect`,
/// else `~/.config/turnpike/connect`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TURNPIKE_CONNECT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("turnpike").join("connect")
}

/// Creates `dir` (and parents) with mode 0700 where it is created, and refuses a directory that
/// others can read, write or enter.
pub fn ensure_dir(dir: &Path) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::State(format!("{}: {e}", dir.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        // Parents are created 0700 too (umask permitting); only `dir` itself is checked.
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(ClientError::State(format!(
                "{} is accessible by other users (mode {:o}): it would hold credentials;                  chmod 700 it or choose another directory",
                dir.display(),
                mode & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(io)?;
    Ok(())
}

/// An exclusive lock on the state directory, released on drop.
pub struct DirLock {
    _file: File,
}

/// Takes the directory's lock, blocking until it is free.
pub fn lock_dir(dir: &Path) -> Result<DirLock, ClientError> {
    let path = dir.join("lock");
    let f = turnpike_fs::open_private_append(&path)
        .map_err(|e| ClientError::State(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        loop {
            // SAFETY: flock on a file descriptor this function owns; released when it is closed.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(ClientError::State(format!(
                    "locking {}: {e}",
                    path.display()
                )));
            }
        }
    }
    Ok(DirLock { _file: f })
}

/// An L402 token kept for reuse.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredL402 {
    /// The server's endpoint URL.
    pub server: String,
    /// The macaroon (base64, as the server sent it).
    pub macaroon: String,
    /// The preimage, hex.
    pub preimage: String,
    /// `balance` or `time_pass` (per-call tokens are used at once and not kept).
    pub mode: String,
    /// Tools this token was used for (a time pass is bound to its tool; a balance works for
    /// every tool billed from a balance).
    pub tools: Vec<String>,
    /// Unix time it stops being valid (0: unknown).
    pub expires: u64,
    /// What was paid for it, msat.
    pub paid_msat: u64,
}

impl std::fmt::Debug for StoredL402 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredL402")
            .field("server", &self.server)
            .field("mode", &self.mode)
            .field("tools", &self.tools)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// An OAuth access token kept for reuse.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The resource (the server's endpoint URL, as its metadata names it).
    pub resource: String,
    /// The issuer it came from.
    pub issuer: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The access token.
    pub access_token: String,
    /// A refresh token, when the server issued one.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Unix time it expires (0: unknown).
    pub expires_at: u64,
    /// The scopes asked for (space-separated).
    pub scope: String,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("resource", &self.resource)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Everything in `credentials.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Kept L402 tokens.
    #[serde(default)]
    pub l402: Vec<StoredL402>,
    /// Kept OAuth tokens.
    #[serde(default)]
    pub oauth: Vec<StoredToken>,
}

impl Credentials {
    /// Reads `dir/credentials.json` (empty when absent). A file readable by group or others is
    /// refused: it holds secrets.
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join("credentials.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ClientError::State(format!("{}: {e}", path.display()))),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(ClientError::State(format!(
                    "{} is readable by other users (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::State(format!("{}: {e}", path.display())))
    }

    /// Writes `dir/credentials.json` atomically, mode 0600.
    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let path = dir.join("credentials.json");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| ClientError::State(format!("encoding credentials: {e}")))?;
        turnpike_fs::write_private(&path, &bytes)
            .map_err(|e| ClientError::State(format!("{}: {e}", path.display())))
    }

    /// Drops expired entries.
    pub fn prune(&mut self, now: u64) {
        self.l402.retain(|t| t.expires == 0 || t.expires > now);
    }
}
