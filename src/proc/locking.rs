//! The kernel-locking strategy this boot runs (chapter 9, "Measuring locks"): one of the four
//! ways the kernel's history protected its shared state, chosen with the boot argument
//! `locking=leader|bkl|subsystem|fine` (default `fine`).
//!
//! A placeholder: it names the strategy and parses the boot argument so the bkl benchmark can
//! label its results, but every boot still runs the kernel's fine-grained locks.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::platform::Platform;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Leader,
    Bkl,
    Subsystem,
    Fine,
}

impl Strategy {
    /// In history order.
    pub const ALL: [Strategy; 4] = [
        Strategy::Leader,
        Strategy::Bkl,
        Strategy::Subsystem,
        Strategy::Fine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Leader => "leader",
            Strategy::Bkl => "bkl",
            Strategy::Subsystem => "subsystem",
            Strategy::Fine => "fine",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// The strategy's index in `Strategy::ALL`.
static CHOSEN: AtomicU8 = AtomicU8::new(3);

/// What this boot runs.
pub fn strategy() -> Strategy {
    Strategy::ALL[CHOSEN.load(Ordering::Relaxed) as usize % Strategy::ALL.len()]
}

/// Read `locking=` from the boot arguments; an unknown name is reported and `fine` kept.
pub fn init(platform: &Platform) {
    let Some(name) = platform.bootarg_value("locking") else {
        return;
    };
    match Strategy::parse(name) {
        Some(chosen) => {
            let index = Strategy::ALL.iter().position(|s| *s == chosen).unwrap_or(3);
            CHOSEN.store(index as u8, Ordering::Relaxed);
            log::info!(target: "locking", "{}: chosen by the boot arguments", chosen.name());
        }
        None => log::warn!(target: "locking",
            "locking={name:?} is not one of leader, bkl, subsystem, fine; running fine"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_strategy() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.name()), Some(s));
        }
        assert_eq!(Strategy::parse("giant"), None);
    }
}
