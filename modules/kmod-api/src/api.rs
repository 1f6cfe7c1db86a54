//! The kernel API: the one list of `extern "C"` functions a module may call.
//!
//! Both kernel configurations implement exactly this list, the C header
//! (`modules/include/kmod.h`) mirrors it (a host test checks), and depmod treats these names
//! as provided by the kernel. Conventions for every function:
//!
//! - strings are `(ptr, len)` pairs of bytes, not NUL-terminated;
//! - a status is an `i32`: `0` (or a non-negative result) is success, `-errno` a failure;
//! - pointers passed in must be valid for the lengths given, for the duration of the call.

/// Invokes `$m!` with the whole kernel API, once, as a list of items of the form
///
/// ```text
/// $(#[doc = "..."])* fn NAME(ARG: TYPE, ...) $(-> RET)?;
/// ```
///
/// Types are spelled so that they resolve anywhere (`*const u8`, `usize`,
/// `$crate::abi::ServiceHandler`, `*mut ::core::ffi::c_void`). Users:
///
/// - this crate declares the `extern "C"` functions ([`raw`](crate::raw)) and
///   [`KERNEL_API_SYMBOLS`](crate::KERNEL_API_SYMBOLS);
/// - the guest kernel builds its export table and checks its implementations' signatures
///   (see [`kernel_api_table!`](crate::kernel_api_table));
/// - host code gets the names and signatures ([`KERNEL_API`](crate::KERNEL_API)).
///
/// ```
/// macro_rules! count {
///     ($($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
///         [$(stringify!($name)),*].len()
///     };
/// }
/// assert_eq!(kmod_api::for_each_kernel_api!(count), kmod_api::KERNEL_API_SYMBOLS.len());
/// ```
#[macro_export]
macro_rules! for_each_kernel_api {
    ($($m:tt)+) => {
        $($m)+! {
            /// Console: appends `msg[..len]` to the kernel log. `println!` sends one whole line
            /// (ending in `\n`) per call, so lines of concurrent modules don't interleave.
            fn kmod_print(msg: *const u8, len: usize);

            /// Memory: allocates `size` bytes aligned to `align` (a power of two, at most
            /// 4096), zero-filled; returns null when out of memory or on a bad `align`/`size`
            /// (`size` 0 is bad). The memory belongs to the calling module until freed.
            fn kmod_alloc(size: usize, align: usize) -> *mut u8;

            /// Memory: frees a block from `kmod_alloc`, given the same `size` and `align`.
            /// Null is ignored.
            fn kmod_free(ptr: *mut u8, size: usize, align: usize);

            /// Time: the CPU's cycle counter (`rdtsc`), for measurements inside modules.
            fn kmod_cycles() -> u64;

            /// Modules: loads module `name[..name_len]` (and what it depends on, from
            /// `modules.dep`) unless it is loaded already, like Linux's `request_module`.
            /// 0 when it is (now) live, else `-errno` (`-ENOENT`: no such module).
            fn kmod_request_module(name: *const u8, name_len: usize) -> i32;

            /// Services: registers `handler` (called with `ctx`) under `name[..name_len]`.
            /// `-EEXIST` if the name is taken, `-EINVAL` for an empty name or one longer than
            /// 64 bytes. The kernel drops a module's services when the module is unloaded.
            fn kmod_service_register(
                name: *const u8,
                name_len: usize,
                handler: $crate::abi::ServiceHandler,
                ctx: *mut ::core::ffi::c_void
            ) -> i32;

            /// Services: removes the caller's service `name[..name_len]`; `-ENOENT` if it
            /// has none of that name. Handles to it then fail with `-ENOENT`.
            fn kmod_service_unregister(name: *const u8, name_len: usize) -> i32;

            /// Services: finds service `name[..name_len]` and stores a handle in `*handle`.
            /// `-ENOENT` if no such service is registered.
            fn kmod_service_lookup(name: *const u8, name_len: usize, handle: *mut u64) -> i32;

            /// Services: sends request `op` with `req[..req_len]` to the service behind
            /// `handle`; its reply (at most `reply_cap` bytes) lands in `reply`, its length in
            /// `*reply_len`. Returns the handler's status, or `-ENOENT` for a stale or bad
            /// handle, `-EMSGSIZE` if the handler claimed a longer reply than `reply_cap`.
            /// In the monolithic kernel a direct call; in the microkernel an IPC round trip.
            fn kmod_service_call(
                handle: u64,
                op: u32,
                req: *const u8,
                req_len: usize,
                reply: *mut u8,
                reply_cap: usize,
                reply_len: *mut usize
            ) -> i32;
        }
    };
}

/// One kernel API function as text, for host tools and the C header check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiFunction {
    /// Symbol name.
    pub name: &'static str,
    /// `(name, Rust type)` of each argument, types as written in the list.
    pub args: &'static [(&'static str, &'static str)],
    /// Rust return type, `""` for none.
    pub ret: &'static str,
    /// Its documentation (the doc comment lines, each ending in `\n`).
    pub doc: &'static str,
}

macro_rules! api_tables {
    ($($(#[doc = $doc:literal])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        /// Every kernel API symbol name, in list order.
        pub const KERNEL_API_SYMBOLS: &[&str] = &[$(stringify!($name)),*];

        /// Every kernel API function with its signature as text, in list order.
        pub const KERNEL_API: &[ApiFunction] = &[$(
            ApiFunction {
                name: stringify!($name),
                args: &[$((stringify!($arg), stringify!($ty))),*],
                ret: concat!("" $(, stringify!($ret))?),
                doc: concat!($($doc, "\n"),*),
            }
        ),*];
    };
}
crate::for_each_kernel_api!(api_tables);

/// The raw `extern "C"` declarations of the kernel API (see [`for_each_kernel_api!`] for
/// each function's contract). Prefer the safe wrappers of this crate.
pub mod raw {
    macro_rules! declare_externs {
        ($($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
            unsafe extern "C" {
                $(
                    $(#[$meta])*
                    pub fn $name($($arg: $ty),*) $(-> $ret)?;
                )*
            }
        };
    }
    crate::for_each_kernel_api!(declare_externs);
}

/// One entry of the kernel's export table built by [`kernel_api_table!`].
#[derive(Debug, Clone, Copy)]
pub struct KernelApiEntry {
    /// Symbol name.
    pub name: &'static str,
    /// Address of the kernel's implementation.
    pub addr: *const (),
}

// SAFETY: an entry is an immutable name and code address; sharing it cannot race.
unsafe impl Sync for KernelApiEntry {}

/// For the guest kernel: expands to an array expression of [`KernelApiEntry`], one per
/// kernel API function in list order, taking each function by its name **from the scope of
/// the invocation**, and failing to compile if one is missing or has the wrong signature.
///
/// ```ignore
/// mod kapi {
///     pub extern "C" fn kmod_print(msg: *const u8, len: usize) { /* ... */ }
///     // ... every other function of the list ...
///     pub static TABLE: [kmod_api::KernelApiEntry; kmod_api::KERNEL_API_SYMBOLS.len()] =
///         kmod_api::kernel_api_table!();
/// }
/// ```
#[macro_export]
macro_rules! kernel_api_table {
    () => {
        $crate::for_each_kernel_api!($crate::__kmod_api_table_entries)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_api_table_entries {
    ($($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        [$(
            $crate::KernelApiEntry {
                name: stringify!($name),
                addr: {
                    let f: unsafe extern "C" fn($($ty),*) $(-> $ret)? = $name;
                    f as *const ()
                },
            }
        ),*]
    };
}
