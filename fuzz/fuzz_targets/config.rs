//! The configuration loader (`turnpike_gateway::config::parse`): TOML syntax, every table and
//! key, prices, rails, limits, stores. Any text must give a `Config` or a list of problems at
//! line:col, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match turnpike_gateway::config::parse(src, "fuzz.toml") {
        Ok(cfg) => {
            let _ = cfg.validate();
            let _ = cfg.policy();
            let _ = cfg.public_url();
            let _ = turnpike_oauth::conf::section(&cfg.rails, &cfg.public_url());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
