//! The task system calls a supervisor (the module manager) uses to build and run other
//! tasks: create, map, write, protect, unmap, start, destroy, inspect, and grant them
//! capabilities. Authority is a capability: `task_create` needs the factory capability, every
//! other call a task capability for its target.

use alloc::string::String;
use alloc::vec;

use guest_rt::errno;
use kmodlab_ipc::cap::rights;
use kmodlab_ipc::layout::PAGE_SIZE;
use kmodlab_ipc::task::{Perm, TaskId, TaskInfo};

use super::{Cap, State, Task, Tasks};
use crate::arch::UserContext;
use crate::user::Session;

/// Most pages one `task_map` may map (64 MiB), so that one call is bounded.
const MAX_MAP_PAGES: u64 = 16 * 1024;
/// Largest `task_write`.
const MAX_WRITE: u64 = 64 << 20;
/// Longest task name.
const MAX_NAME: u64 = 64;

fn err(e: u64) -> u64 {
    e.wrapping_neg()
}

/// The task that `caller`'s capability in `slot` controls.
fn target(t: &Tasks, caller: TaskId, slot: u64) -> Result<TaskId, u64> {
    match t.get(caller).and_then(|c| c.cap(slot)) {
        Some(Cap::Task(id)) if t.get(id).is_some() => Ok(id),
        Some(Cap::Task(_)) => Err(errno::ESRCH),
        Some(_) => Err(errno::EACCES),
        None => Err(errno::EBADF),
    }
}

fn result(r: Result<u64, u64>) -> u64 {
    r.unwrap_or_else(err)
}

/// `task_create(factory_slot, name, name_len, badge)`.
pub fn create(t: &mut Tasks, caller: TaskId, a: [u64; 4]) -> u64 {
    result((|| {
        let c = t.get(caller).ok_or(errno::ESRCH)?;
        if c.cap(a[0]) != Some(Cap::Factory) {
            return Err(errno::EACCES);
        }
        if a[2] > MAX_NAME {
            return Err(errno::ENAMETOOLONG);
        }
        let mut name = vec![0u8; a[2] as usize];
        c.aspace.read(a[1], &mut name).map_err(|_| errno::EFAULT)?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let slot = c.free_slot().ok_or(errno::ENOSPC)?;
        let id = t
            .create(&name, Some(caller), a[3], Session::none())
            .map_err(|e| e.errno())?;
        if let Some(c) = t.get_mut(caller) {
            c.caps[slot] = Some(Cap::Task(id));
        }
        Ok(slot as u64)
    })())
}

fn perm(code: u64) -> Result<Perm, u64> {
    Perm::from_code(code).ok_or(errno::EINVAL)
}

/// The task a `task_map` changes: the one `caller`'s capability in `slot` controls, or, for
/// [`SELF`], the caller itself if it holds the factory capability. The module manager grows
/// its own heap so, a page group at a time as it needs it, instead of starting with all of it
/// mapped and zeroed; the holder of the factory may already map memory into every task it
/// creates, so mapping into itself gives it no authority it did not have.
fn map_target(t: &Tasks, caller: TaskId, slot: u64) -> Result<TaskId, u64> {
    if slot != SELF {
        return target(t, caller, slot);
    }
    let c = t.get(caller).ok_or(errno::ESRCH)?;
    if c.caps.contains(&Some(Cap::Factory)) {
        Ok(caller)
    } else {
        Err(errno::EACCES)
    }
}

/// `task_map(task_slot, vaddr, pages, perm)`; `task_slot` may be [`SELF`] for the holder of
/// the factory capability (see [`map_target`]).
pub fn map(t: &mut Tasks, caller: TaskId, a: [u64; 4]) -> u64 {
    result((|| {
        let id = map_target(t, caller, a[0])?;
        let p = perm(a[3])?;
        if a[2] == 0 || a[2] > MAX_MAP_PAGES {
            return Err(errno::EINVAL);
        }
        let task = t.get_mut(id).ok_or(errno::ESRCH)?;
        task.aspace
            .map_zeroed(a[1], a[2], p)
            .map(|_| 0)
            .map_err(|e| e.errno())
    })())
}

