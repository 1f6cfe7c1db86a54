//! The status page ([`crate::layout::STATUS_GPA`]): a few words the guest kernel keeps up to
//! date and the VMM reads from another thread, with no VM exit, to decide when a guest
//! user program has run for a whole time slice without entering the kernel.
//!
//! The VMM then takes the CPU back by injecting [`PREEMPT_VECTOR`] (see `vmm/src/vm.rs`):
//! the kernel ends the program's run there and its scheduler decides whether it goes on or
//! has run too long (the watchdog that stops a looping module server). Programs that make
//! system calls or block are never interrupted: the entry count moves.
//!
//! Words are little-endian `u64` at the offsets below. The guest writes them; the VMM only
//! reads them, and any value it reads is harmless (at worst one interrupt too many, which the
//! kernel dismisses, or one too few).

/// Offset of the count of entries into user mode since boot.
pub const USER_ENTRIES: u64 = 0;
/// Offset of the in-user flag: 1 while the CPU runs user code (or is about to), else 0.
pub const IN_USER: u64 = 8;

/// The interrupt vector the VMM injects to end a user program's time slice.
pub const PREEMPT_VECTOR: u8 = 32;

/// The kernel command-line word that sets the watchdog: a module server that computes for
/// longer than this many milliseconds without blocking is stopped (`watchdog_ms=N`).
pub const WATCHDOG_WORD: &str = "watchdog_ms";
/// The watchdog's default, in milliseconds.
pub const WATCHDOG_DEFAULT_MS: u64 = 1000;

/// The kernel command-line word by which the VMM says it preempts user code (a kernel that
/// does not see it knows a looping program is stopped only by the VMM's deadline).
pub const PREEMPT_WORD: &str = "preempt";

/// Offset of the boot phase table: one `u64` TSC value per [`BootPhase`], in phase order,
/// written by the kernel when the phase ends (0: not reached). The VMM reads it once the
/// guest is ready and reports how long each phase took, without a VM exit per phase (each
/// exit costs tens of microseconds on kvm_pvm, which would distort what it measures).
pub const BOOT_PHASES: u64 = 64;

/// The steps of the guest kernel's boot, from its first instruction to its ready message,
/// timed by the boot phase table ([`BOOT_PHASES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BootPhase {
    /// The first instruction (the TSC the others are measured from).
    Entry = 0,
    /// Boot information and command line read.
    BootInfo,
    /// GDT, IDT and system-call entry set up.
    Traps,
    /// The physical frame allocator filled from the usable ranges.
    Frames,
    /// The kernel's page tables, with the boot's kernel stacks, built and active.
    PageTables,
    /// The kernel heap initialised.
    Heap,
    /// The configuration checked, the banner logged, the watchdog and module signature
    /// policy read.
    Banner,
    /// Trap stacks mapped (and the kernel/user split's entry area built, if on).
    TrapStacks,
    /// The configuration's module back end started.
    Backend,
    /// Just before the ready message.
    Ready,
}

impl BootPhase {
    /// Every phase, in order.
    pub const ALL: [BootPhase; 10] = [
        BootPhase::Entry,
        BootPhase::BootInfo,
        BootPhase::Traps,
        BootPhase::Frames,
        BootPhase::PageTables,
        BootPhase::Heap,
        BootPhase::Banner,
        BootPhase::TrapStacks,
        BootPhase::Backend,
        BootPhase::Ready,
    ];

    /// Offset of this phase's TSC word in the status page.
    pub const fn offset(self) -> u64 {
        BOOT_PHASES + 8 * self as u64
    }

    /// The name reports use.
    pub const fn name(self) -> &'static str {
        match self {
            BootPhase::Entry => "entry",
            BootPhase::BootInfo => "boot_info",
            BootPhase::Traps => "traps",
            BootPhase::Frames => "frames",
            BootPhase::PageTables => "page_tables",
            BootPhase::Heap => "heap",
            BootPhase::Banner => "banner",
            BootPhase::TrapStacks => "trap_stacks",
            BootPhase::Backend => "backend",
            BootPhase::Ready => "ready",
        }
    }
}

// The table lies after the other words and inside the page.
const _: () = {
    assert!(BOOT_PHASES >= IN_USER + 8);
    assert!(BOOT_PHASES + 8 * BootPhase::ALL.len() as u64 <= crate::layout::PAGE_SIZE);
};

/// How long each phase after [`BootPhase::Entry`] took, in TSC cycles, from the table's
/// words (`words[i]` is phase `i`'s end). A phase whose value is missing or earlier than the
/// one before (the guest's words are untrusted) gives `None` for it and the next phase.
pub fn phase_cycles(words: &[u64; BootPhase::ALL.len()]) -> [(BootPhase, Option<u64>); 9] {
    // Whether word `k` is a usable end: present, and not before the word before it.
    let usable = |k: usize| words[k] != 0 && (k == 0 || words[k] >= words[k - 1]);
    core::array::from_fn(|i| {
        let cycles = (usable(i) && usable(i + 1)).then(|| words[i + 1] - words[i]);
        (BootPhase::ALL[i + 1], cycles)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_fits_the_page_after_the_other_words() {
        assert_eq!(BootPhase::Entry.offset(), 64);
        assert_eq!(BootPhase::Ready.offset(), 64 + 9 * 8);
        for (i, p) in BootPhase::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
    }

    #[test]
    fn phase_cycles_are_differences_and_reject_garbage() {
        let words = [100, 150, 0, 400, 390, 500, 600, 700, 800, 1000];
        let c = phase_cycles(&words);
        assert_eq!(c[0], (BootPhase::BootInfo, Some(50)));
        assert_eq!(c[1], (BootPhase::Traps, None), "phase not reached");
        assert_eq!(c[2], (BootPhase::Frames, None), "its start is unknown");
        assert_eq!(c[3], (BootPhase::PageTables, None), "goes backwards");
        assert_eq!(c[4], (BootPhase::Heap, None), "starts at a backwards value");
        assert_eq!(c[5], (BootPhase::Banner, Some(100)));
        assert_eq!(c[8], (BootPhase::Ready, Some(200)));
    }
}
