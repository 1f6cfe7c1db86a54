//! Printing to the kernel log: [`println!`](crate::println) and the panic report.

use core::fmt::{self, Write};

/// Bytes gathered before one `kmod_print` call. Longer lines are sent in several calls.
const LINE_BUF: usize = 256;

/// Sends bytes to the kernel log as they are (no prefix, no newline added).
pub fn print_bytes(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: `bytes` is valid for `bytes.len()` bytes during the call, which is all
    // kmod_print requires.
    unsafe { crate::raw::kmod_print(bytes.as_ptr(), bytes.len()) }
}

/// A line being assembled on the stack, flushed with one `kmod_print` per full buffer.
struct Line {
    buf: [u8; LINE_BUF],
    len: usize,
}

impl Line {
    const fn new() -> Line {
        Line {
            buf: [0; LINE_BUF],
            len: 0,
        }
    }

    // Written without indexing or slicing that could panic, so that printing a literal
    // pulls no panic machinery (and with it core::fmt) into a module.
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let free = match self.buf.get_mut(self.len..) {
                Some(free) if !free.is_empty() => free,
                _ => {
                    self.flush();
                    continue;
                }
            };
            let n = free.len().min(bytes.len());
            for (dst, src) in free.iter_mut().zip(bytes) {
                *dst = *src;
            }
            self.len += n;
            bytes = bytes.get(n..).unwrap_or_default();
        }
    }

    fn flush(&mut self) {
        print_bytes(self.buf.get(..self.len).unwrap_or_default());
        self.len = 0;
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Prints `prefix`, the formatted `args` and a newline as one kernel log line.
#[doc(hidden)]
#[inline(always)]
pub fn __println(prefix: &str, args: fmt::Arguments<'_>) {
    // A literal without arguments skips core::fmt, so a module that only prints literals
    // (hello) does not carry the formatting machinery.
    match args.as_str() {
        Some(s) => print_line_str(prefix, s),
        None => print_line_fmt(prefix, args),
    }
}

fn print_line_str(prefix: &str, s: &str) {
    let mut line = Line::new();
    line.push(prefix.as_bytes());
    line.push(s.as_bytes());
    line.push(b"\n");
    line.flush();
}

#[inline(never)]
fn print_line_fmt(prefix: &str, args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    line.push(prefix.as_bytes());
    // Line::write_str never fails, so neither can this.
    let _ = line.write_fmt(args);
    line.push(b"\n");
    line.flush();
}

/// The body of every module's panic handler: reports the panic on one line, then executes
/// `ud2` — what Linux's `BUG()` does — so the kernel handles it as a fault of this module.
#[doc(hidden)]
pub fn __panic(prefix: &str, info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = Line::new();
    line.push(prefix.as_bytes());
    let _ = write!(line, "panic: {}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(line, " at {}:{}", loc.file(), loc.line());
    }
    line.push(b"\n");
    line.flush();
    // SAFETY: `ud2` only raises an invalid-opcode exception; it touches no memory or
    // registers the compiler relies on, and control never comes back here.
    unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Prints one line to the kernel log, prefixed with the module's name (`"hello: ..."`), with
/// `format!` syntax. Usable in crates that invoke [`module!`](crate::module).
///
/// ```ignore
/// kmod_api::println!("loaded {} entries", n);
/// ```
// `crate::__KMOD_PREFIX` is meant to resolve in the calling crate: `module!` defines it there.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::print::__println(crate::__KMOD_PREFIX, ::core::format_args!($($arg)*))
    };
}