/// Refuses ranges that include the task's UTCB: the kernel holds on to that frame for the
/// task's whole life, so it must never be unmapped or made read-only under the kernel.
fn not_utcb(vaddr: u64, pages: u64) -> Result<(), u64> {
    let end = pages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| vaddr.checked_add(len))
        .ok_or(errno::EINVAL)?;
    if (vaddr..end).contains(&kmodlab_ipc::layout::UTCB) {
        return Err(errno::EINVAL);
    }
    Ok(())
}

/// `task_unmap(task_slot, vaddr, pages)`.
pub fn unmap(t: &mut Tasks, caller: TaskId, a: [u64; 3]) -> u64 {
    result((|| {
        not_utcb(a[1], a[2])?;
        let id = target(t, caller, a[0])?;
        let task = t.get_mut(id).ok_or(errno::ESRCH)?;
        task.aspace
            .unmap(a[1], a[2])
            .map(|()| 0)
            .map_err(|e| e.errno())
    })())
}

/// `task_protect(task_slot, vaddr, pages, perm)`.
pub fn protect(t: &mut Tasks, caller: TaskId, a: [u64; 4]) -> u64 {
    result((|| {
        not_utcb(a[1], a[2])?;
        let id = target(t, caller, a[0])?;
        let p = perm(a[3])?;
        let task = t.get_mut(id).ok_or(errno::ESRCH)?;
        task.aspace
            .protect(a[1], a[2], p)
            .map(|()| 0)
            .map_err(|e| e.errno())
    })())
}

/// `task_write(task_slot, dst, src, len)`: caller memory to the task's, whatever the task's
/// page permissions (this is how code gets into a task), through a bounded kernel buffer.
pub fn write(t: &mut Tasks, caller: TaskId, a: [u64; 4]) -> u64 {
    result((|| {
        let id = target(t, caller, a[0])?;
        let [_, dst, src, len] = a;
        if len > MAX_WRITE {
            return Err(errno::EINVAL);
        }
        let c = t.get(caller).ok_or(errno::ESRCH)?;
        c.aspace.check(src, len, false).map_err(|_| errno::EFAULT)?;
        let task = t.get(id).ok_or(errno::ESRCH)?;
        task.aspace
            .check(dst, len, false)
            .map_err(|_| errno::EFAULT)?;
        let mut chunk = vec![0u8; PAGE_SIZE as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE_SIZE) as usize;
            let piece = &mut chunk[..n];
            let c = t.get(caller).ok_or(errno::ESRCH)?;
            c.aspace
                .read(src + done, piece)
                .map_err(|_| errno::EFAULT)?;
            let task = t.get(id).ok_or(errno::ESRCH)?;
            task.aspace
                .write(dst + done, piece, false)
                .map_err(|_| errno::EFAULT)?;
            done += n as u64;
        }
        Ok(0)
    })())
}

/// `task_start(task_slot, entry, stack_top, arg)`.
pub fn start(t: &mut Tasks, caller: TaskId, a: [u64; 4]) -> u64 {
    result((|| {
        let id = target(t, caller, a[0])?;
        let task = t.get_mut(id).ok_or(errno::ESRCH)?;
        if task.state != State::Created {
            return Err(errno::EBUSY);
        }
        let ctx = UserContext::new(a[1], a[2], [a[3], 0, 0]);
        if !ctx.is_user() {
            return Err(errno::EINVAL);
        }
        task.ctx = ctx;
        t.wake(id);
        Ok(0)
    })())
}

fn info_of(task: &Task) -> TaskInfo {
    TaskInfo {
        id: task.id,
        state: task.state.public(),
        pages: task.aspace.pages(),
        page_table_pages: task.aspace.table_pages(),
        kernel_bytes: task.kernel_bytes(),
        syscalls: task.counters.syscalls,
        ipc_sent: task.counters.ipc_sent,
        user_cycles: task.counters.user_cycles,
    }
}

