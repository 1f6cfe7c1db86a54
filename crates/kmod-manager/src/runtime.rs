//! The server runtime image (`sbin/kmodrt`): a static ELF executable linked at
//! [`layout::RUNTIME_BASE`] that the manager maps into every module server. Parsing finds
//! its loadable segments (one permission each, never writable and executable, inside the
//! runtime's range), its entry point, the address of every kernel API function (by name, from
//! its symbol table: the functions modules import) and of the call stubs' entry.

use alloc::vec::Vec;
use core::fmt;

use kmodlab_ipc::layout::{self, PAGE_SIZE};
use kmodlab_ipc::task::Perm;
use object::elf::{PF_R, PF_W, PF_X, PT_LOAD};
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{LittleEndian, Object, ObjectSymbol};

/// The runtime's symbol that call stubs jump to.
pub const IMPORT_ENTRY: &str = "kmodrt_import_entry";

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Its address (page-aligned).
    pub vaddr: u64,
    /// Pages it occupies.
    pub pages: u64,
    /// Its file bytes (the rest of its pages are zero).
    pub data: &'a [u8],
    /// Its page permission.
    pub perm: Perm,
}

/// The parsed runtime.
#[derive(Debug, Clone)]
pub struct RuntimeImage<'a> {
    /// Its segments, in address order.
    pub segments: Vec<Segment<'a>>,
    /// Its entry point.
    pub entry: u64,
    /// The address of each kernel API function, in `kmod_api::KERNEL_API_SYMBOLS` order.
    pub api: Vec<(&'static str, u64)>,
    /// The address of [`IMPORT_ENTRY`].
    pub import_entry: u64,
}

impl RuntimeImage<'_> {
    /// Pages of all segments.
    pub fn pages(&self) -> u64 {
        self.segments.iter().map(|s| s.pages).sum()
    }

    /// The address of kernel API function `name`.
    pub fn api_address(&self, name: &str) -> Option<u64> {
        self.api.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// Whether `addr` lies in the runtime's segments.
    pub fn contains(&self, addr: u64) -> bool {
        self.segments
            .iter()
            .any(|s| addr >= s.vaddr && addr - s.vaddr < s.pages * PAGE_SIZE)
    }
}

/// Why the runtime image is unusable (a broken build: the manager cannot start servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// Not a well-formed ELF64 file.
    BadElf(alloc::string::String),
    /// Not an x86-64 executable.
    NotExecutable,
    /// A segment is not page-aligned, outside the runtime's range, overflows or overlaps
    /// another segment's pages.
    BadSegment {
        /// Its address.
        vaddr: u64,
    },
    /// A segment is writable and executable.
    WritableAndExecutable {
        /// Its address.
        vaddr: u64,
    },
    /// The entry point is not in an executable segment.
    BadEntry(u64),
    /// A function the runtime must define is missing (or not in its code).
    MissingSymbol(&'static str),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::BadElf(e) => write!(f, "not a valid ELF executable: {e}"),
            RuntimeError::NotExecutable => write!(f, "not an x86-64 executable"),
            RuntimeError::BadSegment { vaddr } => write!(
                f,
                "segment at {vaddr:#x} is unaligned, overlaps another or lies outside {:#x}..{:#x}",
                layout::RUNTIME_BASE,
                layout::HEAP_BASE
            ),
            RuntimeError::WritableAndExecutable { vaddr } => {
                write!(f, "segment at {vaddr:#x} is writable and executable")
            }
            RuntimeError::BadEntry(e) => write!(f, "entry point {e:#x} is not executable code"),
            RuntimeError::MissingSymbol(s) => {
                write!(f, "the runtime does not define `{s}` in its code")
            }
        }
    }
}

