//! Why a module operation failed: the same cases, errnos and messages as the monolithic
//! kernel's `ModError` (`guest-kernel/src/module/mod.rs`), so that a user sees the same
//! refusal in both configurations, plus the cases only a module server has.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use kmodlab_abi::channel::{FaultPhase, ModuleFault, ModuleState, WATCHDOG_VECTOR, vector_name};
use kmodlab_abi::params::ParamError;

/// Linux's error numbers the manager reports (positive).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: u64 = 1;
    /// No such entry.
    pub const ENOENT: u64 = 2;
    /// Not a loadable module.
    pub const ENOEXEC: u64 = 8;
    /// Out of memory.
    pub const ENOMEM: u64 = 12;
    /// Bad address.
    pub const EFAULT: u64 = 14;
    /// Busy (in use, loading or unloading).
    pub const EBUSY: u64 = 16;
    /// Already exists.
    pub const EEXIST: u64 = 17;
    /// Invalid argument.
    pub const EINVAL: u64 = 22;
    /// No space left (in a table).
    pub const ENOSPC: u64 = 28;
    /// Broken pipe: the module's server died.
    pub const EPIPE: u64 = 32;
    /// Not implemented.
    pub const ENOSYS: u64 = 38;
    /// Timed out: the module's server was stopped by the watchdog.
    pub const ETIMEDOUT: u64 = 110;
    /// Key was rejected by service (no valid signature while signatures are enforced).
    pub const EKEYREJECTED: u64 = 129;
}

/// Why a module operation failed. Each variant names the module and the culprit; [`errno`]
/// (the method) gives the number the system call returns.
#[derive(Debug, Clone, PartialEq)]
pub enum ModError {
    /// The caller lacks CAP_SYS_MODULE.
    Permission,
    /// The file is not a loadable module.
    Invalid(kmod_loader::Error),
    /// The image could not be read from the caller (its lease).
    BadImage,
    /// The module has no `name=` in `.modinfo`.
    NoName,
    /// A module of that name is loaded already.
    AlreadyLoaded(String),
    /// The module is being loaded or unloaded by another request.
    Busy {
        /// The module.
        name: String,
        /// Its state.
        state: ModuleState,
    },
    /// No module of that name is loaded.
    NotLoaded(String),
    /// No such module file in the archive.
    NotInArchive(String),
    /// Other modules use it.
    InUse {
        /// The module.
        name: String,
        /// Its users.
        users: Vec<String>,
    },
    /// The module has no `cleanup_module`, so it cannot be unloaded.
    NoExit(String),
    /// A parameter the module does not declare, or a value of the wrong form.
    Param {
        /// The module.
        module: String,
        /// What is wrong.
        error: ParamError,
    },
    /// Out of memory (the manager's, or frames for the server).
    NoMemory {
        /// The module.
        module: String,
    },
    /// `init_module` returned an error.
    InitFailed {
        /// The module.
        module: String,
        /// Its status.
        code: i32,
    },
    /// Unloading is off (CONFIG_MODULE_UNLOAD off).
    NotSupported,
    /// Signatures are enforced and the module has no valid one (`module_sig_check`).
    SignatureRequired {
        /// Linux's words: "unsigned module", "module with unavailable key", …
        reason: &'static str,
        /// What the check found.
        cause: kmod_sig::VerifyError,
    },
    /// The module's signature is malformed or does not match (refused whatever the setting).
    BadSignature(kmod_sig::VerifyError),
    /// Microkernel: the module imports an export whose signature is not declared, so no call
    /// stub can marshal a call to it (it loads in the monolithic kernel, where a call is a
    /// plain function call).
    NoSignature {
        /// The importing module.
        module: String,
        /// The export.
        symbol: String,
        /// The module exporting it.
        provider: String,
    },
    /// Microkernel: the module's export signatures (`.kmod_exportsig`) are unreadable or do
    /// not cover its exports, so no other module's server could call them (it loads in the
    /// monolithic kernel, where a call is a plain function call).
    ExportSignatures {
        /// The module.
        module: String,
        /// What is wrong (kmod_calls' explanation).
        reason: String,
    },
    /// Microkernel: the module's server died running its init or exit.
    ServerDied {
        /// The module.
        module: String,
        /// How.
        fault: ModuleFault,
    },
    /// Microkernel: the module's server died earlier; the record stays (faulted) until it is
    /// removed.
    Faulted(String),
    /// Microkernel: a task system call failed while the manager built the server.
    Server {
        /// The module.
        module: String,
        /// What the manager was doing.
        step: &'static str,
        /// The errno the kernel gave.
        errno: u64,
    },
}

