//! Compile-time support of [`export!`](crate::export)'s call signatures (modules/ABI.md,
//! "Export signatures"): which argument types an export may take, and the checks that make a
//! bad declaration a compile error rather than a load-time refusal.
//!
//! `export!` writes each record from the function's own argument and return types, so the
//! record cannot disagree with the code; `crates/kmod-calls` is the reader of the records,
//! and the build (`crates/kmodlab-build`) parses every module's section with it.

/// An integer type an export may take or return (Linux's `u8`..`u64`, `i8`..`i64`;
/// `usize`/`isize` are the 64-bit ones on x86-64).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an integer type an export may take or return",
    label = "export! arguments and return values are u8..u64, i8..i64, usize or isize",
    note = "a pointer argument needs an annotation: #[in(len)], #[out(len)], #[inout(len)] \
            (len: the argument holding its element count), #[in], #[out], #[inout] (one \
            pointee) or #[outlen(buffer)] (a *mut usize receiving how much of `buffer` was \
            filled); see modules/README.md, \"Exports and their signatures\""
)]
pub trait Scalar {
    /// The type's name as `export!` requires it to be written (no aliases: the record holds
    /// the name as written).
    const NAME: &'static str;
}

macro_rules! scalars {
    ($($t:ident)*) => {
        $(impl Scalar for $t {
            const NAME: &'static str = stringify!($t);
        })*
    };
}

scalars!(u8 u16 u32 u64 usize i8 i16 i32 i64 isize);

/// A pointer an `#[in]` buffer annotation accepts: `*const T`.
#[diagnostic::on_unimplemented(
    message = "`#[in]` buffers are `*const T`, not `{Self}`",
    label = "use #[out]/#[inout] for a `*mut T`"
)]
pub trait ConstPtr {
    /// Bytes per element: `size_of::<T>()`.
    const ELEM: usize;
}

impl<T> ConstPtr for *const T {
    const ELEM: usize = core::mem::size_of::<T>();
}

/// A pointer an `#[out]` or `#[inout]` buffer annotation accepts: `*mut T`.
#[diagnostic::on_unimplemented(
    message = "`#[out]`/`#[inout]` buffers are `*mut T`, not `{Self}`",
    label = "use #[in] for a `*const T`"
)]
pub trait MutPtr {
    /// Bytes per element: `size_of::<T>()`.
    const ELEM: usize;
}

impl<T> MutPtr for *mut T {
    const ELEM: usize = core::mem::size_of::<T>();
}

/// A pointer an `#[outlen]` annotation accepts: `*mut usize` or `*mut u64`.
#[diagnostic::on_unimplemented(
    message = "`#[outlen]` arguments are `*mut usize` or `*mut u64`, not `{Self}`",
    label = "the callee stores a 64-bit length here"
)]
pub trait LenPtr {}

impl LenPtr for *mut usize {}
impl LenPtr for *mut u64 {}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Checks that an integer type is written by its own name (`written` is `stringify!` of
/// the type); 0.
pub const fn int<T: Scalar>(written: &str) -> usize {
    assert!(
        str_eq(written, T::NAME),
        "export!: write integer types as u8..u64, i8..i64, usize or isize, not through an \
         alias or a path: the signature records the type as written"
    );
    0
}

/// Element size of an `#[in]` buffer.
pub const fn in_elem<T: ConstPtr>() -> usize {
    T::ELEM
}

/// Element size of an `#[out]`/`#[inout]` buffer.
pub const fn mut_elem<T: MutPtr>() -> usize {
    T::ELEM
}

/// The position of an `#[outlen]`'s buffer, `buffer`.
pub const fn outlen<T: LenPtr>(buffer: usize) -> usize {
    buffer
}

/// The position of argument `name` among `names`.
pub const fn position(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        if str_eq(names[i], name) {
            return i;
        }
        i += 1;
    }
    panic!(
        "export!: an annotation names an argument the function does not have: #[in(len)], \
         #[out(len)] and #[inout(len)] name the argument holding the count, #[outlen(buf)] \
         the buffer"
    )
}

/// What `export!` knows about one argument, for [`check`].
#[derive(Clone, Copy)]
pub struct ArgDesc {
    kind: u8,
    target: usize,
    elem: usize,
}

const INT: u8 = 0;
const IN: u8 = 1;
const OUT: u8 = 2;
const INOUT: u8 = 3;
const OUTLEN: u8 = 4;
const FIXED: usize = usize::MAX;

/// Kinds of buffer for [`ArgDesc::buffer`].
pub mod dir {
    /// `#[in]`.
    pub const IN: u8 = super::IN;
    /// `#[out]`.
    pub const OUT: u8 = super::OUT;
    /// `#[inout]`.
    pub const INOUT: u8 = super::INOUT;
}

impl ArgDesc {
    /// An integer.
    pub const fn int() -> ArgDesc {
        ArgDesc {
            kind: INT,
            target: 0,
            elem: 0,
        }
    }

    /// A buffer of direction `dir` ([`dir`]) whose count is argument `count`, in elements
    /// of `elem` bytes.
    pub const fn counted(dir: u8, count: usize, elem: usize) -> ArgDesc {
        ArgDesc {
            kind: dir,
            target: count,
            elem,
        }
    }

    /// A buffer of one `size`-byte pointee.
    pub const fn fixed(dir: u8, size: usize) -> ArgDesc {
        ArgDesc {
            kind: dir,
            target: FIXED,
            elem: size,
        }
    }

    /// An out-length of buffer argument `buffer`.
    pub const fn outlen(buffer: usize) -> ArgDesc {
        ArgDesc {
            kind: OUTLEN,
            target: buffer,
            elem: 0,
        }
    }
}

/// The rules of modules/ABI.md, "Export signatures", as compile-time errors: at most 6
/// arguments and 4 buffers; a count names an integer argument; an element or pointee size is
/// 1 to 65536 bytes; an `#[outlen]` names an `#[out]`/`#[inout]` buffer, at most one each.
pub const fn check(args: &[ArgDesc]) {
    assert!(
        args.len() <= 6,
        "export!: at most 6 arguments (the integer argument registers)"
    );
    let mut buffers = 0;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        match a.kind {
            IN | OUT | INOUT => {
                buffers += 1;
                assert!(
                    a.elem >= 1 && a.elem <= 65536,
                    "export!: a buffer's element (or pointee) size must be 1 to 65536 bytes"
                );
                if a.target != FIXED {
                    assert!(
                        args[a.target].kind == INT,
                        "export!: a buffer's count must be an integer argument"
                    );
                }
            }
            OUTLEN => {
                let b = args[a.target];
                assert!(
                    b.kind == OUT || b.kind == INOUT,
                    "export!: #[outlen(buf)] must name an #[out] or #[inout] buffer"
                );
                let mut j = 0;
                while j < i {
                    assert!(
                        !(args[j].kind == OUTLEN && args[j].target == a.target),
                        "export!: a buffer has at most one #[outlen]"
                    );
                    j += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    assert!(
        buffers <= 4,
        "export!: at most 4 buffer arguments (one lease each)"
    );
}
