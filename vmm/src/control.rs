//! The host side of the control channel (protocol: `kmodlab_abi::channel`).
//!
//! Everything in the guest-to-host half is untrusted: the header is copied out and checked
//! first, then exactly the declared payload (bounded by the half's size) is copied and
//! decoded. A malformed frame is a [`ControlError`], never a panic.

use std::collections::VecDeque;

use kmodlab_abi::channel::{
    self, Command, FrameError, FrameHeader, GUEST_TO_HOST_OFFSET, HALF_SIZE, HEADER_SIZE,
    HOST_TO_GUEST_OFFSET, HostMsg, MAX_PAYLOAD, ReadyInfo, Reply,
};
use kmodlab_abi::layout::CONTROL_GPA;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

/// Why an exchange on the control channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The guest's frame is malformed (the guest is at fault).
    #[error("the guest wrote a malformed control frame: {0}")]
    Frame(#[from] FrameError),
    /// Guest memory could not be accessed (the VMM is at fault).
    #[error("the control channel's guest memory is inaccessible: {0}")]
    Memory(#[from] GuestMemoryError),
}

/// The VMM's end of the channel.
pub struct HostChannel {
    mem: GuestMemoryMmap,
    encode_buf: Vec<u8>,
}

impl HostChannel {
    /// A channel over `mem`'s control area.
    pub fn new(mem: GuestMemoryMmap) -> HostChannel {
        HostChannel {
            mem,
            encode_buf: vec![0; HALF_SIZE],
        }
    }

    /// Copies the guest's current frame out of guest memory, checking its header.
    pub fn read_guest_frame(&self) -> Result<Vec<u8>, ControlError> {
        let base = GuestAddress(CONTROL_GPA + GUEST_TO_HOST_OFFSET as u64);
        let mut header = [0u8; HEADER_SIZE];
        self.mem.read_slice(&mut header, base)?;
        let parsed = FrameHeader::parse_header(&header, MAX_PAYLOAD)?;
        let mut frame = vec![0u8; parsed.frame_len()];
        self.mem.read_slice(&mut frame, base)?;
        // Re-check the copy: this is the buffer that gets decoded, and the guest may change
        // memory between the two reads only if it runs, which it does not during an exit;
        // checking again costs nothing and keeps the decoder honest regardless.
        FrameHeader::parse(&frame)?;
        Ok(frame)
    }

    /// Writes `msg` as the host's answer with sequence number `seq`.
    pub fn write_host_msg(&mut self, seq: u32, msg: &HostMsg) -> Result<(), ControlError> {
        let n = channel::encode_frame(&mut self.encode_buf, seq, msg)?;
        self.mem.write_slice(
            &self.encode_buf[..n],
            GuestAddress(CONTROL_GPA + HOST_TO_GUEST_OFFSET as u64),
        )?;
        Ok(())
    }
}

/// What the guest told the VMM, for a [`Controller`] to answer.
// One event at a time, handed straight to the controller: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// The kernel is ready for its first command.
    Ready(ReadyInfo),
    /// The result of the last command.
    Reply(Reply),
}

/// What the VMM set up for a run, as a [`Controller`] learns it before the guest starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFacts {
    /// The KVM flavour.
    pub flavour: kmodlab_abi::KvmFlavour,
    /// The guest's TSC frequency in kHz (to turn guest cycles into time).
    pub tsc_khz: u64,
}

/// Decides what the guest does next. Runs on the vCPU thread, inside a VM exit.
pub trait Controller: Send + 'static {
    /// The answer to `event`: a command, or shutdown.
    fn next(&mut self, event: Event) -> HostMsg;

    /// Called once, before the guest's first instruction.
    fn started(&mut self, _facts: &RunFacts) {}

    /// Called at every doorbell just before [`Controller::next`], with the VM exits counted
    /// so far (this doorbell's included), so that a controller can attribute exits to the
    /// command that caused them.
    fn exits(&mut self, _exits: &std::collections::BTreeMap<&'static str, u64>) {}

    /// Output the running command streamed ([`kmodlab_abi::channel::GuestMsg::Output`]),
    /// already shown on the console; the VMM answers the guest itself, so a controller can
    /// only keep it or not.
    fn output(&mut self, _text: &str) {}
}

