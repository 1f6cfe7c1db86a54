//! `objstat`: a module's sections, load regions, symbols and relocations, counted.
//!
//! Section names are borrowed from the module bytes and written straight to the output,
//! so thousands of sections sharing one long name cost no copies. Sizes are checked: a
//! section that claims more bytes than the file has (other than a NOBITS section within
//! [`MAX_NOBITS_SIZE`]) is an error, and region totals are checked sums.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use object::elf;
use object::read::elf::{SectionHeader, Sym};
use object::{Endianness, Object, ObjectSection};
use serde::Serialize;

use crate::error::{Result, ToolError};
use crate::ko::parse_elf;

/// The largest NOBITS (`.bss`-like) section objstat accepts: 1 GiB, kmod-loader's largest
/// region (half the +-2 GiB reach of 32-bit relocations) and less than Linux's 1.5 GiB
/// x86-64 module area; no loader could place a larger one.
pub const MAX_NOBITS_SIZE: u64 = 1 << 30;

/// A section name as the file has it; shown with invalid UTF-8 replaced by U+FFFD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionName<'d>(pub &'d [u8]);

impl fmt::Display for SectionName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Ok(text) = std::str::from_utf8(self.0) {
            // Through `pad`, so that width and alignment apply.
            return f.pad(text);
        }
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

impl PartialEq<str> for SectionName<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for SectionName<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl Serialize for SectionName<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where a section goes when the module is loaded (ABI.md "Sections", Linux's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// Core, executable.
    CoreText,
    /// Core, read-only data.
    CoreRodata,
    /// Core, writable data (including `.bss`).
    CoreData,
    /// Init region (`.init*`), freed after init.
    Init,
    /// Read, never loaded: not SHF_ALLOC, or `.modinfo` / `__versions`.
    NotLoaded,
}

impl Region {
    /// The region of a section with this name and these flags.
    pub fn of(name: &str, flags: elf::SectionFlags) -> Region {
        Region::of_bytes(name.as_bytes(), flags)
    }

    /// [`Region::of`] for a name as the file has it.
    pub fn of_bytes(name: &[u8], flags: elf::SectionFlags) -> Region {
        let has = |flag: elf::SectionFlags| flags.0 & flag.0 != 0;
        if !has(elf::SHF_ALLOC) || name == b".modinfo" || name == b"__versions" {
            Region::NotLoaded
        } else if name.starts_with(b".init") {
            Region::Init
        } else if has(elf::SHF_EXECINSTR) {
            Region::CoreText
        } else if has(elf::SHF_WRITE) {
            Region::CoreData
        } else {
            Region::CoreRodata
        }
    }

    fn label(self) -> &'static str {
        match self {
            Region::CoreText => "core text",
            Region::CoreRodata => "core rodata",
            Region::CoreData => "core data",
            Region::Init => "init",
            Region::NotLoaded => "not loaded",
        }
    }
}

/// One section.
#[derive(Debug, Clone, Serialize)]
pub struct SectionStat<'d> {
    /// Section header index.
    pub index: usize,
    /// Name.
    pub name: SectionName<'d>,
    /// `sh_type` as readelf names it.
    pub kind: String,
    /// `sh_flags` as readelf letters.
    pub flags: String,
    /// Size in bytes (memory size; NOBITS included).
    pub size: u64,
    /// Alignment.
    pub align: u64,
    /// Load region.
    pub region: Region,
}

/// Bytes per region.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegionTotals {
    /// Core executable bytes.
    pub core_text: u64,
    /// Core read-only bytes.
    pub core_rodata: u64,
    /// Core writable bytes.
    pub core_data: u64,
    /// Init bytes.
    pub init: u64,
    /// Bytes of sections that are not loaded (file size of non-NOBITS ones).
    pub not_loaded: u64,
}

impl RegionTotals {
    /// All core bytes (saturating: each part is a checked sum of sizes bounded by the file
    /// or [`MAX_NOBITS_SIZE`], so the sum cannot overflow in practice).
    pub fn core(&self) -> u64 {
        self.core_text
            .saturating_add(self.core_rodata)
            .saturating_add(self.core_data)
    }
}

/// Symbol counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SymbolCounts {
    /// Entries of `.symtab` (without the null entry).
    pub total: u64,
    /// Local symbols (not section or file symbols).
    pub local: u64,
    /// Defined global symbols.
    pub global: u64,
    /// Defined weak symbols.
    pub weak: u64,
    /// Undefined symbols (imports).
    pub undefined: u64,
    /// Section symbols.
    pub section: u64,
    /// File symbols.
    pub file: u64,
    /// Exports (`__ksymtab_X` symbols).
    pub exports: u64,
}

/// Relocation counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelocCounts {
    /// All relocations in sections that apply to loaded (SHF_ALLOC) sections.
    pub total: u64,
    /// Per type (`R_X86_64_PC32`, …).
    pub by_type: BTreeMap<String, u64>,
    /// Relocations against a section symbol (section-relative).
    pub against_section: u64,
    /// Relocations against a named symbol.
    pub against_symbol: u64,
    /// Relocations in sections that apply to non-loaded sections (debug info etc.).
    pub unloaded: u64,
}