impl ModError {
    /// The errno a system call returns for this error.
    pub fn errno(&self) -> u64 {
        match self {
            ModError::Permission => errno::EPERM,
            ModError::Invalid(e) => match e.kind() {
                kmod_loader::ErrorKind::UnknownSymbol => errno::ENOENT,
                kmod_loader::ErrorKind::OutOfMemory => errno::ENOMEM,
                _ => errno::ENOEXEC,
            },
            ModError::NoName | ModError::NoSignature { .. } | ModError::ExportSignatures { .. } => {
                errno::ENOEXEC
            }
            ModError::BadImage => errno::EFAULT,
            ModError::AlreadyLoaded(_) => errno::EEXIST,
            ModError::Busy { .. }
            | ModError::InUse { .. }
            | ModError::NoExit(_)
            | ModError::Faulted(_) => errno::EBUSY,
            ModError::NotLoaded(_) | ModError::NotInArchive(_) => errno::ENOENT,
            ModError::Param { error, .. } => match error {
                ParamError::Unknown { .. } => errno::ENOENT,
                ParamError::BadValue { .. } => errno::EINVAL,
            },
            ModError::NoMemory { .. } => errno::ENOMEM,
            ModError::InitFailed { code, .. } => {
                if *code < 0 {
                    u64::from(code.unsigned_abs())
                } else {
                    errno::EINVAL
                }
            }
            ModError::NotSupported => errno::ENOSYS,
            ModError::SignatureRequired { .. } => errno::EKEYREJECTED,
            ModError::BadSignature(e) => u64::from(e.errno().unsigned_abs()),
            ModError::ServerDied { fault, .. } => {
                if fault.vector == WATCHDOG_VECTOR {
                    errno::ETIMEDOUT
                } else {
                    errno::EPIPE
                }
            }
            ModError::Server { errno: e, .. } => *e,
        }
    }
}

/// How a fault reads in a message: `#PF page fault at offset 0x1a` (or at an address outside
/// the module).
pub struct FaultText<'a>(pub &'a ModuleFault);

impl fmt::Display for FaultText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fault = self.0;
        match fault.vector {
            WATCHDOG_VECTOR => write!(f, "stopped by the watchdog (it ran too long)")?,
            kmodlab_abi::channel::EXITED_VECTOR => write!(f, "its server runtime gave up")?,
            v => write!(f, "{} (vector {v})", vector_name(v))?,
        }
        match fault.offset {
            Some(o) => write!(f, " at offset {o:#x}"),
            None => write!(f, " at {:#x}, outside the module", fault.rip),
        }
    }
}

impl fmt::Display for ModError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModError::Permission => write!(f, "module management needs CAP_SYS_MODULE"),
            ModError::Invalid(e) => write!(f, "{e}"),
            ModError::NoName => write!(f, "module has no name= in .modinfo"),
            ModError::BadImage => write!(f, "the module image is not in the caller's memory"),
            ModError::AlreadyLoaded(n) => write!(f, "module {n} is already loaded"),
            ModError::Busy { name, state } => {
                write!(f, "module {name} is busy ({})", state.name())
            }
            ModError::NotLoaded(n) => write!(f, "Module {n} is not currently loaded"),
            ModError::NotInArchive(n) => write!(f, "module {n} is not in the module archive"),
            ModError::InUse { name, users } => {
                write!(f, "Module {name} is in use by: {}", users.join(" "))
            }
            ModError::NoExit(n) => {
                write!(f, "module {n} has no cleanup_module and cannot be unloaded")
            }
            ModError::Param { module, error } => write!(f, "{module}: {error}"),
            ModError::NoMemory { module } => write!(f, "{module}: out of memory"),
            ModError::InitFailed { module, code } => {
                write!(f, "{module}: init_module failed with {code}")
            }
            ModError::NotSupported => write!(
                f,
                "module unloading is not supported (module manager started without module.unload)"
            ),
            ModError::SignatureRequired { reason, cause } => write!(
                f,
                "Loading of {reason} is rejected (module.sig_enforce=1): {cause}"
            ),
            ModError::BadSignature(cause) => {
                write!(f, "module signature verification failed: {cause}")
            }
            ModError::NoSignature {
                module,
                symbol,
                provider,
            } => write!(
                f,
                "module `{module}`: `{symbol}` (exported by {provider}) has no declared signature, \
                 so a module server cannot call it; declare it with its export (modules/ABI.md)"
            ),
            ModError::ExportSignatures { module, reason } => {
                write!(f, "module `{module}`: {reason}")
            }
            ModError::ServerDied { module, fault } => {
                let what = match fault.during {
                    FaultPhase::Init => "init_module",
                    FaultPhase::Exit => "cleanup_module",
                    FaultPhase::Call => "a call",
                };
                write!(
                    f,
                    "{module}: {what} faulted: {}; its server is gone",
                    FaultText(fault)
                )
            }
            ModError::Faulted(n) => write!(
                f,
                "module {n} faulted and is not running (rmmod {n} to remove it)"
            ),
            ModError::Server {
                module,
                step,
                errno,
            } => write!(
                f,
                "{module}: building its server failed: {step}: errno {errno}"
            ),
        }
    }
}

