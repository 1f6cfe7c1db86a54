//! Capability slots and rights.
//!
//! Every task has a table of [`SLOTS`] capability slots; system calls name capabilities by
//! slot. A new task starts with exactly two: its own endpoint in [`OWN_ENDPOINT`] (receive
//! and notify rights) and its supervisor's endpoint in [`SUPERVISOR`] (send right, badged by
//! the supervisor so that it can tell its children apart). Everything else a task can reach
//! was granted to it explicitly (`cap_grant`).

/// Capability slots per task.
pub const SLOTS: usize = 32;
/// The task's own endpoint (receive, notify).
pub const OWN_ENDPOINT: u64 = 0;
/// The supervisor's endpoint (send), badged for this task.
pub const SUPERVISOR: u64 = 1;
/// The module manager's factory capability (only the manager has one): creating tasks.
pub const FACTORY: u64 = 2;

/// The task argument of `cap_delete` that names the caller itself.
pub const SELF_TASK: u64 = u64::MAX;

/// The badge the kernel uses when it calls a server itself (the VMM's control commands and
/// the module system calls of user programs forwarded to the module manager).
pub const KERNEL_BADGE: u64 = u64::MAX;

/// Rights of an endpoint capability, as a bit mask.
pub mod rights {
    /// May `call` the endpoint.
    pub const SEND: u64 = 1 << 0;
    /// May `recv` on it (only the owner).
    pub const RECV: u64 = 1 << 1;
    /// May post notifications to it.
    pub const NOTIFY: u64 = 1 << 2;
    /// Every right.
    pub const ALL: u64 = SEND | RECV | NOTIFY;
}

/// Notification bits with a fixed meaning.
pub mod notify {
    /// Kernel to supervisor: one of your tasks faulted or was stopped (look with `task_info`).
    pub const CHILD_FAULTED: u64 = 1 << 0;
    /// Module manager to server: run the module's exit function and report back.
    pub const EXIT_REQUESTED: u64 = 1 << 1;
    /// First bit free for a protocol's own use.
    pub const FIRST_USER: u64 = 1 << 8;
}
