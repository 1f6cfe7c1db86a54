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
//! 1. [`validate()`]: check the ELF file and index it ([`Module`]): everything the later
//!    steps rely on, except the entries of relocation sections whose target is not code,
//!    which [`relocate()`] checks as it applies them (see "Validate once" below).
//! 2. [`layout()`]: give each loaded section an offset in the *core* or *init* region and
//!    reserve the GOT ([`Layout`]).
//! 3. [`resolve()`]: look up undefined symbols in a [`SymbolProvider`] ([`Resolution`]).
//! 4. [`copy_sections`]: fill the caller's region memory with the sections' contents.
//! 5. [`relocate()`]: fill the GOT and apply every relocation, checking those validation
//!    left to it.
//!
//! Then [`Loaded::new`] collects what the kernel keeps (symbol addresses for `init_module`,
//! `cleanup_module` and parameters, exports, `.modinfo`, placements, dependencies).
//! [`prepare`] + [`Prepared::finish`] and [`load`] chain all of it.
//!
//! # Loading many modules
//!
//! Each step builds tables (sections, symbols, placements, resolved symbols, addresses). The
//! free functions allocate them afresh; a [`Loader`] runs the same steps in memory it keeps
//! from one module to the next, so a kernel or a benchmark that loads module after module
//! stops allocating once the tables have grown to the largest module:
//!
//! ```
//! # fn demo(files: &[Vec<u8>], kernel: &kmod_loader::ExportTable) -> Result<(), kmod_loader::Error> {
//! use kmod_loader::{Loader, RegionMemory, Regions};
//! let mut loader = Loader::new();
//! let (mut core, mut init) = (Vec::new(), Vec::new());
//! for file in files {
//!     let module = loader.validate(file)?;
//!     let layout = loader.layout(&module)?;
//!     let resolution = loader.resolve(&module, kernel)?;
//!     core.resize(layout.core.size as usize, 0);
//!     init.resize(layout.init.size as usize, 0);
//!     let mut regions = Regions {
//!         core: RegionMemory { base: 0xffff_ffff_a000_0000, bytes: &mut core },
//!         init: RegionMemory { base: 0xffff_ffff_a100_0000, bytes: &mut init },
//!     };
//!     kmod_loader::copy_sections(&module, &layout, &mut regions)?;
//!     loader.relocate(&module, &layout, &resolution, &mut regions)?;
//!     loader.recycle(module, layout, resolution);
//! }
//! # Ok(()) }
//! ```
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
//! - **Validate once, before use.** Every offset, size, index and relocation is checked
//!   exactly once, by the first step that needs it. [`validate()`] checks the file's
//!   structure, its sections and symbols, and the relocations of code (sections whose
//!   target is executable: only they may use the GOT, whose size the layout needs), so
//!   those are refused before any memory is touched. The relocations of everything else
//!   (data, ORC and exception tables: most of a Linux module's) are checked by
//!   [`relocate()`] as it applies them, each with the same error validation would give, so
//!   that their entries are read once rather than twice; a module refused there has had
//!   its regions written, which the caller discards as it does after any failed
//!   [`relocate()`]. Every write goes through a range-checked slice: a bug cannot become a
//!   wild write.
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
//!   keeps the crate usable in a kernel, a server and a fuzzer alike. A [`Loader`] keeps
//!   memory between loads, never results.
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
    MAX_REGION_SIZE, MAX_SECTION_ALIGN, Module, ModuleTables, PAGE_SIZE, Permission, RegionKind,
    validate,
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
    Loader::new().prepare(data, provider)
}

/// The loader's steps with memory kept between loads (see "Loading many modules" above).
///
/// Each method is the free function of the same name, building its result in memory that an
/// earlier result gave back through [`Loader::recycle`]. Results are the same as the free
/// functions' in every case; after an error, the memory the failed step was using stays
/// with the loader.
#[derive(Debug, Default)]
pub struct Loader {
    module: ModuleTables,
    layout: Layout,
    resolution: Resolution,
    addresses: SymbolAddresses,
}

impl Loader {
    /// A loader with no memory yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`validate()`].
    pub fn validate<'data>(&mut self, data: &'data [u8]) -> Result<Module<'data>, Error> {
        validate::validate_reusing(data, &mut self.module)
    }

    /// [`layout()`].
    pub fn layout(&mut self, module: &Module<'_>) -> Result<Layout, Error> {
        let mut layout = core::mem::take(&mut self.layout);
        match layout::layout_into(module, &mut layout) {
            Ok(()) => Ok(layout),
            Err(e) => {
                self.layout = layout;
                Err(e)
            }
        }
    }

    /// [`resolve()`].
    pub fn resolve<P: SymbolProvider + ?Sized>(
        &mut self,
        module: &Module<'_>,
        provider: &P,
    ) -> Result<Resolution, Error> {
        let mut resolution = core::mem::take(&mut self.resolution);
        match resolve::resolve_into(module, provider, &mut resolution) {
            Ok(()) => Ok(resolution),
            Err(e) => {
                self.resolution = resolution;
                Err(e)
            }
        }
    }

    /// [`relocate()`], computing symbol addresses in the loader's memory.
    pub fn relocate(
        &mut self,
        module: &Module<'_>,
        layout: &Layout,
        resolution: &Resolution,
        regions: &mut Regions<'_>,
    ) -> Result<counts::RelocateCounts, Error> {
        relocate::relocate_with(module, layout, resolution, regions, &mut self.addresses)
    }

    /// [`prepare()`].
    pub fn prepare<'data, P: SymbolProvider + ?Sized>(
        &mut self,
        data: &'data [u8],
        provider: &P,
    ) -> Result<Prepared<'data>, Error> {
        let module = self.validate(data)?;
        let layout = match self.layout(&module) {
            Ok(layout) => layout,
            Err(e) => {
                self.module = module.into_tables();
                return Err(e);
            }
        };
        let resolution = match self.resolve(&module, provider) {
            Ok(resolution) => resolution,
            Err(e) => {
                self.recycle_parts(module, layout);
                return Err(e);
            }
        };
        Ok(Prepared {
            module,
            layout,
            resolution,
        })
    }

    /// Takes back the memory of a module's results, for the next module.
    pub fn recycle(&mut self, module: Module<'_>, layout: Layout, resolution: Resolution) {
        self.recycle_parts(module, layout);
        self.resolution = resolution;
    }

    /// Takes back a module's tables alone.
    pub fn recycle_module(&mut self, module: Module<'_>) {
        self.module = module.into_tables();
    }

    /// Takes back a layout's memory alone.
    pub fn recycle_layout(&mut self, layout: Layout) {
        self.layout = layout;
    }

    /// Takes back a resolution's memory alone.
    pub fn recycle_resolution(&mut self, resolution: Resolution) {
        self.resolution = resolution;
    }

    /// [`Loader::recycle`] for a [`Prepared`] module.
    pub fn recycle_prepared(&mut self, prepared: Prepared<'_>) {
        self.recycle(prepared.module, prepared.layout, prepared.resolution);
    }

    fn recycle_parts(&mut self, module: Module<'_>, layout: Layout) {
        self.module = module.into_tables();
        self.layout = layout;
    }
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
