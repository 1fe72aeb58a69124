//! What the configuration sections owned by each crate share.
//!
//! Every section of the gateway's TOML file (`[pow]`, `[oauth]`, `[lightning]`, …) is a serde
//! type with `deny_unknown_fields` in the crate that owns it, deserialized from the spanned TOML
//! value (by `turnpike-conf`'s `Cx`), so an error raised while reading one key is reported at
//! that key's `line:col`. An owner's error message may carry two more things, each on a line of its own
//! after the message (build them with [`hinted`] and [`at_key`]):
//!
//! - `hint: <what to do about it>`, shown under the problem;
//! - `at: <key>` (a dotted path inside the section), for a rule over several keys checked once
//!   the section is read, so the problem is still placed at the key at fault.
//!
//! In a message, [`KEY`] stands for the name of the key being read (one helper serves many
//! keys: `"{key} must be at least 1"`).

use std::fmt::Display;

use serde::de::Error;
use serde::{Deserialize, Deserializer};

/// Stands for the name of the key at fault in an error message.
pub const KEY: &str = "{key}";

const HINT: &str = "\nhint: ";
const AT: &str = "\nat: ";

/// An error with a hint.
pub fn hinted<E: Error>(message: impl Display, hint: &str) -> E {
    E::custom(format!("{message}{HINT}{hint}"))
}

/// An error about `key` (a dotted path inside the section) found after the section was read.
pub fn at_key<E: Error>(key: &str, message: impl Display, hint: &str) -> E {
    E::custom(format!("{message}{HINT}{hint}{AT}{key}"))
}

/// A message split into what is wrong, the hint and the key it names, if any.
pub struct Parts<'a> {
    /// What is wrong.
    pub message: &'a str,
    /// What to do about it.
    pub hint: Option<&'a str>,
    /// Where, when the message names a key.
    pub key: Option<&'a str>,
}

/// Splits a message built by [`hinted`] or [`at_key`].
pub fn split(message: &str) -> Parts<'_> {
    let (rest, key) = match message.rsplit_once(AT) {
        Some((r, k)) => (r, Some(k.trim())),
        None => (message, None),
    };
    let (message, hint) = match rest.split_once(HINT) {
        Some((m, h)) => (m, Some(h.trim())),
        None => (rest, None),
    };
    Parts {
        message: message.trim(),
        hint,
        key,
    }
}

const HINT_POSITIVE: &str = "use a whole number of at least 1";

/// A `u64` of at least 1 (`deserialize_with`).
pub fn positive_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 {
        return Err(hinted(format!("{KEY} must be at least 1"), HINT_POSITIVE));
    }
    Ok(v)
}

/// A `usize` of at least 1 (`deserialize_with`).
pub fn positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = u64::deserialize(d)?;
    match usize::try_from(v) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(hinted(format!("{KEY} must be at least 1"), HINT_POSITIVE)),
    }
}

/// The value of the environment variable a key names, trimmed; an error (with `hint`) when it
/// is unset or blank. Secrets given as `<name>_env = "VAR"` are read with this while the
/// configuration is read, so a missing variable is reported at that key.
pub fn env_value<E: Error>(var: &str, hint: &str) -> Result<String, E> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(hinted(
            format!("environment variable {var} is not set"),
            hint,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(String);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for E {}
    impl Error for E {
        fn custom<T: Display>(msg: T) -> Self {
            E(msg.to_string())
        }
    }

    #[test]
    fn messages_split_back() {
        let E(m) = at_key("a.b", "both", "one only");
        let p = split(&m);
        assert_eq!(
            (p.message, p.hint, p.key),
            ("both", Some("one only"), Some("a.b"))
        );
        let E(m) = hinted("bad", "fix it");
        let p = split(&m);
        assert_eq!((p.message, p.hint, p.key), ("bad", Some("fix it"), None));
        let p = split("plain");
        assert_eq!((p.message, p.hint, p.key), ("plain", None, None));
    }
}
