//! Step 1, **validate**: check every structure of the ELF file that later steps rely on, and
//! index it into a [`Module`].
//!
//! After validation, every offset, size and index the other steps use is known to be in
//! bounds, so they can read without re-checking the file (they still write only through
//! range-checked slices). Validation also decides, from each section's name and flags, where
//! the section goes ([`Disposition`]): the layout step only assigns offsets.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hashbrown::HashMap;
use object::LittleEndian as LE;
use object::elf;
use object::pod;

use crate::counts::{RelocationCounts, ValidateCounts};
use crate::error::{Error, SectionRef};
use crate::relocate::RelocationKind;

/// Size of a page: the unit of region permissions.
pub const PAGE_SIZE: u64 = 4096;
/// The largest region (and so the largest loaded section) the loader accepts: 1 GiB, half of
/// the ±2 GiB that 32-bit relocations can reach.
pub const MAX_REGION_SIZE: u64 = 1 << 30;
/// The largest section alignment the loader honours: regions are only page-aligned.
pub const MAX_SECTION_ALIGN: u64 = PAGE_SIZE;

const EHDR_SIZE: u16 = 64;
const SHDR_SIZE: u16 = 64;
const SYM_SIZE: u64 = 24;
const RELA_SIZE: u64 = 24;
/// The one undefined symbol Linux lets stay unresolved on x86-64: old GNU as emits it, unreferenced.
pub(crate) const IGNORED_UNDEFINED: &str = "_GLOBAL_OFFSET_TABLE_";
/// Prefix of the symbol that marks an export (ABI.md, "Exports").
pub const KSYMTAB_PREFIX: &str = "__ksymtab_";

/// Which of the two memory regions a section is loaded into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Lives as long as the module.
    Core,
    /// `.init*` sections: freed once `init_module` has returned.
    Init,
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Core => "core",
            Self::Init => "init",
        })
    }
}

/// Page permissions of loaded memory. Never writable and executable at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Code: read and execute.
    ReadExecute,
    /// Constants, export tables, the GOT: read only.
    ReadOnly,
    /// Data and bss: read and write.
    ReadWrite,
}

/// Where validation decided a section goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Loaded into `region` with pages of `permission`.
    Load {
        /// Core or init.
        region: RegionKind,
        /// Page permission, from the section flags.
        permission: Permission,
    },
    /// Read from the file only (non-SHF_ALLOC sections, `.modinfo`, `__versions`).
    NotLoaded,
}

/// One section of a validated module.
#[derive(Clone, Debug)]
pub struct Section<'data> {
    /// Index in the section header table.
    pub index: u32,
    /// Name.
    pub name: &'data str,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_offset`: where the contents are in the file.
    pub offset: u64,
    /// Size in memory (for NOBITS, bytes to zero).
    pub size: u64,
    /// Alignment, at least 1.
    pub align: u64,
    /// `sh_link`.
    pub link: u32,
    /// `sh_info`.
    pub info: u32,
    /// `sh_entsize`.
    pub entsize: u64,
    /// Where it goes.
    pub disposition: Disposition,
    /// Contents in the file; empty for NOBITS.
    pub data: &'data [u8],
}

impl Section<'_> {
    /// Whether the section occupies no file space (`.bss`).
    pub fn is_nobits(&self) -> bool {
        self.sh_type == elf::SHT_NOBITS.0
    }

    fn as_ref(&self) -> SectionRef {
        SectionRef {
            index: self.index,
            name: String::from(self.name),
        }
    }
}

/// Binding of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// STB_LOCAL.
    Local,
    /// STB_GLOBAL.
    Global,
    /// STB_WEAK.
    Weak,
    /// Any other value (GNU_UNIQUE, OS- or processor-specific): treated as global.
    Other(u8),
}

/// Where a symbol is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Definition {
    /// SHN_UNDEF: resolved at load time.
    Undefined,
    /// SHN_ABS: the value is the address.
    Absolute,
    /// Relative to the start of this section.
    Section(u32),
}

