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

/// Decides what the guest does next. Runs on the vCPU thread, inside a VM exit.
pub trait Controller: Send + 'static {
    /// The answer to `event`: a command, or shutdown.
    fn next(&mut self, event: Event) -> HostMsg;
}

/// Runs a fixed list of commands, keeps their replies, then shuts the guest down with
/// status 0.
#[derive(Debug, Default)]
pub struct Script {
    commands: VecDeque<Command>,
    /// Replies, in command order.
    pub replies: Vec<Reply>,
    /// The guest's ready message.
    pub ready: Option<ReadyInfo>,
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
            Event::Reply(reply) => self.replies.push(reply),
        }
        match self.commands.pop_front() {
            Some(cmd) => HostMsg::Command(cmd),
            None => HostMsg::Shutdown { status: 0 },
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
}
