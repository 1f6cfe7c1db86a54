//! The microkernel configuration's module backend: a client of the user-space module
//! manager (`sbin/modmgr`), which loads modules into servers of their own.
//!
//! The kernel keeps no module state at all: every operation is one call to the manager
//! ([`crate::ipc::kernel_call`], badge `KERNEL_BADGE`), with the request and reply encoded
//! as `kmodlab_ipc::mgr` defines. The manager is a task like any other; the kernel trusts
//! nothing it answers beyond its form: a reply that does not decode is an error naming the
//! manager.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::errno;
use kmodlab_abi::channel::ModuleRecord;
use kmodlab_ipc::cap;
use kmodlab_ipc::mgr::{self, Failure, op};
use kmodlab_ipc::msg;
use kmodlab_ipc::task::TaskId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spin::Once;

use crate::backend::{Caller, Image, ModuleBackend, Transitions};
use crate::ipc::{KernelCallError, KernelLease, KernelRequest, LeaseMem, kernel_call};
use crate::task::{Cap, State, sched, with_tasks};
use crate::user::{self, Session};

/// The module manager program in the archive.
const MANAGER_PATH: &str = "sbin/modmgr";
/// Largest reply the kernel accepts from the manager.
const REPLY_CAP: usize = msg::MAX_PAYLOAD as usize;

/// The microkernel backend: the manager's task id, once started.
pub struct Microkernel {
    manager: Once<TaskId>,
}

impl Microkernel {
    /// Not started yet.
    pub const fn new() -> Microkernel {
        Microkernel {
            manager: Once::new(),
        }
    }

    fn manager(&self) -> Result<TaskId, Failure> {
        self.manager.get().copied().ok_or_else(|| Failure {
            errno: errno::EPIPE,
            message: String::from("the module manager is not running"),
        })
    }

    /// One call to the manager with a postcard request; decodes the reply payload as `R`.
    fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        op: u64,
        request: &Q,
        leases: &[KernelLease],
    ) -> Result<R, Failure> {
        let manager = self.manager()?;
        let payload = mgr::encode(request).map_err(|e| Failure {
            errno: errno::EINVAL,
            message: format!("request does not encode: {e}"),
        })?;
        let reply = kernel_call(
            manager,
            KernelRequest {
                op,
                words: [0; msg::MSG_WORDS],
                payload: &payload,
                leases,
                reply_cap: REPLY_CAP,
            },
        )
        .map_err(|e| match e {
            KernelCallError::Errno(e) if e == errno::EPIPE => Failure {
                errno: e,
                message: String::from("the module manager died"),
            },
            KernelCallError::Errno(e) => Failure {
                errno: e,
                message: format!("the call to the module manager failed (errno {e})"),
            },
            KernelCallError::NoAnswer => Failure {
                errno: errno::EIO,
                message: String::from("the module manager blocked without answering"),
            },
        })?;
        if reply.status < 0 {
            return Err(Failure {
                errno: reply.status.unsigned_abs(),
                message: format!("the module manager refused op {op} ({})", reply.status),
            });
        }
        mgr::decode(&reply.payload).map_err(|e| Failure {
            errno: errno::EIO,
            message: format!("the module manager's reply to op {op} is malformed: {e}"),
        })
    }
}

/// The manager's start flags, from the kernel command line (`module.unload=0`,
/// `module.sig_enforce=1`, as Linux spells them).
fn manager_flags() -> u64 {
    let cmdline = crate::boot::state().info.cmdline_str().unwrap_or("");
    let mut flags = mgr::flags::UNLOAD;
    for word in cmdline.split_whitespace() {
        match word {
            "module.unload=0" => flags &= !mgr::flags::UNLOAD,
            // Linux's spellings of a true bool parameter, as the monolithic kernel reads it.
            "module.sig_enforce"
            | "module.sig_enforce=1"
            | "module.sig_enforce=y"
            | "module.sig_enforce=Y"
            | "module.sig_enforce=on"
            | "module.sig_enforce=true" => flags |= mgr::flags::SIG_ENFORCE,
            _ => {}
        }
    }
    flags
}

