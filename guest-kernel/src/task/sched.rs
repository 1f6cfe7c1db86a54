//! The scheduler: as simple as synchronous IPC allows. IPC switches directly to the task it
//! wakes (the receiver of a call, the caller of a reply), as L4 and seL4 do; otherwise tasks
//! run in the order they became runnable. There is no time slicing: a task runs until it
//! blocks, ends or is stopped by the watchdog.

use core::sync::atomic::{AtomicU64, Ordering};

use kmodlab_abi::channel::FaultReport;
use kmodlab_abi::layout::{KERNEL_VIRT_OFFSET, STATUS_GPA};
use kmodlab_abi::status;
use kmodlab_ipc::task::{Fault, TaskId, WATCHDOG_VECTOR};

use super::{State, Tasks, with_tasks};
use crate::arch::Trap;

/// The task IPC chose to run next (direct switch), ahead of the run queue.
static NEXT: spin::Mutex<Option<TaskId>> = spin::Mutex::new(None);

/// Asks the scheduler to run `id` next (IPC's direct switch).
pub fn switch_to(id: TaskId) {
    *NEXT.lock() = Some(id);
}

/// Why [`run_until`] returned without its condition becoming true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No task can run: everyone waits for someone.
    AllBlocked,
}

fn pick(t: &mut Tasks) -> Option<TaskId> {
    let next = NEXT.lock().take();
    if let Some(id) = next
        && t.get(id).is_some_and(|task| task.state == State::Runnable)
    {
        t.run_queue.retain(|&q| q != id);
        return Some(id);
    }
    while let Some(id) = t.run_queue.pop_front() {
        if t.get(id).is_some_and(|task| task.state == State::Runnable) {
            return Some(id);
        }
    }
    None
}

/// Runs tasks until `done()` holds (checked before each task runs).
pub fn run_until(mut done: impl FnMut() -> bool) -> Result<(), Stall> {
    loop {
        if done() {
            return Ok(());
        }
        let Some(id) = with_tasks(pick) else {
            return Err(Stall::AllBlocked);
        };
        run_one(id);
    }
}

/// The watchdog's budget in TSC cycles: a supervised task (a module server) that computes
/// longer than this without blocking is stopped. Set at boot from `watchdog_ms=`.
static WATCHDOG_CYCLES: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the watchdog from the kernel command line and the TSC frequency.
pub fn init_watchdog(cmdline: &str, tsc_khz: u64) {
    let ms = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(status::WATCHDOG_WORD)?.strip_prefix('='))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(status::WATCHDOG_DEFAULT_MS);
    WATCHDOG_CYCLES.store(ms.saturating_mul(tsc_khz), Ordering::Relaxed);
}

/// The watchdog's budget for a module server, in TSC cycles.
pub fn watchdog_budget() -> u64 {
    WATCHDOG_CYCLES.load(Ordering::Relaxed)
}

/// Whether task `id` is watched and has computed longer than its budget without blocking.
pub fn over_budget(t: &super::Tasks, id: TaskId) -> bool {
    t.get(id).is_some_and(|task| {
        task.watchdog.is_some_and(|budget| {
            task.running_since
                .is_some_and(|since| guest_rt::rdtsc_ordered().wrapping_sub(since) > budget)
        })
    })
}

/// The watchdog's fault record for task `id` stopped at `ctx`.
pub fn watchdog_fault(ctx: &crate::arch::UserContext) -> Fault {
    Fault {
        vector: WATCHDOG_VECTOR,
        error_code: 0,
        rip: ctx.rip,
        cr2: 0,
        rsp: ctx.rsp,
    }
}

/// Writes the status page word at `offset` (see [`kmodlab_abi::status`]).
fn status_write(offset: u64, value: u64) {
    let word = (KERNEL_VIRT_OFFSET + STATUS_GPA + offset) as *mut u64;
    // SAFETY: the status page is in the low area, mapped read-write in the kernel half of every
    // address space; only this code writes it (single CPU), the VMM only reads it.
    unsafe { word.write_volatile(value) };
}

/// Entries into user mode since boot (mirrored in the status page).
static USER_ENTRIES: AtomicU64 = AtomicU64::new(0);
/// Time slices the VMM ended (preemptions of user code) since boot.
static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);

