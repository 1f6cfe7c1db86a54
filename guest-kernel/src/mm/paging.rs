//! The kernel's page tables, built at boot to replace the VMM's (which map everything RWX).
//!
//! Table frames are reached through a physical-memory offset: the boot mapping
//! ([`KERNEL_VIRT_OFFSET`], first GiB only) while the new tables are built, then the direct
//! map ([`PHYS_MAP_BASE`]). Intermediate entries are permissive (present, writable, and user
//! for user mappings); each leaf carries the real permissions, and no leaf is ever both
//! writable and executable.
//!
//! On kvm_pvm, natively running supervisor code can only reach pages whose entries have U/S
//! set at every level (the hypervisor runs guest supervisor code in hardware ring 3 and maps
//! guest entries as they are), so there kernel entries carry U/S too. kvm_pvm keeps one shadow
//! table per guest CR3 for both guest modes, so user mode then reaches what the kernel touched
//! under the same CR3; only the kernel/user page-table split (`kpti=`, `arch::entry`, on by
//! default there) keeps it out: user mode runs on a user view that maps nothing of the kernel
//! but the entry area ([`build_user_view_template`]). The self-test probes it every boot.

// The module-area functions below serve the monolithic module subsystem alone; the
// microkernel's kernel maps no module code.
#![cfg_attr(feature = "microkernel", allow(dead_code))]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kmodlab_abi::KvmFlavour;
use kmodlab_abi::boot_info::BootInfo;
use kmodlab_abi::layout::{KERNEL_VIRT_OFFSET, LOW_AREA_END, PAGE_SIZE};
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as F,
    PhysFrame, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::frame;

/// Where all guest RAM is mapped (PML4 slot 384; slot 256 is avoided because kvm_pvm
/// triple-faults on it in native mode).
pub const PHYS_MAP_BASE: u64 = 0xffff_c000_0000_0000;
/// Start of the module area: within ±2 GiB of the kernel, as `-mcmodel=kernel` code needs.
pub const MODULE_AREA_START: u64 = 0xffff_ffff_c000_0000;
/// End of the module area.
pub const MODULE_AREA_END: u64 = 0xffff_ffff_e000_0000;
/// Start of the kernel stack area.
const STACK_AREA_START: u64 = 0xffff_ffff_e000_0000;
/// Virtual size of one kernel stack slot; what the stack does not use is an unmapped guard.
const STACK_SLOT: u64 = 1 << 20;
/// Number of stack slots.
const STACK_SLOTS: u64 = 256;

/// Offset at which page-table frames (and all RAM) are reachable right now.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(KERNEL_VIRT_OFFSET);
/// Whether kernel entries need U/S (PVM), see the module documentation.
static KERNEL_ENTRIES_USER: AtomicBool = AtomicBool::new(false);
/// Next free kernel stack slot.
static NEXT_STACK_SLOT: AtomicU64 = AtomicU64::new(0);
/// Serialises every change to the page tables.
static PAGING: Mutex<()> = Mutex::new(());
/// Physical address of the kernel's PML4: the tables the kernel runs on when no task's are
/// active, and the source of every address space's upper half.
static KERNEL_PML4: AtomicU64 = AtomicU64::new(0);
/// Physical address of the PML4 in CR3 (kept here: reading CR3 traps on kvm_pvm).
static ACTIVE_ROOT: AtomicU64 = AtomicU64::new(0);
/// Physical address of the PML4 whose upper half every user view copies (the entry area of
/// the kernel/user split, see `arch::entry`); 0 while the split is off.
static USER_VIEW_TEMPLATE: AtomicU64 = AtomicU64::new(0);

/// The virtual address at which physical address `phys` can be accessed.
pub fn phys_to_virt(phys: u64) -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed) + phys
}

/// `flags` for a kernel entry: plus U/S on PVM.
fn kernel(flags: F) -> F {
    if KERNEL_ENTRIES_USER.load(Ordering::Relaxed) {
        flags | F::USER_ACCESSIBLE
    } else {
        flags
    }
}

