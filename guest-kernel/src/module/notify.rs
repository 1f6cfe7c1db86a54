//! The module notifier chain: listeners hear every state change (COMING, LIVE, GOING), as
//! Linux's `module_notify_list` does.

use kmodlab_abi::channel::ModuleState;

use super::ModuleId;

/// One state change.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The module.
    pub id: ModuleId,
    /// Its name.
    pub name: &'a str,
    /// Its new state.
    pub state: ModuleState,
}

/// A listener.
pub type Listener = fn(&Event<'_>);

/// The chain, in call order. (What a going module leaves behind — services, allocations —
/// is reclaimed by `free_module` after its exit has run, not here: the exit still uses it.)
const CHAIN: &[Listener] = &[log_listener, count_listener];

/// Lifecycle transitions seen, for `/proc/modules-verbose`: COMING, LIVE, GOING.
static TRANSITIONS: [core::sync::atomic::AtomicU64; 3] = [
    core::sync::atomic::AtomicU64::new(0),
    core::sync::atomic::AtomicU64::new(0),
    core::sync::atomic::AtomicU64::new(0),
];

fn count_listener(event: &Event<'_>) {
    let i = match event.state {
        ModuleState::Coming => 0,
        ModuleState::Live => 1,
        ModuleState::Going => 2,
    };
    TRANSITIONS[i].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// `(COMING, LIVE, GOING)` transitions since boot.
pub fn transitions() -> (u64, u64, u64) {
    let get = |i: usize| TRANSITIONS[i].load(core::sync::atomic::Ordering::Relaxed);
    (get(0), get(1), get(2))
}

/// Tells every listener about `event`.
pub fn notify(event: &Event<'_>) {
    for listener in CHAIN {
        listener(event);
    }
}

fn log_listener(event: &Event<'_>) {
    let what = match event.state {
        kmodlab_abi::channel::ModuleState::Coming => "COMING",
        kmodlab_abi::channel::ModuleState::Live => "LIVE",
        kmodlab_abi::channel::ModuleState::Going => "GOING",
    };
    kprintln!("module {} (#{}): {what}", event.name, event.id);
}
