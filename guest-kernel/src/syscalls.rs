//! The system call entry: every call of every task, in both configurations.
//!
//! - the basic calls every program has (`guest_rt::nr`): exit, report, write, the module
//!   operations, the archive and `/proc` reads, input, capabilities;
//! - IPC ([`crate::ipc`]) and the task calls of supervisors ([`crate::task::manage`])
//!   (`kmodlab_ipc::sys`).
//!
//! Module operations go to [`crate::backend`] — the in-kernel subsystem or the module
//! manager — and are served without the task table locked, because the microkernel's backend
//! runs other tasks while it waits for the manager. Every pointer argument is checked against
//! the calling task's own address space before use; every failure is an errno.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use guest_rt::{cap, errno, nr};
use kmodlab_ipc::sys;
use kmodlab_ipc::task::TaskId;

use crate::arch::UserContext;
use crate::backend::{self, Caller, Failure, Image, backend};
use crate::ipc::{self, SysResult};
use crate::task::{State, manage, sched, with_tasks};
use crate::user::Input;

/// Longest path, module name or parameter string accepted.
const MAX_NAME: u64 = 4096;
/// Longest single `write`/`log_write` (longer writes are refused, not cut).
const MAX_WRITE: u64 = 64 * 1024;

fn err(e: u64) -> u64 {
    e.wrapping_neg()
}

fn to_result(r: Result<u64, u64>) -> SysResult {
    Some(r.unwrap_or_else(err))
}

/// Reads `len` bytes at `ptr` of task `id`.
fn read_bytes(id: TaskId, ptr: u64, len: u64) -> Result<Vec<u8>, u64> {
    with_tasks(|t| {
        let task = t.get(id).ok_or(errno::ESRCH)?;
        let mut v = vec![0u8; len as usize];
        task.aspace.read(ptr, &mut v).map_err(|_| errno::EFAULT)?;
        Ok(v)
    })
}

fn string_arg(id: TaskId, ptr: u64, len: u64) -> Result<String, u64> {
    if len > MAX_NAME {
        return Err(errno::EINVAL);
    }
    String::from_utf8(read_bytes(id, ptr, len)?).map_err(|_| errno::EINVAL)
}

/// Copies `data` to the task's buffer if it fits; returns `data`'s length either way (so the
/// caller can retry with a larger buffer).
fn copy_out(id: TaskId, data: &[u8], buf: u64, cap: u64) -> Result<u64, u64> {
    if data.len() as u64 <= cap {
        with_tasks(|t| {
            t.get(id)
                .ok_or(errno::ESRCH)?
                .aspace
                .write(buf, data, true)
                .map_err(|_| errno::EFAULT)
        })?;
    }
    Ok(data.len() as u64)
}

/// Handles the system call task `id` just made (its registers are `ctx`).
pub fn handle(id: TaskId, ctx: &UserContext) {
    let n = ctx.rax;
    let a = [ctx.rdi, ctx.rsi, ctx.rdx, ctx.r10, ctx.r8, ctx.r9];
    let over = with_tasks(|t| {
        if let Some(task) = t.get_mut(id) {
            task.counters.syscalls += 1;
        }
        sched::over_budget(t, id)
    });
    if over {
        // A server that keeps making system calls without ever blocking hogs the CPU as
        // surely as a loop does.
        sched::fault(id, sched::watchdog_fault(ctx));
        return;
    }
    let result = dispatch(id, n, a);
    if let Some(value) = result {
        with_tasks(|t| {
            if let Some(task) = t.get_mut(id)
                && !task.state.ended()
            {
                task.ctx.rax = value;
                task.state = State::Runnable;
                t.run_queue.push_back(id);
            }
        });
        // The caller goes on, unless IPC already chose someone to switch to.
        sched::switch_to_unless_chosen(id);
    }
}