/// Whether kernel mappings carry U/S (on PVM), so that U/S alone does not tell kernel pages
/// from user pages.
pub fn kernel_entries_user() -> bool {
    KERNEL_ENTRIES_USER.load(Ordering::Relaxed)
}

/// Page-table frames allocated for the kernel's tables since boot (they are never freed:
/// the upper half's tables are shared by every address space), and allocations of one that
/// failed. The self-test uses them to tell frames a failed mapping kept for tables from
/// frames it leaked, and to know that a mapping failed for want of a table.
static KERNEL_TABLE_FRAMES: AtomicU64 = AtomicU64::new(0);
static KERNEL_TABLE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// `(page-table frames of the kernel's tables allocated since boot, failed allocations)`.
pub fn kernel_table_frames() -> (u64, u64) {
    (
        KERNEL_TABLE_FRAMES.load(Ordering::Relaxed),
        KERNEL_TABLE_FAILURES.load(Ordering::Relaxed),
    )
}

struct Frames;

// SAFETY: frames come from the frame allocator, which hands each frame out once until it is
// freed, so a frame returned here is unused.
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let Some(phys) = frame::alloc() else {
            KERNEL_TABLE_FAILURES.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        KERNEL_TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
        Some(PhysFrame::containing_address(PhysAddr::new(phys)))
    }
}

/// Physical address of the kernel's PML4.
pub fn kernel_pml4() -> u64 {
    KERNEL_PML4.load(Ordering::Relaxed)
}

/// Physical address of the PML4 the CPU uses now.
pub fn active_root() -> u64 {
    ACTIVE_ROOT.load(Ordering::Relaxed)
}

/// Switches to the tables at `root` (a task's address space, or [`kernel_pml4`]), unless they
/// are active already.
///
/// # Safety
/// `root` must be a PML4 whose upper half is the kernel's (every address space's is), so that
/// the kernel keeps running; it must stay allocated while active.
pub unsafe fn activate(root: u64) {
    if ACTIVE_ROOT.swap(root, Ordering::Relaxed) != root {
        let frame = PhysFrame::containing_address(PhysAddr::new(root));
        // SAFETY: per this function's contract, the kernel half is mapped in `root`.
        unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    }
}

