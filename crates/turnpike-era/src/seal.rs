//! Sealed, self-contained session ids for legacy (2025) clients of a modern upstream.
//!
//! When the gateway answers `initialize` itself (the upstream speaks only MCP 2026-07-28), the
//! session a legacy client believes it has lives entirely in its `Mcp-Session-Id`: the
//! negotiated protocol version, the client's capabilities and identity, and when it was issued,
//! under an HMAC-SHA256 tag. Any gateway instance holding the same key (the `era-session.key`
//! file in `server.data_dir`, or the same file copied to every instance) can route the session,
//! also after a restart; nothing is stored when a session starts.
//!
//! Format: `v1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "turnpike-session-v1." +
//! claims))>`. The tag is checked in constant time before the claims are parsed. The claims are
//! signed, not encrypted: they hold what the client itself sent (capabilities, client info),
//! never a credential.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use turnpike_core::mac::{hmac_sha256, HmacSha256, Mac};

/// The key file's name under `server.data_dir`.
pub const KEY_FILE: &str = "era-session.key";

/// Longest session id the gateway issues or reads (claims with large capability objects are
/// refused at `initialize`).
pub const MAX_ID_LEN: usize = 6 * 1024;

const DOMAIN: &[u8] = b"turnpike-session-v1.";

/// What a sealed session id carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The protocol version negotiated with the legacy client.
    pub v: String,
    /// The client's `capabilities` from its `initialize`.
    pub caps: Value,
    /// The client's `clientInfo` from its `initialize` (`null` when absent).
    #[serde(default)]
    pub info: Value,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// 128 random bits (hex), so that two clients that send the same `initialize` in the same
    /// second still get sessions of their own ([`SessionClaims::nonce`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub n: String,
}

impl SessionClaims {
    /// A fresh random value for [`SessionClaims::n`].
    pub fn nonce() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }
}

/// Why a session id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not an id of this format, or its tag does not verify under this key.
    #[error("unknown session")]
    Invalid,
    /// Genuine, but older than the session lifetime.
    #[error("session expired")]
    Expired,
    /// The claims are too large to travel as a header.
    #[error("session too large")]
    TooLarge,
}

/// Seals and opens session ids under one 256-bit key.
pub struct Sealer {
    key: [u8; 32],
    ttl_secs: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with `key`; sessions live `ttl_secs` from issue.
    pub fn new(key: [u8; 32], ttl_secs: u64) -> Sealer {
        Sealer { key, ttl_secs }
    }

    /// A sealer with a fresh random key (sessions do not survive a restart).
    pub fn random(ttl_secs: u64) -> Sealer {
        Sealer::new(rand::random(), ttl_secs)
    }

    /// The key in `dir/era-session.key` (64 hex digits), created with mode 0600 when missing.
    /// Instances starting at once on one directory agree on one key: the file appears whole
    /// (written aside, then linked into place) and a loser of the race reads the winner's.
    pub fn load_or_create(dir: &Path, ttl_secs: u64) -> std::io::Result<Sealer> {
        match Self::load(dir, ttl_secs) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(dir, ttl_secs),
            r => r,
        }
    }

    fn load(dir: &Path, ttl_secs: u64) -> std::io::Result<Sealer> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: not 64 hex digits", path.display()),
                    )
                })?;
                Ok(Sealer::new(key, ttl_secs))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                std::fs::create_dir_all(dir)?;
                turnpike_fs::create_private(&path, hex::encode(key).as_bytes())?;
                Ok(Sealer::new(key, ttl_secs))
            }
            Err(e) => Err(e),
        }
    }

    fn tag(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = hmac_sha256(&self.key);
        mac.update(DOMAIN);
        mac.update(payload);
        mac
    }

    /// How long a session lives, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Seals `claims` into a session id (visible ASCII).
    pub fn seal(&self, claims: &SessionClaims) -> Result<String, SealError> {
        let json = serde_json::to_vec(claims).map_err(|_| SealError::TooLarge)?;
        let payload = B64.encode(json);
        let tag = self.tag(payload.as_bytes()).finalize().into_bytes();
        let id = format!("v1.{payload}.{}", B64.encode(tag));
        if id.len() > MAX_ID_LEN {
            return Err(SealError::TooLarge);
        }
        Ok(id)
    }

    /// Opens a session id: the tag must verify (constant time) and the session be unexpired.
    pub fn open(&self, id: &str) -> Result<SessionClaims, SealError> {
        self.open_at(id, turnpike_core::unix_now())
    }

    /// [`Sealer::open`] at a given time (tests).
    pub fn open_at(&self, id: &str, now: u64) -> Result<SessionClaims, SealError> {
        if id.len() > MAX_ID_LEN {
            return Err(SealError::Invalid);
        }
        let rest = id.strip_prefix("v1.").ok_or(SealError::Invalid)?;
        let (payload, tag) = rest.split_once('.').ok_or(SealError::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| SealError::Invalid)?;
        self.tag(payload.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| SealError::Invalid)?;
        let json = B64.decode(payload).map_err(|_| SealError::Invalid)?;
        let claims: SessionClaims =
            serde_json::from_slice(&json).map_err(|_| SealError::Invalid)?;
        if now.saturating_sub(claims.iat) > self.ttl_secs || claims.iat > now + 300 {
            return Err(SealError::Expired);
        }
        Ok(claims)
    }
}

