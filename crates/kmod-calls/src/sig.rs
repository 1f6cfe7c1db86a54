//! Call signatures: what they can say ([`Signature`]), the text grammar they are written in
//! ([`Export::parse`]) and its canonical form ([`core::fmt::Display`]), the fingerprint that
//! ties a call to one exact signature ([`Export::fingerprint`]).
//!
//! The grammar (modules/ABI.md, "Export signatures"), one record per export:
//!
//! ```text
//! record  = name "(" [ arg *( "," arg ) ] ")" "->" ret
//! name    = ( ALPHA / "_" ) *( ALPHA / DIGIT / "_" )       ; 1 to 255 bytes
//! arg     = int / buffer / outlen
//! int     = "u8" / "u16" / "u32" / "u64" / "i8" / "i16" / "i32" / "i64" / "usize" / "isize"
//! ret     = int / "void"
//! buffer  = ( "in" / "out" / "inout" ) "[" ( count / bytes ) "]"
//! count   = "@" index [ "*" bytes ]   ; length: argument `index` elements of `bytes` (1) each
//! outlen  = "outlen" "[" "@" index "]" ; *u64: how much of buffer argument `index` was filled
//! index   = DIGIT                      ; 0 to 5: another argument's position
//! bytes   = 1*5DIGIT                   ; 1 to 65536, no leading zero
//! ```
//!
//! Spaces may stand between any two tokens. `usize`/`isize` are `u64`/`i64` (x86-64); the
//! canonical form prints the latter, so a Rust and a C declaration of one function agree.

use core::fmt;

use crate::error::{RecordError, SignatureError};

/// Most arguments a signature may have: the six integer argument registers of the System V
/// x86-64 calling convention (and [`kmodlab_ipc::msg::MSG_WORDS`]).
pub const MAX_ARGS: usize = 6;
/// Most buffer arguments: each becomes one lease ([`kmodlab_ipc::msg::MAX_LEASES`]).
pub const MAX_BUFFERS: usize = kmodlab_ipc::msg::MAX_LEASES;
/// Longest export name.
pub const MAX_NAME: usize = 255;
/// Longest record (name and signature, without its NUL).
pub const MAX_RECORD: usize = 512;
/// Largest element size or fixed buffer size a signature may give.
pub const MAX_SIZE: u32 = 65536;

const _: () = assert!(MAX_ARGS == kmodlab_ipc::msg::MSG_WORDS);

/// An integer type: of an argument, a return value, a buffer's count argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int {
    /// `u8` (`uint8_t`, `unsigned char`).
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64` (`usize`, `size_t` on x86-64).
    U64,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32` (`int`).
    I32,
    /// `i64` (`isize`, `long`).
    I64,
}

impl Int {
    /// Every integer type, in code order.
    pub const ALL: [Int; 8] = [
        Int::U8,
        Int::U16,
        Int::U32,
        Int::U64,
        Int::I8,
        Int::I16,
        Int::I32,
        Int::I64,
    ];

    /// Width in bits.
    pub const fn bits(self) -> u32 {
        match self {
            Int::U8 | Int::I8 => 8,
            Int::U16 | Int::I16 => 16,
            Int::U32 | Int::I32 => 32,
            Int::U64 | Int::I64 => 64,
        }
    }

    /// Whether it is signed.
    pub const fn signed(self) -> bool {
        matches!(self, Int::I8 | Int::I16 | Int::I32 | Int::I64)
    }

