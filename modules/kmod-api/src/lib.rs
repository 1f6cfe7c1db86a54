//! The kmodlab module authoring API, like Rust-for-Linux's `kernel` crate.
//!
//! A module is a `no_std` staticlib crate that invokes [`module!`] once; the build pipeline
//! (`crates/kmodlab-build`) turns it into a `.ko` (an ELF relocatable object, see
//! `modules/ABI.md`). This crate gives it:
//!
//! - [`module!`]: init/exit entry points, `.modinfo`, typed parameters;
//! - [`export!`]: functions for other modules (`__ksymtab_X`) and their call signatures
//!   (`.kmod_exportsig`, see [`sig`]);
//! - the kernel API ([`for_each_kernel_api!`], raw declarations in [`raw`]) and safe
//!   wrappers: [`println!`], [`mem::KBuffer`], [`service`], [`cycles`], [`request_module`];
//! - [`sync::SpinLock`] for module-global state;
//! - [`errno`]: the one table of Linux error numbers, names and `strerror` texts that the
//!   kernel, user programs, modules, the C header and the host tests share.
//!
//! It also builds on the host, where it provides [`KERNEL_API_SYMBOLS`] and [`KERNEL_API`]
//! to host tools (depmod's default kernel symbol list, the C header check).
//!
//! ```ignore
//! #![no_std]
//! use kmod_api::{Errno, println};
//!
//! kmod_api::module! {
//!     name: "hello",
//!     license: "GPL",
//!     init: init,
//!     exit: exit,
//! }
//!
//! fn init() -> Result<(), Errno> {
//!     println!("Hello, world");
//!     Ok(())
//! }
//!
//! fn exit() {
//!     println!("Goodbye");
//! }
//! ```
#![no_std]

pub mod abi;
mod api;
pub mod errno;
mod macros;
pub mod mem;
pub mod print;
pub mod service;
pub mod sig;
pub mod sync;

pub use abi::Errno;
pub use api::{ApiFunction, KERNEL_API, KERNEL_API_SYMBOLS, KernelApiEntry, raw};

/// The CPU cycle counter (`kmod_cycles`).
pub fn cycles() -> u64 {
    // SAFETY: kmod_cycles takes no arguments and has no preconditions.
    unsafe { raw::kmod_cycles() }
}

/// Loads module `name` and its dependencies unless already live (`kmod_request_module`).
pub fn request_module(name: &str) -> Result<(), Errno> {
    // SAFETY: name is valid for its length during the call.
    let ret = unsafe { raw::kmod_request_module(name.as_ptr(), name.len()) };
    Errno::check(ret).map(drop)
}
