//! Reading one module file: decompression, ELF checks, `.modinfo`, exports and imports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, Sym};
use object::{Endianness, Object, ObjectSection};

use crate::error::{Result, ToolError};

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

/// Reads a module file, decompressing `.ko.xz` and `.ko.zst`.
pub fn read_module_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| ToolError::Io {
        path: path.to_owned(),
        source,
    })?;
    let name = path.to_string_lossy();
    if name.ends_with(".xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out).map_err(|e| {
            ToolError::Decompress {
                path: path.to_owned(),
                format: "xz",
                reason: e.to_string(),
            }
        })?;
        Ok(out)
    } else if name.ends_with(".zst") {
        use std::io::Read;
        let decompress_error = |reason: String| ToolError::Decompress {
            path: path.to_owned(),
            format: "zstd",
            reason,
        };
        let mut input = raw.as_slice();
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| decompress_error(e.to_string()))?;
        let mut out = Vec::new();
        decoder
            .read_to_end(&mut out)
            .map_err(|e| decompress_error(e.to_string()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
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

/// A symbol a module needs from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Symbol name.
    pub name: String,
    /// A weak reference: the module loads without it.
    pub weak: bool,
}

/// What the tools need to know about one module.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// `.modinfo` entries in file order (`key`, `value`).
    pub modinfo: Vec<(String, String)>,
    /// Exported symbols: `X` for each defined symbol `__ksymtab_X` (ABI.md "Exports").
    pub exports: BTreeSet<String>,
    /// Undefined symbols in symbol-table order, each once.
    pub imports: Vec<Import>,
    /// Defined global (or weak) symbols.
    pub defined_globals: BTreeSet<String>,
    /// Whether it is a Linux module (has `.gnu.linkonce.this_module`).
    pub linux: bool,
    /// Its appended signature, as kmod's modinfo shows it (not verified).
    pub signature: Option<kmod_sig::SignatureInfo>,
}

impl ModuleFile {
    /// Reads and parses the module at `path`.
    pub fn open(path: &Path) -> Result<ModuleFile> {
        let data = read_module_bytes(path)?;
        ModuleFile::parse(path, &data)
    }

    /// Parses module bytes; `path` is for messages.
    pub fn parse(path: &Path, data: &[u8]) -> Result<ModuleFile> {
        let file = parse_elf(path, data)?;
        let elf_error = |source| ToolError::Elf {
            path: path.to_owned(),
            source,
        };
        let mut modinfo = Vec::new();
        let mut linux = false;
        for section in file.sections() {
            let name = section.name().map_err(elf_error)?;
            if name == ".gnu.linkonce.this_module" {
                linux = true;
            }
            if name == ".modinfo" {
                let data = section.data().map_err(elf_error)?;
                modinfo = parse_modinfo(data);
            }
        }
        let endian = file.endian();
        let mut exports = BTreeSet::new();
        let mut imports: Vec<Import> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut defined_globals = BTreeSet::new();
        for symbol in file.elf_symbol_table().iter() {
            let name_bytes = symbol
                .name(endian, file.elf_symbol_table().strings())
                .map_err(elf_error)?;
            let Ok(name) = std::str::from_utf8(name_bytes) else {
                continue;
            };
            if name.is_empty() || matches!(symbol.st_type(), elf::STT_SECTION | elf::STT_FILE) {
                continue;
            }
            let bind = symbol.st_bind();
            if symbol.st_shndx(endian) == elf::SHN_UNDEF {
                if seen.insert(name.to_owned()) {
                    imports.push(Import {
                        name: name.to_owned(),
                        weak: bind == elf::STB_WEAK,
                    });
                }
                continue;
            }
            if let Some(exported) = name.strip_prefix("__ksymtab_") {
                // Linux also has __ksymtab_strings etc. as section-like names; those are
                // sections, not symbols, so every such symbol is an export.
                exports.insert(exported.to_owned());
            }
            if bind == elf::STB_GLOBAL || bind == elf::STB_WEAK {
                defined_globals.insert(name.to_owned());
            }
        }
        Ok(ModuleFile {
            path: path.to_owned(),
            modinfo,
            exports,
            imports,
            defined_globals,
            linux,
            signature: kmod_sig::SignatureInfo::of(data),
        })
    }

    /// The first `.modinfo` value of `key`.
    pub fn modinfo_value(&self, key: &str) -> Option<&str> {
        self.modinfo
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `.modinfo` contents into `key=value` pairs (file order). A string without `=` is
/// a key with an empty value; padding NULs are skipped.
pub fn parse_modinfo(data: &[u8]) -> Vec<(String, String)> {
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

/// Every module file under `dir` (recursively, following Linux depmod in skipping `build`
/// and `source` links), sorted by path.
pub fn find_modules(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir() || e.path_is_symlink())
                || !matches!(e.file_name().to_str(), Some("build" | "source"))
        });
    for entry in walker {
        let entry = entry.map_err(|source| ToolError::Walk {
            path: dir.to_owned(),
            source,
        })?;
        if entry.file_type().is_file() && file_stem(entry.path()).is_some() {
            found.push(entry.into_path());
        }
    }
    found.sort();
    Ok(found)
}