    /// Its name in the grammar's canonical form.
    pub const fn name(self) -> &'static str {
        match self {
            Int::U8 => "u8",
            Int::U16 => "u16",
            Int::U32 => "u32",
            Int::U64 => "u64",
            Int::I8 => "i8",
            Int::I16 => "i16",
            Int::I32 => "i32",
            Int::I64 => "i64",
        }
    }

    /// The type a grammar word names (`usize` and `isize` included).
    pub fn from_name(word: &[u8]) -> Option<Int> {
        match word {
            b"usize" => Some(Int::U64),
            b"isize" => Some(Int::I64),
            _ => Int::ALL.into_iter().find(|i| i.name().as_bytes() == word),
        }
    }

    /// Its code in a [`crate::Descriptor`] (1 to 8).
    pub const fn code(self) -> u8 {
        match self {
            Int::U8 => 1,
            Int::U16 => 2,
            Int::U32 => 3,
            Int::U64 => 4,
            Int::I8 => 5,
            Int::I16 => 6,
            Int::I32 => 7,
            Int::I64 => 8,
        }
    }

    /// The type of a code.
    pub const fn from_code(code: u8) -> Option<Int> {
        Some(match code {
            1 => Int::U8,
            2 => Int::U16,
            3 => Int::U32,
            4 => Int::U64,
            5 => Int::I8,
            6 => Int::I16,
            7 => Int::I32,
            8 => Int::I64,
            _ => return None,
        })
    }

    /// A register holding a value of this type, made canonical: cut to the type's width,
    /// then zero- or sign-extended to 64 bits. The System V ABI leaves a narrow argument's or
    /// return value's upper register bits undefined; messages carry only canonical words.
    pub const fn canonical(self, register: u64) -> u64 {
        let shift = 64u32.saturating_sub(self.bits());
        if self.signed() {
            (((register << shift) as i64) >> shift) as u64
        } else {
            (register << shift) >> shift
        }
    }

    /// Whether `word` is canonical for this type (see [`Int::canonical`]).
    pub const fn is_canonical(self, word: u64) -> bool {
        self.canonical(word) == word
    }

    /// A canonical word of this type read as a length: `None` for a negative value.
    pub const fn as_count(self, word: u64) -> Option<u64> {
        if self.signed() && (word as i64) < 0 {
            None
        } else {
            Some(word)
        }
    }
}

/// A return type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// Nothing (`rax` is not read).
    Void,
    /// An integer in `rax`.
    Int(Int),
}

impl Ret {
    /// Its code in a [`crate::Descriptor`]: 0 for void, else the integer's.
    pub const fn code(self) -> u8 {
        match self {
            Ret::Void => 0,
            Ret::Int(i) => i.code(),
        }
    }

    /// The return type of a code.
    pub const fn from_code(code: u8) -> Option<Ret> {
        if code == 0 {
            return Some(Ret::Void);
        }
        match Int::from_code(code) {
            Some(i) => Some(Ret::Int(i)),
            None => None,
        }
    }

    /// `rax` made canonical (0 for void).
    pub const fn canonical(self, rax: u64) -> u64 {
        match self {
            Ret::Void => 0,
            Ret::Int(i) => i.canonical(rax),
        }
    }
}

/// Which way a buffer's bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Read by the callee (`const T *`): a read-only lease.
    In,
    /// Written by the callee (`T *`): a write-only lease, copied back after the call.
    Out,
    /// Both: a read-write lease, read before and copied back after the call.
    InOut,
}

impl Dir {
    /// Its keyword.
    pub const fn name(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
            Dir::InOut => "inout",
        }
    }

    /// Whether the callee reads the caller's bytes.
    pub const fn reads(self) -> bool {
        matches!(self, Dir::In | Dir::InOut)
    }

    /// Whether the callee's bytes go back to the caller.
    pub const fn writes(self) -> bool {
        matches!(self, Dir::Out | Dir::InOut)
    }

    /// The lease flags a buffer of this direction travels with.
    pub const fn lease_flags(self) -> u64 {
        use kmodlab_ipc::msg::{LEASE_READ, LEASE_WRITE};
        match self {
            Dir::In => LEASE_READ,
            Dir::Out => LEASE_WRITE,
            Dir::InOut => LEASE_READ | LEASE_WRITE,
        }
    }
}

/// How long a buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Extent {
    /// `@arg*elem`: the value of integer argument `arg`, in elements of `elem` bytes (C's
    /// `const uint32_t *v, size_t n`: `in[@1*4]`).
    Count {
        /// Position of the count argument.
        arg: u8,
        /// Bytes per element.
        elem: u32,
    },
    /// A fixed number of bytes: a pointer to one struct (`struct stats *out`: `out[24]`).
    Fixed {
        /// The size.
        bytes: u32,
    },
}

