//! The serial console (a 16550 UART at COM1) and the kernel log.
//!
//! Every byte written to the UART is a VM exit, so the driver writes in bursts of the
//! 16550's FIFO depth and reads the line status once per burst, as Linux's 8250 driver does.
//! Everything printed is also kept in a ring buffer, the kernel log (`dmesg`).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use kmodlab_abi::ports::COM1_BASE;
use spin::Mutex;
use x86_64::instructions::port::Port;

/// Depth of the 16550 transmit FIFO.
const FIFO_DEPTH: usize = 16;
/// Line status register: transmit holding register empty.
const LSR_THRE: u8 = 0x20;
/// Size of the kernel log ring.
const LOG_SIZE: usize = 64 * 1024;

struct Uart {
    /// Bytes written since the line status last said the FIFO was empty.
    burst: usize,
    /// Whether the UART has been programmed. It is programmed on first use, not at boot:
    /// each register write is a VM exit (tens of microseconds on kvm_pvm), and a quiet boot
    /// may never print.
    programmed: bool,
}

impl Uart {
    fn port(offset: u16) -> Port<u8> {
        Port::new(COM1_BASE + offset)
    }

    /// Programs the UART unless that was done already.
    fn ensure_programmed(&mut self) {
        if self.programmed {
            return;
        }
        self.programmed = true;
        let setup: [(u16, u8); 6] = [
            (1, 0x00), // no interrupts
            (3, 0x80), // DLAB on
            (0, 0x01), // divisor 1: 115200 baud
            (1, 0x00),
            (3, 0x03), // 8N1, DLAB off
            (2, 0xc7), // enable and clear FIFOs
        ];
        for (offset, value) in setup {
            // SAFETY: COM1's registers are the UART's; writing them has no effect on memory.
            unsafe { Self::port(offset).write(value) };
        }
    }

    fn put(&mut self, byte: u8) {
        self.ensure_programmed();
        if self.burst == 0 {
            // Wait until the FIFO is empty, then fill it without asking again.
            // SAFETY: reading the line status register has no side effects on memory.
            while unsafe { Self::port(5).read() } & LSR_THRE == 0 {
                core::hint::spin_loop();
            }
            self.burst = FIFO_DEPTH;
        }
        // SAFETY: writing the transmit register sends one byte; it touches no memory.
        unsafe { Self::port(0).write(byte) };
        self.burst -= 1;
    }
}

/// The last [`LOG_SIZE`] bytes printed.
struct LogRing {
    buf: [u8; LOG_SIZE],
    /// Total bytes ever written; the ring holds the last `min(written, LOG_SIZE)`.
    written: usize,
}

impl LogRing {
    fn push(&mut self, b: u8) {
        self.buf[self.written % LOG_SIZE] = b;
        self.written += 1;
    }
}

struct Console {
    uart: Uart,
    log: LogRing,
    /// Whether the kernel log stays off the UART. (False by default, so that the whole
    /// console, 64 KiB of log included, is zero-initialised and lives in .bss.)
    quiet: bool,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if !self.quiet {
                if b == b'\n' {
                    self.uart.put(b'\r');
                }
                self.uart.put(b);
            }
            self.log.push(b);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: Uart {
        burst: 0,
        programmed: false,
    },
    log: LogRing {
        buf: [0; LOG_SIZE],
        written: 0,
    },
    quiet: false,
});

/// Quiet mode (kernel command line `quiet`): the kernel log stays in the ring (`dmesg`)
/// and off the UART, where every byte is a VM exit that would distort measurements. User
/// programs' output and fatal reports still reach the UART.
pub fn set_quiet(quiet: bool) {
    CONSOLE.lock().quiet = quiet;
}

/// Writes user-program output: to the UART only (it is not the kernel's log, so `dmesg`
/// does not show it), whatever the quiet setting.
pub fn print_user(text: &str) {
    let mut c = CONSOLE.lock();
    for &b in text.as_bytes() {
        if b == b'\n' {
            c.uart.put(b'\r');
        }
        c.uart.put(b);
    }
}

/// Prints formatted text; used by [`kprint!`] and [`kprintln!`].
pub fn print(args: fmt::Arguments<'_>) {
    // A console write cannot fail.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints from a fault or panic handler, which may have interrupted a print in progress:
/// the lock is taken over instead of waited for, since nothing else runs (single CPU, no
/// interrupts) and waiting would hang forever.
pub fn print_fatal(args: fmt::Arguments<'_>) {
    if CONSOLE.is_locked() {
        // SAFETY: the holder was interrupted by the fault being reported and will never run
        // again; nothing else can touch the console concurrently on this single CPU.
        unsafe { CONSOLE.force_unlock() };
    }
    CONSOLE.lock().quiet = false;
    print(args);
}

/// Copies the kernel log, oldest byte first, into `out`; returns the bytes copied.
#[allow(dead_code)] // read by `dmesg` (module subsystem)
pub fn read_log(out: &mut alloc::vec::Vec<u8>) -> usize {
    let c = CONSOLE.lock();
    let len = c.log.written.min(LOG_SIZE);
    let start = c.log.written - len;
    out.extend((start..c.log.written).map(|i| c.log.buf[i % LOG_SIZE]));
    len
}

/// Prints to the console and the kernel log.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the console and the kernel log.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Line status register: data ready.
const LSR_DATA_READY: u8 = 0x01;
/// End of transmission: the VMM sends it when the user's input ends (Ctrl-D, closed stdin).
const EOT: u8 = 0x04;

/// Set once the UART has delivered [`EOT`]: the VMM sends it once, when the user's input ends
/// for good, so every later read is at the end of input too.
static INPUT_ENDED: AtomicBool = AtomicBool::new(false);

/// Reads one input line from the UART (up to `max` bytes, the `\n` included; the rest of a
/// longer line stays in the UART for the next read); empty at the end of input. Polls the line
/// status register: the VMM makes that read wait briefly when no input is queued, so the
/// poll does not spin the host CPU.
pub fn read_line(max: usize) -> alloc::vec::Vec<u8> {
    let mut line = alloc::vec::Vec::new();
    if INPUT_ENDED.load(Ordering::Relaxed) {
        return line;
    }
    CONSOLE.lock().uart.ensure_programmed();
    while line.len() < max {
        // SAFETY: reading the UART's line status and receive registers has no effect on
        // memory.
        let byte = unsafe {
            while Uart::port(5).read() & LSR_DATA_READY == 0 {
                core::hint::spin_loop();
            }
            Uart::port(0).read()
        };
        match byte {
            EOT => {
                // A line cut short by the end of input is still a line; the next read is
                // at the end.
                INPUT_ENDED.store(true, Ordering::Relaxed);
                break;
            }
            b'\r' | b'\n' => {
                line.push(b'\n');
                break;
            }
            b => line.push(b),
        }
    }
    line
}
