//! The wall clock, in the one unit turnpike stores and compares times in: whole seconds since
//! the Unix epoch (expiries, time passes, ledger rows, metrics timestamps).

use std::time::{SystemTime, UNIX_EPOCH};

/// The current Unix time in whole seconds. A clock set before 1970 reads as 0, so every expiry
/// checked against it is still in the future rather than an error.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_system_clock() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let now = unix_now();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
        // 2020-01-01: any machine running this is past it.
        assert!(now > 1_577_836_800);
    }
}