impl ModuleBackend for Microkernel {
    fn start(&self) -> Result<(), String> {
        let archive = crate::boot::initramfs().map_err(|e| format!("module archive: {e}"))?;
        let image = archive
            .find(MANAGER_PATH)
            .ok_or_else(|| format!("{MANAGER_PATH} is not in the module archive"))?
            .data;
        // rsi: the TSC frequency, so that the manager can report recovery times in time units.
        let tsc_khz = crate::boot::state().info.tsc_khz;
        let id = user::spawn(
            image,
            "modmgr",
            [manager_flags(), tsc_khz, 0],
            Session::none(),
        )
        .map_err(|e| format!("{MANAGER_PATH}: {e}"))?;
        with_tasks(|t| {
            if let Some(task) = t.get_mut(id) {
                task.caps[cap::FACTORY as usize] = Some(Cap::Factory);
            }
        });
        // Run it until it waits for its first request: then it is ready.
        let ready = || {
            with_tasks(|t| {
                t.get(id)
                    .is_none_or(|x| matches!(x.state, State::Receiving { .. }) || x.state.ended())
            })
        };
        let _ = sched::run_until(ready);
        let state = with_tasks(|t| t.get(id).map(|x| x.state.clone()));
        match state {
            Some(State::Receiving { .. }) => {
                self.manager.call_once(|| id);
                kprintln!("module manager started (task {:#x})", id.0);
                Ok(())
            }
            other => Err(format!(
                "the module manager did not come up: it ended as {other:?}"
            )),
        }
    }

    fn init_module(
        &self,
        image: Image<'_>,
        params: &str,
        caller: Caller,
    ) -> Result<ModuleRecord, Failure> {
        let lease = match image {
            Image::User { task, addr, len } => KernelLease {
                mem: LeaseMem::Task { task, addr },
                len,
                flags: msg::LEASE_READ,
            },
            Image::Kernel(bytes) => KernelLease {
                mem: LeaseMem::Kernel {
                    addr: bytes.as_ptr() as usize,
                },
                len: bytes.len() as u64,
                flags: msg::LEASE_READ,
            },
        };
        let request = mgr::Insmod {
            params: params.into(),
            may_manage_modules: caller.may_manage_modules,
        };
        self.call::<_, mgr::LoadReply>(op::INSMOD, &request, &[lease])?
    }

    fn insmod_from_archive(
        &self,
        name: &str,
        params: &str,
        caller: Caller,
    ) -> Result<ModuleRecord, Failure> {
        if !caller.may_manage_modules {
            return Err(Failure {
                errno: errno::EPERM,
                message: String::from("module management needs CAP_SYS_MODULE"),
            });
        }
        let request = mgr::InsmodArchive {
            name: name.into(),
            params: params.into(),
        };
        self.call::<_, mgr::LoadReply>(op::INSMOD_ARCHIVE, &request, &[])?
    }

    fn delete_module(&self, name: &str, caller: Caller) -> Result<(), Failure> {
        let request = mgr::Rmmod {
            name: name.into(),
            may_manage_modules: caller.may_manage_modules,
        };
        self.call::<_, mgr::DoneReply>(op::RMMOD, &request, &[])?
    }

    fn list(&self) -> Result<(Vec<ModuleRecord>, Transitions), Failure> {
        let reply: mgr::ListReply = self.call(op::LIST, &(), &[])?;
        Ok((reply.modules, reply.transitions))
    }

    fn service_call(
        &self,
        service: &str,
        op_: u32,
        request: &[u8],
        reply_cap: usize,
    ) -> Result<Vec<u8>, Failure> {
        let lookup = mgr::ServiceLookup {
            service: service.into(),
        };
        let at: mgr::ServiceAddress =
            self.call::<_, mgr::ServiceLookupReply>(op::SERVICE_LOOKUP, &lookup, &[])??;
        // The kernel calls the server itself: the manager never waits for a server.
        let reply_cap = reply_cap.min(REPLY_CAP);
        let reply = kernel_call(
            at.task,
            KernelRequest {
                op: kmodlab_ipc::srv::op::SERVICE_CALL,
                words: [at.index, u64::from(op_), reply_cap as u64, 0, 0, 0],
                payload: request,
                leases: &[],
                reply_cap,
            },
        )
        .map_err(|e| match e {
            KernelCallError::Errno(errno::EPIPE) => Failure {
                errno: errno::EPIPE,
                message: format!("service {service}: its server died during the call"),
            },
            KernelCallError::Errno(n) => Failure {
                errno: n,
                message: format!(
                    "service {service}: the call to its server failed: {}",
                    errno::describe(n)
                ),
            },
            KernelCallError::NoAnswer => Failure {
                errno: errno::EIO,
                message: format!(
                    "service {service}: its server will never answer (every task is blocked)"
                ),
            },
        })?;
        if reply.status < 0 {
            return Err(Failure {
                errno: reply.status.unsigned_abs(),
                message: format!("service {service} op {op_} failed with {}", reply.status),
            });
        }
        Ok(reply.payload)
    }

    fn locate(&self, _addr: u64, _found: &mut dyn FnMut(&str, u64)) -> bool {
        // No module code runs in the kernel here: a kernel fault is never in a module.
        false
    }
}
