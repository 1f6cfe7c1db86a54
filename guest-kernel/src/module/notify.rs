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

/// The chain, in call order: the kernel log, then the service registry (which drops a
/// going module's services before its code can go away).
const CHAIN: &[Listener] = &[log_listener, super::services::on_module_event];

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
    kprintln!("module {}: {what}", event.name);
}