/// Runs `f` with a mapper over the kernel's page tables (the upper half every address space
/// shares), holding the paging lock.
fn with_mapper<R>(f: impl FnOnce(&mut OffsetPageTable<'_>) -> R) -> R {
    let _guard = PAGING.lock();
    let pml4 = phys_to_virt(kernel_pml4()) as *mut PageTable;
    // SAFETY: KERNEL_PML4 is the kernel's PML4, reachable at the current physical offset; the
    // paging lock guarantees this is the only reference to it for the duration of `f`. Only
    // upper-half entries are changed through it, and those tables are shared by every
    // address space.
    let mut mapper = unsafe {
        OffsetPageTable::new(
            &mut *pml4,
            VirtAddr::new(PHYS_OFFSET.load(Ordering::Relaxed)),
        )
    };
    f(&mut mapper)
}

fn map_4k(m: &mut OffsetPageTable<'_>, virt: u64, phys: u64, flags: F, parent: F) {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
    let frame = PhysFrame::containing_address(PhysAddr::new(phys));
    // SAFETY: callers map frames they own (or the kernel image's own frames) at addresses
    // nothing else maps.
    match unsafe { m.map_to_with_table_flags(page, frame, flags, parent, &mut Frames) } {
        // The page was not mapped before (`map_to` fails otherwise): either the tables are
        // not active yet, or it is in a stack slot never used before (slots are not reused).
        // x86 caches no translation of a not-present entry, so there is nothing to flush;
        // and on kvm_pvm each `invlpg` is a trip through the hypervisor: the boot's 761
        // flushes here took 4.1-5.2 ms, most of its page-table time.
        Ok(flush) => flush.ignore(),
        Err(e) => panic!("cannot map {virt:#x}: {e:?}"),
    }
}

/// Builds the kernel's page tables, with a kernel stack of `stacks[i]` pages mapped in stack
/// slot `i` (its top in `tops[i]`), and switches to them.
///
/// Everything boot needs is mapped before the one CR3 write: on kvm_pvm a table the
/// hypervisor does not shadow yet is written without a trap, while a table in the live tree
/// traps on every write, and each page touched under the old tables is faulted in again
/// under the new ones.
pub fn init(info: &BootInfo, stacks: &[u64], tops: &mut [u64]) {
    KERNEL_ENTRIES_USER.store(info.flavour == KvmFlavour::Pvm, Ordering::Relaxed);
    let pml4_phys = frame::alloc().expect("a frame for the kernel PML4");
    let pml4 = phys_to_virt(pml4_phys) as *mut PageTable;
    // SAFETY: the frame was just allocated (unused) and lies in the boot mapping (the
    // allocator hands out low frames first); zeroing it makes an empty PML4.
    let pml4 = unsafe {
        pml4.write(PageTable::new());
        &mut *pml4
    };
    // SAFETY: `pml4` is the only reference to the new table; the offset maps every frame the
    // allocator hands out during boot.
    let mut m = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(KERNEL_VIRT_OFFSET)) };
    let parent = kernel(F::PRESENT | F::WRITABLE);
    // Leaves carry Accessed (and Dirty when writable) from the start, as Linux's kernel
    // mappings do: on kvm_pvm a fault on one page then maps the backed pages of its aligned
    // group of eight too (see `module_leaf_flags`), so the kernel's first run through code
    // and data it has not touched yet (the first module load runs the loader's code for the
    // first time) costs one shadow-MMU fault per eight pages instead of one per page.
    let data = kernel(F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::ACCESSED | F::DIRTY);

    // The direct map of RAM.
    let ram_end = info.ram_size.div_ceil(Size2MiB::SIZE) * Size2MiB::SIZE;
    for phys in (0..ram_end).step_by(Size2MiB::SIZE as usize) {
        let page = Page::<Size2MiB>::containing_address(VirtAddr::new(PHYS_MAP_BASE + phys));
        let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(phys));
        // SAFETY: the direct map region is used for nothing else; the tables are not active.
        unsafe { m.map_to_with_table_flags(page, frame, data | F::HUGE_PAGE, parent, &mut Frames) }
            .expect("direct map")
            .ignore();
    }
    // The low area: boot structures and the control channel. Page 0 stays unmapped.
    for phys in (PAGE_SIZE..LOW_AREA_END).step_by(PAGE_SIZE as usize) {
        map_4k(&mut m, KERNEL_VIRT_OFFSET + phys, phys, data, parent);
    }
    // The kernel image, W^X.
    let image = crate::boot::image_layout();
    for (range, flags) in [
        (image.text, kernel(F::PRESENT | F::ACCESSED)),
        (
            image.rodata,
            kernel(F::PRESENT | F::NO_EXECUTE | F::ACCESSED),
        ),
        (image.data, data),
    ] {
        for virt in (range.0..range.1).step_by(PAGE_SIZE as usize) {
            map_4k(&mut m, virt, virt - KERNEL_VIRT_OFFSET, flags, parent);
        }
    }
    for (pages, top) in stacks.iter().zip(tops.iter_mut()) {
        *top = map_kernel_stack(&mut m, *pages);
    }
    let frame = PhysFrame::containing_address(PhysAddr::new(pml4_phys));
    // SAFETY: the new tables map everything the kernel uses from here on: its image (including
    // the code running now and the boot stack's low area), the boot information and control
    // channel, all RAM through the direct map, and the kernel stacks just mapped.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    KERNEL_PML4.store(pml4_phys, Ordering::Relaxed);
    ACTIVE_ROOT.store(pml4_phys, Ordering::Relaxed);
    PHYS_OFFSET.store(PHYS_MAP_BASE, Ordering::Relaxed);
}

