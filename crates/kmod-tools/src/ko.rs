//! Reading one module file: decompression, ELF checks, `.modinfo`, exports and imports.
//!
//! Memory stays in proportion to the file: `modinfo` reads only the section table and the
//! `.modinfo` section ([`read_modinfo`]); [`ModuleFile`] copies the symbol string table once
//! and keeps every symbol name as a range into that copy, so a module whose thousands of
//! symbols all point into one long string costs that string once, not once per symbol.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{ElfFile64, ElfSection64, FileHeader, SectionHeader, Sym};
use object::{Endianness, Object, ObjectSection};

use crate::error::{Result, ToolError};
pub use crate::input::{MAX_MODULE_SIZE, read_module_bytes};

/// File name endings of module files, longest first.
pub const MODULE_EXTENSIONS: &[&str] = &[".ko.xz", ".ko.zst", ".ko"];

/// The name of a module file without directory and module extension (`a/b/xt_mark.ko.xz`
/// → `xt_mark`), or `None` if it has no module extension.
pub fn file_stem(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    MODULE_EXTENSIONS
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .filter(|stem| !stem.is_empty())
}

/// The module name Linux derives from a file name: the stem with `-` turned into `_`.
pub fn module_name(path: &Path) -> Option<String> {
    file_stem(path).map(|s| s.replace('-', "_"))
}

/// Parses `data` as an ELF64 x86-64 relocatable object, the only kind of module there is.
pub fn parse_elf<'d>(path: &Path, data: &'d [u8]) -> Result<ElfFile64<'d, Endianness>> {
    let not_module = |reason: &str| ToolError::NotModule {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(not_module("no ELF magic"));
    }
    // e_ident[EI_CLASS] is byte 4; object's ELF64 parser would also refuse ELF32, but with a
    // less helpful message.
    if data.get(4) != Some(&2) {
        return Err(not_module("not a 64-bit ELF file"));
    }
    let file = ElfFile64::<Endianness>::parse(data).map_err(|source| ToolError::Elf {
        path: path.to_owned(),
        source,
    })?;
    let header = file.elf_header();
    let endian = file.endian();
    if endian != Endianness::Little {
        return Err(not_module("not little-endian"));
    }
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Err(not_module(&format!(
            "machine {:?} is not x86-64",
            header.e_machine(endian)
        )));
    }
    if header.e_type(endian) != elf::ET_REL {
        return Err(not_module(&format!(
            "ELF type {:?} is not ET_REL (relocatable)",
            header.e_type(endian)
        )));
    }
    Ok(file)
}

/// The first section called `name`, as Linux's loader (`find_sec`) and kmod pick when a
/// name occurs twice. Every lookup of a section by name goes through here.
pub fn first_section<'d, 'f>(
    path: &Path,
    file: &'f ElfFile64<'d, Endianness>,
    name: &str,
) -> Result<Option<ElfSection64<'d, 'f, Endianness>>> {
    for section in file.sections() {
        let section_name = section.name_bytes().map_err(|source| ToolError::Elf {
            path: path.to_owned(),
            source,
        })?;
        if section_name == name.as_bytes() {
            return Ok(Some(section));
        }
    }
    Ok(None)
}

/// `.modinfo` entries in file order (`key`, `value`).
pub type Modinfo = Vec<(String, String)>;

/// The `.modinfo` of a parsed module (the first section of that name), or none.
pub fn modinfo_of(path: &Path, file: &ElfFile64<'_, Endianness>) -> Result<Modinfo> {
    let Some(section) = first_section(path, file, ".modinfo")? else {
        return Ok(Vec::new());
    };
    let data = section.data().map_err(|source| ToolError::Elf {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_modinfo(data))
}

/// What `modinfo` shows of a module: its `.modinfo` and its appended signature.
#[derive(Debug, Clone)]
pub struct ModinfoView {
    /// `.modinfo` entries in file order, from the first `.modinfo` section.
    pub modinfo: Modinfo,
    /// Its appended signature, as kmod's modinfo shows it (not verified).
    pub signature: Option<kmod_sig::SignatureInfo>,
}

/// Reads what `modinfo` shows of the module at `path`, and nothing else: no symbol is
/// looked at.
pub fn read_modinfo(path: &Path) -> Result<ModinfoView> {
    let data = read_module_bytes(path)?;
    let file = parse_elf(path, &data)?;
    Ok(ModinfoView {
        modinfo: modinfo_of(path, &file)?,
        signature: kmod_sig::SignatureInfo::of(&data),
    })
}

/// A symbol a module needs from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Import<'a> {
    /// Symbol name.
    pub name: &'a str,
    /// A weak reference: the module loads without it.
    pub weak: bool,
}

