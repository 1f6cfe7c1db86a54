//! From the VMM's hand-off to the control loop.
//!
//! The VMM enters [`_start`] in 64-bit mode on its boot page tables and boot stack, with the
//! GDT and TSS it wrote (see `vmm/src/arch/x86_64`). The kernel then builds its own page
//! tables and heap, moves to a guarded stack, and serves commands.

use core::arch::global_asm;

use core::sync::atomic::{AtomicU64, Ordering};
use kmodlab_abi::boot_info::BootInfo;
use kmodlab_abi::channel::{KernelImageInfo, ReadyInfo};
use kmodlab_abi::initramfs::{Archive, ArchiveError};

use kmodlab_abi::layout::{BOOT_INFO_GPA, KERNEL_VIRT_OFFSET, PAGE_SIZE, STATUS_GPA};
use kmodlab_abi::ports::BootStage;
use kmodlab_abi::status::BootPhase;
use spin::Once;

use crate::arch::{self, cpu};
use crate::{CONFIG, console, control, mm};

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rdi, rax
    mov dx, {progress}
    mov al, {entry}
    out dx, al
    xor ebp, ebp
    call {kmain}
    ud2
    "#,
    progress = const kmodlab_abi::ports::BOOT_PROGRESS,
    entry = const BootStage::Entry as u8,
    kmain = sym kmain,
);

/// The TSC at the end of each boot phase, kept in the kernel's own data (a first touch of
/// the status page this early would cost what it measures) and copied to the status page's
/// boot phase table just before the ready message.
static PHASE_TSC: [AtomicU64; BootPhase::ALL.len()] =
    [const { AtomicU64::new(0) }; BootPhase::ALL.len()];

/// Records that `phase` ended now.
fn phase_done(phase: BootPhase) {
    PHASE_TSC[phase as usize].store(guest_rt::rdtsc_ordered(), Ordering::Relaxed);
}

/// Copies the boot phase times to the status page for the VMM.
fn publish_phases() {
    for phase in BootPhase::ALL {
        let word = (KERNEL_VIRT_OFFSET + STATUS_GPA + phase.offset()) as *mut u64;
        // SAFETY: the status page is in the low area, mapped read-write in the kernel's
        // tables; the boot phase table is written only here, once, and read by the VMM.
        unsafe { word.write_volatile(PHASE_TSC[phase as usize].load(Ordering::Relaxed)) };
    }
}

/// Pages of the kernel's main stack.
const KERNEL_STACK_PAGES: u64 = 64;

/// What boot learned, for the rest of the kernel.
pub struct BootState {
    /// The VMM's boot information.
    pub info: BootInfo,
    /// TSC at the first instruction.
    pub tsc_entry: u64,
    /// TSC when memory management was up.
    pub tsc_memory_ready: u64,
}

static BOOT: Once<BootState> = Once::new();

/// The boot state; only valid after [`kmain`] stored it (every caller runs after).
pub fn state() -> &'static BootState {
    BOOT.get()
        .expect("boot state is set before anything asks for it")
}

/// Reads and checks the boot information page.
fn read_boot_info() -> BootInfo {
    let page = (KERNEL_VIRT_OFFSET + BOOT_INFO_GPA) as *const u8;
    // SAFETY: the boot page tables map the low area at KERNEL_VIRT_OFFSET, and the VMM wrote
    // one page of boot information there; nothing writes it after boot.
    let bytes = unsafe { core::slice::from_raw_parts(page, PAGE_SIZE as usize) };
    match BootInfo::decode(bytes) {
        Ok(info) => info,
        Err(e) => panic!("the VMM's boot information is unreadable: {e}"),
    }
}

extern "C" fn kmain(tsc_entry: u64) -> ! {
    PHASE_TSC[BootPhase::Entry as usize].store(tsc_entry, Ordering::Relaxed);
    let info = read_boot_info();
    if info
        .cmdline_str()
        .is_some_and(|c| c.split_whitespace().any(|w| w == "quiet"))
    {
        console::set_quiet(true);
    }
    phase_done(BootPhase::BootInfo);
    arch::init_traps();
    phase_done(BootPhase::Traps);
    // Memory management before anything else that can wait: every page touched before the
    // switch to the kernel's tables is faulted in again after it (on kvm_pvm, a trip through
    // the hypervisor each).
    let [stack_top, trap_top, double_fault_top] = mm::init(
        &info,
        [
            KERNEL_STACK_PAGES,
            arch::gdt::TRAP_STACK_PAGES,
            arch::gdt::DOUBLE_FAULT_STACK_PAGES,
        ],
        phase_done,
    );
    if info.config != CONFIG {
        panic!(
            "this kernel is the {} configuration but the VMM booted it as {}",
            CONFIG.name(),
            info.config.name()
        );
    }
    kprintln!(
        "kmodlab kernel ({}) on {} KVM{}, TSC {} kHz, {} MiB RAM",
        CONFIG.name(),
        info.host_flavour.name(),
        if info.hardware_setup_on_pvm() {
            " with the hardware-KVM setup (supervisor code emulated, no system calls)"
        } else {
            ""
        },
        info.tsc_khz,
        info.ram_size >> 20
    );
    crate::task::sched::init_watchdog(info.cmdline_str().unwrap_or(""), info.tsc_khz);
    #[cfg(feature = "monolithic")]
    crate::module::signature::configure(info.cmdline_str().unwrap_or(""));
    #[cfg(feature = "monolithic")]
    crate::module::configure_frames(info.cmdline_str().unwrap_or(""));
    let tsc_memory_ready = guest_rt::rdtsc_ordered();
    cpu::boot_progress(BootStage::MemoryReady);
    BOOT.call_once(|| BootState {
        info,
        tsc_entry,
        tsc_memory_ready,
    });
    phase_done(BootPhase::Banner);
    arch::init_trap_stacks(kpti_wanted(&state().info), trap_top, double_fault_top);
    phase_done(BootPhase::TrapStacks);
    // SAFETY: stack_top is the top of a freshly mapped, unused kernel stack, and kmain_on_stack
    // never returns, so nothing ever uses the boot stack's frames again.
    unsafe { arch::switch_stack(stack_top, kmain_on_stack) }
}

