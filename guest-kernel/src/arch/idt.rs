//! Exceptions: the IDT, its entry stubs, and what happens on each vector.
//!
//! Every one of the 32 exception vectors has a stub that saves the interrupted registers in
//! a [`TrapFrame`] and calls [`dispatch`]. A trap from user mode ends the user program and
//! goes back to the kernel code that ran it (see [`super::syscall`]); a trap in supervisor
//! mode is fatal: it is reported on the console and over the control channel, then the
//! kernel exits. Double faults run on their own stack (IST1) so that a kernel stack overflow
//! is reported too.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kmodlab_abi::channel::{FaultReport, GuestMsg, vector_name};
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

use super::gdt::{DOUBLE_FAULT_IST, INTERRUPT_IST, KERNEL_CS};
use super::{cpu, syscall};

/// Exit status of a run that ended in a kernel fault.
pub const EXIT_KERNEL_FAULT: u32 = 0xdead_0001;

/// Number of exception vectors.
const EXCEPTIONS: usize = 32;
/// Number of IDT entries: the exceptions, then 16 interrupt vectors (the VMM injects
/// [`kmodlab_abi::status::PREEMPT_VECTOR`] to end a user program's time slice).
const VECTORS: usize = 48;
/// Non-maskable interrupt.
const NMI: u64 = 2;
/// Double fault.
const DOUBLE_FAULT: usize = 8;

/// Registers saved by the stubs, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

global_asm!(
    r#"
    .macro ISR_NOERR n
isr_stub_\n:
    push 0
    push \n
    jmp isr_common
    .endm
    .macro ISR_ERR n
isr_stub_\n:
    push \n
    jmp isr_common
    .endm

    .section .entry_text, "ax"
    ISR_NOERR 0
    ISR_NOERR 1
    ISR_NOERR 2
    ISR_NOERR 3
    ISR_NOERR 4
    ISR_NOERR 5
    ISR_NOERR 6
    ISR_NOERR 7
    ISR_ERR 8
    ISR_NOERR 9
    ISR_ERR 10
    ISR_ERR 11
    ISR_ERR 12
    ISR_ERR 13
    ISR_ERR 14
    ISR_NOERR 15
    ISR_NOERR 16
    ISR_ERR 17
    ISR_NOERR 18
    ISR_NOERR 19
    ISR_NOERR 20
    ISR_ERR 21
    ISR_NOERR 22
    ISR_NOERR 23
    ISR_NOERR 24
    ISR_NOERR 25
    ISR_NOERR 26
    ISR_NOERR 27
    ISR_NOERR 28
    ISR_ERR 29
    ISR_ERR 30
    ISR_NOERR 31
    .irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    ISR_NOERR \n
    .endr

isr_common:
    push rax
    // From user mode (the interrupted RIP in the user half) under the split: switch to the
    // task's kernel tables first. A trap in supervisor mode is already on them.
    mov rax, [rsp + 24]
    bt rax, 63
    jc 1f
    mov rax, [rip + {consts}]
    test rax, rax
    jz 1f
    mov cr3, rax
1:
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

    .section .rodata.isr_table, "a"
    .balign 8
    .global kmodlab_isr_stubs
kmodlab_isr_stubs:
    .quad isr_stub_0, isr_stub_1, isr_stub_2, isr_stub_3, isr_stub_4, isr_stub_5, isr_stub_6, isr_stub_7
    .quad isr_stub_8, isr_stub_9, isr_stub_10, isr_stub_11, isr_stub_12, isr_stub_13, isr_stub_14, isr_stub_15
    .quad isr_stub_16, isr_stub_17, isr_stub_18, isr_stub_19, isr_stub_20, isr_stub_21, isr_stub_22, isr_stub_23
    .quad isr_stub_24, isr_stub_25, isr_stub_26, isr_stub_27, isr_stub_28, isr_stub_29, isr_stub_30, isr_stub_31
    .quad isr_stub_32, isr_stub_33, isr_stub_34, isr_stub_35, isr_stub_36, isr_stub_37, isr_stub_38, isr_stub_39
    .quad isr_stub_40, isr_stub_41, isr_stub_42, isr_stub_43, isr_stub_44, isr_stub_45, isr_stub_46, isr_stub_47
    "#,
    dispatch = sym dispatch,
    consts = sym super::entry::ENTRY_CONSTS,
);

unsafe extern "C" {
    /// Addresses of the 48 stubs above.
    static kmodlab_isr_stubs: [u64; VECTORS];
}

/// Encodes a 64-bit interrupt gate: present, DPL 0, kernel code, IF cleared on entry.
const fn gate(handler: u64, ist: u8) -> [u64; 2] {
    let low = (handler & 0xffff)
        | ((KERNEL_CS as u64) << 16)
        | ((ist as u64 & 0x7) << 32)
        | (0x8e << 40)
        | (((handler >> 16) & 0xffff) << 48);
    [low, handler >> 32]
}

