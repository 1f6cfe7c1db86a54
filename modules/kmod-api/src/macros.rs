//! The declarations a module makes: [`module!`](crate::module) and [`export!`](crate::export).

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

/// Exports symbols to other modules, like Linux's `EXPORT_SYMBOL`: for each `X` a global
/// `__ksymtab_X` in section `__ksymtab` (`{ value: &X, name: "X" }`, ABI.md "Exports").
///
/// Either wrap the definitions (they get `#[no_mangle]`):
///
/// ```ignore
/// kmod_api::export! {
///     /// CRC-32 of `len` bytes at `buf`.
///     pub unsafe extern "C" fn crc32_compute(buf: *const u8, len: usize) -> u32 { ... }
/// }
/// ```
///
/// or name `#[no_mangle]` items defined elsewhere: `export!(fn a, fn b, static TABLE);`.
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
        pub extern "C" fn $name:ident ($($args:tt)*) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($args)*) $(-> $ret)? $body
        $crate::__ksymtab!($name, $name as *const ());
        $crate::export!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        pub unsafe extern "C" fn $name:ident ($($args:tt)*) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($args)*) $(-> $ret)? $body
        $crate::__ksymtab!($name, $name as *const ());
        $crate::export!($($rest)*);
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
