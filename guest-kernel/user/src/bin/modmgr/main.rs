//! `modmgr`, the module manager of the microkernel configuration: the module subsystem the
//! monolithic kernel has inside itself, as a user-space server.
//!
//! The kernel starts it at boot with the factory capability (it alone may create tasks) and
//! forwards every module operation to it as a call (`kmodlab_ipc::mgr`): `init_module` and
//! the control channel's loads, `delete_module`, `/proc/modules`, service lookups. For each
//! module it builds a **module server**: a task with its own address space holding the server
//! runtime (`sbin/kmodrt`), the module (validated, laid out, resolved, copied and relocated
//! here with `kmod-loader`, at CPL 3), call stubs, a heap and a stack; it starts the server,
//! whose runtime runs the module's `init_module` and reports back.
//!
//! **The manager never waits for a server.** It only receives, answers and notifies: a load
//! is answered when the server reports its init finished (the caller's reply token is kept
//! meanwhile), an unload asks the server with a notification and is answered when the server
//! reports its exit ran, a fault arrives as a notification from the kernel. So a server may
//! call the manager back at any time — `request_module` or a service registration from its
//! init — without a deadlock. The logic that needs no system call is `kmod_manager`'s
//! (host-tested); this program adds the calls.
#![no_std]
#![no_main]

extern crate alloc;

mod faults;
mod load;
mod manager;

use kmodlab_ipc::cap::OWN_ENDPOINT;
use kmodlab_user::ipc;

/// The heap: module images and their regions are built here before they are copied into
/// their servers (the largest module, `big`, is a 4 MiB file with a 1.6 MiB core region). It
/// lives at `HEAP_BASE` and grows on demand, a page group at a time, by mapping zeroed pages
/// into the manager itself (`task_map` of `CAP_SELF`, which the factory's holder may make):
/// a 32 MiB array in `.bss` made the kernel map and zero 8,192 pages before the manager ran,
/// most of the microkernel's boot time on a shadow-paging host.
mod heap {
    use core::sync::atomic::{AtomicU64, Ordering};

    use kmodlab_ipc::layout::{HEAP_BASE, HEAP_END, PAGE_SIZE};
    use kmodlab_ipc::task::Perm;
    use kmodlab_user::ipc;

    /// The fewest pages the heap grows by (256 KiB): fewer system calls for the many
    /// small allocations of a load, little memory beyond what a load needs.
    const GROW_PAGES: u64 = 64;

    /// The end of what is mapped so far; only the allocator's grow hook moves it, one call at
    /// a time (the manager has one thread).
    static TOP: AtomicU64 = AtomicU64::new(HEAP_BASE);

    /// Maps at least `bytes` more at the heap's top; `(start, len)` of what was mapped.
    fn grow(bytes: usize) -> Option<(usize, usize)> {
        let pages = u64::try_from(bytes)
            .ok()?
            .div_ceil(PAGE_SIZE)
            .max(GROW_PAGES);
        let start = TOP.load(Ordering::Relaxed);
        let len = pages.checked_mul(PAGE_SIZE)?;
        let end = start.checked_add(len).filter(|&end| end <= HEAP_END)?;
        ipc::task_map(ipc::CAP_SELF, start, pages, Perm::ReadWrite).ok()?;
        TOP.store(end, Ordering::Relaxed);
        Some((usize::try_from(start).ok()?, usize::try_from(len).ok()?))
    }

    /// Maps the heap's first page group and hands it to the allocator; `false` if the kernel
    /// refused it.
    pub fn init() -> bool {
        let Some((start, len)) = grow(0) else {
            return false;
        };
        // SAFETY: `grow` just mapped `start..start + len` writable in this task, in the heap
        // range nothing else of the manager uses, and `grow` maps only above what it mapped
        // before, so every range it returns is likewise the heap's alone.
        unsafe { kmodlab_user::init_growing_heap(start as *mut u8, len, grow) };
        true
    }
}

/// Appends to the kernel log (what `dmesg` shows), as the monolithic kernel's module
/// subsystem prints with `kprintln!`.
pub fn log(text: &str) {
    let _ = ipc::log(text.as_bytes());
}

/// Entry: `flags` (`kmodlab_ipc::mgr::flags`) and the TSC frequency in kHz.
#[unsafe(no_mangle)]
pub extern "C" fn user_main(flags: u64, tsc_khz: u64, _: u64) -> u64 {
    if !heap::init() {
        log("modmgr: cannot start: the kernel refused to map the heap\n");
        return 1;
    }
    let mut m = match manager::Manager::new(flags, tsc_khz) {
        Ok(m) => m,
        Err(e) => {
            log(&alloc::format!("modmgr: cannot start: {e}\n"));
            return 1;
        }
    };
    let mut buf = alloc::vec![0u8; kmodlab_ipc::msg::MAX_PAYLOAD as usize];
    let mut msg = match ipc::recv(OWN_ENDPOINT, &mut buf) {
        Ok(msg) => msg,
        Err(e) => return e,
    };
    loop {
        let len = (msg.len as usize).min(buf.len());
        let payload = buf[..len].to_vec();
        m.handle(&msg, &payload);
        // Answer everything the request completed; the last answer goes with the next
        // receive, in one system call.
        let mut outbox = core::mem::take(&mut m.outbox);
        let last = outbox.pop();
        for a in outbox {
            let _ = ipc::reply(a.token, a.status, a.words, &a.payload);
        }
        let next = match last {
            Some(a) => ipc::reply_recv(
                a.token,
                a.status,
                a.words,
                &a.payload,
                OWN_ENDPOINT,
                &mut buf,
            ),
            None => ipc::recv(OWN_ENDPOINT, &mut buf),
        };
        msg = match next {
            Ok(msg) => msg,
            Err(e) => {
                log(&alloc::format!(
                    "modmgr: receive failed (errno {e}); stopping\n"
                ));
                return e;
            }
        };
    }
}
