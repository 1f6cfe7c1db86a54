//! `init_module` → `load_module`, step by step as the seed article lays it out, each step
//! timed with the TSC (the benchmark reads these cycles), and `request_module` (kmod's
//! auto-load).
//!
//! Once a module is announced COMING, every failure goes through [`discard`], which undoes
//! all steps that ran: the registry holds everything the load has allocated, so the undo
//! cannot miss a piece.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use guest_rt::rdtsc_ordered;
use kmod_loader::{Layout, Loaded, Permission, RegionMemory, Regions};
use kmodlab_abi::channel::{LoadCycles, ModuleRecord, ModuleState};
use kmodlab_abi::layout::PAGE_SIZE;
use kmodlab_abi::modules_dep::{ModulesDep, module_name};

use super::notify::{self, Event};
use super::{
    Caller, KERNEL, ModError, Module, ModuleId, NEXT_ID, Region, area, as_module, params, provider,
    with_registry,
};
use crate::backend::Image;
use crate::mm::paging::{self, KernelPerm};

/// Loads a module: Linux's `sys_init_module`. On success the module is LIVE and its init
/// region freed; on any failure nothing of it remains.
pub fn init_module(
    image: Image<'_>,
    params: &str,
    caller: Caller,
) -> Result<ModuleRecord, ModError> {
    if !caller.may_manage_modules {
        return Err(ModError::Permission);
    }
    let mut cycles = LoadCycles::default();
    let start = rdtsc_ordered();
    // Copy into a temporary kernel buffer: the kernel must not read the caller's memory
    // twice (it could change between checks and use).
    let buf: Vec<u8> = match image {
        Image::User { task, addr, len } => crate::task::with_tasks(|t| {
            let mut v = alloc::vec![0u8; len as usize];
            t.get(task)
                .and_then(|x| x.aspace.read(addr, &mut v).ok())
                .map(|()| v)
        })
        .ok_or(ModError::BadImage)?,
        Image::Kernel(bytes) => bytes.to_vec(),
    };
    let mut t = rdtsc_ordered();
    cycles.copy = t - start;
    let mut lap = |slot: &mut u64| {
        let now = rdtsc_ordered();
        *slot = now - t;
        t = now;
    };

    // module_sig_check: before anything parses the image; the loader sees the ELF part.
    let signed = super::signature::check(&buf)?;
    lap(&mut cycles.verify);
    let module = kmod_loader::validate(signed.image).map_err(ModError::Invalid)?;
    let name = module.name().to_string();
    if name.is_empty() {
        return Err(ModError::NoName);
    }
    super::signature::note_loaded(&name, signed.sig_ok);
    lap(&mut cycles.validate);
    let values = params::parse(&name, module.modinfo(), params)?;
    lap(&mut cycles.params);
    let layout = kmod_loader::layout(&module).map_err(ModError::Invalid)?;
    lap(&mut cycles.layout);

    let exports: Vec<&str> = module.exports().iter().map(|e| e.name).collect();
    let id = announce(&name, &exports)?;
    // The COMING notification (its log line costs VM exits) belongs to no step.
    t = rdtsc_ordered();
    let measured = match load_coming(id, &name, &module, &layout, &values, &mut cycles, &mut t) {
        Ok(measured) => measured,
        Err(e) => {
            discard(id);
            return Err(e);
        }
    };
    // The second relocation pass is a measurement, not part of loading.
    cycles.total = rdtsc_ordered() - start - measured;
    let record = with_registry(|r| {
        let m = r.get_mut(id).expect("a live module is registered");
        m.cycles = cycles;
        let m = r.get(id).expect("a live module is registered");
        r.record(m)
    });
    Ok(record)
}