/// Whether to split the page tables between user and kernel mode (`kpti=on|off|auto` on the
/// command line; auto: on where nothing else isolates the kernel, i.e. on kvm_pvm). A value
/// that is none of those is reported and read as auto.
fn kpti_wanted(info: &BootInfo) -> bool {
    use kmodlab_abi::kpti::Kpti;
    let pvm = info.flavour == kmodlab_abi::KvmFlavour::Pvm;
    let mode = Kpti::from_cmdline(info.cmdline_str().unwrap_or("")).unwrap_or_else(|e| {
        kprintln!("{e}; using auto");
        Kpti::Auto
    });
    let on = mode.resolve(pvm);
    kprintln!(
        "kpti: {} ({mode:?}; user mode runs on {} page tables)",
        if on { "on" } else { "off" },
        if on { "its own" } else { "the kernel's" }
    );
    on
}

extern "C" fn kmain_on_stack() -> ! {
    if let Err(e) = crate::backend::backend().start() {
        kprintln!("module subsystem: {e}");
    }
    phase_done(BootPhase::Backend);
    let boot = state();
    let (frames_total, frames_free) = mm::frame_stats();
    let ready = ReadyInfo {
        config: CONFIG,
        flavour: boot.info.flavour,
        tsc_entry: boot.tsc_entry,
        tsc_memory_ready: boot.tsc_memory_ready,
        tsc_ready: guest_rt::rdtsc_ordered(),
        image: image_info(),
        frames_total,
        frames_free,
        heap_bytes: mm::heap_stats().size as u64,
    };
    phase_done(BootPhase::Ready);
    publish_phases();
    kprintln!(
        "ready: {} KiB text, {} of {} frames free",
        ready.image.text >> 10,
        frames_free,
        frames_total
    );
    if boot.info.cmdline_str().is_some_and(|c| {
        c.split_whitespace()
            .any(|w| w == mm::heap::FAULT_IN_ALLOC_KNOB)
    }) {
        kprintln!(
            "{}: the next heap allocation faults",
            mm::heap::FAULT_IN_ALLOC_KNOB
        );
        mm::heap::arm_fault_in_alloc();
    }
    if boot
        .info
        .cmdline_str()
        .is_some_and(|c| c.split_whitespace().any(|w| w == WRITE_ARCHIVE_KNOB))
    {
        kprintln!("{WRITE_ARCHIVE_KNOB}: writing the module archive's first byte");
        let at = mm::paging::phys_to_virt(boot.info.initrd.start) as *mut u8;
        // SAFETY: the archive's first byte lies in RAM the direct map covers and nothing
        // holds a reference to it now; a write there either lands in the kernel's own copy
        // (which it then no longer trusts: the knob is for testing) or, where the VMM gave
        // the archive as read-only memory, exits to the VMM, which ends the run.
        unsafe { at.write_volatile(at.read_volatile() ^ 0xff) };
    }
    control::serve(ready)
}

/// Command-line word that makes the kernel write its module archive once it is ready: the
/// test that the VMM ends such a run as the guest's fault when the archive is read-only.
pub const WRITE_ARCHIVE_KNOB: &str = "debug.write_archive=1";

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __bss_start: u8;
    static __bss_end: u8;
}

/// Start and end addresses of the kernel image's parts, from the linker script.
pub struct ImageLayout {
    /// `[start, end)` of `.text`.
    pub text: (u64, u64),
    /// `[start, end)` of `.rodata` (and the kernel export table).
    pub rodata: (u64, u64),
    /// `[start, end)` of `.data` and `.bss`.
    pub data: (u64, u64),
    /// Start of `.bss`.
    pub bss_start: u64,
}

/// The kernel image's layout.
pub fn image_layout() -> ImageLayout {
    let addr = |s: &u8| s as *const u8 as u64;
    // SAFETY: these are linker-script symbols; only their addresses are taken, never their
    // (nonexistent) values.
    unsafe {
        ImageLayout {
            text: (addr(&__text_start), addr(&__text_end)),
            rodata: (addr(&__rodata_start), addr(&__rodata_end)),
            data: (addr(&__data_start), addr(&__bss_end)),
            bss_start: addr(&__bss_start),
        }
    }
}

fn image_info() -> KernelImageInfo {
    let l = image_layout();
    KernelImageInfo {
        text: l.text.1 - l.text.0,
        rodata: l.rodata.1 - l.rodata.0,
        data: l.bss_start - l.data.0,
        bss: l.data.1 - l.bss_start,
    }
}

/// The module archive the VMM placed in memory.
pub fn initramfs() -> Result<Archive<'static>, ArchiveError> {
    let r = state().info.initrd;
    let ptr = crate::mm::paging::phys_to_virt(r.start) as *const u8;
    // SAFETY: the VMM placed the archive at [start, end) in RAM, outside every usable range
    // (so no allocation overlaps it); the direct map covers it; nothing ever writes it.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, (r.end - r.start) as usize) };
    Archive::new(bytes)
}