impl Extent {
    /// Bytes per unit of an `outlen` naming this buffer: the element size, 1 for a fixed
    /// buffer.
    pub const fn unit(self) -> u32 {
        match self {
            Extent::Count { elem, .. } => elem,
            Extent::Fixed { .. } => 1,
        }
    }
}

/// One argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arg {
    /// An integer, passed by value.
    Int(Int),
    /// A pointer to a buffer.
    Buffer {
        /// Which way its bytes go.
        dir: Dir,
        /// Its length.
        extent: Extent,
    },
    /// A pointer to a `u64` (`size_t *`, `*mut usize`) in which the callee stores how much of
    /// the `out`/`inout` buffer argument `buffer` it filled, in that buffer's units.
    OutLen {
        /// Position of the buffer argument.
        buffer: u8,
    },
}

impl Arg {
    /// Whether the argument is a pointer (a buffer or an out-length).
    pub const fn is_pointer(self) -> bool {
        !matches!(self, Arg::Int(_))
    }
}

/// A checked call signature: up to [`MAX_ARGS`] arguments and a return type, every
/// cross-reference valid (see [`Signature::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    argc: u8,
    args: [Arg; MAX_ARGS],
    ret: Ret,
}

impl Signature {
    /// Checks `args` and builds the signature: at most [`MAX_ARGS`] arguments and
    /// [`MAX_BUFFERS`] buffers; a count names another, integer argument; an element or fixed
    /// size is 1 to [`MAX_SIZE`]; an `outlen` names an `out` or `inout` buffer, and each
    /// buffer has at most one.
    pub fn new(args: &[Arg], ret: Ret) -> Result<Signature, SignatureError> {
        if args.len() > MAX_ARGS {
            return Err(SignatureError::TooManyArgs { count: args.len() });
        }
        let buffers = args
            .iter()
            .filter(|a| matches!(a, Arg::Buffer { .. }))
            .count();
        if buffers > MAX_BUFFERS {
            return Err(SignatureError::TooManyBuffers { count: buffers });
        }
        for (i, a) in args.iter().enumerate() {
            match *a {
                Arg::Int(_) => {}
                Arg::Buffer { extent, .. } => match extent {
                    Extent::Count { arg, elem } => {
                        match args.get(usize::from(arg)) {
                            None => {
                                return Err(SignatureError::CountOutOfRange { arg: i, count: arg });
                            }
                            Some(Arg::Int(_)) => {}
                            Some(_) => {
                                return Err(SignatureError::CountNotInteger { arg: i, count: arg });
                            }
                        }
                        if elem == 0 || elem > MAX_SIZE {
                            return Err(SignatureError::BadSize { arg: i, size: elem });
                        }
                    }
                    Extent::Fixed { bytes } => {
                        if bytes == 0 || bytes > MAX_SIZE {
                            return Err(SignatureError::BadSize {
                                arg: i,
                                size: bytes,
                            });
                        }
                    }
                },
                Arg::OutLen { buffer } => {
                    match args.get(usize::from(buffer)) {
                        Some(Arg::Buffer { dir, .. }) if dir.writes() => {}
                        Some(_) => {
                            return Err(SignatureError::OutLenNotOutBuffer { arg: i, buffer });
                        }
                        None => {
                            return Err(SignatureError::OutLenOutOfRange { arg: i, buffer });
                        }
                    }
                    let first = args
                        .iter()
                        .position(|b| *b == Arg::OutLen { buffer })
                        .unwrap_or(i);
                    if first != i {
                        return Err(SignatureError::OutLenTwice { buffer });
                    }
                }
            }
        }
        let mut all = [Arg::Int(Int::U64); MAX_ARGS];
        for (slot, a) in all.iter_mut().zip(args) {
            *slot = *a;
        }
        Ok(Signature {
            // At most MAX_ARGS (checked above).
            argc: u8::try_from(args.len()).unwrap_or(u8::MAX),
            args: all,
            ret,
        })
    }

    /// The arguments.
    pub fn args(&self) -> &[Arg] {
        self.args.get(..usize::from(self.argc)).unwrap_or(&[])
    }