/// One symbol of a validated module.
#[derive(Clone, Copy, Debug)]
pub struct Symbol<'data> {
    /// Index in the symbol table.
    pub index: u32,
    /// Name (empty for section symbols; see [`Module::symbol_name`]).
    pub name: &'data str,
    /// Binding.
    pub binding: Binding,
    /// `st_type` (STT_*).
    pub st_type: u8,
    /// Where it is defined.
    pub definition: Definition,
    /// `st_value`: offset in its section, or the absolute value.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
}

impl Symbol<'_> {
    /// Whether this is a section symbol (STT_SECTION).
    pub fn is_section(&self) -> bool {
        self.st_type == elf::STT_SECTION.0
    }
}

/// One relocation entry of a section that is loaded (its type is known to be supported, its
/// symbol index and its offset range in bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Offset in the target section.
    pub offset: u64,
    /// Type.
    pub kind: RelocationKind,
    /// Symbol index.
    pub symbol: u32,
    /// Addend.
    pub addend: i64,
}

/// A relocation section whose target section is loaded.
#[derive(Clone, Debug)]
pub struct RelocationSection<'data> {
    /// Index of the SHT_RELA section.
    pub index: u32,
    /// Index of the section it patches.
    pub target: u32,
    entries: &'data [elf::Rela64<LE>],
}

impl RelocationSection<'_> {
    /// Its validated entries.
    pub fn relocations(&self) -> impl ExactSizeIterator<Item = Relocation> + '_ {
        self.entries.iter().map(decode_rela)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn decode_rela(rela: &elf::Rela64<LE>) -> Relocation {
    let r_type = rela.r_type(LE, false).0;
    Relocation {
        offset: rela.r_offset.get(LE),
        // Validation refused every entry whose type is not supported.
        kind: RelocationKind::from_elf(r_type).unwrap_or(RelocationKind::None),
        symbol: rela.r_sym(LE, false),
        addend: rela.r_addend.get(LE),
    }
}

/// An export: `__ksymtab_NAME` is defined, and so is `NAME` (symbol index `symbol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export<'data> {
    /// The exported name.
    pub name: &'data str,
    /// Index of the symbol that defines it.
    pub symbol: u32,
}

/// A validated module: indexes into the file bytes, which it borrows.
#[derive(Clone, Debug)]
pub struct Module<'data> {
    sections: Vec<Section<'data>>,
    symbols: Vec<Symbol<'data>>,
    relocation_sections: Vec<RelocationSection<'data>>,
    /// Non-local defined symbols by name.
    globals: HashMap<&'data str, u32>,
    exports: Vec<Export<'data>>,
    modinfo: &'data str,
    name: &'data str,
    counts: ValidateCounts,
}

impl<'data> Module<'data> {
    /// All sections, by index (index 0 is the null section).
    pub fn sections(&self) -> &[Section<'data>] {
        &self.sections
    }

