//! Code the guest kernel and the guest user programs must share exactly: the cycle counter,
//! the tight loop whose cost is compared between privilege levels, and the system call ABI
//! (numbers, capabilities, error codes).
//! The loop lives here once so that "supervisor" and "user" run the same instructions.
#![no_std]

use core::arch::asm;

/// Reads the TSC, ordered after every earlier instruction (`lfence; rdtsc`).
///
/// `rdtsc` alone may execute before the instructions it is meant to time have finished;
/// the `lfence` keeps it in program order on both Intel and AMD.
#[inline(always)]
pub fn rdtsc_ordered() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: lfence and rdtsc read the time-stamp counter and touch no memory; rdtsc is
    // allowed at every privilege level because the kernel never sets CR4.TSD.
    unsafe {
        asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Runs `iterations` of `dec ecx; jnz` and returns the TSC cycles it took.
///
/// Two instructions per iteration with no memory access: its cost is the cost of executing
/// instructions at the current privilege level, which is exactly what differs between
/// native and emulated supervisor mode on kvm_pvm.
#[inline(never)]
pub fn timed_loop(iterations: u32) -> u64 {
    let start = rdtsc_ordered();
    // SAFETY: the loop only decrements a register it owns; it touches no memory.
    unsafe {
        asm!(
            "2:",
            "dec {n:e}",
            "jnz 2b",
            n = inout(reg) iterations.max(1) => _,
            options(nomem, nostack),
        );
    }
    rdtsc_ordered() - start
}

/// Runs `iterations` rounds of a register-only mix that keeps its state in RCX and R11 (the
/// registers `sysretq` overwrites) and returns it: a program resumed after an interrupt with
/// any register lost computes a different value, so the kernel can check preemption against
/// the same function run in supervisor mode.
#[inline(never)]
pub fn register_churn(iterations: u64) -> u64 {
    let out: u64;
    // SAFETY: the loop only computes in the registers it declares; it touches no memory.
    unsafe {
        asm!(
            "mov rcx, 0x9e3779b97f4a7c15",
            "mov r11, 0x2545f4914f6cdd1d",
            "2:",
            "xor rcx, r11",
            "rol rcx, 13",
            "add r11, rcx",
            "dec {n}",
            "jnz 2b",
            "mov {out}, rcx",
            "xor {out}, r11",
            n = inout(reg) iterations.max(1) => _,
            out = out(reg) out,
            out("rcx") _,
            out("r11") _,
            options(nomem, nostack),
        );
    }
    out
}

/// Recurses, using 4 KiB of stack per level, until the stack's guard page stops it: the
/// stack-overflow fault both privilege levels' tests cause. Never returns normally.
#[allow(unconditional_recursion)] // it ends at the stack's guard page, on purpose
pub fn overflow_stack(depth: u64) -> u64 {
    let mut pad = [0u8; 4096];
    pad[depth as usize % 4096] = depth as u8;
    core::hint::black_box(&mut pad);
    overflow_stack(depth + 1) + u64::from(pad[0])
}

/// System call numbers (`rax` at `syscall`). Arguments go in `rdi, rsi, rdx, r10, r8, r9`,
/// the result comes back in `rax`: a non-negative value, or a negated [`errno`] code.
pub mod nr {
    /// Does nothing and returns 0: the null system call.
    pub const NULL: u64 = 0;
    /// Ends the calling program with status `rdi`.
    pub const EXIT: u64 = 1;
    /// Hands one 64-bit result (`rdi`) to the kernel task that started the program.
    pub const REPORT: u64 = 2;
    /// Writes `rsi` bytes at user address `rdi` to the console.
    pub const WRITE: u64 = 3;
    /// `init_module(image, image_len, params, params_len)`: loads a module from the image
    /// (copied into the kernel) with parameters `key=value …`. Needs
    /// [`super::cap::SYS_MODULE`].
    pub const INIT_MODULE: u64 = 10;
    /// `delete_module(name, name_len, flags)`: unloads a module. Needs
    /// [`super::cap::SYS_MODULE`]; `-ENOSYS` in a kernel without module unloading.
    pub const DELETE_MODULE: u64 = 11;
    /// `read_file(path, path_len, buf, cap)`: copies a file of the module archive; returns
    /// its size (copying nothing when `cap` is too small).
    pub const READ_FILE: u64 = 12;
    /// `read_proc(name, name_len, buf, cap)`: copies a kernel-generated text (`modules`,
    /// `modules-verbose`, `kmsg`, `files`); returns its size like `read_file`.
    pub const READ_PROC: u64 = 13;
    /// `read_input(buf, cap)`: reads input (script or console) like `read(2)` on a terminal:
    /// at most `cap` bytes and at most one line (a longer line comes in several reads, none
    /// of it lost); 0 at the end of input; `-EINVAL` for `cap` 0.
    pub const READ_INPUT: u64 = 14;
    /// `cap_drop(mask)`: gives up capabilities for good.
    pub const CAP_DROP: u64 = 15;
    /// `last_error(buf, cap)`: the kernel's explanation of this program's last failed module
    /// operation; returns its size like `read_file`.
    pub const LAST_ERROR: u64 = 16;
}

/// Capabilities of a user program (a bit mask).
pub mod cap {
    /// May load and unload modules (Linux's CAP_SYS_MODULE).
    pub const SYS_MODULE: u64 = 1 << 0;
    /// Every capability.
    pub const ALL: u64 = SYS_MODULE;
}

/// Error codes returned (negated) by system calls: Linux's numbers, from the one table in
/// `kmod_api::errno` (shared with the modules, the C header and the host tests).
pub mod errno {
    pub use kmod_api::errno::Describe;
    pub use kmod_api::errno::values::*;

    /// What `strerror` prints for `errno` (glibc's text, or `Unknown error N`).
    pub fn describe(errno: u64) -> Describe {
        kmod_api::errno::describe(errno)
    }
}

/// Modes the kernel starts the `init` program in (`rdi` at entry).
pub mod mode {
    /// Report `runs` (`rdx`) timings of [`super::timed_loop`] with `rsi` iterations.
    pub const LOOP: u64 = 1;
    /// Report `runs` (`rdx`) timings of `rsi` null system calls.
    pub const SYSCALLS: u64 = 2;
    /// Cause fault number `rsi` (see [`super::fault`]).
    pub const FAULT: u64 = 3;
    /// Pass a bad pointer to `write` and report the result.
    pub const BAD_POINTER: u64 = 4;
    /// Serve IPC on the own endpoint, behaving as [`super::ipc_test`]`::SERVE_*` `rsi` says.
    pub const IPC_SERVER: u64 = 5;
    /// Call the endpoint in capability slot [`super::ipc_test::PEER_SLOT`] as
    /// [`super::ipc_test`]`::CLIENT_*` `rsi` says, with `rdx` as its parameter; report.
    pub const IPC_CLIENT: u64 = 6;
    /// Report [`super::register_churn`] of `rsi` iterations (long enough to be preempted).
    pub const CHURN: u64 = 7;
    /// Loop forever without a system call.
    pub const SPIN_FOREVER: u64 = 8;
    /// Ask `write` for 64 KiB + 1 bytes and for `u64::MAX` bytes of a valid buffer, and
    /// report both results (the kernel must refuse both, not allocate the length).
    pub const HUGE_WRITE: u64 = 9;
    /// Access the address in `rdx` as [`super::probe`]`::*` `rsi` says, report what was read
    /// (a read) or [`super::probe::MARK`] (a write), and exit 0. A fault ends the program.
    pub const PROBE: u64 = 10;
    /// Load `rsi` into RSP and loop forever without a system call: a time-slice interrupt
    /// must not need the program's stack (the self-test passes an unmapped and a kernel
    /// address).
    pub const SPIN_ON_STACK: u64 = 11;
    /// Ask `task_map` for one page at `rsi` in the program itself (`SELF_TASK`) and report
    /// the result: only the factory's holder may do that, so the kernel must refuse.
    pub const MAP_SELF: u64 = 12;
}

/// Accesses for [`mode::PROBE`]: the self-test's user-mode probes of kernel memory.
pub mod probe {
    /// Read 8 bytes.
    pub const READ: u64 = 1;
    /// Write [`MARK`] over 8 bytes.
    pub const WRITE: u64 = 2;
    /// What a probing write stores ("PROBEWRT").
    pub const MARK: u64 = 0x5452_5745_424f_5250;
}

/// The IPC self-test's protocol between the kernel and `init` in the IPC modes.
pub mod ipc_test {
    /// The capability slot the kernel grants a client (the server) or a call-back server (the
    /// client).
    pub const PEER_SLOT: u64 = 3;
    /// Server: answer every call with status `op + word 0`, the words reversed, and the
    /// payload and lease 0 echoed (lease 0 read, written back reversed into lease 1).
    pub const SERVE_ECHO: u64 = 1;
    /// Server: receive one call, then fault (`ud2`) without replying.
    pub const SERVE_FAULT: u64 = 2;
    /// Server: on a call, call back the caller (slot `PEER_SLOT`) and reply with the negated
    /// result of that call back as status (`EDEADLK` expected).
    pub const SERVE_CALL_BACK: u64 = 3;
    /// Client: time `rdx` null calls, repeated 9 times; report each run's cycles.
    pub const CLIENT_PINGPONG: u64 = 1;
    /// Client: one call with payload and leases; report 1 if every echoed byte and word is
    /// right, else 0.
    pub const CLIENT_ECHO: u64 = 2;
    /// Client: one null call; report its raw result (status or negated errno) and whether
    /// the kernel gave it.
    pub const CLIENT_RAW: u64 = 3;
    /// Client: a malformed message (9 leases); report the raw result.
    pub const CLIENT_MALFORMED: u64 = 4;
    /// Client: a call through an empty capability slot; report the raw result.
    pub const CLIENT_BAD_SLOT: u64 = 5;
}

/// An address inside the kernel image (its first page of text); user mode must not reach it.
pub const KERNEL_PROBE_ADDRESS: u64 = 0xffff_ffff_8020_0000;

/// Fault numbers for [`mode::FAULT`].
pub mod fault {
    /// Read address 0.
    pub const NULL_DEREFERENCE: u64 = 1;
    /// `ud2`.
    pub const INVALID_OPCODE: u64 = 2;
    /// Divide by zero.
    pub const DIVIDE_BY_ZERO: u64 = 3;
    /// Execute `hlt` (privileged).
    pub const GENERAL_PROTECTION: u64 = 4;
    /// Recurse until the stack runs out.
    pub const STACK_OVERFLOW: u64 = 5;
    /// Read kernel memory (the start of the kernel image).
    pub const READ_KERNEL: u64 = 6;
    /// Write kernel memory (the kernel's data).
    pub const WRITE_KERNEL: u64 = 7;
}
