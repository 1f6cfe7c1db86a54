//! The monolithic module subsystem: Linux's `init_module` → `load_module` and
//! `delete_module` → `free_module`, as `shared/seed-lkm-anatomy.txt` describes them, on the
//! loader core of `crates/kmod-loader`.
//!
//! A module is loaded into the kernel's module area (within ±2 GiB of the kernel, so its
//! `-mcmodel=kernel` code can reach kernel exports), runs in supervisor mode, and calls the
//! kernel API (`modules/kmod-api`) directly. Its lifecycle is COMING → LIVE → GOING, every
//! change announced on a notifier chain ([`notify`]). Modules that resolve symbols exported
//! by another module depend on it (`uses`/`used_by`, the seed's `modules_which_use_me`) and
//! hold a reference on it; a module in use cannot be removed.
//!
//! Locking: the registry lock is never held while module code runs (`init_module`,
//! `cleanup_module`, service handlers), because module code calls back into the kernel API
//! — including `kmod_request_module`, which loads other modules. A module still COMING is
//! visible to others only as "busy", and the names it exports are reserved from the moment it
//! is announced (Linux's `verify_exported_symbols`): a module loaded meanwhile that exports one
//! of them is refused, instead of the first module being discarded after its init succeeded.

pub(crate) mod area;
mod kapi;
mod load;
pub mod notify;
mod params;
mod services;
pub mod signature;
#[cfg(feature = "module-unload")]
mod unload;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use kmod_loader::{ExportTable, ExportedSymbol, ProviderId};
use kmodlab_abi::channel::{Footprint, LoadCycles, ModuleRecord, ModuleState};
use spin::Mutex;

pub use load::{configure as configure_frames, init_module, insmod_from_archive, request_module};

use guest_rt::errno;

/// Identifies a loaded module; 0 is the kernel itself (as a symbol provider and as the
/// context of code that is not a module's).
pub type ModuleId = u64;
/// The kernel, as a provider and as a caller.
pub const KERNEL: ModuleId = 0;

/// One region of a module (core or init): pages of the module area.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    /// First address.
    pub base: u64,
    /// Pages mapped.
    pub pages: u64,
}

/// A loaded (or loading) module.
pub struct Module {
    pub id: ModuleId,
    pub name: String,
    pub state: ModuleState,
    pub core: Option<Region>,
    pub init: Option<Region>,
    /// Bytes of the init region when loaded (kept after it is freed, for accounting).
    pub init_bytes: u64,
    pub core_bytes: u64,
    pub exports: Vec<ExportedSymbol>,
    pub modinfo: Vec<(String, String)>,
    /// Address of `cleanup_module`, if the module has one.
    pub exit: Option<u64>,
    /// Modules this one resolved symbols from.
    pub uses: Vec<ModuleId>,
    /// Modules that resolved symbols from this one (`modules_which_use_me`).
    pub used_by: Vec<ModuleId>,
    /// References held on this module (one per user).
    pub refcount: u32,
    /// Kernel copies of `charp` parameters, pointed to from the module's data.
    pub param_strings: Vec<alloc::boxed::Box<[u8]>>,
    pub relocations: u64,
    pub cycles: LoadCycles,
    /// Page-table pages allocated while mapping its regions.
    pub page_table_pages: u64,
}

impl Module {
    /// Heap bytes this record uses (what `lsmod -v` calls metadata).
    fn metadata_bytes(&self) -> u64 {
        let strings: usize = self.name.len()
            + self
                .exports
                .iter()
                .map(|e| e.name.len() + 16)
                .sum::<usize>()
            + self
                .modinfo
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + self.param_strings.iter().map(|s| s.len()).sum::<usize>();
        (core::mem::size_of::<Module>() + strings + (self.uses.len() + self.used_by.len()) * 8)
            as u64
    }

    fn pages(&self) -> u64 {
        self.core.map_or(0, |r| r.pages) + self.init.map_or(0, |r| r.pages)
    }
}

