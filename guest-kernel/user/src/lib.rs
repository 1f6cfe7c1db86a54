//! The runtime of kmodlab's guest user programs: entry, system calls, output, heap, panics.
//!
//! A program defines `#[unsafe(no_mangle)] extern "C" fn user_main(a, b, c) -> u64`; the
//! kernel starts it with `a, b, c` in `rdi, rsi, rdx`, and its return value is its exit
//! status. Programs reach the kernel only through the system calls wrapped here.
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::arch::{asm, global_asm};

use guest_rt::nr;
use linked_list_allocator::LockedHeap;

global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    and rsp, -16
    xor ebp, ebp
    call {start}
    ud2
    "#,
    start = sym start,
);

unsafe extern "C" {
    /// The program's main function.
    fn user_main(a: u64, b: u64, c: u64) -> u64;
}

extern "C" fn start(a: u64, b: u64, c: u64) -> ! {
    // SAFETY: every program defines `user_main` with this signature (see the crate docs).
    let status = unsafe { user_main(a, b, c) };
    exit(status)
}

/// Asks for more heap memory right above the heap's top: given the bytes wanted, returns
/// the `(start, len)` of memory now mapped there, or `None`.
pub type GrowHeap = fn(usize) -> Option<(usize, usize)>;

/// The program's heap: a linked-list allocator, and optionally a way to grow it (the module
/// server runtime's heap grows by asking the module manager to map pages).
struct Heap {
    inner: LockedHeap,
    grow: spin::Once<GrowHeap>,
}

// SAFETY: allocation and deallocation go to the linked-list heap under its lock, which
// hands out each block once; growing only ever adds memory the grow hook mapped right above
// the heap's top, and the lock is not held while the hook runs (it makes system calls).
unsafe impl core::alloc::GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        loop {
            if let Ok(p) = self.inner.lock().allocate_first_fit(layout) {
                return p.as_ptr();
            }
            let Some(grow) = self.grow.get() else {
                return core::ptr::null_mut();
            };
            // Room for the block, its alignment and the allocator's bookkeeping.
            let want = layout
                .size()
                .saturating_add(layout.align())
                .saturating_add(64);
            let Some((start, len)) = grow(want) else {
                return core::ptr::null_mut();
            };
            let mut heap = self.inner.lock();
            if start != heap.top() as usize || len == 0 {
                return core::ptr::null_mut();
            }
            // SAFETY: the hook mapped `len` writable bytes at the heap's top, for the heap
            // alone (its contract); nothing else uses them.
            unsafe { heap.extend(len) };
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        if let Some(p) = core::ptr::NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` above with this layout (GlobalAlloc's
            // contract), so it is a block of this heap.
            unsafe { self.inner.lock().deallocate(p, layout) }
        }
    }
}

#[global_allocator]
static HEAP: Heap = Heap {
    inner: LockedHeap::empty(),
    grow: spin::Once::new(),
};

/// The public key the build signed the modules with (a DER SubjectPublicKeyInfo; empty for a
/// build without one, see `build.rs`): what a user-space module loader (the microkernel's
/// module manager) verifies modules with, through `kmod_sig::TrustedKey::from_spki_der` and
/// `kmod_sig::check`, as the monolithic kernel does.
pub static MODULE_SIGNING_KEY: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/module_signing_key.der"));

/// Gives the heap its memory: a program that allocates calls this first with a static
/// array of its own (programs that do not allocate keep their image small).
pub fn init_heap(arena: &'static mut [u8]) {
    // SAFETY: the arena is a `'static mut` borrow handed over for good: nothing else uses it.
    unsafe { HEAP.inner.lock().init(arena.as_mut_ptr(), arena.len()) };
}

/// Gives the heap memory mapped for it at `start` (`len` bytes), and a hook that maps more
/// right above it when it runs out: the module server runtime's heap.
///
/// # Safety
/// `start..start + len` must be mapped writable and used by nothing but the heap for the
/// program's life, and `grow` must only return memory that is (see [`GrowHeap`]).
pub unsafe fn init_growing_heap(start: *mut u8, len: usize, grow: GrowHeap) {
    // SAFETY: per this function's contract.
    unsafe { HEAP.inner.lock().init(start, len) };
    HEAP.grow.call_once(|| grow);
}

/// Bytes of the heap in use, and its size.
pub fn heap_usage() -> (usize, usize) {
    let heap = HEAP.inner.lock();
    (heap.used(), heap.size())
}

pub mod ipc;

/// A system call with up to six arguments; returns `rax` (a value, or a negated errno).
pub fn syscall6(n: u64, a: [u64; 6]) -> u64 {
    let ret;
    // SAFETY: `syscall` enters the kernel, which preserves every register but rcx and r11
    // (and returns in rax); the arguments are plain values the kernel checks itself.
    unsafe {
        asm!("syscall", inlateout("rax") n => ret, in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
             in("r10") a[3], in("r8") a[4], in("r9") a[5], out("rcx") _, out("r11") _,
             options(nostack));
    }
    ret
}

