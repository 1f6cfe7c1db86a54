//! The boot self-test: functional checks of the kernel's core, and the three basic costs
//! kmodlab's comparisons rest on (an instruction in supervisor mode, the same in user mode,
//! and a null system call).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::arch::asm;
use core::sync::atomic::AtomicU64;

use guest_rt::{errno, fault, mode, probe, timed_loop};
use kmodlab_abi::channel::{Check, FaultKind, Reply, SelfTestParams, SelfTestReport};
use kmodlab_abi::layout::KERNEL_VIRT_OFFSET;

use crate::mm::{self, paging};
use crate::user::{self, Exit};

/// Most runs of one measurement (bounds the reply size).
const MAX_RUNS: u32 = 1001;
/// The init program in the module archive.
const INIT_PATH: &str = "sbin/init";

fn init_image() -> Result<&'static [u8], String> {
    let archive = crate::boot::initramfs().map_err(|e| format!("module archive: {e}"))?;
    archive
        .find(INIT_PATH)
        .map(|f| f.data)
        .ok_or_else(|| format!("{INIT_PATH} is not in the module archive"))
}

struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, name: &str, passed: bool, detail: String) {
        if !passed {
            kprintln!("self-test: FAILED {name}: {detail}");
        }
        self.0.push(Check {
            name: name.to_string(),
            passed,
            detail,
            not_run: None,
        });
    }

    /// Records a check that cannot run in this setup, and why.
    fn not_run(&mut self, name: &str, why: &str) {
        kprintln!("self-test: NOT RUN {name}: {why}");
        self.0.push(Check {
            name: name.to_string(),
            passed: false,
            detail: String::new(),
            not_run: Some(why.to_string()),
        });
    }

    /// Runs check `name` with `f` if system calls work (`syscalls` is `Ok`), else records
    /// why it cannot run.
    fn needing_syscalls(
        &mut self,
        syscalls: &Result<(), String>,
        name: &str,
        f: impl FnOnce() -> (bool, String),
    ) {
        match syscalls {
            Ok(()) => {
                let (passed, detail) = f();
                self.add(name, passed, detail);
            }
            Err(why) => self.not_run(name, why),
        }
    }
}

