//! The guest side of the control channel (see `kmodlab_abi::channel`).
//!
//! The kernel speaks first: it writes a message into the guest-to-host half, rings the
//! doorbell (one VM exit), and finds the VMM's answer in the host-to-guest half when the
//! `out` returns. Between exchanges it does the work the VMM asked for, with no exits.

use core::sync::atomic::{AtomicU32, Ordering};

use kmodlab_abi::channel::{
    self, Command, GUEST_TO_HOST_OFFSET, GuestMsg, HALF_SIZE, HOST_TO_GUEST_OFFSET, HostMsg,
    MAX_PAYLOAD, Misbehaviour, ReadyInfo, Reply,
};
use kmodlab_abi::layout::{CONTROL_GPA, KERNEL_VIRT_OFFSET};
use kmodlab_abi::ports::{DOORBELL, DOORBELL_MESSAGE};
use x86_64::instructions::port::Port;

use crate::arch::cpu;
use crate::backend::{Caller, Failure, Image, backend};
use crate::selftest;
use crate::user::{Input, Session};

/// Exit status of a run that ended because the channel failed.
const EXIT_CHANNEL_ERROR: u32 = 0xdead_0003;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn half(offset: usize) -> *mut u8 {
    (KERNEL_VIRT_OFFSET + CONTROL_GPA + offset as u64) as *mut u8
}

fn ring_doorbell(value: u32) {
    // SAFETY: the doorbell port is the VMM's; the write exits to the VMM, which answers in the
    // host-to-guest half before the guest resumes.
    unsafe { Port::<u32>::new(DOORBELL).write(value) };
}

/// Why an exchange failed, and whose fault that is.
enum ExchangeError {
    /// This kernel's message does not fit the channel (the guest's fault).
    Send(channel::FrameError),
    /// The VMM's answer does not decode (the VMM's fault).
    Answer(channel::FrameError),
}

impl core::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExchangeError::Send(e) => write!(
                f,
                "this kernel's message does not fit the control channel ({MAX_PAYLOAD} bytes): {e}"
            ),
            ExchangeError::Answer(e) => write!(f, "the VMM's answer is unreadable: {e}"),
        }
    }
}

/// Sends `msg` and returns the VMM's answer.
fn exchange(msg: &GuestMsg<'_>) -> Result<HostMsg, ExchangeError> {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the guest-to-host half is HALF_SIZE bytes of the low area, mapped RW; only this
    // function and `report_fatal` write it, never at the same time (single CPU, and
    // `report_fatal` runs only once the kernel has stopped doing anything else).
    let out = unsafe { core::slice::from_raw_parts_mut(half(GUEST_TO_HOST_OFFSET), HALF_SIZE) };
    channel::encode_frame(out, seq, msg).map_err(ExchangeError::Send)?;
    ring_doorbell(DOORBELL_MESSAGE);
    // SAFETY: the host-to-guest half is mapped and only the VMM writes it, and only while
    // this vCPU is stopped in the doorbell exit above.
    let answer = unsafe { core::slice::from_raw_parts(half(HOST_TO_GUEST_OFFSET), HALF_SIZE) };
    let (answer_seq, msg) =
        channel::decode_owned_frame::<HostMsg>(answer).map_err(ExchangeError::Answer)?;
    if answer_seq != seq {
        panic!("control channel: answer {answer_seq} to message {seq}");
    }
    Ok(msg)
}

/// Ends the run because the channel cannot be used any more.
fn channel_failure(why: impl core::fmt::Display) -> ! {
    kprintln!("control channel: {why}");
    cpu::exit(EXIT_CHANNEL_ERROR)
}

/// Reports a fatal event (fault or panic). The VMM ends the run on it; if it does not answer
/// (or the channel is broken), the caller exits anyway.
pub fn report_fatal(msg: &GuestMsg<'_>) {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as in `exchange`; nothing else runs once a fatal event is being reported.
    let out = unsafe { core::slice::from_raw_parts_mut(half(GUEST_TO_HOST_OFFSET), HALF_SIZE) };
    if channel::encode_frame(out, seq, msg).is_ok() {
        ring_doorbell(DOORBELL_MESSAGE);
    }
}

