//! The guest artifacts, embedded at build time by `build.rs` so that an installed `kmodlab`
//! binary is self-contained.

use kmodlab_abi::KernelConfig;

use crate::vm::GuestImages;

/// Bytes that start on a page boundary.
#[repr(C, align(4096))]
pub struct PageAligned<T>(pub T);

/// Guest page size, for padding the archive.
const PAGE: usize = kmodlab_abi::layout::PAGE_SIZE as usize;
const INITRAMFS_LEN: usize = include_bytes!(env!("KMODLAB_INITRAMFS")).len();
const INITRAMFS_PAGES_LEN: usize = INITRAMFS_LEN.div_ceil(PAGE) * PAGE;

/// `bytes` followed by zeros up to `M` bytes.
const fn zero_padded<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    let mut out = [0u8; M];
    out.split_at_mut(N).0.copy_from_slice(bytes);
    out
}

/// The archive in the executable's read-only data, page-aligned and zero-padded to whole
/// pages: already file-backed page cache, so the VMM can give it to the guest as a
/// read-only memory slot instead of copying it into freshly allocated guest RAM (a first
/// write to a fresh page is the costly part of a boot on kvm_pvm hosts). The padding is part
/// of the array, so the pages show the guest nothing but the archive and zeros.
static INITRAMFS_PAGES: PageAligned<[u8; INITRAMFS_PAGES_LEN]> =
    PageAligned(zero_padded(include_bytes!(env!("KMODLAB_INITRAMFS"))));

/// The module archive: user programs, modules, `modules.dep`.
pub static INITRAMFS: &[u8] = INITRAMFS_PAGES.0.split_at(INITRAMFS_LEN).0;

/// A kernel ELF embedded page-aligned, so that the file pages of its text and rodata can be
/// the guest's (see `boot_memory::plan`).
macro_rules! page_aligned_kernel {
    ($(#[$doc:meta])* $name:ident, $pages:ident, $env:literal) => {
        static $pages: PageAligned<[u8; include_bytes!(env!($env)).len()]> =
            PageAligned(*include_bytes!(env!($env)));
        $(#[$doc])*
        pub static $name: &[u8] = &$pages.0;
    };
}

page_aligned_kernel!(
    /// The monolithic kernel ELF.
    KERNEL_MONOLITHIC,
    KERNEL_MONOLITHIC_PAGES,
    "KMODLAB_KERNEL_MONOLITHIC"
);
page_aligned_kernel!(
    /// The microkernel kernel ELF.
    KERNEL_MICROKERNEL,
    KERNEL_MICROKERNEL_PAGES,
    "KMODLAB_KERNEL_MICROKERNEL"
);
page_aligned_kernel!(
    /// The monolithic kernel built without module unloading (CONFIG_MODULE_UNLOAD off).
    KERNEL_MONOLITHIC_NOUNLOAD,
    KERNEL_MONOLITHIC_NOUNLOAD_PAGES,
    "KMODLAB_KERNEL_MONOLITHIC_NOUNLOAD"
);

/// Whether `image` is one of the embedded kernels itself: `'static`, page-aligned, never
/// written, so its pages may back guest memory for the whole run.
pub fn is_embedded_kernel(image: &[u8]) -> bool {
    KERNELS.iter().any(|(_, k)| core::ptr::eq(image, *k))
}

/// The embedded archive's whole pages (its bytes, then zeros to the page boundary) if
/// `archive` is the embedded archive itself, else `None` (a caller's archive, e.g. one with
/// extra modules, lives on the heap and is copied).
pub fn embedded_archive_pages(archive: &[u8]) -> Option<&'static [u8]> {
    core::ptr::eq(archive, INITRAMFS).then_some(&INITRAMFS_PAGES.0[..])
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_archive_is_whole_zero_padded_pages() {
        let pages = embedded_archive_pages(INITRAMFS).expect("the embedded archive maps");
        assert_eq!(pages.as_ptr() as usize % PAGE, 0);
        assert_eq!(pages.len(), INITRAMFS.len().div_ceil(PAGE) * PAGE);
        assert_eq!(&pages[..INITRAMFS.len()], INITRAMFS);
        assert!(pages[INITRAMFS.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn only_the_embedded_images_themselves_are_mapped() {
        let copy = INITRAMFS.to_vec();
        assert_eq!(embedded_archive_pages(&copy), None);
        assert_eq!(
            embedded_archive_pages(&INITRAMFS[..INITRAMFS.len() - 1]),
            None
        );
        for (_, k) in KERNELS {
            assert!(is_embedded_kernel(k));
            assert_eq!(k.as_ptr() as usize % PAGE, 0);
            let copy: Vec<u8> = k.to_vec();
            assert!(!is_embedded_kernel(&copy));
        }
    }
}
