//! The errors of the module tools. Each names the file (or directory) and what is wrong.

use std::path::PathBuf;

/// A failure of one of the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Walking a module directory failed.
    #[error("{path}: {source}")]
    Walk {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: walkdir::Error,
    },
    /// The file is not a regular file (a FIFO, device, socket or directory): refused before
    /// reading, since reading one could block forever or never end.
    #[error("{path}: {kind}, not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead (`a FIFO`, `a character device`, ...).
        kind: &'static str,
    },
    /// The file, or what it decompresses to, is larger than the tools read.
    #[error("{path}: {what} is larger than {limit} bytes, the most the module tools read")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// `the file` or `the decompressed module`.
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is compressed and could not be decompressed.
    #[error("{path}: cannot decompress {format} data: {reason}")]
    Decompress {
        /// The file.
        path: PathBuf,
        /// `xz` or `zstd`.
        format: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The file is ELF but malformed (a header, table or offset out of bounds).
    #[error("{path}: malformed ELF: {source}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// object's description of the problem.
        source: object::read::Error,
    },
    /// The file is not a module this tool understands (not ELF64 x86-64 ET_REL, or a bad
    /// `.modinfo`).
    #[error("{path}: not a kernel module: {reason}")]
    NotModule {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Modules depend on each other in a circle.
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The modules of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A kernel symbol list (System.map, Module.symvers, plain list) has a bad line.
    #[error("{path}:{line}: {reason}")]
    SymbolList {
        /// The list.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A signing key file is unusable.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A module cannot be signed as it is.
    #[error("{path}: cannot sign: {reason}")]
    Sign {
        /// The module file.
        path: PathBuf,
        /// Why not, and what to do.
        reason: String,
    },
    /// A command-line usage error.
    #[error("{0}")]
    Usage(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ToolError>;
