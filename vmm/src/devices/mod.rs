//! Emulated devices: just the serial console (the rest of the guest's I/O is the control
//! channel, which is memory plus a doorbell port).

pub mod serial;