/// Maps a kernel stack of `pages` pages in the next stack slot through `m`, below an unmapped
/// guard; returns its top.
fn map_kernel_stack(m: &mut OffsetPageTable<'_>, pages: u64) -> u64 {
    let slot = NEXT_STACK_SLOT.fetch_add(1, Ordering::Relaxed);
    assert!(slot < STACK_SLOTS, "out of kernel stack slots");
    assert!(
        pages * PAGE_SIZE < STACK_SLOT,
        "kernel stack larger than its slot"
    );
    let top = STACK_AREA_START + (slot + 1) * STACK_SLOT;
    for i in 1..=pages {
        let phys = frame::alloc().expect("a frame for a kernel stack");
        map_4k(
            m,
            top - i * PAGE_SIZE,
            phys,
            kernel(F::PRESENT | F::WRITABLE | F::NO_EXECUTE),
            kernel(F::PRESENT | F::WRITABLE),
        );
    }
    top
}

/// How the user view of the page tables maps a kernel page (see `arch::entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserViewPerm {
    /// Read-only data.
    ReadOnly,
    /// Read-write data.
    ReadWrite,
    /// Code.
    Execute,
}

/// Builds the upper half every user view shares: each of `pages` (page-aligned kernel
/// addresses, mapped in the kernel's tables) at its kernel address, to the same frame, with
/// the given permissions, and nothing else. Called once, at boot; the tables are never freed.
pub fn build_user_view_template(pages: &[(u64, UserViewPerm)]) {
    let phys = frame::alloc().expect("a frame for the user-view PML4");
    let table = phys_to_virt(phys) as *mut PageTable;
    // SAFETY: the frame was just allocated for this table alone and is reached through the
    // direct map; zeroing it makes an empty PML4.
    unsafe { table.write(PageTable::new()) };
    let parent = kernel(F::PRESENT | F::WRITABLE);
    for &(virt, perm) in pages {
        let m = translate(virt).unwrap_or_else(|| panic!("user view: {virt:#x} is not mapped"));
        let flags = kernel(match perm {
            UserViewPerm::ReadOnly => F::PRESENT | F::NO_EXECUTE,
            UserViewPerm::ReadWrite => F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
            UserViewPerm::Execute => F::PRESENT,
        });
        let _guard = PAGING.lock();
        // SAFETY: the template is referenced by nothing but this loop until it is published
        // below; its table frames are reachable through the direct map.
        let mut m2 = unsafe { OffsetPageTable::new(&mut *table, VirtAddr::new(PHYS_MAP_BASE)) };
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
        let frame = PhysFrame::containing_address(PhysAddr::new(m.phys & !(PAGE_SIZE - 1)));
        // SAFETY: the template is not active anywhere yet (so no TLB entry to flush), and the
        // frame is the one the kernel's tables map at the same address: the user view aliases
        // the kernel's page, it does not hand out a frame.
        match unsafe { m2.map_to_with_table_flags(page, frame, flags, parent, &mut Frames) } {
            Ok(flush) => flush.ignore(),
            Err(e) => panic!("user view: cannot map {virt:#x}: {e:?}"),
        }
    }
    USER_VIEW_TEMPLATE.store(phys, Ordering::Relaxed);
}

/// The PML4 whose upper half a new user view copies, if the kernel/user split is on.
pub fn user_view_template() -> Option<u64> {
    match USER_VIEW_TEMPLATE.load(Ordering::Relaxed) {
        0 => None,
        p => Some(p),
    }
}

/// Permissions of a mapped page, as seen by a self-test or a pointer check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Physical address the virtual address translates to.
    pub phys: u64,
    /// Writable.
    pub writable: bool,
    /// Executable.
    pub executable: bool,
    /// Reachable from user mode.
    pub user: bool,
}

