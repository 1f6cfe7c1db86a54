//! The loader's one error type.
//!
//! Every way a module can be refused has its own variant, and each variant carries what a
//! person needs to find the fault in the file: the section (index and name), the symbol, the
//! file or section offset. [`Error::kind`] gives a field-less [`ErrorKind`] for code that only
//! needs to classify (a kernel mapping errors to errno values, the malformed-module corpus).

use alloc::string::String;
use core::fmt;

use crate::relocate::RelocationKind;
use crate::resolve::ProviderId;
use crate::validate::RegionKind;

/// A section as errors name it: its index in the section header table and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionRef {
    /// Index in the section header table.
    pub index: u32,
    /// Name from the section header string table (empty when it could not be read).
    pub name: String,
}

impl fmt::Display for SectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "section [{}]", self.index)
        } else {
            write!(f, "section [{}] {}", self.index, self.name)
        }
    }
}

/// Why a module was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- ELF header -------------------------------------------------------------------
    /// A structure of the file extends past its end.
    #[error(
        "{what} at offset {offset:#x} ({size} bytes) extends past the end of the {file_size}-byte file"
    )]
    Truncated {
        /// Which structure ("ELF header", "section header table").
        what: &'static str,
        /// Its file offset.
        offset: u64,
        /// Its size in bytes.
        size: u64,
        /// The file's size.
        file_size: u64,
    },
    /// The file does not start with `\x7fELF`.
    #[error("bad ELF magic {found:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// `EI_CLASS` is not ELFCLASS64.
    #[error("ELF class {class} is not ELFCLASS64 (2)")]
    BadClass {
        /// The `EI_CLASS` byte.
        class: u8,
    },
    /// `EI_DATA` is not little-endian.
    #[error("ELF data encoding {encoding} is not ELFDATA2LSB (1)")]
    BadDataEncoding {
        /// The `EI_DATA` byte.
        encoding: u8,
    },
    /// `EI_VERSION` or `e_version` is not EV_CURRENT.
    #[error("ELF version {version} is not EV_CURRENT (1)")]
    BadVersion {
        /// The version found.
        version: u32,
    },
    /// `e_machine` is not EM_X86_64.
    #[error("machine {machine} is not EM_X86_64 (62)")]
    BadMachine {
        /// The `e_machine` field.
        machine: u16,
    },
    /// `e_type` is not ET_REL: a module is a relocatable object.
    #[error("ELF type {file_type} is not ET_REL (1): a module must be a relocatable object")]
    NotRelocatable {
        /// The `e_type` field.
        file_type: u16,
    },
    /// `e_ehsize` or `e_shentsize` is not the ELF64 structure size.
    #[error("header field {field} is {found}, expected {expected}")]
    BadHeaderSize {
        /// `e_ehsize` or `e_shentsize`.
        field: &'static str,
        /// The value found.
        found: u16,
        /// The ELF64 size.
        expected: u16,
    },
    /// The file has no section header table (or uses extended section numbering).
    #[error("no section headers (e_shnum is 0; extended section numbering is not supported)")]
    NoSections,
    /// `e_shstrndx` does not name a string table.
    #[error("section name string table index {index} is invalid ({sections} sections)")]
    BadStringTableIndex {
        /// The `e_shstrndx` field.
        index: u32,
        /// The number of sections.
        sections: u32,
    },

    // ---- sections ---------------------------------------------------------------------
    /// A section's contents extend past the end of the file.
    #[error(
        "{section}: contents at offset {offset:#x} ({size} bytes) extend past the end of the {file_size}-byte file"
    )]
    SectionOutOfBounds {
        /// The section.
        section: SectionRef,
        /// `sh_offset`.
        offset: u64,
        /// `sh_size`.
        size: u64,
        /// The file's size.
        file_size: u64,
    },
    /// Two parts of the file (headers, section contents) occupy the same bytes.
    #[error("{first} and {second} overlap in the file")]
    SectionsOverlap {
        /// The part that starts first.
        first: String,
        /// The part that starts inside it.
        second: String,
    },
    /// A section name is not a NUL-terminated UTF-8 string inside the string table.
    #[error(
        "section [{index}]: name at string table offset {offset:#x} is out of bounds, unterminated or not UTF-8"
    )]
    BadSectionName {
        /// The section's index.
        index: u32,
        /// `sh_name`.
        offset: u64,
    },
    /// `sh_addralign` is not a power of two.
    #[error("{section}: alignment {alignment} is not a power of two")]
    BadAlignment {
        /// The section.
        section: SectionRef,
        /// `sh_addralign`.
        alignment: u64,
    },
    /// A loaded section asks for more alignment than a page: regions are page-aligned.
    #[error("{section}: alignment {alignment} exceeds the maximum {max}")]
    AlignmentTooLarge {
        /// The section.
        section: SectionRef,
        /// `sh_addralign`.
        alignment: u64,
        /// The largest alignment the loader honours.
        max: u64,
    },
    /// A loaded section is larger than a region may be.
    #[error("{section}: size {size} exceeds the maximum region size {max}")]
    SectionTooLarge {
        /// The section.
        section: SectionRef,
        /// `sh_size`.
        size: u64,
        /// The maximum region size.
        max: u64,
    },
    /// A section is both writable and executable (W^X).
    #[error("{section} is both writable and executable")]
    WriteAndExecute {
        /// The section.
        section: SectionRef,
    },
    /// A table section (symbols, relocations) has the wrong entry size.
    #[error("{section}: entry size {entsize}, expected {expected}")]
    BadEntrySize {
        /// The table section.
        section: SectionRef,
        /// `sh_entsize`.
        entsize: u64,
        /// The ELF64 entry size.
        expected: u64,
    },
    /// A table section's size is not a whole number of entries.
    #[error("{section}: size {size} is not a multiple of the entry size {entsize}")]
    BadTableSize {
        /// The table section.
        section: SectionRef,
        /// `sh_size`.
        size: u64,
        /// The entry size.
        entsize: u64,
    },
    /// `sh_link` does not name the section it must.
    #[error("{section}: sh_link {link} does not name {expected}")]
    BadLink {
        /// The section whose link is wrong.
        section: SectionRef,
        /// `sh_link`.
        link: u32,
        /// What it must name ("a string table", "the symbol table").
        expected: &'static str,
    },

    // ---- symbols ----------------------------------------------------------------------
    /// The module has no symbol table.
    #[error("no symbol table (SHT_SYMTAB)")]
    MissingSymbolTable,
    /// The module has more than one symbol table.
    #[error("more than one symbol table: {first} and {second}")]
    MultipleSymbolTables {
        /// The first one.
        first: SectionRef,
        /// Another one.
        second: SectionRef,
    },
    /// A symbol name is not a NUL-terminated UTF-8 string inside the string table.
    #[error(
        "symbol {index}: name at string table offset {offset:#x} is out of bounds, unterminated or not UTF-8"
    )]
    BadSymbolName {
        /// The symbol's index.
        index: u32,
        /// `st_name`.
        offset: u64,
    },
    /// A symbol's section index is out of range or a reserved value the loader does not support.
    #[error("symbol {index} `{symbol}`: section index {shndx:#x} is out of range or unsupported")]
    BadSymbolSection {
        /// The symbol's index.
        index: u32,
        /// The symbol's name.
        symbol: String,
        /// `st_shndx`.
        shndx: u16,
    },
    /// A defined symbol's value lies past the end of its section.
    #[error("symbol `{symbol}`: value {value:#x} lies outside {section} ({section_size} bytes)")]
    SymbolOutsideSection {
        /// The symbol's name.
        symbol: String,
        /// Its section.
        section: SectionRef,
        /// `st_value`.
        value: u64,
        /// The section's size.
        section_size: u64,
    },
    /// A COMMON symbol: modules must be built with `-fno-common`, as Linux requires.
    #[error("symbol `{symbol}` is COMMON: build the module with -fno-common")]
    CommonSymbol {
        /// The symbol's name.
        symbol: String,
    },
    /// Two global definitions of the same symbol.
    #[error("symbol `{symbol}` is defined twice")]
    DuplicateSymbol {
        /// The symbol's name.
        symbol: String,
    },

    // ---- relocations ------------------------------------------------------------------
    /// A relocation section's `sh_info` does not name a section that can be relocated.
    #[error("{section}: relocation target section index {target} is invalid")]
    BadRelocationTarget {
        /// The relocation section.
        section: SectionRef,
        /// `sh_info`.
        target: u32,
    },
    /// SHT_REL relocations (without addends) applied to a loaded section: x86-64 uses SHT_RELA.
    #[error("{section}: SHT_REL relocations are not supported on x86-64")]
    RelNotSupported {
        /// The relocation section.
        section: SectionRef,
    },
    /// A relocation type the loader does not implement.
    #[error("{section} offset {offset:#x}: unsupported relocation type {r_type}")]
    UnsupportedRelocation {
        /// The section being relocated.
        section: SectionRef,
        /// `r_offset`.
        offset: u64,
        /// The ELF relocation type.
        r_type: u32,
    },
    /// A relocation names a symbol index past the end of the symbol table.
    #[error(
        "{section} offset {offset:#x}: symbol index {symbol} is out of range ({symbols} symbols)"
    )]
    RelocationSymbolOutOfRange {
        /// The section being relocated.
        section: SectionRef,
        /// `r_offset`.
        offset: u64,
        /// The symbol index.
        symbol: u32,
        /// The number of symbols.
        symbols: u32,
    },
    /// A relocation writes outside its target section.
    #[error(
        "{section}: relocation at offset {offset:#x} ({width} bytes) lies outside the section ({size} bytes)"
    )]
    RelocationOutsideSection {
        /// The section being relocated.
        section: SectionRef,
        /// `r_offset`.
        offset: u64,
        /// Bytes written.
        width: u64,
        /// The section's size.
        size: u64,
    },
    /// Relocations against a NOBITS section, which has no contents to patch.
    #[error("{section} has relocations but no contents (NOBITS)")]
    RelocationInNobits {
        /// The NOBITS section.
        section: SectionRef,
    },
    /// A relocation of a loaded section refers to a symbol in a section that is not loaded.
    #[error(
        "{section} offset {offset:#x}: refers to `{symbol}` in {symbol_section}, which is not loaded"
    )]
    RelocationAgainstUnloadedSection {
        /// The section being relocated.
        section: SectionRef,
        /// `r_offset`.
        offset: u64,
        /// The symbol.
        symbol: String,
        /// The section the symbol lives in.
        symbol_section: SectionRef,
    },

    // ---- modinfo and exports ----------------------------------------------------------
    /// `.modinfo` is not UTF-8.
    #[error(".modinfo is not UTF-8 (at offset {offset:#x} of the section)")]
    BadModinfo {
        /// Where decoding failed.
        offset: u64,
    },
    /// `__ksymtab_X` exists but `X` is not defined in a loaded section of the module.
    #[error("export `{export}` has a __ksymtab entry but is not defined in a loaded section")]
    ExportNotDefined {
        /// The exported name.
        export: String,
    },

    // ---- layout -----------------------------------------------------------------------
    /// A region would exceed the maximum region size.
    #[error("{region} region would be {size} bytes, more than the maximum {max}")]
    RegionTooLarge {
        /// The region.
        region: RegionKind,
        /// Its size (or the size reached when overflow was detected).
        size: u64,
        /// The maximum.
        max: u64,
    },

    // ---- resolve ----------------------------------------------------------------------
    /// An undefined symbol no provider knows.
    #[error("module `{module}`: unknown symbol `{symbol}`")]
    UnknownSymbol {
        /// The module's name (from `.modinfo`).
        module: String,
        /// The symbol.
        symbol: String,
    },
    /// An export table already holds the name.
    #[error(
        "symbol `{symbol}` is already exported by provider {existing}, cannot export it for {new}"
    )]
    DuplicateExport {
        /// The symbol.
        symbol: String,
        /// Who exports it already.
        existing: ProviderId,
        /// Who tried to export it again.
        new: ProviderId,
    },

    // ---- placement and relocation -----------------------------------------------------
    /// The caller's memory for a region is smaller than the layout needs.
    #[error("{region} region memory is {provided} bytes, the layout needs {needed}")]
    RegionTooSmall {
        /// The region.
        region: RegionKind,
        /// Bytes the layout needs.
        needed: u64,
        /// Bytes supplied.
        provided: u64,
    },
    /// A region's base address is not page-aligned, or the region wraps around the address space.
    #[error(
        "{region} region base {base:#x} is not page-aligned or the region ({size} bytes) wraps the address space"
    )]
    BadRegionBase {
        /// The region.
        region: RegionKind,
        /// The base address supplied.
        base: u64,
        /// The region's size.
        size: u64,
    },
    /// The caller could not supply memory for the regions.
    #[error("no memory for the regions (core {core} bytes, init {init} bytes)")]
    OutOfMemory {
        /// Core region size.
        core: u64,
        /// Init region size.
        init: u64,
    },
    /// A relocated value does not fit its field.
    #[error("{section} offset {offset:#x}: {kind} against `{symbol}` = {value:#x} does not fit")]
    RelocationOverflow {
        /// The section being relocated.
        section: SectionRef,
        /// `r_offset`.
        offset: u64,
        /// The relocation type.
        kind: RelocationKind,
        /// The symbol.
        symbol: String,
        /// The value that did not fit.
        value: i128,
    },
    /// A relocation refers to an undefined symbol that resolution left without an address.
    #[error("{section} offset {offset:#x}: refers to `{symbol}`, which has no address")]
    UnresolvedSymbolReferenced {
        /// The section being relocated.
        section: SectionRef,
        /// `r_offset`.
        offset: u64,
        /// The symbol.
        symbol: String,
    },
}

