//! Step 2, **layout**: give every loaded section an offset in its region, and reserve the GOT.
//!
//! Each region is laid out as up to three page-aligned runs, in this order: code (RX),
//! read-only data (R; the GOT goes at its end), writable data (RW). Sections keep their file
//! order inside a run. Because runs start and end on page boundaries, a caller can map each
//! run with its own permission and no page is ever writable and executable. Offsets are
//! relative to the region base, which the caller chooses later (it must be page-aligned).

use alloc::vec::Vec;

use crate::counts::{LayoutCounts, RegionCounts};
use crate::error::Error;
use crate::validate::{
    Disposition, MAX_REGION_SIZE, Module, PAGE_SIZE, Permission, RegionKind, SectionEntry,
};

/// Size of one GOT slot: a 64-bit address.
pub const GOT_SLOT_SIZE: u64 = 8;

/// A page-aligned range of a region with one permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermissionRange {
    /// First byte, as an offset in the region (page-aligned).
    pub start: u64,
    /// One past the last byte (page-aligned).
    pub end: u64,
    /// Page permission.
    pub permission: Permission,
}

/// The layout of one region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionLayout {
    /// Bytes the caller must supply (page-aligned; 0 when the region is empty).
    pub size: u64,
    /// Permission runs, in address order, covering `0..size` without gaps.
    pub ranges: Vec<PermissionRange>,
}

/// Where a section was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionPlacement {
    /// Region.
    pub region: RegionKind,
    /// Offset in the region.
    pub offset: u64,
    /// Size in memory.
    pub size: u64,
    /// Page permission.
    pub permission: Permission,
}

/// Result of [`layout`].
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// The core region.
    pub core: RegionLayout,
    /// The init region.
    pub init: RegionLayout,
    /// Placement of each section, by section index (`None`: not loaded).
    placements: Vec<Option<SectionPlacement>>,
    /// Loaded section indices in offset order: the core region's, then the init region's.
    order: Vec<u32>,
    /// How many of `order` are in the core region.
    core_sections: usize,
    /// Scratch: section indices of each run (see `run_of`).
    runs: [Vec<u32>; 6],
    /// Offset of the GOT in the core region.
    got_offset: u64,
    /// Symbol index of each GOT slot.
    got_symbols: Vec<u32>,
    /// GOT slot of each symbol index, `u32::MAX` for none (empty when there is no GOT).
    got_slot_of: Vec<u32>,
    counts: LayoutCounts,
}

impl Layout {
    /// Where section `index` was placed, if it is loaded.
    pub fn placement(&self, index: u32) -> Option<SectionPlacement> {
        self.placements
            .get(usize::try_from(index).ok()?)
            .copied()
            .flatten()
    }

    /// Placements by section index.
    pub(crate) fn placement_slice(&self) -> &[Option<SectionPlacement>] {
        &self.placements
    }

