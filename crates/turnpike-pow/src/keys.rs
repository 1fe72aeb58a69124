//! The HMAC keys that tag challenges.
//!
//! A [`KeyRing`] holds one *current* key, which tags new challenges, and older keys that still
//! verify challenges minted before the last rotation. Keys are either given (operator config,
//! e.g. shared by several gateway instances) or generated and persisted as JSON in
//! `<data_dir>/pow-keys.json`, written with mode 0600 in a directory created with mode 0700.
//!
//! Secrets are zeroized when dropped and never printed: `Debug` shows key ids and ages only.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;
use zeroize::{Zeroize, Zeroizing};

use crate::puzzle::SIGNED_LEN;

/// The name of the key file inside the data directory.
pub const KEY_FILE: &str = "pow-keys.json";

/// The longest challenge lifetime a persisted key ring assumes when it is not told the
/// configured one ([`KeyRing::load_or_generate`]): a retired key is kept this long (plus
/// [`CLOCK_SKEW_SECS`]) after the key that replaced it was created.
pub const MAX_EXPIRY_SECS: u64 = 86_400;

/// How far in the future a challenge's `issued_at` may lie (clock skew between instances).
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Why a key ring could not be built, loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key was given.
    #[error("a key ring needs at least one key")]
    Empty,
    /// Two keys share an id.
    #[error("key id {0} appears twice")]
    DuplicateId(u32),
    /// Reading or writing the key file or its directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `cannot read`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not what this crate writes.
    #[error(
        "{path} is not a valid key file ({reason}); move it away to generate new keys, or fix it"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never a secret).
        reason: String,
    },
    /// The key file can be read by others than its owner.
    #[error("{path} is accessible by group or others (mode {mode:o}); run `chmod 600 {path}` (and consider the keys compromised)")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// One HMAC key.
#[derive(Clone)]
struct Key {
    id: u32,
    /// Unix seconds at which the key was created (0 for keys given by the operator).
    created_at: u64,
    secret: Zeroizing<[u8; 32]>,
    /// The SHA-256 states after `key ^ ipad` and `key ^ opad` (HMAC's first block of each
    /// hash), so a tag costs three compressions instead of five.
    pads: Zeroizing<[u32; 16]>,
}

impl Key {
    fn new(id: u32, created_at: u64, secret: Zeroizing<[u8; 32]>) -> Key {
        let pads = pad_states(&secret);
        Key {
            id,
            created_at,
            secret,
            pads,
        }
    }

    /// HMAC-SHA256 of a token's signed bytes.
    fn tag(&self, msg: &[u8; SIGNED_LEN]) -> [u8; 32] {
        hmac_signed(&self.pads, msg)
    }
}

/// Where and how a generated key ring is persisted and rotated.
#[derive(Debug, Clone)]
struct Persist {
    path: PathBuf,
    /// Seconds after which the current key is replaced; 0 never rotates.
    rotation_secs: u64,
    /// Seconds a retired key is kept after its successor was created.
    retain_secs: u64,
}

/// HMAC-SHA256 keys with `u32` ids. The last key is current: it tags new challenges; every key
/// verifies.
pub struct KeyRing {
    /// Oldest first; never empty.
    keys: Vec<Key>,
    persist: Option<Persist>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for k in &self.keys {
            l.entry(&format_args!(
                "key {} (created {}, secret redacted)",
                k.id, k.created_at
            ));
        }
        l.finish()
    }
}

/// The key file's JSON form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: u32,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: u32,
    created_at: u64,
    /// 64 lower-case hex digits.
    secret: String,
}

impl Drop for KeyEntry {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

fn random_secret() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    use rand::TryRngCore;
    let mut s = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut s[..])
        .map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(s)
}