    /// The section with this index.
    pub fn section(&self, index: u32) -> Option<&Section<'data>> {
        self.sections.get(usize::try_from(index).ok()?)
    }

    /// The first section with this name.
    pub fn section_by_name(&self, name: &str) -> Option<&Section<'data>> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// All symbols, by index (index 0 is the null symbol).
    pub fn symbols(&self) -> &[Symbol<'data>] {
        &self.symbols
    }

    /// The symbol with this index.
    pub fn symbol(&self, index: u32) -> Option<&Symbol<'data>> {
        self.symbols.get(usize::try_from(index).ok()?)
    }

    /// A symbol's name for messages: section symbols are named after their section.
    pub fn symbol_name(&self, index: u32) -> &'data str {
        match self.symbol(index) {
            Some(sym) if sym.is_section() || sym.name.is_empty() => match sym.definition {
                Definition::Section(s) => self.section(s).map_or("", |s| s.name),
                _ => sym.name,
            },
            Some(sym) => sym.name,
            None => "",
        }
    }

    /// The defined non-local symbol with this name (global wins over weak).
    pub fn find_symbol(&self, name: &str) -> Option<&Symbol<'data>> {
        self.globals.get(name).and_then(|&i| self.symbol(i))
    }

    /// Relocation sections whose targets are loaded (the others are skipped, as Linux does).
    pub fn relocation_sections(&self) -> &[RelocationSection<'data>] {
        &self.relocation_sections
    }

    /// The module's exports (`__ksymtab_NAME` symbols), in symbol table order.
    pub fn exports(&self) -> &[Export<'data>] {
        &self.exports
    }

    /// `.modinfo` as `(key, value)` pairs, in file order. An entry without `=` has an empty value.
    pub fn modinfo(&self) -> impl Iterator<Item = (&'data str, &'data str)> + 'data {
        self.modinfo
            .split('\0')
            .filter(|entry| !entry.is_empty())
            .map(|entry| entry.split_once('=').unwrap_or((entry, "")))
    }

    /// The module's name: `.modinfo`'s `name=`, or empty.
    pub fn name(&self) -> &'data str {
        self.name
    }

    /// What validation counted.
    pub fn counts(&self) -> &ValidateCounts {
        &self.counts
    }

    pub(crate) fn section_ref(&self, index: u32) -> SectionRef {
        match self.section(index) {
            Some(s) => s.as_ref(),
            None => SectionRef {
                index,
                name: String::new(),
            },
        }
    }

    /// The name errors use for the module.
    pub(crate) fn display_name(&self) -> &'data str {
        if self.name.is_empty() {
            "(unnamed)"
        } else {
            self.name
        }
    }
}

/// `data[offset..offset + size]`, or `None` when out of bounds or overflowing.
fn file_range(data: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    data.get(start..end)
}

/// The NUL-terminated UTF-8 string at `offset` of a string table.
fn c_str(table: &[u8], offset: u32) -> Option<&str> {
    let tail = table.get(usize::try_from(offset).ok()?..)?;
    let len = tail.iter().position(|&b| b == 0)?;
    core::str::from_utf8(tail.get(..len)?).ok()
}

/// Bytes of a section header table with `shnum` entries (at most 65535 × 64: cannot overflow).
fn section_table_size(shnum: u16) -> u64 {
    u64::from(shnum).saturating_mul(u64::from(SHDR_SIZE))
}

fn file_size(data: &[u8]) -> u64 {
    u64::try_from(data.len()).unwrap_or(u64::MAX)
}

fn index_u32(index: usize) -> u32 {
    // Callers iterate tables whose counts were checked to fit u32 (sections: u16, symbols:
    // a bounded slice of 24-byte entries), so this never saturates in practice.
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Decides where a section goes from its name and flags (ABI.md, "Sections").
fn disposition(name: &str, flags: u64) -> Disposition {
    let alloc = flags & elf::SHF_ALLOC.0 != 0;
    // Linux drops SHF_ALLOC from these two before layout: they are read, never loaded.
    if !alloc || name == ".modinfo" || name == "__versions" {
        return Disposition::NotLoaded;
    }
    let region = if name.starts_with(".init") {
        RegionKind::Init
    } else {
        RegionKind::Core
    };
    let permission = if flags & elf::SHF_EXECINSTR.0 != 0 {
        Permission::ReadExecute
    } else if flags & elf::SHF_WRITE.0 != 0 {
        Permission::ReadWrite
    } else {
        Permission::ReadOnly
    };
    Disposition::Load { region, permission }
}

/// Validates `data` as a kmodlab (or Linux) x86-64 module and indexes it.
///
/// Never panics, whatever `data` holds: every malformation is an [`Error`].
pub fn validate(data: &[u8]) -> Result<Module<'_>, Error> {
    let header = check_header(data)?;
    let mut counts = ValidateCounts::default();
    let sections = read_sections(data, header)?;
    counts.sections = sections.len();
    counts.loaded_sections = sections
        .iter()
        .filter(|s| s.disposition != Disposition::NotLoaded)
        .count();
    check_overlaps(header, &sections)?;

    let symbols = read_symbols(&sections)?;
    counts.symbols = symbols.symbols.len();
    counts.undefined_symbols = symbols
        .symbols
        .iter()
        .skip(1)
        .filter(|s| s.definition == Definition::Undefined)
        .count();

    let mut module = Module {
        sections,
        symbols: symbols.symbols,
        relocation_sections: Vec::new(),
        globals: HashMap::new(),
        exports: Vec::new(),
        modinfo: "",
        name: "",
        counts,
    };
    read_relocations(&mut module, symbols.table_index)?;
    index_globals(&mut module)?;
    find_exports(&mut module)?;
    read_modinfo(&mut module)?;
    Ok(module)
}