    /// Placements of all loaded sections, as `(section index, placement)`.
    pub fn placements(&self) -> impl Iterator<Item = (u32, SectionPlacement)> + '_ {
        self.placements
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((u32::try_from(i).ok()?, (*p)?)))
    }

    /// The loaded sections of `region`, by section index, in offset order.
    pub fn order(&self, region: RegionKind) -> &[u32] {
        let (core, init) = self
            .order
            .split_at_checked(self.core_sections)
            .unwrap_or((&self.order, &[]));
        match region {
            RegionKind::Core => core,
            RegionKind::Init => init,
        }
    }

    /// The region layout for `region`.
    pub fn region(&self, region: RegionKind) -> &RegionLayout {
        match region {
            RegionKind::Core => &self.core,
            RegionKind::Init => &self.init,
        }
    }

    /// Offset of the GOT in the core region (meaningful when [`Self::got_symbols`] is non-empty).
    pub fn got_offset(&self) -> u64 {
        self.got_offset
    }

    /// The symbol index of each GOT slot, in slot order.
    pub fn got_symbols(&self) -> &[u32] {
        &self.got_symbols
    }

    /// The GOT slot reserved for symbol `index`, if any.
    pub fn got_slot(&self, symbol: u32) -> Option<u32> {
        self.got_slot_of
            .get(usize::try_from(symbol).ok()?)
            .copied()
            .filter(|&slot| slot != u32::MAX)
    }

    /// Offset in the core region of the GOT slot reserved for symbol `index`, if any.
    pub fn got_slot_offset(&self, symbol: u32) -> Option<u64> {
        let slot = self.got_slot(symbol)?;
        u64::from(slot)
            .checked_mul(GOT_SLOT_SIZE)?
            .checked_add(self.got_offset)
    }

    /// A GOT whose only slot is for `symbol`, at `offset` (unit tests of the relocation loop).
    #[cfg(test)]
    pub(crate) fn set_got_for_test(&mut self, symbol: u32, offset: u64) {
        self.got_offset = offset;
        self.got_symbols = alloc::vec![symbol];
        self.got_slot_of = alloc::vec![u32::MAX; symbol as usize + 1];
        self.got_slot_of[symbol as usize] = 0;
    }

    /// What layout counted.
    pub fn counts(&self) -> &LayoutCounts {
        &self.counts
    }
}

fn align_up(value: u64, align: u64, region: RegionKind) -> Result<u64, Error> {
    // `align` is a power of two (validated, or a constant).
    let mask = align.saturating_sub(1);
    // A match, not `ok_or`: the error is built only when it is returned.
    match value.checked_add(mask) {
        Some(v) => Ok(v & !mask),
        None => Err(Error::RegionTooLarge {
            region,
            size: value,
            max: MAX_REGION_SIZE,
        }),
    }
}

fn advance(cursor: u64, by: u64, region: RegionKind) -> Result<u64, Error> {
    cursor
        .checked_add(by)
        .filter(|&end| end <= MAX_REGION_SIZE)
        .ok_or_else(|| Error::RegionTooLarge {
            region,
            size: cursor.saturating_add(by),
            max: MAX_REGION_SIZE,
        })
}

/// Computes where every loaded section goes and reserves one GOT slot per distinct symbol
/// referenced by a GOTPCREL-family relocation (validation found them).
pub fn layout(module: &Module<'_>) -> Result<Layout, Error> {
    let mut layout = Layout::default();
    layout_into(module, &mut layout)?;
    Ok(layout)
}

/// [`layout`], into `layout`'s memory (whatever it held is replaced).
pub(crate) fn layout_into(module: &Module<'_>, layout: &mut Layout) -> Result<(), Error> {
    let got_symbols = module.got_symbols();
    layout.got_symbols.clear();
    layout.got_symbols.extend_from_slice(got_symbols);
    layout.got_slot_of.clear();
    if !got_symbols.is_empty() {
        layout.got_slot_of.resize(module.symbol_count(), u32::MAX);
        for (slot, &symbol) in got_symbols.iter().enumerate() {
            if let Some(entry) = usize::try_from(symbol)
                .ok()
                .and_then(|i| layout.got_slot_of.get_mut(i))
            {
                *entry = u32::try_from(slot).unwrap_or(u32::MAX);
            }
        }
    }
    let got_size = u64::try_from(got_symbols.len())
        .ok()
        .and_then(|n| n.checked_mul(GOT_SLOT_SIZE))
        .unwrap_or(u64::MAX);

    let sections = module.section_entries();
    layout.placements.clear();
    layout.placements.resize(sections.len(), None);
    layout.order.clear();
    layout.core_sections = 0;
    let mut counts = LayoutCounts {
        got_slots: got_symbols.len(),
        ..LayoutCounts::default()
    };
    // Each region is up to three runs (RX, R, RW), sections in file order inside a run: one
    // pass over the sections sorts their indices into the six runs, then each run is placed.
    let mut runs: [Vec<u32>; 6] = core::mem::take(&mut layout.runs);
    for run in &mut runs {
        run.clear();
    }
    for (index, section) in sections.iter().enumerate() {
        if let Disposition::Load { region, permission } = section.disposition
            && let Some(run) = runs.get_mut(run_of(region, permission))
        {
            run.push(u32::try_from(index).unwrap_or(u32::MAX));
        }
    }
    let result = place_runs(layout, sections, &runs, got_size, &mut counts);
    layout.runs = runs;
    let got_offset = result?;
    counts.not_loaded_sections = sections
        .len()
        .saturating_sub(counts.core.sections)
        .saturating_sub(counts.init.sections);
    layout.got_offset = got_offset;
    layout.counts = counts;
    Ok(())
}

