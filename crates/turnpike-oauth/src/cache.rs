//! Verified JWTs, remembered by the SHA-256 of the token, so that an agent calling many times
//! with one token pays for the signature check once.
//!
//! An entry is used only while the issuer's key set is the one it was verified under (any key
//! refresh forgets every entry), and only within the token's validity times (`nbf`/`iat` minus
//! skew up to `exp` plus skew), which are checked again on every use. Only tokens that passed
//! every check are remembered; the token itself is never stored. The cache is bounded.

use parking_lot::Mutex;
use std::collections::HashMap;

use crate::token::TokenInfo;

struct Entry {
    info: TokenInfo,
    generation: u64,
    from: u64,
    until: u64,
}

/// The cache of verified tokens.
pub struct VerifiedTokens {
    max: usize,
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

impl VerifiedTokens {
    /// A cache of at most `max` tokens (0: nothing is remembered).
    pub fn new(max: usize) -> Self {
        VerifiedTokens {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the cache remembers anything.
    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    /// The facts of the token hashing to `key`, if it was verified under key-set `generation`
    /// and `now` lies in `[from, until)`.
    pub fn get(&self, key: &[u8; 32], generation: u64, now: u64) -> Option<TokenInfo> {
        let map = self.map.lock();
        let e = map.get(key)?;
        (e.generation == generation && now >= e.from && now < e.until).then(|| e.info.clone())
    }

    /// Remembers a verified token, usable from `from` until `until` (exclusive).
    pub fn put(&self, key: [u8; 32], info: TokenInfo, generation: u64, from: u64, until: u64) {
        if self.max == 0 {
            return;
        }
        let mut map = self.map.lock();
        if map.len() >= self.max {
            map.retain(|_, e| e.generation == generation);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(
            key,
            Entry {
                info,
                generation,
                from,
                until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TokenInfo {
        TokenInfo {
            issuer: "i".into(),
            subject: "s".into(),
            client_id: None,
            scopes: vec![],
            jkt: None,
            expires_at: Some(100),
            claims: None,
        }
    }

    #[test]
    fn bounded_by_time_generation_and_size() {
        let c = VerifiedTokens::new(2);
        c.put([1; 32], info(), 7, 10, 100);
        assert!(c.get(&[1; 32], 7, 10).is_some());
        assert!(c.get(&[1; 32], 7, 99).is_some());
        assert!(c.get(&[1; 32], 7, 100).is_none(), "expired");
        assert!(c.get(&[1; 32], 7, 9).is_none(), "not yet valid");
        assert!(c.get(&[1; 32], 8, 50).is_none(), "keys changed since");
        c.put([2; 32], info(), 7, 0, 100);
        c.put([3; 32], info(), 7, 0, 100);
        assert!(c.map.lock().len() <= 2);
        let off = VerifiedTokens::new(0);
        off.put([1; 32], info(), 7, 0, 100);
        assert!(off.get(&[1; 32], 7, 50).is_none());
    }
}