impl KeyRing {
    /// A fixed key ring from `(id, secret)` pairs, e.g. from the operator's config (several
    /// gateway instances sharing keys). The last pair is the current key. Never rotates.
    /// The given secrets are wiped from the vector's memory.
    pub fn from_secrets(mut secrets: Vec<(u32, [u8; 32])>) -> Result<KeyRing, KeyError> {
        let mut keys: Vec<Key> = Vec::with_capacity(secrets.len());
        let mut duplicate = None;
        for (id, secret) in secrets.iter_mut() {
            let key = Key::new(*id, 0, Zeroizing::new(*secret));
            secret.zeroize();
            if keys.iter().any(|k| k.id == *id) {
                duplicate.get_or_insert(*id);
            }
            keys.push(key);
        }
        drop(secrets);
        if let Some(id) = duplicate {
            return Err(KeyError::DuplicateId(id));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(KeyRing {
            keys,
            persist: None,
        })
    }

    /// Loads `<dir>/pow-keys.json`, or creates it with a fresh key; rotates the current key when
    /// it is older than `rotation_secs` (0 never rotates) and drops keys retired more than
    /// [`MAX_EXPIRY_SECS`] + [`CLOCK_SKEW_SECS`] ago. The directory is created with mode 0700 and
    /// the file written with mode 0600; a key file readable by group or others is refused.
    pub fn load_or_generate(dir: &Path, rotation_secs: u64) -> Result<KeyRing, KeyError> {
        Self::load_or_generate_at(
            dir,
            rotation_secs,
            MAX_EXPIRY_SECS + CLOCK_SKEW_SECS,
            turnpike_core::unix_now(),
        )
    }

    /// [`KeyRing::load_or_generate`] with the retention of retired keys (`retain_secs`: the
    /// longest challenge lifetime plus clock skew) and the time given.
    pub fn load_or_generate_at(
        dir: &Path,
        rotation_secs: u64,
        retain_secs: u64,
        now: u64,
    ) -> Result<KeyRing, KeyError> {
        ensure_dir(dir)?;
        let path = dir.join(KEY_FILE);
        let persist = Persist {
            path: path.clone(),
            rotation_secs,
            retain_secs,
        };
        let mut ring = match read_key_file(&path)? {
            Some(keys) => KeyRing {
                keys,
                persist: Some(persist),
            },
            None => {
                let ring = KeyRing {
                    keys: vec![Key::new(1, now, random_secret()?)],
                    persist: Some(persist),
                };
                ring.save()?;
                ring
            }
        };
        ring.rotate_if_due(now)?;
        Ok(ring)
    }

    /// If this ring is persisted and its current key is due for rotation at `now`, adds a new
    /// current key, drops keys retired long enough ago, and saves the file. Returns whether the
    /// ring changed. On error the ring is left as it was.
    pub fn rotate_if_due(&mut self, now: u64) -> Result<bool, KeyError> {
        let Some(p) = self.persist.clone() else {
            return Ok(false);
        };
        let mut changed = false;
        let mut keys: Vec<(u32, u64)> = self.keys.iter().map(|k| (k.id, k.created_at)).collect();
        let mut fresh = None;
        if let Some(&(cur_id, cur_created)) = keys.last() {
            if p.rotation_secs > 0 && now >= cur_created.saturating_add(p.rotation_secs) {
                let mut id = cur_id.wrapping_add(1);
                while id == 0 || keys.iter().any(|k| k.0 == id) {
                    id = id.wrapping_add(1);
                }
                keys.push((id, now));
                fresh = Some((id, random_secret()?));
                changed = true;
            }
        }
        // A key is retired when its successor is created; keep it `retain_secs` after that.
        let mut keep = vec![true; keys.len()];
        for j in 0..keys.len().saturating_sub(1) {
            let retired_at = keys[j + 1].1;
            if now >= retired_at.saturating_add(p.retain_secs) {
                keep[j] = false;
                changed = true;
            }
        }
        if !changed {
            return Ok(false);
        }
        let mut next: Vec<Key> = self
            .keys
            .iter()
            .zip(&keep)
            .filter(|(_, keep)| **keep)
            .map(|(k, _)| k.clone())
            .collect();
        if let Some((id, secret)) = fresh {
            next.push(Key::new(id, now, secret));
        }
        let old = std::mem::replace(&mut self.keys, next);
        if let Err(e) = self.save() {
            // Keep the previous keys: a key that is not on disk would be lost on restart.
            self.keys = old;
            return Err(e);
        }
        Ok(true)
    }

    /// When the current key is due for rotation (Unix seconds), for persisted rings that rotate.
    pub fn next_rotation_at(&self) -> Option<u64> {
        let p = self.persist.as_ref().filter(|p| p.rotation_secs > 0)?;
        let created = self.keys.last()?.created_at;
        // Retired keys may also become droppable before then; checking at the next rotation
        // (or restart) is early enough, they only cost memory.
        Some(created.saturating_add(p.rotation_secs))
    }

    /// The id of the current key.
    pub fn current_id(&self) -> u32 {
        self.keys.last().map(|k| k.id).unwrap_or(0)
    }

    /// The ids of all keys, oldest first.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring holds no key (never true for a ring built by this crate).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key file's path, for persisted rings.
    pub fn path(&self) -> Option<&Path> {
        self.persist.as_ref().map(|p| p.path.as_path())
    }

    /// Tags `msg` with the current key: `(key id, HMAC-SHA256)`.
    pub(crate) fn tag_current(&self, msg: &[u8; SIGNED_LEN]) -> (u32, [u8; 32]) {
        match self.keys.last() {
            Some(k) => (k.id, k.tag(msg)),
            None => (0, [0; 32]),
        }
    }

    /// Tags `msg` with key `id`, if the ring holds it.
    pub(crate) fn tag_with(&self, id: u32, msg: &[u8; SIGNED_LEN]) -> Option<[u8; 32]> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.id == id)
            .map(|k| k.tag(msg))
    }

    fn save(&self) -> Result<(), KeyError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        let file = KeyFile {
            format: 1,
            keys: self
                .keys
                .iter()
                .map(|k| KeyEntry {
                    id: k.id,
                    created_at: k.created_at,
                    secret: hex::encode(&k.secret[..]),
                })
                .collect(),
        };
        // Sized up front so the buffer holding secrets is never reallocated (and left behind).
        let mut json = Zeroizing::new(Vec::with_capacity(128 + 256 * self.keys.len()));
        serde_json::to_writer_pretty(&mut *json, &file).map_err(|e| KeyError::Corrupt {
            path: p.path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&p.path, &json)
    }
}

