//! Where everything goes in a module server's address space ([`kmodlab_ipc::layout`]):
//!
//! ```text
//! RUNTIME_BASE   the runtime's segments (RX text, R rodata, RW data)   as its ELF says
//! HEAP_BASE      the heap: HEAP_PAGES mapped RW at start, grown on request up to HEAP_END
//! STUB_BASE      call stubs, one per import of another module's export  RX
//! MODULE_BASE    core region (RX / R / RW runs, as the loader laid them out)
//!                charp parameter strings                               R
//!                init region (its runs), unmapped after init
//! STACK_TOP      the stack: STACK_PAGES RW below it, an unmapped guard page below that
//! ```
//!
//! Every part is page-aligned and has one permission per page; nothing is both writable and
//! executable, and nothing but the UTCB (the kernel's) lies above the module area below the
//! stack.

use kmodlab_ipc::layout::{self, PAGE_SIZE};
use kmodlab_ipc::server::STUB_SIZE;

/// Pages of a server's stack (64 KiB); the page below them stays unmapped, a guard.
pub const STACK_PAGES: u64 = 16;
/// Pages of heap mapped before the server starts (64 KiB: the runtime's buffers and the
/// module's first allocations); more on request.
pub const HEAP_PAGES: u64 = 16;

/// Where one module server's parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPlan {
    /// Core region start ([`layout::MODULE_BASE`]).
    pub core_base: u64,
    /// Core region pages (at least one, as the monolithic kernel maps).
    pub core_pages: u64,
    /// Parameter strings start (right after core).
    pub params_base: u64,
    /// Parameter string pages (0 if none).
    pub params_pages: u64,
    /// Init region start (right after the parameter strings).
    pub init_base: u64,
    /// Init region pages (0 if none).
    pub init_pages: u64,
    /// Call stubs.
    pub stubs: u64,
    /// Pages of the stubs at [`layout::STUB_BASE`].
    pub stub_pages: u64,
    /// First page of the stack.
    pub stack_bottom: u64,
}

/// Why a module does not fit a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanError {
    /// Its regions do not fit the module area.
    ModuleTooLarge {
        /// Bytes needed.
        bytes: u64,
    },
    /// More imports than the stub area holds.
    TooManyImports(u64),
}

/// Plans a server for a module with regions of `core` and `init` bytes, `params` bytes of
/// parameter strings and `stubs` call stubs.
pub fn plan(core: u64, params: u64, init: u64, stubs: u64) -> Result<ServerPlan, PlanError> {
    let pages = |bytes: u64| bytes.div_ceil(PAGE_SIZE);
    let core_pages = pages(core).max(1);
    let params_pages = pages(params);
    let init_pages = pages(init);
    let total = core_pages
        .checked_add(params_pages)
        .and_then(|p| p.checked_add(init_pages))
        .and_then(|p| p.checked_mul(PAGE_SIZE));
    let area = layout::MODULE_END - layout::MODULE_BASE;
    let bytes = core.saturating_add(params).saturating_add(init);
    if total.is_none_or(|t| t > area) {
        return Err(PlanError::ModuleTooLarge { bytes });
    }
    let stub_bytes = stubs
        .checked_mul(STUB_SIZE)
        .filter(|&b| b <= layout::STUB_END - layout::STUB_BASE)
        .ok_or(PlanError::TooManyImports(stubs))?;
    let core_base = layout::MODULE_BASE;
    let params_base = core_base + core_pages * PAGE_SIZE;
    let init_base = params_base + params_pages * PAGE_SIZE;
    Ok(ServerPlan {
        core_base,
        core_pages,
        params_base,
        params_pages,
        init_base,
        init_pages,
        stubs,
        stub_pages: pages(stub_bytes),
        stack_bottom: layout::STACK_TOP - STACK_PAGES * PAGE_SIZE,
    })
}

/// A region of the module, for fault reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The core region.
    Core,
    /// The init region.
    Init,
}

impl ServerPlan {
    /// Address of stub `index`.
    pub fn stub_address(&self, index: u64) -> u64 {
        layout::STUB_BASE + index * STUB_SIZE
    }

