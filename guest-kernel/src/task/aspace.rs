//! Address spaces: one PML4 per task. The upper half (kernel) is shared: every address space
//! copies the kernel's top-level entries, which point at the same lower-level tables, so a
//! kernel mapping made later (a module, a kernel stack) is visible everywhere. The lower half
//! is the task's own; every page of it belongs to exactly one address space and is freed with
//! it.
//!
//! With the kernel/user page-table split on (`kpti=`, see `arch::entry`), an address space
//! has a second PML4, its *user view*, which user mode runs on: the same lower-half entries
//! (kept in step by every mapping change here), and in the upper half only the entry area.
//!
//! The kernel never dereferences a user pointer: it translates the address in the task's own
//! tables and reaches the frame through the direct map, so it can copy to and from any task
//! (not only the one whose tables are active) and a bad address is an error, not a fault.

use kmodlab_ipc::layout::{PAGE_SIZE, USER_END, USER_MIN};
use kmodlab_ipc::task::Perm;
use x86_64::structures::paging::mapper::{MappedFrame, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame,
    Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::mm::{frame, paging};

/// Why a mapping request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame left for a page or a page table.
    OutOfMemory,
    /// The range is not (wholly) in the mappable user range, or not page-aligned.
    BadRange,
    /// A page of the range is already mapped.
    AlreadyMapped(u64),
    /// A page of the range is not mapped.
    NotMapped(u64),
}

impl MapError {
    /// The errno a system call reports for it.
    pub fn errno(self) -> u64 {
        match self {
            MapError::OutOfMemory => guest_rt::errno::ENOMEM,
            MapError::BadRange | MapError::AlreadyMapped(_) | MapError::NotMapped(_) => {
                guest_rt::errno::EINVAL
            }
        }
    }
}

/// A page-table frame allocator that counts what it hands out.
struct CountingFrames<'a>(&'a mut u64);

// SAFETY: frames come from the frame allocator, which hands each frame out once until freed.
unsafe impl FrameAllocator<Size4KiB> for CountingFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let phys = frame::alloc()?;
        *self.0 += 1;
        Some(PhysFrame::containing_address(PhysAddr::new(phys)))
    }
}

/// One task's address space.
#[derive(Debug)]
pub struct AddressSpace {
    /// Physical address of its PML4.
    pml4: u64,
    /// Physical address of its user view's PML4, 0 if the split is off.
    user_view: u64,
    /// User pages mapped (leaf frames).
    pages: u64,
    /// Page-table frames of the user half (PDPT, PD, PT; the PML4 not counted).
    table_pages: u64,
}

fn flags(perm: Perm) -> F {
    let base = F::PRESENT | F::USER_ACCESSIBLE;
    match perm {
        Perm::ReadOnly => base | F::NO_EXECUTE,
        Perm::ReadWrite => base | F::WRITABLE | F::NO_EXECUTE,
        Perm::ReadExecute => base,
    }
}

/// Whether `[vaddr, vaddr + pages pages)` is page-aligned and inside the mappable user range.
fn user_range(vaddr: u64, pages: u64) -> Result<(), MapError> {
    let len = pages.checked_mul(PAGE_SIZE).ok_or(MapError::BadRange)?;
    let end = vaddr.checked_add(len).ok_or(MapError::BadRange)?;
    if !vaddr.is_multiple_of(PAGE_SIZE) || vaddr < USER_MIN || end > USER_END {
        return Err(MapError::BadRange);
    }
    Ok(())
}

