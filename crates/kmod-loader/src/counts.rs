//! What each step counted: returned with its result so that a benchmark can relate a step's
//! time to the work it did.

use crate::relocate::RelocationKind;

/// Relocations by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelocationCounts {
    /// R_X86_64_NONE.
    pub none: u64,
    /// R_X86_64_64.
    pub abs64: u64,
    /// R_X86_64_32.
    pub abs32: u64,
    /// R_X86_64_32S.
    pub abs32s: u64,
    /// R_X86_64_PC32.
    pub pc32: u64,
    /// R_X86_64_PLT32.
    pub plt32: u64,
    /// R_X86_64_PC64.
    pub pc64: u64,
    /// R_X86_64_GOTPCREL.
    pub gotpcrel: u64,
    /// R_X86_64_GOTPCRELX.
    pub gotpcrelx: u64,
    /// R_X86_64_REX_GOTPCRELX.
    pub rex_gotpcrelx: u64,
}

impl RelocationCounts {
    fn slot(&mut self, kind: RelocationKind) -> &mut u64 {
        match kind {
            RelocationKind::None => &mut self.none,
            RelocationKind::Abs64 => &mut self.abs64,
            RelocationKind::Abs32 => &mut self.abs32,
            RelocationKind::Abs32S => &mut self.abs32s,
            RelocationKind::Pc32 => &mut self.pc32,
            RelocationKind::Plt32 => &mut self.plt32,
            RelocationKind::Pc64 => &mut self.pc64,
            RelocationKind::GotPcRel => &mut self.gotpcrel,
            RelocationKind::GotPcRelX => &mut self.gotpcrelx,
            RelocationKind::RexGotPcRelX => &mut self.rex_gotpcrelx,
        }
    }

    /// Counts one relocation of `kind`.
    pub fn add(&mut self, kind: RelocationKind) {
        self.add_many(kind, 1);
    }

    /// Counts `count` relocations of `kind`.
    pub fn add_many(&mut self, kind: RelocationKind, count: u64) {
        let slot = self.slot(kind);
        *slot = slot.saturating_add(count);
    }

    /// The count for `kind`.
    pub fn get(&self, kind: RelocationKind) -> u64 {
        let mut copy = *self;
        *copy.slot(kind)
    }

    /// All relocations.
    pub fn total(&self) -> u64 {
        RelocationKind::ALL
            .iter()
            .fold(0u64, |sum, &kind| sum.saturating_add(self.get(kind)))
    }
}

/// What validation counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidateCounts {
    /// Sections, including the null section.
    pub sections: usize,
    /// Sections that will be loaded.
    pub loaded_sections: usize,
    /// Symbols, including the null symbol.
    pub symbols: usize,
    /// Undefined symbols (to resolve).
    pub undefined_symbols: usize,
    /// Relocation sections whose target is loaded.
    pub relocation_sections: usize,
    /// Relocation sections skipped because their target is not loaded.
    pub skipped_relocation_sections: usize,
    /// Relocations validation checked (those of sections whose target is executable), by
    /// type.
    pub relocations: RelocationCounts,
    /// Relocations of sections whose target is not executable: checked and counted by type
    /// where they are applied ([`RelocateCounts::applied`] counts every relocation).
    pub relocations_checked_when_applied: u64,
    /// `__ksymtab_*` exports.
    pub exports: usize,
    /// `.modinfo` entries.
    pub modinfo_entries: usize,
}

impl ValidateCounts {
    /// Every relocation the module will apply: those validation checked and those checked
    /// where they are applied.
    pub fn relocation_entries(&self) -> u64 {
        self.relocations
            .total()
            .saturating_add(self.relocations_checked_when_applied)
    }
}

/// What the layout of one region holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionCounts {
    /// Sections placed in it.
    pub sections: usize,
    /// Bytes of section contents (NOBITS included), without padding.
    pub section_bytes: u64,
    /// Region size: page-aligned, padding included.
    pub size: u64,
}

/// What layout counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayoutCounts {
    /// The core region.
    pub core: RegionCounts,
    /// The init region.
    pub init: RegionCounts,
    /// Sections not loaded.
    pub not_loaded_sections: usize,
    /// GOT slots reserved (one per distinct symbol referenced through the GOT).
    pub got_slots: usize,
}

/// What resolution counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolveCounts {
    /// Undefined symbols looked up.
    pub undefined: usize,
    /// Found by a provider.
    pub resolved: usize,
    /// Weak, not found, resolved to 0.
    pub weak_unresolved: usize,
    /// `_GLOBAL_OFFSET_TABLE_`, left without an address as Linux does.
    pub ignored: usize,
    /// Distinct providers used (dependencies).
    pub providers: usize,
}

/// What copying sections into the regions counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounts {
    /// Sections copied or zeroed.
    pub sections: usize,
    /// Bytes copied from the file.
    pub bytes_copied: u64,
    /// Bytes zeroed: NOBITS sections, the GOT and padding. Every byte of both regions is
    /// either copied or zeroed, exactly once, so no byte of what the memory held before is
    /// visible to the module.
    pub bytes_zeroed: u64,
}

/// What relocation counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelocateCounts {
    /// Relocations applied, by type.
    pub applied: RelocationCounts,
    /// GOT slots filled.
    pub got_slots: usize,
}

/// All steps' counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Validation.
    pub validate: ValidateCounts,
    /// Layout.
    pub layout: LayoutCounts,
    /// Resolution.
    pub resolve: ResolveCounts,
    /// Copying.
    pub copy: CopyCounts,
    /// Relocation.
    pub relocate: RelocateCounts,
}
