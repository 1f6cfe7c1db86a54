//! `faulty`: faults on purpose, for the reliability and fault-isolation measurements.
//! `mode=` picks the fault, `at=` when it happens: in init (the default), in exit, or when
//! someone calls its `faulty` service (any op) — a fault inside a service call is what a
//! microkernel is supposed to contain.
//!
//! Modes: `none` (loads cleanly), `null` (read through a null pointer), `ud` (invalid
//! opcode), `div0` (integer divide by zero, #DE), `loop` (never returns), `stack`
//! (unbounded recursion until the stack overflows), `wild` (write to address `addr=`),
//! `panic` (a Rust panic: the panic handler reports it and executes `ud2`), and two faults
//! of a server that goes wrong without an exception of its own making:
//!
//! - `scribble`: overwrites its own state (a table in `.data` holding a chain of pointers,
//!   as a driver keeps a cursor into its own structures) with pseudo-random bytes from
//!   `seed=`, then carries on using it: it follows the chain and writes through where it
//!   ends. The first load through a garbage pointer faults in the module's code (#GP for a
//!   non-canonical value, almost always; #PF otherwise). If the bytes happen to form
//!   readable addresses all the way, it writes one word there and prints `did not fault`.
//! - `garbage`: lies to its callers and to the kernel. `at=call`: its service fills the
//!   reply buffer with pseudo-random bytes and reports a reply length larger than the
//!   buffer (the kernel must refuse it: `EMSGSIZE` to the caller). `at=init`: init fails
//!   with an errno outside the errno table (4096 + a pseudo-random number below 4096).
//!   `at=exit`: exit unregisters its service with a name length past any name's limit (the
//!   kernel must refuse it, `EINVAL`, without reading past the name) and leaves the service
//!   registered (the kernel must drop it with the module).
//!
//! The module is the same file in both configurations: the parameters pick the mode.
#![no_std]

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use kmod_api::service::{self, Service};
use kmod_api::{Errno, println};

