//! kmodlab's VMM: boots the guest kernel on KVM (hardware or kvm_pvm), drives it over the
//! control channel, and reports what happened and what it cost.
//!
//! - [`kvm`]: opening KVM with errors a user can act on.
//! - [`arch::x86_64`]: the boot state the VMM writes (GDT/TSS, page tables, registers, MSRs).
//! - [`devices`]: the serial console.
//! - [`control`]: the host end of the control channel, and the controllers that drive it.
//! - [`vm`]: one run of the guest, with a deadline.
//! - [`boot_memory`]: which guest memory is fresh RAM and which the executable's own pages.
//! - [`selftest`]: the `boot` command's self-test and its report.
//! - [`artifacts`]: the embedded guest kernel, user programs and modules.
//! - [`compare`]: `kmodlab compare`, `report` and `check`: both configurations measured side
//!   by side, and the CI regression gate.
//! - [`faults`]: `kmodlab faults`, the fault-injection campaign.
//! - [`image`]: what a kernel image's privileged code is made of.

pub mod arch;
pub mod artifacts;
pub mod boot_memory;
pub mod compare;
pub mod control;
pub mod devices;
pub mod faults;
pub mod host;
pub mod image;
pub mod kvm;
pub mod selftest;
pub mod vm;

pub use kmodlab_abi::{KernelConfig, KvmFlavour};
