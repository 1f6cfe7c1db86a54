//! The kernel API (`modules/kmod-api`, `for_each_kernel_api!`) as the monolithic kernel
//! implements it: every function is called directly by module code running in supervisor
//! mode. `kmod_api::kernel_api_table!` checks that each function exists with the listed
//! signature and builds the kernel's export table.
//!
//! Module code is trusted in this configuration (it runs in the kernel), but its arguments
//! are still checked where a mistake would corrupt the kernel rather than the module: sizes,
//! alignments, name lengths, null pointers.

use alloc::collections::BTreeMap;
use core::alloc::Layout;
use core::ffi::c_void;

use guest_rt::errno;
use kmod_api::KernelApiEntry;
use kmod_api::abi::ServiceHandler;
use kmod_loader::ExportTable;
use spin::Mutex;

use super::{KERNEL, current, provider, services};

/// Longest single `kmod_print` (longer messages are cut).
const MAX_PRINT: usize = 4096;
/// Largest `kmod_alloc`.
const MAX_ALLOC: usize = 64 << 20;

/// Outstanding `kmod_alloc` blocks: address → (size, align, owning module).
static ALLOCATIONS: Mutex<BTreeMap<usize, (usize, usize, u64)>> = Mutex::new(BTreeMap::new());

/// Reads `(ptr, len)` as a string, or `None` if it is null, too long or not UTF-8.
///
/// # Safety
/// `ptr` must be readable for `len` bytes when not null.
unsafe fn str_arg<'a>(ptr: *const u8, len: usize, max: usize) -> Option<&'a str> {
    if ptr.is_null() || len > max {
        return None;
    }
    // SAFETY: the caller guarantees the bytes are readable; they outlive this call.
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(ptr, len) }).ok()
}

unsafe extern "C" fn kmod_print(msg: *const u8, len: usize) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the kernel API contract: `msg` is readable for `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(msg, len.min(MAX_PRINT)) };
    kprint!("{}", alloc::string::String::from_utf8_lossy(bytes));
}

unsafe extern "C" fn kmod_alloc(size: usize, align: usize) -> *mut u8 {
    if size == 0 || size > MAX_ALLOC || !align.is_power_of_two() || align > 4096 {
        return core::ptr::null_mut();
    }
    let Ok(layout) = Layout::from_size_align(size, align) else {
        return core::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if !p.is_null() {
        ALLOCATIONS
            .lock()
            .insert(p as usize, (size, align, current()));
    }
    p
}

unsafe extern "C" fn kmod_free(ptr: *mut u8, size: usize, align: usize) {
    if ptr.is_null() {
        return;
    }
    let entry = ALLOCATIONS.lock().remove(&(ptr as usize));
    match entry {
        Some((s, a, _)) if s == size && a == align => {
            // SAFETY: the block came from kmod_alloc with exactly this layout and is freed once
            // (it was just removed from the table).
            unsafe { alloc::alloc::dealloc(ptr, Layout::from_size_align_unchecked(s, a)) }
        }
        Some((s, a, owner)) => {
            // Freeing with the wrong layout would corrupt the heap: keep the block and say so.
            ALLOCATIONS.lock().insert(ptr as usize, (s, a, owner));
            kprintln!(
                "kmod_free: {ptr:p} freed as {size}/{align} but allocated as {s}/{a}; not freed"
            );
        }
        None => kprintln!("kmod_free: {ptr:p} was not allocated by kmod_alloc; ignored"),
    }
}

unsafe extern "C" fn kmod_cycles() -> u64 {
    guest_rt::rdtsc_ordered()
}

unsafe extern "C" fn kmod_request_module(name: *const u8, name_len: usize) -> i32 {
    // SAFETY: kernel API contract.
    let Some(name) = (unsafe { str_arg(name, name_len, 64) }) else {
        return -(errno::EINVAL as i32);
    };
    match super::request_module(name) {
        Ok(()) => 0,
        Err(e) => {
            kprintln!("request_module {name}: {e}");
            -(e.errno() as i32)
        }
    }
}

unsafe extern "C" fn kmod_service_register(
    name: *const u8,
    name_len: usize,
    handler: ServiceHandler,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: kernel API contract.
    match unsafe { str_arg(name, name_len, services::MAX_NAME) } {
        Some(name) => services::register(name, handler, ctx, current()),
        None => -(errno::EINVAL as i32),
    }
}

unsafe extern "C" fn kmod_service_unregister(name: *const u8, name_len: usize) -> i32 {
    // SAFETY: kernel API contract.
    match unsafe { str_arg(name, name_len, services::MAX_NAME) } {
        Some(name) => services::unregister(name, current()),
        None => -(errno::EINVAL as i32),
    }
}

unsafe extern "C" fn kmod_service_lookup(
    name: *const u8,
    name_len: usize,
    handle: *mut u64,
) -> i32 {
    // SAFETY: kernel API contract.
    let Some(name) = (unsafe { str_arg(name, name_len, services::MAX_NAME) }) else {
        return -(errno::EINVAL as i32);
    };
    if handle.is_null() {
        return -(errno::EINVAL as i32);
    }
    match services::lookup(name) {
        Some(h) => {
            // SAFETY: kernel API contract: `handle` is writable.
            unsafe { handle.write(h) };
            0
        }
        None => -(errno::ENOENT as i32),
    }
}

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

/// The kernel's export table entries, checked against the kernel API list at compile time.
static KERNEL_API: [KernelApiEntry; kmod_api::KERNEL_API_SYMBOLS.len()] =
    kmod_api::kernel_api_table!();

/// The export table modules resolve against, holding the kernel API.
pub fn kernel_exports() -> ExportTable {
    let mut table = ExportTable::with_capacity(KERNEL_API.len());
    for e in &KERNEL_API {
        table
            .insert(e.name, e.addr as u64, provider(KERNEL))
            .expect("kernel API names are distinct");
    }
    table
}

/// Bytes of `kmod_alloc` blocks module `id` holds now.
pub fn bytes_owned_by(id: u64) -> u64 {
    ALLOCATIONS
        .lock()
        .values()
        .filter(|v| v.2 == id)
        .map(|v| v.0 as u64)
        .sum()
}

/// Frees what module `id` still holds of `kmod_alloc` (reported, since it is a module
/// bug). Runs in `free_module`, after the module's exit, which may still use its memory.
pub fn reclaim_allocations(id: u64, name: &str) {
    let leaked: alloc::vec::Vec<(usize, (usize, usize, u64))> = {
        let mut a = ALLOCATIONS.lock();
        let keys: alloc::vec::Vec<usize> = a
            .iter()
            .filter(|(_, v)| v.2 == id)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| a.remove(&k).map(|v| (k, v)))
            .collect()
    };
    if !leaked.is_empty() {
        let bytes: usize = leaked.iter().map(|(_, (s, _, _))| *s).sum();
        kprintln!(
            "module {name}: reclaiming {} block(s), {bytes} bytes it did not free",
            leaked.len()
        );
    }
    for (p, (s, a, _)) in leaked {
        // SAFETY: each block came from kmod_alloc with this layout and was removed from the
        // table above, so it is freed exactly once; its owner is going and will not use it.
        unsafe { alloc::alloc::dealloc(p as *mut u8, Layout::from_size_align_unchecked(s, a)) };
    }
}
