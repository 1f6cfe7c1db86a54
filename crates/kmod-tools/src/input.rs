//! Reading the tools' input files with bounded time and memory: module files (plain, xz or
//! zstd), `modules.order` and kernel symbol lists.
//!
//! Every file is opened without blocking and checked to be a regular file before a byte is
//! read, so a FIFO, a device (`/dev/zero`) or a directory is a clear error instead of a hang
//! or an endless read. Every read stops at a cap, and compressed data is decoded in bounded
//! chunks into an output that never grows past the cap.
//!
//! Compression is recognised by its magic bytes, not by the file name, as kmod does: a
//! `.ko.zst` that holds a plain ELF file is read as one, and a `.ko` holding xz data is
//! decompressed. Decoding follows `xz -t` and `zstd -t`: checksums are verified
//! (CRC32, CRC64 and SHA-256 for xz, XXH64 for zstd), concatenated xz streams with their
//! padding and several zstd frames (skippable ones included) are accepted, and anything after
//! the last stream or frame is refused.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Result, ToolError};

/// The largest module, plain or decompressed, the tools read: 2 GiB - 1 bytes.
///
/// This is Linux's own limit: `finit_module` reads a module file with
/// `kernel_read_file(..., INT_MAX, ...)`, so a bigger module cannot be loaded from a file.
/// The cap is what bounds the memory a decompression bomb can cost (the output buffer
/// never grows past it; decoder state adds at most [`ZSTD_MAX_WINDOW`] or
/// [`XZ_MEMORY_LIMIT`]). The largest real modules (an unstripped `amdgpu.ko` with DWARF) are
/// a few hundred MiB, well below it.
pub const MAX_MODULE_SIZE: u64 = i32::MAX as u64;

/// The largest text input (`modules.order`, System.map, Module.symvers, symbol lists):
/// 256 MiB, ten times an `allyesconfig` System.map.
pub const MAX_LIST_SIZE: u64 = 256 << 20;

/// The largest zstd window the decoder accepts (100 MiB, ruzstd's own limit; `zstd -t`'s
/// default is 128 MiB). Linux compresses modules with the default level, whose window is
/// 8 MiB or less.
pub const ZSTD_MAX_WINDOW: u64 = 100 << 20;

/// The most memory an xz block's LZMA2 decoder may take (dictionary and state): 256 MiB,
/// four times what `xz -9` uses; Linux compresses modules with a 1 MiB dictionary.
pub const XZ_MEMORY_LIMIT: u64 = 256 << 20;

/// Bytes handed to or taken from a decoder at a time.
const CHUNK: usize = 256 << 10;

const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
const ZSTD_MAGIC: u32 = 0xfd2f_b528;
/// Skippable frames have magic numbers 0x184D2A50..=0x184D2A5F.
const ZSTD_SKIPPABLE_MASK: u32 = 0xffff_fff0;
const ZSTD_SKIPPABLE_MAGIC: u32 = 0x184d_2a50;

/// What kind of file something that is not a regular file is, for messages.
pub(crate) fn file_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file (after following symbolic links).
///
/// The file is opened with `O_NONBLOCK` so that opening a FIFO cannot wait for a writer, and
/// its type is taken from the open descriptor, so it cannot be swapped between check and
/// read. Returns the file and its size.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let io_error = |source| ToolError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.file_type().is_file() {
        return Err(ToolError::NotRegular {
            path: path.to_owned(),
            kind: file_kind(metadata.file_type()),
        });
    }
    Ok((file, metadata.len()))
}

