//! The declarations a module makes: [`module!`](crate::module) and [`export!`](crate::export)
//! (with its call signatures, see [`sig`](crate::sig)).

/// Declares a module: its `.modinfo`, parameters, and init/exit entry points (ABI.md).
///
/// Fields come in this order; `author`, `description`, `version`, `exit` and `params` may be
/// left out (a module without `exit` cannot be unloaded, as in Linux).
///
/// ```ignore
/// kmod_api::module! {
///     name: "params",
///     license: "GPL",
///     author: "kmodlab",
///     description: "Shows every parameter type",
///     version: "1.0",
///     init: init,          // fn init() -> Result<(), kmod_api::Errno>
///     exit: exit,          // fn exit()
///     params: {
///         count: int = 3, "how many greetings (0..=10)";
///         loud: bool = false, "shout";
///         greeting: charp = "hello", "what to say";
///     },
/// }
/// // The module's code reads them through `params::count.get()` (i64),
/// // `params::loud.get()` (bool) and `params::greeting.get()` (&'static str).
/// ```
///
/// It emits:
/// - `init_module` in `.init.text` (returns 0, or `-errno` from init's `Err`) and
///   `cleanup_module` in `.exit.text`;
/// - `.modinfo` strings, in this order: `version=`, `license=`, `description=`, `author=`,
///   per parameter (last declared first, as in Linux modules) `parm=NAME:DESCRIPTION` and
///   `parmtype=NAME:TYPE`, then `name=`;
/// - for each parameter a global `__kmod_param_NAME` in `.data` holding its default (`int`:
///   i64, `bool`: u8, `charp`: `{ptr, len}`), reachable as `params::NAME`;
/// - the module's panic handler (message on the log, then `ud2`) and the `println!` prefix.
#[macro_export]
macro_rules! module {
    (
        name: $name:literal,
        license: $license:literal,
        $(author: $author:literal,)?
        $(description: $description:literal,)?
        $(version: $version:literal,)?
        init: $init:path,
        $(exit: $exit:path,)?
        $(params: { $($params:tt)* } $(,)?)?
    ) => {
        /// The `println!` prefix of this module.
        #[doc(hidden)]
        pub(crate) const __KMOD_PREFIX: &str = concat!($name, ": ");

        const _: () = {
            // One static, so that the strings keep this order in the file (separate statics
            // may be laid out in any order): Linux's, as its modinfo prints them.
            const HEAD: &[&str] = &[
                $(concat!("version=", $version),)?
                concat!("license=", $license),
                $(concat!("description=", $description),)?
                $(concat!("author=", $author),)?
            ];
            const PARAMS: &[&str] = &$crate::__kmod_param_info!([] $($($params)*)?);
            const TAIL: &[&str] = &[concat!("name=", $name)];
            const LEN: usize = $crate::abi::modinfo_len(&[HEAD, PARAMS, TAIL]);
            #[used]
            #[unsafe(link_section = ".modinfo")]
            static MODINFO: [u8; LEN] = $crate::abi::modinfo_bytes(&[HEAD, PARAMS, TAIL]);
        };

        /// The module's parameters (see `kmod_api::module!`).
        #[allow(non_upper_case_globals, dead_code)]
        pub mod params {
            $($crate::__kmod_params!($($params)*);)?
        }

        /// Entry point called by the kernel after loading (ABI.md): 0 or `-errno`.
        #[unsafe(no_mangle)]
        #[unsafe(link_section = ".init.text")]
        pub extern "C" fn init_module() -> i32 {
            let result: ::core::result::Result<(), $crate::Errno> = $init();
            match result {
                Ok(()) => 0,
                Err(e) => e.to_ret(),
            }
        }

        $(
            /// Entry point called by the kernel before unloading (ABI.md).
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".exit.text")]
            pub extern "C" fn cleanup_module() {
                $exit()
            }
        )?

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn __kmod_panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::print::__panic(__KMOD_PREFIX, info)
        }
    };
}