/// The longest script a [`Command::Shell`] can carry: the channel's payload less the
/// command's own encoding (variant tags, and a 3-byte length prefix at this size).
pub fn max_script_bytes() -> usize {
    let empty = HostMsg::Command(Command::Shell {
        script: Some(String::new()),
    });
    // `encoded_len` of a message this small cannot fail; 1 byte of it is the empty length.
    let overhead = channel::encoded_len(&empty).unwrap_or(MAX_PAYLOAD) - 1;
    MAX_PAYLOAD.saturating_sub(overhead + 3)
}

/// Most shell output a [`Script`] keeps per command; beyond it, output is counted in
/// [`Script::output_dropped`] but not kept (the console shows it all the same). A script's
/// output is bounded by the run's deadline only, which is no bound on memory.
pub const SCRIPT_OUTPUT_LIMIT: usize = 64 << 20;

/// Runs a fixed list of commands, keeps their replies, then shuts the guest down with
/// status 0.
#[derive(Debug, Default)]
pub struct Script {
    commands: VecDeque<Command>,
    /// Replies, in command order. A [`Reply::Shell`]'s `output` holds what the command
    /// streamed (up to [`SCRIPT_OUTPUT_LIMIT`]).
    pub replies: Vec<Reply>,
    /// The guest's ready message.
    pub ready: Option<ReadyInfo>,
    /// Output streamed since the last reply.
    streamed: String,
    /// Bytes of streamed output not kept, over the whole run.
    pub output_dropped: u64,
}

impl Script {
    /// A script of `commands`.
    pub fn new(commands: impl IntoIterator<Item = Command>) -> Script {
        Script {
            commands: commands.into_iter().collect(),
            ..Default::default()
        }
    }
}

impl Controller for Script {
    fn next(&mut self, event: Event) -> HostMsg {
        match event {
            Event::Ready(info) => self.ready = Some(info),
            Event::Reply(Reply::Shell(mut shell)) => {
                let streamed = std::mem::take(&mut self.streamed);
                shell.output = streamed + &shell.output;
                self.replies.push(Reply::Shell(shell));
            }
            Event::Reply(reply) => self.replies.push(reply),
        }
        match self.commands.pop_front() {
            Some(cmd) => HostMsg::Command(cmd),
            None => HostMsg::Shutdown { status: 0 },
        }
    }

