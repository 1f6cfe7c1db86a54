//! The kmodlab guest kernel.
//!
//! A small x86-64 kernel whose only job is to host a module subsystem in one of two
//! configurations, `monolithic` or `microkernel` (a cargo feature), and to measure it. The
//! VMM (`vmm/`) boots it directly in 64-bit mode and talks to it over the control channel
//! (`kmodlab_abi::channel`).
//!
//! Design principles:
//! - **Report, never hang.** Every exception is caught and reported to the VMM with vector,
//!   RIP, CR2, error code and privilege level; a fault in supervisor mode ends the run as a
//!   "guest kernel crashed" report, a fault in user mode ends only the user program.
//! - **W^X everywhere.** The kernel builds its own page tables at boot: text is RX, rodata R,
//!   data and heap RW and non-executable, page 0 is never mapped, stacks have guard pages.
//! - **Untrusted pointers become checked types.** A pointer from user mode is turned into a
//!   [`user::UserSlice`] (range and mapping checked) before the kernel touches it.
//! - **Measure without the VMM in the way.** Timed regions contain no VM exit: the guest
//!   times N iterations with the TSC and reports once per command.
//! - **Single CPU; interrupts only in user mode.** The kernel runs with interrupts disabled;
//!   user mode runs with them enabled so that the VMM's time-slice interrupt can preempt a
//!   program that never makes a system call. The VMM's deadline stops a run that does not
//!   finish.
//! - **One seam between the configurations**: [`backend`] (see `DESIGN.md`).
#![no_std]
#![no_main]

extern crate alloc;

#[cfg(all(feature = "monolithic", feature = "microkernel"))]
compile_error!("enable exactly one of the features `monolithic` and `microkernel`");
#[cfg(not(any(feature = "monolithic", feature = "microkernel")))]
compile_error!("enable one of the features `monolithic` and `microkernel`");

#[macro_use]
mod console;
mod arch;
mod backend;
mod bench;
mod boot;
mod control;
mod ipc;
#[cfg(feature = "microkernel")]
mod manager;
mod mm;
#[cfg(feature = "monolithic")]
mod module;
mod panic;
mod selftest;
mod stats;
mod syscalls;
mod task;
mod user;

use kmodlab_abi::KernelConfig;

/// The configuration this kernel was built as.
pub const CONFIG: KernelConfig = if cfg!(feature = "monolithic") {
    KernelConfig::Monolithic
} else {
    KernelConfig::Microkernel
};
