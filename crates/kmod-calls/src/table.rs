//! The signature section of a module file: finding it ([`find_section`]), reading it
//! ([`ExportTable::parse`]), and checking it against the module's exports
//! ([`ExportTable::check_exports`]).

use object::elf;
use object::read::elf::{FileHeader, SectionHeader};

use crate::error::{CoverageError, FindError, ModuleError, SectionError};
use crate::sig::Export;

/// Name of the section holding a module's export signatures (modules/ABI.md, "Export
/// signatures"). Not SHF_ALLOC: the monolithic loader reads past it, as it does past the
/// symbol table. A future incompatible format gets a new section name.
pub const SECTION: &str = ".kmod_exportsig";

/// Largest signature section read.
pub const MAX_SECTION: usize = 64 * 1024;

/// Most records (exports with a signature) in one section.
pub const MAX_EXPORTS: usize = 512;

/// Finds [`SECTION`] in an ELF64 little-endian file and returns its contents (`Ok(None)`
/// if there is none: a module without signed exports, or a Linux module). Any bytes give
/// `Ok` or a typed error, in time linear in the number of section headers.
pub fn find_section(file: &[u8]) -> Result<Option<&[u8]>, FindError> {
    let header = elf::FileHeader64::<object::Endianness>::parse(file).map_err(FindError::Elf)?;
    let endian = header.endian().map_err(FindError::Elf)?;
    if endian != object::Endianness::Little {
        return Err(FindError::BigEndian);
    }
    let sections = header.sections(endian, file).map_err(FindError::Elf)?;
    let mut found: Option<(usize, &elf::SectionHeader64<object::Endianness>)> = None;
    for (index, sh) in sections.iter().enumerate() {
        let name = sections.section_name(endian, sh).map_err(FindError::Elf)?;
        if name != SECTION.as_bytes() {
            continue;
        }
        if let Some((first, _)) = found {
            return Err(FindError::Duplicate {
                first,
                second: index,
            });
        }
        found = Some((index, sh));
    }
    let Some((index, sh)) = found else {
        return Ok(None);
    };
    if sh.sh_flags(endian).0 & elf::SHF_ALLOC.0 != 0 {
        return Err(FindError::Allocated { index });
    }
    if sh.sh_type(endian) != elf::SHT_PROGBITS {
        return Err(FindError::NotProgbits {
            index,
            sh_type: sh.sh_type(endian).0,
        });
    }
    let size = sh.sh_size(endian);
    if size > MAX_SECTION as u64 {
        return Err(FindError::TooLarge {
            size,
            max: MAX_SECTION,
        });
    }
    let data = sh
        .data(endian, file)
        .map_err(|_| FindError::OutOfBounds { index })?;
    Ok(Some(data))
}

/// A module's export signatures, checked: every record parses, none is empty or
/// unterminated, no name appears twice. Borrows the section; records are parsed again on
/// access (a few hundred nanoseconds each), so the table needs no allocation.
///
/// An export's **index** is its record's position in the section; a call names its export
/// by that index ([`crate::RequestHeader::export`]), and manager, stubs and server derive
/// it from the same file.
#[derive(Clone, Copy, Debug)]
pub struct ExportTable<'a> {
    data: &'a [u8],
    len: usize,
}