/// What a failure becomes on the wire to the kernel.
impl From<&ModError> for kmodlab_ipc::mgr::Failure {
    fn from(e: &ModError) -> Self {
        kmodlab_ipc::mgr::Failure {
            errno: e.errno(),
            message: alloc::format!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn the_monolithic_kernels_messages_and_errnos() {
        // guest-kernel/src/module/mod.rs, ModError's Display and errno, case by case.
        let cases: [(ModError, u64, &str); 10] = [
            (
                ModError::Permission,
                1,
                "module management needs CAP_SYS_MODULE",
            ),
            (
                ModError::AlreadyLoaded("hello".into()),
                17,
                "module hello is already loaded",
            ),
            (
                ModError::Busy {
                    name: "autoload".into(),
                    state: ModuleState::Coming,
                },
                16,
                "module autoload is busy (Loading)",
            ),
            (
                ModError::NotLoaded("nosuch".into()),
                2,
                "Module nosuch is not currently loaded",
            ),
            (
                ModError::NotInArchive("nosuch".into()),
                2,
                "module nosuch is not in the module archive",
            ),
            (
                ModError::InUse {
                    name: "kvstore".into(),
                    users: vec!["kvclient".into()],
                },
                16,
                "Module kvstore is in use by: kvclient",
            ),
            (
                ModError::InitFailed {
                    module: "params".into(),
                    code: -22,
                },
                22,
                "params: init_module failed with -22",
            ),
            (
                ModError::Param {
                    module: "params".into(),
                    error: ParamError::Unknown {
                        param: "bogus".into(),
                    },
                },
                2,
                "params: unknown parameter 'bogus'",
            ),
            (
                ModError::NoMemory {
                    module: "big".into(),
                },
                12,
                "big: out of memory",
            ),
            (ModError::NoName, 8, "module has no name= in .modinfo"),
        ];
        for (e, errno, text) in cases {
            assert_eq!(e.errno(), errno, "{e:?}");
            assert_eq!(e.to_string(), text);
        }
        // An init returning a positive value is still a failure, as EINVAL.
        let odd = ModError::InitFailed {
            module: "m".into(),
            code: 3,
        };
        assert_eq!(odd.errno(), 22);
    }

    #[test]
    fn server_faults_name_the_step_the_vector_and_the_offset() {
        let fault = ModuleFault {
            during: FaultPhase::Init,
            vector: 14,
            rip: 0x4000_001a,
            cr2: 0,
            error_code: 4,
            offset: Some(0x1a),
        };
        let e = ModError::ServerDied {
            module: "faulty".into(),
            fault,
        };
        assert_eq!(e.errno(), 32);
        assert_eq!(
            e.to_string(),
            "faulty: init_module faulted: #PF page fault (vector 14) at offset 0x1a; its server \
             is gone"
        );
        let stopped = ModError::ServerDied {
            module: "faulty".into(),
            fault: ModuleFault {
                during: FaultPhase::Exit,
                vector: WATCHDOG_VECTOR,
                offset: None,
                rip: 0x1000_0040,
                ..fault
            },
        };
        assert_eq!(stopped.errno(), 110);
        assert_eq!(
            stopped.to_string(),
            "faulty: cleanup_module faulted: stopped by the watchdog (it ran too long) at \
             0x10000040, outside the module; its server is gone"
        );
        let f = kmodlab_ipc::mgr::Failure::from(&e);
        assert_eq!((f.errno, f.message), (32, e.to_string()));
    }
}
