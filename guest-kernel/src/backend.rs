//! The module backend: **the one place where the two configurations differ.**
//!
//! The monolithic kernel loads modules into itself ([`crate::module`], Linux's
//! `load_module`); the microkernel forwards every module operation to the user-space module
//! manager over IPC ([`crate::manager`]). Everything else — tasks, IPC, the shell's system
//! calls, the control channel — is the same code in both: `control.rs` and `syscalls.rs`
//! call [`backend()`] and nothing else of the module subsystem, and `/proc/modules` is
//! rendered here from the records either backend returns.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kmodlab_abi::channel::ModuleRecord;
pub use kmodlab_ipc::mgr::Failure;
use kmodlab_ipc::task::TaskId;

/// A module file handed to `init_module`.
#[derive(Debug, Clone, Copy)]
pub enum Image<'a> {
    /// In a task's memory (the `init_module` system call): `len` bytes at `addr`.
    User {
        /// The task.
        task: TaskId,
        /// Start in its address space.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// In kernel memory (the control channel's image, the module archive).
    Kernel(&'a [u8]),
}

/// Who asks for a module operation, and whether they may.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Holds CAP_SYS_MODULE.
    pub may_manage_modules: bool,
}

impl Caller {
    /// The kernel itself or the VMM's control channel.
    pub const KERNEL: Caller = Caller {
        may_manage_modules: true,
    };
}

/// Lifecycle transitions since boot: COMING, LIVE, GOING.
pub type Transitions = (u64, u64, u64);

/// What a module subsystem offers the rest of the kernel.
pub trait ModuleBackend: Sync {
    /// Brings the subsystem up at boot.
    fn start(&self) -> Result<(), String>;
    /// Loads a module (`init_module`). On success it is LIVE.
    fn init_module(
        &self,
        image: Image<'_>,
        params: &str,
        caller: Caller,
    ) -> Result<ModuleRecord, Failure>;
    /// Loads `lib/modules/NAME.ko` from the module archive, without dependencies (insmod).
    fn insmod_from_archive(
        &self,
        name: &str,
        params: &str,
        caller: Caller,
    ) -> Result<ModuleRecord, Failure>;
    /// Unloads a module (`delete_module`).
    fn delete_module(&self, name: &str, caller: Caller) -> Result<(), Failure>;
    /// Every module's record in load order, and the transitions since boot.
    fn list(&self) -> Result<(Vec<ModuleRecord>, Transitions), Failure>;
    /// Calls service `service` with `op` and `request`, as a module would; returns the reply
    /// (at most `reply_cap` bytes).
    fn service_call(
        &self,
        service: &str,
        op: u32,
        request: &[u8],
        reply_cap: usize,
    ) -> Result<Vec<u8>, Failure>;
    /// Calls `found` with the module (and offset) holding kernel address `addr`, for kernel
    /// fault reports; returns whether it did. Must neither wait nor allocate: a fault may
    /// have happened anywhere, the allocator included.
    fn locate(&self, addr: u64, found: &mut dyn FnMut(&str, u64)) -> bool;
}

#[cfg(feature = "monolithic")]
type Selected = crate::module::Monolithic;
#[cfg(feature = "microkernel")]
type Selected = crate::manager::Microkernel;

static BACKEND: Selected = Selected::new();

/// This configuration's module backend.
pub fn backend() -> &'static dyn ModuleBackend {
    &BACKEND
}

/// The flags Linux's `/proc/modules` shows after the address, in parentheses when there are
/// any (`module_flags`): taints, then `-` for a module being unloaded and `+` for one being
/// loaded. kmodlab's one taint is `D` (Linux's "died" taint, set kernel-wide after an oops),
/// on a module whose server died (microkernel).
fn proc_flags(rec: &ModuleRecord) -> String {
    let mut flags = String::new();
    if rec.fault.is_some() {
        flags.push('D');
    }
    match rec.state {
        kmodlab_abi::channel::ModuleState::Going => flags.push('-'),
        kmodlab_abi::channel::ModuleState::Coming => flags.push('+'),
        kmodlab_abi::channel::ModuleState::Live => {}
    }
    if flags.is_empty() {
        flags
    } else {
        format!(" ({flags})")
    }
}