/// A system call with up to four arguments; returns `rax` (a value, or a negated errno).
pub fn syscall4(n: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret;
    // SAFETY: `syscall` enters the kernel, which preserves every register but rcx and r11
    // (and returns in rax); the arguments are plain values the kernel checks itself.
    unsafe {
        asm!("syscall", inlateout("rax") n => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2,
             in("r10") a3, out("rcx") _, out("r11") _, options(nostack));
    }
    ret
}

/// A system call's result: `Ok(value)` or `Err(errno)`.
pub fn check(ret: u64) -> Result<u64, u64> {
    let signed = ret as i64;
    if (-4095..0).contains(&signed) {
        Err(signed.unsigned_abs())
    } else {
        Ok(ret)
    }
}

/// Ends the program.
pub fn exit(status: u64) -> ! {
    syscall4(nr::EXIT, status, 0, 0, 0);
    // The kernel never returns from exit; if it did, fault so that it notices.
    // SAFETY: ud2 only raises #UD.
    unsafe { asm!("ud2", options(noreturn)) }
}

/// Hands one value to the kernel code that started the program.
pub fn report(value: u64) {
    syscall4(nr::REPORT, value, 0, 0, 0);
}

/// Writes bytes to the console.
pub fn write(bytes: &[u8]) -> u64 {
    syscall4(nr::WRITE, bytes.as_ptr() as u64, bytes.len() as u64, 0, 0)
}

/// Reads something the kernel sizes for us (a file, a proc text, the last error): asks
/// with an empty buffer, then with one of the size it said.
fn read_sized(n: u64, name: &str) -> Result<Vec<u8>, u64> {
    let size = check(syscall4(n, name.as_ptr() as u64, name.len() as u64, 0, 0))?;
    let mut buf = alloc::vec![0u8; size as usize];
    let got = check(syscall4(
        n,
        name.as_ptr() as u64,
        name.len() as u64,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
    ))?;
    buf.truncate(got as usize);
    Ok(buf)
}

/// A file of the module archive.
pub fn read_file(path: &str) -> Result<Vec<u8>, u64> {
    read_sized(nr::READ_FILE, path)
}

/// A kernel-generated text (`modules`, `modules-verbose`, `kmsg`, `files`).
pub fn read_proc(name: &str) -> Result<String, u64> {
    read_sized(nr::READ_PROC, name).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The kernel's explanation of this program's last failed module operation.
pub fn last_error() -> String {
    let size = check(syscall4(nr::LAST_ERROR, 0, 0, 0, 0)).unwrap_or(0);
    let mut buf = alloc::vec![0u8; size as usize];
    let n = check(syscall4(
        nr::LAST_ERROR,
        buf.as_mut_ptr() as u64,
        size,
        0,
        0,
    ))
    .unwrap_or(0);
    buf.truncate(n as usize);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads input (a script line, or what the user typed) into `buf`: at most one line, the
/// rest of a longer line staying queued; 0 at the end of input. See
/// [`kmodlab_abi::input::LineReader`] for reading whole lines.
pub fn read_input(buf: &mut [u8]) -> Result<usize, u64> {
    check(syscall4(
        nr::READ_INPUT,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
    ))
    .map(|n| (n as usize).min(buf.len()))
}

/// `init_module`: loads a module from `image` with `params`.
pub fn init_module(image: &[u8], params: &str) -> Result<(), u64> {
    check(syscall4(
        nr::INIT_MODULE,
        image.as_ptr() as u64,
        image.len() as u64,
        params.as_ptr() as u64,
        params.len() as u64,
    ))
    .map(|_| ())
}

/// `delete_module`: unloads module `name`.
pub fn delete_module(name: &str) -> Result<(), u64> {
    check(syscall4(
        nr::DELETE_MODULE,
        name.as_ptr() as u64,
        name.len() as u64,
        0,
        0,
    ))
    .map(|_| ())
}

/// Gives up capabilities `mask` for good.
pub fn cap_drop(mask: u64) {
    syscall4(nr::CAP_DROP, mask, 0, 0, 0);
}

/// Console output for `print!`/`println!`.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}

/// Prints to the console (one system call per formatted piece; use `format!` first for one
/// call per line).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let s = alloc::format!($($arg)*);
        $crate::write(s.as_bytes());
    }};
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::write(b"\n") };
    ($($arg:tt)*) => {{
        let mut s = alloc::format!($($arg)*);
        s.push('\n');
        $crate::write(s.as_bytes());
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let _ = writeln!(Console, "user program panic: {}", info.message());
    exit(101)
}
