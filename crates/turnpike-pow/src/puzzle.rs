//! The puzzle: the 111-byte challenge token, its codec, and the hash math that the verifier and
//! the solver share.
//!
//! ```text
//! offset size field
//! 0      1    version = 1
//! 1      1    algorithm: 1 = sha256, 2 = equix
//! 2      4    key id, u32 big-endian
//! 6      8    issued_at, u64 BE, Unix seconds
//! 14     8    expires_at, u64 BE, Unix seconds
//! 22     8    effort, u64 BE: total expected hashes over all sub-puzzles (>= 1)
//! 30     1    subpuzzles k, 1..=64
//! 31     32   scope digest (turnpike_core::CallFacts::scope_digest)
//! 63     16   random nonce
//! 79     32   tag = HMAC-SHA256(key[key id], bytes 0..79)
//! ```
//!
//! The token string is those 111 bytes in base64url without padding: exactly
//! [`TOKEN_STR_LEN`] characters.
//!
//! Sub-puzzle `i` (SHA-256) is solved by a `u64` nonce `n` such that the first 8 bytes of
//! `SHA-256(raw || u8(i) || u64_be(n))`, read as a big-endian `u64`, are below
//! [`target_for`]`(effort, k)`.

use base64::Engine as _;
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// Length of a challenge token in bytes.
pub const TOKEN_LEN: usize = 111;
/// Length of a challenge token string (base64url without padding of [`TOKEN_LEN`] bytes).
pub const TOKEN_STR_LEN: usize = 148;
/// The token format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// The most sub-puzzles a token may carry.
pub const MAX_SUBPUZZLES: u8 = 64;
/// Length of the part of the token the tag covers (bytes `0..79`).
pub const SIGNED_LEN: usize = 79;
/// Length of one hashed message: token, sub-puzzle index, nonce.
pub const MESSAGE_LEN: usize = TOKEN_LEN + 1 + 8;

/// The byte offsets of the token's fields.
mod off {
    pub(super) const VERSION: usize = 0;
    pub(super) const ALGORITHM: usize = 1;
    pub(super) const KEY_ID: usize = 2;
    pub(super) const ISSUED_AT: usize = 6;
    pub(super) const EXPIRES_AT: usize = 14;
    pub(super) const EFFORT: usize = 22;
    pub(super) const SUBPUZZLES: usize = 30;
    pub(super) const SCOPE: usize = 31;
    pub(super) const NONCE: usize = 63;
    pub(super) const TAG: usize = 79;
}

/// The puzzle algorithm a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-256 partial preimages (wire value 1). The default; every language has a fast one.
    Sha256,
    /// Equi-X, Tor's asymmetric memory-hard puzzle (wire value 2). Verified only when this crate
    /// is built with the `equix` feature.
    Equix,
}

impl Algorithm {
    /// The byte that names this algorithm in a token.
    pub fn wire(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
            Algorithm::Equix => 2,
        }
    }

    /// The algorithm a token byte names, if any.
    pub fn from_wire(b: u8) -> Option<Self> {
        match b {
            1 => Some(Algorithm::Sha256),
            2 => Some(Algorithm::Equix),
            _ => None,
        }
    }

    /// The name used in `WWW-Authenticate` and the JSON details: `sha256` or `equix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Equix => "equix",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string or byte array is not a well-formed challenge token. These say nothing about
/// whether the token is genuine: that is the tag's business.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token string does not have exactly [`TOKEN_STR_LEN`] characters.
    #[error("a challenge token has {TOKEN_STR_LEN} characters, this one has {0}")]
    Length(usize),
    /// The token string is not base64url without padding.
    #[error("a challenge token is base64url without padding")]
    Encoding,
    /// The token's version is not [`VERSION`].
    #[error("unknown token version {0}")]
    Version(u8),
    /// The token names no known algorithm.
    #[error("unknown puzzle algorithm {0}")]
    Algorithm(u8),
    /// The sub-puzzle count is outside `1..=64`.
    #[error("sub-puzzle count {0} is outside 1..=64")]
    Subpuzzles(u8),
    /// The effort is zero.
    #[error("effort must be at least 1")]
    Effort,
}