    /// The module region holding `addr` and the offset in it (`init_mapped`: whether the
    /// init region still is).
    pub fn locate(&self, addr: u64, init_mapped: bool) -> Option<(Region, u64)> {
        let within = |base: u64, pages: u64| addr >= base && addr - base < pages * PAGE_SIZE;
        if within(self.core_base, self.core_pages) {
            Some((Region::Core, addr - self.core_base))
        } else if init_mapped && within(self.init_base, self.init_pages) {
            Some((Region::Init, addr - self.init_base))
        } else {
            None
        }
    }

    /// Every page range the plan maps, as `(start, pages)` (empty parts left out), for
    /// checking that nothing overlaps.
    pub fn ranges(&self) -> [(u64, u64); 6] {
        [
            (self.core_base, self.core_pages),
            (self.params_base, self.params_pages),
            (self.init_base, self.init_pages),
            (layout::STUB_BASE, self.stub_pages),
            (layout::HEAP_BASE, HEAP_PAGES),
            (self.stack_bottom, STACK_PAGES),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_follow_each_other_page_aligned() {
        let p = plan(5000, 10, 4096, 3).unwrap();
        assert_eq!(p.core_base, layout::MODULE_BASE);
        assert_eq!(p.core_pages, 2);
        assert_eq!(p.params_base, layout::MODULE_BASE + 2 * PAGE_SIZE);
        assert_eq!(p.params_pages, 1);
        assert_eq!(p.init_base, layout::MODULE_BASE + 3 * PAGE_SIZE);
        assert_eq!(p.init_pages, 1);
        assert_eq!(p.stub_pages, 1);
        assert_eq!(p.stub_address(2), layout::STUB_BASE + 32);
        assert_eq!(
            p.locate(layout::MODULE_BASE + 4100, true),
            Some((Region::Core, 4100))
        );
        assert_eq!(p.locate(p.init_base + 8, true), Some((Region::Init, 8)));
        assert_eq!(p.locate(p.init_base + 8, false), None);
        assert_eq!(p.locate(p.params_base, true), None);
        // The guard page under the stack is nobody's.
        let guard = p.stack_bottom - PAGE_SIZE;
        assert!(
            p.ranges()
                .iter()
                .all(|&(s, n)| guard < s || guard >= s + n * PAGE_SIZE)
        );
        // An empty module still gets a core page, as in the monolithic kernel.
        assert_eq!(plan(0, 0, 0, 0).unwrap().core_pages, 1);
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let area = layout::MODULE_END - layout::MODULE_BASE;
        assert_eq!(
            plan(area, 0, 1, 0),
            Err(PlanError::ModuleTooLarge { bytes: area + 1 })
        );
        assert_eq!(
            plan(u64::MAX, u64::MAX, 0, 0),
            Err(PlanError::ModuleTooLarge { bytes: u64::MAX })
        );
        let max_stubs = (layout::STUB_END - layout::STUB_BASE) / STUB_SIZE;
        assert!(plan(1, 0, 0, max_stubs).is_ok());
        assert_eq!(
            plan(1, 0, 0, max_stubs + 1),
            Err(PlanError::TooManyImports(max_stubs + 1))
        );
    }

    proptest! {
        #[test]
        fn planned_parts_never_overlap_and_stay_in_their_ranges(
            core in 0u64..(64 << 20), params in 0u64..8192, init in 0u64..(64 << 20), stubs in 0u64..10_000,
        ) {
            let p = plan(core, params, init, stubs).unwrap();
            let r = p.ranges();
            for (i, a) in r.iter().enumerate() {
                prop_assert_eq!(a.0 % PAGE_SIZE, 0);
                for b in &r[i + 1..] {
                    let disjoint = a.1 == 0 || b.1 == 0
                        || a.0 + a.1 * PAGE_SIZE <= b.0 || b.0 + b.1 * PAGE_SIZE <= a.0;
                    prop_assert!(disjoint, "{:x?} overlaps {:x?}", a, b);
                }
            }
            prop_assert!(p.init_base + p.init_pages * PAGE_SIZE <= layout::MODULE_END);
            prop_assert!(p.core_pages * PAGE_SIZE >= core);
            prop_assert!(layout::STUB_BASE + p.stub_pages * PAGE_SIZE <= layout::STUB_END);
        }
    }
}
