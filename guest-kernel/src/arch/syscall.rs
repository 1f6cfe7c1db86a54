//! User mode: entering it with `sysretq`, coming back by `syscall` or by a trap.
//!
//! The kernel runs user code as a call: [`UserContext::run`] saves the kernel's callee-saved
//! registers, loads the user registers and executes `sysretq`; the next `syscall` (or an
//! exception in user mode) saves the user registers back into the context and returns from
//! `run` with the reason. The kernel thus stays an ordinary loop around `run`, and a
//! scheduler is just a choice of which context to run next.
//!
//! The code between the kernel and user mode is in `.entry_text`, mapped in the user view of
//! the page tables too (see [`super::entry`]): with the split on, the exit switches CR3 to the
//! task's user view as its last step and the `syscall` entry switches back as its first.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use kmodlab_abi::channel::FaultReport;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, Msr, SFMask};
use x86_64::registers::rflags::RFlags;

use super::gdt::{KERNEL_CS, SYSRET_BASE, USER_CS, USER_SS};
use super::idt::TrapFrame;

/// RFLAGS a user program starts with: the always-one bit and IF. User mode runs with
/// interrupts enabled so that the VMM's time-slice interrupt
/// ([`kmodlab_abi::status::PREEMPT_VECTOR`]) can take the CPU back from it on hardware KVM;
/// the kernel itself always runs with them off (SFMASK clears IF on `syscall`, every IDT gate
/// is an interrupt gate). On kvm_pvm `sysretq` ignores R11.IF (the virtual interrupt flag is
/// the VIF page's `if_`, which the kernel leaves 0) and the VMM injects only when the vCPU's
/// RIP is in the user half (measured: `results/pvm/2026-12-01-isolation-and-preemption.md`).
pub const USER_RFLAGS: u64 = 0x202;
/// IF in RFLAGS.
const RFLAGS_IF: u64 = 0x200;
/// First address above the user half of the address space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// 1 while user code runs; decides whether a trap came from user mode. (On kvm_pvm the CS
/// the CPU reports can read 0x33 in supervisor mode, so CS is not used for this.)
static IN_USER: AtomicU8 = AtomicU8::new(0);
/// Kernel stack pointer saved by `enter_user`, restored when user mode is left.
static KERNEL_RSP: AtomicU64 = AtomicU64::new(0);
/// The context being run.
static CURRENT_CTX: AtomicU64 = AtomicU64::new(0);
/// The user stack pointer, between `syscall` and the save into the context.
static USER_RSP_SCRATCH: AtomicU64 = AtomicU64::new(0);

/// The user registers of a program, saved while the kernel runs. The asm below uses the
/// field offsets; [`offsets_match_asm`] checks them at compile time.
#[repr(C)]
#[derive(Debug, Default, Clone)]
pub struct UserContext {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    /// Non-zero when the registers were saved by a trap (exception or interrupt), so that
    /// every register must come back: the next [`UserContext::run`] returns with `iretq`.
    /// `sysretq`, used after a system call, overwrites RCX and R11 (the system call ABI lets
    /// it), which would corrupt a program resumed after a time-slice interrupt.
    pub resume_with_iret: u64,
    /// The trap that last ended a [`UserContext::run`] with [`Trap::Exception`].
    pub fault: Option<FaultReport>,
}

const _: () = offsets_match_asm();
const fn offsets_match_asm() {
    assert!(core::mem::offset_of!(UserContext, rax) == 0);
    assert!(core::mem::offset_of!(UserContext, rdi) == 40);
    assert!(core::mem::offset_of!(UserContext, r15) == 112);
    assert!(core::mem::offset_of!(UserContext, rip) == 120);
    assert!(core::mem::offset_of!(UserContext, rsp) == 128);
    assert!(core::mem::offset_of!(UserContext, rflags) == 136);
    assert!(core::mem::offset_of!(UserContext, resume_with_iret) == 144);
}

/// Why [`UserContext::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// The program executed `syscall`; the number is in `rax`, arguments in
    /// `rdi, rsi, rdx, r10, r8, r9`.
    Syscall,
    /// The program took an exception; see [`UserContext::fault`].
    Exception,
    /// An interrupt ended the program's time slice (it can go on where it was).
    Interrupt,
}

/// Why a context cannot be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunError {
    /// RIP or RSP is outside the user half (sysretq to it would fault in supervisor mode).
    NotUserAddress,
}

impl UserContext {
    /// A context that starts at `entry` with stack `stack_top` and arguments in
    /// `rdi, rsi, rdx`.
    pub fn new(entry: u64, stack_top: u64, args: [u64; 3]) -> Self {
        UserContext {
            rip: entry,
            rsp: stack_top,
            rflags: USER_RFLAGS,
            rdi: args[0],
            rsi: args[1],
            rdx: args[2],
            ..Default::default()
        }
    }