fn dispatch(id: TaskId, n: u64, a: [u64; 6]) -> SysResult {
    match n {
        nr::NULL => Some(0),
        nr::EXIT => {
            with_tasks(|t| ipc::end_task(t, id, State::Exited(a[0])));
            None
        }
        nr::REPORT => {
            with_tasks(|t| {
                if let Some(task) = t.get_mut(id) {
                    task.reports.push(a[0]);
                }
            });
            Some(0)
        }
        nr::WRITE => to_result(write(id, a[0], a[1], false)),
        sys::LOG_WRITE => to_result(write(id, a[0], a[1], true)),
        nr::INIT_MODULE => to_result(init_module(id, a)),
        nr::DELETE_MODULE => to_result(delete_module(id, a)),
        nr::READ_FILE => to_result(read_file(id, a)),
        nr::READ_PROC => to_result(read_proc(id, a)),
        nr::READ_INPUT => to_result(read_input(id, a[0], a[1])),
        nr::CAP_DROP => {
            with_tasks(|t| {
                if let Some(task) = t.get_mut(id) {
                    task.session.caps &= !a[0];
                }
            });
            Some(0)
        }
        nr::LAST_ERROR => {
            let text =
                with_tasks(|t| t.get(id).map(|x| x.session.last_error.clone())).unwrap_or_default();
            to_result(copy_out(id, text.as_bytes(), a[0], a[1]))
        }
        sys::CALL => with_tasks(|t| ipc::call(t, id, a[0])),
        sys::RECV => with_tasks(|t| ipc::recv(t, id, a[0], a[1], a[2])),
        sys::REPLY => with_tasks(|t| Some(ipc::reply(t, id, a[0], a[1]))),
        sys::REPLY_RECV => with_tasks(|t| ipc::reply_recv(t, id, a[0], a[1], a[2], a[3], a[4])),
        sys::LEASE_READ => with_tasks(|t| {
            to_result(ipc::lease_copy(
                t,
                id,
                [a[0], a[1], a[2], a[3], a[4]],
                false,
            ))
        }),
        sys::LEASE_WRITE => {
            with_tasks(|t| to_result(ipc::lease_copy(t, id, [a[0], a[1], a[2], a[3], a[4]], true)))
        }
        sys::NOTIFY => with_tasks(|t| Some(ipc::notify_endpoint(t, id, a[0], a[1]))),
        sys::TASK_CREATE => with_tasks(|t| Some(manage::create(t, id, [a[0], a[1], a[2], a[3]]))),
        sys::TASK_MAP => with_tasks(|t| Some(manage::map(t, id, [a[0], a[1], a[2], a[3]]))),
        sys::TASK_UNMAP => with_tasks(|t| Some(manage::unmap(t, id, [a[0], a[1], a[2]]))),
        sys::TASK_WRITE => with_tasks(|t| Some(manage::write(t, id, [a[0], a[1], a[2], a[3]]))),
        sys::TASK_PROTECT => with_tasks(|t| Some(manage::protect(t, id, [a[0], a[1], a[2], a[3]]))),
        sys::TASK_START => with_tasks(|t| Some(manage::start(t, id, [a[0], a[1], a[2], a[3]]))),
        sys::TASK_INFO => with_tasks(|t| Some(manage::info(t, id, [a[0], a[1], a[2]]))),
        sys::TASK_SELF_INFO => with_tasks(|t| Some(manage::self_info(t, id, [a[0], a[1]]))),
        sys::CAP_GRANT => with_tasks(|t| Some(manage::grant(t, id, [a[0], a[1], a[2], a[3]]))),
        sys::CAP_DELETE => with_tasks(|t| Some(manage::delete(t, id, [a[0], a[1]]))),
        sys::TASK_DESTROY => match with_tasks(|t| manage::destroy_target(t, id, a[0])) {
            Ok(target) => {
                crate::task::destroy(target);
                Some(0)
            }
            Err(e) => Some(err(e)),
        },
        _ => Some(err(errno::ENOSYS)),
    }
}

/// `write` (to the console, and the program's capture) or `log_write` (to the kernel log).
fn write(id: TaskId, ptr: u64, len: u64, log: bool) -> Result<u64, u64> {
    if len > MAX_WRITE {
        return Err(errno::EINVAL);
    }
    let bytes = read_bytes(id, ptr, len)?;
    let text = String::from_utf8_lossy(&bytes);
    if log {
        kprint!("{text}");
    } else {
        // A script's output streams to the VMM (which shows it on the console); anything
        // else goes to the UART.
        let streamed =
            with_tasks(
                |t| match t.get_mut(id).and_then(|x| x.session.capture.as_mut()) {
                    Some(stream) => {
                        stream.write(&text);
                        true
                    }
                    None => false,
                },
            );
        if !streamed {
            crate::console::print_user(&text);
        }
    }
    Ok(len)
}

fn caller_of(id: TaskId) -> Caller {
    let caps = with_tasks(|t| t.get(id).map_or(0, |x| x.session.caps));
    Caller {
        may_manage_modules: caps & cap::SYS_MODULE != 0,
    }
}