/// A symbol name: a byte range of [`SymbolNames::strings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// A module's symbol string table, copied once, and its names of interest as ranges of it.
#[derive(Debug, Clone, Default)]
struct SymbolNames {
    /// The string table, bytes that are not UTF-8 replaced by `?` one for one (so offsets
    /// stay those of the file); no recorded name covers a replaced byte.
    strings: Box<str>,
    exports: Vec<Span>,
    imports: Vec<(Span, bool)>,
    defined_globals: Vec<Span>,
}

impl SymbolNames {
    fn get(&self, span: Span) -> &str {
        // Spans are recorded only where they are valid char boundaries of `strings`.
        self.strings
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }
}

/// A name compared by content but hashed by its length and ends only, so that hashing costs
/// the same for a name of 10 bytes and one of 10 MB (hostile modules have such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NameKey<'a>(pub &'a str);

impl Hash for NameKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bytes = self.0.as_bytes();
        const ENDS: usize = 16;
        bytes.len().hash(state);
        bytes[..bytes.len().min(ENDS)].hash(state);
        bytes[bytes.len().saturating_sub(ENDS)..].hash(state);
    }
}

/// `bytes` as a string of the same length, each byte of an invalid UTF-8 sequence replaced
/// by `?`, and the replaced ranges.
fn repair_utf8(bytes: &[u8]) -> (String, Vec<(usize, usize)>) {
    let mut text = String::with_capacity(bytes.len());
    let mut invalid = Vec::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let start = text.len();
            text.extend(std::iter::repeat_n('?', chunk.invalid().len()));
            invalid.push((start, text.len()));
        }
    }
    (text, invalid)
}

/// What the tools need to know about one module.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// `.modinfo` entries in file order (`key`, `value`), from the first `.modinfo` section.
    pub modinfo: Modinfo,
    /// Whether it is a Linux module (has `.gnu.linkonce.this_module`).
    pub linux: bool,
    /// Its appended signature, as kmod's modinfo shows it (not verified).
    pub signature: Option<kmod_sig::SignatureInfo>,
    names: SymbolNames,
}

impl ModuleFile {
    /// Reads and parses the module at `path`.
    pub fn open(path: &Path) -> Result<ModuleFile> {
        let data = read_module_bytes(path)?;
        ModuleFile::parse(path, &data)
    }

    /// A module known only by its path: no `.modinfo`, no symbols. This is what kmod's
    /// depmod keeps of a module whose file it cannot parse: it is listed in `modules.dep`,
    /// with no dependencies.
    pub fn unreadable(path: &Path) -> ModuleFile {
        ModuleFile {
            path: path.to_owned(),
            modinfo: Vec::new(),
            linux: false,
            signature: None,
            names: SymbolNames::default(),
        }
    }

    /// Parses module bytes; `path` is for messages.
    pub fn parse(path: &Path, data: &[u8]) -> Result<ModuleFile> {
        let file = parse_elf(path, data)?;
        let elf_error = |source| ToolError::Elf {
            path: path.to_owned(),
            source,
        };
        let modinfo = modinfo_of(path, &file)?;
        let linux = first_section(path, &file, ".gnu.linkonce.this_module")?.is_some();
        let endian = file.endian();
        let symtab = file.elf_symbol_table();
        let strtab_bytes: &[u8] = if symtab.is_empty() {
            &[]
        } else {
            file.elf_section_table()
                .section(symtab.string_section())
                .and_then(|s| s.data(endian, data))
                .map_err(elf_error)?
        };
        let (strings, invalid) = repair_utf8(strtab_bytes);
        // The name starting at `start`, if it is UTF-8 and NUL-terminated: a name that
        // starts on a character boundary and covers no invalid byte is valid UTF-8 (it ends
        // at a NUL, which ends any character).
        let name_at = |start: u32| -> Result<Option<Span>> {
            let s = start as usize;
            let Some(rest) = strtab_bytes.get(s..) else {
                return Err(ToolError::NotModule {
                    path: path.to_owned(),
                    reason: format!("symbol name offset {start} is past the string table"),
                });
            };
            let Some(len) = memchr::memchr(0, rest) else {
                return Err(ToolError::NotModule {
                    path: path.to_owned(),
                    reason: format!("symbol name at offset {start} has no terminating NUL"),
                });
            };
            let e = s + len;
            let first_invalid = invalid.partition_point(|&(_, end)| end <= s);
            let covers_invalid = invalid.get(first_invalid).is_some_and(|&(a, _)| a < e);
            if covers_invalid || !strings.is_char_boundary(s) {
                return Ok(None);
            }
            Ok(Some(Span {
                start,
                end: e as u32,
            }))
        };

        let mut exports = Vec::new();
        let mut imports = Vec::new();
        let mut defined_globals = Vec::new();
        let mut seen_imports: HashSet<NameKey> = HashSet::new();
        let mut seen_exports: HashSet<NameKey> = HashSet::new();
        let text = |span: Span| &strings[span.start as usize..span.end as usize];
        for symbol in symtab.iter() {
            if matches!(symbol.st_type(), elf::STT_SECTION | elf::STT_FILE) {
                continue;
            }
            let Some(span) = name_at(symbol.st_name(endian))? else {
                continue;
            };
            let name = text(span);
            if name.is_empty() {
                continue;
            }
            let bind = symbol.st_bind();
            if symbol.st_shndx(endian) == elf::SHN_UNDEF {
                if seen_imports.insert(NameKey(name)) {
                    imports.push((span, bind == elf::STB_WEAK));
                }
                continue;
            }
            if name.starts_with("__ksymtab_") && seen_exports.insert(NameKey(name)) {
                // Linux also has __ksymtab_strings etc. as section-like names; those are
                // sections, not symbols, so every such symbol is an export.
                exports.push(Span {
                    start: span.start + "__ksymtab_".len() as u32,
                    end: span.end,
                });
            }
            if bind == elf::STB_GLOBAL || bind == elf::STB_WEAK {
                defined_globals.push(span);
            }
        }
        Ok(ModuleFile {
            path: path.to_owned(),
            modinfo,
            linux,
            signature: kmod_sig::SignatureInfo::of(data),
            names: SymbolNames {
                strings: strings.into_boxed_str(),
                exports,
                imports,
                defined_globals,
            },
        })
    }

