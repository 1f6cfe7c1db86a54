//! A tiny ELF64 field editor for building malformed modules from real ones: one field at a
//! time, by section, symbol or relocation name, so each case reads like its description.

/// Section header fields: (offset in the header, width).
#[derive(Clone, Copy, Debug)]
pub enum Sh {
    Name,
    Type,
    Flags,
    Offset,
    Size,
    Link,
    Info,
    Align,
    EntSize,
}

impl Sh {
    fn at(self) -> (usize, usize) {
        match self {
            Sh::Name => (0, 4),
            Sh::Type => (4, 4),
            Sh::Flags => (8, 8),
            Sh::Offset => (24, 8),
            Sh::Size => (32, 8),
            Sh::Link => (40, 4),
            Sh::Info => (44, 4),
            Sh::Align => (48, 8),
            Sh::EntSize => (56, 8),
        }
    }
}

/// Symbol fields.
#[derive(Clone, Copy, Debug)]
pub enum St {
    Name,
    Info,
    Shndx,
    Value,
    Size,
}

impl St {
    fn at(self) -> (usize, usize) {
        match self {
            St::Name => (0, 4),
            St::Info => (4, 1),
            St::Shndx => (6, 2),
            St::Value => (8, 8),
            St::Size => (16, 8),
        }
    }
}

/// Relocation entry fields.
#[derive(Clone, Copy, Debug)]
pub enum Ra {
    Offset,
    Type,
    Sym,
    Addend,
}

impl Ra {
    fn at(self) -> (usize, usize) {
        match self {
            Ra::Offset => (0, 8),
            Ra::Type => (8, 4),
            Ra::Sym => (12, 4),
            Ra::Addend => (16, 8),
        }
    }
}

/// An ELF64 little-endian file being edited.
#[derive(Clone)]
pub struct Elf {
    pub bytes: Vec<u8>,
}

impl Elf {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    pub fn get(&self, at: usize, width: usize) -> u64 {
        let mut buf = [0u8; 8];
        buf[..width].copy_from_slice(&self.bytes[at..at + width]);
        u64::from_le_bytes(buf)
    }

    pub fn set(&mut self, at: usize, width: usize, value: u64) {
        self.bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }

    pub fn shoff(&self) -> usize {
        self.get(0x28, 8) as usize
    }

    pub fn shnum(&self) -> usize {
        self.get(0x3c, 2) as usize
    }

    fn header_at(&self, index: usize) -> usize {
        self.shoff() + index * 64
    }

    pub fn section_field(&self, index: usize, field: Sh) -> u64 {
        let (off, width) = field.at();
        self.get(self.header_at(index) + off, width)
    }

    pub fn set_section_field(&mut self, index: usize, field: Sh, value: u64) {
        let (off, width) = field.at();
        let at = self.header_at(index) + off;
        self.set(at, width, value);
    }

    fn c_str(&self, at: usize) -> &str {
        let end = self.bytes[at..].iter().position(|&b| b == 0).unwrap();
        std::str::from_utf8(&self.bytes[at..at + end]).unwrap()
    }

    pub fn section_name(&self, index: usize) -> &str {
        let shstrndx = self.get(0x3e, 2) as usize;
        let table = self.section_field(shstrndx, Sh::Offset) as usize;
        self.c_str(table + self.section_field(index, Sh::Name) as usize)
    }

    /// Index of the section named `name`.
    pub fn section(&self, name: &str) -> usize {
        (0..self.shnum())
            .find(|&i| self.section_name(i) == name)
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// Offset of the contents of section `name`.
    pub fn contents_at(&self, name: &str) -> usize {
        self.section_field(self.section(name), Sh::Offset) as usize
    }

    pub fn sh(&mut self, name: &str, field: Sh, value: u64) {
        let index = self.section(name);
        self.set_section_field(index, field, value);
    }

    fn symtab(&self) -> usize {
        (0..self.shnum())
            .find(|&i| self.section_field(i, Sh::Type) == 2)
            .unwrap()
    }

    /// Index of the symbol named `name`.
    pub fn symbol(&self, name: &str) -> usize {
        let symtab = self.symtab();
        let strtab =
            self.section_field(self.section_field(symtab, Sh::Link) as usize, Sh::Offset) as usize;
        let base = self.section_field(symtab, Sh::Offset) as usize;
        let count = self.section_field(symtab, Sh::Size) as usize / 24;
        (0..count)
            .find(|&i| self.c_str(strtab + self.get(base + i * 24, 4) as usize) == name)
            .unwrap_or_else(|| panic!("no symbol {name}"))
    }

    pub fn symbol_field(&self, name: &str, field: St) -> u64 {
        let base = self.section_field(self.symtab(), Sh::Offset) as usize;
        let (off, width) = field.at();
        self.get(base + self.symbol(name) * 24 + off, width)
    }

    pub fn st(&mut self, name: &str, field: St, value: u64) {
        let base = self.section_field(self.symtab(), Sh::Offset) as usize;
        let (off, width) = field.at();
        let at = base + self.symbol(name) * 24 + off;
        self.set(at, width, value);
    }

    /// Sets field of entry `entry` of relocation section `section`.
    pub fn ra(&mut self, section: &str, entry: usize, field: Ra, value: u64) {
        let base = self.contents_at(section);
        let (off, width) = field.at();
        self.set(base + entry * 24 + off, width, value);
    }

    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
    }
}
