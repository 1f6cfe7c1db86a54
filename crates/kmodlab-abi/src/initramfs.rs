//! Reading the module archive: a cpio "newc" archive (the Linux initramfs format) holding the
//! modules, `modules.dep` and the user programs. The host writes it with the `cpio` crate;
//! the guest kernel reads it in place with [`Archive`], without copying or allocating.

use core::fmt;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &[u8] = b"TRAILER!!!";

/// Why the archive could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveError {
    /// An entry header at this offset is cut short.
    Truncated {
        /// Offset of the entry.
        offset: usize,
    },
    /// An entry at this offset does not start with the newc magic.
    BadMagic {
        /// Offset of the entry.
        offset: usize,
    },
    /// A header field is not hexadecimal.
    BadField {
        /// Offset of the entry.
        offset: usize,
    },
    /// A file name is not NUL-terminated UTF-8.
    BadName {
        /// Offset of the entry.
        offset: usize,
    },
    /// The archive ended without a trailer.
    MissingTrailer,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Truncated { offset } => {
                write!(f, "archive entry at {offset} is truncated")
            }
            ArchiveError::BadMagic { offset } => {
                write!(f, "archive entry at {offset} has no newc magic")
            }
            ArchiveError::BadField { offset } => {
                write!(f, "archive entry at {offset} has a non-hex header field")
            }
            ArchiveError::BadName { offset } => {
                write!(f, "archive entry at {offset} has a bad name")
            }
            ArchiveError::MissingTrailer => write!(f, "archive has no TRAILER!!! entry"),
        }
    }
}

impl core::error::Error for ArchiveError {}

/// One file of the archive, borrowed from the archive's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File<'a> {
    /// Path inside the archive (no leading `/`).
    pub name: &'a str,
    /// Contents.
    pub data: &'a [u8],
    /// The mode bits from the header.
    pub mode: u32,
}

/// A newc archive in memory.
#[derive(Debug, Clone, Copy)]
pub struct Archive<'a> {
    bytes: &'a [u8],
}

impl<'a> Archive<'a> {
    /// Wraps `bytes` and checks the whole archive once, so that later iteration cannot fail.
    pub fn new(bytes: &'a [u8]) -> Result<Archive<'a>, ArchiveError> {
        let archive = Archive { bytes };
        let mut offset = 0;
        loop {
            match archive.entry_at(offset)? {
                Some((_, next)) => offset = next,
                None => return Ok(archive),
            }
        }
    }

    /// The files, in archive order.
    pub fn files(&self) -> impl Iterator<Item = File<'a>> + 'a {
        let archive = *self;
        let mut offset = 0;
        core::iter::from_fn(move || {
            let (file, next) = archive.entry_at(offset).ok()??;
            offset = next;
            Some(file)
        })
    }

    /// The file at `path`, if present.
    pub fn find(&self, path: &str) -> Option<File<'a>> {
        self.files().find(|f| f.name == path)
    }

