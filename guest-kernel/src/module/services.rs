//! The service registry: modules register named message handlers and call each other's by
//! handle. In the monolithic kernel a call is a direct function call; the microkernel will
//! make the same calls IPC round trips, which is what the comparison measures.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_void;

use guest_rt::errno;
use kmod_api::abi::ServiceHandler;
use spin::Mutex;

use super::{ModuleId, as_module};

/// Longest service name.
pub const MAX_NAME: usize = 64;

struct Service {
    name: String,
    handler: ServiceHandler,
    ctx: usize,
    owner: ModuleId,
    handle: u64,
}

struct Services {
    list: Vec<Service>,
    next_handle: u64,
}

static SERVICES: Mutex<Services> = Mutex::new(Services {
    list: Vec::new(),
    next_handle: 1,
});

/// Registers `handler` under `name` for module `owner`.
pub fn register(name: &str, handler: ServiceHandler, ctx: *mut c_void, owner: ModuleId) -> i32 {
    if name.is_empty() || name.len() > MAX_NAME {
        return -(errno::EINVAL as i32);
    }
    let mut s = SERVICES.lock();
    if s.list.iter().any(|x| x.name == name) {
        return -(errno::EEXIST as i32);
    }
    let handle = s.next_handle;
    s.next_handle += 1;
    s.list.push(Service {
        name: name.into(),
        handler,
        ctx: ctx as usize,
        owner,
        handle,
    });
    0
}

/// Removes `owner`'s service `name`.
pub fn unregister(name: &str, owner: ModuleId) -> i32 {
    let mut s = SERVICES.lock();
    match s
        .list
        .iter()
        .position(|x| x.name == name && x.owner == owner)
    {
        Some(i) => {
            s.list.remove(i);
            0
        }
        None => -(errno::ENOENT as i32),
    }
}

/// The handle of service `name`.
pub fn lookup(name: &str) -> Option<u64> {
    SERVICES
        .lock()
        .list
        .iter()
        .find(|x| x.name == name)
        .map(|x| x.handle)
}

/// Calls the service behind `handle`. The registry is not locked while the handler runs
/// (it may call services itself).
///
/// # Safety
/// `req` must be readable for `req_len` bytes, `reply` writable for `reply_cap` bytes and
/// `reply_len` writable, for the duration of the call (the kernel API contract).
pub unsafe fn call(
    handle: u64,
    op: u32,
    req: *const u8,
    req_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    let target = {
        let s = SERVICES.lock();
        s.list
            .iter()
            .find(|x| x.handle == handle)
            .map(|x| (x.handler, x.ctx, x.owner))
    };
    let Some((handler, ctx, owner)) = target else {
        return -(errno::ENOENT as i32);
    };
    let mut len = 0usize;
    // SAFETY: the handler was registered by a LIVE (or COMING) module whose code is mapped
    // (a module's services are dropped before its code is unmapped); the buffers are the
    // caller's, valid per this function's contract; `len` is a local.
    let status = as_module(owner, || unsafe {
        handler(
            ctx as *mut c_void,
            op,
            req,
            req_len,
            reply,
            reply_cap,
            &mut len,
        )
    });
    if len > reply_cap {
        return -(errno::EMSGSIZE as i32);
    }
    if !reply_len.is_null() {
        // SAFETY: the caller guarantees `reply_len` is writable when not null.
        unsafe { reply_len.write(len) };
    }
    status
}

/// Drops the services module `owner` left registered (its exit did not unregister them),
/// so that no handle can reach code about to be unmapped; returns how many.
pub fn drop_owned_by(owner: ModuleId) -> usize {
    let mut s = SERVICES.lock();
    let before = s.list.len();
    s.list.retain(|x| x.owner != owner);
    before - s.list.len()
}

/// Bytes of registry entries (entry and name) module `owner` has registered now.
pub fn bytes_owned_by(owner: ModuleId) -> u64 {
    SERVICES
        .lock()
        .list
        .iter()
        .filter(|x| x.owner == owner)
        .map(|x| (core::mem::size_of::<Service>() + x.name.len()) as u64)
        .sum()
}

/// Names of the services module `owner` has registered.
#[allow(dead_code)] // used by lsmod -v's future service column
pub fn owned_by(owner: ModuleId) -> Vec<String> {
    SERVICES
        .lock()
        .list
        .iter()
        .filter(|x| x.owner == owner)
        .map(|x| x.name.clone())
        .collect()
}