/// Runs a module operation for task `id`: the task waits "in the kernel" meanwhile (the
/// microkernel's backend runs other tasks); its `last_error` records the explanation.
fn module_op<T>(id: TaskId, op: impl FnOnce() -> Result<T, Failure>) -> Result<u64, u64> {
    with_tasks(|t| {
        if let Some(task) = t.get_mut(id) {
            task.state = State::InKernel;
            task.running_since = None;
        }
    });
    let r = op();
    with_tasks(|t| {
        if let Some(task) = t.get_mut(id) {
            if task.state == State::InKernel {
                task.state = State::Runnable;
            }
            match &r {
                Ok(_) => task.session.last_error.clear(),
                Err(f) => task.session.last_error = f.message.clone(),
            }
        }
    });
    match r {
        Ok(_) => Ok(0),
        Err(f) => {
            kprintln!("module: {}", f.message);
            Err(f.errno)
        }
    }
}

fn init_module(id: TaskId, a: [u64; 6]) -> Result<u64, u64> {
    let params = string_arg(id, a[2], a[3])?;
    with_tasks(|t| {
        t.get(id)
            .ok_or(errno::ESRCH)?
            .aspace
            .check(a[0], a[1], false)
            .map_err(|_| errno::EFAULT)
    })?;
    let caller = caller_of(id);
    let image = Image::User {
        task: id,
        addr: a[0],
        len: a[1],
    };
    module_op(id, || backend().init_module(image, &params, caller))
}

fn delete_module(id: TaskId, a: [u64; 6]) -> Result<u64, u64> {
    let name = string_arg(id, a[0], a[1])?;
    if a[2] != 0 {
        // Forced unloading (O_TRUNC) is not offered: it breaks the users' references.
        return Err(errno::EINVAL);
    }
    let caller = caller_of(id);
    module_op(id, || backend().delete_module(&name, caller))
}

fn read_file(id: TaskId, a: [u64; 6]) -> Result<u64, u64> {
    let path = string_arg(id, a[0], a[1])?;
    let archive = crate::boot::initramfs().map_err(|_| errno::ENOENT)?;
    let file = archive
        .find(path.trim_start_matches('/'))
        .ok_or(errno::ENOENT)?;
    copy_out(id, file.data, a[2], a[3])
}

fn read_proc(id: TaskId, a: [u64; 6]) -> Result<u64, u64> {
    let name = string_arg(id, a[0], a[1])?;
    let text = match name.as_str() {
        "modules" | "modules-verbose" => {
            let mut listed = None;
            module_op(id, || {
                listed = Some(backend().list()?);
                Ok(())
            })?;
            let (records, transitions) = listed.unwrap_or_default();
            if name == "modules" {
                backend::proc_modules(&records)
            } else {
                backend::proc_modules_verbose(&records, transitions)
            }
            .into_bytes()
        }
        "kmsg" => {
            let mut v = Vec::new();
            crate::console::read_log(&mut v);
            v
        }
        "files" => {
            let archive = crate::boot::initramfs().map_err(|_| errno::ENOENT)?;
            let mut s = String::new();
            for f in archive.files() {
                s.push_str(&format!("{} {}\n", f.name, f.data.len()));
            }
            s.into_bytes()
        }
        _ => return Err(errno::ENOENT),
    };
    copy_out(id, &text, a[2], a[3])
}

/// Most bytes one `read_input` hands out (a longer line takes several reads).
const MAX_INPUT_READ: u64 = 64 * 1024;

/// `read_input`: at most `cap` bytes and never more than one line, like `read(2)` on a
/// terminal; the rest of a longer line stays queued for the next read, so nothing is lost.
fn read_input(id: TaskId, buf: u64, cap: u64) -> Result<u64, u64> {
    if cap == 0 {
        // An empty read would look like the end of input.
        return Err(errno::EINVAL);
    }
    let cap = cap.min(MAX_INPUT_READ);
    with_tasks(|t| {
        t.get(id)
            .ok_or(errno::ESRCH)?
            .aspace
            .check(buf, cap, true)
            .map_err(|_| errno::EFAULT)
    })?;
    let console = with_tasks(|t| {
        t.get(id)
            .is_some_and(|x| matches!(x.session.input, Input::Console))
    });
    let line: Vec<u8> = if console {
        crate::console::read_line(cap as usize)
    } else {
        with_tasks(|t| match t.get_mut(id).map(|x| &mut x.session.input) {
            Some(Input::Script(script)) => script.read(cap as usize).to_vec(),
            _ => Vec::new(),
        })
    };
    let n = line.len().min(cap as usize);
    with_tasks(|t| {
        t.get(id)
            .ok_or(errno::ESRCH)?
            .aspace
            .write(buf, &line[..n], true)
            .map_err(|_| errno::EFAULT)
    })?;
    Ok(n as u64)
}
