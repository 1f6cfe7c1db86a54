//! `init`, the guest's first user program. The kernel starts it with a mode and arguments
//! in `rdi, rsi, rdx` (see `guest_rt::mode`); it does the measurement or the misdeed the mode
//! asks for, hands results to the kernel with the `report` system call, and exits.
#![no_std]
#![no_main]

extern crate alloc;

use core::arch::asm;

use guest_rt::{fault, mode, nr, timed_loop};

use kmodlab_user::{exit, report, syscall4, write};

fn syscall2(n: u64, a0: u64, a1: u64) -> u64 {
    syscall4(n, a0, a1, 0, 0)
}

/// Runs the measurement or misdeed `which` asks for; see `guest_rt::mode`.
#[unsafe(no_mangle)]
pub extern "C" fn user_main(which: u64, a: u64, b: u64) -> u64 {
    match which {
        mode::LOOP => {
            for _ in 0..b {
                report(timed_loop(a as u32));
            }
        }
        mode::SYSCALLS => {
            for _ in 0..b {
                let start = guest_rt::rdtsc_ordered();
                for _ in 0..a {
                    syscall2(nr::NULL, 0, 0);
                }
                report(guest_rt::rdtsc_ordered() - start);
            }
        }
        mode::FAULT => cause_fault(a),
        mode::BAD_POINTER => {
            // A kernel address: the kernel must refuse it, not read it.
            report(syscall2(nr::WRITE, guest_rt::KERNEL_PROBE_ADDRESS, 16));
        }
        _ => {
            write(b"init: unknown mode\n");
            return 2;
        }
    }
    0
}

fn cause_fault(which: u64) -> ! {
    match which {
        fault::NULL_DEREFERENCE => {
            // SAFETY: none: this read is meant to fault (page 0 is not mapped).
            unsafe { core::ptr::read_volatile(core::ptr::null::<u64>()) };
        }
        fault::INVALID_OPCODE => {
            // SAFETY: none: ud2 is meant to fault.
            unsafe { asm!("ud2") };
        }
        fault::DIVIDE_BY_ZERO => {
            // SAFETY: none: dividing by zero is meant to fault.
            unsafe { asm!("xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _) };
        }
        fault::GENERAL_PROTECTION => {
            // SAFETY: none: hlt is privileged and is meant to fault in user mode.
            unsafe { asm!("hlt") };
        }
        fault::STACK_OVERFLOW => {
            core::hint::black_box(guest_rt::overflow_stack(0));
        }
        fault::READ_KERNEL => {
            // SAFETY: none: user mode reading kernel memory is meant to fault.
            let v =
                unsafe { core::ptr::read_volatile(guest_rt::KERNEL_PROBE_ADDRESS as *const u64) };
            core::hint::black_box(v);
        }
        fault::WRITE_KERNEL => {
            // SAFETY: none: user mode writing kernel memory is meant to fault. The target is
            // the kernel's text, so a write that wrongly succeeded could not corrupt data.
            unsafe { core::ptr::write_volatile(guest_rt::KERNEL_PROBE_ADDRESS as *mut u64, 0) };
        }
        _ => {}
    }
    write(b"init: the requested fault did not happen\n");
    exit(3)
}
