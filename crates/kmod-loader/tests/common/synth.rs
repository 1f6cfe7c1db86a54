//! Builds small synthetic relocatable objects with `object`'s writer, for tests that need
//! exact control of sections, flags, alignments and relocations.

use object::write::{Object, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionFlags, SectionKind,
    SymbolFlags, SymbolKind, SymbolScope,
};

pub struct Synth {
    obj: Object<'static>,
}

impl Synth {
    pub fn new() -> Self {
        Self {
            obj: Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little),
        }
    }

    /// A section with explicit ELF flags (SHF_*), contents and alignment.
    pub fn section(&mut self, name: &str, sh_flags: u64, data: &[u8], align: u64) -> SectionId {
        let id = self
            .obj
            .add_section(Vec::new(), name.as_bytes().to_vec(), SectionKind::Data);
        self.obj.section_mut(id).flags = SectionFlags::Elf {
            sh_type: object::elf::SHT_PROGBITS,
            sh_flags: object::elf::SectionFlags(sh_flags),
        };
        self.obj.append_section_data(id, data, align);
        id
    }

    /// A NOBITS section (writable, allocated).
    pub fn bss(&mut self, name: &str, size: u64, align: u64) -> SectionId {
        let id = self.obj.add_section(
            Vec::new(),
            name.as_bytes().to_vec(),
            SectionKind::UninitializedData,
        );
        self.obj.append_section_bss(id, size, align);
        id
    }

    pub fn text(&mut self, name: &str, data: &[u8], align: u64) -> SectionId {
        self.section(name, SHF_ALLOC | SHF_EXECINSTR, data, align)
    }

    pub fn rodata(&mut self, name: &str, data: &[u8], align: u64) -> SectionId {
        self.section(name, SHF_ALLOC, data, align)
    }

    pub fn data(&mut self, name: &str, data: &[u8], align: u64) -> SectionId {
        self.section(name, SHF_ALLOC | SHF_WRITE, data, align)
    }

    /// A global symbol defined at `value` in `section`.
    pub fn global(&mut self, name: &str, section: SectionId, value: u64) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value,
            size: 0,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        })
    }

    /// An undefined symbol.
    pub fn undefined(&mut self, name: &str, weak: bool) -> SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Unknown,
            scope: SymbolScope::Dynamic,
            weak,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        })
    }

    pub fn reloc(
        &mut self,
        section: SectionId,
        offset: u64,
        symbol: SymbolId,
        addend: i64,
        r_type: u32,
    ) {
        self.obj
            .add_relocation(
                section,
                Relocation {
                    offset,
                    symbol,
                    addend,
                    flags: RelocationFlags::Elf {
                        r_type: object::elf::RelocationType(r_type),
                    },
                },
            )
            .unwrap();
    }

    pub fn build(&self) -> Vec<u8> {
        self.obj.write().unwrap()
    }
}

pub const SHF_WRITE: u64 = 1;
pub const SHF_ALLOC: u64 = 2;
pub const SHF_EXECINSTR: u64 = 4;