/// Reads all of regular file `path`, refusing one larger than `limit` bytes (also one that
/// grows past it while being read).
pub fn read_regular(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    let too_large = || ToolError::TooLarge {
        path: path.to_owned(),
        what,
        limit,
    };
    if size > limit {
        return Err(too_large());
    }
    let mut out = Vec::new();
    // The size is only a hint (the file may change while read); the read is capped anyway.
    let _ = out.try_reserve_exact(usize::try_from(size).unwrap_or(0));
    match read_capped(file, &mut out, limit) {
        Ok(()) => Ok(out),
        Err(CappedError::TooLarge) => Err(too_large()),
        Err(CappedError::Io(source)) => Err(ToolError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads a text input (`modules.order`, a symbol list) of at most [`MAX_LIST_SIZE`] bytes.
pub fn read_list(path: &Path) -> Result<String> {
    let bytes = read_regular(path, MAX_LIST_SIZE, "the file")?;
    String::from_utf8(bytes).map_err(|e| ToolError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Reads a module file and decompresses it if it is xz or zstd data, within
/// [`MAX_MODULE_SIZE`].
pub fn read_module_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = read_regular(path, MAX_MODULE_SIZE, "the file")?;
    decompress(path, raw, MAX_MODULE_SIZE)
}

/// `raw` decompressed if it starts with the xz or zstd magic, else `raw` itself; the output
/// may be at most `limit` bytes. `path` is for messages.
pub fn decompress(path: &Path, raw: Vec<u8>, limit: u64) -> Result<Vec<u8>> {
    let error = |format: &'static str, e: DecodeError| match e {
        DecodeError::TooLarge => ToolError::TooLarge {
            path: path.to_owned(),
            what: "the decompressed module",
            limit,
        },
        DecodeError::Corrupt(reason) => ToolError::Decompress {
            path: path.to_owned(),
            format,
            reason,
        },
    };
    if raw.starts_with(XZ_MAGIC) {
        decode_xz(&raw, limit).map_err(|e| error("xz", e))
    } else if raw.len() >= 4 && u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) == ZSTD_MAGIC {
        decode_zstd(&raw, limit).map_err(|e| error("zstd", e))
    } else {
        Ok(raw)
    }
}

/// Writes `contents` to `target` by writing a temporary file in the same directory and
/// renaming it over `target`: `target` is replaced whole or not at all, and when it is a
/// symbolic link the link itself is replaced, never the file it points to. The temporary
/// file is created exclusively (`O_EXCL`, a random name), so nothing planted at its name is
/// followed either. The result is mode 0644: module files and `modules.dep` are read by
/// everyone (kmod creates `modules.dep` 0644).
pub fn write_replacing(target: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io_error = |source| ToolError::Io {
        path: target.to_owned(),
        source,
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    if let Some(name) = target.file_name() {
        prefix.push(name);
    }
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_error)?;
    tmp.write_all(contents).map_err(io_error)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io_error)?;
    tmp.as_file().sync_all().map_err(io_error)?;
    tmp.persist(target).map_err(|e| io_error(e.error))?;
    Ok(())
}

/// Why compressed data could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The output would exceed the limit.
    TooLarge,
    /// The data is corrupt, truncated, or uses a feature `xz -t`/`zstd -t` would refuse.
    Corrupt(String),
}

enum CappedError {
    TooLarge,
    Io(std::io::Error),
}

/// Appends everything `reader` yields to `out`, in chunks of at most [`CHUNK`] bytes (a
/// decoder never works ahead by more than that), failing once `out` would pass `limit`.
/// `out` grows by doubling but never reserves past `limit + 1`, and an allocation failure
/// is an error, not an abort.
fn read_capped(
    mut reader: impl Read,
    out: &mut Vec<u8>,
    limit: u64,
) -> std::result::Result<(), CappedError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CappedError::Io(e)),
        };
        if n > limit - out.len() {
            return Err(CappedError::TooLarge);
        }
        if out.capacity() - out.len() < n {
            let grow = out.len().max(n).max(CHUNK).min(limit - out.len());
            out.try_reserve_exact(grow.max(n)).map_err(|e| {
                CappedError::Io(std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))
            })?;
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn corrupt(reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(reason.into())
}

/// Runs `reader` into `out` under `limit`; an I/O error of the decoder is corruption.
fn drain_decoder(
    reader: impl Read,
    out: &mut Vec<u8>,
    limit: u64,
) -> std::result::Result<(), DecodeError> {
    read_capped(reader, out, limit).map_err(|e| match e {
        CappedError::TooLarge => DecodeError::TooLarge,
        CappedError::Io(e) => corrupt(e.to_string()),
    })
}

/// Decodes xz data: one or more streams, each followed by optional stream padding.
pub fn decode_xz(data: &[u8], limit: u64) -> std::result::Result<Vec<u8>, DecodeError> {
    let memory_kib = u32::try_from(XZ_MEMORY_LIMIT / 1024).unwrap_or(u32::MAX);
    let reader = lzma_rust2::XzReader::new_mem_limit(data, true, memory_kib);
    let mut out = Vec::new();
    drain_decoder(reader, &mut out, limit)?;
    Ok(out)
}

/// The fields of a zstd frame header the decoder does not check or expose.
struct ZstdFrameHeader {
    /// Frame_Content_Size, when the header has one.
    content_size: Option<u64>,
    /// Content_Checksum_flag.
    checksum: bool,
}