type Block = GenericArray<u8, sha2::digest::consts::U64>;

/// SHA-256's initial state.
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// HMAC-SHA256's precomputed states (RFC 2104): `[inner; outer]`, the SHA-256 states after one
/// block of `key ^ 0x36…` and `key ^ 0x5c…`.
fn pad_states(key: &[u8; 32]) -> Zeroizing<[u32; 16]> {
    let mut block = Zeroizing::new([0u8; 64]);
    let mut out = Zeroizing::new([0u32; 16]);
    for (half, pad) in [(0usize, 0x36u8), (8, 0x5c)] {
        block.fill(pad);
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        let mut state = SHA256_IV;
        sha2::compress256(&mut state, &[Block::clone_from_slice(&block[..])]);
        out[half..half + 8].copy_from_slice(&state);
        state.zeroize();
    }
    out
}

/// HMAC-SHA256 over a token's 79 signed bytes with precomputed pad states: the inner hash
/// covers 64 + 79 bytes (two more blocks after the pad), the outer 64 + 32 (one more block).
fn hmac_signed(pads: &[u32; 16], msg: &[u8; SIGNED_LEN]) -> [u8; 32] {
    let mut inner = [0u32; 8];
    inner.copy_from_slice(&pads[..8]);
    let mut tail = [0u8; 64];
    tail[..SIGNED_LEN - 64].copy_from_slice(&msg[64..]);
    tail[SIGNED_LEN - 64] = 0x80;
    tail[56..].copy_from_slice(&(((64 + SIGNED_LEN) as u64) * 8).to_be_bytes());
    sha2::compress256(
        &mut inner,
        &[
            Block::clone_from_slice(&msg[..64]),
            Block::clone_from_slice(&tail),
        ],
    );
    let mut outer = [0u32; 8];
    outer.copy_from_slice(&pads[8..]);
    let mut last = [0u8; 64];
    for (chunk, word) in last[..32].chunks_exact_mut(4).zip(inner) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    last[32] = 0x80;
    last[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
    sha2::compress256(&mut outer, &[Block::clone_from_slice(&last)]);
    let mut tag = [0u8; 32];
    for (chunk, word) in tag.chunks_exact_mut(4).zip(outer) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    tag
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(io_err("cannot create directory", dir))
}

fn read_key_file(path: &Path) -> Result<Option<Vec<Key>>, KeyError> {
    let bytes = match fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", path)(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)
            .map_err(io_err("cannot read", path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let corrupt = |reason: String| KeyError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.format != 1 {
        return Err(corrupt(format!("unknown format {}", file.format)));
    }
    let mut keys: Vec<Key> = Vec::with_capacity(file.keys.len());
    for e in &file.keys {
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&e.secret, &mut secret[..])
            .map_err(|_| corrupt(format!("key {}: secret is not 64 hex digits", e.id)))?;
        if keys.iter().any(|k| k.id == e.id) {
            return Err(corrupt(format!("key id {} appears twice", e.id)));
        }
        keys.push(Key::new(e.id, e.created_at, secret));
    }
    if keys.is_empty() {
        return Err(corrupt("no keys".into()));
    }
    // Oldest first, so the newest is current whatever order the file lists them in.
    keys.sort_by_key(|k| k.created_at);
    Ok(Some(keys))
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, then rename),
/// readable and writable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    turnpike_fs::write_private(path, bytes).map_err(io_err("cannot write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; SIGNED_LEN] = [7; SIGNED_LEN];

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "turnpike-pow-keys-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn from_secrets_rules() {
        assert!(matches!(
            KeyRing::from_secrets(vec![]),
            Err(KeyError::Empty)
        ));
        assert!(matches!(
            KeyRing::from_secrets(vec![(1, [1; 32]), (1, [2; 32])]),
            Err(KeyError::DuplicateId(1))
        ));
        let r = KeyRing::from_secrets(vec![(7, [1; 32]), (9, [2; 32])]).unwrap();
        assert_eq!(r.current_id(), 9);
        assert_eq!(r.ids(), vec![7, 9]);
        let (id, tag) = r.tag_current(&M);
        assert_eq!(id, 9);
        assert_eq!(r.tag_with(9, &M), Some(tag));
        assert_ne!(r.tag_with(7, &M), Some(tag));
        assert_eq!(r.tag_with(8, &M), None);
        assert!(r.next_rotation_at().is_none());
    }

    #[test]
    fn precomputed_hmac_matches_the_hmac_crate() {
        use hmac::{Hmac, Mac};
        use rand::RngCore;
        let mut rng = rand::rng();
        for _ in 0..200 {
            let mut key = [0u8; 32];
            let mut msg = [0u8; SIGNED_LEN];
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut msg);
            let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
            m.update(&msg);
            let want: [u8; 32] = m.finalize().into_bytes().into();
            assert_eq!(hmac_signed(&pad_states(&key), &msg), want);
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let r = KeyRing::from_secrets(vec![(3, [0xAB; 32])]).unwrap();
        let d = format!("{r:?}");
        assert!(d.contains("key 3"));
        assert!(!d.to_lowercase().contains("abab"));
        assert!(!d.contains("171"));
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn persists_rotates_and_retires() {
        let dir = tmpdir("rotate").join("nested");
        let t0 = 1_700_000_000;
        let r = KeyRing::load_or_generate_at(&dir, 1000, 400, t0).unwrap();
        assert_eq!(r.ids(), vec![1]);
        let file = dir.join(KEY_FILE);
        #[cfg(unix)]
        {
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.contains("\"format\": 1"));
        let (_, tag1) = r.tag_current(&M);
        drop(r);

        // Reloaded before rotation: same key.
        let r = KeyRing::load_or_generate_at(&dir, 1000, 400, t0 + 999).unwrap();
        assert_eq!(r.ids(), vec![1]);
        assert_eq!(r.tag_current(&M), (1, tag1));
        assert_eq!(r.next_rotation_at(), Some(t0 + 1000));
        drop(r);

        // Due: a new current key; the old one still verifies.
        let mut r = KeyRing::load_or_generate_at(&dir, 1000, 400, t0 + 1000).unwrap();
        assert_eq!(r.ids(), vec![1, 2]);
        assert_eq!(r.current_id(), 2);
        assert_eq!(r.tag_with(1, &M), Some(tag1));
        assert_ne!(r.tag_current(&M).1, tag1);
        // Not yet past retention of key 1 (retired at t0+1000).
        assert!(!r.rotate_if_due(t0 + 1399).unwrap());
        assert_eq!(r.ids(), vec![1, 2]);
        // Past retention: key 1 is dropped, and the file says so.
        assert!(r.rotate_if_due(t0 + 1400).unwrap());
        assert_eq!(r.ids(), vec![2]);
        let r2 = KeyRing::load_or_generate_at(&dir, 1000, 400, t0 + 1401).unwrap();
        assert_eq!(r2.ids(), vec![2]);
        assert_eq!(r2.tag_current(&M), r.tag_current(&M));
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600);
        // Long downtime: rotation on load and the previous key kept until retention passes.
        let r3 = KeyRing::load_or_generate_at(&dir, 1000, 400, t0 + 10_000).unwrap();
        assert_eq!(r3.ids(), vec![2, 3]);
        // No stray temporary files.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE)]);
        let _ = fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn no_rotation_when_zero() {
        let dir = tmpdir("norot");
        let r = KeyRing::load_or_generate_at(&dir, 0, 10, 5).unwrap();
        assert!(r.next_rotation_at().is_none());
        let r = KeyRing::load_or_generate_at(&dir, 0, 10, u64::MAX).unwrap();
        assert_eq!(r.ids(), vec![1]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_readable_or_corrupt_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tmpdir("perm");
        KeyRing::load_or_generate_at(&dir, 0, 10, 5).unwrap();
        let file = dir.join(KEY_FILE);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyRing::load_or_generate_at(&dir, 0, 10, 5).unwrap_err();
        assert!(
            matches!(e, KeyError::Permissions { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(
            &file,
            "{\"format\":1,\"keys\":[{\"id\":1,\"created_at\":0,\"secret\":\"zz\"}]}",
        )
        .unwrap();
        let e = KeyRing::load_or_generate_at(&dir, 0, 10, 5).unwrap_err();
        assert!(matches!(e, KeyError::Corrupt { .. }), "{e}");
        assert!(!e.to_string().contains("zz"), "errors do not echo secrets");
        fs::write(&file, "not json").unwrap();
        assert!(matches!(
            KeyRing::load_or_generate_at(&dir, 0, 10, 5),
            Err(KeyError::Corrupt { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