    /// Reads the entry at `offset`: `Ok(None)` at the trailer.
    fn entry_at(&self, offset: usize) -> Result<Option<(File<'a>, usize)>, ArchiveError> {
        let header = self
            .bytes
            .get(offset..)
            .and_then(|b| b.get(..HEADER_LEN))
            .ok_or(ArchiveError::Truncated { offset })?;
        if &header[..6] != MAGIC {
            return Err(ArchiveError::BadMagic { offset });
        }
        let field = |i: usize| -> Result<u32, ArchiveError> {
            let start = 6 + i * 8;
            let text = core::str::from_utf8(&header[start..start + 8])
                .map_err(|_| ArchiveError::BadField { offset })?;
            u32::from_str_radix(text, 16).map_err(|_| ArchiveError::BadField { offset })
        };
        let mode = field(1)?;
        let file_size = field(6)? as usize;
        let name_size = field(11)? as usize;
        let name_start = offset + HEADER_LEN;
        let name_bytes = name_start
            .checked_add(name_size)
            .and_then(|end| self.bytes.get(name_start..end))
            .ok_or(ArchiveError::Truncated { offset })?;
        let (nul, name) = name_bytes
            .split_last()
            .ok_or(ArchiveError::BadName { offset })?;
        if *nul != 0 {
            return Err(ArchiveError::BadName { offset });
        }
        let name = core::str::from_utf8(name).map_err(|_| ArchiveError::BadName { offset })?;
        let data_start =
            align4(name_start + name_size).ok_or(ArchiveError::Truncated { offset })?;
        let data = data_start
            .checked_add(file_size)
            .and_then(|end| self.bytes.get(data_start..end))
            .ok_or(ArchiveError::Truncated { offset })?;
        if name.as_bytes() == TRAILER {
            return Ok(None);
        }
        let next = align4(data_start + file_size).ok_or(ArchiveError::Truncated { offset })?;
        if next >= self.bytes.len() {
            return Err(ArchiveError::MissingTrailer);
        }
        let name = name.trim_start_matches('/');
        Ok(Some((File { name, data, mode }, next)))
    }
}

fn align4(v: usize) -> Option<usize> {
    Some(v.checked_add(3)? & !3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;
    use std::vec::Vec;

    fn build(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let inputs = files.iter().map(|(name, data)| {
            (
                cpio::newc::Builder::new(name).mode(0o100644).nlink(1),
                Cursor::new(*data),
            )
        });
        cpio::write_cpio(inputs, &mut out).unwrap();
        out
    }

    #[test]
    fn reads_what_the_cpio_crate_writes() {
        let bytes = build(&[
            ("lib/modules/hello.ko", b"\x7fELF hello"),
            ("lib/modules/modules.dep", b"hello.ko:\n"),
            ("sbin/init", b"x"),
        ]);
        let a = Archive::new(&bytes).unwrap();
        let names: Vec<_> = a.files().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "lib/modules/hello.ko",
                "lib/modules/modules.dep",
                "sbin/init"
            ]
        );
        assert_eq!(a.find("sbin/init").unwrap().data, b"x");
        assert_eq!(a.find("lib/modules/hello.ko").unwrap().mode, 0o100644);
        assert!(a.find("missing").is_none());
    }

    #[test]
    fn empty_archive_is_just_a_trailer() {
        let bytes = build(&[]);
        assert_eq!(Archive::new(&bytes).unwrap().files().count(), 0);
    }

    #[test]
    fn rejects_damage() {
        let bytes = build(&[("a", b"abc")]);
        assert_eq!(
            Archive::new(&bytes[..50]).unwrap_err(),
            ArchiveError::Truncated { offset: 0 }
        );
        let mut bad = bytes.clone();
        bad[0] = b'1';
        assert_eq!(
            Archive::new(&bad).unwrap_err(),
            ArchiveError::BadMagic { offset: 0 }
        );
        let mut bad = bytes.clone();
        bad[6 + 6 * 8] = b'z'; // file size field
        assert_eq!(
            Archive::new(&bad).unwrap_err(),
            ArchiveError::BadField { offset: 0 }
        );
        let mut bad = bytes.clone();
        bad[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"7fffffff");
        assert_eq!(
            Archive::new(&bad).unwrap_err(),
            ArchiveError::Truncated { offset: 0 }
        );
        // Cut right after the first file: no trailer.
        assert_eq!(
            Archive::new(&bytes[..116]).unwrap_err(),
            ArchiveError::MissingTrailer
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(a) = Archive::new(&bytes) {
                for f in a.files() {
                    let _ = f.data.len();
                }
            }
        }

        #[test]
        fn mutated_archives_never_panic(idx in 0usize..200, byte in any::<u8>()) {
            let mut bytes = build(&[("lib/x.ko", b"0123456789"), ("sbin/init", b"abc")]);
            let i = idx % bytes.len();
            bytes[i] = byte;
            if let Ok(a) = Archive::new(&bytes) {
                let _ = a.files().count();
            }
        }
    }
}
