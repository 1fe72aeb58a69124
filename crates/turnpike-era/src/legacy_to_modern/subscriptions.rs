//! The resource subscriptions and GET streams of legacy (2025) sessions on this instance: at
//! most [`MAX_URIS`] URIs of at most [`MAX_URI_LEN`] bytes per session, [`MAX_SESSIONS`]
//! sessions and [`MAX_TOTAL_BYTES`] of URIs in all, the least recently used session forgotten
//! first (its stream ended). One GET stream per session: a new one ends the one before.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::seal::SessionKey;

/// The most resource URIs one session may subscribe to on an instance.
pub(crate) const MAX_URIS: usize = 256;
/// The longest resource URI taken, in bytes.
pub(crate) const MAX_URI_LEN: usize = 2048;
/// The most sessions whose subscriptions (and stream) an instance keeps.
pub(crate) const MAX_SESSIONS: usize = 4096;
/// The most bytes of subscribed URIs an instance keeps, all sessions together.
pub(crate) const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;
/// Per-adapter subscriptions and GET streams of legacy sessions.
#[derive(Default)]
pub(crate) struct Streams {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<SessionKey, Sess>,
    /// URI bytes held, all sessions together.
    bytes: usize,
    /// Use counter for least-recently-used eviction.
    tick: u64,
    /// Stream generations, so a replaced stream does not unregister its successor.
    gen: u64,
}

#[derive(Default)]
struct Sess {
    /// Subscribed URIs, in the order they came.
    uris: Vec<String>,
    bytes: usize,
    used: u64,
    live: Option<Live>,
}

/// The GET stream open for a session.
struct Live {
    gen: u64,
    /// Asks the stream to open its upstream listen again with the current filter; the sender
    /// is told once it did (or dropped if it could not).
    refilter: mpsc::Sender<oneshot::Sender<()>>,
    end: CancellationToken,
}

/// Why a subscription was not recorded.
pub(crate) enum Refusal {
    /// The session has [`MAX_URIS`] already.
    TooMany,
}

impl Table {
    fn touch(&mut self, key: SessionKey) -> &mut Sess {
        self.tick += 1;
        let tick = self.tick;
        if !self.sessions.contains_key(&key) && self.sessions.len() >= MAX_SESSIONS {
            self.evict_one(&key);
        }
        let s = self.sessions.entry(key).or_default();
        s.used = tick;
        s
    }

    /// Forgets the least recently used session other than `keep` (ending its stream).
    fn evict_one(&mut self, keep: &SessionKey) -> bool {
        let oldest = self
            .sessions
            .iter()
            .filter(|(k, _)| *k != keep)
            .min_by_key(|(_, s)| s.used)
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                self.forget(&k);
                true
            }
            None => false,
        }
    }

    fn forget(&mut self, key: &SessionKey) {
        if let Some(s) = self.sessions.remove(key) {
            self.bytes = self.bytes.saturating_sub(s.bytes);
            if let Some(l) = s.live {
                l.end.cancel();
            }
        }
    }

    /// Drops a session's entry once it holds nothing.
    fn tidy(&mut self, key: &SessionKey) {
        if self
            .sessions
            .get(key)
            .is_some_and(|s| s.uris.is_empty() && s.live.is_none())
        {
            self.sessions.remove(key);
        }
    }
}

impl Streams {
    /// Records `uri` for the session; `Ok(true)` when it is new.
    pub(crate) fn add(&self, key: SessionKey, uri: &str) -> Result<bool, Refusal> {
        let mut t = self.table.lock();
        let s = t.touch(key);
        if s.uris.iter().any(|u| u == uri) {
            return Ok(false);
        }
        if s.uris.len() >= MAX_URIS {
            return Err(Refusal::TooMany);
        }
        s.uris.push(uri.to_owned());
        s.bytes += uri.len();
        t.bytes += uri.len();
        while t.bytes > MAX_TOTAL_BYTES {
            if !t.evict_one(&key) {
                break;
            }
        }
        Ok(true)
    }