/// All modules, and the symbols they (and the kernel) export.
pub struct Registry {
    pub modules: Vec<Module>,
    /// The kernel API (provider [`KERNEL`]) and the exports of LIVE modules: what symbols
    /// resolve against.
    pub exports: ExportTable,
    /// The export names of COMING modules (addresses 0: nothing resolves against them).
    /// Reserved when a module is announced, as Linux's `verify_exported_symbols` does, so a
    /// module loaded while another is COMING (by its init, through `request_module`) cannot
    /// take a name the first one is about to export.
    pub reserved: ExportTable,
}

impl Registry {
    fn find(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name == name)
    }

    fn get(&self, id: ModuleId) -> Option<&Module> {
        self.modules.iter().find(|m| m.id == id)
    }

    fn get_mut(&mut self, id: ModuleId) -> Option<&mut Module> {
        self.modules.iter_mut().find(|m| m.id == id)
    }

    fn name_of(&self, id: ModuleId) -> String {
        self.get(id)
            .map_or_else(|| format!("#{id}"), |m| m.name.clone())
    }

    /// Drops `id`'s reservations; the table's memory goes with the last one, so that a
    /// load leaves the heap as it found it.
    fn release_reserved(&mut self, id: ModuleId) {
        self.reserved.remove_provider(provider(id));
        if self.reserved.is_empty() {
            self.reserved = ExportTable::new();
        }
    }

    /// Who exports `symbol` or has reserved it: `kernel` or a module's name, as Linux names
    /// the owner of a duplicate.
    fn export_owner(&self, symbol: &str) -> Option<String> {
        let owner = self
            .exports
            .get(symbol)
            .or_else(|| self.reserved.get(symbol))?;
        Some(if owner.provider == provider(KERNEL) {
            String::from("kernel")
        } else {
            self.name_of(owner.provider.0)
        })
    }

    fn record(&self, m: &Module) -> ModuleRecord {
        ModuleRecord {
            name: m.name.clone(),
            state: m.state,
            refcount: m.refcount,
            used_by: m.used_by.iter().map(|&id| self.name_of(id)).collect(),
            uses: m.uses.iter().map(|&id| self.name_of(id)).collect(),
            core_base: m.core.map_or(0, |r| r.base),
            core_bytes: m.core_bytes,
            init_bytes: m.init_bytes,
            init_freed: m.init.is_none() && m.init_bytes > 0,
            metadata_bytes: m.metadata_bytes(),
            pages: m.pages(),
            relocations: m.relocations,
            load_cycles: m.cycles,
            footprint: Footprint {
                section_bytes: m.core_bytes,
                section_pages: m.pages(),
                page_table_pages: m.page_table_pages,
                // Module code runs on the stack of whoever calls it: it has none of its own.
                stack_bytes: 0,
                kernel_object_bytes: services::bytes_owned_by(m.id),
                // Calls are direct: there is no IPC, so no buffer for it.
                ipc_buffer_bytes: 0,
                heap_bytes: kapi::bytes_owned_by(m.id),
                metadata_bytes: m.metadata_bytes(),
                // The module runs the kernel's own code around it: no runtime of its own.
                runtime_bytes: 0,
            },
            // A fault in module code is a kernel fault here: no record outlives one.
            fault: None,
        }
    }
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Runs `f` on the registry, creating it (with the kernel's export table) on first use.
fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut guard = REGISTRY.lock();
    let registry = guard.get_or_insert_with(|| Registry {
        modules: Vec::new(),
        exports: kapi::kernel_exports(),
        reserved: ExportTable::new(),
    });
    f(registry)
}

/// The module whose code is running (for attributing allocations and services), or
/// [`KERNEL`].
static CURRENT: AtomicU64 = AtomicU64::new(KERNEL);