impl AddressSpace {
    /// An empty address space sharing the kernel's upper half.
    pub fn new() -> Result<AddressSpace, MapError> {
        let pml4 = frame::alloc().ok_or(MapError::OutOfMemory)?;
        let table = paging::phys_to_virt(pml4) as *mut PageTable;
        let kernel = paging::phys_to_virt(paging::kernel_pml4()) as *const PageTable;
        // SAFETY: `pml4` is a frame just allocated for this table alone, reached through the
        // direct map; the kernel's PML4 is only read (its upper-half entries are fixed after
        // boot, see paging::init), and the two frames are distinct.
        unsafe {
            table.write(PageTable::new());
            let (table, kernel) = (&mut *table, &*kernel);
            for i in 256..512 {
                table[i] = kernel[i].clone();
            }
        }
        let user_view = match paging::user_view_template() {
            None => 0,
            Some(template) => {
                let Some(view) = frame::alloc() else {
                    frame::free_contiguous(pml4, 1);
                    return Err(MapError::OutOfMemory);
                };
                let table = paging::phys_to_virt(view) as *mut PageTable;
                let template = paging::phys_to_virt(template) as *const PageTable;
                // SAFETY: `view` is a frame just allocated for this table alone; the template
                // is only read (it is fixed after boot); the two frames are distinct.
                unsafe {
                    table.write(PageTable::new());
                    let (table, template) = (&mut *table, &*template);
                    for i in 256..512 {
                        table[i] = template[i].clone();
                    }
                }
                view
            }
        };
        Ok(AddressSpace {
            pml4,
            user_view,
            pages: 0,
            table_pages: 0,
        })
    }

    /// Physical address of the user view's PML4 (what CR3 holds while the task runs in user
    /// mode), if the kernel/user split is on.
    pub fn user_root(&self) -> Option<u64> {
        (self.user_view != 0).then_some(self.user_view)
    }

    /// Copies the lower-half PML4 entry that covers `vaddr` into the user view (after a
    /// mapping may have created it).
    fn sync_user_view(&mut self, vaddr: u64) {
        if self.user_view == 0 {
            return;
        }
        let slot = ((vaddr >> 39) & 511) as usize;
        let table = paging::phys_to_virt(self.pml4) as *const PageTable;
        let view = paging::phys_to_virt(self.user_view) as *mut PageTable;
        // SAFETY: both PML4 frames belong to this address space, which `&mut self` borrows
        // exclusively; `slot` is below 256 (user addresses only), so only the user half of
        // the view changes, to exactly what the task's own PML4 holds.
        unsafe { (&mut *view)[slot] = (&*table)[slot].clone() };
    }

    /// Physical address of the PML4 (what CR3 holds while the task runs).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// User pages mapped.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// User page-table pages.
    pub fn table_pages(&self) -> u64 {
        self.table_pages
    }