/// Registers `name` as COMING and reserves its `exports`, unless a module of that name exists
/// or one of the names is taken. Both checks and the reservation happen under one lock, so
/// no other load can slip between them.
fn announce(name: &str, exports: &[&str]) -> Result<ModuleId, ModError> {
    let id = with_registry(|r| match r.find(name) {
        Some(m) if m.state == ModuleState::Live => Err(ModError::AlreadyLoaded(name.into())),
        Some(m) => Err(ModError::Busy {
            name: name.into(),
            state: m.state,
        }),
        None => {
            let duplicate = |symbol: &str, owner: String| ModError::DuplicateExport {
                module: name.into(),
                symbol: symbol.into(),
                owner,
            };
            for &symbol in exports {
                if let Some(owner) = r.export_owner(symbol) {
                    return Err(duplicate(symbol, owner));
                }
            }
            let id = NEXT_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            // Only a name the module itself exports twice can still clash here.
            r.reserved
                .insert_all(exports.iter().map(|&e| (e, 0)), provider(id))
                .map_err(|e| match e {
                    kmod_loader::Error::DuplicateExport { symbol, .. } => {
                        duplicate(&symbol, name.into())
                    }
                    other => ModError::Invalid(other),
                })?;
            r.modules.push(Module {
                id,
                name: name.into(),
                state: ModuleState::Coming,
                core: None,
                init: None,
                init_bytes: 0,
                core_bytes: 0,
                exports: Vec::new(),
                modinfo: Vec::new(),
                exit: None,
                uses: Vec::new(),
                used_by: Vec::new(),
                refcount: 0,
                param_strings: Vec::new(),
                relocations: 0,
                cycles: LoadCycles::default(),
                page_table_pages: 0,
            });
            Ok(id)
        }
    })?;
    notify::notify(&Event {
        id,
        name,
        state: ModuleState::Coming,
    });
    Ok(id)
}

/// Whether module regions take their frames one at a time even when a run of free frames
/// is left (`debug.scattered_module_frames=1`): how the tests run the path a fragmented
/// memory takes.
static SCATTERED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Command-line word that makes every module region take the fragmented-memory path.
pub const SCATTERED_KNOB: &str = "debug.scattered_module_frames=1";

/// Reads [`SCATTERED_KNOB`] from the kernel command line.
pub fn configure(cmdline: &str) {
    if cmdline.split_whitespace().any(|w| w == SCATTERED_KNOB) {
        SCATTERED.store(true, core::sync::atomic::Ordering::Relaxed);
        crate::kprintln!("{SCATTERED_KNOB}: module regions map frames one at a time");
    }
}

/// A region mapped for a load, and where the loader writes it.
struct MappedRegion {
    region: Region,
    /// The virtual address of the region's bytes for writing: its frames through the direct
    /// map, or the write window of scattered frames.
    writes: u64,
    /// The write window ([`paging::map_module_pages_scattered`]), if the frames are not one
    /// run; [`WriteWindows`] removes it.
    window: Option<u64>,
    /// Page-table pages mapping it allocated (the frames it took beyond its own).
    tables: u64,
}

/// Reserves and maps a region laid out as `layout` (at least a page), with its final
/// permissions, its frames zeroed; `aligned` starts it on a group of pages that a shadow MMU
/// maps at once ([`area::reserve_aligned`]). Its frames are one run where one is free, so that
/// the loader writes it through the direct map; otherwise (a fragmented memory) they are taken
/// one at a time and written through a window of the module area.
fn map_region(layout: &kmod_loader::RegionLayout, aligned: bool) -> Option<MappedRegion> {
    let pages = layout.size.max(PAGE_SIZE).div_ceil(PAGE_SIZE);
    let base = if aligned {
        area::reserve_aligned(pages)?
    } else {
        area::reserve(pages)?
    };
    let perm = |page: u64| {
        let offset = page * PAGE_SIZE;
        // Pages outside every range (an empty core's one page) are plain data.
        layout
            .ranges
            .iter()
            .find(|r| r.start <= offset && offset < r.end)
            .map_or(KernelPerm::ReadWrite, |r| kernel_perm(r.permission))
    };
    let (_, free_before) = crate::mm::frame_stats();
    let contiguous = if SCATTERED.load(core::sync::atomic::Ordering::Relaxed) {
        Err(paging::OutOfMemory)
    } else {
        paging::map_module_pages(base, pages, perm)
    };
    let (writes, window) = match contiguous {
        Ok(phys) => (paging::phys_to_virt(phys), None),
        Err(paging::OutOfMemory) => {
            let scattered = area::reserve(pages).and_then(|window| {
                match paging::map_module_pages_scattered(base, window, pages, perm) {
                    Ok(()) => Some(window),
                    Err(paging::OutOfMemory) => {
                        area::release(window, pages);
                        None
                    }
                }
            });
            match scattered {
                Some(window) => (window, Some(window)),
                None => {
                    area::release(base, pages);
                    return None;
                }
            }
        }
    };
    let (_, free_after) = crate::mm::frame_stats();
    let tables = free_before.saturating_sub(free_after).saturating_sub(pages);
    Some(MappedRegion {
        region: Region { base, pages },
        writes,
        window,
        tables,
    })
}

