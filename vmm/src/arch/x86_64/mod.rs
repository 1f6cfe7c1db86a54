//! x86-64 boot: everything the VMM writes before the guest's first instruction, one file per
//! concern. Every guest-physical address used here is a constant of
//! [`kmodlab_abi::layout`], the one layout file the guest kernel shares.

pub mod gdt;
pub mod msr;
pub mod paging;
pub mod regs;