/// Parses the runtime image; `api` is the kernel API's symbol names
/// (`kmod_api::KERNEL_API_SYMBOLS`).
pub fn parse<'a>(image: &'a [u8], api: &[&'static str]) -> Result<RuntimeImage<'a>, RuntimeError> {
    let elf = ElfFile64::<LittleEndian>::parse(image)
        .map_err(|e| RuntimeError::BadElf(alloc::format!("{e}")))?;
    let endian = elf.endian();
    let header = elf.elf_header();
    if header.e_type.get(endian) != object::elf::ET_EXEC
        || header.e_machine.get(endian) != object::elf::EM_X86_64
    {
        return Err(RuntimeError::NotExecutable);
    }
    let mut segments: Vec<Segment<'a>> = Vec::new();
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let vaddr = ph.p_vaddr(endian);
        let memsz = ph.p_memsz(endian);
        let flags = ph.p_flags(endian);
        let bad = RuntimeError::BadSegment { vaddr };
        let end = vaddr.checked_add(memsz).ok_or(bad.clone())?;
        if !vaddr.is_multiple_of(PAGE_SIZE)
            || vaddr < layout::RUNTIME_BASE
            || end > layout::HEAP_BASE
            || memsz == 0
        {
            return Err(bad);
        }
        if flags.contains(PF_W) && flags.contains(PF_X) {
            return Err(RuntimeError::WritableAndExecutable { vaddr });
        }
        let perm = if flags.contains(PF_X) {
            Perm::ReadExecute
        } else if flags.contains(PF_W) {
            Perm::ReadWrite
        } else if flags.contains(PF_R) {
            Perm::ReadOnly
        } else {
            return Err(bad);
        };
        let data = ph.data(endian, image).map_err(|_| bad.clone())?;
        if data.len() as u64 > memsz {
            return Err(bad);
        }
        let pages = end.div_ceil(PAGE_SIZE) - vaddr / PAGE_SIZE;
        let overlaps = segments
            .iter()
            .any(|s| vaddr < s.vaddr + s.pages * PAGE_SIZE && s.vaddr < vaddr + pages * PAGE_SIZE);
        if overlaps {
            return Err(bad);
        }
        segments.push(Segment {
            vaddr,
            pages,
            data,
            perm,
        });
    }
    segments.sort_by_key(|s| s.vaddr);
    let entry = elf.entry();
    let in_code = |addr: u64| {
        segments.iter().any(|s| {
            s.perm == Perm::ReadExecute && addr >= s.vaddr && addr - s.vaddr < s.pages * PAGE_SIZE
        })
    };
    if !in_code(entry) {
        return Err(RuntimeError::BadEntry(entry));
    }
    let find = |name: &'static str| -> Result<u64, RuntimeError> {
        elf.symbols()
            .find(|s| s.is_definition() && s.name() == Ok(name))
            .map(|s| s.address())
            .filter(|&a| in_code(a))
            .ok_or(RuntimeError::MissingSymbol(name))
    };
    let api = api
        .iter()
        .map(|&name| find(name).map(|a| (name, a)))
        .collect::<Result<Vec<_>, _>>()?;
    let import_entry = find(IMPORT_ENTRY)?;
    Ok(RuntimeImage {
        segments,
        entry,
        api,
        import_entry,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    /// ELF program header flags, as numbers (the test writes the file by hand).
    pub(crate) const X: u32 = 1;
    pub(crate) const W: u32 = 2;
    pub(crate) const R: u32 = 4;

    fn put(out: &mut Vec<u8>, at: usize, bytes: &[u8]) {
        if out.len() < at + bytes.len() {
            out.resize(at + bytes.len(), 0);
        }
        out[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A small runtime-like executable, written field by field: text (flags `text_flags`)
    /// with global function symbols `names` at offsets 0, 16, …, rodata (R) and data (RW,
    /// with bss), one page each from `base`.
    pub(crate) fn synthetic(base: u64, names: &[&str], text_flags: u32) -> Vec<u8> {
        let mut out = vec![0u8; 0x1000];
        let (text, rodata, data) = (vec![0xc3u8; 64], vec![1u8; 32], vec![2u8; 16]);
        put(&mut out, 0x1000, &text);
        put(&mut out, 0x2000, &rodata);
        put(&mut out, 0x3000, &data);
        // Symbols and their names.
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for (i, n) in names.iter().enumerate() {
            let name = strtab.len() as u32;
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
            let mut sym = Vec::new();
            sym.extend_from_slice(&name.to_le_bytes());
            sym.push((1 << 4) | 2); // STB_GLOBAL, STT_FUNC
            sym.push(0);
            sym.extend_from_slice(&1u16.to_le_bytes()); // .text
            sym.extend_from_slice(&(base + 16 * i as u64).to_le_bytes());
            sym.extend_from_slice(&16u64.to_le_bytes());
            symtab.extend_from_slice(&sym);
        }
        let shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0".to_vec();
        let symtab_off = 0x3100usize;
        let strtab_off = symtab_off + symtab.len();
        let shstrtab_off = strtab_off + strtab.len();
        let shoff = (shstrtab_off + shstrtab.len()).next_multiple_of(8);
        put(&mut out, symtab_off, &symtab);
        put(&mut out, strtab_off, &strtab);
        put(&mut out, shstrtab_off, &shstrtab);
        // Section headers: null, .text, .symtab, .strtab, .shstrtab.
        let section = |name: u32,
                       kind: u32,
                       flags: u64,
                       addr: u64,
                       off: usize,
                       size: usize,
                       link: u32,
                       info: u32,
                       entsize: u64| {
            let mut h = Vec::new();
            h.extend_from_slice(&name.to_le_bytes());
            h.extend_from_slice(&kind.to_le_bytes());
            h.extend_from_slice(&flags.to_le_bytes());
            h.extend_from_slice(&addr.to_le_bytes());
            h.extend_from_slice(&(off as u64).to_le_bytes());
            h.extend_from_slice(&(size as u64).to_le_bytes());
            h.extend_from_slice(&link.to_le_bytes());
            h.extend_from_slice(&info.to_le_bytes());
            h.extend_from_slice(&8u64.to_le_bytes());
            h.extend_from_slice(&entsize.to_le_bytes());
            h
        };
        let mut shdrs = vec![0u8; 64];
        shdrs.extend(section(1, 1, 6, base, 0x1000, text.len(), 0, 0, 0));
        shdrs.extend(section(7, 2, 0, 0, symtab_off, symtab.len(), 3, 1, 24));
        shdrs.extend(section(15, 3, 0, 0, strtab_off, strtab.len(), 0, 0, 0));
        shdrs.extend(section(23, 3, 0, 0, shstrtab_off, shstrtab.len(), 0, 0, 0));
        put(&mut out, shoff, &shdrs);
        // Program headers.
        for (i, (off, len, memsz, flags)) in [
            (0x1000u64, text.len(), text.len() as u64, text_flags),
            (0x2000, rodata.len(), rodata.len() as u64, R),
            (0x3000, data.len(), data.len() as u64 + 100, R | W),
        ]
        .into_iter()
        .enumerate()
        {
            let vaddr = base + i as u64 * 4096;
            let mut ph = Vec::new();
            ph.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
            ph.extend_from_slice(&flags.to_le_bytes());
            for v in [off, vaddr, vaddr, len as u64, memsz, 4096] {
                ph.extend_from_slice(&v.to_le_bytes());
            }
            put(&mut out, 64 + 56 * i, &ph);
        }
        // The file header.
        let mut eh = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        eh.resize(16, 0);
        eh.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        eh.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        eh.extend_from_slice(&1u32.to_le_bytes());
        eh.extend_from_slice(&base.to_le_bytes());
        eh.extend_from_slice(&64u64.to_le_bytes());
        eh.extend_from_slice(&(shoff as u64).to_le_bytes());
        eh.extend_from_slice(&0u32.to_le_bytes());
        for v in [64u16, 56, 3, 64, 5, 4] {
            eh.extend_from_slice(&v.to_le_bytes());
        }
        put(&mut out, 0, &eh);
        out
    }

    #[test]
    fn a_well_formed_runtime_parses() {
        let bytes = synthetic(
            layout::RUNTIME_BASE,
            &["kmod_print", "kmod_alloc", IMPORT_ENTRY],
            R | X,
        );
        let rt = parse(&bytes, &["kmod_alloc", "kmod_print"]).unwrap();
        assert_eq!(rt.entry, layout::RUNTIME_BASE);
        assert_eq!(
            rt.api,
            [
                ("kmod_alloc", layout::RUNTIME_BASE + 16),
                ("kmod_print", layout::RUNTIME_BASE)
            ]
        );
        assert_eq!(rt.import_entry, layout::RUNTIME_BASE + 32);
        let perms: Vec<Perm> = rt.segments.iter().map(|s| s.perm).collect();
        assert_eq!(perms, [Perm::ReadExecute, Perm::ReadOnly, Perm::ReadWrite]);
        assert_eq!(rt.pages(), 3);
        assert_eq!(rt.segments[2].data, [2u8; 16]);
        assert!(rt.contains(layout::RUNTIME_BASE + 3 * 4096 - 1));
        assert!(!rt.contains(layout::RUNTIME_BASE + 3 * 4096));
    }

    #[test]
    fn broken_runtimes_are_refused_with_the_reason() {
        let names = ["kmod_print", IMPORT_ENTRY];
        let bytes = synthetic(layout::RUNTIME_BASE, &names, R | X);
        assert_eq!(
            parse(&bytes, &["kmod_print", "kmod_free"]).unwrap_err(),
            RuntimeError::MissingSymbol("kmod_free")
        );
        let wx = synthetic(layout::RUNTIME_BASE, &names, R | W | X);
        assert_eq!(
            parse(&wx, &[]).unwrap_err(),
            RuntimeError::WritableAndExecutable {
                vaddr: layout::RUNTIME_BASE
            }
        );
        let low = synthetic(layout::PROGRAM_BASE, &names, R | X);
        assert_eq!(
            parse(&low, &[]).unwrap_err(),
            RuntimeError::BadSegment {
                vaddr: layout::PROGRAM_BASE
            }
        );
        let no_entry = synthetic(layout::RUNTIME_BASE, &["kmod_print"], R | X);
        assert_eq!(
            parse(&no_entry, &[]).unwrap_err(),
            RuntimeError::MissingSymbol(IMPORT_ENTRY)
        );
        assert!(matches!(
            parse(b"\x7fELF garbage", &[]),
            Err(RuntimeError::BadElf(_))
        ));
        let mut not_exec = bytes.clone();
        not_exec[16] = 1; // ET_REL
        assert_eq!(
            parse(&not_exec, &[]).unwrap_err(),
            RuntimeError::NotExecutable
        );
    }

    proptest! {
        #[test]
        fn any_bytes_give_an_answer_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes, &["kmod_print"]);
        }

        #[test]
        fn mutated_runtimes_never_panic(at in 0usize..12_500, byte in any::<u8>()) {
            let mut bytes = synthetic(layout::RUNTIME_BASE, &["kmod_print", IMPORT_ENTRY], R | X);
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = parse(&bytes, &["kmod_print"]);
        }
    }
}