/// The strict base64url engine: URL-safe alphabet, no padding accepted, no trailing bits.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// A decoded, structurally valid challenge token (not yet authenticated: check the tag with the
/// key ring before trusting any field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeToken {
    raw: [u8; TOKEN_LEN],
    algorithm: Algorithm,
}

impl ChallengeToken {
    /// Decodes a token string: exactly [`TOKEN_STR_LEN`] characters of base64url without
    /// padding, then the structural checks of [`ChallengeToken::from_bytes`].
    pub fn decode(s: &str) -> Result<Self, TokenError> {
        if s.len() != TOKEN_STR_LEN {
            return Err(TokenError::Length(s.len()));
        }
        let mut raw = [0u8; TOKEN_LEN];
        match B64.decode_slice(s.as_bytes(), &mut raw) {
            Ok(TOKEN_LEN) => Self::from_bytes(raw),
            _ => Err(TokenError::Encoding),
        }
    }

    /// Checks the structure of raw token bytes: version 1, a known algorithm, `1..=64`
    /// sub-puzzles and an effort of at least 1.
    pub fn from_bytes(raw: [u8; TOKEN_LEN]) -> Result<Self, TokenError> {
        if raw[off::VERSION] != VERSION {
            return Err(TokenError::Version(raw[off::VERSION]));
        }
        let algorithm = Algorithm::from_wire(raw[off::ALGORITHM])
            .ok_or(TokenError::Algorithm(raw[off::ALGORITHM]))?;
        let k = raw[off::SUBPUZZLES];
        if k == 0 || k > MAX_SUBPUZZLES {
            return Err(TokenError::Subpuzzles(k));
        }
        let t = ChallengeToken { raw, algorithm };
        if t.effort() == 0 {
            return Err(TokenError::Effort);
        }
        Ok(t)
    }

    /// Assembles a token from its fields and tag (used by the rail when minting). The
    /// sub-puzzle count is clamped to `1..=64` and the effort to at least 1, so the result is
    /// always well-formed.
    pub(crate) fn assemble(
        fields: &TokenFields,
        tag_fn: impl FnOnce(&[u8; SIGNED_LEN]) -> [u8; 32],
    ) -> Self {
        let mut raw = [0u8; TOKEN_LEN];
        raw[off::VERSION] = VERSION;
        raw[off::ALGORITHM] = fields.algorithm.wire();
        raw[off::KEY_ID..off::ISSUED_AT].copy_from_slice(&fields.key_id.to_be_bytes());
        raw[off::ISSUED_AT..off::EXPIRES_AT].copy_from_slice(&fields.issued_at.to_be_bytes());
        raw[off::EXPIRES_AT..off::EFFORT].copy_from_slice(&fields.expires_at.to_be_bytes());
        raw[off::EFFORT..off::SUBPUZZLES].copy_from_slice(&fields.effort.max(1).to_be_bytes());
        raw[off::SUBPUZZLES] = fields.subpuzzles.clamp(1, MAX_SUBPUZZLES);
        raw[off::SCOPE..off::NONCE].copy_from_slice(&fields.scope);
        raw[off::NONCE..off::TAG].copy_from_slice(&fields.nonce);
        let mut signed = [0u8; SIGNED_LEN];
        signed.copy_from_slice(&raw[..SIGNED_LEN]);
        let tag = tag_fn(&signed);
        raw[off::TAG..].copy_from_slice(&tag);
        ChallengeToken {
            raw,
            algorithm: fields.algorithm,
        }
    }

    /// The token string: base64url without padding, [`TOKEN_STR_LEN`] characters.
    pub fn encode(&self) -> String {
        B64.encode(self.raw)
    }

    /// The raw 111 bytes, as hashed by the puzzle.
    pub fn raw(&self) -> &[u8; TOKEN_LEN] {
        &self.raw
    }

