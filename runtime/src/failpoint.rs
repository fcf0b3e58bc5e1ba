//! Failpoints for the fault matrix (`scripts/faults.sh`): `EBOX_FAILPOINT=<name>:<n>` makes
//! the process abort (`std::process::abort`, no unwinding, no destructor, no flush: as abrupt
//! as `kill -9`) the `n`-th time the code passes [`hit`] with that name. Unset, every `hit` is
//! one relaxed atomic load of an already-parsed setting: a no-op.
//!
//! The names are the driver's step boundaries (`queues/src/driver.rs`): `driver.handle`
//! (inside the batch's transaction, after a delivery's handler wrote its effects, before the
//! batch commits), `driver.after-commit`
//! (the batch is committed, nothing is published), `driver.after-publish` (published and
//! confirmed, nothing is acknowledged).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a failpoint.
pub const VARIABLE: &str = "EBOX_FAILPOINT";

/// One armed failpoint: the process aborts on the `at`-th hit of `name`.
#[derive(Debug)]
struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

impl Armed {
    /// Reads `<name>:<n>` (`n` ≥ 1).
    fn parse(raw: &str) -> Result<Self, String> {
        let (name, at) = raw
            .rsplit_once(':')
            .ok_or_else(|| format!("{VARIABLE}={raw:?} is not <name>:<n>"))?;
        let at: u64 = at
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("{VARIABLE}={raw:?}: <n> must be a whole number from 1"))?;
        if name.is_empty() {
            return Err(format!("{VARIABLE}={raw:?}: the name is empty"));
        }
        Ok(Self {
            name: name.to_owned(),
            at,
            hits: AtomicU64::new(0),
        })
    }

    /// Counts a hit of `name`; `true` exactly on the armed hit.
    fn fires(&self, name: &str) -> bool {
        name == self.name && self.hits.fetch_add(1, Ordering::Relaxed) + 1 == self.at
    }
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let raw = std::env::var(VARIABLE).ok()?;
            match Armed::parse(&raw) {
                Ok(armed) => Some(armed),
                Err(problem) => {
                    // A fault test must not believe it injected a fault it did not: say so
                    // loudly (the harness also checks that the process died).
                    eprintln!("failpoint: ignored: {problem}");
                    None
                }
            }
        })
        .as_ref()
}

/// Passes the failpoint `name`: aborts the process when it is the armed one and this is its
/// `n`-th hit; does nothing otherwise.
pub fn hit(name: &str) {
    if let Some(armed) = armed()
        && armed.fires(name)
    {
        eprintln!("failpoint {name}: hit {}, aborting", armed.at);
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_failpoint_fires_on_its_nth_hit_only_and_ignores_other_names() {
        let armed = Armed::parse("driver.after-commit:3").expect("valid");
        assert!(!armed.fires("driver.after-commit"));
        assert!(!armed.fires("driver.handle"), "another name");
        assert!(!armed.fires("driver.after-commit"));
        assert!(armed.fires("driver.after-commit"), "the third hit");
        assert!(!armed.fires("driver.after-commit"), "never again");
    }

    #[test]
    fn a_malformed_setting_is_refused_with_the_reason() {
        for raw in [
            "driver.handle",
            "driver.handle:0",
            "driver.handle:x",
            ":2",
            "",
        ] {
            assert!(Armed::parse(raw).is_err(), "{raw:?} must be refused");
        }
        let armed = Armed::parse("a:b:7").expect("the count follows the last colon");
        assert_eq!((armed.name.as_str(), armed.at), ("a:b", 7));
    }

    #[test]
    fn an_unset_failpoint_is_a_no_op() {
        // The test process never sets EBOX_FAILPOINT: passing any name returns.
        if std::env::var_os(VARIABLE).is_none() {
            for _ in 0..3 {
                hit("driver.handle");
            }
        }
    }
}