/// Translates `virt` in the active page tables.
pub fn translate(virt: u64) -> Option<Mapping> {
    let Ok(va) = VirtAddr::try_new(virt) else {
        return None;
    };
    with_mapper(|m| match m.translate(va) {
        TranslateResult::Mapped {
            frame,
            offset,
            flags,
        } => {
            let base = match frame {
                MappedFrame::Size4KiB(f) => f.start_address(),
                MappedFrame::Size2MiB(f) => f.start_address(),
                MappedFrame::Size1GiB(f) => f.start_address(),
            };
            Some(Mapping {
                phys: base.as_u64() + offset,
                writable: flags.contains(F::WRITABLE),
                executable: !flags.contains(F::NO_EXECUTE),
                user: flags.contains(F::USER_ACCESSIBLE),
            })
        }
        _ => None,
    })
}

/// Frees a user page table at `level` (3 = PDPT … 1 = PT), every table below it, and every
/// 4 KiB leaf frame it maps.
pub fn free_user_table(phys: u64, level: u8) {
    // SAFETY: `phys` is a page-table frame of one address space's user half, reachable
    // through the direct map; its owner (an AddressSpace being cleared) uses it no more.
    let table = unsafe { &*(phys_to_virt(phys) as *const PageTable) };
    for entry in table.iter() {
        if !entry.flags().contains(F::PRESENT) {
            continue;
        }
        let addr = entry.addr().as_u64();
        if level == 1 {
            frame::free_contiguous(addr, 1);
        } else {
            assert!(
                !entry.flags().contains(F::HUGE_PAGE),
                "user half has no huge pages"
            );
            free_user_table(addr, level - 1);
        }
    }
    frame::free_contiguous(phys, 1);
}

/// Final permissions of a module page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPerm {
    /// Read-only data.
    ReadOnly,
    /// Read-write data.
    ReadWrite,
    /// Code.
    Execute,
}

fn kernel_perm_flags(perm: KernelPerm) -> F {
    kernel(match perm {
        KernelPerm::ReadOnly => F::PRESENT | F::NO_EXECUTE,
        KernelPerm::ReadWrite => F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
        KernelPerm::Execute => F::PRESENT,
    })
}

/// Leaf flags of a module page: its permission, with Accessed (and, when writable, Dirty)
/// already set, as Linux's kernel mappings have them. Hardware then never writes the entry
/// back; and on a shadow MMU (kvm_pvm) a fault on one page also maps its neighbours in the
/// same aligned group of eight entries whose frames are backed (KVM's `pte_prefetch` skips
/// entries without Accessed) and, with Dirty, maps a writable page writable on its first
/// read instead of faulting again on its first write. Measured on kvm_pvm: eight backed pages
/// read after one another cost one fault (≈ 19 k cycles) and ≈ 150 cycles each, against
/// ≈ 7 k each without Accessed.
fn module_leaf_flags(perm: KernelPerm) -> F {
    let flags = kernel_perm_flags(perm) | F::ACCESSED;
    match perm {
        KernelPerm::ReadWrite => flags | F::DIRTY,
        KernelPerm::ReadOnly | KernelPerm::Execute => flags,
    }
}