/// Parses the frame header at the start of `frame` (RFC 8878, 3.1.1.1).
fn zstd_frame_header(frame: &[u8]) -> std::result::Result<ZstdFrameHeader, DecodeError> {
    let truncated = || corrupt("truncated frame header");
    let descriptor = *frame.get(4).ok_or_else(truncated)?;
    if descriptor & 0x08 != 0 {
        return Err(corrupt(
            "reserved bit of the frame header descriptor is set",
        ));
    }
    let single_segment = descriptor & 0x20 != 0;
    let dictionary_id_len = [0usize, 1, 2, 4][usize::from(descriptor & 0x3)];
    let content_size_len = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let at = 5 + usize::from(!single_segment) + dictionary_id_len;
    let field = frame.get(at..at + content_size_len).ok_or_else(truncated)?;
    let mut bytes = [0u8; 8];
    bytes[..field.len()].copy_from_slice(field);
    let value = u64::from_le_bytes(bytes);
    Ok(ZstdFrameHeader {
        content_size: match content_size_len {
            0 => None,
            // The two-byte field stores the size minus 256.
            2 => Some(value + 256),
            _ => Some(value),
        },
        checksum: descriptor & 0x04 != 0,
    })
}

/// Decodes zstd data: a sequence of frames, skippable or not, with nothing after the last.
pub fn decode_zstd(data: &[u8], limit: u64) -> std::result::Result<Vec<u8>, DecodeError> {
    use ruzstd::decoding::{FrameDecoder, StreamingDecoder};
    let mut out = Vec::new();
    let mut input = data;
    let mut decoder = FrameDecoder::new();
    while !input.is_empty() {
        let magic = input
            .get(..4)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]))
            .ok_or_else(|| corrupt(format!("{} stray bytes after the last frame", input.len())))?;
        if magic & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE_MAGIC {
            let len = input
                .get(4..8)
                .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or_else(|| corrupt("truncated skippable frame header"))?;
            input = input
                .get(8 + len..)
                .ok_or_else(|| corrupt("skippable frame runs past the end of the data"))?;
            continue;
        }
        if magic != ZSTD_MAGIC {
            return Err(corrupt(format!(
                "unknown frame magic {magic:#010x} after the last frame"
            )));
        }
        let header = zstd_frame_header(input)?;
        if header.content_size.is_some_and(|size| size > limit) {
            return Err(DecodeError::TooLarge);
        }
        let before = out.len();
        let mut stream = StreamingDecoder::new_with_decoder(&mut input, &mut decoder)
            .map_err(|e| corrupt(e.to_string()))?;
        drain_decoder(&mut stream, &mut out, limit)?;
        if !decoder.is_finished() {
            return Err(corrupt("frame ends early"));
        }
        if header.checksum && decoder.get_checksum_from_data() != decoder.get_calculated_checksum()
        {
            return Err(corrupt(format!(
                "content checksum mismatch (frame says {:#010x}, data gives {:#010x})",
                decoder.get_checksum_from_data().unwrap_or(0),
                decoder.get_calculated_checksum().unwrap_or(0)
            )));
        }
        let produced = (out.len() - before) as u64;
        if let Some(declared) = header.content_size
            && declared != produced
        {
            return Err(corrupt(format!(
                "frame declares {declared} bytes of content but holds {produced}"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reads_stop_at_the_limit() {
        let mut out = Vec::new();
        assert!(read_capped(&[7u8; 100][..], &mut out, 100).is_ok());
        assert_eq!(out.len(), 100);
        let mut out = Vec::new();
        assert!(matches!(
            read_capped(&[7u8; 101][..], &mut out, 100),
            Err(CappedError::TooLarge)
        ));
        assert!(out.capacity() <= 101, "{}", out.capacity());
    }

    #[test]
    fn zstd_header_fields() {
        // Single segment, one-byte content size 6, checksum.
        let h = zstd_frame_header(b"\x28\xb5\x2f\xfd\x24\x06").unwrap();
        assert_eq!(h.content_size, Some(6));
        assert!(h.checksum);
        // Two-byte field: value + 256.
        let h = zstd_frame_header(b"\x28\xb5\x2f\xfd\x40\x00\x01\x00").unwrap();
        assert_eq!(h.content_size, Some(257));
        assert!(!h.checksum);
        assert!(zstd_frame_header(b"\x28\xb5\x2f\xfd\x08\x00").is_err());
        assert!(zstd_frame_header(b"\x28\xb5\x2f\xfd\xc0\x00\x01").is_err());
    }
}