/// Page-aligned, so that the user view of the page tables (super::entry), which must map the
/// IDT, maps no other kernel data with it.
#[repr(C, align(4096))]
struct Idt([[u64; 2]; VECTORS]);

static IDT: Mutex<Idt> = Mutex::new(Idt([[0; 2]; VECTORS]));

fn stub(vector: usize) -> u64 {
    // SAFETY: the table is defined in the global_asm above with exactly VECTORS entries and
    // is never written.
    unsafe { kmodlab_isr_stubs[vector] }
}

/// Fills and loads the IDT. Double faults and interrupts run on the current stack until
/// [`enable_ist_stacks`] is called (there are no IST stacks yet).
pub fn init() {
    let mut idt = IDT.lock();
    for (vector, entry) in idt.0.iter_mut().enumerate() {
        *entry = gate(stub(vector), 0);
    }
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt.0.as_ptr() as u64),
    };
    // SAFETY: the IDT lives in a static, so it outlives its use by the CPU, and every entry
    // points at a stub that saves state and calls `dispatch`.
    unsafe { lidt(&ptr) };
}

/// `[start, end)` of the IDT.
pub fn table_range() -> (u64, u64) {
    let start = IDT.lock().0.as_ptr() as u64;
    (
        start,
        start + core::mem::size_of::<[[u64; 2]; VECTORS]>() as u64,
    )
}

/// Switches the double-fault gate to IST1 and the interrupt vectors to IST2, once the TSS
/// has those stacks.
///
/// The interrupt vectors reach the kernel only from user mode (the VMM injects its time
/// slices only while user code runs, and the kernel runs with interrupts off), where IST2,
/// the trap stack, is where RSP0 would have put the frame anyway. Without it, on kvm_pvm, a
/// program preempted while its RSP pointed at an unmapped page — legal for user code that
/// never calls the kernel — was ended with a double fault instead of being resumed (the
/// self-test's `SPIN_ON_STACK` checks; RSP outside the user half is refused anyway, by
/// `UserContext::run`).
pub fn enable_ist_stacks() {
    let mut idt = IDT.lock();
    idt.0[DOUBLE_FAULT] = gate(stub(DOUBLE_FAULT), DOUBLE_FAULT_IST);
    for vector in EXCEPTIONS..VECTORS {
        idt.0[vector] = gate(stub(vector), INTERRUPT_IST);
    }
}

/// Makes the next exception a triple fault (for testing that the VMM reports it).
pub fn load_empty_idt() {
    let ptr = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::new(0),
    };
    // SAFETY: deliberately breaks exception delivery: the caller wants a triple fault.
    unsafe { lidt(&ptr) };
}

/// Set while a supervisor fault is being reported: a fault during the report exits at once.
static FATAL_IN_PROGRESS: AtomicBool = AtomicBool::new(false);

/// Interrupts and NMIs that arrived in supervisor mode and were dismissed (the VMM only
/// injects when the guest runs user code, so this stays 0 unless something is wrong).
pub static SUPERVISOR_EVENTS: AtomicU64 = AtomicU64::new(0);

extern "C" fn dispatch(frame: &mut TrapFrame) {
    let asynchronous = frame.vector == NMI || frame.vector >= EXCEPTIONS as u64;
    // An asynchronous event can land on the first instructions of the syscall entry, before
    // it clears the in-user flag: only a user RIP proves it interrupted user code.
    let from_user =
        syscall::trap_came_from_user() && (!asynchronous || frame.rip < syscall::USER_END);
    if asynchronous && !from_user {
        SUPERVISOR_EVENTS.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let report = FaultReport {
        vector: frame.vector as u8,
        error_code: frame.error_code,
        rip: frame.rip,
        cr2: cpu::cr2(),
        rsp: frame.rsp,
        rflags: frame.rflags,
        cpl: if from_user { 3 } else { 0 },
    };
    if from_user {
        syscall::leave_user_after_trap(frame, report, asynchronous);
    }
    kernel_fault(frame, report)
}

fn kernel_fault(frame: &TrapFrame, report: FaultReport) -> ! {
    if FATAL_IN_PROGRESS.swap(true, Ordering::SeqCst) {
        cpu::exit(EXIT_KERNEL_FAULT);
    }
    crate::console::print_fatal(format_args!(
        "\nKERNEL FAULT: {} (vector {}) in supervisor mode\n  rip {:#018x}  cr2 {:#018x}  error {:#x}\n  rsp {:#018x}  rflags {:#x}  rbp {:#018x}\n",
        vector_name(report.vector),
        report.vector,
        report.rip,
        report.cr2,
        report.error_code,
        report.rsp,
        report.rflags,
        frame.rbp,
    ));
    crate::backend::backend().locate(report.rip, &mut |module, offset| {
        crate::console::print_fatal(format_args!(
            "  rip is in module {module} at offset {offset:#x}\n"
        ));
    });
    crate::control::report_fatal(&GuestMsg::Fault(report));
    cpu::exit(EXIT_KERNEL_FAULT)
}
