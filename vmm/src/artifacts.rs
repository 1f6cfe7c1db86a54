//! The guest artifacts, embedded at build time by `build.rs` so that an installed `kmodlab`
//! binary is self-contained.

use kmodlab_abi::KernelConfig;

use crate::vm::GuestImages;

/// The monolithic kernel ELF.
pub static KERNEL_MONOLITHIC: &[u8] = include_bytes!(env!("KMODLAB_KERNEL_MONOLITHIC"));
/// The microkernel kernel ELF.
pub static KERNEL_MICROKERNEL: &[u8] = include_bytes!(env!("KMODLAB_KERNEL_MICROKERNEL"));
/// The monolithic kernel built without module unloading (CONFIG_MODULE_UNLOAD off).
pub static KERNEL_MONOLITHIC_NOUNLOAD: &[u8] =
    include_bytes!(env!("KMODLAB_KERNEL_MONOLITHIC_NOUNLOAD"));
/// The module archive: user programs, modules, `modules.dep`.
pub static INITRAMFS: &[u8] = include_bytes!(env!("KMODLAB_INITRAMFS"));

/// Every embedded kernel, by its artifact name.
pub const KERNELS: [(&str, &[u8]); 3] = [
    ("monolithic", KERNEL_MONOLITHIC),
    ("microkernel", KERNEL_MICROKERNEL),
    ("monolithic-nounload", KERNEL_MONOLITHIC_NOUNLOAD),
];

/// The kernel built for `config`.
pub fn kernel(config: KernelConfig) -> &'static [u8] {
    match config {
        KernelConfig::Monolithic => KERNEL_MONOLITHIC,
        KernelConfig::Microkernel => KERNEL_MICROKERNEL,
    }
}

/// The embedded images for the monolithic kernel without module unloading.
pub fn images_without_unload() -> GuestImages<'static> {
    GuestImages {
        kernel: KERNEL_MONOLITHIC_NOUNLOAD,
        initramfs: INITRAMFS,
    }
}

/// The embedded images for `config`.
pub fn images(config: KernelConfig) -> GuestImages<'static> {
    GuestImages {
        kernel: kernel(config),
        initramfs: INITRAMFS,
    }
}
