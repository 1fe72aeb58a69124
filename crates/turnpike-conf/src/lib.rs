//! The configuration toolkit every crate that owns a section of turnpike's TOML file uses.
//!
//! - [`Cx`] reads a section (a spanned TOML value) with its owner's serde type and records
//!   every problem as a [`Problem`] at its `line:col`, with what is wrong and a hint: the key at
//!   fault is set aside and the section read again until it reads cleanly, so one pass reports
//!   every mistake. The conventions of `turnpike_core::conf` (a hint, a key named after the
//!   fact, `{key}`) are honoured.
//! - [`RailConf`] is the configuration side of a rail: the top-level tables it owns, reading
//!   them into [`Sections`], its price key (read into a `turnpike_core::Offer`), its checks
//!   after command-line overrides and its lines in `turnpike check`'s summary. The gateway reads
//!   a file through the rails registered with it and keeps only its own sections and the rules
//!   across sections.
//! - [`Build`] is what a rail is built from ([`RailConf::build`]): its sections, the data
//!   directory, the public URL and the gateway's [`Services`] (spent sets, the durable
//!   database); [`Built`] is the running rail it gives back.
//! - [`fields`] lists the keys a serde type reads (serde's own list), for the tests that hold
//!   the documents' configuration reference to the code.
//!
//! | file | what |
//! |---|---|
//! | `problem.rs` | [`Problem`], [`ConfigError`] |
//! | `place.rs` | places in the document: [`line_col`], [`span_of_path`], [`quote_key`] |
//! | `cx.rs` | [`Cx`] and [`Section`]: reading a section, problems with their places |
//! | `fields.rs` | [`fields`], [`fields_of`]: the keys of a serde type |
//! | `sections.rs` | [`Sections`]: the rails' sections, each of its owner's type |
//! | `rail.rs` | [`RailConf`], [`Host`] |
//! | `build.rs` | [`Build`], [`Services`], [`Postgres`], [`Built`], [`BuildError`] |
//! | `url.rs` | [`check_url`] |

mod build;
mod cx;
mod fields;
mod place;
mod problem;
mod rail;
mod sections;
mod url;

pub use build::{Build, BuildError, Built, Maker, Postgres, Services, Shared};
pub use cx::{split_keys, Cx, Section};
pub use fields::{fields, fields_of, FieldRecorder, Fields};
pub use place::{line_col, quote_key, span_of_path};
pub use problem::{ConfigError, Problem};
pub use rail::{always_on_first, price_hint, Host, RailConf};
pub use sections::{AnySection, Sections};
pub use url::check_url;

/// A spanned TOML value, as the file holds it (re-exported for the readers of sections).
pub use toml::de::{DeTable, DeValue};
pub use toml::Spanned;