#[derive(Clone, Copy)]
struct HeaderFields {
    shoff: u64,
    shnum: u16,
    shstrndx: u16,
}

fn check_header(data: &[u8]) -> Result<HeaderFields, Error> {
    let truncated = || Error::Truncated {
        what: "ELF header",
        offset: 0,
        size: u64::from(EHDR_SIZE),
        file_size: file_size(data),
    };
    // The magic is checked before the length so that a short non-ELF file says "bad magic".
    let magic = data.get(..4).ok_or_else(truncated)?;
    if magic != elf::ELFMAG {
        let mut found = [0u8; 4];
        found.copy_from_slice(magic);
        return Err(Error::BadMagic { found });
    }
    let (header, _) = pod::from_bytes::<elf::FileHeader64<LE>>(data).map_err(|()| truncated())?;
    let ident = &header.e_ident;
    if ident.class != elf::ELFCLASS64 {
        return Err(Error::BadClass {
            class: ident.class.0,
        });
    }
    if ident.data != elf::ELFDATA2LSB {
        return Err(Error::BadDataEncoding {
            encoding: ident.data.0,
        });
    }
    if ident.version != elf::EV_CURRENT {
        return Err(Error::BadVersion {
            version: u32::from(ident.version.0),
        });
    }
    let file_type = header.e_type.get(LE);
    if file_type != elf::ET_REL {
        return Err(Error::NotRelocatable {
            file_type: file_type.0,
        });
    }
    let machine = header.e_machine.get(LE);
    if machine != elf::EM_X86_64 {
        return Err(Error::BadMachine { machine: machine.0 });
    }
    let version = header.e_version.get(LE);
    if version != u32::from(elf::EV_CURRENT.0) {
        return Err(Error::BadVersion { version });
    }
    let ehsize = header.e_ehsize.get(LE);
    if ehsize != EHDR_SIZE {
        return Err(Error::BadHeaderSize {
            field: "e_ehsize",
            found: ehsize,
            expected: EHDR_SIZE,
        });
    }
    let shnum = header.e_shnum.get(LE);
    if shnum == 0 {
        return Err(Error::NoSections);
    }
    let shentsize = header.e_shentsize.get(LE);
    if shentsize != SHDR_SIZE {
        return Err(Error::BadHeaderSize {
            field: "e_shentsize",
            found: shentsize,
            expected: SHDR_SIZE,
        });
    }
    let shoff = header.e_shoff.get(LE);
    let table_size = section_table_size(shnum);
    if file_range(data, shoff, table_size).is_none() {
        return Err(Error::Truncated {
            what: "section header table",
            offset: shoff,
            size: table_size,
            file_size: file_size(data),
        });
    }
    let shstrndx = header.e_shstrndx.get(LE).0;
    if shstrndx >= shnum {
        return Err(Error::BadStringTableIndex {
            index: u32::from(shstrndx),
            sections: u32::from(shnum),
        });
    }
    Ok(HeaderFields {
        shoff,
        shnum,
        shstrndx,
    })
}

fn section_headers(data: &[u8], header: HeaderFields) -> &[elf::SectionHeader64<LE>] {
    // check_header proved the table is inside the file.
    file_range(data, header.shoff, section_table_size(header.shnum))
        .and_then(|bytes| pod::slice_from_all_bytes::<elf::SectionHeader64<LE>>(bytes).ok())
        .unwrap_or(&[])
}

