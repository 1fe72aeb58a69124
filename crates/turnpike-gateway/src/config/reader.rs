//! [`Gx`]: the toolkit's problem recorder with the rails a file is read with, and the
//! gateway's readers of its own sections (`sections.rs`, `prices.rs`, `rules.rs`) as methods.

use std::ops::{Deref, DerefMut};

use turnpike_conf::{Cx, RailConf};

/// The problems found so far in one file ([`Cx`]), and the rails it is read with.
pub(super) struct Gx<'s> {
    pub(super) cx: Cx<'s>,
    /// The rails, in the order their offers are made.
    pub(super) rails: &'static [&'static dyn RailConf],
}

impl<'s> Gx<'s> {
    /// Nothing found yet in `src`, read with `rails`.
    pub(super) fn new(src: &'s str, rails: &'static [&'static dyn RailConf]) -> Self {
        Gx {
            cx: Cx::new(src),
            rails,
        }
    }

    /// The rail that owns top-level table `table`, if any.
    pub(super) fn owner(&self, table: &str) -> Option<&'static dyn RailConf> {
        self.rails
            .iter()
            .copied()
            .find(|r| r.tables().contains(&table))
    }

    /// The rail whose key in a price is `key` (its name), if any.
    pub(super) fn rail(&self, key: &str) -> Option<&'static dyn RailConf> {
        self.rails.iter().copied().find(|r| r.id().as_str() == key)
    }
}

impl<'s> Deref for Gx<'s> {
    type Target = Cx<'s>;

    fn deref(&self) -> &Cx<'s> {
        &self.cx
    }
}

impl DerefMut for Gx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cx
    }
}