    /// The return type.
    pub const fn ret(&self) -> Ret {
        self.ret
    }

    /// The `outlen` argument naming buffer argument `buffer`, if any.
    pub fn outlen_of(&self, buffer: usize) -> Option<usize> {
        self.args()
            .iter()
            .position(|a| matches!(*a, Arg::OutLen { buffer: b } if usize::from(b) == buffer))
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Arg::Int(i) => f.write_str(i.name()),
            Arg::Buffer { dir, extent } => match extent {
                Extent::Count { arg, elem: 1 } => write!(f, "{}[@{arg}]", dir.name()),
                Extent::Count { arg, elem } => write!(f, "{}[@{arg}*{elem}]", dir.name()),
                Extent::Fixed { bytes } => write!(f, "{}[{bytes}]", dir.name()),
            },
            Arg::OutLen { buffer } => write!(f, "outlen[@{buffer}]"),
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ret::Void => f.write_str("void"),
            Ret::Int(i) => f.write_str(i.name()),
        }
    }
}

/// The canonical text without a name: `(in[@1], u64) -> u32`.
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, a) in self.args().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        write!(f, ") -> {}", self.ret)
    }
}

/// One record of the signature section: an export's name and its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Export<'a> {
    /// The exported symbol.
    pub name: &'a str,
    /// How to call it.
    pub sig: Signature,
}

impl<'a> Export<'a> {
    /// Parses one record (without its NUL): `crc32_compute(in[@1], usize) -> u32`.
    pub fn parse(record: &'a [u8]) -> Result<Export<'a>, RecordError> {
        if record.len() > MAX_RECORD {
            return Err(RecordError::TooLong {
                len: record.len(),
                max: MAX_RECORD,
            });
        }
        if let Some(at) = record.iter().position(|b| !(0x20..0x7f).contains(b)) {
            return Err(RecordError::BadByte {
                at,
                byte: record.get(at).copied().unwrap_or(0),
            });
        }
        let mut p = Parser { s: record, at: 0 };
        p.spaces();
        let name = p.name()?;
        p.expect(b"(", "`(` after the export's name")?;
        let mut args = [Arg::Int(Int::U64); MAX_ARGS];
        let mut argc = 0usize;
        p.spaces();
        if !p.eat(b")") {
            loop {
                p.spaces();
                let arg = p.arg()?;
                let slot = args.get_mut(argc).ok_or(RecordError::Invalid(
                    SignatureError::TooManyArgs {
                        count: argc.saturating_add(1),
                    },
                ))?;
                *slot = arg;
                argc = argc.saturating_add(1);
                p.spaces();
                if p.eat(b")") {
                    break;
                }
                p.expect(b",", "`,` or `)` after an argument")?;
            }
        }
        p.expect(b"->", "`->` and the return type after `)`")?;
        p.spaces();
        let word_at = p.at;
        let ret = match p.word() {
            b"void" => Ret::Void,
            w => Ret::Int(Int::from_name(w).ok_or(RecordError::Syntax {
                at: word_at,
                expected: "a return type: void, u8..u64, i8..i64, usize or isize",
            })?),
        };
        p.spaces();
        if p.at != record.len() {
            return Err(RecordError::Syntax {
                at: p.at,
                expected: "the end of the record after the return type",
            });
        }
        let sig =
            Signature::new(args.get(..argc).unwrap_or(&[]), ret).map_err(RecordError::Invalid)?;
        Ok(Export { name, sig })
    }

    /// The 64-bit FNV-1a hash of the canonical text (`name(args) -> ret`): what a call
    /// carries so that the server runs it only against exactly the signature the caller's
    /// stub was built from.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        // Writing into the hasher cannot fail.
        let _ = fmt::write(&mut h, format_args!("{self}"));
        h.0
    }
}

/// The canonical record text: `crc32_compute(in[@1], u64) -> u32`.
impl fmt::Display for Export<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.sig)
    }
}

