//! The panic handler: report on the console and over the control channel, then exit.

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use kmodlab_abi::channel::{GuestMsg, PanicReport};

use crate::arch::cpu;

/// Exit status of a run that ended in a kernel panic.
pub const EXIT_PANIC: u32 = 0xdead_0002;

static PANICKING: AtomicBool = AtomicBool::new(false);

/// Formats into a fixed buffer, truncating, so that a panic report needs no heap.
struct FixedBuf {
    buf: [u8; 512],
    len: usize,
}

impl Write for FixedBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

impl FixedBuf {
    fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            // Truncation may split a character; keep the valid prefix.
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        cpu::exit(EXIT_PANIC);
    }
    let mut message = FixedBuf {
        buf: [0; 512],
        len: 0,
    };
    let _ = write!(message, "{}", info.message());
    let (file, line) = info
        .location()
        .map(|l| (l.file(), l.line()))
        .unwrap_or(("?", 0));
    crate::console::print_fatal(format_args!(
        "\nKERNEL PANIC at {file}:{line}: {}\n",
        message.as_str()
    ));
    crate::control::report_fatal(&GuestMsg::Panic(PanicReport {
        message: message.as_str(),
        file,
        line,
    }));
    cpu::exit(EXIT_PANIC)
}
