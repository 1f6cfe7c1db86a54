//! One error enum per operation. Each says who is at fault (the module's author, the calling
//! module, a stub or a server that does not follow the protocol) and, where a syscall or a
//! reply needs one, which errno stands for it ([`errno`]).

/// The errno values this crate's errors map to (Linux's numbers).
pub mod errno {
    /// Argument list too long: a buffer over the call limits.
    pub const E2BIG: u64 = 7;
    /// Exec format error: a module the microkernel cannot run as a server.
    pub const ENOEXEC: u64 = 8;
    /// Bad address: a buffer whose end wraps around.
    pub const EFAULT: u64 = 14;
    /// Invalid argument: a negative count, overlapping buffers.
    pub const EINVAL: u64 = 22;
    /// Protocol error: a message that does not match the export's signature.
    pub const EPROTO: u64 = 71;
}

/// Why a list of arguments is not a valid signature (the module's author wrote it wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// More than [`crate::MAX_ARGS`] arguments.
    #[error("{count} arguments: an export may take at most 6 (the integer argument registers)")]
    TooManyArgs {
        /// How many.
        count: usize,
    },
    /// More than [`crate::MAX_BUFFERS`] buffers.
    #[error("{count} buffer arguments: at most 4 (one lease each)")]
    TooManyBuffers {
        /// How many.
        count: usize,
    },
    /// A count names a position past the last argument.
    #[error("argument {arg}: its length is argument {count}, which does not exist")]
    CountOutOfRange {
        /// The buffer argument.
        arg: usize,
        /// The position it names.
        count: u8,
    },
    /// A count names a pointer argument.
    #[error("argument {arg}: its length is argument {count}, which is not an integer")]
    CountNotInteger {
        /// The buffer argument.
        arg: usize,
        /// The position it names.
        count: u8,
    },
    /// An element or fixed size of 0 or over [`crate::MAX_SIZE`].
    #[error("argument {arg}: size {size} is not 1 to 65536 bytes")]
    BadSize {
        /// The buffer argument.
        arg: usize,
        /// The size.
        size: u32,
    },
    /// An `outlen` names a position past the last argument.
    #[error("argument {arg}: outlen of argument {buffer}, which does not exist")]
    OutLenOutOfRange {
        /// The outlen argument.
        arg: usize,
        /// The position it names.
        buffer: u8,
    },
    /// An `outlen` names an argument that is not an `out` or `inout` buffer.
    #[error("argument {arg}: outlen of argument {buffer}, which is not an out or inout buffer")]
    OutLenNotOutBuffer {
        /// The outlen argument.
        arg: usize,
        /// The position it names.
        buffer: u8,
    },
    /// Two `outlen`s name one buffer.
    #[error("buffer argument {buffer} has two outlen arguments")]
    OutLenTwice {
        /// The buffer argument.
        buffer: u8,
    },
}

/// Why one record of the signature section does not parse (the module's author wrote it
/// wrong; `at` is a byte offset in the record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Longer than [`crate::MAX_RECORD`].
    #[error("record of {len} bytes is longer than {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A byte that is not printable ASCII.
    #[error("byte {byte:#04x} at {at} is not printable ASCII")]
    BadByte {
        /// Where.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// The name is longer than [`crate::MAX_NAME`].
    #[error("export name of {len} bytes is longer than {max}")]
    NameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not what the grammar allows here.
    #[error("at byte {at}: expected {expected}")]
    Syntax {
        /// Where.
        at: usize,
        /// What would have been valid.
        expected: &'static str,
    },
    /// Well-formed, but not a valid signature.
    #[error("{0}")]
    Invalid(SignatureError),
}

/// Why a module's signature section is unusable (the module's author, or whoever made the
/// file, is at fault: the microkernel refuses the module, the monolithic kernel ignores the
/// section).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SectionError<'a> {
    /// Larger than [`crate::MAX_SECTION`].
    #[error("signature section of {size} bytes is larger than {max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The last record has no NUL.
    #[error("signature record at offset {offset:#x} is not NUL-terminated")]
    Unterminated {
        /// Where it starts.
        offset: usize,
    },
    /// A record does not parse.
    #[error("signature record {index} (offset {offset:#x}): {source}")]
    Record {
        /// Where it starts.
        offset: usize,
        /// Its position among the records.
        index: usize,
        /// What is wrong with it.
        source: RecordError,
    },
    /// More than [`crate::MAX_EXPORTS`] records.
    #[error("more than {max} signature records")]
    TooManyExports {
        /// The limit.
        max: usize,
    },
    /// Two records for one name.
    #[error("two signatures for `{name}` (offsets {first:#x} and {offset:#x})")]
    Duplicate {
        /// The name.
        name: &'a str,
        /// Where the second starts.
        offset: usize,
        /// Where the first starts.
        first: usize,
    },
}

