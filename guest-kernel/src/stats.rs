//! Event counters the benchmarks read beside their timings: deterministic counts per
//! operation (system calls, IPC messages) that explain a cost the TSC only measures.
//!
//! Counting is a relaxed atomic increment: cheap enough to stay on in every build, so that a
//! benchmark run and a normal run execute the same code.

use core::sync::atomic::{AtomicU64, Ordering};

use kmodlab_abi::channel::KernelCounters;

static SYSCALLS: AtomicU64 = AtomicU64::new(0);
static IPC_MESSAGES: AtomicU64 = AtomicU64::new(0);
static IPC_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts one system call served.
pub fn count_syscall() {
    SYSCALLS.fetch_add(1, Ordering::Relaxed);
}

/// Counts one IPC message carrying `bytes` of payload (a request and its reply are two).
pub fn count_ipc_message(bytes: usize) {
    IPC_MESSAGES.fetch_add(1, Ordering::Relaxed);
    IPC_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// The counters now; subtract two snapshots ([`KernelCounters::since`]) for a region.
pub fn snapshot() -> KernelCounters {
    KernelCounters {
        syscalls: SYSCALLS.load(Ordering::Relaxed),
        ipc_messages: IPC_MESSAGES.load(Ordering::Relaxed),
        ipc_bytes: IPC_BYTES.load(Ordering::Relaxed),
    }
}
