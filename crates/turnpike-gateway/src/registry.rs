//! The rails this gateway knows, each by the configuration side its crate implements
//! ([`turnpike_conf::RailConf`]): one line each in [`RAIL_CONFS`]. The configuration is read
//! through them ([`crate::config`] names no rail); [`crate::rails::Rails::from_config`] builds
//! the running rails from the sections they read, one `add` line each.

use turnpike_conf::RailConf;

/// The configuration side of every rail, in the order a price's offers are made and `turnpike
/// check` lists them.
pub static RAIL_CONFS: &[&dyn RailConf] = &[
    &turnpike_l402::conf::L402Conf,
    &turnpike_pow::conf::PowConf,
    &turnpike_oauth::conf::OAuthConf,
];

/// The rail whose price key is `key` (its id), if any.
pub fn by_id(key: &str) -> Option<&'static dyn RailConf> {
    RAIL_CONFS.iter().copied().find(|c| c.id().as_str() == key)
}
