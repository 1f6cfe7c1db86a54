//! Host-side module tools, for kmodlab modules and real Linux `.ko` files alike:
//!
//! - [`modinfo`]: `.modinfo` printed like Linux's modinfo;
//! - [`depmod`]: dependencies from undefined symbols vs. `__ksymtab_X` exports, written as
//!   Linux's `modules.dep`, with cycle and missing-symbol reports;
//! - [`objstat`]: sections, load regions, symbols and relocation counts;
//! - [`sign`]: signing modules as Linux's `sign-file` does (see `kmod-sig`);
//! - [`cheader`]: the C header's kernel API block, generated from `kmod-api`.
//!
//! [`cli`] holds the `kmodlab modinfo|depmod|objstat|sign` entry points. Every malformed
//! input is a typed [`ToolError`] naming the file, never a panic, a hang or memory out of
//! proportion to the file: [`input`] refuses non-regular files before reading, caps every
//! read and every decompression at [`input::MAX_MODULE_SIZE`] (Linux's own limit), and
//! verifies xz and zstd checksums; `modinfo` reads no symbols and symbol and section names
//! are borrowed, not copied per symbol. The fuzz targets in `fuzz/` (cargo-fuzz) and their
//! replayed corpus (`tests/fuzz_corpus.rs`) check that.

pub mod cheader;
pub mod depmod;
mod error;
pub mod input;
pub mod ko;
pub mod modinfo;
pub mod objstat;
pub mod sign;

pub mod cli;

pub use error::{Result, ToolError};
pub use ko::ModuleFile;