/// Everything objstat reports about one file, borrowing its section names from the
/// module bytes.
#[derive(Debug, Clone, Serialize)]
pub struct ObjStat<'d> {
    /// The file.
    pub path: String,
    /// File size in bytes (after decompression).
    pub file_size: u64,
    /// Sections, by index.
    pub sections: Vec<SectionStat<'d>>,
    /// Bytes per region.
    pub regions: RegionTotals,
    /// Symbols.
    pub symbols: SymbolCounts,
    /// Relocations.
    pub relocations: RelocCounts,
}

/// readelf's name of an x86-64 relocation type (`R_X86_64_PC32`).
pub fn reloc_type_name(r_type: elf::RelocationType) -> String {
    match elf::machine_names(elf::EM_X86_64).r.name(r_type) {
        Some(name) => name.to_owned(),
        None => format!("R_X86_64_<{}>", r_type.0),
    }
}

/// readelf's name of a section type (`PROGBITS`).
fn section_type_name(sh_type: elf::SectionType) -> String {
    match elf::names().sht.name(sh_type) {
        Some(name) => name.strip_prefix("SHT_").unwrap_or(name).to_owned(),
        None => format!("0x{:x}", sh_type.0),
    }
}

/// readelf's letters for section flags (`WAX`, `AMS`, ...).
fn flag_letters(flags: elf::SectionFlags) -> String {
    const LETTERS: &[(elf::SectionFlags, char)] = &[
        (elf::SHF_WRITE, 'W'),
        (elf::SHF_ALLOC, 'A'),
        (elf::SHF_EXECINSTR, 'X'),
        (elf::SHF_MERGE, 'M'),
        (elf::SHF_STRINGS, 'S'),
        (elf::SHF_INFO_LINK, 'I'),
        (elf::SHF_LINK_ORDER, 'L'),
        (elf::SHF_OS_NONCONFORMING, 'O'),
        (elf::SHF_GROUP, 'G'),
        (elf::SHF_TLS, 'T'),
        (elf::SHF_COMPRESSED, 'C'),
        (elf::SHF_GNU_RETAIN, 'R'),
        (elf::SHF_EXCLUDE, 'E'),
    ];
    LETTERS
        .iter()
        .filter(|(bit, _)| flags.0 & bit.0 != 0)
        .map(|(_, c)| *c)
        .collect()
}