/// The write windows of a load's regions: removed when the load's writes are done or the
/// load fails, before anything frees the regions' frames (the caller discards a failed load
/// after [`load_coming`], which owns this, has returned).
#[derive(Default)]
struct WriteWindows(Vec<(u64, u64)>);

impl WriteWindows {
    fn add(&mut self, mapped: &MappedRegion) {
        if let Some(window) = mapped.window {
            self.0.push((window, mapped.region.pages));
        }
    }
}

impl Drop for WriteWindows {
    fn drop(&mut self) {
        for (window, pages) in self.0.drain(..) {
            paging::unmap_module_alias(window, pages);
            area::release(window, pages);
        }
    }
}

/// The bytes of a mapped region, for writing.
///
/// # Safety
/// `mapped` must come from [`map_region`], its region and write window must stay mapped
/// for the life of the slice, and nothing else may use the region's frames meanwhile.
unsafe fn region_bytes<'a>(mapped: &MappedRegion) -> &'a mut [u8] {
    // SAFETY: per the function's contract `writes` maps the region's `pages` frames, this
    // module's alone, writable and virtually contiguous (the direct map of one run of frames,
    // or the write window).
    unsafe {
        core::slice::from_raw_parts_mut(
            mapped.writes as *mut u8,
            (mapped.region.pages * PAGE_SIZE) as usize,
        )
    }
}

fn kernel_perm(p: Permission) -> KernelPerm {
    match p {
        Permission::ReadExecute => KernelPerm::Execute,
        Permission::ReadOnly => KernelPerm::ReadOnly,
        Permission::ReadWrite => KernelPerm::ReadWrite,
    }
}