/// Why the signature section of a file cannot be found or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// Not an ELF64 file, or its section headers are out of bounds.
    #[error("not a readable ELF64 file: {0}")]
    Elf(object::Error),
    /// Big-endian ELF (modules are x86-64).
    #[error("big-endian ELF file: modules are little-endian x86-64")]
    BigEndian,
    /// Two sections named [`crate::SECTION`].
    #[error("sections [{first}] and [{second}] are both named .kmod_exportsig")]
    Duplicate {
        /// Index of the first.
        first: usize,
        /// Index of the second.
        second: usize,
    },
    /// The section is SHF_ALLOC: the monolithic loader would load it (ABI.md forbids it).
    #[error(
        "section [{index}] .kmod_exportsig is SHF_ALLOC; it must not be loaded (ABI.md, \
         \"Export signatures\")"
    )]
    Allocated {
        /// Its index.
        index: usize,
    },
    /// Not SHT_PROGBITS (e.g. NOBITS: no contents).
    #[error("section [{index}] .kmod_exportsig has type {sh_type}, not SHT_PROGBITS")]
    NotProgbits {
        /// Its index.
        index: usize,
        /// Its type.
        sh_type: u32,
    },
    /// Larger than [`crate::MAX_SECTION`].
    #[error("section .kmod_exportsig of {size} bytes is larger than {max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// Its contents lie outside the file.
    #[error("section [{index}] .kmod_exportsig extends past the end of the file")]
    OutOfBounds {
        /// Its index.
        index: usize,
    },
}

/// [`crate::ExportTable::from_module`]: finding or reading the section failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError<'a> {
    /// Finding it.
    #[error("{0}")]
    Find(FindError),
    /// Reading it.
    #[error("{0}")]
    Section(SectionError<'a>),
}

/// Why a module's signatures do not match its exports: the microkernel manager refuses the
/// module ([`CoverageError::errno`]: `ENOEXEC`); the monolithic kernel loads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoverageError<'a, 'e> {
    /// An export without a signature.
    #[error(
        "export `{export}` has no call signature, so no other module's server can call it; \
         declare it with kmod_api::export! (Rust) or EXPORT_SYMBOL_SIG (C), see \
         modules/ABI.md \"Export signatures\""
    )]
    Undeclared {
        /// The export.
        export: &'e str,
    },
    /// A signature for a symbol the module does not export.
    #[error("call signature for `{name}`, which the module does not export (no __ksymtab_{name})")]
    Stale {
        /// The name.
        name: &'a str,
    },
}

impl CoverageError<'_, '_> {
    /// The errno a refused load reports.
    pub const fn errno(&self) -> u64 {
        errno::ENOEXEC
    }
}

/// Why a 64-byte [`crate::Descriptor`] is invalid (whoever wrote it, normally the manager,
/// is at fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// Not [`crate::Descriptor::LEN`] bytes.
    #[error("descriptor of {len} bytes, expected 64")]
    Length {
        /// Its length.
        len: usize,
    },
    /// An unknown kind or return code, or non-zero padding.
    #[error("descriptor byte {at} holds {value:#04x}, which is not valid there")]
    BadByte {
        /// Offset.
        at: usize,
        /// The byte.
        value: u8,
    },
    /// The arguments do not form a valid signature.
    #[error("{0}")]
    Invalid(SignatureError),
}

/// Why a stub cannot make the call (the calling module passed arguments the call cannot
/// carry); the stub returns [`crate::Descriptor::failure_return`] of [`MarshalError::errno`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarshalError {
    /// A buffer over [`crate::Limits::max_buffer`].
    #[error("argument {arg}: buffer of {len} bytes exceeds the call limit of {max}")]
    BufferTooLarge {
        /// The buffer argument.
        arg: usize,
        /// Its length (saturated at `u64::MAX`).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// All buffers together over [`crate::Limits::max_total`].
    #[error("buffers of {total} bytes in all exceed the call limit of {max}")]
    TotalTooLarge {
        /// Their total (saturated).
        total: u64,
        /// The limit.
        max: u64,
    },
    /// A signed count argument is negative while its buffer is not null.
    #[error("argument {arg}: its count (argument {count}) is negative")]
    NegativeCount {
        /// The buffer argument.
        arg: usize,
        /// The count argument.
        count: usize,
    },
    /// A buffer whose end wraps around the address space.
    #[error("argument {arg}: buffer at {addr:#x} wraps around the address space")]
    BadAddress {
        /// The pointer argument.
        arg: usize,
        /// Its address.
        addr: u64,
    },
    /// Two buffers overlap and one of them is written: the callee would see them as one
    /// memory in the monolithic kernel and as two copies here, so the call is refused
    /// rather than given different results.
    #[error("arguments {first} and {second}: buffers overlap and one is written")]
    Overlap {
        /// The first pointer argument.
        first: usize,
        /// The second.
        second: usize,
    },
}