/// Allocates `pages` physically contiguous frames for a module region, zeroes them through
/// the direct map and maps them at `virt` (a free range of the module area) with their final
/// permissions, `perm(i)` for page `i`; returns the first frame's physical address. The caller
/// writes the region's contents through the direct map ([`phys_to_virt`]) and calls
/// [`sync_core`] before anything runs the module's code. On failure (no run of frames, or no
/// frame for a page table) nothing stays mapped or allocated, except page tables, which the
/// kernel half never frees.
///
/// Why final permissions at once and writes through the direct map: a live entry whose
/// permissions change needs a TLB flush before the module runs (on kvm_pvm a CR3 reload or an
/// `invlpg`, each a trip through the hypervisor), while an entry that goes from non-present to
/// present needs none (x86 caches no non-present translation). No mapping is ever both
/// writable and executable: the module address is read-only or executable where the layout
/// says so from the start, and the direct map is writable and never executable. The frames
/// are zeroed through the direct map before their entries exist, and written only there
/// until the module runs, so the first touch through the module address (at first use)
/// finds frames the host has backed and maps a whole group of eight at once (see
/// [`module_leaf_flags`]).
pub fn map_module_pages(
    virt: u64,
    pages: u64,
    perm: impl Fn(u64) -> KernelPerm,
) -> Result<u64, OutOfMemory> {
    debug_assert!(virt >= MODULE_AREA_START && virt + pages * PAGE_SIZE <= MODULE_AREA_END);
    let phys = frame::alloc_contiguous(pages).ok_or(OutOfMemory)?;
    // SAFETY: the frames were just allocated, so nothing else uses them, and the direct map
    // covers all RAM, writable.
    unsafe {
        core::ptr::write_bytes(
            phys_to_virt(phys) as *mut u8,
            0,
            (pages * PAGE_SIZE) as usize,
        )
    };
    let parent = kernel(F::PRESENT | F::WRITABLE);
    let mapped = with_mapper(|m| {
        for i in 0..pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt + i * PAGE_SIZE));
            let frame = PhysFrame::containing_address(PhysAddr::new(phys + i * PAGE_SIZE));
            let flags = module_leaf_flags(perm(i));
            // SAFETY: the frame is fresh and the module-area address is reserved for this
            // region alone. No TLB flush: the address was not mapped before (the area
            // allocator hands out only unmapped ranges), and x86 does not cache non-present
            // translations.
            match unsafe { m.map_to_with_table_flags(page, frame, flags, parent, &mut Frames) } {
                Ok(flush) => flush.ignore(),
                // No frame for a page table: out of memory, like the region's own frames.
                Err(MapToError::FrameAllocationFailed) => return Err(i),
                // The area allocator handed out a mapped range: a kernel bug.
                Err(e) => panic!("cannot map module page {:#x}: {e:?}", page.start_address()),
            }
        }
        Ok(())
    });
    if let Err(done) = mapped {
        // The first `done` pages are mapped: unmapping them frees their frames too.
        unmap_module_pages(virt, done);
        frame::free_contiguous(phys + done * PAGE_SIZE, pages - done);
        return Err(OutOfMemory);
    }
    Ok(phys)
}

/// [`map_module_pages`] for when no run of `pages` free frames is left (a fragmented
/// memory): takes the frames one at a time, maps them at `virt` with their final permissions
/// and also at `alias` (another free range of the module area) writable and not executable,
/// a window through which the caller writes the region as one slice, as it would through
/// the direct map; the caller removes the window with [`unmap_module_alias`] once the region
/// is written, before the module runs. The window adds no writable-and-executable mapping:
/// it is what the direct map already is for these frames, writable and never executable.
/// On failure nothing stays mapped or allocated but page tables.
pub fn map_module_pages_scattered(
    virt: u64,
    alias: u64,
    pages: u64,
    perm: impl Fn(u64) -> KernelPerm,
) -> Result<(), OutOfMemory> {
    debug_assert!(virt >= MODULE_AREA_START && virt + pages * PAGE_SIZE <= MODULE_AREA_END);
    debug_assert!(alias >= MODULE_AREA_START && alias + pages * PAGE_SIZE <= MODULE_AREA_END);
    let parent = kernel(F::PRESENT | F::WRITABLE);
    let window = module_leaf_flags(KernelPerm::ReadWrite);
    let mapped = with_mapper(|m| {
        for i in 0..pages {
            let Some(phys) = frame::alloc() else {
                return Err(i);
            };
            // SAFETY: the frame was just allocated, so nothing else uses it, and the direct
            // map covers all RAM, writable.
            unsafe { core::ptr::write_bytes(phys_to_virt(phys) as *mut u8, 0, PAGE_SIZE as usize) };
            let frame = PhysFrame::containing_address(PhysAddr::new(phys));
            let at = |base: u64| {
                Page::<Size4KiB>::containing_address(VirtAddr::new(base + i * PAGE_SIZE))
            };
            // SAFETY: the frame is fresh and both module-area addresses are reserved for this
            // region alone. No TLB flush: neither address was mapped before (the area
            // allocator hands out only unmapped ranges), and x86 does not cache non-present
            // translations.
            let result = unsafe {
                m.map_to_with_table_flags(
                    at(virt),
                    frame,
                    module_leaf_flags(perm(i)),
                    parent,
                    &mut Frames,
                )
                .and_then(|flush| {
                    flush.ignore();
                    m.map_to_with_table_flags(at(alias), frame, window, parent, &mut Frames)
                })
            };
            match result {
                Ok(flush) => flush.ignore(),
                Err(MapToError::FrameAllocationFailed) => {
                    // Page `i` may be mapped at `virt` (the window's table was the one
                    // missing): undo it here, the pages before it below.
                    if let Ok((_, flush)) = m.unmap(at(virt)) {
                        flush.ignore();
                    }
                    frame::free_contiguous(phys, 1);
                    return Err(i);
                }
                Err(e) => panic!(
                    "cannot map module page {:#x}: {e:?}",
                    at(virt).start_address()
                ),
            }
        }
        Ok(())
    });
    if let Err(done) = mapped {
        unmap_module_alias(alias, done);
        // The first `done` pages are mapped at `virt`: unmapping them frees their frames.
        unmap_module_pages(virt, done);
        return Err(OutOfMemory);
    }
    Ok(())
}

