//! What a campaign injects, in which order: a seeded, reproducible plan. Each round of
//! [`COMBINATIONS`] injections holds every fault × phase once, in a seeded order, so that any
//! campaign of at least one round covers every combination, and the neighbours loaded
//! around each injection vary with the seed.

use serde::Serialize;

/// How the `faulty` module misbehaves (its `mode=` and the parameters that go with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Fault {
    /// Reads address 0.
    Null,
    /// Executes `ud2`.
    Ud,
    /// Divides by zero.
    Div0,
    /// Never returns (the microkernel's watchdog stops it).
    Loop,
    /// Recurses until the stack overflows.
    Stack,
    /// Writes to the default wild address, which is not canonical (#GP).
    WildNonCanonical,
    /// Writes to an unmapped user address (#PF).
    WildUser,
    /// Writes to the kernel's text (#PF: never writable from a module server; the
    /// monolithic kernel's text is read-only too).
    WildKernelText,
    /// A Rust panic (the module's panic handler reports it and executes `ud2`).
    Panic,
    /// Corrupts its own state with pseudo-random bytes and uses it.
    Scribble,
    /// Lies: a reply longer than the buffer, an errno outside the table, a name length past
    /// the limit (see `modules/faulty`).
    Garbage,
}

impl Fault {
    /// Every fault, in report order.
    pub const ALL: [Fault; 11] = [
        Fault::Null,
        Fault::Ud,
        Fault::Div0,
        Fault::Loop,
        Fault::Stack,
        Fault::WildNonCanonical,
        Fault::WildUser,
        Fault::WildKernelText,
        Fault::Panic,
        Fault::Scribble,
        Fault::Garbage,
    ];

    /// The name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Fault::Null => "null",
            Fault::Ud => "ud",
            Fault::Div0 => "div0",
            Fault::Loop => "loop",
            Fault::Stack => "stack",
            Fault::WildNonCanonical => "wild",
            Fault::WildUser => "wild-user",
            Fault::WildKernelText => "wild-ktext",
            Fault::Panic => "panic",
            Fault::Scribble => "scribble",
            Fault::Garbage => "garbage",
        }
    }

    /// Whether the fault is a CPU exception or the watchdog (reported with a vector and an
    /// offset), rather than a lie the kernel must refuse. `scribble` is one, except in the
    /// rare run whose bytes form readable addresses (counted as "did not fire").
    pub const fn is_exception(self) -> bool {
        !matches!(self, Fault::Garbage)
    }

    /// `faulty`'s parameters for this fault; `seed` feeds `scribble` and `garbage`.
    pub fn params(self, seed: u32) -> String {
        match self {
            Fault::Null => "mode=null".into(),
            Fault::Ud => "mode=ud".into(),
            Fault::Div0 => "mode=div0".into(),
            Fault::Loop => "mode=loop".into(),
            Fault::Stack => "mode=stack".into(),
            Fault::WildNonCanonical => "mode=wild".into(),
            Fault::WildUser => "mode=wild addr=0x7fff00000000".into(),
            // 0xffff_ffff_8020_0000 (the kernel's text) as the i64 the parameter holds.
            Fault::WildKernelText => "mode=wild addr=-0x7fe00000".into(),
            Fault::Panic => "mode=panic".into(),
            Fault::Scribble => format!("mode=scribble seed={seed}"),
            Fault::Garbage => format!("mode=garbage seed={seed}"),
        }
    }
}

/// When the fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Phase {
    /// In the module's init.
    Init,
    /// In its exit (on rmmod).
    Exit,
    /// In the middle of a call to its service.
    Call,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 3] = [Phase::Init, Phase::Exit, Phase::Call];

    /// `faulty`'s `at=`.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Exit => "exit",
            Phase::Call => "call",
        }
    }
}