/// Whether user programs can make system calls here. Only the VMM's debug setup (a kvm_pvm
/// host booted with the hardware-KVM setup) is known to break them: the emulated `syscall`
/// does not switch to supervisor mode, so the first instruction of the entry faults at CPL 3.
/// There a program making one system call is run, and if it faults that way, the reason is
/// returned; everywhere else system calls must work and their checks run (and may fail).
fn probe_syscalls(image: &[u8]) -> Result<(), String> {
    if !crate::boot::state().info.hardware_setup_on_pvm() {
        return Ok(());
    }
    let entry = x86_64::registers::model_specific::LStar::read().as_u64();
    let outcome = user::run(image, [mode::SYSCALLS, 1, 1]);
    match &outcome {
        Ok(o) => match o.exit {
            Exit::Faulted(f) if f.cpl == 3 && f.rip == entry => Err(format!(
                "a user `syscall` does not reach supervisor mode with the hardware-KVM setup on \
                 kvm_pvm: it faulted at CPL 3 on the system call entry {entry:#x} ({}, error \
                 code {:#x})",
                f.vector_name(),
                f.error_code
            )),
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// Runs the program in `mode` and returns its reports if it exited with status 0.
fn run_init(image: &[u8], args: [u64; 3]) -> Result<Vec<u64>, String> {
    let outcome = user::run(image, args).map_err(|e| format!("{INIT_PATH}: {e}"))?;
    match outcome.exit {
        Exit::Status(0) => Ok(outcome.reports),
        other => Err(format!("{INIT_PATH} ended with {other:?}")),
    }
}

/// Runs the self-test.
pub fn run(params: SelfTestParams) -> SelfTestReport {
    let runs = params.runs.clamp(1, MAX_RUNS);
    let iterations = params.loop_iterations.max(1);
    let mut checks = Checks(Vec::new());

    let supervisor_loop_cycles: Vec<u64> = (0..runs).map(|_| timed_loop(iterations)).collect();

    let frames_before = mm::frame_stats().1;
    let (mut user_loop_cycles, mut syscall_cycles) = (Vec::new(), Vec::new());
    let mut ipc_cycles = Vec::new();
    let mut isolation = false;
    let mut isolation_warning = None;
    match init_image() {
        Err(e) => checks.add("init program present", false, e),
        Ok(image) => {
            let syscalls = probe_syscalls(image);
            checks.needing_syscalls(&syscalls, "user-mode loop runs", || {
                let r = run_init(image, [mode::LOOP, iterations.into(), runs.into()]);
                let passed = r.as_ref().is_ok_and(|v| v.len() == runs as usize);
                let detail = format!("{r:?}").chars().take(120).collect();
                user_loop_cycles = r.unwrap_or_default();
                (passed, detail)
            });
            let n = params.syscall_iterations.max(1);
            checks.needing_syscalls(&syscalls, "null system calls run", || {
                let r = run_init(image, [mode::SYSCALLS, n.into(), runs.into()]);
                let passed = r.as_ref().is_ok_and(|v| v.len() == runs as usize);
                let detail = format!("{r:?}").chars().take(120).collect();
                syscall_cycles = r.unwrap_or_default();
                (passed, detail)
            });
            check_user_faults(&mut checks, image, &syscalls);
            ipc_cycles = check_ipc(&mut checks, image, n.into(), &syscalls);
            check_preemption(&mut checks, image, &syscalls);
            (isolation, isolation_warning) = check_isolation(&mut checks, image);
        }
    }
    let frames_after = mm::frame_stats().1;
    checks.add(
        "user programs leak no frames",
        frames_before == frames_after,
        format!("{frames_before} free frames before, {frames_after} after"),
    );
    check_heap(&mut checks);
    check_mappings(&mut checks);
    check_segments_sharing_a_page(&mut checks);
    #[cfg(feature = "monolithic")]
    check_module_pages_out_of_memory(&mut checks);
    let not_run = checks.0.iter().filter(|c| c.not_run.is_some()).count();
    let failed = checks.0.iter().filter(|c| !c.passed).count() - not_run;
    if not_run > 0 {
        kprintln!(
            "self-test: {} checks, {failed} failed, {not_run} not run",
            checks.0.len()
        );
    } else {
        kprintln!("self-test: {} checks, {failed} failed", checks.0.len());
    }
    SelfTestReport {
        params: SelfTestParams {
            loop_iterations: iterations,
            runs,
            syscall_iterations: params.syscall_iterations.max(1),
        },
        supervisor_loop_cycles,
        user_loop_cycles,
        syscall_cycles,
        ipc_cycles,
        checks: checks.0,
        user_kernel_isolation: isolation,
        kpti: crate::arch::entry::enabled(),
        isolation_warning,
    }
}

/// A page of the self-test's own in a kernel data section, which user probes may overwrite.
#[repr(C, align(4096))]
struct ProbePage([AtomicU64; 512]);

/// Probed in .data.
static DATA_PROBE: ProbePage = ProbePage([const { AtomicU64::new(0x6b6d_6c61_6264_6174) }; 512]);
/// Probed in .bss.
static BSS_PROBE: ProbePage = ProbePage([const { AtomicU64::new(0) }; 512]);
/// Probed in .rodata.
#[repr(C, align(4096))]
struct ReadOnlyProbe([u64; 512]);
static RODATA_PROBE: ReadOnlyProbe = ReadOnlyProbe([0x6b6d_6c61_626f_6f72; 512]);

/// How one user-mode probe ended: `Ok(true)` the access faulted (#PF at CPL 3 on the probed
/// address), `Ok(false)` it succeeded, `Err` something else happened (the text says what; e.g.
/// a fault elsewhere, which proves nothing about the address).
type ProbeResult = Result<bool, String>;

/// Runs `init` in probe mode (`op` at `addr`) in a task of its own, after `touch` ran in the
/// kernel on that task's page tables: on kvm_pvm, what user mode can reach depends on what the
/// kernel touched under the same CR3, so the probe recreates the kernel's own accesses (a
/// system call writing its counters, the heap and its stack) under the task's root first.
fn probe_once(image: &[u8], op: u64, addr: u64, touch: &dyn Fn()) -> ProbeResult {
    use crate::task::{State, sched, with_tasks};
    let id = user::spawn(
        image,
        "probe",
        [mode::PROBE, op, addr],
        user::Session::new(),
    )
    .map_err(|e| format!("{e}"))?;
    if let Some(root) = with_tasks(|t| t.get(id).map(|x| x.aspace.root())) {
        // SAFETY: every address space maps the kernel half; the task (and so its tables) lives
        // until task::destroy below, which switches away from them first.
        unsafe { paging::activate(root) };
        touch();
    }
    let _ = sched::run_until(|| with_tasks(|t| t.get(id).is_none_or(|x| x.state.ended())));
    let end = with_tasks(|t| t.get(id).map(|x| (x.state.clone(), x.last_fault)));
    crate::task::destroy(id);
    match end {
        Some((State::Faulted(_), Some(f))) if f.vector == 14 && f.cpl == 3 && f.cr2 == addr => {
            Ok(true)
        }
        Some((State::Exited(0), _)) => Ok(false),
        other => Err(format!("{other:?}")),
    }
}

/// Whether user mode faults when it reads or writes each kind of kernel memory after the
/// kernel touched it: text, rodata, .data, .bss, a heap page, the current kernel stack, the
/// TSS page, and another task's page through the kernel's direct map. Every probe is a check
/// wherever something isolates the kernel: U/S on hardware KVM, the page-table split
/// (`kpti=on`, see `arch::entry`) on either. On kvm_pvm with the split off nothing does
/// (`results/pvm/2026-12-01-isolation-and-preemption.md`, Q1, Q2): there the probes' outcomes
/// become one warning instead. Returns whether every probe faulted, and the warning.
fn check_isolation(checks: &mut Checks, image: &[u8]) -> (bool, Option<String>) {
    use crate::task::with_tasks;
    use kmodlab_ipc::layout::STACK_TOP;
    let reported = !paging::kernel_entries_user() || crate::arch::entry::enabled();
    let layout = crate::boot::image_layout();
    let heap = alloc::boxed::Box::new(ProbePage([const { AtomicU64::new(1) }; 512]));
    // A slot of this very stack frame: a user write that lands can only change these words.
    let stack = [const { AtomicU64::new(1) }; 8];
    // Another task, never run (created, not woken): one page of its own, which the kernel
    // writes through the direct map (as IPC copies do) under the probing task's root.
    let page_size = kmodlab_abi::layout::PAGE_SIZE;
    let victim = with_tasks(|t| t.create("probe-victim", None, 0, user::Session::none())).ok();
    let victim_page = victim.and_then(|v| {
        with_tasks(|t| {
            let x = t.get_mut(v)?;
            x.aspace
                .map_zeroed(STACK_TOP - page_size, 1, kmodlab_ipc::task::Perm::ReadWrite)
                .ok()
        })
        .map(paging::phys_to_virt)
    });
    let tss_unused = KERNEL_VIRT_OFFSET + kmodlab_abi::layout::TSS_GPA + 0x800;
    let mut targets: Vec<(&str, u64, bool)> = alloc::vec![
        ("kernel text", layout.text.0, false),
        ("kernel rodata", RODATA_PROBE.0.as_ptr() as u64, false),
        ("kernel .data", DATA_PROBE.0.as_ptr() as u64, true),
        ("kernel .bss", BSS_PROBE.0.as_ptr() as u64, true),
        ("a kernel heap page", heap.0.as_ptr() as u64, true),
        ("the current kernel stack", stack.as_ptr() as u64, true),
        ("the TSS page", tss_unused, true),
    ];
    match victim_page {
        Some(p) => targets.push(("another task's page", p, true)),
        None => checks.add(
            "a second task for the isolation probes starts",
            false,
            "no task or memory for it".into(),
        ),
    }
    let mut isolated = true;
    let mut reachable = Vec::new();
    for &(name, addr, kernel_writes) in &targets {
        let touch = || {
            // SAFETY: `addr` is one of the targets above: mapped kernel memory that the
            // kernel may read; written only where `kernel_writes`, and then only words that
            // belong to the self-test (its own statics and locals, the unused part of the TSS
            // page, a page of a task that never runs), written with what they already hold.
            unsafe {
                let v = core::ptr::read_volatile(addr as *const u64);
                if kernel_writes {
                    core::ptr::write_volatile(addr as *mut u64, v);
                }
            }
        };
        for (op_name, op) in [("read", probe::READ), ("write", probe::WRITE)] {
            let r = probe_once(image, op, addr, &touch);
            let faulted = r == Ok(true);
            isolated &= faulted;
            if reported {
                checks.add(
                    &format!("user mode cannot {op_name} {name}"),
                    faulted,
                    format!("{addr:#x}: {r:?}"),
                );
            } else if !faulted {
                reachable.push(match r {
                    Ok(_) => format!("{op_name} {name}"),
                    Err(e) => format!("{op_name} {name} (probe ended as {e})"),
                });
            }
        }
    }
    if let Some(v) = victim {
        crate::task::destroy(v);
    }
    core::hint::black_box(&stack);
    drop(heap);
    let warning = (!reported && !reachable.is_empty()).then(|| {
        format!(
            "kpti=off on kvm_pvm: guest user mode can read and write what the guest kernel \
             touched under the same page tables; the probes could {} (kernel pages need U/S for \
             native supervisor execution here; boot with kpti=on for user page tables of their \
             own)",
            reachable.join(", ")
        )
    });
    if let Some(w) = &warning {
        kprintln!("self-test: WARNING: {w}");
    }
    (isolated, warning)
}

/// Runs an IPC server and a client (both `init`), the client holding a capability to the
/// server's endpoint in `PEER_SLOT` (and the server one to the client's, if `call_back`);
/// returns the client's reports once it ended. Both tasks are destroyed afterwards.
fn ipc_pair(
    image: &[u8],
    serve: u64,
    client: (u64, u64),
    call_back: bool,
) -> Result<Vec<u64>, String> {
    use crate::task::{Cap, with_tasks};
    use kmodlab_ipc::cap::rights;
    let spawn = |name, args| {
        user::spawn(image, name, args, user::Session::new()).map_err(|e| format!("{e}"))
    };
    let server = spawn("ipc-server", [mode::IPC_SERVER, serve, 0])?;
    let caller = match spawn("ipc-client", [mode::IPC_CLIENT, client.0, client.1]) {
        Ok(c) => c,
        Err(e) => {
            crate::task::destroy(server);
            return Err(e);
        }
    };
    with_tasks(|t| {
        let peer = guest_rt::ipc_test::PEER_SLOT as usize;
        let grant = |owner| {
            Some(Cap::Endpoint {
                owner,
                badge: 7,
                rights: rights::SEND,
            })
        };
        if let Some(c) = t.get_mut(caller) {
            c.caps[peer] = grant(server);
        }
        if call_back && let Some(s) = t.get_mut(server) {
            s.caps[peer] = grant(caller);
        }
    });
    let ran = crate::task::sched::run_until(|| {
        with_tasks(|t| t.get(caller).is_none_or(|c| c.state.ended()))
    });
    let outcome = with_tasks(|t| {
        t.get_mut(caller)
            .map(|c| (c.state.clone(), core::mem::take(&mut c.reports)))
    });
    crate::task::destroy(caller);
    crate::task::destroy(server);
    match (ran, outcome) {
        (Ok(()), Some((crate::task::State::Exited(0), reports))) => Ok(reports),
        (_, other) => Err(format!("the client ended as {:?}", other.map(|o| o.0))),
    }
}

/// IPC between two tasks: the round-trip cost, a full message (words, payload, both kinds of
/// lease) delivered exactly, and the kernel's refusals: a dead server (`EPIPE`), a call cycle
/// (`EDEADLK`), a malformed message (`EINVAL`), an empty capability slot (`EBADF`).
fn check_ipc(
    checks: &mut Checks,
    image: &[u8],
    iterations: u64,
    syscalls: &Result<(), String>,
) -> Vec<u64> {
    use guest_rt::ipc_test::*;
    let neg = |e: u64| e.wrapping_neg();
    let mut cycles = Vec::new();
    checks.needing_syscalls(syscalls, "IPC round trips run", || {
        let r = ipc_pair(image, SERVE_ECHO, (CLIENT_PINGPONG, iterations), false);
        let passed = r.as_ref().is_ok_and(|v| v.len() == 9);
        let detail = format!("{r:?}").chars().take(120).collect();
        cycles = r.unwrap_or_default();
        (passed, detail)
    });
    /// One IPC refusal or delivery check: a server mode, a client mode and argument, whether
    /// the server may call the client back, and the client's expected reports.
    struct Case {
        name: &'static str,
        serve: u64,
        client: (u64, u64),
        call_back: bool,
        expected: Vec<u64>,
    }
    let case = |name, serve, client, call_back, expected| Case {
        name,
        serve,
        client,
        call_back,
        expected,
    };
    let cases = [
        case(
            "IPC delivers words, payload and leases exactly",
            SERVE_ECHO,
            (CLIENT_ECHO, 0),
            false,
            alloc::vec![1],
        ),
        case(
            "a call to a server that dies fails with EPIPE from the kernel",
            SERVE_FAULT,
            (CLIENT_RAW, 0),
            false,
            alloc::vec![neg(errno::EPIPE), 1],
        ),
        case(
            "a call cycle fails with EDEADLK instead of hanging",
            SERVE_CALL_BACK,
            (CLIENT_RAW, 0),
            true,
            alloc::vec![errno::EDEADLK, 0],
        ),
        case(
            "a malformed message fails with EINVAL",
            SERVE_ECHO,
            (CLIENT_MALFORMED, 0),
            false,
            alloc::vec![neg(errno::EINVAL)],
        ),
        case(
            "a call through an empty capability slot fails with EBADF",
            SERVE_ECHO,
            (CLIENT_BAD_SLOT, 0),
            false,
            alloc::vec![neg(errno::EBADF)],
        ),
    ];
    for c in cases {
        checks.needing_syscalls(syscalls, c.name, || {
            let r = ipc_pair(image, c.serve, c.client, c.call_back);
            (r.as_ref() == Ok(&c.expected), format!("{r:?}"))
        });
    }
    cycles
}

/// Iterations of the preemption check's computation: long enough (tens of milliseconds) to
/// span several of the VMM's time slices.
const CHURN_ITERATIONS: u64 = 60_000_000;
/// The watchdog budget of the self-test's looping task, in milliseconds.
const SPIN_BUDGET_MS: u64 = 30;

/// Preemption: a program that computes without system calls is interrupted by the VMM's
/// time slices and resumed with every register intact (its result equals the same
/// computation in supervisor mode); a watched program that loops forever is stopped by the
/// watchdog. Both need the VMM's time slices; without them, the checks say so.
fn check_preemption(checks: &mut Checks, image: &[u8], syscalls: &Result<(), String>) {
    use crate::task::{State, sched, with_tasks};
    if !sched::preemption_enabled() {
        checks.add(
            "preemption is off (the VMM was started without time slices)",
            true,
            String::new(),
        );
        return;
    }
    checks.needing_syscalls(
        syscalls,
        "a computing program is preempted and resumes with its registers intact",
        || {
            let before = sched::preemptions();
            let r = run_init(image, [mode::CHURN, CHURN_ITERATIONS, 0]);
            let preempted = sched::preemptions() - before;
            let expected = guest_rt::register_churn(CHURN_ITERATIONS);
            (
                r == Ok(alloc::vec![expected]) && preempted > 0,
                format!("{r:x?}, expected [{expected:#x}], {preempted} preemptions"),
            )
        },
    );
    if let Err(why) = syscalls {
        checks.not_run(
            "a program that loops forever is stopped by the watchdog",
            why,
        );
        return;
    }
    // A program that loops forever, first on its own stack, then with RSP pointing at an
    // unmapped page and at kernel memory: the time-slice interrupt that lets the watchdog
    // stop it must not depend on the program's stack (on kvm_pvm it is not delivered on
    // TSS.RSP0, see `idt::enable_ist_stacks`).
    for (name, which, rsp) in [
        (
            "a program that loops forever is stopped by the watchdog",
            mode::SPIN_FOREVER,
            0,
        ),
        (
            "a program that loops forever with RSP on an unmapped page is stopped by the watchdog",
            mode::SPIN_ON_STACK,
            0x10,
        ),
        (
            "a program that loops forever with RSP in kernel memory is stopped by the watchdog",
            mode::SPIN_ON_STACK,
            guest_rt::KERNEL_PROBE_ADDRESS,
        ),
    ] {
        let preemptions_before = sched::preemptions();
        let spun = user::spawn(image, "spin", [which, rsp, 0], user::Session::new())
            .map_err(|e| format!("{e}"))
            .map(|id| {
                let khz = crate::boot::state().info.tsc_khz;
                with_tasks(|t| {
                    if let Some(task) = t.get_mut(id) {
                        task.watchdog = Some(SPIN_BUDGET_MS * khz);
                    }
                });
                let _ =
                    sched::run_until(|| with_tasks(|t| t.get(id).is_none_or(|x| x.state.ended())));
                let state = with_tasks(|t| t.get(id).map(|x| x.state.clone()));
                crate::task::destroy(id);
                state
            });
        let preempted = sched::preemptions() - preemptions_before;
        // The kernel resumes no context whose RSP is outside the user half
        // (`UserContext::run`): after its first time slice such a program is stopped with
        // #GP at its own RIP rather than by the watchdog. Either way it is stopped and
        // nothing else is touched, which is what this checks.
        let stopped = match &spun {
            Ok(Some(State::Faulted(f))) => {
                f.vector == kmodlab_ipc::task::WATCHDOG_VECTOR
                    || (rsp >= crate::arch::syscall::USER_END && f.vector == 13 && preempted > 0)
            }
            _ => false,
        };
        checks.add(
            name,
            stopped,
            format!("{spun:?} after {preempted} preemptions"),
        );
    }
}

fn check_user_faults(checks: &mut Checks, image: &[u8], syscalls: &Result<(), String>) {
    for (name, which, vector) in [
        ("user #GP is contained", fault::GENERAL_PROTECTION, 13u8),
        ("user #UD is contained", fault::INVALID_OPCODE, 6),
        (
            "user null dereference is contained",
            fault::NULL_DEREFERENCE,
            14,
        ),
        (
            "user stack overflow is contained",
            fault::STACK_OVERFLOW,
            14,
        ),
        (
            "user mode cannot write kernel memory",
            fault::WRITE_KERNEL,
            14,
        ),
    ] {
        let outcome = user::run(image, [mode::FAULT, which, 0]);
        let passed = matches!(
            &outcome,
            Ok(o) if matches!(o.exit, Exit::Faulted(f) if f.vector == vector && f.cpl == 3)
        );
        checks.add(name, passed, format!("{:?}", outcome.map(|o| o.exit)));
    }
    checks.needing_syscalls(syscalls, "a write longer than 64 KiB gives EINVAL", || {
        let r = run_init(image, [mode::HUGE_WRITE, 0, 0]);
        let einval = errno::EINVAL.wrapping_neg();
        (r == Ok(alloc::vec![einval, einval]), format!("{r:?}"))
    });
    checks.needing_syscalls(
        syscalls,
        "task_map into itself without the factory gives EACCES",
        || {
            let r = run_init(image, [mode::MAP_SELF, kmodlab_ipc::layout::HEAP_BASE, 0]);
            (r == Ok(alloc::vec![errno::EACCES]), format!("{r:?}"))
        },
    );
    checks.needing_syscalls(syscalls, "a bad user pointer gives EFAULT", || {
        let r = run_init(image, [mode::BAD_POINTER, 0, 0]);
        (
            r == Ok(alloc::vec![errno::EFAULT.wrapping_neg()]),
            format!("{r:?}"),
        )
    });
}

fn check_heap(checks: &mut Checks) {
    let before = mm::heap_stats().used;
    let mut v: Vec<u64> = (0..131_072u64).collect();
    v.iter_mut()
        .for_each(|x| *x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let sum_ok = v
        .iter()
        .enumerate()
        .all(|(i, x)| *x == (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    drop(v);
    let after = mm::heap_stats().used;
    checks.add(
        "heap allocates 1 MiB and frees it",
        sum_ok && before == after,
        format!("used {before} bytes before, {after} after"),
    );
}

fn check_mappings(checks: &mut Checks) {
    let image = crate::boot::image_layout();
    // On PVM kernel entries carry U/S by necessity (see mm::paging).
    let kernel_user = paging::kernel_entries_user();
    let text = paging::translate(image.text.0);
    checks.add(
        "kernel text is executable, not writable",
        matches!(text, Some(m) if m.executable && !m.writable && m.user == kernel_user),
        format!("{text:?}"),
    );
    let rodata = paging::translate(image.rodata.0);
    checks.add(
        "kernel rodata is neither writable nor executable",
        matches!(rodata, Some(m) if !m.executable && !m.writable),
        format!("{rodata:?}"),
    );
    let data = paging::translate(image.data.0);
    checks.add(
        "kernel data is writable, not executable",
        matches!(data, Some(m) if !m.executable && m.writable),
        format!("{data:?}"),
    );
    let direct = paging::translate(paging::PHYS_MAP_BASE + 0x20_0000);
    checks.add(
        "the direct map is not executable",
        matches!(direct, Some(m) if !m.executable && m.user == kernel_user),
        format!("{direct:?}"),
    );
    checks.add(
        "page 0 is unmapped",
        paging::translate(0).is_none() && paging::translate(KERNEL_VIRT_OFFSET).is_none(),
        String::new(),
    );
}

/// A minimal ELF executable: two `PT_LOAD` segments of 16 bytes in one page at
/// `0x40_0000`, code (`flags_a`, holding the entry point) at offset 0x100 and data
/// (`flags_b`) at offset 0x800.
fn two_segments_in_one_page(flags_a: u32, flags_b: u32) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let mut elf = alloc::vec![0u8; 0x900];
    elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\0");
    let mut put = |at: usize, bytes: &[u8]| elf[at..at + bytes.len()].copy_from_slice(bytes);
    put(16, &2u16.to_le_bytes()); // ET_EXEC
    put(18, &0x3eu16.to_le_bytes()); // EM_X86_64
    put(20, &1u32.to_le_bytes());
    put(24, &(BASE + 0x100).to_le_bytes()); // e_entry
    put(32, &64u64.to_le_bytes()); // e_phoff
    put(52, &64u16.to_le_bytes()); // e_ehsize
    put(54, &56u16.to_le_bytes()); // e_phentsize
    put(56, &2u16.to_le_bytes()); // e_phnum
    for (i, (flags, offset)) in [(flags_a, 0x100u64), (flags_b, 0x800)]
        .into_iter()
        .enumerate()
    {
        let ph = 64 + 56 * i;
        put(ph, &1u32.to_le_bytes()); // PT_LOAD
        put(ph + 4, &flags.to_le_bytes());
        put(ph + 8, &offset.to_le_bytes());
        put(ph + 16, &(BASE + offset).to_le_bytes()); // p_vaddr
        put(ph + 24, &(BASE + offset).to_le_bytes()); // p_paddr
        put(ph + 32, &16u64.to_le_bytes()); // p_filesz
        put(ph + 40, &16u64.to_le_bytes()); // p_memsz
        put(ph + 48, &0x1000u64.to_le_bytes()); // p_align
    }
    elf
}

/// Two program segments sharing a page load with the permission both need (code and
/// read-only data: executable, not writable), or are refused when that would break W^X
/// (code and writable data); either way nothing panics and no frame stays taken.
fn check_segments_sharing_a_page(checks: &mut Checks) {
    // The ELF `p_flags` bits.
    const PF_X: u32 = 1;
    const PF_W: u32 = 2;
    const PF_R: u32 = 4;
    let free_before = mm::frame_stats().1;
    let shared = crate::task::aspace::AddressSpace::new().map_err(|e| format!("{e:?}"));
    let loaded = shared.and_then(|mut a| {
        let image = two_segments_in_one_page(PF_R | PF_X, PF_R);
        let entry = user::load(&mut a, &image).map_err(|e| e.to_string())?;
        Ok((entry, a.translate(0x40_0800)))
    });
    let refused = crate::task::aspace::AddressSpace::new()
        .map_err(|e| format!("{e:?}"))
        .map(|mut a| {
            user::load(&mut a, &two_segments_in_one_page(PF_R | PF_X, PF_R | PF_W))
                .map_err(|e| e.to_string())
        });
    let free_after = mm::frame_stats().1;
    let passed = matches!(&loaded, Ok((0x40_0100, Some(m))) if m.executable && !m.writable)
        && matches!(&refused, Ok(Err(e)) if e.contains("writable and executable"))
        && free_before == free_after;
    checks.add(
        "program segments sharing a page load with W^X kept",
        passed,
        format!(
            "code + rodata: {loaded:?}; code + data: {refused:?}; {free_before} free frames \
             before, {free_after} after"
        ),
    );
}

/// Running out of frames anywhere in [`paging::map_module_pages`] (for a page, or for a page
/// table `map_to` needs) is an error that leaves nothing mapped and no frame taken but page
/// tables; the undo (`unmap_module_pages`) needs no memory. Frames are made to run out after
/// k successful allocations, for k = 0, 1, 2, … until the mapping succeeds, over four pages
/// that straddle a 2 MiB boundary of a fresh part of the module area, so that the failure
/// points include the allocation of a page table. The same for
/// [`paging::map_module_pages_scattered`] (frames one at a time, and a write window that
/// straddles another boundary), whose undo also removes the window.
#[cfg(feature = "monolithic")]
fn check_module_pages_out_of_memory(checks: &mut Checks) {
    use kmodlab_abi::layout::PAGE_SIZE;
    const TABLE_SPAN: u64 = 512 * PAGE_SIZE;
    const RESERVED: u64 = 3 * 512;
    const PAGES: u64 = 4;
    for scattered in [false, true] {
        let name = if scattered {
            "running out of frames while mapping scattered module pages maps and leaks nothing"
        } else {
            "running out of frames while mapping module pages maps and leaks nothing"
        };
        let Some(start) = crate::module::area::reserve(2 * RESERVED) else {
            checks.add(name, false, "no room in the module area".into());
            return;
        };
        // Page-table boundaries with two pages on each side, inside the reservation: one for
        // the region, one (a fresh table) for the window.
        let virt = (start + 2 * PAGE_SIZE).next_multiple_of(TABLE_SPAN) - 2 * PAGE_SIZE;
        let window = virt + 2 * TABLE_SPAN;
        let map = || {
            let perm = |_| paging::KernelPerm::ReadWrite;
            if scattered {
                paging::map_module_pages_scattered(virt, window, PAGES, perm)
            } else {
                paging::map_module_pages(virt, PAGES, perm).map(drop)
            }
        };
        let mut failures = 0u64;
        let mut table_failures = 0u64;
        let mut problem = None;
        for k in 0..32u64 {
            let free_before = mm::frame_stats().1;
            let (tables_before, table_failures_before) = paging::kernel_table_frames();
            mm::frame::fail_after(Some(k));
            let result = map();
            mm::frame::fail_after(None);
            let (tables_after, table_failures_after) = paging::kernel_table_frames();
            let tables = tables_after - tables_before;
            table_failures += table_failures_after - table_failures_before;
            if result.is_ok() {
                if scattered {
                    paging::unmap_module_alias(window, PAGES);
                }
                paging::unmap_module_pages(virt, PAGES);
            } else {
                failures += 1;
            }
            let free_after = mm::frame_stats().1;
            let mapped = (0..PAGES)
                .flat_map(|i| [virt + i * PAGE_SIZE, window + i * PAGE_SIZE])
                .filter(|&a| paging::translate(a).is_some());
            if free_after + tables != free_before || mapped.count() != 0 {
                problem = Some(format!(
                    "after {k} allocations: {free_before} free frames before, {free_after} \
                     after, {tables} new page tables; result {result:?}"
                ));
                break;
            }
            if result.is_ok() {
                break;
            }
        }
        crate::module::area::release(start, 2 * RESERVED);
        let detail = problem.clone().unwrap_or_else(|| {
            format!("{failures} failure points, {table_failures} of them a page table's")
        });
        checks.add(
            name,
            // Failure points for the region's frames (one contiguous allocation, or one per
            // page), one per page table the ranges need.
            problem.is_none() && failures > table_failures && table_failures > 0,
            detail,
        );
    }
}

/// Faults in supervisor mode, as asked; never returns.
pub fn supervisor_fault(kind: FaultKind) -> ! {
    match kind {
        FaultKind::NullDereference => {
            // SAFETY: none: this read is meant to fault (page 0 is never mapped).
            let v = unsafe { core::ptr::read_volatile(core::ptr::null::<u64>()) };
            panic!("reading address 0 returned {v:#x}");
        }
        FaultKind::InvalidOpcode => {
            // SAFETY: none: ud2 is meant to fault.
            unsafe { asm!("ud2", options(noreturn)) }
        }
        FaultKind::DivideByZero => {
            // SAFETY: none: dividing by zero is meant to fault.
            unsafe {
                asm!("xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _);
            }
            panic!("division by zero did not fault");
        }
        FaultKind::GeneralProtection => {
            // SAFETY: none: a non-canonical address is meant to fault with #GP.
            let v = unsafe { core::ptr::read_volatile(0x8000_0000_0000_0000 as *const u64) };
            panic!("reading a non-canonical address returned {v:#x}");
        }
        FaultKind::StackOverflow => {
            let depth = guest_rt::overflow_stack(core::hint::black_box(0));
            panic!("recursion returned at depth {depth}");
        }
    }
}

/// Runs the init program in fault mode and reports what the kernel contained.
pub fn user_fault(kind: FaultKind) -> Reply {
    let which = match kind {
        FaultKind::NullDereference => fault::NULL_DEREFERENCE,
        FaultKind::InvalidOpcode => fault::INVALID_OPCODE,
        FaultKind::DivideByZero => fault::DIVIDE_BY_ZERO,
        FaultKind::GeneralProtection => fault::GENERAL_PROTECTION,
        FaultKind::StackOverflow => fault::STACK_OVERFLOW,
    };
    let image = match init_image() {
        Ok(i) => i,
        Err(e) => return Reply::Error(e),
    };
    match user::run(image, [mode::FAULT, which, 0]) {
        Ok(o) => match o.exit {
            Exit::Faulted(f) => {
                kprintln!(
                    "user program faulted: {} at {:#x}; kernel continues",
                    f.vector_name(),
                    f.rip
                );
                Reply::UserFaultContained(f)
            }
            Exit::Status(s) => {
                Reply::Error(format!("the program exited with {s} instead of faulting"))
            }
            Exit::Stalled => Reply::Error("the program blocked instead of faulting".into()),
        },
        Err(e) => Reply::Error(format!("{e}")),
    }
}
