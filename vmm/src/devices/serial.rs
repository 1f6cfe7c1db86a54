//! The serial console: a 16550 UART at COM1 (emulated by `vm-superio`) whose output goes to
//! the user's terminal or a log, and is kept for crash reports.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use vm_superio::{Serial, Trigger};

/// How many bytes of console output a run keeps (the oldest are dropped).
pub const KEPT_BYTES: usize = 1 << 20;

/// The guest has no interrupt controller: the UART's interrupt line goes nowhere.
#[derive(Debug, Default)]
pub struct NoInterrupt;

impl Trigger for NoInterrupt {
    type E = io::Error;
    fn trigger(&self) -> Result<(), io::Error> {
        Ok(())
    }
}

/// What the guest printed, bounded.
#[derive(Debug, Default)]
pub struct ConsoleLog {
    bytes: Vec<u8>,
    /// Bytes dropped from the front to stay within [`KEPT_BYTES`].
    dropped: u64,
}

impl ConsoleLog {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > KEPT_BYTES {
            let excess = self.bytes.len() - KEPT_BYTES;
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// The kept output, with invalid UTF-8 replaced and `\r` removed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).replace('\r', "")
    }

    /// The last `n` lines of output.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

/// Where console output is shown live, besides being kept.
pub enum Echo {
    /// Not shown.
    Quiet,
    /// Written to this stream as it arrives.
    To(Box<dyn Write + Send>),
}

/// The UART's output side.
pub struct ConsoleSink {
    echo: Echo,
    log: Arc<Mutex<ConsoleLog>>,
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut log) = self.log.lock() {
            log.push(buf);
        }
        if let Echo::To(w) = &mut self.echo {
            // A broken terminal must not stop the guest; the log still has everything.
            let _ = w.write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Echo::To(w) = &mut self.echo {
            let _ = w.flush();
        }
        Ok(())
    }
}

/// The console device: register accesses at COM1 go here.
pub struct Console {
    uart: Serial<NoInterrupt, vm_superio::serial::NoEvents, ConsoleSink>,
    log: Arc<Mutex<ConsoleLog>>,
}

impl Console {
    /// A console that keeps its output and optionally echoes it.
    pub fn new(echo: Echo) -> Console {
        let log = Arc::new(Mutex::new(ConsoleLog::default()));
        let sink = ConsoleSink {
            echo,
            log: Arc::clone(&log),
        };
        Console {
            uart: Serial::new(NoInterrupt, sink),
            log,
        }
    }

    /// A shared handle on the kept output.
    pub fn log(&self) -> Arc<Mutex<ConsoleLog>> {
        Arc::clone(&self.log)
    }

    /// The guest wrote `value` to register `offset` (0–7).
    pub fn write(&mut self, offset: u8, value: u8) {
        // Writes cannot fail with a trigger that does nothing and a sink that never errors.
        let _ = self.uart.write(offset, value);
    }

    /// The guest reads register `offset` (0–7).
    pub fn read(&mut self, offset: u8) -> u8 {
        self.uart.read(offset)
    }

    /// Queues input for the guest to read.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_kept_and_bounded() {
        let mut c = Console::new(Echo::Quiet);
        for b in b"hello\r\nworld\r\n" {
            c.write(0, *b);
        }
        let log = c.log();
        assert_eq!(log.lock().unwrap().text(), "hello\nworld\n");
        assert_eq!(log.lock().unwrap().last_lines(1), vec!["world".to_string()]);
        let mut big = ConsoleLog::default();
        big.push(&vec![b'x'; KEPT_BYTES + 10]);
        assert_eq!(big.bytes.len(), KEPT_BYTES);
        assert_eq!(big.dropped, 10);
    }

    #[test]
    fn line_status_says_transmitter_empty() {
        let mut c = Console::new(Echo::Quiet);
        assert_eq!(c.read(5) & 0x60, 0x60);
    }

    #[test]
    fn input_is_readable() {
        let mut c = Console::new(Echo::Quiet);
        assert_eq!(c.enqueue_input(b"a"), 1);
        assert_eq!(c.read(5) & 1, 1, "data ready");
        assert_eq!(c.read(0), b'a');
    }
}
