//! The kernel API (`kmod_api::for_each_kernel_api!`) as a module server implements it: the
//! same functions the monolithic kernel has (`guest-kernel/src/module/kapi.rs`), with the
//! same argument checks and results, made of system calls and IPC instead of kernel calls.
//! `kmod_api::kernel_api_table!` below fails to compile unless every function of the list
//! is here with its exact signature; the module manager resolves a module's imports to these
//! functions by name, from this program's symbol table (hence `no_mangle`).

use alloc::collections::BTreeMap;
use core::alloc::Layout;
use core::ffi::c_void;

use guest_rt::errno;
use kmod_api::KernelApiEntry;
use kmod_api::abi::ServiceHandler;
use kmodlab_ipc::cap::SUPERVISOR;
use kmodlab_ipc::server;
use kmodlab_user::ipc::{self, Outgoing};

use crate::services;

/// Longest single `kmod_print` (longer messages are cut), as in the monolithic kernel.
const MAX_PRINT: usize = 4096;
/// Largest `kmod_alloc`, as in the monolithic kernel.
const MAX_ALLOC: usize = 64 << 20;

/// Outstanding `kmod_alloc` blocks: address → (size, align).
static ALLOCATIONS: spin::Mutex<BTreeMap<usize, (usize, usize)>> =
    spin::Mutex::new(BTreeMap::new());

fn neg(e: u64) -> i32 {
    -(e.min(4095) as i32)
}

/// Reads `(ptr, len)` as a string, or `None` if it is null, too long or not UTF-8.
///
/// # Safety
/// `ptr` must be readable for `len` bytes when not null and `len <= max`.
unsafe fn str_arg<'a>(ptr: *const u8, len: usize, max: usize) -> Option<&'a str> {
    if ptr.is_null() || len > max {
        return None;
    }
    // SAFETY: the caller guarantees the bytes are readable; they outlive this call.
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(ptr, len) }).ok()
}

/// Appends a line of the runtime's own to the kernel log.
fn log(text: &str) {
    let _ = ipc::log(text.as_bytes());
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_print(msg: *const u8, len: usize) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the kernel API contract: `msg` is readable for `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(msg, len.min(MAX_PRINT)) };
    let _ = ipc::log(bytes);
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_alloc(size: usize, align: usize) -> *mut u8 {
    if size == 0 || size > MAX_ALLOC || !align.is_power_of_two() || align > 4096 {
        return core::ptr::null_mut();
    }
    let Ok(layout) = Layout::from_size_align(size, align) else {
        return core::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size. The heap grows by asking the manager.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if !p.is_null() {
        ALLOCATIONS.lock().insert(p as usize, (size, align));
    }
    p
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_free(ptr: *mut u8, size: usize, align: usize) {
    if ptr.is_null() {
        return;
    }
    let entry = ALLOCATIONS.lock().remove(&(ptr as usize));
    match entry {
        Some((s, a)) if s == size && a == align => {
            // SAFETY: the block came from kmod_alloc with exactly this layout and is freed once
            // (it was just removed from the table).
            unsafe { alloc::alloc::dealloc(ptr, Layout::from_size_align_unchecked(s, a)) }
        }
        Some((s, a)) => {
            // Freeing with the wrong layout would corrupt the heap: keep the block and say so.
            ALLOCATIONS.lock().insert(ptr as usize, (s, a));
            log(&alloc::format!(
                "kmod_free: {ptr:p} freed as {size}/{align} but allocated as {s}/{a}; not freed\n"
            ));
        }
        None => log(&alloc::format!(
            "kmod_free: {ptr:p} was not allocated by kmod_alloc; ignored\n"
        )),
    }
}

/// The `kmod_alloc` blocks not freed, and their bytes (reported to the manager at exit, which
/// logs them as the monolithic kernel does; the memory goes with the server).
pub fn outstanding_allocations() -> (u64, u64) {
    let a = ALLOCATIONS.lock();
    (a.len() as u64, a.values().map(|(s, _)| *s as u64).sum())
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_cycles() -> u64 {
    guest_rt::rdtsc_ordered()
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_request_module(name: *const u8, name_len: usize) -> i32 {
    // SAFETY: kernel API contract.
    let Some(name) = (unsafe { str_arg(name, name_len, 64) }) else {
        return neg(errno::EINVAL);
    };
    let out = Outgoing {
        op: server::op::REQUEST_MODULE,
        words: [0; 6],
        payload: name.as_bytes(),
        read_leases: &[],
    };
    // The manager answers when the module is LIVE (or the request failed); it logs failures
    // as the monolithic kernel does.
    match ipc::call(SUPERVISOR, &out, &mut [], &mut []) {
        Ok(_) => 0,
        Err(e) => neg(e.errno),
    }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_service_register(
    name: *const u8,
    name_len: usize,
    handler: ServiceHandler,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: kernel API contract.
    match unsafe { str_arg(name, name_len, services::MAX_NAME) } {
        Some(name) => services::register(name, handler, ctx),
        None => neg(errno::EINVAL),
    }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_service_unregister(name: *const u8, name_len: usize) -> i32 {
    // SAFETY: kernel API contract.
    match unsafe { str_arg(name, name_len, services::MAX_NAME) } {
        Some(name) => services::unregister(name),
        None => neg(errno::EINVAL),
    }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_service_lookup(
    name: *const u8,
    name_len: usize,
    handle: *mut u64,
) -> i32 {
    // SAFETY: kernel API contract.
    let Some(name) = (unsafe { str_arg(name, name_len, services::MAX_NAME) }) else {
        return neg(errno::EINVAL);
    };
    if handle.is_null() {
        return neg(errno::EINVAL);
    }
    match services::lookup(name) {
        Ok(h) => {
            // SAFETY: kernel API contract: `handle` is writable.
            unsafe { handle.write(h) };
            0
        }
        Err(status) => status,
    }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn kmod_service_call(
    handle: u64,
    op: u32,
    req: *const u8,
    req_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    // SAFETY: the kernel API contract is the same as services::call's.
    unsafe { services::call(handle, op, req, req_len, reply, reply_cap, reply_len) }
}

/// The runtime's kernel API, checked against the list at compile time. Kept (`used`) so that
/// every function stays in the binary under its name, where the manager finds it.
#[used]
static KERNEL_API: [KernelApiEntry; kmod_api::KERNEL_API_SYMBOLS.len()] =
    kmod_api::kernel_api_table!();
