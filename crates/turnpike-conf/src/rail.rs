//! The configuration side of a rail: [`RailConf`].

use std::sync::Arc;

use turnpike_core::{Offer, RailId, RailPlugin};

use crate::build::{Build, BuildError, Built};
use crate::cx::Cx;
use crate::sections::Sections;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// What a rail's reader is told about the rest of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    /// The public URL of the endpoint (`[server] public_url`, else `http://<listen><path>`).
    pub public_url: &'a str,
    /// The keys of the table being read that the gateway reads itself (taken out of the table
    /// first; listed with the rail's own keys in the hint of an unknown key).
    pub extra: &'a [&'a str],
}

/// A rail as it registers with the gateway, implemented by its crate: the top-level tables it
/// owns, how it reads them and its key in a price, what it checks, what `turnpike check` says of
/// it, how it is built from what it read ([`RailConf::build`]) and what stands in for it when it
/// is off ([`RailConf::recogniser`]). The gateway reads a file and builds its rails through the
/// rails registered with it and names none of them; see docs/ARCHITECTURE.md for the one line
/// that registers a rail.
pub trait RailConf: Send + Sync {
    /// The rail. Its name is also its key in a price (`[tools.<name>] <rail> = …`).
    fn id(&self) -> RailId;

    /// The top-level tables it owns (`["l402", "lightning"]`), in the order messages list them.
    fn tables(&self) -> &'static [&'static str];

    /// The table without which the rail is off, and the hint for a price that names the rail
    /// while it is off; `None`: the rail is always on.
    fn needs(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// Puts in `out` what a file that leaves its tables out has (their defaults).
    fn defaults(&self, _out: &mut Sections) {}

    /// Reads its table `name` (one of [`RailConf::tables`]) from `value` into `out`, recording
    /// each problem in `cx` at its place; leaves `out` as it was when the table has a problem.
    fn read(
        &self,
        cx: &mut Cx<'_>,
        name: &str,
        value: &Spanned<DeValue<'_>>,
        host: &Host<'_>,
        out: &mut Sections,
    );

    /// Its rules over its tables once every section is read (`root`: the document).
    fn check(&self, _cx: &mut Cx<'_>, _root: &DeTable<'_>, _sections: &Sections, _host: &Host<'_>) {
    }

    /// Reads the value of its key in a price (`pow = 200000`) into an offer, recording each
    /// problem in `cx`.
    fn price(&self, cx: &mut Cx<'_>, value: &Spanned<DeValue<'_>>) -> Option<Offer>;

    /// The offers its key in a price makes: by default the one [`RailConf::price`] reads. A rail
    /// whose one price offers several ways to pay (MPP: one challenge per payment method) makes
    /// one offer for each, each challenged on its own; a credential of the rail is verified
    /// against the first, which carries the terms of all.
    fn prices(&self, cx: &mut Cx<'_>, value: &Spanned<DeValue<'_>>) -> Vec<Offer> {
        self.price(cx, value).into_iter().collect()
    }

    /// Its key in a price for people, in the hint of a price with a problem: the form and an
    /// example (`("pow = <effort>", "pow = 200000")`); `None`: left out of the hint.
    fn price_hint(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// What is wrong with one of its offers built without a file (on the command line): the
    /// message after the price's name, and a hint.
    fn offer_problem(&self, _offer: &Offer) -> Option<(String, &'static str)> {
        None
    }

    /// Its checks of a configuration changed after reading (command-line overrides): each
    /// problem's message and hint, without a place.
    fn validate(&self, _sections: &Sections, _host: &Host<'_>) -> Vec<(String, &'static str)> {
        Vec::new()
    }

    /// Every key its tables read, from the serde types that read them: `(table, keys)`, a
    /// table named as in its header (`lightning (lnd)` for one variant's keys). The
    /// documents' configuration reference is tested against this.
    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)>;

    /// One of its offers for people, in `turnpike check`'s summary (`pow 200000 (~25 ms)`).
    fn describe(&self, offer: &Offer, sections: &Sections) -> String;

    /// Its part of `turnpike check`'s summary, after the prices, when it has one.
    fn summary(&self, _sections: &Sections, _host: &Host<'_>) -> Option<String> {
        None
    }

    /// Builds the running rail from its sections (`build.sections`), when it is on (it needs no
    /// table, or the table it needs is there).
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError>;

    /// What reads its credentials while it is off (the parsing side of its plug-in), so that
    /// they are refused as for a call that does not accept the rail and its headers are still
    /// stripped; `None`: nothing.
    fn recogniser(&self) -> Option<Arc<dyn RailPlugin>> {
        None
    }

    /// Whether it is on with these sections: it needs no table, or the one it needs is there.
    fn is_on(&self, sections: &Sections) -> bool {
        self.needs().is_none_or(|(table, _)| sections.has(table))
    }

    /// Whether it is always on (it needs no table): such rails come first where the rails are
    /// listed for people and where their credentials are matched.
    fn always_on(&self) -> bool {
        self.needs().is_none()
    }
}

/// `rails` with those always on first, each group in its given order.
pub fn always_on_first<'a>(rails: &[&'a dyn RailConf]) -> Vec<&'a dyn RailConf> {
    let (mut first, others): (Vec<_>, Vec<_>) = rails.iter().copied().partition(|r| r.always_on());
    first.extend(others);
    first
}

/// The hint of a price with a problem, from the rails' [`RailConf::price_hint`]s: ``write `free
/// = true`, or `pow = <effort>` and/or `l402 = { sat = <n> }`, e.g. `pow = 200000` ``.
pub fn price_hint(rails: &[&dyn RailConf]) -> String {
    let hints: Vec<_> = always_on_first(rails)
        .iter()
        .filter_map(|r| r.price_hint())
        .collect();
    let Some((_, example)) = hints.first() else {
        return "write `free = true`".into();
    };
    let forms: Vec<String> = hints.iter().map(|(f, _)| format!("`{f}`")).collect();
    format!(
        "write `free = true`, or {}, e.g. `{example}`",
        forms.join(" and/or ")
    )
}