    fn mapper(&mut self) -> OffsetPageTable<'static> {
        let table = paging::phys_to_virt(self.pml4) as *mut PageTable;
        // SAFETY: the PML4 frame belongs to this address space, which `&mut self` borrows
        // exclusively for as long as the mapper is used (callers never keep it), and every
        // table frame is reachable through the direct map at PHYS_MAP_BASE.
        unsafe { OffsetPageTable::new(&mut *table, VirtAddr::new(paging::PHYS_MAP_BASE)) }
    }

    fn read_mapper(&self) -> OffsetPageTable<'static> {
        let table = paging::phys_to_virt(self.pml4) as *mut PageTable;
        // SAFETY: as in `mapper`; this mapper is only used to translate (read the tables),
        // and the single CPU runs no other code that could change them meanwhile.
        unsafe { OffsetPageTable::new(&mut *table, VirtAddr::new(paging::PHYS_MAP_BASE)) }
    }

    /// Maps `frame` (which the caller hands over to this address space) at `vaddr`.
    fn map_frame(&mut self, vaddr: u64, phys: u64, perm: Perm) -> Result<(), MapError> {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        let mut tables = self.table_pages;
        let parent = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
        let mut mapper = self.mapper();
        // SAFETY: the frame is fresh and owned by this address space from now on; the page
        // is in the user half and was not mapped (map_to checks); a TLB flush is not needed
        // for a page that was not present (x86 does not cache non-present entries).
        let result = unsafe {
            mapper.map_to_with_table_flags(
                page,
                frame,
                flags(perm),
                parent,
                &mut CountingFrames(&mut tables),
            )
        };
        self.table_pages = tables;
        self.sync_user_view(vaddr);
        match result {
            Ok(flush) => {
                flush.ignore();
                self.pages += 1;
                Ok(())
            }
            Err(x86_64::structures::paging::mapper::MapToError::FrameAllocationFailed) => {
                Err(MapError::OutOfMemory)
            }
            Err(_) => Err(MapError::AlreadyMapped(vaddr)),
        }
    }

    /// Maps `pages` fresh zeroed frames at `vaddr` with `perm`; on failure nothing of the
    /// range stays mapped. Returns the physical address of the first frame.
    pub fn map_zeroed(&mut self, vaddr: u64, pages: u64, perm: Perm) -> Result<u64, MapError> {
        user_range(vaddr, pages)?;
        let mut first = 0;
        for i in 0..pages {
            let va = vaddr + i * PAGE_SIZE;
            let result = match frame::alloc() {
                None => Err(MapError::OutOfMemory),
                Some(phys) => {
                    // SAFETY: the frame was just allocated and is reached through the direct
                    // map; nothing else uses it.
                    unsafe {
                        core::ptr::write_bytes(
                            paging::phys_to_virt(phys) as *mut u8,
                            0,
                            PAGE_SIZE as usize,
                        )
                    };
                    let r = self.map_frame(va, phys, perm);
                    if r.is_err() {
                        frame::free_contiguous(phys, 1);
                    }
                    r.map(|()| phys)
                }
            };
            match result {
                Ok(phys) => {
                    if i == 0 {
                        first = phys;
                    }
                }
                Err(e) => {
                    // Undo: the pages mapped so far are ours, so unmapping them cannot fail.
                    let _ = self.unmap(vaddr, i);
                    return Err(e);
                }
            }
        }
        Ok(first)
    }

    /// Unmaps `pages` pages at `vaddr` and frees their frames. Checks the whole range first,
    /// so a failure changes nothing.
    pub fn unmap(&mut self, vaddr: u64, pages: u64) -> Result<(), MapError> {
        user_range(vaddr, pages)?;
        for i in 0..pages {
            let va = vaddr + i * PAGE_SIZE;
            if self.translate(va).is_none() {
                return Err(MapError::NotMapped(va));
            }
        }
        let mut mapper = self.mapper();
        let mut freed = 0;
        for i in 0..pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr + i * PAGE_SIZE));
            if let Ok((frame, flush)) = mapper.unmap(page) {
                // The flush matters only if these tables are active; it is cheap otherwise.
                flush.flush();
                frame::free_contiguous(frame.start_address().as_u64(), 1);
                freed += 1;
            }
        }
        self.pages -= freed;
        Ok(())
    }

    /// Changes the permissions of mapped pages (all-or-nothing, like [`Self::unmap`]).
    pub fn protect(&mut self, vaddr: u64, pages: u64, perm: Perm) -> Result<(), MapError> {
        user_range(vaddr, pages)?;
        for i in 0..pages {
            let va = vaddr + i * PAGE_SIZE;
            if self.translate(va).is_none() {
                return Err(MapError::NotMapped(va));
            }
        }
        let mut mapper = self.mapper();
        for i in 0..pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr + i * PAGE_SIZE));
            // SAFETY: the page is a user page of this address space (checked above); only
            // this task's view of its own memory changes.
            if let Ok(flush) = unsafe { mapper.update_flags(page, flags(perm)) } {
                flush.flush();
            }
        }
        Ok(())
    }

    /// The frame and permissions of user address `vaddr`, if mapped.
    pub fn translate(&self, vaddr: u64) -> Option<UserMapping> {
        if !(USER_MIN..USER_END).contains(&vaddr) {
            return None;
        }
        match self.read_mapper().translate(VirtAddr::new(vaddr)) {
            TranslateResult::Mapped {
                frame: MappedFrame::Size4KiB(f),
                offset,
                flags,
            } if flags.contains(F::USER_ACCESSIBLE) => Some(UserMapping {
                phys: f.start_address().as_u64() + offset,
                writable: flags.contains(F::WRITABLE),
                executable: !flags.contains(F::NO_EXECUTE),
            }),
            _ => None,
        }
    }

    /// Copies user memory at `vaddr` into `out`. `Err` (EFAULT) if any byte is not mapped.
    pub fn read(&self, vaddr: u64, out: &mut [u8]) -> Result<(), Fault> {
        self.for_each_chunk(vaddr, out.len(), false, |phys, at, n| {
            // SAFETY: `phys..phys+n` lies in one mapped user frame (checked by the caller of
            // the closure), reached through the direct map; `out[at..at+n]` is in bounds.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    paging::phys_to_virt(phys) as *const u8,
                    out.as_mut_ptr().add(at),
                    n,
                )
            }
        })
    }

    /// Copies `data` to user memory at `vaddr`; `writable_only` refuses read-only pages (a
    /// task's own writes); the kernel loading code passes `false`.
    pub fn write(&self, vaddr: u64, data: &[u8], writable_only: bool) -> Result<(), Fault> {
        self.for_each_chunk(vaddr, data.len(), writable_only, |phys, at, n| {
            // SAFETY: as in `read`, in the other direction; the frame belongs to this
            // address space, so no kernel data is overwritten.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr().add(at),
                    paging::phys_to_virt(phys) as *mut u8,
                    n,
                )
            }
        })
    }

    /// Checks that all of `[vaddr, vaddr + len)` is mapped (writable if `write`).
    pub fn check(&self, vaddr: u64, len: u64, write: bool) -> Result<(), Fault> {
        let end = vaddr.checked_add(len).ok_or(Fault)?;
        if len == 0 {
            return Ok(());
        }
        let mut page = vaddr & !(PAGE_SIZE - 1);
        while page < end {
            match self.translate(page) {
                Some(m) if m.writable || !write => {}
                _ => return Err(Fault),
            }
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// Calls `f(phys, offset_in_buffer, len)` for each page-bounded piece of the range, after
    /// checking the whole range is mapped (so a failure copies nothing).
    fn for_each_chunk(
        &self,
        vaddr: u64,
        len: usize,
        writable_only: bool,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), Fault> {
        self.check(vaddr, len as u64, writable_only)?;
        let mut done = 0usize;
        while done < len {
            let va = vaddr + done as u64;
            let in_page = (PAGE_SIZE - va % PAGE_SIZE) as usize;
            let n = in_page.min(len - done);
            let m = self.translate(va).ok_or(Fault)?;
            f(m.phys, done, n);
            done += n;
        }
        Ok(())
    }

    /// Frees every user page and page table.
    fn clear_user_half(&mut self) {
        // SAFETY: the PML4 belongs to this address space, which `&mut self` borrows
        // exclusively; its lower-half entries point at tables that belong to it alone.
        let table = unsafe { &mut *(paging::phys_to_virt(self.pml4) as *mut PageTable) };
        if self.user_view != 0 {
            // SAFETY: the user view's PML4 belongs to this address space too; its lower half
            // points at the same tables, which the loop below frees.
            let view = unsafe { &mut *(paging::phys_to_virt(self.user_view) as *mut PageTable) };
            for i in 0..256 {
                view[i].set_unused();
            }
        }
        for i in 0..256 {
            let entry = &mut table[i];
            if entry.flags().contains(F::PRESENT) {
                paging::free_user_table(entry.addr().as_u64(), 3);
                entry.set_unused();
            }
        }
        self.pages = 0;
        self.table_pages = 0;
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // The caller has made sure these tables are not active (see task::destroy).
        debug_assert_ne!(paging::active_root(), self.pml4);
        self.clear_user_half();
        frame::free_contiguous(self.pml4, 1);
        if self.user_view != 0 {
            frame::free_contiguous(self.user_view, 1);
        }
    }
}

/// A mapped user page, as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserMapping {
    /// Physical address of the byte.
    pub phys: u64,
    /// Writable by the task.
    pub writable: bool,
    /// Executable by the task.
    pub executable: bool,
}

/// A user address range that is not (wholly) mapped: `-EFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;