    /// The bytes the tag covers (`0..79`).
    pub fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        self.array(0)
    }

    /// The format version (always [`VERSION`] for a decoded token).
    pub fn version(&self) -> u8 {
        self.raw[off::VERSION]
    }

    /// The puzzle algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The id of the key that tagged the token.
    pub fn key_id(&self) -> u32 {
        u32::from_be_bytes(self.array(off::KEY_ID))
    }

    /// When the token was issued, Unix seconds.
    pub fn issued_at(&self) -> u64 {
        u64::from_be_bytes(self.array(off::ISSUED_AT))
    }

    /// When the token expires, Unix seconds (it is refused from this second on).
    pub fn expires_at(&self) -> u64 {
        u64::from_be_bytes(self.array(off::EXPIRES_AT))
    }

    /// Total expected work over all sub-puzzles (SHA-256 evaluations for [`Algorithm::Sha256`]).
    pub fn effort(&self) -> u64 {
        u64::from_be_bytes(self.array(off::EFFORT))
    }

    /// The number of sub-puzzles, `1..=64`.
    pub fn subpuzzles(&self) -> u8 {
        self.raw[off::SUBPUZZLES]
    }

    /// The scope digest the token is bound to.
    pub fn scope(&self) -> [u8; 32] {
        self.array(off::SCOPE)
    }

    /// The token's random nonce.
    pub fn nonce(&self) -> [u8; 16] {
        self.array(off::NONCE)
    }

    /// The HMAC tag over bytes `0..79`.
    pub fn tag(&self) -> [u8; 32] {
        self.array(off::TAG)
    }

    /// The per-sub-puzzle target: a hash prefix below it solves a sub-puzzle.
    pub fn target(&self) -> u64 {
        target_for(self.effort(), self.subpuzzles())
    }

    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.raw[at..at + N]);
        a
    }
}

/// The fields of a token to be minted.
#[derive(Debug, Clone)]
pub(crate) struct TokenFields {
    pub algorithm: Algorithm,
    pub key_id: u32,
    pub issued_at: u64,
    pub expires_at: u64,
    pub effort: u64,
    pub subpuzzles: u8,
    pub scope: [u8; 32],
    pub nonce: [u8; 16],
}

/// The expected work of one sub-puzzle: `ceil(effort / k)`, at least 1 (`k = 0` counts as 1).
pub fn subpuzzle_effort(effort: u64, k: u8) -> u64 {
    effort.div_ceil(u64::from(k.max(1))).max(1)
}

/// The per-sub-puzzle target for a total `effort` split over `k` sub-puzzles:
/// `floor((2^64 - 1) / ceil(effort / k))`. A hash prefix below it has probability about
/// `1 / ceil(effort / k)`.
pub fn target_for(effort: u64, k: u8) -> u64 {
    u64::MAX / subpuzzle_effort(effort, k)
}

/// Checks one sub-puzzle nonce the plain way: the first 8 bytes of
/// `SHA-256(raw || u8(i) || u64_be(n))`, big-endian, are below `target`.
pub fn check_nonce(raw: &[u8; TOKEN_LEN], i: u8, n: u64, target: u64) -> bool {
    let mut h = Sha256::new();
    h.update(raw);
    h.update([i]);
    h.update(n.to_be_bytes());
    let d = h.finalize();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&d[..8]);
    u64::from_be_bytes(prefix) < target
}

/// SHA-256's initial state.
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

type Block = GenericArray<u8, sha2::digest::consts::U64>;

/// The puzzle's hash with the SHA-256 state after the token's fixed first 64 bytes computed
/// once (the midstate). Each nonce then costs two compressions: the block holding the rest of
/// the token, the sub-puzzle index and the nonce (plus the padding's `0x80`), and the block
/// holding only the message length.
///
/// The solver keeps one per thread and calls [`PuzzleHasher::prefix`] in its inner loop; the
/// verifier uses it so that a credential with `k` nonces costs `2k + 1` compressions.
#[derive(Clone)]
pub struct PuzzleHasher {
    mid: [u32; 8],
    blocks: [Block; 2],
}

/// Where the sub-puzzle index sits in the second block (message offset 111).
const I_AT: usize = TOKEN_LEN - 64;
/// Where the nonce sits in the second block (message offset 112).
const N_AT: usize = I_AT + 1;

