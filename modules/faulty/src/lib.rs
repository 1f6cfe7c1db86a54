//! `faulty`: faults on purpose, for the reliability and fault-isolation measurements.
//! `mode=` picks the fault, `at=` when it happens: in init (the default), in exit, or when
//! someone calls its `faulty` service (any op) — a fault inside a service call is what a
//! microkernel is supposed to contain.
//!
//! Modes: `none` (loads cleanly), `null` (read through a null pointer), `ud` (invalid
//! opcode), `div0` (integer divide by zero, #DE), `loop` (never returns), `stack`
//! (unbounded recursion until the stack overflows), `wild` (write to address `addr=`),
//! `panic` (a Rust panic: the panic handler reports it and executes `ud2`).
#![no_std]

use core::hint::black_box;

use kmod_api::service::{self, Service};
use kmod_api::{Errno, println};

kmod_api::module! {
    name: "faulty",
    license: "GPL",
    author: "kmodlab",
    description: "Faults on purpose (mode=none|null|ud|div0|loop|stack|wild|panic)",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        mode: charp = "none", "which fault: none, null, ud, div0, loop, stack, wild, panic";
        at: charp = "init", "when: init, exit, or call (on a request to the faulty service)";
        addr: int = 0x0000_dead_0000_0000, "target address of mode=wild";
    },
}

const SERVICE: &str = "faulty";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    Null,
    Ud,
    Div0,
    Loop,
    Stack,
    Wild,
    Panic,
}

fn mode() -> Option<Mode> {
    Some(match params::mode.get() {
        "none" => Mode::None,
        "null" => Mode::Null,
        "ud" => Mode::Ud,
        "div0" => Mode::Div0,
        "loop" => Mode::Loop,
        "stack" => Mode::Stack,
        "wild" => Mode::Wild,
        "panic" => Mode::Panic,
        _ => return None,
    })
}

/// Recurses without end; the frame holds a buffer the optimiser must keep (black_box), and
/// the recursive call is not in tail position, so it can be neither removed nor turned into
/// a loop.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[(depth % 512) as usize] = depth as u8;
    black_box(&mut frame);
    recurse(depth + 1).wrapping_add(frame[0] as u64)
}

fn fault(mode: Mode) {
    println!("about to fault: mode={}", params::mode.get());
    match mode {
        Mode::None => {}
        Mode::Null => {
            let p: usize = black_box(0);
            // SAFETY: not safe at all, on purpose: reads address 0 so that the kernel sees a
            // page fault from this module. Inline asm, so the compiler cannot treat the null
            // read as undefined behaviour and drop or rewrite it.
            unsafe {
                core::arch::asm!("mov {0}, qword ptr [{0}]", inout(reg) p => _, options(nostack))
            };
        }
        Mode::Ud => {
            // SAFETY: raises #UD on purpose; the kernel's fault handling takes over.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
        }
        Mode::Div0 => {
            let divisor: u64 = black_box(0);
            // SAFETY: divides by zero on purpose (#DE). Inline asm, because Rust's `/` checks
            // for zero and would panic instead of faulting.
            unsafe {
                core::arch::asm!("div {0}", in(reg) divisor, inout("rax") 1u64 => _, inout("rdx") 0u64 => _, options(nomem, nostack));
            }
        }
        Mode::Loop => loop {
            core::hint::spin_loop();
        },
        Mode::Stack => {
            println!("never reached: {}", recurse(0));
        }
        Mode::Wild => {
            let target = black_box(params::addr.get() as usize);
            // SAFETY: not safe, on purpose: writes to an address this module does not own.
            // Inline asm, so the write is exactly one 8-byte store to `target`.
            unsafe {
                core::arch::asm!("mov qword ptr [{0}], {1}", in(reg) target, in(reg) 0x6b6b_6b6b_6b6b_6b6bu64, options(nostack));
            }
        }
        Mode::Panic => {
            let index = black_box(7usize);
            let table = black_box([1u8, 2, 3]);
            println!("never reached: {}", table[index]);
        }
    }
    println!("mode={} did not fault", params::mode.get());
}

struct FaultOnCall;

impl Service for FaultOnCall {
    fn call(&self, _op: u32, _request: &[u8], _reply: &mut [u8]) -> Result<usize, Errno> {
        fault(mode().unwrap_or(Mode::None));
        Ok(0)
    }
}

static FAULT_ON_CALL: FaultOnCall = FaultOnCall;

fn init() -> Result<(), Errno> {
    let Some(mode) = mode() else {
        println!("unknown mode=\"{}\"", params::mode.get());
        return Err(Errno::EINVAL);
    };
    match params::at.get() {
        "init" => fault(mode),
        "exit" => println!("armed: mode={} at exit", params::mode.get()),
        "call" => {
            service::register(SERVICE, &FAULT_ON_CALL)?;
            println!(
                "armed: mode={} on a call to service \"{SERVICE}\"",
                params::mode.get()
            );
        }
        other => {
            println!("unknown at=\"{other}\"");
            return Err(Errno::EINVAL);
        }
    }
    println!("loaded cleanly");
    Ok(())
}

fn exit() {
    match params::at.get() {
        "exit" => fault(mode().unwrap_or(Mode::None)),
        "call" => {
            let _ = service::unregister(SERVICE);
        }
        _ => {}
    }
    println!("unloaded");
}