/// The variant of an [`Error`] without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // One-to-one with `Error`'s variants, which are documented.
pub enum ErrorKind {
    Truncated,
    BadMagic,
    BadClass,
    BadDataEncoding,
    BadVersion,
    BadMachine,
    NotRelocatable,
    BadHeaderSize,
    NoSections,
    BadStringTableIndex,
    SectionOutOfBounds,
    SectionsOverlap,
    BadSectionName,
    BadAlignment,
    AlignmentTooLarge,
    SectionTooLarge,
    WriteAndExecute,
    BadEntrySize,
    BadTableSize,
    BadLink,
    MissingSymbolTable,
    MultipleSymbolTables,
    BadSymbolName,
    BadSymbolSection,
    SymbolOutsideSection,
    CommonSymbol,
    DuplicateSymbol,
    BadRelocationTarget,
    RelNotSupported,
    UnsupportedRelocation,
    RelocationSymbolOutOfRange,
    RelocationOutsideSection,
    RelocationInNobits,
    RelocationAgainstUnloadedSection,
    BadModinfo,
    ExportNotDefined,
    RegionTooLarge,
    UnknownSymbol,
    DuplicateExport,
    RegionTooSmall,
    BadRegionBase,
    OutOfMemory,
    RelocationOverflow,
    UnresolvedSymbolReferenced,
}