/// The steps after COMING, up to LIVE. The caller discards the module on error. Returns the
/// cycles spent measuring (the second relocation pass), which belong to no step.
#[allow(clippy::too_many_arguments)]
fn load_coming(
    id: ModuleId,
    name: &str,
    module: &kmod_loader::Module<'_>,
    layout: &Layout,
    values: &[(String, params::Value)],
    cycles: &mut LoadCycles,
    t: &mut u64,
) -> Result<u64, ModError> {
    let mut lap = |slot: &mut u64| {
        let now = rdtsc_ordered();
        *slot = now - *t;
        *t = now;
    };
    let no_memory = || ModError::NoMemory {
        module: name.to_string(),
    };

    // Allocate the final core and init regions, mapped with their final permissions, and
    // copy the SHF_ALLOC sections through the direct map. The core starts a group of pages
    // that one shadow-MMU fault maps; the init region goes right after it (its guard page
    // between), so that the fault that runs its code usually maps the core's pages too.
    let mut windows = WriteWindows::default();
    let core_mapped = map_region(&layout.core, true).ok_or_else(no_memory)?;
    windows.add(&core_mapped);
    let core = core_mapped.region;
    with_registry(|r| {
        let m = r.get_mut(id).expect("coming module is registered");
        m.core = Some(core);
        m.core_bytes = layout.core.size;
        m.page_table_pages = core_mapped.tables;
    });
    let init_mapped = if layout.init.size > 0 {
        let mapped = map_region(&layout.init, false).ok_or_else(no_memory)?;
        windows.add(&mapped);
        with_registry(|r| {
            let m = r.get_mut(id).expect("coming module is registered");
            m.init = Some(mapped.region);
            m.init_bytes = layout.init.size;
            m.page_table_pages += mapped.tables;
        });
        Some(mapped)
    } else {
        None
    };
    // SAFETY: both regions were just mapped for this module alone; their write windows, if
    // any, stay until `windows` is dropped, after the last write through these slices, and
    // nothing runs their code before `sync_core` below.
    let core_bytes = unsafe { region_bytes(&core_mapped) };
    let mut empty: [u8; 0] = [];
    let init_bytes: &mut [u8] = match &init_mapped {
        // SAFETY: as for core.
        Some(mapped) => unsafe { region_bytes(mapped) },
        None => &mut empty,
    };
    let init = init_mapped.map(|m| m.region);
    let mut regions = Regions {
        core: RegionMemory {
            base: core.base,
            bytes: core_bytes,
        },
        init: RegionMemory {
            base: init.map_or(0, |r| r.base),
            bytes: init_bytes,
        },
    };
    let copy_counts =
        kmod_loader::copy_sections(module, layout, &mut regions).map_err(ModError::Invalid)?;
    lap(&mut cycles.allocate);

    // Resolve against the kernel and LIVE modules (its own exports are reserved since
    // `announce`, so none can clash any more).
    let resolution =
        with_registry(|r| kmod_loader::resolve(module, &r.exports).map_err(ModError::Invalid))?;
    lap(&mut cycles.resolve);

    let before = rdtsc_ordered();
    let relocate_counts = kmod_loader::relocate(module, layout, &resolution, &mut regions)
        .map_err(ModError::Invalid)?;
    let relocate_cold = rdtsc_ordered() - before;
    // Relocation once more, over the pages the first pass touched: on kvm_pvm the first pass
    // pays a shadow-MMU fault for each first touch of a page, the second runs the loader
    // alone, so the two tell the hypervisor's share from the loader's. It writes the same
    // bytes (each field is computed from its entry, not from memory), and runs before the
    // parameters are written, which it could otherwise overwrite.
    let warm_start = rdtsc_ordered();
    kmod_loader::relocate(module, layout, &resolution, &mut regions).map_err(ModError::Invalid)?;
    let relocate_warm = rdtsc_ordered() - warm_start;
    let counts = kmod_loader::LoadCounts {
        validate: *module.counts(),
        layout: *layout.counts(),
        resolve: *resolution.counts(),
        copy: copy_counts,
        relocate: relocate_counts,
    };
    let loaded = Loaded::new(module, layout, &resolution, regions.bases(), counts);
    let mut strings: Vec<Box<[u8]>> = Vec::new();
    params::apply(name, &loaded, values, regions.core.bytes, &mut strings)?;
    // That was the last write through the regions' slices: their write windows go now.
    drop(windows);
    lap(&mut cycles.relocate);
    // The measurement pass belongs to no step.
    cycles.relocate -= relocate_warm;

    // The regions have had their final permissions since they were mapped (text executable,
    // everything else not), and no entry changed since, so there is no TLB entry to flush;
    // what is left is to make instruction fetch see the code written through the direct map.
    paging::sync_core();
    lap(&mut cycles.protect);

    let code = |sym: &str| {
        loaded
            .symbol(sym)
            .filter(|s| s.permission == Permission::ReadExecute)
            .map(|s| s.address)
    };
    let init_fn = code("init_module");
    let exit_fn = code("cleanup_module");
    // Record the dependencies (both ways) and take a reference on each provider.
    with_registry(|r| {
        let users: Vec<ModuleId> = loaded
            .providers
            .iter()
            .map(|p| p.0)
            .filter(|&p| p != KERNEL && p != id)
            .collect();
        for &p in &users {
            if let Some(pm) = r.get_mut(p) {
                pm.used_by.push(id);
                pm.refcount += 1;
            }
        }
        let m = r.get_mut(id).expect("coming module is registered");
        m.uses = users;
        m.exports = loaded.exports.clone();
        m.modinfo = loaded.modinfo.clone();
        m.exit = exit_fn;
        m.param_strings = strings;
        m.relocations = counts.relocate.applied.total();
    });

    if let Some(addr) = init_fn {
        // SAFETY: `addr` is `init_module` of this module, relocated and mapped executable
        // above, with the ABI's signature `extern "C" fn() -> i32`. In the monolithic
        // configuration module code is trusted like kernel code: a fault in it is a kernel
        // fault, which is the point this configuration makes.
        let init: extern "C" fn() -> i32 = unsafe { core::mem::transmute(addr as usize) };
        let status = as_module(id, || init());
        lap(&mut cycles.init);
        if status != 0 {
            return Err(ModError::InitFailed {
                module: name.to_string(),
                code: status,
            });
        }
    }

    // LIVE: the reserved exports become visible, the init region goes.
    let exports: Vec<(String, u64)> = loaded
        .exports
        .iter()
        .map(|e| (e.name.clone(), e.address))
        .collect();
    with_registry(|r| {
        r.release_reserved(id);
        r.exports
            .insert_all(exports.iter().map(|(n, a)| (n.as_str(), *a)), provider(id))
            .map_err(ModError::Invalid)?;
        let m = r.get_mut(id).expect("coming module is registered");
        m.state = ModuleState::Live;
        Ok::<(), ModError>(())
    })?;
    if let Some(init) = init {
        paging::unmap_module_pages(init.base, init.pages);
        area::release(init.base, init.pages);
        with_registry(|r| r.get_mut(id).expect("live module is registered").init = None);
        kprintln!(
            "module {name}: freed {} bytes of init memory",
            init.pages * PAGE_SIZE
        );
    }
    notify::notify(&Event {
        id,
        name,
        state: ModuleState::Live,
    });
    kprintln!(
        "module {name}: relocation {relocate_cold} cycles, {relocate_warm} again over touched \
         pages ({} relocations)",
        counts.relocate.applied.total()
    );
    Ok(relocate_warm)
}