impl<'d> ObjStat<'d> {
    /// Analyses module bytes (see [`crate::ko::read_module_bytes`]); `path` is for messages.
    pub fn parse(path: &Path, data: &'d [u8]) -> Result<ObjStat<'d>> {
        let file = parse_elf(path, data)?;
        let endian: Endianness = file.endian();
        let elf_error = |source| ToolError::Elf {
            path: path.to_owned(),
            source,
        };
        let bad_section = |index: usize, name: SectionName, reason: String| ToolError::NotModule {
            path: path.to_owned(),
            reason: format!("section {index} ({name}): {reason}"),
        };
        let file_len = data.len() as u64;
        let mut sections = Vec::new();
        let mut regions = RegionTotals::default();
        for section in file.sections() {
            let header = section.elf_section_header();
            let index = section.index().0;
            let name = SectionName(section.name_bytes().map_err(elf_error)?);
            let flags = header.sh_flags(endian);
            let sh_type = header.sh_type(endian);
            let size = header.sh_size(endian);
            if sh_type == elf::SHT_NOBITS {
                if size > MAX_NOBITS_SIZE {
                    return Err(bad_section(
                        index,
                        name,
                        format!("NOBITS size {size} exceeds {MAX_NOBITS_SIZE} bytes"),
                    ));
                }
            } else if sh_type != elf::SHT_NULL {
                let offset = header.sh_offset(endian);
                if offset.checked_add(size).is_none_or(|end| end > file_len) {
                    return Err(bad_section(
                        index,
                        name,
                        format!(
                            "{size} bytes at offset {offset} run past the end of the \
                             {file_len}-byte file"
                        ),
                    ));
                }
            }
            let region = Region::of_bytes(name.0, flags);
            let total = match region {
                Region::CoreText => Some(&mut regions.core_text),
                Region::CoreRodata => Some(&mut regions.core_rodata),
                Region::CoreData => Some(&mut regions.core_data),
                Region::Init => Some(&mut regions.init),
                Region::NotLoaded if sh_type != elf::SHT_NOBITS => Some(&mut regions.not_loaded),
                Region::NotLoaded => None,
            };
            if let Some(total) = total {
                *total = total.checked_add(size).ok_or_else(|| {
                    bad_section(index, name, format!("{} bytes overflow", region.label()))
                })?;
            }
            sections.push(SectionStat {
                index,
                name,
                kind: section_type_name(sh_type),
                flags: flag_letters(flags),
                size,
                align: header.sh_addralign(endian),
                region,
            });
        }

        let symtab = file.elf_symbol_table();
        let mut symbols = SymbolCounts::default();
        let mut is_section_symbol = Vec::with_capacity(symtab.len());
        for (i, sym) in symtab.iter().enumerate() {
            is_section_symbol.push(sym.st_type() == elf::STT_SECTION);
            if i == 0 {
                continue;
            }
            symbols.total += 1;
            let name = sym.name(endian, symtab.strings()).unwrap_or_default();
            match (sym.st_type(), sym.st_bind()) {
                (elf::STT_SECTION, _) => symbols.section += 1,
                (elf::STT_FILE, _) => symbols.file += 1,
                _ if sym.st_shndx(endian) == elf::SHN_UNDEF => symbols.undefined += 1,
                (_, elf::STB_LOCAL) => symbols.local += 1,
                (_, elf::STB_WEAK) => symbols.weak += 1,
                _ => symbols.global += 1,
            }
            if sym.st_shndx(endian) != elf::SHN_UNDEF && name.starts_with(b"__ksymtab_") {
                symbols.exports += 1;
            }
        }

        let mut relocations = RelocCounts::default();
        let section_headers = file.elf_section_table();
        for section in file.sections() {
            let header = section.elf_section_header();
            let sh_type = header.sh_type(endian);
            if sh_type != elf::SHT_RELA && sh_type != elf::SHT_REL {
                continue;
            }
            let target = header.sh_info(endian) as usize;
            let target_alloc = section_headers
                .section(object::SectionIndex(target))
                .map(|t| t.sh_flags(endian).0 & elf::SHF_ALLOC.0 != 0)
                .map_err(elf_error)?;
            let mut count = |r_type: elf::RelocationType, sym: u32| {
                if !target_alloc {
                    relocations.unloaded += 1;
                    return;
                }
                relocations.total += 1;
                *relocations
                    .by_type
                    .entry(reloc_type_name(r_type))
                    .or_default() += 1;
                if is_section_symbol
                    .get(sym as usize)
                    .copied()
                    .unwrap_or(false)
                {
                    relocations.against_section += 1;
                } else {
                    relocations.against_symbol += 1;
                }
            };
            if sh_type == elf::SHT_RELA {
                let (relas, _) = header
                    .rela(endian, data)
                    .map_err(elf_error)?
                    .unwrap_or((&[], object::SectionIndex(0)));
                for r in relas {
                    count(r.r_type(endian, false), r.r_sym(endian, false));
                }
            } else {
                let (rels, _) = header
                    .rel(endian, data)
                    .map_err(elf_error)?
                    .unwrap_or((&[], object::SectionIndex(0)));
                for r in rels {
                    count(r.r_type(endian), r.r_sym(endian));
                }
            }
        }

        Ok(ObjStat {
            path: path.display().to_string(),
            file_size: data.len() as u64,
            sections,
            regions,
            symbols,
            relocations,
        })
    }

    /// The human-readable report, as a string (see [`ObjStat::write_report`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = self.write_report(&mut out);
        out
    }

    /// Writes the human-readable report to `out` line by line, never building it whole.
    pub fn write_report(&self, out: &mut impl fmt::Write) -> fmt::Result {
        writeln!(
            out,
            "{}: ELF64 x86-64 relocatable, {} bytes",
            self.path, self.file_size
        )?;
        writeln!(
            out,
            "  [Nr] {:<28} {:<10} {:<5} {:>10} {:>6}  region",
            "Name", "Type", "Flags", "Size", "Align"
        )?;
        for s in &self.sections {
            if s.index == 0 {
                continue;
            }
            writeln!(
                out,
                "  [{:>2}] {:<28} {:<10} {:<5} {:>10} {:>6}  {}",
                s.index,
                s.name,
                s.kind,
                s.flags,
                s.size,
                s.align,
                s.region.label()
            )?;
        }
        let r = &self.regions;
        writeln!(
            out,
            "regions: core {} bytes (text {}, rodata {}, data {}), init {} bytes, not loaded {} bytes",
            r.core(),
            r.core_text,
            r.core_rodata,
            r.core_data,
            r.init,
            r.not_loaded
        )?;
        let y = &self.symbols;
        writeln!(
            out,
            "symbols: {} (global {}, weak {}, local {}, undefined {}, section {}, file {}), exports {}",
            y.total, y.global, y.weak, y.local, y.undefined, y.section, y.file, y.exports
        )?;
        let rel = &self.relocations;
        writeln!(
            out,
            "relocations: {} (against sections {}, against symbols {}){}",
            rel.total,
            rel.against_section,
            rel.against_symbol,
            if rel.unloaded > 0 {
                format!(", plus {} in non-loaded sections", rel.unloaded)
            } else {
                String::new()
            }
        )?;
        for (ty, n) in &rel.by_type {
            writeln!(out, "  {ty:<24} {n:>8}")?;
        }
        Ok(())
    }
}