    fn output(&mut self, text: &str) {
        let room = SCRIPT_OUTPUT_LIMIT.saturating_sub(self.streamed.len());
        if text.len() <= room {
            self.streamed.push_str(text);
        } else {
            let mut keep = room;
            while !text.is_char_boundary(keep) {
                keep -= 1;
            }
            self.streamed.push_str(&text[..keep]);
            self.output_dropped += (text.len() - keep) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmodlab_abi::channel::{GuestMsg, decode_frame};
    use kmodlab_abi::layout::CONTROL_SIZE;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (CONTROL_GPA + CONTROL_SIZE) as usize)])
            .unwrap()
    }

    #[test]
    fn reads_a_valid_guest_frame() {
        let mem = mem();
        let mut buf = vec![0u8; 256];
        let msg = GuestMsg::Reply(Reply::Echo(vec![9, 8, 7]));
        let n = channel::encode_frame(&mut buf, 5, &msg).unwrap();
        mem.write_slice(
            &buf[..n],
            GuestAddress(CONTROL_GPA + GUEST_TO_HOST_OFFSET as u64),
        )
        .unwrap();
        let ch = HostChannel::new(mem);
        let frame = ch.read_guest_frame().unwrap();
        assert_eq!(frame.len(), n);
        let (seq, back): (u32, GuestMsg<'_>) = decode_frame(&frame).unwrap();
        assert_eq!((seq, back), (5, msg));
    }

    #[test]
    fn rejects_garbage_and_oversized_frames() {
        let mem = mem();
        let ch = HostChannel::new(mem.clone());
        // All zeroes: no magic.
        assert!(matches!(
            ch.read_guest_frame(),
            Err(ControlError::Frame(FrameError::BadMagic { found: 0 }))
        ));
        let mut header = [0u8; HEADER_SIZE];
        header[0..4].copy_from_slice(&channel::FRAME_MAGIC.to_le_bytes());
        header[4..6].copy_from_slice(&channel::FRAME_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        mem.write_slice(
            &header,
            GuestAddress(CONTROL_GPA + GUEST_TO_HOST_OFFSET as u64),
        )
        .unwrap();
        assert!(matches!(
            ch.read_guest_frame(),
            Err(ControlError::Frame(FrameError::BadLength { .. }))
        ));
    }

    #[test]
    fn host_answers_land_in_the_host_half() {
        let mem = mem();
        let mut ch = HostChannel::new(mem.clone());
        ch.write_host_msg(3, &HostMsg::Shutdown { status: 4 })
            .unwrap();
        let mut area = vec![0u8; 64];
        mem.read_slice(&mut area, GuestAddress(CONTROL_GPA))
            .unwrap();
        let (seq, msg) = channel::decode_owned_frame::<HostMsg>(&area).unwrap();
        assert_eq!((seq, msg), (3, HostMsg::Shutdown { status: 4 }));
    }

    #[test]
    fn script_runs_commands_then_shuts_down() {
        let mut s = Script::new([Command::Echo(vec![1])]);
        let first = s.next(Event::Ready(ReadyInfo {
            config: kmodlab_abi::KernelConfig::Monolithic,
            flavour: kmodlab_abi::KvmFlavour::Pvm,
            tsc_entry: 0,
            tsc_memory_ready: 0,
            tsc_ready: 0,
            image: Default::default(),
            frames_total: 0,
            frames_free: 0,
            heap_bytes: 0,
        }));
        assert_eq!(first, HostMsg::Command(Command::Echo(vec![1])));
        let second = s.next(Event::Reply(Reply::Echo(vec![1])));
        assert_eq!(second, HostMsg::Shutdown { status: 0 });
        assert_eq!(s.replies, vec![Reply::Echo(vec![1])]);
    }

    #[test]
    fn the_longest_script_fits_the_channel_and_one_byte_more_does_not() {
        let fits = |len: usize| {
            let msg = HostMsg::Command(Command::Shell {
                script: Some("x".repeat(len)),
            });
            channel::encoded_len(&msg).unwrap() <= MAX_PAYLOAD
        };
        let max = max_script_bytes();
        assert!(max > MAX_PAYLOAD - 16, "{max}");
        assert!(fits(max));
        assert!(!fits(max + 1));
    }

    #[test]
    fn script_joins_streamed_output_to_the_shell_reply_within_its_limit() {
        let mut s = Script::new([]);
        s.output("one\n");
        s.output("two\n");
        let shell = |output: &str| {
            Reply::Shell(kmodlab_abi::channel::ShellOutput {
                output: output.into(),
                output_bytes: 8,
                lines: 2,
                failed: 0,
            })
        };
        s.next(Event::Reply(shell("")));
        assert_eq!(s.replies, vec![shell("one\ntwo\n")]);
        // The next command's output starts afresh.
        s.output("three\n");
        s.next(Event::Reply(shell("")));
        assert_eq!(s.replies[1], shell("three\n"));

        // Past the limit output is counted, not kept, and never split inside a character.
        let mut s = Script::new([]);
        s.output(&"x".repeat(SCRIPT_OUTPUT_LIMIT - 1));
        s.output("é and more");
        assert_eq!(s.streamed.len(), SCRIPT_OUTPUT_LIMIT - 1);
        assert_eq!(s.output_dropped, "é and more".len() as u64);
    }
}