    /// Whether RIP and RSP are user addresses (what [`Self::run`] requires).
    pub fn is_user(&self) -> bool {
        self.rip < USER_END && self.rsp <= USER_END
    }

    /// Runs the program until its next system call or exception.
    pub fn run(&mut self) -> Result<Trap, RunError> {
        // On Intel, sysretq with a non-canonical RIP faults in supervisor mode; refuse
        // anything outside the user half before trying.
        if self.rip >= USER_END || self.rsp > USER_END {
            return Err(RunError::NotUserAddress);
        }
        self.fault = None;
        // SAFETY: `self` stays borrowed (and so alive and unmoved) for the whole call; the
        // asm saves and restores every callee-saved register and the kernel stack pointer, so
        // the kernel's state survives whatever the user code does to registers. The CR3 the
        // exit loads and the one the entry loads back were set together by
        // `entry::set_tables` for the task whose tables are active (both 0: no switch), and
        // the user view maps everything the entry and exit code touch (see `entry`). (What
        // user code can *read or write* of the kernel depends on the hypervisor and the split:
        // nothing on hardware KVM, where kernel pages are supervisor-only, or with the split
        // on; on kvm_pvm with it off, what the kernel touched under the same CR3. Kernel text
        // and read-only data are never writable. The self-test probes it every boot.)
        let code = unsafe { enter_user(self) };
        Ok(match code {
            0 => Trap::Syscall,
            2 => Trap::Interrupt,
            _ => Trap::Exception,
        })
    }
}

// The asm reads and writes only the repr(C) register fields at the start of UserContext;
// the Rust-only `fault` field after them is why the type is not FFI-safe as a whole.
#[allow(improper_ctypes)]
unsafe extern "C" {
    fn enter_user(ctx: *mut UserContext) -> u64;
    fn syscall_entry();
    fn resume_kernel(code: u64) -> !;
}

// Entry and exit code lives in `.entry_text`, which the user view of the page tables maps too
// (see super::entry): the exit code runs its last instructions under the user CR3 and the
// `syscall` entry its first ones. `{consts}` + 0 / + 8 are the kernel and user CR3 (0: no
// switch), `{scratch}` the entry area's scratch words (see super::entry::EntryScratch).
global_asm!(
    r#"
    .section .entry_text, "ax"
enter_user:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + {kernel_rsp}], rsp
    mov [rip + {current_ctx}], rdi
    mov rax, [rdi + 40]
    mov [rip + {scratch} + 8], rax
    cmp qword ptr [rdi + 144], 0
    jne 3f
    mov rcx, [rdi + 120]
    mov r11, [rdi + 136]
    mov rax, [rdi + 0]
    mov rbx, [rdi + 8]
    mov rdx, [rdi + 24]
    mov rsi, [rdi + 32]
    mov rbp, [rdi + 48]
    mov r8, [rdi + 56]
    mov r9, [rdi + 64]
    mov r10, [rdi + 72]
    mov r12, [rdi + 88]
    mov r13, [rdi + 96]
    mov r14, [rdi + 104]
    mov r15, [rdi + 112]
    mov byte ptr [rip + {in_user}], 1
    mov rsp, [rdi + 128]
    mov rdi, [rip + {consts} + 8]
    test rdi, rdi
    jz 1f
    mov cr3, rdi
1:
    mov rdi, [rip + {scratch} + 8]
    sysretq
3:
    // Back after a trap: every register restored, through an interrupt frame built in the
    // scratch page (readable under the user view, unlike the kernel stack).
    mov rax, [rdi + 120]
    mov [rip + {scratch} + 16], rax
    mov qword ptr [rip + {scratch} + 24], {user_cs}
    mov rax, [rdi + 136]
    or rax, {rflags_if}
    mov [rip + {scratch} + 32], rax
    mov rax, [rdi + 128]
    mov [rip + {scratch} + 40], rax
    mov qword ptr [rip + {scratch} + 48], {user_ss}
    mov rax, [rdi + 0]
    mov rbx, [rdi + 8]
    mov rcx, [rdi + 16]
    mov rdx, [rdi + 24]
    mov rsi, [rdi + 32]
    mov rbp, [rdi + 48]
    mov r8, [rdi + 56]
    mov r9, [rdi + 64]
    mov r10, [rdi + 72]
    mov r11, [rdi + 80]
    mov r12, [rdi + 88]
    mov r13, [rdi + 96]
    mov r14, [rdi + 104]
    mov r15, [rdi + 112]
    mov byte ptr [rip + {in_user}], 1
    lea rsp, [rip + {scratch} + 16]
    mov rdi, [rip + {consts} + 8]
    test rdi, rdi
    jz 4f
    mov cr3, rdi
