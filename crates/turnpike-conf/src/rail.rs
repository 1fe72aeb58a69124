//! The configuration side of a rail: [`RailConf`].

use turnpike_core::{Offer, RailId};

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

/// The configuration side of a rail, implemented by its crate: the top-level tables it owns,
/// how it reads them and its key in a price, what it checks, and what `turnpike check` says of
/// it. The gateway reads a file through the rails registered with it and names none of them;
/// see docs/ARCHITECTURE.md for the one line that registers a rail.
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
}
