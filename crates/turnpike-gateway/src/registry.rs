//! The rails this gateway knows, each by the registration its crate implements
//! ([`turnpike_conf::RailConf`]): one line each in [`RAIL_CONFS`], the only place the gateway
//! names a rail to run it. The configuration is read through them ([`crate::config`] names no
//! rail), and [`crate::rails::Rails::from_config`] builds each that is on with its own `build`
//! (or leaves its recogniser when it is off).

use turnpike_conf::RailConf;

/// The configuration side of every rail, in the order a price's offers are made and `turnpike
/// check` lists them.
pub static RAIL_CONFS: &[&dyn RailConf] = &[
    &turnpike_l402::conf::L402Conf,
    &turnpike_mpp::conf::MppConf,
    &turnpike_x402::conf::X402Conf,
    &turnpike_pow::conf::PowConf,
    &turnpike_oauth::conf::OAuthConf,
    &turnpike_webbotauth::conf::AgentConf,
];

/// The rail whose price key is `key` (its id), if any.
pub fn by_id(key: &str) -> Option<&'static dyn RailConf> {
    RAIL_CONFS.iter().copied().find(|c| c.id().as_str() == key)
}
