//! `init`, the guest's first user program. The kernel starts it with a mode and arguments
//! in `rdi, rsi, rdx` (see `guest_rt::mode`); it does the measurement or the misdeed the mode
//! asks for, hands results to the kernel with the `report` system call, and exits.
#![no_std]
#![no_main]

extern crate alloc;

use core::arch::asm;

use guest_rt::{fault, ipc_test, mode, nr, probe, timed_loop};
use kmodlab_ipc::cap::OWN_ENDPOINT;
use kmodlab_user::ipc::{self, Outgoing};

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
        mode::IPC_SERVER => return serve(a),
        mode::CHURN => report(guest_rt::register_churn(a)),
        mode::SPIN_FOREVER => loop {
            core::hint::spin_loop();
        },
        mode::SPIN_ON_STACK => {
            // SAFETY: the loop never returns and touches no memory, so the stack pointer it
            // abandons is never used again; what RSP holds matters only to the kernel.
            unsafe {
                core::arch::asm!(
                    "mov rsp, {a}",
                    "2:",
                    "pause",
                    "jmp 2b",
                    a = in(reg) a,
                    options(noreturn, nomem),
                )
            }
        }
        mode::IPC_CLIENT => return client(a, b),
        mode::PROBE => match a {
            probe::READ => {
                // SAFETY: none: the kernel asks for this read of an address that is not the
                // program's own; it either faults (ending the program) or reads 8 bytes.
                report(unsafe { core::ptr::read_volatile(b as *const u64) })
            }
            probe::WRITE => {
                // SAFETY: none, as above: the write faults or lands where the kernel asked.
                unsafe { core::ptr::write_volatile(b as *mut u64, probe::MARK) };
                report(probe::MARK)
            }
            _ => return 2,
        },
        mode::BAD_POINTER => {
            // A kernel address: the kernel must refuse it, not read it.
            report(syscall2(nr::WRITE, guest_rt::KERNEL_PROBE_ADDRESS, 16));
        }
        mode::MAP_SELF => report(
            match ipc::task_map(ipc::CAP_SELF, a, 1, kmodlab_ipc::task::Perm::ReadWrite) {
                Ok(()) => 0,
                Err(e) => e,
            },
        ),
        mode::HUGE_WRITE => {
            static TEXT: [u8; 16] = *b"never written!\n\n";
            let at = TEXT.as_ptr() as u64;
            report(syscall2(nr::WRITE, at, 64 * 1024 + 1));
            report(syscall2(nr::WRITE, at, u64::MAX));
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

/// A raw IPC result as one reported value: the status, or the negated errno.
fn raw(r: Result<ipc::Reply, ipc::CallError>) -> (u64, u64) {
    match r {
        Ok(reply) => (reply.status, u64::from(reply.info.from_kernel)),
        Err(e) => (e.errno.wrapping_neg(), u64::from(e.from_kernel)),
    }
}

fn serve(behaviour: u64) -> u64 {
    let mut buf = [0u8; 256];
    let mut msg = match ipc::recv(OWN_ENDPOINT, &mut buf) {
        Ok(m) => m,
        Err(e) => return e,
    };
    loop {
        let (status, words, payload_len) = match behaviour {
            ipc_test::SERVE_FAULT => {
                // SAFETY: none: ud2 is meant to fault, with the call unanswered.
                unsafe { asm!("ud2") };
                return 3;
            }
            ipc_test::SERVE_CALL_BACK => {
                let (r, _) = raw(ipc::call_words(ipc_test::PEER_SLOT, 1, [0; 6]));
                (r.wrapping_neg(), [0; 6], 0)
            }
            _ => {
                let mut words = msg.words;
                words.reverse();
                // Lease 0 (read) comes back reversed in lease 1 (write).
                if msg.lease_count >= 2 {
                    let mut lease = [0u8; 64];
                    let n = ipc::lease_read(msg.sender, 0, 0, &mut lease).unwrap_or(0) as usize;
                    lease[..n].reverse();
                    let _ = ipc::lease_write(msg.sender, 1, 0, &lease[..n]);
                }
                (msg.op.wrapping_add(msg.words[0]), words, msg.len as usize)
            }
        };
        let payload = buf;
        msg = match ipc::reply_recv(
            msg.sender,
            status,
            words,
            &payload[..payload_len],
            OWN_ENDPOINT,
            &mut buf,
        ) {
            Ok(m) => m,
            Err(e) => return e,
        };
    }
}

fn client(which: u64, param: u64) -> u64 {
    match which {
        ipc_test::CLIENT_PINGPONG => {
            for _ in 0..9 {
                let start = guest_rt::rdtsc_ordered();
                for _ in 0..param {
                    let _ = ipc::call_words(ipc_test::PEER_SLOT, 0, [0; 6]);
                }
                report(guest_rt::rdtsc_ordered() - start);
            }
        }
        ipc_test::CLIENT_ECHO => {
            let payload = *b"kmodlab ipc payload";
            let lease_in = *b"0123456789";
            let mut lease_out = [0u8; 10];
            let mut reply = [0u8; 64];
            let r = ipc::call(
                ipc_test::PEER_SLOT,
                &Outgoing {
                    op: 40,
                    words: [2, 3, 4, 5, 6, 7],
                    payload: &payload,
                    read_leases: &[&lease_in],
                },
                &mut reply,
                &mut [&mut lease_out],
            );
            let ok = match r {
                Ok(rep) => {
                    rep.status == 42
                        && rep.info.words == [7, 6, 5, 4, 3, 2]
                        && rep.info.len == payload.len() as u64
                        && reply[..payload.len()] == payload
                        && lease_out == *b"9876543210"
                }
                Err(_) => false,
            };
            report(u64::from(ok));
        }
        ipc_test::CLIENT_RAW => {
            let (r, k) = raw(ipc::call_words(ipc_test::PEER_SLOT, 0, [0; 6]));
            report(r);
            report(k);
        }
        ipc_test::CLIENT_MALFORMED => {
            // Nine leases: more than a message may carry.
            let utcb = kmodlab_ipc::layout::UTCB as *mut u64;
            // SAFETY: the UTCB is this task's, mapped read-write; LEASE_COUNT is in its
            // first page.
            unsafe { utcb.add(kmodlab_ipc::utcb::LEASE_COUNT).write_volatile(9) };
            let r = syscall4(kmodlab_ipc::sys::CALL, ipc_test::PEER_SLOT, 0, 0, 0);
            report(r);
        }
        ipc_test::CLIENT_BAD_SLOT => {
            let (r, _) = raw(ipc::call_words(17, 0, [0; 6]));
            report(r);
        }
        _ => return 2,
    }
    0
}
