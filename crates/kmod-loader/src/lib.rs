//! The kmodlab module loader core: turns a module file (an x86-64 ELF relocatable object, a
//! `.ko`) into relocated code and data in memory the caller supplies.
//!
//! The same crate runs in the monolithic guest kernel, in the microkernel's user-space loader
//! server, and on the host (tests, fuzzing, benchmarks). The module ABI it implements is
//! `modules/ABI.md`; Linux's own `.ko` files load too.
//!
//! # The steps
//!
//! Loading is five public steps, each a plain function that returns its result and what it
//! counted, so a benchmark can time them one by one:
//!
//! 1. [`validate()`]: check the ELF file and index it ([`Module`]).
//! 2. [`layout()`]: give each loaded section an offset in the *core* or *init* region and
//!    reserve the GOT ([`Layout`]).
//! 3. [`resolve()`]: look up undefined symbols in a [`SymbolProvider`] ([`Resolution`]).
//! 4. [`copy_sections`]: fill the caller's region memory with the sections' contents.
//! 5. [`relocate()`]: fill the GOT and apply every relocation.
//!
//! Then [`Loaded::new`] collects what the kernel keeps (symbol addresses for `init_module`,
//! `cleanup_module` and parameters, exports, `.modinfo`, placements, dependencies).
//! [`prepare`] + [`Prepared::finish`] and [`load`] chain all of it.
//!
//! ```
//! # fn demo(file: &[u8]) -> Result<(), kmod_loader::Error> {
//! use kmod_loader::{ExportTable, RegionMemory, Regions};
//! let kernel = ExportTable::new(); // the kernel's API, then loaded modules' exports
//! let prepared = kmod_loader::prepare(file, &kernel)?;
//! let mut core = vec![0u8; prepared.layout.core.size as usize];
//! let mut init = vec![0u8; prepared.layout.init.size as usize];
//! let loaded = prepared.finish(Regions {
//!     core: RegionMemory { base: 0xffff_ffff_a000_0000, bytes: &mut core },
//!     init: RegionMemory { base: 0xffff_ffff_a100_0000, bytes: &mut init },
//! })?;
//! let init_module = loaded.symbol("init_module");
//! # let _ = init_module; Ok(()) }
//! ```
//!
//! # Principles
//!
//! - **The file is hostile.** Any byte string may arrive; the answer is `Ok` or a typed
//!   [`Error`] naming what is wrong (section, symbol, offset), never a panic. There is no
//!   `unsafe`, no slice indexing and no unchecked arithmetic in the crate: reads use `get`,
//!   sums use checked operations (the lints below enforce it), 32-bit relocation results are
//!   computed exactly and refused when they do not fit.
//! - **Validate once, up front.** [`validate()`] checks every offset, size, index and
//!   relocation the later steps will use, so a refused module is refused before any memory
//!   is touched, and the later steps stay simple loops. They still write only through
//!   range-checked slices: a validation bug cannot become a wild write.
//! - **The caller owns memory and policy.** The loader never allocates region memory or
//!   picks addresses: the caller passes each region's base address and bytes. It maps pages
//!   from [`RegionLayout::ranges`] (page-aligned, one permission each, never W+X) and frees
//!   the init region after `init_module`. Where symbols come from is the caller's
//!   [`SymbolProvider`].
//! - **Follow Linux where it has a rule.** `.init*` sections go to the init region;
//!   `.modinfo` and `__versions` are read, not loaded; relocation sections whose target is
//!   not loaded are skipped; weak undefined symbols become 0; `_GLOBAL_OFFSET_TABLE_` may
//!   stay unresolved; exports are the `__ksymtab_NAME` symbols.
//! - **Count the work.** Every step returns counts (sections, symbols, relocations by type,
//!   bytes per region) so measurements can be normalised.
//! - **No hidden state.** No globals, no caches: the same inputs give the same output, which
//!   keeps the crate usable in a kernel, a server and a fuzzer alike.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

extern crate alloc;

pub mod counts;
mod error;
pub mod layout;
mod loaded;
pub mod relocate;
pub mod resolve;
pub mod validate;

pub use counts::LoadCounts;
pub use error::{Error, ErrorKind, SectionRef};
pub use layout::{Layout, PermissionRange, RegionLayout, SectionPlacement, layout};
pub use loaded::{Dependency, ExportedSymbol, Loaded, PlacedSection, SymbolLocation};
pub use relocate::{
    Patch, RegionBases, RegionMemory, Regions, RelocationInputs, RelocationKind, SymbolAddresses,
    compute, copy_sections, relocate,
};
pub use resolve::{
    ExportTable, FnProvider, ProvidedSymbol, ProviderId, Resolution, SymbolProvider, resolve,
};
pub use validate::{
    MAX_REGION_SIZE, MAX_SECTION_ALIGN, Module, PAGE_SIZE, Permission, RegionKind, validate,
};

/// A module validated, laid out and resolved: all that can be done before memory exists.
#[derive(Clone, Debug)]
pub struct Prepared<'data> {
    /// The validated module.
    pub module: Module<'data>,
    /// Its layout: the region sizes to allocate.
    pub layout: Layout,
    /// Its resolved undefined symbols.
    pub resolution: Resolution,
}

/// Validates, lays out and resolves `data`.
pub fn prepare<'data, P: SymbolProvider + ?Sized>(
    data: &'data [u8],
    provider: &P,
) -> Result<Prepared<'data>, Error> {
    let module = validate(data)?;
    let layout = layout(&module)?;
    let resolution = resolve(&module, provider)?;
    Ok(Prepared {
        module,
        layout,
        resolution,
    })
}

impl Prepared<'_> {
    /// Copies and relocates into `regions`, and collects the result.
    pub fn finish(&self, mut regions: Regions<'_>) -> Result<Loaded, Error> {
        let copy = copy_sections(&self.module, &self.layout, &mut regions)?;
        let relocate = relocate(&self.module, &self.layout, &self.resolution, &mut regions)?;
        let counts = LoadCounts {
            validate: *self.module.counts(),
            layout: *self.layout.counts(),
            resolve: *self.resolution.counts(),
            copy,
            relocate,
        };
        Ok(Loaded::new(
            &self.module,
            &self.layout,
            &self.resolution,
            regions.bases(),
            counts,
        ))
    }
}

/// All steps in one call. `allocate` receives the layout and returns the memory for both
/// regions, or `None` when it has none (then the result is [`Error::OutOfMemory`]).
pub fn load<'m, P, F>(data: &[u8], provider: &P, allocate: F) -> Result<Loaded, Error>
where
    P: SymbolProvider + ?Sized,
    F: FnOnce(&Layout) -> Option<Regions<'m>>,
{
    let prepared = prepare(data, provider)?;
    let regions = allocate(&prepared.layout).ok_or(Error::OutOfMemory {
        core: prepared.layout.core.size,
        init: prepared.layout.init.size,
    })?;
    prepared.finish(regions)
}