/// `/proc/modules`: `name size refcount users, state address [(flags)]` per module, newest
/// first, as Linux prints it.
pub fn proc_modules(records: &[ModuleRecord]) -> String {
    let mut out = String::new();
    for rec in records.iter().rev() {
        let size = rec.core_bytes + if rec.init_freed { 0 } else { rec.init_bytes };
        let users = if rec.used_by.is_empty() {
            String::from("-")
        } else {
            let mut s = rec.used_by.join(",");
            s.push(',');
            s
        };
        out.push_str(&format!(
            "{} {} {} {} {} {:#x}{}\n",
            rec.name,
            size,
            rec.refcount,
            users,
            rec.state.name(),
            rec.core_base,
            proc_flags(rec)
        ));
    }
    out
}

/// The accounting of every module, one block each (what `lsmod -v` shows).
pub fn proc_modules_verbose(records: &[ModuleRecord], transitions: Transitions) -> String {
    let (coming, live, going) = transitions;
    let mut out = format!("transitions since boot: {coming} COMING, {live} LIVE, {going} GOING\n");
    for r in records {
        let c = r.load_cycles;
        out.push_str(&format!(
            "{}: state {}, core {} B at {:#x}, init {} B ({}), metadata {} B, {} pages, {} relocations\n  \
             load cycles: copy {} verify {} validate {} params {} layout {} allocate {} resolve {} relocate {} protect {} init {} total {}\n",
            r.name,
            r.state.name(),
            r.core_bytes,
            r.core_base,
            r.init_bytes,
            if r.init_freed { "freed" } else { "kept" },
            r.metadata_bytes,
            r.pages,
            r.relocations,
            c.copy,
            c.verify,
            c.validate,
            c.params,
            c.layout,
            c.allocate,
            c.resolve,
            c.relocate,
            c.protect,
            c.init,
            c.total
        ));
        // What only a module server has: the steps of building it, and its memory by kind.
        if c.aspace != 0 || c.transfer != 0 || c.start != 0 {
            let f = &r.footprint;
            out.push_str(&format!(
                "  server steps: aspace {} transfer {} start {}\n  \
                 server memory: sections {} pages, page tables {} pages, stack {} B, \
                 kernel objects {} B, IPC buffers {} B, heap {} B, runtime {} B, \
                 metadata {} B, total {} B\n",
                c.aspace,
                c.transfer,
                c.start,
                f.section_pages,
                f.page_table_pages,
                f.stack_bytes,
                f.kernel_object_bytes,
                f.ipc_buffer_bytes,
                f.heap_bytes,
                f.runtime_bytes,
                f.metadata_bytes,
                f.total_bytes()
            ));
        }
        if let Some(fault) = &r.fault {
            let during = match fault.during {
                kmodlab_abi::channel::FaultPhase::Init => "init",
                kmodlab_abi::channel::FaultPhase::Call => "a call",
                kmodlab_abi::channel::FaultPhase::Exit => "exit",
            };
            let what = match fault.vector {
                kmodlab_abi::channel::WATCHDOG_VECTOR => String::from("stopped by the watchdog"),
                kmodlab_abi::channel::EXITED_VECTOR => String::from("its runtime exited"),
                v => format!("{} (vector {v})", kmodlab_abi::channel::vector_name(v)),
            };
            let offset = fault
                .offset
                .map_or_else(String::new, |o| format!(", offset {o:#x} in the module"));
            out.push_str(&format!(
                "  faulted during {during}: {what} at rip {:#x}{offset}, cr2 {:#x}, error {:#x}; \
                 the server is gone\n",
                fault.rip, fault.cr2, fault.error_code
            ));
        }
    }
    out
}