/// The `.modinfo` strings of the parameters, in reverse declaration order, each as
/// `parm=` then `parmtype=`: the order Linux modules have, for which modinfo prints the
/// parameters in declaration order.
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_param_info {
    ([$($acc:expr,)*]) => { [$($acc,)*] };
    ([$($acc:expr,)*] $name:ident : $type:ident = $default:expr, $desc:literal; $($rest:tt)*) => {
        $crate::__kmod_param_info!([
            concat!("parm=", stringify!($name), ":", $desc),
            concat!("parmtype=", stringify!($name), ":", stringify!($type)),
            $($acc,)*
        ] $($rest)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_params {
    () => {};
    ($name:ident : int = $default:expr, $desc:literal; $($rest:tt)*) => {
        $crate::__kmod_param!($name, IntParam, $default, $desc);
        $crate::__kmod_params!($($rest)*);
    };
    ($name:ident : bool = $default:expr, $desc:literal; $($rest:tt)*) => {
        $crate::__kmod_param!($name, BoolParam, $default, $desc);
        $crate::__kmod_params!($($rest)*);
    };
    ($name:ident : charp = $default:expr, $desc:literal; $($rest:tt)*) => {
        $crate::__kmod_param!($name, CharpParam, $default, $desc);
        $crate::__kmod_params!($($rest)*);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_param {
    ($name:ident, $storage:ident, $default:expr, $desc:literal) => {
        #[doc = $desc]
        #[used]
        #[unsafe(export_name = concat!("__kmod_param_", stringify!($name)))]
        #[unsafe(link_section = ".data")]
        pub static $name: $crate::abi::$storage = $crate::abi::$storage::new($default);
    };
}

/// Exports functions to other modules, like Linux's `EXPORT_SYMBOL`, with their call
/// signatures (ABI.md, "Exports" and "Export signatures").
///
/// Wrap the definitions (they get `#[no_mangle]`); pointer arguments carry an annotation
/// that says what they point at, integer arguments and the return type need none:
///
/// ```ignore
/// kmod_api::export! {
///     /// CRC-32 of `len` bytes at `buf`.
///     pub unsafe extern "C" fn crc32_compute(#[in(len)] buf: *const u8, len: usize) -> u32 { ... }
///
///     /// Copies the value of `key` into `buf`, its length into `*len`.
///     pub unsafe extern "C" fn kvstore_get(
///         #[in(klen)] key: *const u8,
///         klen: usize,
///         #[out(cap)] buf: *mut u8,
///         cap: usize,
///         #[outlen(buf)] len: *mut usize,
///     ) -> i32 { ... }
/// }
/// ```
///
/// | annotation | argument | the callee... |
/// |---|---|---|
/// | none | `u8`..`u64`, `i8`..`i64`, `usize`, `isize` | gets the value |
/// | `#[in(n)]` | `*const T` | reads `n` elements of `T` (`n`: an integer argument) |
/// | `#[out(n)]` | `*mut T` | writes `n` elements of `T` |
/// | `#[inout(n)]` | `*mut T` | reads and writes `n` elements of `T` |
/// | `#[in]`, `#[out]`, `#[inout]` | `*const T` / `*mut T` | reads/writes one `T` |
/// | `#[outlen(buf)]` | `*mut usize` | stores how many elements of `#[out]` buffer `buf` it filled |
///
/// For each function `X` it emits the `__ksymtab_X` entry (`{ value: &X, name: "X" }`) and
/// one record `X(ARGS) -> RET` in the non-loaded section `.kmod_exportsig`, written from the
/// types: `crc32_compute(in[@1], usize) -> u32`. A pointer without an annotation, a type that
/// is not one of the integers above (an alias such as `c_int` included), an annotation on
/// the wrong kind of pointer or naming a missing argument are compile errors.
///
/// `export!(fn a, fn b, static TABLE);` names `#[no_mangle]` items defined elsewhere and
/// exports them **without** a signature: they load in the monolithic kernel, and the
/// microkernel's module manager refuses the module (no other server could call them).
#[macro_export]
macro_rules! export {
    () => {};
    ($(fn $name:ident),+ $(,)?) => {
        $($crate::__ksymtab!($name, $name as *const ());)+
    };
    (static $name:ident $(,)?) => {
        $crate::__ksymtab!($name, &raw const $name as *const ());
    };
    (
        $(#[$meta:meta])*
        pub extern "C" fn $name:ident ($($params:tt)*) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        $crate::__kmod_export_fn!(@names [$(#[$meta])*] [] $name [$($ret)?] $body; $($params)*);
        $crate::export!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        pub unsafe extern "C" fn $name:ident ($($params:tt)*) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        $crate::__kmod_export_fn!(@names [$(#[$meta])*] [unsafe] $name [$($ret)?] $body; $($params)*);
        $crate::export!($($rest)*);
    };
}

/// One exported function: the definition, its `__ksymtab` entry, the compile-time checks of
/// its signature and its `.kmod_exportsig` record. In two steps, because the record's
/// argument positions need the list of all argument names inside the per-argument
/// repetition.
///
/// The record is one `global_asm!` block (so that nothing can interleave with it) that
/// switches to the section, writes the text with `.ascii` and ends it with a NUL; numbers
/// (argument positions, element sizes) are `const` operands, which rustc substitutes as
/// decimal text. Every argument uses exactly three operands, so the template and operand
/// lists line up whatever the kinds; unused ones sit in an `.if 0` block.
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_export_fn {
    (@names [$($meta:tt)*] [$($unsafety:tt)?] $name:ident [$($ret:ty)?] $body:block;
        $( $(#[$ann:ident $(($r:ident))?])? $arg:ident : $ty:ty ),* $(,)?
    ) => {
        $crate::__kmod_export_fn!(@emit [$($meta)*] [$($unsafety)?] $name [$($ret)?] $body
            [$(stringify!($arg)),*];
            $( $(#[$ann $(($r))?])? $arg : $ty ),*
        );
    };
    (@emit [$($meta:tt)*] [$($unsafety:tt)?] $name:ident [$($ret:ty)?] $body:block $names:tt;
        $(
            $(#[$ann0:ident $(($r0:ident))?])? $arg0:ident : $ty0:ty
            $(, $(#[$ann:ident $(($r:ident))?])? $arg:ident : $ty:ty)*
        )?
    ) => {
        $($meta)*
        #[unsafe(no_mangle)]
        pub $($unsafety)? extern "C" fn $name($($arg0: $ty0 $(, $arg: $ty)*)?) $(-> $ret)? $body

        $crate::__ksymtab!($name, $name as *const ());

        const _: () = $crate::sig::check(&[$(
            $crate::__kmod_sig_desc!([$($ann0 $(($r0))?)?] $ty0; $names)
            $(, $crate::__kmod_sig_desc!([$($ann $(($r))?)?] $ty; $names))*
        )?]);

        ::core::arch::global_asm!(
            ".pushsection .kmod_exportsig,\"\",@progbits",
            concat!(".ascii \"", stringify!($name), "(\""),
            $(
                $crate::__kmod_sig_tmpl!([$($ann0 $(($r0))?)?] $ty0),
                $(concat!(".ascii \", \"\n", $crate::__kmod_sig_tmpl!([$($ann $(($r))?)?] $ty)),)*
            )?
            $crate::__kmod_sig_ret_tmpl!([$($ret)?]),
            ".byte 0",
            ".popsection",
            $(
                const $crate::__kmod_sig_op!(0; [$($ann0 $(($r0))?)?] $ty0; $names),
                const $crate::__kmod_sig_op!(1; [$($ann0 $(($r0))?)?] $ty0; $names),
                const $crate::__kmod_sig_op!(2; [$($ann0 $(($r0))?)?] $ty0; $names),
                $(
                    const $crate::__kmod_sig_op!(0; [$($ann $(($r))?)?] $ty; $names),
                    const $crate::__kmod_sig_op!(1; [$($ann $(($r))?)?] $ty; $names),
                    const $crate::__kmod_sig_op!(2; [$($ann $(($r))?)?] $ty; $names),
                )*
            )?
            const $crate::__kmod_sig_ret_op!([$($ret)?]),
        );
    };
}

/// The record text of one argument (three `{}`: see `__kmod_export_fn`).
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_sig_tmpl {
    ([] $ty:ty) => {
        concat!(
            ".ascii \"",
            stringify!($ty),
            "\"\n.if 0\n.ascii \"{}{}{}\"\n.endif"
        )
    };
    ([outlen ($r:ident)] $($ty:ty)?) => {
        ".ascii \"outlen[@{}]\"\n.if 0\n.ascii \"{}{}\"\n.endif"
    };
    ([$dir:ident ($r:ident)] $($ty:ty)?) => {
        concat!(
            ".ascii \"",
            $crate::__kmod_sig_dir!($dir),
            "[@{}\"\n",
            ".if {} - 1\n.ascii \"*{}\"\n.endif\n.ascii \"]\""
        )
    };
    ([outlen] $($ty:ty)?) => {
        compile_error!("export!: #[outlen] names its buffer: #[outlen(buf)]")
    };
    ([$dir:ident] $($ty:ty)?) => {
        concat!(
            ".ascii \"",
            $crate::__kmod_sig_dir!($dir),
            "[{}]\"\n",
            ".if 0\n.ascii \"{}{}\"\n.endif"
        )
    };
}

/// An annotation's keyword in the record; anything else is a compile error.
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_sig_dir {
    (in) => {
        "in"
    };
    (out) => {
        "out"
    };
    (inout) => {
        "inout"
    };
    (outlen) => {
        "outlen"
    };
    ($other:ident) => {
        compile_error!(concat!(
            "export!: unknown annotation #[",
            stringify!($other),
            "]; pointer arguments take \
             #[in(len)], #[out(len)], #[inout(len)], #[in], #[out], #[inout] or #[outlen(buf)]"
        ))
    };
}

/// Operand `N` (0, 1, 2) of one argument: checks its type, and gives the numbers its text
/// needs.
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_sig_op {
    (0; [] $ty:ty; $names:tt) => {
        $crate::sig::int::<$ty>(stringify!($ty))
    };
    (0; [outlen ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::outlen::<$ty>($crate::sig::position(&$names, stringify!($r)))
    };
    (0; [$dir:ident ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::position(&$names, stringify!($r))
    };
    (0; [in] $ty:ty; $names:tt) => {
        $crate::sig::in_elem::<$ty>()
    };
    (0; [$dir:ident] $ty:ty; $names:tt) => {
        $crate::sig::mut_elem::<$ty>()
    };
    (1; [in ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::in_elem::<$ty>()
    };
    (1; [outlen ($r:ident)] $ty:ty; $names:tt) => {
        0
    };
    (1; [$dir:ident ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::mut_elem::<$ty>()
    };
    (2; [in ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::in_elem::<$ty>()
    };
    (2; [outlen ($r:ident)] $ty:ty; $names:tt) => {
        0
    };
    (2; [$dir:ident ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::mut_elem::<$ty>()
    };
    ($n:literal; [$($ann:tt)*] $ty:ty; $names:tt) => {
        0
    };
}

/// What [`sig::check`](crate::sig::check) needs to know of one argument.
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_sig_desc {
    ([] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::int()
    };
    ([outlen ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::outlen($crate::sig::position(&$names, stringify!($r)))
    };
    ([in ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::counted(
            $crate::sig::dir::IN,
            $crate::sig::position(&$names, stringify!($r)),
            $crate::sig::in_elem::<$ty>(),
        )
    };
    ([out ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::counted(
            $crate::sig::dir::OUT,
            $crate::sig::position(&$names, stringify!($r)),
            $crate::sig::mut_elem::<$ty>(),
        )
    };
    ([inout ($r:ident)] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::counted(
            $crate::sig::dir::INOUT,
            $crate::sig::position(&$names, stringify!($r)),
            $crate::sig::mut_elem::<$ty>(),
        )
    };
    ([in] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::fixed($crate::sig::dir::IN, $crate::sig::in_elem::<$ty>())
    };
    ([out] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::fixed($crate::sig::dir::OUT, $crate::sig::mut_elem::<$ty>())
    };
    ([inout] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::fixed($crate::sig::dir::INOUT, $crate::sig::mut_elem::<$ty>())
    };
    ([$($other:tt)*] $ty:ty; $names:tt) => {
        $crate::sig::ArgDesc::int()
    };
}

/// The record's end: `) -> RET` (one `{}`).
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_sig_ret_tmpl {
    ([]) => {
        ".ascii \") -> void\"\n.if 0\n.ascii \"{}\"\n.endif"
    };
    ([$ret:ty]) => {
        concat!(
            ".ascii \") -> ",
            stringify!($ret),
            "\"\n.if 0\n.ascii \"{}\"\n.endif"
        )
    };
}

/// The return type's operand: checks it is an integer written by name.
#[doc(hidden)]
#[macro_export]
macro_rules! __kmod_sig_ret_op {
    ([]) => {
        0
    };
    ([$ret:ty]) => {
        $crate::sig::int::<$ret>(stringify!($ret))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ksymtab {
    ($name:ident, $addr:expr) => {
        const _: () = {
            const NAME: &str = stringify!($name);
            #[unsafe(link_section = "__ksymtab_strings")]
            static STR: [u8; NAME.len() + 1] = $crate::abi::cstr_array(NAME);
            #[used]
            #[unsafe(export_name = concat!("__ksymtab_", stringify!($name)))]
            #[unsafe(link_section = "__ksymtab")]
            static KSYM: $crate::abi::KernelSymbol = $crate::abi::KernelSymbol {
                value: $addr,
                name: STR.as_ptr(),
            };
        };
    };
}