fn copy_info(t: &Tasks, caller: TaskId, info: &TaskInfo, buf: u64, cap: u64) -> Result<u64, u64> {
    let mut bytes = [0u8; TaskInfo::MAX_ENCODED];
    let n = info.encode(&mut bytes).ok_or(errno::EOVERFLOW)?;
    if (n as u64) > cap {
        return Err(errno::EMSGSIZE);
    }
    t.get(caller)
        .ok_or(errno::ESRCH)?
        .aspace
        .write(buf, &bytes[..n], true)
        .map_err(|_| errno::EFAULT)?;
    Ok(n as u64)
}

/// `task_info(task_slot, buf, cap)`.
pub fn info(t: &mut Tasks, caller: TaskId, a: [u64; 3]) -> u64 {
    result((|| {
        let id = target(t, caller, a[0])?;
        let info = info_of(t.get(id).ok_or(errno::ESRCH)?);
        copy_info(t, caller, &info, a[1], a[2])
    })())
}

/// `task_self_info(buf, cap)`.
pub fn self_info(t: &mut Tasks, caller: TaskId, a: [u64; 2]) -> u64 {
    result((|| {
        let info = info_of(t.get(caller).ok_or(errno::ESRCH)?);
        copy_info(t, caller, &info, a[0], a[1])
    })())
}

/// `cap_grant(task_slot, my_slot, badge, rights)`; `my_slot` may hold a task capability,
/// which names that task's endpoint.
pub fn grant(t: &mut Tasks, caller: TaskId, a: [u64; 4]) -> u64 {
    result((|| {
        let id = target(t, caller, a[0])?;
        let (owner, have) = match t.get(caller).and_then(|c| c.cap(a[1])) {
            Some(Cap::Endpoint { owner, rights, .. }) => (owner, rights),
            // Control of a task includes talking to it: a supervisor can hand out its child's
            // endpoint (send, notify) without holding a separate endpoint capability.
            Some(Cap::Task(owner)) => (owner, rights::SEND | rights::NOTIFY),
            Some(_) => return Err(errno::EACCES),
            None => return Err(errno::EBADF),
        };
        // Nobody but the owner may receive on an endpoint, so RECV is never granted.
        let r = have & a[3] & !rights::RECV;
        let task = t.get_mut(id).ok_or(errno::ESRCH)?;
        let slot = task.free_slot().ok_or(errno::ENOSPC)?;
        task.caps[slot] = Some(Cap::Endpoint {
            owner,
            badge: a[2],
            rights: r,
        });
        Ok(slot as u64)
    })())
}

/// `cap_delete(task_slot, slot)`; `task_slot` [`SELF`] names the caller's own table.
pub fn delete(t: &mut Tasks, caller: TaskId, a: [u64; 2]) -> u64 {
    result((|| {
        let id = if a[0] == SELF {
            caller
        } else {
            target(t, caller, a[0])?
        };
        let task = t.get_mut(id).ok_or(errno::ESRCH)?;
        let slot = usize::try_from(a[1]).map_err(|_| errno::EINVAL)?;
        // The own endpoint and the supervisor's are part of what a task is.
        if slot < 2 {
            return Err(errno::EINVAL);
        }
        match task.caps.get_mut(slot) {
            Some(c) => {
                *c = None;
                Ok(0)
            }
            None => Err(errno::EBADF),
        }
    })())
}

/// The `task_slot` of `cap_delete` (and, for the factory's holder, `task_map`) that names the
/// caller itself.
pub const SELF: u64 = kmodlab_ipc::cap::SELF_TASK;

/// Resolves `task_destroy(task_slot)`'s target (the destruction itself runs without the task
/// table locked, see [`super::destroy`]); also empties the slot.
pub fn destroy_target(t: &mut Tasks, caller: TaskId, slot: u64) -> Result<TaskId, u64> {
    let id = target(t, caller, slot)?;
    if id == caller {
        return Err(errno::EINVAL);
    }
    if let Some(c) = t.get_mut(caller)
        && let Some(s) = usize::try_from(slot).ok().and_then(|s| c.caps.get_mut(s))
    {
        *s = None;
    }
    Ok(id)
}