impl PuzzleHasher {
    /// Precomputes the midstate of `raw[0..64]` and lays out the two final blocks.
    pub fn new(raw: &[u8; TOKEN_LEN]) -> Self {
        let mut mid = SHA256_IV;
        let first = Block::clone_from_slice(&raw[..64]);
        sha2::compress256(&mut mid, std::slice::from_ref(&first));
        let mut b1 = [0u8; 64];
        b1[..I_AT].copy_from_slice(&raw[64..]);
        // b1[I_AT] = i, b1[N_AT..N_AT + 8] = n, then the padding's 0x80 at message offset 120.
        b1[N_AT + 8] = 0x80;
        let mut b2 = [0u8; 64];
        b2[56..].copy_from_slice(&((MESSAGE_LEN as u64) * 8).to_be_bytes());
        PuzzleHasher {
            mid,
            blocks: [Block::clone_from_slice(&b1), Block::clone_from_slice(&b2)],
        }
    }

    /// Sets the sub-puzzle index for the following [`PuzzleHasher::prefix`] calls.
    #[inline]
    pub fn set_subpuzzle(&mut self, i: u8) {
        self.blocks[0][I_AT] = i;
    }

    /// The first 8 bytes of `SHA-256(raw || u8(i) || u64_be(n))` as a big-endian `u64`, for the
    /// index last set with [`PuzzleHasher::set_subpuzzle`].
    #[inline]
    pub fn prefix(&mut self, n: u64) -> u64 {
        self.blocks[0][N_AT..N_AT + 8].copy_from_slice(&n.to_be_bytes());
        let mut s = self.mid;
        sha2::compress256(&mut s, &self.blocks);
        (u64::from(s[0]) << 32) | u64::from(s[1])
    }

    /// Whether nonce `n` solves sub-puzzle `i` under `target`.
    #[inline]
    pub fn check(&mut self, i: u8, n: u64, target: u64) -> bool {
        self.set_subpuzzle(i);
        self.prefix(n) < target
    }
}