    /// The first `.modinfo` value of `key`.
    pub fn modinfo_value(&self, key: &str) -> Option<&str> {
        self.modinfo
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Exported symbols: `X` for each defined symbol `__ksymtab_X` (ABI.md "Exports"), each
    /// once, in symbol-table order.
    pub fn exports(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.exports.iter().map(|&s| self.names.get(s))
    }

    /// Whether the module exports `symbol`.
    pub fn exports_symbol(&self, symbol: &str) -> bool {
        self.exports().any(|e| e == symbol)
    }

    /// Undefined symbols in symbol-table order, each once.
    pub fn imports(&self) -> impl ExactSizeIterator<Item = Import<'_>> + '_ {
        self.names.imports.iter().map(|&(s, weak)| Import {
            name: self.names.get(s),
            weak,
        })
    }

    /// Defined global (or weak) symbols, in symbol-table order.
    pub fn defined_globals(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names
            .defined_globals
            .iter()
            .map(|&s| self.names.get(s))
    }
}

/// Splits `.modinfo` contents into `key=value` pairs (file order). A string without `=` is
/// a key with an empty value; padding NULs are skipped.
pub fn parse_modinfo(data: &[u8]) -> Modinfo {
    data.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = String::from_utf8_lossy(s);
            match s.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (s.into_owned(), String::new()),
            }
        })
        .collect()
}

/// A problem met while walking a module directory that does not stop the walk.
#[derive(Debug, thiserror::Error)]
pub enum WalkWarning {
    /// An entry could not be read (permissions, a symbolic link loop, a dangling link).
    #[error("{path}: {source}")]
    Unreadable {
        /// The entry, or the directory being walked.
        path: PathBuf,
        /// What went wrong.
        source: walkdir::Error,
    },
    /// A module-named entry that is not a regular file (a FIFO, a device).
    #[error("{path}: unsupported file type ({kind}), skipped")]
    Unsupported {
        /// The entry.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
}

/// Every module file under `dir`, sorted by path, and what was skipped on the way.
///
/// As kmod's depmod: symbolic links are followed (to files and to directories; a link loop
/// is reported, not followed), entries called `build` or `source` are skipped, and a
/// module-named entry that is not a regular file is skipped with a warning.
pub fn find_modules(dir: &Path) -> Result<(Vec<PathBuf>, Vec<WalkWarning>)> {
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !matches!(e.file_name().to_str(), Some("build" | "source"))
        });
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(source) if source.depth() == 0 => {
                return Err(ToolError::Walk {
                    path: dir.to_owned(),
                    source,
                });
            }
            Err(source) => {
                let path = source.path().unwrap_or(dir).to_owned();
                warnings.push(WalkWarning::Unreadable { path, source });
                continue;
            }
        };
        if entry.file_type().is_dir() || file_stem(entry.path()).is_none() {
            continue;
        }
        if entry.file_type().is_file() {
            found.push(entry.into_path());
        } else {
            warnings.push(WalkWarning::Unsupported {
                kind: crate::input::file_kind(entry.file_type()),
                path: entry.into_path(),
            });
        }
    }
    found.sort();
    Ok((found, warnings))
}