fn read_sections(data: &[u8], header: HeaderFields) -> Result<Vec<Section<'_>>, Error> {
    let headers = section_headers(data, header);
    let shstrtab_header = headers
        .get(usize::from(header.shstrndx))
        .filter(|h| h.sh_type.get(LE) == elf::SHT_STRTAB)
        .ok_or(Error::BadStringTableIndex {
            index: u32::from(header.shstrndx),
            sections: u32::from(header.shnum),
        })?;
    let shstrtab = file_range(
        data,
        shstrtab_header.sh_offset.get(LE),
        shstrtab_header.sh_size.get(LE),
    )
    .ok_or_else(|| Error::SectionOutOfBounds {
        section: SectionRef {
            index: u32::from(header.shstrndx),
            name: String::new(),
        },
        offset: shstrtab_header.sh_offset.get(LE),
        size: shstrtab_header.sh_size.get(LE),
        file_size: file_size(data),
    })?;

    let mut sections = Vec::with_capacity(headers.len());
    for (i, sh) in headers.iter().enumerate() {
        let index = index_u32(i);
        let name_offset = sh.sh_name.get(LE);
        let name = c_str(shstrtab, name_offset).ok_or(Error::BadSectionName {
            index,
            offset: u64::from(name_offset),
        })?;
        let sh_type = sh.sh_type.get(LE).0;
        let flags = sh.sh_flags.get(LE).0;
        let size = sh.sh_size.get(LE);
        let offset = sh.sh_offset.get(LE);
        let section_ref = || SectionRef {
            index,
            name: String::from(name),
        };
        let nobits = sh_type == elf::SHT_NOBITS.0;
        let contents = if nobits || sh_type == elf::SHT_NULL.0 {
            &[][..]
        } else {
            file_range(data, offset, size).ok_or_else(|| Error::SectionOutOfBounds {
                section: section_ref(),
                offset,
                size,
                file_size: file_size(data),
            })?
        };
        let raw_align = sh.sh_addralign.get(LE);
        if raw_align > 1 && !raw_align.is_power_of_two() {
            return Err(Error::BadAlignment {
                section: section_ref(),
                alignment: raw_align,
            });
        }
        let align = raw_align.max(1);
        if flags & elf::SHF_WRITE.0 != 0 && flags & elf::SHF_EXECINSTR.0 != 0 {
            return Err(Error::WriteAndExecute {
                section: section_ref(),
            });
        }
        let disposition = if sh_type == elf::SHT_NULL.0 {
            Disposition::NotLoaded
        } else {
            disposition(name, flags)
        };
        if disposition != Disposition::NotLoaded {
            if align > MAX_SECTION_ALIGN {
                return Err(Error::AlignmentTooLarge {
                    section: section_ref(),
                    alignment: align,
                    max: MAX_SECTION_ALIGN,
                });
            }
            if size > MAX_REGION_SIZE {
                return Err(Error::SectionTooLarge {
                    section: section_ref(),
                    size,
                    max: MAX_REGION_SIZE,
                });
            }
        }
        sections.push(Section {
            index,
            name,
            sh_type,
            flags,
            offset,
            size,
            align,
            link: sh.sh_link.get(LE),
            info: sh.sh_info.get(LE),
            entsize: sh.sh_entsize.get(LE),
            disposition,
            data: contents,
        });
    }
    Ok(sections)
}