impl std::fmt::Debug for PuzzleHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PuzzleHasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChallengeToken {
        let fields = TokenFields {
            algorithm: Algorithm::Sha256,
            key_id: 0x0102_0304,
            issued_at: 1_700_000_000,
            expires_at: 1_700_000_300,
            effort: 1000,
            subpuzzles: 4,
            scope: [9; 32],
            nonce: [5; 16],
        };
        ChallengeToken::assemble(&fields, |_| [0xAB; 32])
    }

    #[test]
    fn layout_and_round_trip() {
        let t = sample();
        let raw = t.raw();
        assert_eq!(raw[0], 1);
        assert_eq!(raw[1], 1);
        assert_eq!(&raw[2..6], &[1, 2, 3, 4]);
        assert_eq!(&raw[6..14], &1_700_000_000u64.to_be_bytes());
        assert_eq!(&raw[14..22], &1_700_000_300u64.to_be_bytes());
        assert_eq!(&raw[22..30], &1000u64.to_be_bytes());
        assert_eq!(raw[30], 4);
        assert_eq!(&raw[31..63], &[9; 32]);
        assert_eq!(&raw[63..79], &[5; 16]);
        assert_eq!(&raw[79..111], &[0xAB; 32]);
        let s = t.encode();
        assert_eq!(s.len(), TOKEN_STR_LEN);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let back = ChallengeToken::decode(&s).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.key_id(), 0x0102_0304);
        assert_eq!(back.issued_at(), 1_700_000_000);
        assert_eq!(back.expires_at(), 1_700_000_300);
        assert_eq!(back.effort(), 1000);
        assert_eq!(back.subpuzzles(), 4);
        assert_eq!(back.scope(), [9; 32]);
        assert_eq!(back.nonce(), [5; 16]);
        assert_eq!(back.tag(), [0xAB; 32]);
        assert_eq!(back.algorithm(), Algorithm::Sha256);
        assert_eq!(back.version(), 1);
        assert_eq!(back.target(), u64::MAX / 250);
    }

    #[test]
    fn strict_decoding() {
        let s = sample().encode();
        assert_eq!(
            ChallengeToken::decode(&format!("{s}=")),
            Err(TokenError::Length(149))
        );
        assert_eq!(
            ChallengeToken::decode(&s[..147]),
            Err(TokenError::Length(147))
        );
        assert_eq!(ChallengeToken::decode(""), Err(TokenError::Length(0)));
        // Standard alphabet characters are refused.
        let std_alpha = s.replace('-', "+").replace('_', "/");
        if std_alpha != s {
            assert_eq!(
                ChallengeToken::decode(&std_alpha),
                Err(TokenError::Encoding)
            );
        }
        let mut bad = s.clone().into_bytes();
        bad[10] = b'+';
        assert_eq!(
            ChallengeToken::decode(std::str::from_utf8(&bad).unwrap()),
            Err(TokenError::Encoding)
        );
        bad[10] = b'=';
        assert_eq!(
            ChallengeToken::decode(std::str::from_utf8(&bad).unwrap()),
            Err(TokenError::Encoding)
        );
        // 148 characters, but multi-byte UTF-8: refused without panicking.
        let wide = "é".repeat(74);
        assert_eq!(wide.len(), 148);
        assert_eq!(ChallengeToken::decode(&wide), Err(TokenError::Encoding));
    }

    #[test]
    fn structural_checks() {
        let raw = *sample().raw();
        let mut r = raw;
        r[0] = 2;
        assert_eq!(ChallengeToken::from_bytes(r), Err(TokenError::Version(2)));
        let mut r = raw;
        r[1] = 3;
        assert_eq!(ChallengeToken::from_bytes(r), Err(TokenError::Algorithm(3)));
        let mut r = raw;
        r[30] = 0;
        assert_eq!(
            ChallengeToken::from_bytes(r),
            Err(TokenError::Subpuzzles(0))
        );
        r[30] = 65;
        assert_eq!(
            ChallengeToken::from_bytes(r),
            Err(TokenError::Subpuzzles(65))
        );
        let mut r = raw;
        r[22..30].fill(0);
        assert_eq!(ChallengeToken::from_bytes(r), Err(TokenError::Effort));
    }

    #[test]
    fn targets() {
        assert_eq!(target_for(1, 1), u64::MAX);
        assert_eq!(
            target_for(1, 4),
            u64::MAX,
            "each sub-puzzle costs at least 1"
        );
        assert_eq!(target_for(1000, 4), u64::MAX / 250);
        assert_eq!(target_for(1001, 4), u64::MAX / 251);
        assert_eq!(target_for(u64::MAX, 1), 1);
        assert_eq!(target_for(u64::MAX, 64), u64::MAX / (u64::MAX / 64 + 1));
        assert_eq!(target_for(10, 0), u64::MAX / 10);
        assert_eq!(subpuzzle_effort(0, 0), 1);
    }

    #[test]
    fn midstate_matches_plain_hash() {
        let t = sample();
        let mut h = PuzzleHasher::new(t.raw());
        for i in [0u8, 1, 63, 255] {
            h.set_subpuzzle(i);
            for n in [0u64, 1, 0x0102_0304_0506_0708, u64::MAX] {
                let mut msg = t.raw().to_vec();
                msg.push(i);
                msg.extend_from_slice(&n.to_be_bytes());
                assert_eq!(msg.len(), MESSAGE_LEN);
                let d = Sha256::digest(&msg);
                let want = u64::from_be_bytes(d[..8].try_into().unwrap());
                assert_eq!(h.prefix(n), want);
                assert!(check_nonce(t.raw(), i, n, want.saturating_add(1)) || want == u64::MAX);
                assert!(!check_nonce(t.raw(), i, n, want));
                assert!(!h.clone().check(i, n, want));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, RngCore};
        let mut rng = rand::rng();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \xff";
        for round in 0..20_000 {
            // Random lengths around the real one, random bytes (often invalid UTF-8).
            let len = match round % 3 {
                0 => TOKEN_STR_LEN,
                1 => rng.random_range(0..300),
                _ => rng.random_range(140..156),
            };
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = ChallengeToken::decode(&s);
            let mut raw = [0u8; TOKEN_LEN];
            rng.fill_bytes(&mut raw);
            if round % 2 == 0 {
                raw[0] = 1;
                raw[1] = 1;
            }
            if let Ok(t) = ChallengeToken::from_bytes(raw) {
                assert_eq!(ChallengeToken::decode(&t.encode()), Ok(t.clone()));
                let _ = t.target();
            }
        }
    }
}
