//! Small CPU operations: ports the VMM listens on, control registers, halting.

use kmodlab_abi::ports::{self, BootStage};
use x86_64::instructions::port::Port;

/// Reports a boot milestone to the VMM (one VM exit).
pub fn boot_progress(stage: BootStage) {
    // SAFETY: the boot progress port is the VMM's; writing it has no effect on guest memory.
    unsafe { Port::<u8>::new(ports::BOOT_PROGRESS).write(stage as u8) };
}

/// Ends the run with `status`: the VMM stops the VM on this write.
pub fn exit(status: u32) -> ! {
    // SAFETY: the exit port is the VMM's; the write ends the run.
    unsafe { Port::<u32>::new(ports::EXIT).write(status) };
    halt_forever()
}

/// Stops this CPU for good (if the VMM ever resumed it after an exit request).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The faulting address of the last page fault.
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}