impl ErrorKind {
    /// The kind's name, as the variant is spelled.
    pub fn name(self) -> &'static str {
        // Spelled out (not Debug) so that the corpus manifest and logs never depend on
        // formatting machinery.
        match self {
            Self::Truncated => "Truncated",
            Self::BadMagic => "BadMagic",
            Self::BadClass => "BadClass",
            Self::BadDataEncoding => "BadDataEncoding",
            Self::BadVersion => "BadVersion",
            Self::BadMachine => "BadMachine",
            Self::NotRelocatable => "NotRelocatable",
            Self::BadHeaderSize => "BadHeaderSize",
            Self::NoSections => "NoSections",
            Self::BadStringTableIndex => "BadStringTableIndex",
            Self::SectionOutOfBounds => "SectionOutOfBounds",
            Self::SectionsOverlap => "SectionsOverlap",
            Self::BadSectionName => "BadSectionName",
            Self::BadAlignment => "BadAlignment",
            Self::AlignmentTooLarge => "AlignmentTooLarge",
            Self::SectionTooLarge => "SectionTooLarge",
            Self::WriteAndExecute => "WriteAndExecute",
            Self::BadEntrySize => "BadEntrySize",
            Self::BadTableSize => "BadTableSize",
            Self::BadLink => "BadLink",
            Self::MissingSymbolTable => "MissingSymbolTable",
            Self::MultipleSymbolTables => "MultipleSymbolTables",
            Self::BadSymbolName => "BadSymbolName",
            Self::BadSymbolSection => "BadSymbolSection",
            Self::SymbolOutsideSection => "SymbolOutsideSection",
            Self::CommonSymbol => "CommonSymbol",
            Self::DuplicateSymbol => "DuplicateSymbol",
            Self::BadRelocationTarget => "BadRelocationTarget",
            Self::RelNotSupported => "RelNotSupported",
            Self::UnsupportedRelocation => "UnsupportedRelocation",
            Self::RelocationSymbolOutOfRange => "RelocationSymbolOutOfRange",
            Self::RelocationOutsideSection => "RelocationOutsideSection",
            Self::RelocationInNobits => "RelocationInNobits",
            Self::RelocationAgainstUnloadedSection => "RelocationAgainstUnloadedSection",
            Self::BadModinfo => "BadModinfo",
            Self::ExportNotDefined => "ExportNotDefined",
            Self::RegionTooLarge => "RegionTooLarge",
            Self::UnknownSymbol => "UnknownSymbol",
            Self::DuplicateExport => "DuplicateExport",
            Self::RegionTooSmall => "RegionTooSmall",
            Self::BadRegionBase => "BadRegionBase",
            Self::OutOfMemory => "OutOfMemory",
            Self::RelocationOverflow => "RelocationOverflow",
            Self::UnresolvedSymbolReferenced => "UnresolvedSymbolReferenced",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Error {
    /// This error's variant, without details.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Truncated { .. } => ErrorKind::Truncated,
            Self::BadMagic { .. } => ErrorKind::BadMagic,
            Self::BadClass { .. } => ErrorKind::BadClass,
            Self::BadDataEncoding { .. } => ErrorKind::BadDataEncoding,
            Self::BadVersion { .. } => ErrorKind::BadVersion,
            Self::BadMachine { .. } => ErrorKind::BadMachine,
            Self::NotRelocatable { .. } => ErrorKind::NotRelocatable,
            Self::BadHeaderSize { .. } => ErrorKind::BadHeaderSize,
            Self::NoSections => ErrorKind::NoSections,
            Self::BadStringTableIndex { .. } => ErrorKind::BadStringTableIndex,
            Self::SectionOutOfBounds { .. } => ErrorKind::SectionOutOfBounds,
            Self::SectionsOverlap { .. } => ErrorKind::SectionsOverlap,
            Self::BadSectionName { .. } => ErrorKind::BadSectionName,
            Self::BadAlignment { .. } => ErrorKind::BadAlignment,
            Self::AlignmentTooLarge { .. } => ErrorKind::AlignmentTooLarge,
            Self::SectionTooLarge { .. } => ErrorKind::SectionTooLarge,
            Self::WriteAndExecute { .. } => ErrorKind::WriteAndExecute,
            Self::BadEntrySize { .. } => ErrorKind::BadEntrySize,
            Self::BadTableSize { .. } => ErrorKind::BadTableSize,
            Self::BadLink { .. } => ErrorKind::BadLink,
            Self::MissingSymbolTable => ErrorKind::MissingSymbolTable,
            Self::MultipleSymbolTables { .. } => ErrorKind::MultipleSymbolTables,
            Self::BadSymbolName { .. } => ErrorKind::BadSymbolName,
            Self::BadSymbolSection { .. } => ErrorKind::BadSymbolSection,
            Self::SymbolOutsideSection { .. } => ErrorKind::SymbolOutsideSection,
            Self::CommonSymbol { .. } => ErrorKind::CommonSymbol,
            Self::DuplicateSymbol { .. } => ErrorKind::DuplicateSymbol,
            Self::BadRelocationTarget { .. } => ErrorKind::BadRelocationTarget,
            Self::RelNotSupported { .. } => ErrorKind::RelNotSupported,
            Self::UnsupportedRelocation { .. } => ErrorKind::UnsupportedRelocation,
            Self::RelocationSymbolOutOfRange { .. } => ErrorKind::RelocationSymbolOutOfRange,
            Self::RelocationOutsideSection { .. } => ErrorKind::RelocationOutsideSection,
            Self::RelocationInNobits { .. } => ErrorKind::RelocationInNobits,
            Self::RelocationAgainstUnloadedSection { .. } => {
                ErrorKind::RelocationAgainstUnloadedSection
            }
            Self::BadModinfo { .. } => ErrorKind::BadModinfo,
            Self::ExportNotDefined { .. } => ErrorKind::ExportNotDefined,
            Self::RegionTooLarge { .. } => ErrorKind::RegionTooLarge,
            Self::UnknownSymbol { .. } => ErrorKind::UnknownSymbol,
            Self::DuplicateExport { .. } => ErrorKind::DuplicateExport,
            Self::RegionTooSmall { .. } => ErrorKind::RegionTooSmall,
            Self::BadRegionBase { .. } => ErrorKind::BadRegionBase,
            Self::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            Self::RelocationOverflow { .. } => ErrorKind::RelocationOverflow,
            Self::UnresolvedSymbolReferenced { .. } => ErrorKind::UnresolvedSymbolReferenced,
        }
    }
}