/// Serves the VMM's commands until it asks the kernel to shut down.
pub fn serve(ready: ReadyInfo) -> ! {
    let mut msg = GuestMsg::Ready(ready);
    loop {
        match exchange(&msg) {
            Ok(HostMsg::Command(cmd)) => {
                // A reply too large for the channel is this kernel's limit, not the VMM's:
                // the VMM gets an error that says so, and the kernel carries on.
                let reply = channel::fit_reply(execute(cmd)).unwrap_or_else(|why| {
                    kprintln!("control channel: {why}");
                    Reply::Error(why)
                });
                msg = GuestMsg::Reply(reply);
            }
            Ok(HostMsg::Shutdown { status }) => cpu::exit(status),
            Ok(HostMsg::Continue) => {
                channel_failure("the VMM answered Continue, but no output was being sent")
            }
            Err(e) => channel_failure(e),
        }
    }
}

/// A script's output on its way to the VMM: each write is sent as it happens (one exchange,
/// more for a write larger than a frame), so neither the kernel nor the channel has to hold
/// a whole run's output, and the VMM shows it in order with the kernel log.
pub struct OutputStream {
    bytes: u64,
}

impl OutputStream {
    /// A stream that has sent nothing yet.
    pub fn new() -> OutputStream {
        OutputStream { bytes: 0 }
    }

    /// Sends `text`, split at character boundaries into pieces that fit a frame.
    pub fn write(&mut self, mut text: &str) {
        while !text.is_empty() {
            let mut end = text.len().min(channel::MAX_OUTPUT_CHUNK);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let (piece, rest) = text.split_at(end);
            match exchange(&GuestMsg::Output(piece)) {
                Ok(HostMsg::Continue) => {}
                Ok(other) => channel_failure(alloc::format!(
                    "the VMM answered output with {other:?} instead of Continue"
                )),
                Err(e) => channel_failure(e),
            }
            self.bytes += piece.len() as u64;
            text = rest;
        }
    }

    /// Bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn execute(cmd: Command) -> Reply {
    match cmd {
        Command::SelfTest(params) => Reply::SelfTest(selftest::run(params)),
        Command::Echo(bytes) => Reply::Echo(bytes),
        Command::Misbehave(how) => misbehave(how),
        Command::PrintTestPattern { lines } => {
            for i in 0..lines {
                kprintln!("{}", channel::serial_test_line(i));
            }
            Reply::Done
        }
        Command::Shell { script } => shell(script),
        Command::InitModule { name, params } => {
            match backend().insmod_from_archive(&name, &params, Caller::KERNEL) {
                Ok(record) => Reply::Module(record),
                Err(e) => module_error(e),
            }
        }
        Command::DeleteModule { name } => match backend().delete_module(&name, Caller::KERNEL) {
            Ok(()) => Reply::Done,
            Err(e) => module_error(e),
        },
        Command::ListModules => match backend().list() {
            Ok((records, _)) => Reply::Modules(records),
            Err(e) => module_error(e),
        },
        Command::InitModuleImage { image, params } => {
            match backend().init_module(Image::Kernel(&image), &params, Caller::KERNEL) {
                Ok(record) => Reply::Module(record),
                Err(e) => module_error(e),
            }
        }
        Command::ServiceCall {
            service,
            op,
            request,
            reply_cap,
        } => {
            // The reply has to fit the channel anyway; never allocate more for it.
            let cap = (reply_cap as usize).min(channel::MAX_PAYLOAD);
            match backend().service_call(&service, op, &request, cap) {
                Ok(reply) => Reply::ServiceReply(reply),
                Err(e) => module_error(e),
            }
        }
        Command::MemoryStats => {
            let heap = crate::mm::heap_stats();
            let (frames_total, frames_free) = crate::mm::frame_stats();
            Reply::Memory(channel::MemoryStats {
                heap_used: heap.used as u64,
                heap_size: heap.size as u64,
                frames_free,
                frames_total,
            })
        }
        Command::Bench(request) => crate::bench::run(request),
    }
}

