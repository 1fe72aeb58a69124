//! Reading sections: every mistake reported with its `line:col`, what is wrong and a hint.
//!
//! A section is deserialized straight from its spanned TOML value with the serde type of the
//! crate that owns it, so each serde error carries the place of the key or value at fault. To
//! report every mistake, not only the first, the key at fault is set aside and the section read
//! again, until it reads cleanly. Serde's "unknown field" becomes "unknown key `x` in
//! [section]", with the section's keys (serde's own list) as the hint.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;
use turnpike_core::conf;

use turnpike_core::RailId;

use crate::place::{line_col, span_of_path};
use crate::problem::Problem;

/// How a section is named and helped in messages.
#[derive(Clone, Copy)]
pub struct Section<'a> {
    /// Its name in messages, e.g. `[server]`.
    pub name: &'a str,
    /// The hint when the owner's message gives none.
    pub hint: &'a str,
    /// Keys the gateway takes out of the table before the owner's type reads the rest; listed
    /// with the owner's in the hint of an unknown key.
    pub extra: &'a [&'a str],
    /// Keep serde's own wording for unknown fields and unplaced errors (the sections that
    /// always spoke it).
    pub serde_words: bool,
    /// What an unknown key is called in messages (`key`).
    pub unknown: &'a str,
    /// Prefix serde's own message about a key with `<section> <key>: `.
    pub name_key: bool,
}

impl<'a> Section<'a> {
    /// A section named `name`, helped by `hint`.
    pub fn new(name: &'a str, hint: &'a str) -> Self {
        Section {
            name,
            hint,
            extra: &[],
            unknown: "key",
            serde_words: false,
            name_key: false,
        }
    }
}

/// The problems found so far in one file, and what later rules need to know.
pub struct Cx<'s> {
    /// The file's text.
    pub src: &'s str,
    /// Every problem found so far.
    pub problems: Vec<Problem>,
    /// Where prices name each rail (each is an error when that rail is not configured).
    pub rail_prices: Vec<(RailId, Range<usize>)>,
}

impl<'s> Cx<'s> {
    /// Nothing found yet in `src`.
    pub fn new(src: &'s str) -> Self {
        Cx {
            src,
            problems: Vec::new(),
            rail_prices: Vec::new(),
        }
    }

    /// Records a problem at `span` (`None`: no single place).
    pub fn problem(&mut self, span: Option<Range<usize>>, message: String, hint: &str) {
        let (line, col) = span.map_or((0, 0), |s| line_col(self.src, s.start));
        self.problems.push(Problem {
            line,
            col,
            message,
            hint: hint.into(),
        });
    }

    /// A serde error of a value that is not a section of its own.
    pub fn de_error(&mut self, e: toml::de::Error, fallback: Range<usize>, hint: &str) {
        let span = e.span().unwrap_or(fallback);
        let parts = conf::split(e.message());
        let hint = parts.hint.filter(|h| !h.is_empty()).unwrap_or(hint);
        self.problem(Some(span), parts.message.to_string(), hint);
    }