/// Undoes a load that failed after COMING (or a module's whole life, for unload): GOING is
/// announced (listeners drop its services and reclaim its allocations), its references and
/// dependency edges go, its exports go, its memory is unmapped and freed, and its record is
/// removed.
pub(super) fn discard(id: ModuleId) {
    let found = with_registry(|r| {
        let m = r.get_mut(id)?;
        let was = m.state;
        m.state = ModuleState::Going;
        Some((m.name.clone(), was))
    });
    let Some((name, was)) = found else { return };
    if was != ModuleState::Going {
        notify::notify(&Event {
            id,
            name: &name,
            state: ModuleState::Going,
        });
    }
    let services = super::services::drop_owned_by(id);
    if services > 0 {
        kprintln!("module {name}: dropped {services} service(s) it left registered");
    }
    super::kapi::reclaim_allocations(id, &name);
    let module = with_registry(|r| {
        r.exports.remove_provider(provider(id));
        r.release_reserved(id);
        let index = r.modules.iter().position(|m| m.id == id)?;
        let m = r.modules.remove(index);
        for &p in &m.uses {
            if let Some(pm) = r.get_mut(p) {
                pm.used_by.retain(|&u| u != id);
                pm.refcount = pm.refcount.saturating_sub(1);
            }
        }
        Some(m)
    });
    let Some(m) = module else { return };
    for region in [m.core, m.init].into_iter().flatten() {
        paging::unmap_module_pages(region.base, region.pages);
        area::release(region.base, region.pages);
    }
    // Parameter strings and the rest of the record are freed with `m`.
    drop(m);
}

/// Whether module `name` is LIVE; `Err` if it exists in another state.
fn live(name: &str) -> Result<bool, ModError> {
    with_registry(|r| match r.find(name) {
        None => Ok(false),
        Some(m) if m.state == ModuleState::Live => Ok(true),
        Some(m) => Err(ModError::Busy {
            name: name.into(),
            state: m.state,
        }),
    })
}

/// The module archive's `modules.dep`.
fn modules_dep() -> Result<(kmodlab_abi::initramfs::Archive<'static>, &'static str), ModError> {
    let archive = crate::boot::initramfs()
        .map_err(|e| ModError::NotInArchive(format!("(module archive unreadable: {e})")))?;
    let dep = archive
        .find("lib/modules/modules.dep")
        .and_then(|f| core::str::from_utf8(f.data).ok())
        .ok_or_else(|| ModError::NotInArchive("modules.dep".into()))?;
    Ok((archive, dep))
}

/// Loads `lib/modules/<name>.ko` from the archive (no dependencies, like insmod).
pub fn insmod_from_archive(
    name: &str,
    params: &str,
    caller: Caller,
) -> Result<ModuleRecord, ModError> {
    let archive = crate::boot::initramfs()
        .map_err(|e| ModError::NotInArchive(format!("{name} (module archive unreadable: {e})")))?;
    let file = archive
        .find(&format!("lib/modules/{name}.ko"))
        .ok_or_else(|| ModError::NotInArchive(name.into()))?;
    init_module(Image::Kernel(file.data), params, caller)
}

/// Linux's `request_module`: makes module `name` LIVE, loading what it depends on first
/// (from `modules.dep`), unless it is LIVE already.
pub fn request_module(name: &str) -> Result<(), ModError> {
    if live(name)? {
        return Ok(());
    }
    let (archive, dep) = modules_dep()?;
    let order = ModulesDep::parse(dep)
        .load_order(name)
        .ok_or_else(|| ModError::NotInArchive(name.into()))?;
    for path in order {
        let modname = module_name(path);
        if live(&modname)? {
            continue;
        }
        let file = archive
            .find(&format!("lib/modules/{path}"))
            .ok_or_else(|| ModError::NotInArchive(modname.clone()))?;
        kprintln!("request_module: loading {modname}");
        init_module(Image::Kernel(file.data), "", Caller::KERNEL)?;
    }
    Ok(())
}
