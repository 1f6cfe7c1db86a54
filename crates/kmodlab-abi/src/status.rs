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