/// Runs module code `f` as module `id`, restoring the previous context afterwards (module
/// code nests: an init may load another module, whose init runs inside).
fn as_module<R>(id: ModuleId, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.swap(id, Ordering::SeqCst);
    let r = f();
    CURRENT.store(previous, Ordering::SeqCst);
    r
}

/// The module whose code is running now.
fn current() -> ModuleId {
    CURRENT.load(Ordering::SeqCst)
}

pub use crate::backend::Caller;

/// Why a module operation failed. Each variant names the module and the culprit; `errno`
/// gives the number a system call returns.
#[derive(Debug)]
pub enum ModError {
    /// The caller lacks CAP_SYS_MODULE.
    Permission,
    /// The file is not a loadable module.
    Invalid(kmod_loader::Error),
    /// The image is not (or no longer) in the caller's memory.
    BadImage,
    /// The module has no `name=` in `.modinfo`.
    NoName,
    /// A module of that name is loaded already.
    AlreadyLoaded(String),
    /// The module exports a symbol the kernel, a LIVE module or a COMING one already
    /// exports (or exports it twice).
    DuplicateExport {
        module: String,
        symbol: String,
        owner: String,
    },
    /// The module is being loaded or unloaded by another request.
    Busy { name: String, state: ModuleState },
    /// No module of that name is loaded.
    #[cfg_attr(not(feature = "module-unload"), allow(dead_code))]
    NotLoaded(String),
    /// No such module file in the archive.
    NotInArchive(String),
    /// Other modules use it.
    #[cfg_attr(not(feature = "module-unload"), allow(dead_code))]
    InUse { name: String, users: Vec<String> },
    /// The module has no `cleanup_module`, so it cannot be unloaded.
    #[cfg_attr(not(feature = "module-unload"), allow(dead_code))]
    NoExit(String),
    /// A parameter the module does not declare, or a value of the wrong form.
    Param {
        module: String,
        error: kmodlab_abi::params::ParamError,
    },
    /// Out of memory (module area or frames).
    NoMemory { module: String },
    /// `init_module` returned an error.
    InitFailed { module: String, code: i32 },
    /// Unloading is not compiled into this kernel (CONFIG_MODULE_UNLOAD off).
    #[cfg_attr(feature = "module-unload", allow(dead_code))]
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
            ModError::NoName | ModError::DuplicateExport { .. } => errno::ENOEXEC,
            ModError::BadImage => errno::EFAULT,
            ModError::AlreadyLoaded(_) => errno::EEXIST,
            ModError::Busy { .. } | ModError::InUse { .. } | ModError::NoExit(_) => errno::EBUSY,
            ModError::NotLoaded(_) | ModError::NotInArchive(_) => errno::ENOENT,
            ModError::Param { error, .. } => match error {
                kmodlab_abi::params::ParamError::Unknown { .. } => errno::ENOENT,
                kmodlab_abi::params::ParamError::BadValue { .. } => errno::EINVAL,
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
            ModError::DuplicateExport {
                module,
                symbol,
                owner,
            } => write!(
                f,
                "{module}: exports duplicate symbol {symbol} (owned by {owner})"
            ),
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
            ModError::NotSupported => {
                write!(
                    f,
                    "module unloading is not supported (kernel built without module-unload)"
                )
            }
            ModError::SignatureRequired { reason, cause } => write!(
                f,
                "Loading of {reason} is rejected (module.sig_enforce=1): {cause}"
            ),
            ModError::BadSignature(cause) => {
                write!(f, "module signature verification failed: {cause}")
            }
        }
    }
}

/// Every module's record, in load order.
pub fn list() -> Vec<ModuleRecord> {
    with_registry(|r| r.modules.iter().map(|m| r.record(m)).collect())
}

