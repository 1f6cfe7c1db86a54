//! I/O ports the guest uses to reach the VMM. Each `out` to one of them is a VM exit, which
//! costs ~65 k cycles on PVM: the guest uses them at boot, per command batch, and to stop,
//! never inside a timed loop.

/// First port of the 16550-compatible serial console (COM1); it spans eight ports.
pub const COM1_BASE: u16 = 0x3f8;

/// Number of ports of the serial console.
pub const COM1_PORTS: u16 = 8;

/// Writing a 32-bit value here ends the run with that value as the guest's exit status.
pub const EXIT: u16 = 0x501;

/// Writing [`DOORBELL_MESSAGE`] here tells the VMM that a frame is waiting in the
/// guest-to-host half of the control channel; when the write returns, the VMM's answer is in
/// the host-to-guest half.
pub const DOORBELL: u16 = 0x510;

/// The only value the doorbell accepts.
pub const DOORBELL_MESSAGE: u32 = 0x4b4d_4c31;

/// Writing a [`BootStage`] code here (one byte) lets the VMM time the guest's boot.
pub const BOOT_PROGRESS: u16 = 0x511;

/// The port the PVM fork's own Linux guest writes to ask for pending interrupts; ignored.
pub const PVM_PENDING_IRQ: u16 = 0x80;

/// Boot milestones reported on [`BOOT_PROGRESS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BootStage {
    /// First instruction of the kernel ran.
    Entry = 1,
    /// Kernel page tables, frame allocator and heap are up.
    MemoryReady = 2,
}

impl BootStage {
    /// Decodes a byte written by the guest.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(BootStage::Entry),
            2 => Some(BootStage::MemoryReady),
            _ => None,
        }
    }
}