/// Time slices the VMM ended since boot.
pub fn preemptions() -> u64 {
    PREEMPTIONS.load(Ordering::Relaxed)
}

/// Whether the VMM preempts user code (it says so on the kernel command line).
pub fn preemption_enabled() -> bool {
    crate::boot::state()
        .info
        .cmdline_str()
        .is_some_and(|c| c.split_whitespace().any(|w| w == status::PREEMPT_WORD))
}

/// Runs task `id` until its next system call or trap, and handles it.
fn run_one(id: TaskId) {
    let Some((root, user_root, mut ctx)) = with_tasks(|t| {
        let task = t.get_mut(id)?;
        task.running_since
            .get_or_insert_with(guest_rt::rdtsc_ordered);
        Some((
            task.aspace.root(),
            task.aspace.user_root(),
            task.ctx.clone(),
        ))
    }) else {
        return;
    };
    // SAFETY: every address space maps the kernel half; the task (and so its tables) stays
    // alive until it is destroyed, which switches away first (task::destroy).
    unsafe { crate::mm::paging::activate(root) };
    // With the split on, the entry loads `root` (not the kernel's own PML4, which would save
    // a CR3 write per task switch): kvm_pvm can deliver the VMM's time-slice interrupt at a
    // user RIP without switching to TSS.RSP0 (measured: the trap stub then runs on the user
    // stack), so the trap path must keep the task's user half mapped.
    crate::arch::entry::set_tables(root, user_root);
    status_write(
        status::USER_ENTRIES,
        USER_ENTRIES.fetch_add(1, Ordering::Relaxed) + 1,
    );
    status_write(status::IN_USER, 1);
    let start = guest_rt::rdtsc_ordered();
    let trap = ctx.run();
    let ran = guest_rt::rdtsc_ordered().wrapping_sub(start);
    status_write(status::IN_USER, 0);
    let alive = with_tasks(|t| match t.get_mut(id) {
        Some(task) => {
            task.ctx = ctx.clone();
            task.counters.user_cycles += ran;
            true
        }
        None => false,
    });
    if !alive {
        return;
    }
    match trap {
        Ok(Trap::Syscall) => {
            crate::stats::count_syscall();
            crate::syscalls::handle(id, &ctx)
        }
        Ok(Trap::Interrupt) => {
            // The VMM ended the slice of a task that computed without entering the kernel:
            // stop it if it has run too long, else let it go on after the others.
            PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
            let over = with_tasks(|t| {
                let over = over_budget(t, id);
                if !over {
                    t.run_queue.push_back(id);
                }
                over
            });
            if over {
                fault(id, watchdog_fault(&ctx));
            }
        }
        Ok(Trap::Exception) => {
            let report = ctx.fault.unwrap_or(FaultReport {
                vector: 0,
                error_code: 0,
                rip: ctx.rip,
                cr2: 0,
                rsp: ctx.rsp,
                rflags: ctx.rflags,
                cpl: 3,
            });
            with_tasks(|t| {
                if let Some(task) = t.get_mut(id) {
                    task.last_fault = Some(report);
                }
            });
            fault(id, fault_of(&report));
        }
        // A context outside user memory: a start address the kernel set up badly (its
        // creator's doing), or a stack pointer the program itself left outside the user half
        // when it was preempted. It cannot be resumed; stop it like a fault.
        Err(_) => fault(
            id,
            Fault {
                vector: 13,
                error_code: 0,
                rip: ctx.rip,
                cr2: 0,
                rsp: ctx.rsp,
            },
        ),
    }
}

/// The task-level record of a CPU fault report.
pub fn fault_of(r: &FaultReport) -> Fault {
    Fault {
        vector: r.vector,
        error_code: r.error_code,
        rip: r.rip,
        cr2: r.cr2,
        rsp: r.rsp,
    }
}

/// Stops task `id` for `fault`: it never runs again, calls in flight to it fail, and its
/// supervisor is told.
pub fn fault(id: TaskId, fault: Fault) {
    with_tasks(|t| crate::ipc::end_task(t, id, State::Faulted(fault)));
}

/// Asks to run `id` next unless IPC has already chosen a task (a system call that returns at
/// once lets its caller go on).
pub fn switch_to_unless_chosen(id: TaskId) {
    let mut next = NEXT.lock();
    if next.is_none() {
        *next = Some(id);
    }
}