/// What keys a sealed session in this instance's tables: the first 16 bytes of the id's
/// SHA-256 (the id itself may be kilobytes long).
pub type SessionKey = [u8; 16];

/// The [`SessionKey`] of session id `id`.
pub fn session_key(id: &str) -> SessionKey {
    let d = Sha256::digest(id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> SessionClaims {
        SessionClaims {
            v: "2025-11-25".into(),
            caps: json!({"sampling": {}}),
            info: json!({"name": "c", "version": "1"}),
            iat: 1_000,
            n: SessionClaims::nonce(),
        }
    }

    #[test]
    fn instances_starting_at_once_share_one_key() {
        let dir = std::env::temp_dir().join(format!(
            "turnpike-seal-race-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        ));
        let sealers: Vec<Sealer> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Sealer::load_or_create(&dir, 60).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(sealers.iter().all(|s| s.key == sealers[0].key));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(KEY_FILE)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn equal_initializes_get_distinct_sessions() {
        let s = Sealer::new([7; 32], 3600);
        let (a, b) = (claims(), claims());
        assert_ne!(s.seal(&a).unwrap(), s.seal(&b).unwrap());
        assert_eq!(s.open_at(&s.seal(&a).unwrap(), 1_000).unwrap(), a);
    }

    #[test]
    fn round_trip_and_tamper() {
        let s = Sealer::new([7; 32], 3600);
        let c = claims();
        let id = s.seal(&c).unwrap();
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(s.open_at(&id, 1_100).unwrap(), c);
        // Another key (another deployment) cannot open it.
        assert_eq!(
            Sealer::new([8; 32], 3600).open_at(&id, 1_100),
            Err(SealError::Invalid)
        );
        // A changed payload breaks the tag.
        let mut forged = claims();
        forged.v = "2024-11-05".into();
        let other = s.seal(&forged).unwrap();
        let (_, p2) = other.rsplit_once('.').unwrap();
        let (p1, _) = id.rsplit_once('.').unwrap();
        assert_eq!(
            s.open_at(&format!("{p1}.{p2}"), 1_100),
            Err(SealError::Invalid)
        );
        for bad in ["", "v1.", "v1.a.b", "v2.x.y", "random-session-id"] {
            assert_eq!(s.open_at(bad, 1_100), Err(SealError::Invalid), "{bad}");
        }
        assert_eq!(s.open_at(&id, 1_000 + 3601), Err(SealError::Expired));
    }

    #[test]
    fn key_file_is_reused() {
        let dir = std::env::temp_dir().join(format!("tp-seal-{}", rand::random::<u64>()));
        let a = Sealer::load_or_create(&dir, 60).unwrap();
        let b = Sealer::load_or_create(&dir, 60).unwrap();
        let mut c = claims();
        c.iat = turnpike_core::unix_now();
        let id = a.seal(&c).unwrap();
        assert_eq!(b.open(&id).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