struct Fnv(u64);

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(())
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn bump(&mut self) {
        self.at = self.at.saturating_add(1);
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.bump();
        }
    }

    fn eat(&mut self, token: &[u8]) -> bool {
        let rest = self.s.get(self.at..).unwrap_or(&[]);
        if rest.starts_with(token) {
            self.at = self.at.saturating_add(token.len());
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &[u8], expected: &'static str) -> Result<(), RecordError> {
        self.spaces();
        if self.eat(token) {
            Ok(())
        } else {
            Err(RecordError::Syntax {
                at: self.at,
                expected,
            })
        }
    }

    /// The longest run of identifier bytes from here.
    fn word(&mut self) -> &'a [u8] {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.bump();
        }
        self.s.get(start..self.at).unwrap_or(&[])
    }

    fn name(&mut self) -> Result<&'a str, RecordError> {
        let at = self.at;
        let word = self.word();
        match word.first() {
            None => {
                return Err(RecordError::Syntax {
                    at,
                    expected: "the export's name (a C identifier)",
                });
            }
            Some(b) if b.is_ascii_digit() => {
                return Err(RecordError::Syntax {
                    at,
                    expected: "a name that does not start with a digit",
                });
            }
            Some(_) => {}
        }
        if word.len() > MAX_NAME {
            return Err(RecordError::NameTooLong {
                len: word.len(),
                max: MAX_NAME,
            });
        }
        // Only ASCII identifier bytes were taken.
        core::str::from_utf8(word).map_err(|_| RecordError::BadByte { at, byte: 0 })
    }

    fn arg(&mut self) -> Result<Arg, RecordError> {
        let at = self.at;
        let word = self.word();
        if let Some(i) = Int::from_name(word) {
            return Ok(Arg::Int(i));
        }
        let dir = match word {
            b"in" => Dir::In,
            b"out" => Dir::Out,
            b"inout" => Dir::InOut,
            b"outlen" => {
                self.expect(b"[", "`[` after outlen")?;
                self.expect(
                    b"@",
                    "`@` and the buffer argument's position in outlen[...]",
                )?;
                let buffer = self.index()?;
                self.expect(b"]", "`]` after outlen's buffer position")?;
                return Ok(Arg::OutLen { buffer });
            }
            _ => {
                return Err(RecordError::Syntax {
                    at,
                    expected: "an argument: u8..u64, i8..i64, usize, isize, in[..], out[..], \
                               inout[..] or outlen[..]",
                });
            }
        };
        self.expect(b"[", "`[` and the buffer's length after in/out/inout")?;
        self.spaces();
        let extent = if self.eat(b"@") {
            self.spaces();
            let arg = self.index()?;
            self.spaces();
            let elem = if self.eat(b"*") {
                self.spaces();
                self.number()?
            } else {
                1
            };
            Extent::Count { arg, elem }
        } else {
            Extent::Fixed {
                bytes: self.number()?,
            }
        };
        self.expect(b"]", "`]` after the buffer's length")?;
        Ok(Arg::Buffer { dir, extent })
    }

    fn index(&mut self) -> Result<u8, RecordError> {
        self.spaces();
        match self.peek() {
            Some(b @ b'0'..=b'5')
                if !self
                    .s
                    .get(self.at.saturating_add(1))
                    .is_some_and(u8::is_ascii_digit) =>
            {
                self.bump();
                Ok(b.saturating_sub(b'0'))
            }
            _ => Err(RecordError::Syntax {
                at: self.at,
                expected: "an argument position, 0 to 5",
            }),
        }
    }

    /// 1 to [`MAX_SIZE`], no leading zero.
    fn number(&mut self) -> Result<u32, RecordError> {
        let at = self.at;
        let bad = RecordError::Syntax {
            at,
            expected: "a size in bytes, 1 to 65536, without leading zeros",
        };
        let mut value: u32 = 0;
        let mut digits = 0u32;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            if digits == 0 && b == b'0' {
                return Err(bad);
            }
            digits = digits.saturating_add(1);
            if digits > 5 {
                return Err(bad);
            }
            value = value
                .saturating_mul(10)
                .saturating_add(u32::from(b.saturating_sub(b'0')));
            self.bump();
        }
        if digits == 0 || value > MAX_SIZE {
            return Err(bad);
        }
        Ok(value)
    }
}