/// Records of a section, with their offsets; empty records (linker padding) are skipped.
struct Records<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Records<'a> {
    /// `(offset, record)`, or the offset of a record without its NUL.
    type Item = Result<(usize, &'a [u8]), usize>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.data.get(self.at..)?;
            if rest.is_empty() {
                return None;
            }
            let start = self.at;
            let Some(nul) = rest.iter().position(|&b| b == 0) else {
                self.at = self.data.len();
                return Some(Err(start));
            };
            self.at = start.saturating_add(nul).saturating_add(1);
            if nul > 0 {
                return Some(Ok((start, rest.get(..nul).unwrap_or(&[]))));
            }
        }
    }
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl<'a> ExportTable<'a> {
    /// An empty table (a module without a signature section).
    pub const EMPTY: ExportTable<'static> = ExportTable { data: &[], len: 0 };

    /// Reads the contents of a [`SECTION`]: NUL-terminated records, each
    /// `name(args) -> ret` ([`Export::parse`]); runs of NULs between records are padding.
    pub fn parse(data: &'a [u8]) -> Result<ExportTable<'a>, SectionError<'a>> {
        if data.len() > MAX_SECTION {
            return Err(SectionError::TooLarge {
                size: data.len() as u64,
                max: MAX_SECTION,
            });
        }
        // Name hashes of the records so far: duplicates are found in O(n^2) integer
        // compares, not string compares, and without allocating.
        let mut hashes = [0u64; MAX_EXPORTS];
        let mut offsets = [0usize; MAX_EXPORTS];
        let mut len = 0usize;
        for record in (Records { data, at: 0 }) {
            let (offset, bytes) = record.map_err(|offset| SectionError::Unterminated { offset })?;
            let export = Export::parse(bytes).map_err(|source| SectionError::Record {
                offset,
                index: len,
                source,
            })?;
            if len >= MAX_EXPORTS {
                return Err(SectionError::TooManyExports { max: MAX_EXPORTS });
            }
            let hash = name_hash(export.name);
            for (h, &first) in hashes.iter().zip(&offsets).take(len) {
                if *h != hash {
                    continue;
                }
                let earlier = data
                    .get(first..)
                    .and_then(|r| r.split(|&b| b == 0).next())
                    .and_then(|r| Export::parse(r).ok());
                if earlier.is_some_and(|e| e.name == export.name) {
                    return Err(SectionError::Duplicate {
                        name: export.name,
                        offset,
                        first,
                    });
                }
            }
            if let (Some(h), Some(o)) = (hashes.get_mut(len), offsets.get_mut(len)) {
                *h = hash;
                *o = offset;
            }
            len = len.saturating_add(1);
        }
        Ok(ExportTable { data, len })
    }

    /// Finds and reads the signature section of a module file ([`find_section`] then
    /// [`ExportTable::parse`]); a file without one gives an empty table.
    pub fn from_module(file: &'a [u8]) -> Result<ExportTable<'a>, ModuleError<'a>> {
        match find_section(file).map_err(ModuleError::Find)? {
            None => Ok(ExportTable { data: &[], len: 0 }),
            Some(data) => ExportTable::parse(data).map_err(ModuleError::Section),
        }
    }

    /// Number of exports with a signature.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The exports in section order (index order).
    pub fn iter(&self) -> impl Iterator<Item = Export<'a>> + 'a {
        // Every record parsed when the table was built.
        Records {
            data: self.data,
            at: 0,
        }
        .filter_map(|r| r.ok())
        .filter_map(|(_, bytes)| Export::parse(bytes).ok())
    }

    /// The export of index `index`.
    pub fn get(&self, index: u32) -> Option<Export<'a>> {
        self.iter().nth(usize::try_from(index).ok()?)
    }

    /// The index and signature of export `name`.
    pub fn find(&self, name: &str) -> Option<(u32, Export<'a>)> {
        self.iter()
            .enumerate()
            .find(|(_, e)| e.name == name)
            .and_then(|(i, e)| Some((u32::try_from(i).ok()?, e)))
    }

    /// Checks the table against the module's exports (the `X` of its `__ksymtab_X`
    /// symbols): every export must have a signature, or the microkernel could not call it
    /// from another server; every signature must name an export. The monolithic kernel never
    /// asks: there a call is a direct jump.
    pub fn check_exports<'e, I>(&self, exports: I) -> Result<(), CoverageError<'a, 'e>>
    where
        I: IntoIterator<Item = &'e str> + Clone,
    {
        for export in exports.clone() {
            if self.find(export).is_none() {
                return Err(CoverageError::Undeclared { export });
            }
        }
        for e in self.iter() {
            if !exports.clone().into_iter().any(|x| x == e.name) {
                return Err(CoverageError::Stale { name: e.name });
            }
        }
        Ok(())
    }
}
