//! Host-side module tools, for kmodlab modules and real Linux `.ko` files alike:
//!
//! - [`modinfo`]: `.modinfo` printed like Linux's modinfo;
//! - [`depmod`]: dependencies from undefined symbols vs. `__ksymtab_X` exports, written as
//!   Linux's `modules.dep`, with cycle and missing-symbol reports;
//! - [`objstat`]: sections, load regions, symbols and relocation counts;
//! - [`sign`]: signing modules as Linux's `sign-file` does (see `kmod-sig`);
//! - [`cheader`]: the C header's kernel API block, generated from `kmod-api`.
//!
//! [`cli`] holds the `kmodlab modinfo|depmod|objstat|sign` entry points. Every malformed input
//! is a typed [`ToolError`] naming the file, never a panic.

pub mod cheader;
pub mod depmod;
mod error;
pub mod ko;
pub mod modinfo;
pub mod objstat;
pub mod sign;

pub mod cli;

pub use error::{Result, ToolError};
pub use ko::ModuleFile;