/// Refuses files whose parts (header, section header table, section contents) share bytes:
/// a well-formed object never does, and a crafted one could make one section's relocations
/// patch another's contents.
fn check_overlaps(header: HeaderFields, sections: &[Section<'_>]) -> Result<(), Error> {
    #[derive(Clone, Copy)]
    enum Part {
        Header,
        SectionHeaders,
        Section(u32),
    }
    let mut parts: Vec<(u64, u64, Part)> = Vec::with_capacity(sections.len().saturating_add(2));
    parts.push((0, u64::from(EHDR_SIZE), Part::Header));
    let table_end = header
        .shoff
        .saturating_add(section_table_size(header.shnum));
    parts.push((header.shoff, table_end, Part::SectionHeaders));
    for s in sections.iter().filter(|s| !s.data.is_empty()) {
        // read_sections proved offset + size lies inside the file.
        let end = s.offset.saturating_add(s.size);
        parts.push((s.offset, end, Part::Section(s.index)));
    }
    parts.sort_unstable_by_key(|&(start, end, _)| (start, end));
    let describe = |part: Part| -> String {
        match part {
            Part::Header => String::from("the ELF header"),
            Part::SectionHeaders => String::from("the section header table"),
            Part::Section(i) => {
                let name = sections
                    .get(usize::try_from(i).unwrap_or(usize::MAX))
                    .map_or("", |s| s.name);
                alloc::format!("section [{i}] {name}")
            }
        }
    };
    let mut furthest: Option<(u64, Part)> = None;
    for &(start, end, part) in &parts {
        if let Some((prev_end, prev)) = furthest
            && start < prev_end
        {
            return Err(Error::SectionsOverlap {
                first: describe(prev),
                second: describe(part),
            });
        }
        if furthest.is_none_or(|(prev_end, _)| end > prev_end) {
            furthest = Some((end, part));
        }
    }
    Ok(())
}

struct SymbolTable<'data> {
    table_index: u32,
    symbols: Vec<Symbol<'data>>,
}

fn check_table_shape(section: &Section<'_>, entsize: u64) -> Result<(), Error> {
    if section.entsize != entsize {
        return Err(Error::BadEntrySize {
            section: section.as_ref(),
            entsize: section.entsize,
            expected: entsize,
        });
    }
    if section.size.checked_rem(entsize) != Some(0) {
        return Err(Error::BadTableSize {
            section: section.as_ref(),
            size: section.size,
            entsize,
        });
    }
    Ok(())
}

fn read_symbols<'data>(sections: &[Section<'data>]) -> Result<SymbolTable<'data>, Error> {
    let mut tables = sections.iter().filter(|s| s.sh_type == elf::SHT_SYMTAB.0);
    let symtab = tables.next().ok_or(Error::MissingSymbolTable)?;
    if let Some(second) = tables.next() {
        return Err(Error::MultipleSymbolTables {
            first: symtab.as_ref(),
            second: second.as_ref(),
        });
    }
    check_table_shape(symtab, SYM_SIZE)?;
    let strtab = sections
        .get(usize::try_from(symtab.link).unwrap_or(usize::MAX))
        .filter(|s| s.sh_type == elf::SHT_STRTAB.0)
        .ok_or_else(|| Error::BadLink {
            section: symtab.as_ref(),
            link: symtab.link,
            expected: "a string table",
        })?;
    let entries = pod::slice_from_all_bytes::<elf::Sym64<LE>>(symtab.data).unwrap_or(&[]);
    if u32::try_from(entries.len()).is_err() {
        return Err(Error::BadTableSize {
            section: symtab.as_ref(),
            size: symtab.size,
            entsize: SYM_SIZE,
        });
    }
    let mut symbols = Vec::with_capacity(entries.len());
    for (i, sym) in entries.iter().enumerate() {
        let index = index_u32(i);
        let name_offset = sym.st_name.get(LE);
        let name = c_str(strtab.data, name_offset).ok_or(Error::BadSymbolName {
            index,
            offset: u64::from(name_offset),
        })?;
        let shndx = sym.st_shndx.get(LE);
        let value = sym.st_value.get(LE);
        let definition = if shndx == elf::SHN_UNDEF {
            Definition::Undefined
        } else if shndx == elf::SHN_ABS {
            Definition::Absolute
        } else if shndx == elf::SHN_COMMON {
            return Err(Error::CommonSymbol {
                symbol: String::from(name),
            });
        } else if shndx.is_reserved() || usize::from(shndx.0) >= sections.len() {
            return Err(Error::BadSymbolSection {
                index,
                symbol: String::from(name),
                shndx: shndx.0,
            });
        } else {
            let section = sections
                .get(usize::from(shndx.0))
                .ok_or(Error::BadSymbolSection {
                    index,
                    symbol: String::from(name),
                    shndx: shndx.0,
                })?;
            // A symbol may sit at the very end (`__stop_*`-style markers), not past it.
            if value > section.size {
                return Err(Error::SymbolOutsideSection {
                    symbol: String::from(name),
                    section: section.as_ref(),
                    value,
                    section_size: section.size,
                });
            }
            Definition::Section(u32::from(shndx.0))
        };
        let binding = match sym.st_bind() {
            b if b == elf::STB_LOCAL => Binding::Local,
            b if b == elf::STB_GLOBAL => Binding::Global,
            b if b == elf::STB_WEAK => Binding::Weak,
            b => Binding::Other(b.0),
        };
        symbols.push(Symbol {
            index,
            name,
            binding,
            st_type: sym.st_type().0,
            definition,
            value,
            size: sym.st_size.get(LE),
        });
    }
    Ok(SymbolTable {
        table_index: symtab.index,
        symbols,
    })
}