    /// Forgets `uri` for the session; `true` when it was recorded.
    pub(crate) fn remove(&self, key: SessionKey, uri: &str) -> bool {
        let mut t = self.table.lock();
        let Some(s) = t.sessions.get_mut(&key) else {
            return false;
        };
        let Some(i) = s.uris.iter().position(|u| u == uri) else {
            return false;
        };
        s.uris.remove(i);
        s.bytes = s.bytes.saturating_sub(uri.len());
        t.bytes = t.bytes.saturating_sub(uri.len());
        t.tidy(&key);
        true
    }

    /// The session's subscribed URIs.
    pub(crate) fn uris(&self, key: &SessionKey) -> Vec<String> {
        self.table
            .lock()
            .sessions
            .get(key)
            .map(|s| s.uris.clone())
            .unwrap_or_default()
    }

    /// How many URIs the session has subscribed to on this instance.
    #[cfg(test)]
    fn count(&self, key: &SessionKey) -> usize {
        self.table
            .lock()
            .sessions
            .get(key)
            .map_or(0, |s| s.uris.len())
    }

    /// Registers a new GET stream for the session, ending the one before; its generation.
    pub(crate) fn open_live(
        &self,
        key: SessionKey,
        refilter: mpsc::Sender<oneshot::Sender<()>>,
        end: CancellationToken,
    ) -> u64 {
        let mut t = self.table.lock();
        t.gen += 1;
        let gen = t.gen;
        let s = t.touch(key);
        if let Some(old) = s.live.replace(Live { gen, refilter, end }) {
            old.end.cancel();
        }
        gen
    }

    /// Unregisters stream `gen` of the session (if it is still the session's).
    pub(crate) fn close_live(&self, key: &SessionKey, gen: u64) {
        let mut t = self.table.lock();
        if let Some(s) = t.sessions.get_mut(key) {
            if s.live.as_ref().is_some_and(|l| l.gen == gen) {
                s.live = None;
            }
        }
        t.tidy(key);
    }

    pub(crate) fn refilter_of(
        &self,
        key: &SessionKey,
    ) -> Option<mpsc::Sender<oneshot::Sender<()>>> {
        self.table
            .lock()
            .sessions
            .get(key)
            .and_then(|s| s.live.as_ref())
            .map(|l| l.refilter.clone())
    }

    /// Forgets a session (DELETE): its stream ends, its subscriptions go.
    pub(crate) fn forget(&self, key: &SessionKey) {
        self.table.lock().forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_bounded() {
        let s = Streams::default();
        let k = [1u8; 16];
        for i in 0..MAX_URIS {
            assert!(matches!(s.add(k, &format!("a://{i}")), Ok(true)));
        }
        assert!(matches!(s.add(k, "a://0"), Ok(false)));
        assert!(matches!(s.add(k, "a://more"), Err(Refusal::TooMany)));
        assert!(s.remove(k, "a://0"));
        assert!(!s.remove(k, "a://0"));
        assert_eq!(s.count(&k), MAX_URIS - 1);
        // The least recently used session goes first when the table is full.
        for i in 0..MAX_SESSIONS as u32 {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&i.to_be_bytes());
            key[4] = 9;
            let _ = s.add(key, "a://x");
        }
        assert_eq!(s.count(&k), 0, "the oldest session was forgotten");
        let t = s.table.lock();
        assert_eq!(t.sessions.len(), MAX_SESSIONS);
        assert_eq!(t.bytes, MAX_SESSIONS * "a://x".len());
    }

    #[test]
    fn total_bytes_are_bounded() {
        let s = Streams::default();
        let long = "u".repeat(MAX_URI_LEN);
        let per_session = 64;
        let sessions = MAX_TOTAL_BYTES / (per_session * MAX_URI_LEN) + 4;
        for n in 0..sessions as u32 {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&n.to_be_bytes());
            for i in 0..per_session {
                let _ = s.add(key, &format!("{i}{long}")[..MAX_URI_LEN]);
            }
        }
        let t = s.table.lock();
        assert!(t.bytes <= MAX_TOTAL_BYTES, "{} bytes held", t.bytes);
        assert_eq!(t.bytes, t.sessions.values().map(|s| s.bytes).sum::<usize>());
    }
}