/// The run (0..6) of a region and permission: core RX, R, RW, then init RX, R, RW.
fn run_of(region: RegionKind, permission: Permission) -> usize {
    match (region, permission) {
        (RegionKind::Core, Permission::ReadExecute) => 0,
        (RegionKind::Core, Permission::ReadOnly) => 1,
        (RegionKind::Core, Permission::ReadWrite) => 2,
        (RegionKind::Init, Permission::ReadExecute) => 3,
        (RegionKind::Init, Permission::ReadOnly) => 4,
        (RegionKind::Init, Permission::ReadWrite) => 5,
    }
}

/// Places the runs' sections; returns the GOT's offset in the core region.
fn place_runs(
    layout: &mut Layout,
    sections: &[SectionEntry],
    runs: &[Vec<u32>; 6],
    got_size: u64,
    counts: &mut LayoutCounts,
) -> Result<u64, Error> {
    let mut got_offset = 0;
    for region in [RegionKind::Core, RegionKind::Init] {
        let region_layout = match region {
            RegionKind::Core => &mut layout.core,
            RegionKind::Init => &mut layout.init,
        };
        region_layout.ranges.clear();
        let mut region_counts = RegionCounts::default();
        let mut cursor = 0u64;
        for permission in [
            Permission::ReadExecute,
            Permission::ReadOnly,
            Permission::ReadWrite,
        ] {
            let run_start = cursor;
            let run = runs.get(run_of(region, permission)).map_or(&[][..], |r| r);
            for &index in run {
                let Some(section) = usize::try_from(index).ok().and_then(|i| sections.get(i))
                else {
                    continue;
                };
                cursor = align_up(cursor, section.align, region)?;
                if let Some(slot) = usize::try_from(index)
                    .ok()
                    .and_then(|i| layout.placements.get_mut(i))
                {
                    *slot = Some(SectionPlacement {
                        region,
                        offset: cursor,
                        size: section.size,
                        permission,
                    });
                    layout.order.push(index);
                }
                cursor = advance(cursor, section.size, region)?;
                region_counts.sections = region_counts.sections.saturating_add(1);
                region_counts.section_bytes =
                    region_counts.section_bytes.saturating_add(section.size);
            }
            if region == RegionKind::Core && permission == Permission::ReadOnly && got_size > 0 {
                // The GOT is written once, before the module runs: read-only afterwards.
                cursor = align_up(cursor, GOT_SLOT_SIZE, region)?;
                got_offset = cursor;
                cursor = advance(cursor, got_size, region)?;
            }
            if cursor > run_start {
                cursor = align_up(cursor, PAGE_SIZE, region)?;
                region_layout.ranges.push(PermissionRange {
                    start: run_start,
                    end: cursor,
                    permission,
                });
            }
        }
        if cursor > MAX_REGION_SIZE {
            return Err(Error::RegionTooLarge {
                region,
                size: cursor,
                max: MAX_REGION_SIZE,
            });
        }
        region_layout.size = cursor;
        region_counts.size = cursor;
        match region {
            RegionKind::Core => {
                counts.core = region_counts;
                layout.core_sections = layout.order.len();
            }
            RegionKind::Init => counts.init = region_counts,
        }
    }
    Ok(got_offset)
}