fn read_relocations<'data>(module: &mut Module<'data>, symtab_index: u32) -> Result<(), Error> {
    let symbol_count = index_u32(module.symbols.len());
    let mut applied = Vec::new();
    let mut by_kind = RelocationCounts::default();
    for section in &module.sections {
        let is_rela = section.sh_type == elf::SHT_RELA.0;
        let is_rel = section.sh_type == elf::SHT_REL.0;
        if !is_rela && !is_rel {
            continue;
        }
        let target = module
            .sections
            .get(usize::try_from(section.info).unwrap_or(usize::MAX))
            .filter(|t| t.index != 0)
            .ok_or_else(|| Error::BadRelocationTarget {
                section: section.as_ref(),
                target: section.info,
            })?;
        if target.disposition == Disposition::NotLoaded {
            // Linux skips relocation sections whose target is not SHF_ALLOC (debug info,
            // .modinfo); so do we, without reading them.
            module.counts.skipped_relocation_sections =
                module.counts.skipped_relocation_sections.saturating_add(1);
            continue;
        }
        if is_rel {
            return Err(Error::RelNotSupported {
                section: section.as_ref(),
            });
        }
        check_table_shape(section, RELA_SIZE)?;
        if section.link != symtab_index {
            return Err(Error::BadLink {
                section: section.as_ref(),
                link: section.link,
                expected: "the symbol table",
            });
        }
        if target.is_nobits() && !section.data.is_empty() {
            return Err(Error::RelocationInNobits {
                section: target.as_ref(),
            });
        }
        let entries = pod::slice_from_all_bytes::<elf::Rela64<LE>>(section.data).unwrap_or(&[]);
        for rela in entries {
            let offset = rela.r_offset.get(LE);
            let r_type = rela.r_type(LE, false).0;
            let kind =
                RelocationKind::from_elf(r_type).ok_or_else(|| Error::UnsupportedRelocation {
                    section: target.as_ref(),
                    offset,
                    r_type,
                })?;
            let symbol_index = rela.r_sym(LE, false);
            let symbol = module
                .symbols
                .get(usize::try_from(symbol_index).unwrap_or(usize::MAX))
                .ok_or_else(|| Error::RelocationSymbolOutOfRange {
                    section: target.as_ref(),
                    offset,
                    symbol: symbol_index,
                    symbols: symbol_count,
                })?;
            let width = kind.width();
            if offset
                .checked_add(width)
                .is_none_or(|end| end > target.size)
            {
                return Err(Error::RelocationOutsideSection {
                    section: target.as_ref(),
                    offset,
                    width,
                    size: target.size,
                });
            }
            if let Definition::Section(s) = symbol.definition {
                let home = module
                    .sections
                    .get(usize::try_from(s).unwrap_or(usize::MAX));
                if home.is_none_or(|h| h.disposition == Disposition::NotLoaded)
                    && kind != RelocationKind::None
                {
                    let symbol_section = home.map_or(
                        SectionRef {
                            index: s,
                            name: String::new(),
                        },
                        Section::as_ref,
                    );
                    let symbol_name = if symbol.name.is_empty() {
                        String::from(symbol_section.name.as_str())
                    } else {
                        String::from(symbol.name)
                    };
                    return Err(Error::RelocationAgainstUnloadedSection {
                        section: target.as_ref(),
                        offset,
                        symbol: symbol_name,
                        symbol_section,
                    });
                }
            }
            by_kind.add(kind);
        }
        applied.push(RelocationSection {
            index: section.index,
            target: target.index,
            entries,
        });
    }
    module.counts.relocation_sections = applied.len();
    module.counts.relocations = by_kind;
    module.relocation_sections = applied;
    Ok(())
}

