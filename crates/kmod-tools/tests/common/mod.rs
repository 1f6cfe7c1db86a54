//! Hostile inputs, built in the tests from the committed fixtures: zstd frames made by hand,
//! xz streams of every check type, and ELF files with patched section headers.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BLOCK_MAX: usize = 128 << 10;

/// A zstd frame of raw (stored) blocks holding `content`, with Frame_Content_Size and, if
/// `checksum`, the content checksum (RFC 8878: low 32 bits of XXH64, seed 0).
pub fn zstd_frame(content: &[u8], checksum: bool) -> Vec<u8> {
    let mut out = ZSTD_MAGIC.to_vec();
    // FCS field of 8 bytes, single segment (window = content size), checksum flag.
    out.push(0xc0 | 0x20 | if checksum { 0x04 } else { 0 });
    out.extend_from_slice(&(content.len() as u64).to_le_bytes());
    let chunks: Vec<&[u8]> = if content.is_empty() {
        vec![&[]]
    } else {
        content.chunks(BLOCK_MAX).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let last = u32::from(i + 1 == chunks.len());
        // Block_Type 0 (raw); Block_Size in bits 3..24.
        let header = last | ((chunk.len() as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(chunk);
    }
    if checksum {
        let hash = twox_hash::XxHash64::oneshot(0, content) as u32;
        out.extend_from_slice(&hash.to_le_bytes());
    }
    out
}

/// A zstd frame of `blocks` RLE blocks of 128 KiB zeros each (4 bytes per block), with no
/// content size in the header: a bomb of `blocks * 128 KiB`.
pub fn zstd_rle_bomb(blocks: usize) -> Vec<u8> {
    let mut out = ZSTD_MAGIC.to_vec();
    // No FCS, not single segment, no checksum; window 2^17 = one block.
    out.push(0x00);
    out.push(7 << 3);
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        // Block_Type 1 (RLE): Block_Size is the regenerated size, one byte of content.
        let header = last | (1 << 1) | ((BLOCK_MAX as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

/// A zstd skippable frame with `payload`.
pub fn zstd_skippable(payload: &[u8]) -> Vec<u8> {
    let mut out = 0x184d_2a53u32.to_le_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// `content` as an xz stream with this check type.
pub fn xz(content: &[u8], check: lzma_rust2::CheckType) -> Vec<u8> {
    use std::io::Write;
    let mut options = lzma_rust2::XzOptions::with_preset(1);
    options.set_check_sum_type(check);
    let mut writer = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
    writer.write_all(content).unwrap();
    writer.finish().unwrap()
}

/// Offset of section header `index` in an ELF64 file.
pub fn section_header(data: &[u8], index: usize) -> usize {
    let shoff = u64::from_le_bytes(data[40..48].try_into().unwrap()) as usize;
    shoff + index * 64
}

/// Index of the first section called `name`.
pub fn section_index(data: &[u8], name: &str) -> usize {
    use object::{Object, ObjectSection};
    let file = object::File::parse(data).unwrap();
    file.sections()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("no section {name}"))
        .index()
        .0
}

/// Field offsets within an Elf64_Shdr.
pub const SH_NAME: usize = 0;
pub const SH_TYPE: usize = 4;
pub const SH_OFFSET: usize = 24;
pub const SH_SIZE: usize = 32;
pub const SH_LINK: usize = 40;

pub fn set_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub fn set_u64(data: &mut [u8], at: usize, value: u64) {
    data[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

pub fn get_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

/// `hello.ko` with its symbol table replaced by `symbols` undefined global symbols whose
/// names start at successive offsets of one `string_len`-byte string: each name is a
/// different, long suffix of it (the layout a linker's tail merging produces, taken to the
/// extreme). About `string_len + 24 * symbols` bytes.
pub fn module_with_overlapping_symbol_names(symbols: usize, string_len: usize) -> Vec<u8> {
    let mut data = fixture("kmodlab/hello.ko");
    let symtab = section_index(&data, ".symtab");
    let strtab = section_index(&data, ".strtab");
    // The new string table: NUL, then the long string (a repeating pattern), then NUL.
    let strtab_offset = data.len();
    data.push(0);
    data.extend((0..string_len).map(|i| b'a' + (i % 26) as u8));
    data.push(0);
    let strtab_size = data.len() - strtab_offset;
    while !data.len().is_multiple_of(8) {
        data.push(0);
    }
    let symtab_offset = data.len();
    data.extend_from_slice(&[0u8; 24]); // the null symbol
    let step = (string_len / symbols).max(1);
    for i in 0..symbols {
        let mut sym = [0u8; 24];
        sym[0..4].copy_from_slice(&(1 + (i * step) as u32).to_le_bytes());
        sym[4] = 0x10; // STB_GLOBAL, STT_NOTYPE; st_shndx 0 = undefined
        data.extend_from_slice(&sym);
    }
    let symtab_size = data.len() - symtab_offset;
    let sh = section_header(&data, symtab);
    set_u64(&mut data, sh + SH_OFFSET, symtab_offset as u64);
    set_u64(&mut data, sh + SH_SIZE, symtab_size as u64);
    // sh_info: index of the first non-local symbol.
    set_u32(&mut data, sh + 44, 1);
    let sh = section_header(&data, strtab);
    set_u64(&mut data, sh + SH_OFFSET, strtab_offset as u64);
    set_u64(&mut data, sh + SH_SIZE, strtab_size as u64);
    data
}

/// `hello.ko` with `extra` more section headers (empty PROGBITS sections) whose names are
/// suffixes of one `string_len`-byte name in a new section-name table.
pub fn module_with_overlapping_section_names(extra: usize, string_len: usize) -> Vec<u8> {
    let mut data = fixture("kmodlab/hello.ko");
    let shstrndx = u16::from_le_bytes(data[62..64].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(data[60..62].try_into().unwrap()) as usize;
    let old_names = {
        let sh = section_header(&data, shstrndx);
        let off = u64::from_le_bytes(data[sh + SH_OFFSET..sh + SH_OFFSET + 8].try_into().unwrap());
        let size = u64::from_le_bytes(data[sh + SH_SIZE..sh + SH_SIZE + 8].try_into().unwrap());
        data[off as usize..(off + size) as usize].to_vec()
    };
    // New name table: the old names (offsets unchanged), then the long name.
    let names_offset = data.len();
    data.extend_from_slice(&old_names);
    let long_at = data.len() - names_offset;
    data.extend((0..string_len).map(|i| b'A' + (i % 26) as u8));
    data.push(0);
    let names_size = data.len() - names_offset;
    while !data.len().is_multiple_of(8) {
        data.push(0);
    }
    // New section header table: the old headers, then the extra ones.
    let old_table = section_header(&data, 0);
    let headers = data[old_table..old_table + shnum * 64].to_vec();
    let table_offset = data.len();
    data.extend_from_slice(&headers);
    let step = (string_len / extra).max(1);
    for i in 0..extra {
        let mut sh = [0u8; 64];
        sh[0..4].copy_from_slice(&((long_at + i * step) as u32).to_le_bytes());
        sh[4..8].copy_from_slice(&1u32.to_le_bytes()); // SHT_PROGBITS
        sh[24..32].copy_from_slice(&(names_offset as u64).to_le_bytes());
        data.extend_from_slice(&sh);
    }
    set_u64(&mut data, 40, table_offset as u64);
    let total = u16::try_from(shnum + extra).expect("fewer than 65280 sections");
    data[60..62].copy_from_slice(&total.to_le_bytes());
    let sh = section_header(&data, shstrndx);
    set_u64(&mut data, sh + SH_OFFSET, names_offset as u64);
    set_u64(&mut data, sh + SH_SIZE, names_size as u64);
    data
}
