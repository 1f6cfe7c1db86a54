//! What the kmodlab VMM and its guest kernel agree on.
//!
//! Everything that crosses the VMM/guest boundary is defined here, once: where things live in
//! guest-physical memory ([`layout`]), which I/O ports mean what ([`ports`]), the boot
//! information the VMM hands the kernel ([`boot_info`]), the control channel that carries
//! commands and results ([`channel`]) and the module archive format ([`initramfs`]).
//!
//! Design rules:
//! - The VMM treats every byte the guest writes as untrusted. Every decoder here takes a byte
//!   slice and returns a typed error for anything malformed; none panics. The decoders are
//!   property-tested on the host.
//! - Encodings are explicit (little-endian fields at fixed offsets, or postcard for messages),
//!   never `repr(C)` structs reinterpreted in place, so that neither side needs `unsafe` to
//!   read the other's data.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot_info;
pub mod channel;
pub mod initramfs;
pub mod input;
pub mod kpti;
pub mod layout;
pub mod modinfo;
pub mod modules_dep;
pub mod params;
pub mod ports;
pub mod status;

use serde::{Deserialize, Serialize};

/// Which kind of KVM the guest runs on. Every result kmodlab reports carries it, because
/// privilege crossings cost an order of magnitude more on PVM than on hardware KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvmFlavour {
    /// Hardware-assisted KVM (Intel VMX or AMD SVM).
    Hardware,
    /// kvm_pvm, the paravirtual page-table-based hypervisor (no VMX/SVM on the host).
    Pvm,
}

impl KvmFlavour {
    /// The name used in reports and JSON (`"hardware"`, `"pvm"`).
    pub const fn name(self) -> &'static str {
        match self {
            KvmFlavour::Hardware => "hardware",
            KvmFlavour::Pvm => "pvm",
        }
    }

    const fn code(self) -> u32 {
        match self {
            KvmFlavour::Hardware => 1,
            KvmFlavour::Pvm => 2,
        }
    }

    const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(KvmFlavour::Hardware),
            2 => Some(KvmFlavour::Pvm),
            _ => None,
        }
    }
}

/// The two module-subsystem configurations kmodlab compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KernelConfig {
    /// Modules are loaded into the kernel, as Linux does.
    Monolithic,
    /// Modules run as user-space servers reached over IPC.
    Microkernel,
}

impl KernelConfig {
    /// The name used on the command line, in reports and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            KernelConfig::Monolithic => "monolithic",
            KernelConfig::Microkernel => "microkernel",
        }
    }

    const fn code(self) -> u32 {
        match self {
            KernelConfig::Monolithic => 1,
            KernelConfig::Microkernel => 2,
        }
    }

    const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(KernelConfig::Monolithic),
            2 => Some(KernelConfig::Microkernel),
            _ => None,
        }
    }
}