4:
    mov rdi, [rip + {scratch} + 8]
    iretq

syscall_entry:
    mov [rip + {scratch}], rax
    mov rax, [rip + {consts}]
    test rax, rax
    jz 5f
    mov cr3, rax
5:
    mov rax, [rip + {scratch}]
    mov byte ptr [rip + {in_user}], 0
    mov [rip + {user_rsp}], rsp
    mov rsp, [rip + {current_ctx}]
    mov [rsp + 0], rax
    mov [rsp + 8], rbx
    mov [rsp + 16], rcx
    mov [rsp + 24], rdx
    mov [rsp + 32], rsi
    mov [rsp + 40], rdi
    mov [rsp + 48], rbp
    mov [rsp + 56], r8
    mov [rsp + 64], r9
    mov [rsp + 72], r10
    mov [rsp + 80], r11
    mov [rsp + 88], r12
    mov [rsp + 96], r13
    mov [rsp + 104], r14
    mov [rsp + 112], r15
    mov [rsp + 120], rcx
    mov [rsp + 136], r11
    mov qword ptr [rsp + 144], 0
    mov rax, [rip + {user_rsp}]
    mov [rsp + 128], rax
    xor edi, edi
resume_kernel:
    mov rsp, [rip + {kernel_rsp}]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    mov rax, rdi
    ret
    "#,
    kernel_rsp = sym KERNEL_RSP,
    current_ctx = sym CURRENT_CTX,
    user_rsp = sym USER_RSP_SCRATCH,
    in_user = sym IN_USER,
    consts = sym super::entry::ENTRY_CONSTS,
    scratch = sym super::entry::ENTRY_SCRATCH,
    user_ss = const USER_SS,
    user_cs = const USER_CS,
    rflags_if = const RFLAGS_IF,
);

/// Enables `syscall`/`sysretq` and points `syscall` at the entry above.
pub fn init() {
    // SAFETY: EFER.SCE only enables the syscall instructions; the VMM set LME/LMA/NXE, which
    // are preserved by the read-modify-write.
    unsafe { Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
    let star = (u64::from(SYSRET_BASE) << 48) | (u64::from(KERNEL_CS) << 32);
    // SAFETY: STAR holds the selectors of the GDT the VMM built (kernel CS 0x10 / SS 0x18,
    // user base 0x23); LSTAR points at the entry stub above; SFMASK clears IF, TF, DF, AC and
    // NT on entry so the kernel runs with interrupts off and a known direction flag.
    unsafe {
        Msr::new(0xc000_0081).write(star);
        LStar::write(x86_64::VirtAddr::new(syscall_entry as *const () as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK,
        );
    }
}

/// Whether the trap being handled interrupted user code.
pub fn trap_came_from_user() -> bool {
    IN_USER.load(Ordering::SeqCst) == 1
}

/// Called by the trap handler for a trap in user mode: saves the user registers and the
/// fault into the running context and returns from its [`UserContext::run`] with
/// [`Trap::Interrupt`] (`interrupt`) or [`Trap::Exception`].
pub fn leave_user_after_trap(frame: &TrapFrame, report: FaultReport, interrupt: bool) -> ! {
    IN_USER.store(0, Ordering::SeqCst);
    let ctx = CURRENT_CTX.load(Ordering::SeqCst) as *mut UserContext;
    // SAFETY: CURRENT_CTX was set by enter_user from the `&mut self` of the `run` call that
    // is still in progress (its frame is below KERNEL_RSP), so it points at a live context
    // that nothing else accesses while user code runs.
    let ctx = unsafe { &mut *ctx };
    ctx.rax = frame.rax;
    ctx.rbx = frame.rbx;
    ctx.rcx = frame.rcx;
    ctx.rdx = frame.rdx;
    ctx.rsi = frame.rsi;
    ctx.rdi = frame.rdi;
    ctx.rbp = frame.rbp;
    ctx.r8 = frame.r8;
    ctx.r9 = frame.r9;
    ctx.r10 = frame.r10;
    ctx.r11 = frame.r11;
    ctx.r12 = frame.r12;
    ctx.r13 = frame.r13;
    ctx.r14 = frame.r14;
    ctx.r15 = frame.r15;
    ctx.rip = frame.rip;
    ctx.rsp = frame.rsp;
    ctx.rflags = frame.rflags;
    ctx.resume_with_iret = 1;
    ctx.fault = (!interrupt).then_some(report);
    // SAFETY: KERNEL_RSP holds the stack of the `run` call in progress, with the six
    // callee-saved registers enter_user pushed; the trap stack being abandoned holds only
    // this trap's frame.
    unsafe { resume_kernel(if interrupt { 2 } else { 1 }) }
}