/// Removes the write window [`map_module_pages_scattered`] mapped at `alias`, leaving its
/// frames to the region they belong to; flushes the window's translations, since the CPU may
/// have cached them while the region was written.
pub fn unmap_module_alias(alias: u64, pages: u64) {
    with_mapper(|m| {
        for i in 0..pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(alias + i * PAGE_SIZE));
            match m.unmap(page) {
                Ok((_, flush)) => flush.ignore(),
                Err(e) => panic!(
                    "module write window page {:#x} is not mapped: {e:?}",
                    page.start_address()
                ),
            }
        }
    });
    flush_range(alias, pages);
}

/// Serialises instruction fetch after module code was written, as Linux's `sync_core` does.
///
/// The code was written through the direct map, a linear address other than the one it will
/// run at, and a processor need not notice such a write to code it may have fetched already
/// until it executes a serialising instruction (Intel SDM vol. 3 §11.6, "Self-Modifying
/// Code"; AMD APM vol. 2 §7.6.1). IRETQ is serialising on both vendors (SDM vol. 3 §9.3, APM
/// vol. 2 §7.6.4) and, unlike CPUID, never leaves the guest: CPUID exits to the hypervisor
/// under VMX and SVM and traps on kvm_pvm (≈ 11–26 k cycles measured there, against ≈
/// 150–550 for this), which is also why Linux falls back to this same IRET to self when the
/// SERIALIZE instruction is missing. No TLB flush or CR3 write is left in the load path to do
/// the serialising instead.
pub fn sync_core() {
    // SAFETY: builds an interrupt-return frame of the current SS, RSP, RFLAGS and CS and the
    // address of the next instruction, so IRETQ returns to the following instruction with
    // every register but `tmp` (declared clobbered) as it was, flags included; the five
    // pushes are popped by IRETQ itself, so the stack is balanced. (The kernel is built
    // without a red zone, so pushing below RSP is allowed.)
    unsafe {
        core::arch::asm!(
            "mov {tmp:e}, ss",
            "push {tmp}",
            "push rsp",
            "add qword ptr [rsp], 8",
            "pushfq",
            "mov {tmp:e}, cs",
            "push {tmp}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "iretq",
            "2:",
            tmp = out(reg) _,
        );
    }
}