fn module_error(e: Failure) -> Reply {
    kprintln!("module: {}", e.message);
    Reply::ModuleError(channel::ModuleError {
        errno: e.errno as i32,
        message: e.message,
    })
}

/// The shell program in the module archive.
const SHELL_PATH: &str = "sbin/sh";

/// Runs the shell on `script`'s lines, or interactively on the console.
fn shell(script: Option<alloc::string::String>) -> Reply {
    let image = match crate::boot::initramfs()
        .ok()
        .and_then(|a| a.find(SHELL_PATH))
    {
        Some(f) => f.data,
        None => return Reply::Error(alloc::format!("{SHELL_PATH} is not in the module archive")),
    };
    let mut session = Session::new();
    let interactive = script.is_none();
    session.input = match script {
        Some(s) => Input::Script(kmodlab_abi::input::ScriptInput::new(s)),
        None => Input::Console,
    };
    // A script's output is streamed to the VMM; an interactive session's goes to the serial
    // console, byte by byte, so that prompts and echoes appear as they are written.
    session.capture = (!interactive).then(OutputStream::new);
    match crate::user::run_in(image, [u64::from(interactive), 0, 0], &mut session) {
        Ok(outcome) => match outcome.exit {
            crate::user::Exit::Status(_) => Reply::Shell(channel::ShellOutput {
                output: alloc::string::String::new(),
                output_bytes: session.capture.as_ref().map_or(0, OutputStream::bytes),
                lines: outcome.reports.first().copied().unwrap_or(0) as u32,
                failed: outcome.reports.get(1).copied().unwrap_or(0) as u32,
            }),
            crate::user::Exit::Faulted(f) => Reply::Error(alloc::format!(
                "the shell faulted: {} at {:#x}",
                f.vector_name(),
                f.rip
            )),
            crate::user::Exit::Stalled => Reply::Error(
                "the shell blocked and no task could run: it would never finish".into(),
            ),
        },
        Err(e) => Reply::Error(alloc::format!("{SHELL_PATH}: {e}")),
    }
}

fn misbehave(how: Misbehaviour) -> Reply {
    kprintln!("misbehaving on request: {how:?}");
    match how {
        Misbehaviour::GarbageFrame => {
            // SAFETY: as in `exchange`: the guest-to-host half is ours to write.
            let out = unsafe { core::slice::from_raw_parts_mut(half(GUEST_TO_HOST_OFFSET), 64) };
            for (i, b) in out.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(37) ^ 0x5a;
            }
            ring_doorbell(DOORBELL_MESSAGE);
        }
        Misbehaviour::OversizedFrame => {
            // SAFETY: as above.
            let out = unsafe { core::slice::from_raw_parts_mut(half(GUEST_TO_HOST_OFFSET), 16) };
            out[0..4].copy_from_slice(&channel::FRAME_MAGIC.to_le_bytes());
            out[4..6].copy_from_slice(&channel::FRAME_VERSION.to_le_bytes());
            out[6..12].fill(0);
            out[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
            ring_doorbell(DOORBELL_MESSAGE);
        }
        Misbehaviour::BadDoorbell => ring_doorbell(0x0bad_0bad),
        Misbehaviour::SupervisorFault(kind) => selftest::supervisor_fault(kind),
        Misbehaviour::UserFault(kind) => return selftest::user_fault(kind),
        Misbehaviour::Hang => loop {
            core::hint::spin_loop();
        },
        Misbehaviour::TripleFault => {
            crate::arch::idt::load_empty_idt();
            selftest::supervisor_fault(kmodlab_abi::channel::FaultKind::InvalidOpcode);
        }
    }
    Reply::Error(alloc::format!("the VMM resumed the guest after {how:?}"))
}
