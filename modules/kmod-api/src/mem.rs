//! Kernel memory for modules: an owned, zeroed buffer from `kmod_alloc`.

use core::ptr::NonNull;

use crate::Errno;

/// A zero-filled block of kernel memory, freed when dropped.
pub struct KBuffer {
    ptr: NonNull<u8>,
    len: usize,
    align: usize,
}

// SAFETY: KBuffer owns its block exclusively (like Box<[u8]>); moving it to another thread
// moves that ownership.
unsafe impl Send for KBuffer {}
// SAFETY: shared references only give out `&[u8]`; mutation needs `&mut KBuffer`.
unsafe impl Sync for KBuffer {}

impl KBuffer {
    /// Allocates `len` zeroed bytes aligned to `align` (a power of two, at most 4096).
    /// `EINVAL` for `len` 0 or a bad `align`, `ENOMEM` when the kernel has no memory.
    pub fn new_zeroed(len: usize, align: usize) -> Result<KBuffer, Errno> {
        if len == 0 || !align.is_power_of_two() || align > 4096 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: kmod_alloc has no preconditions beyond what was checked above; it returns
        // null or a block it hands over to us.
        let raw = unsafe { crate::raw::kmod_alloc(len, align) };
        let ptr = NonNull::new(raw).ok_or(Errno::ENOMEM)?;
        Ok(KBuffer { ptr, len, align })
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a KBuffer holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the block is `len` initialised (zeroed) bytes owned by self, and `&self`
        // rules out a concurrent `&mut`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for KBuffer {
    fn drop(&mut self) {
        // SAFETY: the block came from kmod_alloc with exactly this size and alignment and is
        // freed once, here.
        unsafe { crate::raw::kmod_free(self.ptr.as_ptr(), self.len, self.align) }
    }
}
