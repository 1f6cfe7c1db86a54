//! `delete_module` → `free_module` (compiled only with the `module-unload` feature, Linux's
//! CONFIG_MODULE_UNLOAD).

use alloc::vec::Vec;

use kmodlab_abi::channel::ModuleState;

use super::load::discard;
use super::{Caller, ModError, as_module, with_registry};

/// Unloads `name`: permission, lookup, no users, LIVE, has an exit; then GOING, `exit`,
/// `free_module`.
pub fn delete_module(name: &str, caller: Caller) -> Result<(), ModError> {
    if !caller.may_manage_modules {
        return Err(ModError::Permission);
    }
    let (id, exit) = with_registry(|r| {
        let m = r
            .find(name)
            .ok_or_else(|| ModError::NotLoaded(name.into()))?;
        if !m.used_by.is_empty() {
            let users: Vec<_> = m.used_by.iter().map(|&u| r.name_of(u)).collect();
            return Err(ModError::InUse {
                name: name.into(),
                users,
            });
        }
        if m.state != ModuleState::Live {
            return Err(ModError::Busy {
                name: name.into(),
                state: m.state,
            });
        }
        let exit = m.exit.ok_or_else(|| ModError::NoExit(name.into()))?;
        let id = m.id;
        // GOING before the exit runs: a concurrent lookup now sees it busy, and its exports
        // can no longer be resolved by a module loaded from its exit.
        r.get_mut(id).expect("found above").state = ModuleState::Going;
        r.exports.remove_provider(super::provider(id));
        Ok((id, exit))
    })?;
    super::notify::notify(&super::notify::Event {
        id,
        name,
        state: ModuleState::Going,
    });
    // SAFETY: `exit` is this LIVE module's `cleanup_module`, relocated and mapped executable
    // when it was loaded, with the ABI's signature `extern "C" fn()`; the module is trusted
    // kernel code in this configuration.
    let exit: extern "C" fn() = unsafe { core::mem::transmute(exit as usize) };
    as_module(id, || exit());
    discard(id);
    Ok(())
}
