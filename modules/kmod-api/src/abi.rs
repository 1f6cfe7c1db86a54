//! Types shared by modules and the kernel across the `extern "C"` boundary: error numbers
//! (defined in [`crate::errno`]), the service handler type, the export table entry and
//! parameter storage (ABI.md).

use core::cell::UnsafeCell;
use core::ffi::c_void;

pub use crate::errno::Errno;

/// A service's request handler, called by the kernel for [`kmod_service_call`](crate::raw).
///
/// `ctx` is the pointer given at registration; `req[..req_len]` is the request (may be null
/// when `req_len` is 0); the handler writes at most `reply_cap` bytes to `reply`, stores the
/// reply length in `*reply_len` and returns 0, or returns `-errno` (then the reply is
/// ignored). The same signature serves a direct call (monolithic kernel) and an IPC server
/// loop (microkernel): the request and reply are plain bytes.
pub type ServiceHandler = unsafe extern "C" fn(
    ctx: *mut c_void,
    op: u32,
    req: *const u8,
    req_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32;

/// One export table entry in section `__ksymtab` (ABI.md, "Exports"). The loader finds
/// exports by the *symbol name* `__ksymtab_X`; this layout is what kmodlab modules write.
#[repr(C)]
pub struct KernelSymbol {
    /// Address of the exported symbol (an R_X86_64_64 relocation against it).
    pub value: *const (),
    /// Address of its NUL-terminated name in `__ksymtab_strings`.
    pub name: *const u8,
}

// SAFETY: the entry is immutable data (two addresses); sharing it between threads cannot
// race.
unsafe impl Sync for KernelSymbol {}

/// Storage of an `int` parameter: an `i64` in `.data` (ABI.md, "Parameters").
#[repr(transparent)]
pub struct IntParam(UnsafeCell<i64>);

/// Storage of a `bool` parameter: a `u8`, 0 or 1, in `.data`.
#[repr(transparent)]
pub struct BoolParam(UnsafeCell<u8>);

/// Storage of a `charp` (string) parameter: `{ ptr: u64, len: u64 }` in `.data`; the kernel
/// points it at a copy of the value that it keeps for the module's lifetime.
#[repr(C)]
pub struct CharpParam {
    ptr: UnsafeCell<*const u8>,
    len: UnsafeCell<u64>,
}

// SAFETY: per ABI.md the kernel writes parameter storage only between loading and calling
// init, when no code of the module runs; module code never writes it. After that the storage
// is only read, so shared access from any thread cannot race.
unsafe impl Sync for IntParam {}
// SAFETY: as for IntParam above.
unsafe impl Sync for BoolParam {}
// SAFETY: as for IntParam above; the pointed-to bytes are immutable for the module's life.
unsafe impl Sync for CharpParam {}

impl IntParam {
    /// Storage holding `default`.
    pub const fn new(default: i64) -> IntParam {
        IntParam(UnsafeCell::new(default))
    }

    /// The value (the default unless the kernel was given `NAME=VALUE`).
    pub fn get(&self) -> i64 {
        // SAFETY: the cell is valid and aligned for its whole life; no write can race with
        // this read (see the Sync impl). Volatile: the compiler must not fold the default.
        unsafe { self.0.get().read_volatile() }
    }
}

impl BoolParam {
    /// Storage holding `default`.
    pub const fn new(default: bool) -> BoolParam {
        BoolParam(UnsafeCell::new(default as u8))
    }

    /// The value; any non-zero byte counts as true.
    pub fn get(&self) -> bool {
        // SAFETY: as in IntParam::get.
        unsafe { self.0.get().read_volatile() != 0 }
    }
}

impl CharpParam {
    /// Storage pointing at `default`.
    pub const fn new(default: &'static str) -> CharpParam {
        CharpParam {
            ptr: UnsafeCell::new(default.as_ptr()),
            len: UnsafeCell::new(default.len() as u64),
        }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> &'static [u8] {
        // SAFETY: as in IntParam::get, for both fields.
        let (ptr, len) = unsafe {
            (
                self.ptr.get().read_volatile(),
                self.len.get().read_volatile(),
            )
        };
        let Ok(len) = usize::try_from(len) else {
            return &[];
        };
        if ptr.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: the pointer is either the default (a `&'static str`) or the kernel's copy,
        // which ABI.md requires to hold `len` bytes and to live as long as the module.
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }

    /// The value as text; a value that is not UTF-8 is cut at its first invalid byte.
    pub fn get(&self) -> &'static str {
        let bytes = self.bytes();
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    }
}

/// `NUL`-terminated copy of `s` as an array, for `.modinfo` and `__ksymtab_strings` statics
/// (whose type must be an array of a length known at compile time).
#[doc(hidden)]
pub const fn cstr_array<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    assert!(bytes.len() + 1 == N, "cstr_array: wrong length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i] != 0, "cstr_array: string contains NUL");
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Total size of `parts` as NUL-terminated strings (the `.modinfo` of one module).
#[doc(hidden)]
pub const fn modinfo_len(parts: &[&[&str]]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            len += parts[i][j].len() + 1;
            j += 1;
        }
        i += 1;
    }
    len
}

/// `parts` as consecutive NUL-terminated strings; `N` must be [`modinfo_len`] of them.
#[doc(hidden)]
pub const fn modinfo_bytes<const N: usize>(parts: &[&[&str]]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            let bytes = parts[i][j].as_bytes();
            let mut k = 0;
            while k < bytes.len() {
                assert!(bytes[k] != 0, "modinfo string contains NUL");
                out[at] = bytes[k];
                at += 1;
                k += 1;
            }
            at += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(at == N, "modinfo_bytes: wrong length");
    out
}