/// A module loaded next to `faulty` while it faults, besides the `crc32`, `ramblk` and
/// `kvstore` servers that stay loaded for the whole boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Neighbour {
    /// None.
    None,
    /// `hello`.
    Hello,
    /// `params` (with parameters).
    Params,
    /// `kvclient`: its init checks the store end to end (kvstore's exports and service,
    /// crc32's service), its exit removes its keys.
    Kvclient,
}

impl Neighbour {
    /// Every neighbour.
    pub const ALL: [Neighbour; 4] = [
        Neighbour::None,
        Neighbour::Hello,
        Neighbour::Params,
        Neighbour::Kvclient,
    ];

    /// The module and its parameters, if any.
    pub const fn module(self) -> Option<(&'static str, &'static str)> {
        match self {
            Neighbour::None => None,
            Neighbour::Hello => Some(("hello", "")),
            Neighbour::Params => Some(("params", "count=2 greeting=campaign")),
            Neighbour::Kvclient => Some(("kvclient", "keys=4")),
        }
    }
}

/// Fault × phase combinations: one round of the plan.
pub const COMBINATIONS: usize = Fault::ALL.len() * Phase::ALL.len();

/// One injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Injection {
    /// Its place in the plan, from 0.
    pub index: u64,
    /// The fault.
    pub fault: Fault,
    /// When.
    pub phase: Phase,
    /// What else is loaded meanwhile.
    pub neighbour: Neighbour,
    /// The seed of `scribble`'s and `garbage`'s bytes.
    pub seed: u32,
}

impl Injection {
    /// `faulty`'s full parameter string.
    pub fn params(&self) -> String {
        format!("{} at={}", self.fault.params(self.seed), self.phase.name())
    }
}

/// The first `count` injections of the plan of `seed`: the same for the same seed, on any
/// host.
pub fn plan(count: u64, seed: u64) -> Vec<Injection> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut round: Vec<(Fault, Phase)> = Vec::with_capacity(COMBINATIONS);
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 20));
    for index in 0..count {
        if round.is_empty() {
            round = Fault::ALL
                .iter()
                .flat_map(|f| Phase::ALL.iter().map(move |p| (*f, *p)))
                .collect();
            rng.shuffle(&mut round);
        }
        let Some((fault, phase)) = round.pop() else {
            break;
        };
        out.push(Injection {
            index,
            fault,
            phase,
            neighbour: Neighbour::ALL[rng.usize(..Neighbour::ALL.len())],
            seed: rng.u32(..),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_plan_is_the_same_for_the_same_seed_and_differs_for_another() {
        assert_eq!(plan(500, 7), plan(500, 7));
        assert_ne!(plan(500, 7), plan(500, 8));
        // A longer plan starts with the shorter one.
        assert_eq!(plan(1000, 7)[..500], plan(500, 7)[..]);
        let p = plan(100, 1);
        assert!(p.iter().enumerate().all(|(i, x)| x.index == i as u64));
    }

    #[test]
    fn every_round_covers_every_fault_at_every_phase() {
        let p = plan(3 * COMBINATIONS as u64 + 5, 42);
        for round in p.chunks(COMBINATIONS).take(3) {
            let seen: BTreeSet<(Fault, Phase)> = round.iter().map(|x| (x.fault, x.phase)).collect();
            assert_eq!(seen.len(), COMBINATIONS);
        }
        let neighbours: BTreeSet<_> = p.iter().map(|x| x.neighbour as u8).collect();
        assert_eq!(neighbours.len(), Neighbour::ALL.len());
        assert_eq!(plan(0, 42), Vec::new());
    }

    #[test]
    fn params_are_what_faulty_takes() {
        let inj = Injection {
            index: 0,
            fault: Fault::Scribble,
            phase: Phase::Call,
            neighbour: Neighbour::None,
            seed: 99,
        };
        assert_eq!(inj.params(), "mode=scribble seed=99 at=call");
        assert_eq!(Fault::WildUser.params(0), "mode=wild addr=0x7fff00000000");
        assert_eq!(Fault::Null.params(5), "mode=null");
    }
}