fn index_globals(module: &mut Module<'_>) -> Result<(), Error> {
    let mut globals = HashMap::new();
    for sym in &module.symbols {
        if sym.binding == Binding::Local
            || sym.definition == Definition::Undefined
            || sym.is_section()
            || sym.name.is_empty()
        {
            continue;
        }
        match globals.entry(sym.name) {
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(sym.index);
            }
            hashbrown::hash_map::Entry::Occupied(mut o) => {
                let existing_is_weak = module
                    .symbols
                    .get(usize::try_from(*o.get()).unwrap_or(usize::MAX))
                    .is_some_and(|e| e.binding == Binding::Weak);
                match (existing_is_weak, sym.binding == Binding::Weak) {
                    (true, false) => {
                        o.insert(sym.index);
                    }
                    (_, true) => {}
                    (false, false) => {
                        return Err(Error::DuplicateSymbol {
                            symbol: String::from(sym.name),
                        });
                    }
                }
            }
        }
    }
    module.globals = globals;
    Ok(())
}

fn find_exports(module: &mut Module<'_>) -> Result<(), Error> {
    let mut exports = Vec::new();
    for sym in &module.symbols {
        let Some(exported) = sym.name.strip_prefix(KSYMTAB_PREFIX) else {
            continue;
        };
        if sym.definition == Definition::Undefined || exported.is_empty() {
            continue;
        }
        // ABI.md wants the exported symbol global; Linux also exports file-local functions,
        // so a unique local definition is accepted when there is no global one.
        let definition = module.globals.get(exported).copied().or_else(|| {
            let mut locals = module.symbols.iter().filter(|s| {
                s.binding == Binding::Local
                    && s.name == exported
                    && s.definition != Definition::Undefined
            });
            let first = locals.next()?;
            locals.next().is_none().then_some(first.index)
        });
        // An export must have an address once loaded: defined in a loaded section, or absolute.
        let symbol = definition
            .filter(|&index| {
                module.symbol(index).is_some_and(|s| match s.definition {
                    Definition::Section(section) => module
                        .section(section)
                        .is_some_and(|sec| sec.disposition != Disposition::NotLoaded),
                    Definition::Absolute => true,
                    Definition::Undefined => false,
                })
            })
            .ok_or_else(|| Error::ExportNotDefined {
                export: String::from(exported),
            })?;
        exports.push(Export {
            name: exported,
            symbol,
        });
    }
    module.counts.exports = exports.len();
    module.exports = exports;
    Ok(())
}

fn read_modinfo(module: &mut Module<'_>) -> Result<(), Error> {
    let Some(section) = module
        .sections
        .iter()
        .find(|s| s.name == ".modinfo" && !s.is_nobits())
    else {
        return Ok(());
    };
    let text = core::str::from_utf8(section.data).map_err(|e| Error::BadModinfo {
        offset: u64::try_from(e.valid_up_to()).unwrap_or(u64::MAX),
    })?;
    module.modinfo = text;
    module.name = module
        .modinfo()
        .find(|&(key, _)| key == "name")
        .map_or("", |(_, value)| value);
    module.counts.modinfo_entries = module.modinfo().count();
    Ok(())
}