    /// `v` as a table, or a problem saying `what` must be one.
    pub fn table<'a, 'i>(
        &mut self,
        v: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.problem(
                    Some(v.span()),
                    format!("{what} must be a table, found {}", other.type_str()),
                    "write it as a [table] header followed by key = value lines",
                );
                None
            }
        }
    }

    /// Deserializes `table[key]` into `T`, recording a problem on failure.
    pub fn field<T: DeserializeOwned>(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        hint: &str,
    ) -> Option<(T, Range<usize>)> {
        let v = table.get(key)?;
        self.value(v, hint).map(|x| (x, v.span()))
    }

    /// Deserializes `v` (a value that is not a section of its own) into `T`, recording a
    /// problem on failure.
    pub fn value<T: DeserializeOwned>(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        hint: &str,
    ) -> Option<T> {
        self.value_with(v, hint, |d| T::deserialize(d))
    }

    /// Reads `v` (a value that is not a section of its own) with `read`, recording a problem
    /// on failure.
    pub fn value_with<T>(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        hint: &str,
        read: impl FnOnce(ValueDeserializer<'_>) -> Result<T, toml::de::Error>,
    ) -> Option<T> {
        match read(ValueDeserializer::from(v.clone())) {
            Ok(x) => Some(x),
            Err(e) => {
                self.de_error(e, v.span(), hint);
                None
            }
        }
    }

    /// Reads the section `v` (a table) as `T`; `None` when it has any problem (each recorded).
    pub fn section<T: DeserializeOwned>(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        s: Section<'_>,
    ) -> Option<T> {
        let t = self.table(v, s.name)?;
        self.section_with(t, v.span(), s, |d| T::deserialize(d))
    }

    /// Reads the table `t` (at `span`) with `read`; `None` when it has any problem.
    pub fn section_with<T>(
        &mut self,
        t: &DeTable<'_>,
        span: Range<usize>,
        s: Section<'_>,
        read: impl Fn(ValueDeserializer<'_>) -> Result<T, toml::de::Error>,
    ) -> Option<T> {
        let mut left = t.clone();
        let before = self.problems.len();
        let mut set_aside: Vec<String> = Vec::new();
        // Each round sets one key aside, so this ends.
        for _ in 0..=t.len() {
            let value = Spanned::new(span.clone(), DeValue::Table(left.clone()));
            match read(ValueDeserializer::from(value)) {
                Ok(x) => return (self.problems.len() == before).then_some(x),
                // A required key set aside for its own problem is not missing as well.
                Err(e)
                    if missing_field(e.message())
                        .is_some_and(|k| set_aside.iter().any(|a| a == k)) =>
                {
                    return None
                }
                Err(e) => {
                    let at = self.serde_problem(&e, t, span.clone(), s);
                    match at {
                        Some(key) => {
                            left.remove(key.as_str());
                            set_aside.push(key);
                        }
                        None => return None,
                    }
                }
            }
        }
        None
    }

    /// Records a serde error of section `t`; the top-level key it is about, if any.
    fn serde_problem(
        &mut self,
        e: &toml::de::Error,
        t: &DeTable<'_>,
        span: Range<usize>,
        s: Section<'_>,
    ) -> Option<String> {
        let parts = conf::split(e.message());
        let place = match parts.key {
            Some(path) => span_of_path(t, path),
            None => e.span(),
        };
        let key = place.as_ref().and_then(|p| key_at(t, p.start));
        let mut hint = parts
            .hint
            .filter(|h| !h.is_empty())
            .unwrap_or(s.hint)
            .to_string();
        let message = match unknown_field(parts.message) {
            Some((name, _)) if s.serde_words => {
                let _ = name;
                parts.message.to_string()
            }
            Some((name, mut known)) => {
                known.extend(s.extra.iter().copied());
                hint = format!("the keys of {} are: {}", s.name, known.join(", "));
                format!("unknown {} `{name}` in {}", s.unknown, s.name)
            }
            None => {
                let key_name = key.as_deref().unwrap_or("");
                let m = parts.message.replace(conf::KEY, key_name);
                match &key {
                    // An owner's own message (with its hint) says what it is about.
                    Some(k) if s.name_key && parts.hint.is_none() => format!("{} {k}: {m}", s.name),
                    None if !s.serde_words => format!("{}: {m}", s.name),
                    _ => m,
                }
            }
        };
        self.problem(Some(place.unwrap_or(span)), message, &hint);
        key
    }
}

/// The top-level key of `t` whose name or value holds byte `at`.
fn key_at(t: &DeTable<'_>, at: usize) -> Option<String> {
    t.iter()
        .find(|(k, v)| k.span().contains(&at) || v.span().contains(&at) || v.span().end == at)
        .map(|(k, _)| k.get_ref().to_string())
}

/// `missing field `x`` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// `unknown field `x`, expected one of `a`, `b`` → (`x`, [`a`, `b`]).
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let known = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    Some((name, known))
}

/// A copy of `t` without `keys`, and `t` with only them: a section some of whose keys another
/// crate reads (the gateway's keys in a rail's table, a backend's name beside its keys).
pub fn split_keys<'i>(t: &DeTable<'i>, keys: &[&str]) -> (DeTable<'i>, DeTable<'i>) {
    let mut rest = t.clone();
    let mut own = DeTable::new();
    for k in keys {
        if let Some((key, v)) = rest.remove_entry(*k) {
            own.insert(key, v);
        }
    }
    (rest, own)
}
