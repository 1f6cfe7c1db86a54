//! The module archive: a cpio "newc" archive (the initramfs format) holding the modules,
//! `modules.dep` and the guest user programs. The VMM places it in guest memory unchanged.

use std::path::Path;

use crate::{BuildError, Result};

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/` (e.g. `lib/modules/hello.ko`).
    pub path: String,
    /// File contents.
    pub data: Vec<u8>,
}

impl Entry {
    /// Reads `file` into an entry stored at `path`.
    pub fn from_file(path: String, file: &Path) -> Result<Entry> {
        let data = std::fs::read(file).map_err(|source| BuildError::Io {
            path: file.to_owned(),
            source,
        })?;
        Ok(Entry { path, data })
    }
}

/// Writes `entries` as a newc archive to `out`, in the given order, with a fixed mtime so
/// that the archive (and the `kmodlab` binary embedding it) is reproducible.
pub fn write_newc(entries: &[Entry], out: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    let inputs = entries.iter().enumerate().map(|(i, e)| {
        let builder = cpio::newc::Builder::new(&e.path)
            .ino(i as u32 + 1)
            .mode(0o100644)
            .nlink(1)
            .mtime(0);
        (builder, std::io::Cursor::new(e.data.as_slice()))
    });
    cpio::write_cpio(inputs, &mut bytes).map_err(|source| BuildError::Io {
        path: out.to_owned(),
        source,
    })?;
    std::fs::write(out, bytes).map_err(|source| BuildError::Io {
        path: out.to_owned(),
        source,
    })
}