/// The module (and offset) containing `addr`, for fault reports. Never waits: a fault may
/// have happened with the registry locked.
///
/// Allocates nothing either (the fault may be inside the allocator, holding its lock): the
/// module's name is lent to `found`.
pub fn locate(addr: u64, found: &mut dyn FnMut(&str, u64)) -> bool {
    let Some(guard) = REGISTRY.try_lock() else {
        return false;
    };
    let Some(registry) = guard.as_ref() else {
        return false;
    };
    for m in &registry.modules {
        for r in [m.core, m.init].into_iter().flatten() {
            if addr >= r.base && addr < r.base + r.pages * kmodlab_abi::layout::PAGE_SIZE {
                found(&m.name, addr - r.base);
                return true;
            }
        }
    }
    false
}

/// Unloads module `name` (`delete_module`).
#[cfg(feature = "module-unload")]
pub fn delete_module(name: &str, caller: Caller) -> Result<(), ModError> {
    unload::delete_module(name, caller)
}

/// Unloading is compiled out (CONFIG_MODULE_UNLOAD off): always "not supported", after the
/// same permission check Linux makes first.
#[cfg(not(feature = "module-unload"))]
pub fn delete_module(_name: &str, caller: Caller) -> Result<(), ModError> {
    if !caller.may_manage_modules {
        return Err(ModError::Permission);
    }
    Err(ModError::NotSupported)
}

/// The provider id a module's exports are registered under.
fn provider(id: ModuleId) -> ProviderId {
    ProviderId(id)
}

/// The monolithic configuration's module backend: the subsystem above, in the kernel.
pub struct Monolithic;

impl Monolithic {
    /// The backend (it has no state of its own: the registry is the module's).
    pub const fn new() -> Monolithic {
        Monolithic
    }
}

fn failure(e: ModError) -> crate::backend::Failure {
    crate::backend::Failure {
        errno: e.errno(),
        message: format!("{e}"),
    }
}

impl crate::backend::ModuleBackend for Monolithic {
    fn start(&self) -> Result<(), String> {
        crate::mm::paging::prepare_module_area();
        Ok(())
    }

    fn init_module(
        &self,
        image: crate::backend::Image<'_>,
        params: &str,
        caller: Caller,
    ) -> Result<ModuleRecord, crate::backend::Failure> {
        init_module(image, params, caller).map_err(failure)
    }

    fn insmod_from_archive(
        &self,
        name: &str,
        params: &str,
        caller: Caller,
    ) -> Result<ModuleRecord, crate::backend::Failure> {
        insmod_from_archive(name, params, caller).map_err(failure)
    }

    fn delete_module(&self, name: &str, caller: Caller) -> Result<(), crate::backend::Failure> {
        delete_module(name, caller).map_err(failure)
    }

    fn list(
        &self,
    ) -> Result<(Vec<ModuleRecord>, crate::backend::Transitions), crate::backend::Failure> {
        Ok((list(), notify::transitions()))
    }

    fn service_call(
        &self,
        service: &str,
        op: u32,
        request: &[u8],
        reply_cap: usize,
    ) -> Result<Vec<u8>, crate::backend::Failure> {
        let handle = services::lookup(service).ok_or_else(|| crate::backend::Failure {
            errno: errno::ENOENT,
            message: format!("no service {service}"),
        })?;
        let mut reply = alloc::vec![0u8; reply_cap];
        let mut len = 0usize;
        // SAFETY: the request and reply buffers are valid for their lengths for the whole
        // call and distinct; `len` is a local.
        let status = unsafe {
            services::call(
                handle,
                op,
                request.as_ptr(),
                request.len(),
                reply.as_mut_ptr(),
                reply.len(),
                &mut len,
            )
        };
        if status < 0 {
            return Err(crate::backend::Failure {
                errno: u64::from(status.unsigned_abs()),
                message: format!("service {service} op {op} failed with {status}"),
            });
        }
        reply.truncate(len);
        Ok(reply)
    }

    fn locate(&self, addr: u64, found: &mut dyn FnMut(&str, u64)) -> bool {
        locate(addr, found)
    }
}