kmod_api::module! {
    name: "faulty",
    license: "GPL",
    author: "kmodlab",
    description: "Faults on purpose (mode=none|null|ud|div0|loop|stack|wild|panic|scribble|garbage)",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        mode: charp = "none", "which fault: none, null, ud, div0, loop, stack, wild, panic, scribble, garbage";
        at: charp = "init", "when: init, exit, or call (on a request to the faulty service)";
        addr: int = 0x0000_dead_0000_0000, "target address of mode=wild";
        seed: int = 1, "seed of the pseudo-random bytes of mode=scribble and mode=garbage";
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
    Scribble,
    Garbage,
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
        "scribble" => Mode::Scribble,
        "garbage" => Mode::Garbage,
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

/// xorshift64*: the pseudo-random bytes of `scribble` and `garbage` (reproducible from
/// `seed=`, which is what a fault campaign records; no statistical quality needed).
struct Rng(u64);

impl Rng {
    fn new(seed: i64) -> Rng {
        // xorshift has one fixed point, 0; any seed maps to a non-zero state.
        Rng((seed as u64 ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Words of [`STATE`].
const STATE_WORDS: usize = 16;
/// Steps `scribble` follows the chain before it writes.
const SCRIBBLE_STEPS: usize = 8;

/// The module's own state that `scribble` corrupts: entry `i` holds the address of entry
/// `i + 1` (a chain it walks), until the scribble overwrites it.
static STATE: [AtomicU64; STATE_WORDS] = [const { AtomicU64::new(0) }; STATE_WORDS];

/// Reads the word at `p` with one load, wherever `p` points.
///
/// # Safety
/// `p` should be readable; `mode=scribble` calls it with garbage on purpose, to fault.
#[inline(never)]
unsafe fn load_word(p: u64) -> u64 {
    let value: u64;
    // SAFETY: sound only for a readable `p` (the chain as built); for the scribbled chain
    // not safe, on purpose: a load that faults. Inline asm, so that the compiler neither
    // assumes the pointer is valid nor drops the load.
    unsafe {
        core::arch::asm!("mov {0}, qword ptr [{1}]", out(reg) value, in(reg) p, options(nostack, readonly))
    };
    value
}

/// `mode=scribble`: builds the chain, proves it walks, corrupts it, walks it again.
fn scribble() {
    for (i, word) in STATE.iter().enumerate() {
        let next = &STATE[(i + 1) % STATE_WORDS] as *const AtomicU64 as u64;
        word.store(next, Ordering::Relaxed);
    }
    let mut p = STATE[0].load(Ordering::Relaxed);
    for _ in 0..SCRIBBLE_STEPS {
        // SAFETY: `p` is the address of an entry of STATE (the chain just built).
        p = unsafe { load_word(p) };
    }
    let mut rng = Rng::new(params::seed.get());
    for word in &STATE {
        word.store(rng.next(), Ordering::Relaxed);
    }
    let mut p = black_box(STATE[0].load(Ordering::Relaxed));
    for _ in 0..SCRIBBLE_STEPS {
        // SAFETY: none, on purpose: `p` comes from the scribbled state.
        p = unsafe { load_word(p) };
    }
    // SAFETY: not safe, on purpose: one 8-byte store where the corrupted chain ended.
    unsafe {
        core::arch::asm!("mov qword ptr [{0}], {1}", in(reg) p, in(reg) 0x6b6b_6b6b_6b6b_6b6bu64, options(nostack));
    }
}

/// The errno `garbage` init fails with: past the errno table (4095 is the largest errno a
/// Linux-style `-errno` return can carry), so no kernel table names it.
fn garbage_errno() -> i32 {
    4096 + (Rng::new(params::seed.get()).next() % 4096) as i32
}

/// The service handler of `mode=garbage at=call`, registered raw (not through
/// `kmod_api::service`, whose trampoline would refuse the lie): random reply bytes and a
/// reply length past the buffer.
///
/// # Safety
/// The kernel calls it per the ServiceHandler contract: `reply` is valid for `reply_cap`
/// writable bytes (or null with `reply_cap` 0), `reply_len` writable or null.
unsafe extern "C" fn garbage_reply(
    _ctx: *mut core::ffi::c_void,
    _op: u32,
    _req: *const u8,
    _req_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    let mut rng = Rng::new(params::seed.get());
    if !reply.is_null() {
        for i in 0..reply_cap {
            // SAFETY: per the contract, `reply` is writable for `reply_cap` bytes.
            unsafe { reply.add(i).write(rng.next() as u8) };
        }
    }
    let lie = reply_cap
        .saturating_add(1)
        .saturating_add((rng.next() % (1 << 32)) as usize);
    if !reply_len.is_null() {
        // SAFETY: per the contract, `reply_len` is writable when not null.
        unsafe { reply_len.write(lie) };
    }
    println!("garbage reply: {lie} bytes claimed for a {reply_cap}-byte buffer");
    0
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
        Mode::Scribble => scribble(),
        // Its lies are told where they apply (init's status, the reply, exit's
        // unregister), not here.
        Mode::Garbage => {}
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
        "init" if mode == Mode::Garbage => {
            let errno = garbage_errno();
            println!("garbage: init fails with errno {errno}");
            return Err(Errno::new(errno).unwrap_or(Errno::EINVAL));
        }
        "init" => fault(mode),
        "exit" if mode == Mode::Garbage => {
            service::register(SERVICE, &FAULT_ON_CALL)?;
            println!("armed: mode=garbage at exit");
        }
        "exit" => println!("armed: mode={} at exit", params::mode.get()),
        "call" if mode == Mode::Garbage => {
            // SAFETY: SERVICE is valid for its length; `garbage_reply` matches
            // ServiceHandler and ignores `ctx`, so a null one is fine.
            let ret = unsafe {
                kmod_api::raw::kmod_service_register(
                    SERVICE.as_ptr(),
                    SERVICE.len(),
                    garbage_reply,
                    core::ptr::null_mut(),
                )
            };
            Errno::check(ret)?;
            println!("armed: mode=garbage on a call to service \"{SERVICE}\"");
        }
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
        "exit" if mode() == Some(Mode::Garbage) => {
            let lie = SERVICE.len() + 4096 + (Rng::new(params::seed.get()).next() % 4096) as usize;
            // SAFETY: the pointer is SERVICE's, the length a lie on purpose: the kernel
            // must check it against its name limit before it reads a byte.
            let ret = unsafe { kmod_api::raw::kmod_service_unregister(SERVICE.as_ptr(), lie) };
            println!("garbage: unregister with a {lie}-byte name returned {ret}");
        }
        "exit" => fault(mode().unwrap_or(Mode::None)),
        "call" => {
            let _ = service::unregister(SERVICE);
        }
        _ => {}
    }
    println!("unloaded");
}