impl MarshalError {
    /// The errno the stub reports.
    pub const fn errno(&self) -> u64 {
        match self {
            MarshalError::BufferTooLarge { .. } | MarshalError::TotalTooLarge { .. } => {
                errno::E2BIG
            }
            MarshalError::NegativeCount { .. } | MarshalError::Overlap { .. } => errno::EINVAL,
            MarshalError::BadAddress { .. } => errno::EFAULT,
        }
    }
}

/// Why a server refuses a call before running the function: the message does not follow
/// the export's signature (the client, or its stub, is at fault; the server runtime replies
/// `-`[`RequestError::errno`] and logs the message with the caller's badge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The payload is not a [`crate::HEADER_LEN`]-byte header.
    #[error("request payload of {len} bytes, expected a {expected}-byte call header")]
    HeaderLength {
        /// Its length.
        len: u64,
        /// The header's length.
        expected: usize,
    },
    /// An unknown protocol version or non-zero reserved bytes.
    #[error("call header version {version} (reserved {reserved:#06x}); this server speaks 1")]
    Version {
        /// The version byte.
        version: u8,
        /// The reserved bytes.
        reserved: u16,
    },
    /// No export of that index.
    #[error("no export of index {export} (the server has {count})")]
    UnknownExport {
        /// The index asked for.
        export: u32,
        /// How many the server has.
        count: usize,
    },
    /// The header names another export than the one checking it.
    #[error("call for export {got} checked against export {expected}")]
    WrongExport {
        /// The descriptor's index.
        expected: u32,
        /// The header's.
        got: u32,
    },
    /// The stub was built from another signature than the server's.
    #[error(
        "signature fingerprint {got:#018x} is not the export's {expected:#018x}: the caller's \
         stub was built for another signature"
    )]
    Fingerprint {
        /// The server's.
        expected: u64,
        /// The caller's.
        got: u64,
    },
    /// Null bits on arguments that are not pointers.
    #[error("null mask {mask:#04x} marks arguments that are not pointers")]
    NullMask {
        /// The mask.
        mask: u8,
    },
    /// An integer word that is not the canonical extension of its type.
    #[error("argument {arg}: word {word:#x} is not a canonical {ty}")]
    NonCanonical {
        /// The argument.
        arg: usize,
        /// The word.
        word: u64,
        /// Its type's name.
        ty: &'static str,
    },
    /// A word that must be 0 (a buffer's, a null out-length's, one past the arguments).
    #[error("word {index} is {word:#x}, expected 0")]
    UnexpectedWord {
        /// The word's index.
        index: usize,
        /// Its value.
        word: u64,
    },
    /// Not one lease per non-null buffer.
    #[error("{got} leases, but the signature and null mask ask for {expected}")]
    LeaseCount {
        /// What the signature needs.
        expected: usize,
        /// What came.
        got: u64,
    },
    /// A lease with other rights than its buffer's direction.
    #[error("argument {arg}: lease {lease} has flags {got:#x}, expected {expected:#x}")]
    LeaseFlags {
        /// The buffer argument.
        arg: usize,
        /// The lease.
        lease: usize,
        /// The flags its direction needs.
        expected: u64,
        /// The flags it has.
        got: u64,
    },
    /// A lease whose length is not the buffer's.
    #[error("argument {arg}: lease {lease} is {got} bytes, but the arguments say {expected}")]
    LeaseLength {
        /// The buffer argument.
        arg: usize,
        /// The lease.
        lease: usize,
        /// The length the words give.
        expected: u64,
        /// The lease's.
        got: u64,
    },
    /// The call's buffers are over the server's limits.
    #[error("{0}")]
    Limits(MarshalError),
}

impl RequestError {
    /// The errno the server replies with.
    pub const fn errno(&self) -> u64 {
        match self {
            RequestError::Limits(e) => e.errno(),
            _ => errno::EPROTO,
        }
    }
}

/// Why a stub rejects a server's reply (the server does not follow the protocol); the stub
/// returns [`crate::Descriptor::failure_return`] of `EPROTO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The return word is not canonical for the return type.
    #[error("return word {word:#x} is not a canonical {ty}")]
    NonCanonicalReturn {
        /// The word.
        word: u64,
        /// The return type's name.
        ty: &'static str,
    },
    /// A word that must be 0.
    #[error("reply word {index} is {word:#x}, expected 0")]
    UnexpectedWord {
        /// Its index.
        index: usize,
        /// Its value.
        word: u64,
    },
}

impl ReplyError {
    /// The errno the stub reports.
    pub const fn errno(&self) -> u64 {
        errno::EPROTO
    }
}