/// Creates the page table that maps the first 2 MiB of the module area, empty, and links it
/// into the live tables: once, when the module subsystem starts, as Linux preallocates the
/// upper levels of its vmalloc area (`preallocate_vmalloc_pages`).
///
/// Why at start: on kvm_pvm a table that no page walk has gone through yet is not shadowed by
/// the hypervisor, so the entries the first modules' loads write into it cost nothing, while
/// creating it during a load costs a fresh frame's first touch and a trapped write of the
/// live directory entry (≈ 12 k + ≈ 20 k cycles measured). It costs the same here, once.
pub fn prepare_module_area() {
    let _guard = PAGING.lock();
    let va = VirtAddr::new(MODULE_AREA_START);
    let table_at = |phys: u64| phys_to_virt(phys) as *mut PageTable;
    // SAFETY: KERNEL_PML4 is the kernel's PML4, reachable through the direct map; the paging
    // lock makes this the only reference to it and to the tables below it.
    let mut table = unsafe { &mut *table_at(kernel_pml4()) };
    for index in [va.p4_index(), va.p3_index()] {
        let entry = &table[index];
        // Not there (the kernel stacks share the directory and normally created it): the
        // first load creates the tables, as it would without this.
        if !entry.flags().contains(F::PRESENT) || entry.flags().contains(F::HUGE_PAGE) {
            return;
        }
        // SAFETY: a present, non-huge upper-half entry points to a page table of the kernel
        // half, reachable through the direct map, referenced by nothing else under the lock.
        table = unsafe { &mut *table_at(entry.addr().as_u64()) };
    }
    let entry = &mut table[va.p2_index()];
    if entry.flags().contains(F::PRESENT) {
        return;
    }
    let Some(phys) = frame::alloc() else {
        return;
    };
    KERNEL_TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the frame was just allocated for this table alone and is reached through the
    // direct map; an all-zero table maps nothing.
    unsafe { table_at(phys).write(PageTable::new()) };
    // No flush: the entry was not present, and x86 caches no non-present translation.
    entry.set_addr(PhysAddr::new(phys), kernel(F::PRESENT | F::WRITABLE));
}

/// Above this many pages, one full TLB flush is cheaper than one `invlpg` per page (Linux's
/// `tlb_single_page_flush_ceiling`).
const FLUSH_CEILING: u64 = 33;

/// Flushes the TLB entries of `pages` pages at `virt`: page by page, or all at once above
/// [`FLUSH_CEILING`], as Linux's `flush_tlb_kernel_range` does.
///
/// On kvm_pvm every `invlpg` is a trip through the hypervisor (≈150 k cycles measured), and
/// so is a CR3 reload: there one full flush replaces any run of more than one `invlpg`. That
/// is correct on hardware KVM too (a CR3 reload drops every non-global entry, and module
/// pages are never global), where the ceiling keeps Linux's trade-off instead.
pub fn flush_range(virt: u64, pages: u64) {
    let ceiling = if kernel_entries_user() {
        1
    } else {
        FLUSH_CEILING
    };
    if pages > ceiling {
        x86_64::instructions::tlb::flush_all();
    } else {
        for i in 0..pages {
            x86_64::instructions::tlb::flush(VirtAddr::new(virt + i * PAGE_SIZE));
        }
    }
}

/// Pages [`unmap_module_pages`] unmaps between TLB flushes: their frames wait on the stack
/// (not the heap: the undo of a failed load must not need memory) until the flush.
const UNMAP_BATCH: usize = 64;

/// Unmaps `pages` module pages at `virt` and frees their frames (the TLB is flushed before
/// any frame can be reused). Allocates nothing, so it cannot fail for want of memory: it
/// runs as the undo of loads that did.
pub fn unmap_module_pages(virt: u64, pages: u64) {
    let mut done = 0u64;
    while done < pages {
        let batch = (pages - done).min(UNMAP_BATCH as u64);
        let start = virt + done * PAGE_SIZE;
        let mut frames = [0u64; UNMAP_BATCH];
        with_mapper(|m| {
            for (i, slot) in frames.iter_mut().enumerate().take(batch as usize) {
                let addr = start + i as u64 * PAGE_SIZE;
                let page = Page::<Size4KiB>::containing_address(VirtAddr::new(addr));
                match m.unmap(page) {
                    Ok((frame, flush)) => {
                        flush.ignore();
                        *slot = frame.start_address().as_u64();
                    }
                    Err(e) => panic!("module page {addr:#x} is not mapped: {e:?}"),
                }
            }
        });
        flush_range(start, batch);
        for &f in frames.iter().take(batch as usize) {
            frame::free_contiguous(f, 1);
        }
        done += batch;
    }
}

/// No frame was left for a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;
