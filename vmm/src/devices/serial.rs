//! The serial console: a 16550 UART at COM1 (emulated by `vm-superio`) whose output goes to
//! the user's terminal or a log, and is kept for crash reports.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_superio::{Serial, Trigger};

/// How many bytes of console output a run keeps (the oldest are dropped).
pub const KEPT_BYTES: usize = 1 << 20;

/// End of transmission: queued for the guest when the user's input ends.
pub const EOT: u8 = 0x04;

/// The UART's receive FIFO size (vm-superio's).
const FIFO_SIZE: usize = 64;

/// How long a line-status read waits for input when none is queued: long enough that a
/// guest polling for input does not spin the host CPU, short enough to feel immediate.
const INPUT_WAIT: Duration = Duration::from_millis(20);

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
    /// Why showing the output live failed (the first error; the echo stops there).
    echo_error: Option<String>,
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

    /// Why the live echo of the output failed, if it did: the user did not see it all.
    pub fn echo_error(&self) -> Option<&str> {
        self.echo_error.as_deref()
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

impl ConsoleSink {
    /// Notes that the echo failed and stops it: a broken terminal must not stop the guest
    /// (the log keeps the output), but the run must not pass for shown either.
    fn echo_failed(&mut self, e: io::Error) {
        self.echo = Echo::Quiet;
        if let Ok(mut log) = self.log.lock() {
            log.echo_error.get_or_insert_with(|| e.to_string());
        }
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut log) = self.log.lock() {
            log.push(buf);
        }
        if let Echo::To(w) = &mut self.echo
            && let Err(e) = w.write_all(buf)
        {
            self.echo_failed(e);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Echo::To(w) = &mut self.echo
            && let Err(e) = w.flush()
        {
            self.echo_failed(e);
        }
        Ok(())
    }
}

/// The console device: register accesses at COM1 go here.
pub struct Console {
    uart: Serial<NoInterrupt, vm_superio::serial::NoEvents, ConsoleSink>,
    log: Arc<Mutex<ConsoleLog>>,
    /// Where input comes from (the user's terminal), if anywhere.
    input: Option<Receiver<Vec<u8>>>,
    /// Input received but not yet in the UART's FIFO.
    pending: VecDeque<u8>,
    /// The input source has ended (EOT queued).
    input_closed: bool,
    /// Line-status reads since the guest last touched another register: a guest polling for
    /// input reads it over and over; one transmitting reads it once per FIFO burst.
    status_polls: u32,
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
            input: None,
            pending: VecDeque::new(),
            input_closed: false,
            status_polls: 0,
        }
    }

    /// Feeds the guest's input from `rx` (chunks of bytes; dropping the sender ends input).
    pub fn attach_input(&mut self, rx: Receiver<Vec<u8>>) {
        self.input = Some(rx);
    }

    /// Moves input into the UART's FIFO. When `wait` and nothing at all is queued, waits up
    /// to [`INPUT_WAIT`] for input first.
    fn pump_input(&mut self, wait: bool) {
        if let Some(rx) = &self.input {
            loop {
                match rx.try_recv() {
                    Ok(chunk) => self.pending.extend(chunk),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if !self.input_closed {
                            self.pending.push_back(EOT);
                            self.input_closed = true;
                        }
                        break;
                    }
                }
            }
            let idle = self.pending.is_empty() && self.uart.fifo_capacity() == FIFO_SIZE;
            if wait && idle && !self.input_closed {
                match rx.recv_timeout(INPUT_WAIT) {
                    Ok(chunk) => self.pending.extend(chunk),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.pending.push_back(EOT);
                        self.input_closed = true;
                    }
                }
            }
        }
        let n = self.uart.fifo_capacity().min(self.pending.len());
        if n > 0 {
            let chunk: Vec<u8> = self.pending.drain(..n).collect();
            let _ = self.uart.enqueue_raw_bytes(&chunk);
        }
    }

    /// A shared handle on the kept output.
    pub fn log(&self) -> Arc<Mutex<ConsoleLog>> {
        Arc::clone(&self.log)
    }

    /// The guest wrote `value` to register `offset` (0–7).
    pub fn write(&mut self, offset: u8, value: u8) {
        self.status_polls = 0;
        // Writes cannot fail with a trigger that does nothing and a sink that never errors.
        let _ = self.uart.write(offset, value);
    }

    /// The guest reads register `offset` (0–7). Line-status reads move pending input into
    /// the FIFO; when the guest reads the line status repeatedly (it is polling for input, not
    /// transmitting), they also wait briefly for input to arrive, so that the guest's poll
    /// loop does not spin the host CPU.
    pub fn read(&mut self, offset: u8) -> u8 {
        if offset == 5 {
            self.status_polls = self.status_polls.saturating_add(1);
            self.pump_input(self.status_polls > 2);
        } else {
            self.status_polls = 0;
        }
        self.uart.read(offset)
    }

    /// Output the guest sent by another way than the UART (a script's output, streamed over
    /// the control channel): shown and kept exactly as if it had come through the UART, whose
    /// driver turns each `\n` into `\r\n`.
    pub fn write_output(&mut self, text: &[u8]) {
        let mut bytes = Vec::with_capacity(text.len() + text.len() / 16);
        for &b in text {
            if b == b'\n' {
                bytes.push(b'\r');
            }
            bytes.push(b);
        }
        // The sink never fails (it records echo errors itself).
        let _ = self.uart.writer_mut().write_all(&bytes);
    }

    /// Flushes the live echo; a failure is recorded like a failed write.
    pub fn flush(&mut self) {
        let _ = self.uart.writer_mut().flush();
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
    fn streamed_output_is_kept_like_uart_output() {
        let mut c = Console::new(Echo::Quiet);
        for b in b"log\r\n" {
            c.write(0, *b);
        }
        c.write_output("one\ntwo\n".as_bytes());
        assert_eq!(c.log().lock().unwrap().text(), "log\none\ntwo\n");
        assert_eq!(c.log().lock().unwrap().bytes, b"log\r\none\r\ntwo\r\n");
    }

    /// A writer that fails like a full disk.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(kmod_api::Errno::ENOSPC.get()))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_echo_is_recorded_and_stops_while_the_log_keeps_everything() {
        let mut c = Console::new(Echo::To(Box::new(Full)));
        c.write_output(b"lost\n");
        c.write_output(b"kept\n");
        c.flush();
        let log = c.log();
        let log = log.lock().unwrap();
        assert_eq!(log.text(), "lost\nkept\n");
        let e = log.echo_error().expect("the failure is recorded");
        assert!(e.contains("No space left on device"), "{e}");
    }

    #[test]
    fn line_status_says_transmitter_empty() {
        let mut c = Console::new(Echo::Quiet);
        assert_eq!(c.read(5) & 0x60, 0x60);
    }

    #[test]
    fn attached_input_reaches_the_guest_and_ends_with_eot() {
        let mut c = Console::new(Echo::Quiet);
        let (tx, rx) = std::sync::mpsc::channel();
        c.attach_input(rx);
        tx.send(b"ls\n".to_vec()).unwrap();
        drop(tx);
        let mut got = Vec::new();
        while c.read(5) & 1 == 1 {
            got.push(c.read(0));
        }
        assert_eq!(got, b"ls\n\x04");
        // Ended input does not wait.
        let t = std::time::Instant::now();
        for _ in 0..5 {
            assert_eq!(c.read(5) & 1, 0);
        }
        assert!(t.elapsed() < INPUT_WAIT);
    }

    #[test]
    fn transmitting_never_waits_for_input_but_polling_does() {
        let mut c = Console::new(Echo::Quiet);
        let (_tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        c.attach_input(rx);
        let t = std::time::Instant::now();
        for b in b"a line of output\n" {
            assert_ne!(c.read(5) & 0x20, 0, "transmitter ready");
            c.write(0, *b);
        }
        assert!(t.elapsed() < INPUT_WAIT, "output waited for input");
        let t = std::time::Instant::now();
        for _ in 0..4 {
            assert_eq!(c.read(5) & 1, 0);
        }
        assert!(
            t.elapsed() >= INPUT_WAIT,
            "a polling reader should wait for input"
        );
    }

    #[test]
    fn input_is_readable() {
        let mut c = Console::new(Echo::Quiet);
        assert_eq!(c.enqueue_input(b"a"), 1);
        assert_eq!(c.read(5) & 1, 1, "data ready");
        assert_eq!(c.read(0), b'a');
    }
}
