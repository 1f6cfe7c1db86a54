//! One guest run: create the VM, load the kernel and module archive, run the vCPU on its own
//! thread under a deadline, and report how the run ended.
//!
//! Nothing the guest does can make the VMM panic or hang: every exit is handled or ends the
//! run with a [`RunEnd`] that says what happened; a guest that does not finish by the
//! deadline is stopped (its vCPU thread is kicked out of `KVM_RUN` with a signal and joined,
//! so no thread is left behind) and reported as hung.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use kmodlab_abi::boot_info::{BootInfo, PhysRange};
use kmodlab_abi::channel::{FaultReport, FrameError, GuestMsg, HostMsg};
use kmodlab_abi::layout::{
    self, INITRD_GPA, KERNEL_PHYS_START, KVM_TSS_GPA, MAX_RAM, MIN_RAM, VIF_PAGE_GPA,
};
use kmodlab_abi::ports::{self, BootStage};
use kmodlab_abi::{KernelConfig, KvmFlavour};
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY, kvm_userspace_memory_region};
use kvm_ioctls::{Cap, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use crate::arch::x86_64::{gdt, msr, paging, regs};
use crate::boot_memory;
use crate::control::{ControlError, Controller, Event, HostChannel};
use crate::devices::serial::{Console, ConsoleLog, Echo};
use crate::kvm::{self, PreflightError};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Which kernel configuration to boot.
    pub config: KernelConfig,
    /// Guest RAM in bytes (a multiple of 2 MiB within `[MIN_RAM, MAX_RAM]`).
    pub ram_bytes: u64,
    /// Stop the guest and report it hung after this long.
    pub deadline: Duration,
    /// Kernel command line.
    pub cmdline: String,
    /// How long a guest user program may run without entering the kernel before the VMM
    /// takes the CPU back with [`kmodlab_abi::status::PREEMPT_VECTOR`] (the kernel's
    /// watchdog then decides whether it goes on); `None` never interrupts the guest.
    pub timeslice: Option<Duration>,
    /// Debug: boot with the guest setup of hardware KVM (no VIF page, kernel page-table
    /// entries without U/S) even on a kvm_pvm host, so that the hardware paging, boot and
    /// fault paths run on machines that have only kvm_pvm. Supervisor code is then emulated
    /// (thousands of cycles per instruction), and a user `syscall` does not reach supervisor
    /// mode, so user programs that make system calls cannot run (the self-test says which
    /// checks it could not run; the shell is unusable). No effect on hardware KVM.
    pub hardware_setup: bool,
    /// Debug: copy the embedded images into guest RAM as on a KVM without
    /// `KVM_CAP_READONLY_MEM`, so that this fallback runs (and is tested) on hosts that have
    /// the capability. The boot timings then name this option as the reason.
    pub without_read_only_memory: bool,
}

/// The default time slice: long enough that no system-call-making program is ever
/// interrupted (its entries into the kernel reset the slice), short enough that a looping one
/// is stopped soon after the watchdog's budget.
pub const DEFAULT_TIMESLICE: Duration = Duration::from_millis(10);

impl VmConfig {
    /// 256 MiB, 60 s deadline, empty command line, [`DEFAULT_TIMESLICE`], the setup of the
    /// host's KVM.
    pub fn new(config: KernelConfig) -> VmConfig {
        VmConfig {
            config,
            ram_bytes: 256 << 20,
            deadline: Duration::from_secs(60),
            cmdline: String::new(),
            timeslice: Some(DEFAULT_TIMESLICE),
            hardware_setup: false,
            without_read_only_memory: false,
        }
    }
}

/// The guest images a run boots.
#[derive(Debug, Clone, Copy)]
pub struct GuestImages<'a> {
    /// The kernel ELF.
    pub kernel: &'a [u8],
    /// The module archive (cpio newc).
    pub initramfs: &'a [u8],
}

/// Why the VMM could not run the guest (as opposed to how the guest ended: [`RunEnd`]).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// KVM is unusable on this machine.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// A KVM ioctl failed.
    #[error("{op} failed: {source}")]
    Kvm {
        /// The operation.
        op: &'static str,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest RAM size out of range.
    #[error(
        "guest RAM of {0} bytes is not a multiple of 2 MiB within {min} MiB..={max} MiB",
        min = MIN_RAM >> 20,
        max = MAX_RAM >> 20
    )]
    BadRamSize(u64),
    /// Guest memory could not be created or written.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The kernel image is not loadable.
    #[error("the guest kernel image is not loadable: {0}")]
    Kernel(String),
    /// The module archive does not fit.
    #[error("the module archive ({size} bytes) does not fit in {ram} MiB of guest RAM")]
    ArchiveTooLarge {
        /// Archive size.
        size: usize,
        /// RAM in MiB.
        ram: u64,
    },
    /// The command line is too long.
    #[error(
        "the kernel command line is longer than {} bytes",
        kmodlab_abi::boot_info::MAX_CMDLINE
    )]
    CmdlineTooLong,
    /// The vCPU thread could not be started, or died.
    #[error("the vCPU thread {0}")]
    Thread(String),
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { op, source }
}

fn mem_err(e: impl std::fmt::Display) -> VmError {
    VmError::Memory(e.to_string())
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// The guest wrote its exit status to the exit port.
    Exited {
        /// The status.
        status: u32,
    },
    /// The guest kernel took an exception in supervisor mode and reported it.
    KernelFault(FaultReport),
    /// The guest kernel panicked.
    KernelPanic {
        /// The panic message.
        message: String,
        /// Where.
        location: String,
    },
    /// The vCPU triple-faulted (KVM_EXIT_SHUTDOWN): the guest could not even report.
    TripleFault {
        /// RIP when KVM stopped the vCPU.
        rip: u64,
        /// CR2 when KVM stopped the vCPU.
        cr2: u64,
    },
    /// The guest did not finish before the deadline.
    Hung {
        /// The deadline that passed.
        after: Duration,
        /// RIP when it was stopped, if readable.
        rip: Option<u64>,
    },
    /// The guest halted with nothing to wake it.
    Halted {
        /// RIP after the `hlt`.
        rip: u64,
    },
    /// The guest wrote a malformed control frame.
    ChannelError(FrameError),
    /// The guest rang the doorbell with a wrong value.
    BadDoorbell {
        /// The value written.
        value: u32,
    },
    /// The guest accessed guest-physical memory that does not exist.
    UnbackedMemory {
        /// The address.
        gpa: u64,
        /// Whether it was a write.
        write: bool,
    },
    /// The guest wrote guest-physical memory the VMM gave it read-only (the kernel's text
    /// and rodata, the module archive).
    ReadOnlyWrite {
        /// The address.
        gpa: u64,
        /// What is there.
        what: &'static str,
    },
    /// KVM could not run the vCPU (internal error, failed entry, unexpected exit).
    KvmFailure(String),
    /// The controller's next message does not fit the control channel (the host's fault,
    /// e.g. a module image larger than the channel's half).
    AnswerTooLarge(String),
}

impl RunEnd {
    /// Whether the guest exited normally with status 0.
    pub fn is_clean_exit(&self) -> bool {
        *self == RunEnd::Exited { status: 0 }
    }

    /// One line describing the end, for users.
    pub fn describe(&self) -> String {
        match self {
            RunEnd::Exited { status } => format!("guest exited with status {status:#x}"),
            RunEnd::KernelFault(f) => format!(
                "guest kernel crashed: {} (vector {}) at RIP {:#x}, CR2 {:#x}, error code {:#x}, CPL {}",
                f.vector_name(),
                f.vector,
                f.rip,
                f.cr2,
                f.error_code,
                f.cpl
            ),
            RunEnd::KernelPanic { message, location } => {
                format!("guest kernel panicked at {location}: {message}")
            }
            RunEnd::TripleFault { rip, cr2 } => {
                format!("guest triple-faulted (KVM shutdown) at RIP {rip:#x}, CR2 {cr2:#x}")
            }
            RunEnd::Hung { after, rip } => match rip {
                Some(rip) => format!("guest hung: stopped after {after:?} at RIP {rip:#x}"),
                None => format!("guest hung: stopped after {after:?}"),
            },
            RunEnd::Halted { rip } => format!("guest halted at RIP {rip:#x}"),
            RunEnd::ChannelError(e) => format!("guest broke the control channel: {e}"),
            RunEnd::BadDoorbell { value } => {
                format!(
                    "guest rang the doorbell with {value:#x} instead of {:#x}",
                    ports::DOORBELL_MESSAGE
                )
            }
            RunEnd::UnbackedMemory { gpa, write } => format!(
                "guest {} unbacked guest-physical address {gpa:#x}",
                if *write { "wrote" } else { "read" }
            ),
            RunEnd::ReadOnlyWrite { gpa, what } => format!(
                "guest wrote read-only guest-physical address {gpa:#x} ({what}, which the \
                 kernel must only read)"
            ),
            RunEnd::KvmFailure(s) => format!("KVM could not run the guest: {s}"),
            RunEnd::AnswerTooLarge(s) => format!(
                "the VMM's command does not fit the control channel ({} KiB): {s}",
                kmodlab_abi::channel::MAX_PAYLOAD >> 10
            ),
        }
    }
}

/// Wall-clock milestones of a run, measured from the caller's `t0` (process start).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BootTimings {
    /// `KVM_CREATE_VM` done.
    pub vm_created_ms: f64,
    /// Guest memory allocated and registered.
    pub memory_ready_ms: f64,
    /// Kernel, archive and boot structures written.
    pub loaded_ms: f64,
    /// vCPU created and its registers set.
    pub vcpu_ready_ms: f64,
    /// The guest's first instruction reported itself (first VM exit).
    pub first_instruction_ms: Option<f64>,
    /// The guest kernel's memory management was up.
    pub guest_memory_ready_ms: Option<f64>,
    /// The guest kernel sent `Ready`.
    pub ready_ms: Option<f64>,
    /// How the module archive reached guest memory: mapped read-only from the executable,
    /// or copied (and why).
    pub archive: String,
    /// How the kernel image reached guest memory: which part was mapped read-only from the
    /// executable, and how much was copied.
    pub kernel: String,
    /// How long each step of the guest kernel's boot took (from its boot phase table, read
    /// once the run ended; empty if the guest never got that far).
    pub guest_phases_ms: Vec<GuestPhase>,
}

/// One step of the guest kernel's boot ([`kmodlab_abi::status::BootPhase`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GuestPhase {
    /// Its name.
    pub phase: &'static str,
    /// How long it took in ms, by the guest's TSC; `None` if the guest did not say.
    pub ms: Option<f64>,
}

/// The guest's boot phases from its status page, if it published them.
fn guest_phases(mem: &GuestMemoryMmap, tsc_khz: u64) -> Vec<GuestPhase> {
    use kmodlab_abi::status::{BootPhase, phase_cycles};
    let words = BootPhase::ALL.map(|p| status_word(mem, p.offset()));
    if words[BootPhase::Ready as usize] == 0 || tsc_khz == 0 {
        return Vec::new();
    }
    phase_cycles(&words)
        .into_iter()
        .map(|(phase, cycles)| GuestPhase {
            phase: phase.name(),
            ms: cycles.map(|c| c as f64 / tsc_khz as f64),
        })
        .collect()
}

/// What a run produced.
pub struct RunReport<C> {
    /// How it ended.
    pub end: RunEnd,
    /// The controller, with whatever it collected.
    pub controller: C,
    /// The KVM flavour the run used.
    pub flavour: KvmFlavour,
    /// The guest setup it booted with: `flavour`, or [`KvmFlavour::Hardware`] under
    /// [`VmConfig::hardware_setup`].
    pub guest_setup: KvmFlavour,
    /// Whether the VIF page was registered (PVM only).
    pub vif_registered: bool,
    /// kvm_pvm's feature mask, if on PVM.
    pub pvm_features: Option<u64>,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// VM exits by reason.
    pub exits: BTreeMap<&'static str, u64>,
    /// Boot milestones.
    pub timings: BootTimings,
    /// What the guest printed.
    pub console: Arc<Mutex<ConsoleLog>>,
}

impl<C> RunReport<C> {
    /// The last `n` console lines.
    pub fn last_console_lines(&self, n: usize) -> Vec<String> {
        self.console
            .lock()
            .map(|c| c.last_lines(n))
            .unwrap_or_default()
    }

    /// Everything the guest printed (the last MiB of it).
    pub fn console_text(&self) -> String {
        self.console.lock().map(|c| c.text()).unwrap_or_default()
    }

    /// Why the console could not be shown live (e.g. stdout was a full disk), if so.
    pub fn console_echo_error(&self) -> Option<String> {
        self.console
            .lock()
            .ok()
            .and_then(|c| c.echo_error().map(str::to_owned))
    }
}

/// Signal used to kick the vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn ignore_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() -> Result<(), VmError> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // Without SA_RESTART (vmm-sys-util does not set it), KVM_RUN returns EINTR.
        result = register_signal_handler(kick_signal(), ignore_signal)
            .map_err(|e| VmError::Thread(format!("cannot install its kick signal: {e}")));
    });
    result
}

/// Everything set up before the vCPU runs.
struct Machine {
    // Kept alive for the vCPU's sake: the VM file descriptor owns the memory slot.
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
    flavour: KvmFlavour,
    guest_setup: KvmFlavour,
    vif_registered: bool,
    pvm_features: Option<u64>,
    tsc_khz: u64,
    /// Guest-physical memory the guest may only read, and what it is.
    read_only: Vec<(std::ops::Range<u64>, &'static str)>,
}

/// Guest memory as [`place_memory`] set it up.
struct Placed {
    mem: GuestMemoryMmap,
    kernel: boot_memory::KernelPlan,
    initrd_end: u64,
    usable_start: u64,
    read_only: Vec<(std::ops::Range<u64>, &'static str)>,
}

/// Creates guest RAM around the read-only slots of the embedded images' own pages (see
/// [`boot_memory`]), registers it all with `vm`, and copies in what is not mapped.
fn place_memory(
    cfg: &VmConfig,
    images: GuestImages<'_>,
    kvm: &kvm_ioctls::Kvm,
    vm: &VmFd,
    timings: &mut BootTimings,
) -> Result<Placed, VmError> {
    // The archive and the free RAM after it.
    let initrd_end = INITRD_GPA + images.initramfs.len() as u64;
    let usable_start = layout::page_align_up(initrd_end).unwrap_or(u64::MAX);
    if usable_start >= cfg.ram_bytes {
        return Err(VmError::ArchiveTooLarge {
            size: images.initramfs.len(),
            ram: cfg.ram_bytes >> 20,
        });
    }
    // Which pages of the embedded images can be the guest's own (see `boot_memory`).
    let read_only_mem = if cfg.without_read_only_memory {
        Err("read-only memory slots turned off by `without_read_only_memory`")
    } else if kvm.check_extension(Cap::ReadonlyMem) {
        Ok(())
    } else {
        Err("KVM lacks KVM_CAP_READONLY_MEM")
    };
    let archive_pages = match crate::artifacts::embedded_archive_pages(images.initramfs) {
        None => Err("the archive is not the embedded one"),
        Some(pages) => read_only_mem.map(|()| pages),
    };
    let kernel_mappable = if crate::artifacts::is_embedded_kernel(images.kernel) {
        read_only_mem
    } else {
        Err("the kernel is not an embedded one")
    };
    let kernel = boot_memory::plan(images.kernel, kernel_mappable.is_ok())
        .map_err(|e| VmError::Kernel(e.to_string()))?;
    // (guest-physical range, the host pages behind it, what it is)
    let mut slots_ro: Vec<(std::ops::Range<u64>, &[u8], &'static str)> = Vec::new();
    if !kernel.mapped.is_empty() {
        let off = kernel.mapped_offset as usize;
        let len = (kernel.mapped.end - kernel.mapped.start) as usize;
        let pages = &images.kernel[off..off + len];
        slots_ro.push((kernel.mapped.clone(), pages, "the kernel's text and rodata"));
    }
    if let Ok(pages) = archive_pages {
        slots_ro.push((INITRD_GPA..usable_start, pages, "the module archive"));
    }
    let holes: Vec<_> = slots_ro.iter().map(|(r, _, _)| r.clone()).collect();
    let ram: Vec<_> = boot_memory::ram_ranges(cfg.ram_bytes, &holes)
        .into_iter()
        .map(|r| (GuestAddress(r.start), (r.end - r.start) as usize))
        .collect();
    let mem = GuestMemoryMmap::<()>::from_ranges(&ram).map_err(mem_err)?;
    let mut slot = 0u32;
    for region in mem.iter() {
        let host = mem.get_host_address(region.start_addr()).map_err(mem_err)?;
        let desc = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mmap owned by `mem`, which the Machine keeps (and the
        // vCPU thread holds a clone of) for as long as the VM exists.
        unsafe { vm.set_user_memory_region(desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        slot += 1;
    }
    for (range, pages, _) in &slots_ro {
        debug_assert_eq!(pages.len() as u64, range.end - range.start);
        debug_assert!((pages.as_ptr() as u64).is_multiple_of(layout::PAGE_SIZE));
        let desc = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: range.start,
            memory_size: pages.len() as u64,
            userspace_addr: pages.as_ptr() as u64,
            flags: KVM_MEM_READONLY,
        };
        // SAFETY: `pages` are whole, page-aligned pages of an embedded image (checked by
        // `artifacts::embedded_archive_pages` / `is_embedded_kernel`: `'static` data of the
        // executable, never written), so they outlive the VM; the slot is read-only, so KVM
        // never writes them (a guest write exits as MMIO and ends the run as its fault).
        unsafe { vm.set_user_memory_region(desc) }.map_err(kvm_err(
            "KVM_SET_USER_MEMORY_REGION (read-only image pages)",
        ))?;
        slot += 1;
    }
    timings.archive = match archive_pages {
        Ok(_) => "mapped read-only from the executable".to_string(),
        Err(why) => format!("copied into guest RAM ({why})"),
    };
    timings.kernel = match kernel_mappable {
        Ok(()) if !kernel.mapped.is_empty() => format!(
            "{} KiB of text and rodata mapped read-only from the executable, {} KiB copied",
            (kernel.mapped.end - kernel.mapped.start) >> 10,
            kernel.copies.iter().map(|(_, f)| f.len()).sum::<usize>() >> 10
        ),
        Ok(()) => "copied into guest RAM (its segments are not page-aligned in the file)".into(),
        Err(why) => format!("copied into guest RAM ({why})"),
    };
    let read_only: Vec<_> = slots_ro.iter().map(|(r, _, w)| (r.clone(), *w)).collect();

    for (gpa, file) in &kernel.copies {
        mem.write_slice(&images.kernel[file.clone()], GuestAddress(*gpa))
            .map_err(mem_err)?;
    }
    if archive_pages.is_err() {
        mem.write_slice(images.initramfs, GuestAddress(INITRD_GPA))
            .map_err(mem_err)?;
    }

    Ok(Placed {
        mem,
        kernel,
        initrd_end,
        usable_start,
        read_only,
    })
}

fn build_machine(
    cfg: &VmConfig,
    images: GuestImages<'_>,
    t0: Instant,
    timings: &mut BootTimings,
) -> Result<Machine, VmError> {
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
    if !cfg.ram_bytes.is_multiple_of(2 << 20) || !(MIN_RAM..=MAX_RAM).contains(&cfg.ram_bytes) {
        return Err(VmError::BadRamSize(cfg.ram_bytes));
    }
    let kvm = kvm::open()?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    // Needed by Intel VMX for real-mode emulation; harmless (and possibly refused) elsewhere.
    let _ = vm.set_tss_address(KVM_TSS_GPA as usize);
    timings.vm_created_ms = ms(Instant::now());

    // (Creating the vCPU and reading KVM's CPUID on helper threads beside this was tried: on
    // a busy 2-core host the helpers waited for a CPU and made boots slower, not faster.)
    let placed = place_memory(cfg, images, &kvm, &vm, timings);
    let Placed {
        mem,
        kernel,
        initrd_end,
        usable_start,
        read_only,
    } = placed?;
    timings.memory_ready_ms = ms(Instant::now());
    let entry = kernel.entry;
    let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    let flavour = if msr::is_pvm(&vcpu) {
        KvmFlavour::Pvm
    } else {
        KvmFlavour::Hardware
    };
    // What the guest is set up for: everything below (page-table flags, the VIF page, the
    // boot information) follows the setup, not the host.
    let guest_setup = if cfg.hardware_setup {
        KvmFlavour::Hardware
    } else {
        flavour
    };
    gdt::write(&mem).map_err(mem_err)?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let cr3 = paging::write(&mem, paging::kernel_entry_flags(guest_setup)).map_err(mem_err)?;
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
    let sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    vcpu.set_sregs(&regs::boot_sregs(sregs, cr3))
        .map_err(kvm_err("KVM_SET_SREGS"))?;
    vcpu.set_regs(&regs::boot_regs(entry))
        .map_err(kvm_err("KVM_SET_REGS"))?;
    let tsc_khz = u64::from(vcpu.get_tsc_khz().map_err(kvm_err("KVM_GET_TSC_KHZ"))?);
    let (vif_registered, pvm_features) = match guest_setup {
        KvmFlavour::Pvm => {
            // The VIF page is in the zeroed low area; registering it lets supervisor code run
            // natively instead of being emulated instruction by instruction.
            msr::register_vif_page(&vcpu, VIF_PAGE_GPA)
                .map_err(kvm_err("registering the PVM VIF page"))?;
            (true, msr::pvm_features(&vcpu))
        }
        KvmFlavour::Hardware if flavour == KvmFlavour::Pvm => (false, msr::pvm_features(&vcpu)),
        KvmFlavour::Hardware => (false, None),
    };

    let mut info = BootInfo::new(tsc_khz, guest_setup, cfg.config, cfg.ram_bytes);
    info.host_flavour = flavour;
    info.initrd = PhysRange {
        start: INITRD_GPA,
        end: initrd_end,
    };
    info.kernel = PhysRange {
        start: KERNEL_PHYS_START,
        end: kernel.end,
    };
    info.vif_page = if vif_registered { VIF_PAGE_GPA } else { 0 };
    info.push_usable(PhysRange {
        start: usable_start,
        end: cfg.ram_bytes,
    });
    let cmdline = match cfg.timeslice {
        Some(_) => format!("{} {}", cfg.cmdline, kmodlab_abi::status::PREEMPT_WORD),
        None => cfg.cmdline.clone(),
    };
    if !info.set_cmdline(cmdline.trim_start().as_bytes()) {
        return Err(VmError::CmdlineTooLong);
    }
    mem.write_slice(&info.encode(), GuestAddress(layout::BOOT_INFO_GPA))
        .map_err(mem_err)?;
    timings.loaded_ms = ms(Instant::now());
    Ok(Machine {
        _vm: vm,
        vcpu,
        mem,
        flavour,
        guest_setup,
        vif_registered,
        pvm_features,
        tsc_khz,
        read_only,
    })
}

/// Boots `images` with `cfg`, lets `controller` drive the guest, and reports how it ended.
/// `t0` is when the process started (for boot timings); `echo` decides where the console
/// output is shown live.
pub fn run<C: Controller>(
    cfg: &VmConfig,
    images: GuestImages<'_>,
    controller: C,
    echo: Echo,
    t0: Instant,
) -> Result<RunReport<C>, VmError> {
    run_with_input(cfg, images, controller, echo, None, t0)
}

/// Like [`run`], with the serial console's input fed from `input` (chunks of bytes; when
/// the sender is dropped, the guest reads end of input).
pub fn run_with_input<C: Controller>(
    cfg: &VmConfig,
    images: GuestImages<'_>,
    controller: C,
    echo: Echo,
    input: Option<mpsc::Receiver<Vec<u8>>>,
    t0: Instant,
) -> Result<RunReport<C>, VmError> {
    install_kick_handler()?;
    let mut timings = BootTimings::default();
    let machine = build_machine(cfg, images, t0, &mut timings)?;
    let mut console = Console::new(echo);
    if let Some(rx) = input {
        console.attach_input(rx);
    }
    let console_log = console.log();
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let Machine {
        _vm,
        vcpu,
        mem,
        flavour,
        guest_setup,
        vif_registered,
        pvm_features,
        tsc_khz,
        read_only,
    } = machine;
    timings.vcpu_ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    let deadline = cfg.deadline;
    let mut controller = controller;
    controller.started(&crate::control::RunFacts { flavour, tsc_khz });
    let thread_stop = Arc::clone(&stop);
    let tick = Arc::new(AtomicBool::new(false));
    let thread_tick = Arc::clone(&tick);
    let status_mem = mem.clone();
    let handle = thread::Builder::new()
        .name("kmodlab-vcpu0".into())
        .spawn(move || {
            let mut vcpu_run = VcpuRun {
                vcpu,
                channel: HostChannel::new(mem),
                console,
                controller,
                stop: thread_stop,
                exits: BTreeMap::new(),
                timings,
                t0,
                deadline,
                flavour,
                tick: thread_tick,
                window_requested: false,
                read_only,
            };
            let end = vcpu_run.run_loop();
            vcpu_run.console.flush();
            // The receiver may be gone if the caller gave up; nothing to do then.
            let _ = done_tx.send(());
            (end, vcpu_run.controller, vcpu_run.exits, vcpu_run.timings)
        })
        .map_err(|e| VmError::Thread(format!("could not be started: {e}")))?;

    let timed_out = wait_with_time_slices(cfg.timeslice, deadline, &done_rx, &status_mem, || {
        // A signal that lands outside KVM_RUN is lost; the flag is not, and the vCPU loop
        // checks it before every entry.
        tick.store(true, Ordering::SeqCst);
        let _ = handle.kill(kick_signal());
    });
    if timed_out {
        stop.store(true, Ordering::SeqCst);
        // The signal interrupts KVM_RUN; resend until the thread notices, since a signal
        // that lands while the thread is outside KVM_RUN is lost (it then sees `stop`).
        loop {
            let _ = handle.kill(kick_signal());
            match done_rx.recv_timeout(Duration::from_millis(10)) {
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        }
    }
    let (end, controller, exits, mut timings) = handle
        .join()
        .map_err(|_| VmError::Thread("panicked".into()))?;
    timings.guest_phases_ms = guest_phases(&status_mem, tsc_khz);
    drop(_vm);
    Ok(RunReport {
        end,
        controller,
        flavour,
        guest_setup,
        vif_registered,
        pvm_features,
        tsc_khz,
        exits,
        timings,
        console: console_log,
    })
}

/// Reads a word of the guest's status page ([`kmodlab_abi::status`]); 0 if unreadable.
fn status_word(mem: &GuestMemoryMmap, offset: u64) -> u64 {
    mem.read_obj::<u64>(GuestAddress(layout::STATUS_GPA + offset))
        .unwrap_or(0)
}

/// Waits for the vCPU thread to finish, at most `deadline`; returns whether it timed out.
/// Every `timeslice`, if the guest has been in the same run of user code since the last look
/// (in user mode, no entry into user mode since), calls `kick` to have the vCPU thread take
/// the CPU back (see `VcpuRun::preempt`). Reading the status page costs the guest nothing.
fn wait_with_time_slices(
    timeslice: Option<Duration>,
    deadline: Duration,
    done: &mpsc::Receiver<()>,
    mem: &GuestMemoryMmap,
    mut kick: impl FnMut(),
) -> bool {
    use kmodlab_abi::status::{IN_USER, USER_ENTRIES};
    let started = Instant::now();
    let mut last_entries = u64::MAX;
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        let wait = timeslice.map_or(left, |t| t.min(left));
        match done.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() >= deadline => return true,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let entries = status_word(mem, USER_ENTRIES);
                if status_word(mem, IN_USER) == 1 && entries == last_entries {
                    kick();
                }
                last_entries = entries;
            }
            _ => return false,
        }
    }
}

/// First address above the guest's user half: a RIP below it is user code.
const GUEST_USER_END: u64 = 0x0000_8000_0000_0000;

/// The vCPU thread's state.
struct VcpuRun<C> {
    vcpu: VcpuFd,
    channel: HostChannel,
    console: Console,
    controller: C,
    stop: Arc<AtomicBool>,
    exits: BTreeMap<&'static str, u64>,
    timings: BootTimings,
    t0: Instant,
    deadline: Duration,
    flavour: KvmFlavour,
    /// Set by the waiting thread when a user program's time slice ended.
    tick: Arc<AtomicBool>,
    /// Whether an interrupt window was requested for a time-slice interrupt.
    window_requested: bool,
    /// Guest-physical memory given to the guest read-only, and what it is.
    read_only: Vec<(std::ops::Range<u64>, &'static str)>,
}

/// What to do after an exit, decided while the exit's data borrows the vCPU.
enum Next {
    Window,
    Continue,
    Doorbell(u32),
    Progress(u8),
    End(RunEnd),
    Shutdown,
    Halted,
    Interrupted,
}

impl<C: Controller> VcpuRun<C> {
    fn count(&mut self, reason: &'static str) {
        *self.exits.entry(reason).or_insert(0) += 1;
    }

    fn run_loop(&mut self) -> RunEnd {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return self.hung();
            }
            if self.tick.swap(false, Ordering::SeqCst)
                && let Err(e) = self.preempt()
            {
                return RunEnd::KvmFailure(e.to_string());
            }
            let next = match self.vcpu.run() {
                Ok(exit) => match Self::classify(exit, &mut self.console) {
                    Next::End(RunEnd::UnbackedMemory { gpa, write: true }) => {
                        match self.read_only.iter().find(|(r, _)| r.contains(&gpa)) {
                            Some((_, what)) => Next::End(RunEnd::ReadOnlyWrite { gpa, what }),
                            None => Next::End(RunEnd::UnbackedMemory { gpa, write: true }),
                        }
                    }
                    next => next,
                },
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    Next::Interrupted
                }
                Err(e) => Next::End(RunEnd::KvmFailure(format!("KVM_RUN: {e}"))),
            };
            let reason = match &next {
                Next::Window => "irq_window_open",
                Next::Continue => "io",
                Next::Doorbell(_) => "io_doorbell",
                Next::Progress(_) => "io_boot_progress",
                Next::End(RunEnd::Exited { .. }) => "io_exit",
                Next::End(RunEnd::UnbackedMemory { .. } | RunEnd::ReadOnlyWrite { .. }) => "mmio",
                Next::End(_) => "other",
                Next::Shutdown => "shutdown",
                Next::Halted => "hlt",
                Next::Interrupted => "interrupted",
            };
            self.count(reason);
            match next {
                Next::Continue | Next::Interrupted => {}
                Next::Window => {
                    if self.window_requested {
                        self.window_requested = false;
                        self.vcpu.get_kvm_run().request_interrupt_window = 0;
                        if let Err(e) = self.inject_preempt() {
                            return RunEnd::KvmFailure(e.to_string());
                        }
                    }
                }
                Next::Progress(stage) => self.progress(stage),
                Next::Doorbell(value) => {
                    if let Some(end) = self.doorbell(value) {
                        return end;
                    }
                }
                Next::End(end) => return end,
                Next::Shutdown => {
                    let rip = self.vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    let cr2 = self.vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
                    return RunEnd::TripleFault { rip, cr2 };
                }
                Next::Halted => {
                    let rip = self.vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    return RunEnd::Halted { rip };
                }
            }
        }
    }

    /// A user program's time slice ended: inject [`kmodlab_abi::status::PREEMPT_VECTOR`] if
    /// the guest is in user mode (the research behind this:
    /// `results/pvm/2026-12-01-isolation-and-preemption.md`).
    ///
    /// The guest kernel runs with interrupts off and user mode with them on. On hardware KVM
    /// `ready_for_interrupt_injection` is therefore set exactly in user mode, and otherwise an
    /// interrupt window brings the vCPU back the moment it returns there. kvm_pvm never sets
    /// it and never opens a window while the kernel's virtual IF is clear, and it delivers a
    /// queued interrupt even into the kernel; so there the vCPU's RIP decides (the vCPU is
    /// stopped, so the interrupt lands at exactly that RIP), and a kernel RIP waits for the
    /// next slice.
    fn preempt(&mut self) -> Result<(), VmError> {
        if self.vcpu.get_kvm_run().ready_for_interrupt_injection != 0 {
            return self.inject_preempt();
        }
        match self.flavour {
            KvmFlavour::Pvm => {
                let rip = self.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?.rip;
                if rip < GUEST_USER_END {
                    self.inject_preempt()
                } else {
                    self.count("preempt_deferred");
                    Ok(())
                }
            }
            KvmFlavour::Hardware => {
                self.vcpu.get_kvm_run().request_interrupt_window = 1;
                self.window_requested = true;
                Ok(())
            }
        }
    }

    fn inject_preempt(&mut self) -> Result<(), VmError> {
        match crate::kvm::inject_interrupt(&self.vcpu, kmodlab_abi::status::PREEMPT_VECTOR) {
            Ok(()) => {
                self.count("preempt_injected");
                Ok(())
            }
            // One is still queued from the last slice: nothing to add.
            Err(e) if e.errno() == libc::EEXIST => Ok(()),
            Err(e) => Err(VmError::Kvm {
                op: "KVM_INTERRUPT",
                source: e,
            }),
        }
    }

    fn hung(&mut self) -> RunEnd {
        RunEnd::Hung {
            after: self.deadline,
            rip: self.vcpu.get_regs().ok().map(|r| r.rip),
        }
    }

    /// Handles what can be handled while the exit borrows the vCPU; defers the rest.
    fn classify(exit: VcpuExit<'_>, console: &mut Console) -> Next {
        let serial = ports::COM1_BASE..ports::COM1_BASE + ports::COM1_PORTS;
        match exit {
            VcpuExit::IoOut(port, data) if serial.contains(&port) => {
                if let Some(&b) = data.first() {
                    console.write((port - ports::COM1_BASE) as u8, b);
                }
                Next::Continue
            }
            VcpuExit::IoIn(port, data) if serial.contains(&port) => {
                let v = console.read((port - ports::COM1_BASE) as u8);
                data.fill(0);
                if let Some(b) = data.first_mut() {
                    *b = v;
                }
                Next::Continue
            }
            VcpuExit::IoOut(ports::EXIT, data) => Next::End(RunEnd::Exited {
                status: le_value(data) as u32,
            }),
            VcpuExit::IoOut(ports::DOORBELL, data) => Next::Doorbell(le_value(data) as u32),
            VcpuExit::IoOut(ports::BOOT_PROGRESS, data) => Next::Progress(le_value(data) as u8),
            // Unknown ports read as a floating bus and ignore writes, like real hardware.
            VcpuExit::IoOut(_, _) => Next::Continue,
            VcpuExit::IoIn(_, data) => {
                data.fill(0xff);
                Next::Continue
            }
            VcpuExit::MmioRead(gpa, _) => Next::End(RunEnd::UnbackedMemory { gpa, write: false }),
            VcpuExit::MmioWrite(gpa, _) => Next::End(RunEnd::UnbackedMemory { gpa, write: true }),
            VcpuExit::IrqWindowOpen => Next::Window,
            VcpuExit::Hlt => Next::Halted,
            VcpuExit::Shutdown => Next::Shutdown,
            VcpuExit::Intr => Next::Interrupted,
            VcpuExit::InternalError => {
                Next::End(RunEnd::KvmFailure("KVM_EXIT_INTERNAL_ERROR".into()))
            }
            VcpuExit::FailEntry(reason, cpu) => Next::End(RunEnd::KvmFailure(format!(
                "KVM_EXIT_FAIL_ENTRY (hardware reason {reason:#x}, cpu {cpu})"
            ))),
            other => Next::End(RunEnd::KvmFailure(format!("unexpected exit {other:?}"))),
        }
    }

    fn elapsed_ms(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1e3
    }

    fn progress(&mut self, stage: u8) {
        let now = self.elapsed_ms();
        match BootStage::from_u8(stage) {
            Some(BootStage::Entry) => self.timings.first_instruction_ms = Some(now),
            Some(BootStage::MemoryReady) => self.timings.guest_memory_ready_ms = Some(now),
            None => {}
        }
    }

    /// Handles one doorbell; `Some` ends the run.
    fn doorbell(&mut self, value: u32) -> Option<RunEnd> {
        if value != ports::DOORBELL_MESSAGE {
            return Some(RunEnd::BadDoorbell { value });
        }
        let frame = match self.channel.read_guest_frame() {
            Ok(f) => f,
            Err(ControlError::Frame(e)) => return Some(RunEnd::ChannelError(e)),
            Err(ControlError::Memory(e)) => return Some(RunEnd::KvmFailure(e.to_string())),
        };
        let (seq, msg) = match kmodlab_abi::channel::decode_frame::<GuestMsg<'_>>(&frame) {
            Ok(m) => m,
            Err(e) => return Some(RunEnd::ChannelError(e)),
        };
        let event = match msg {
            GuestMsg::Ready(info) => {
                self.timings.ready_ms = Some(self.elapsed_ms());
                Event::Ready(info)
            }
            GuestMsg::Reply(reply) => Event::Reply(reply),
            GuestMsg::Fault(report) => return Some(RunEnd::KernelFault(report)),
            GuestMsg::Panic(p) => {
                return Some(RunEnd::KernelPanic {
                    message: p.message.to_string(),
                    location: format!("{}:{}", p.file, p.line),
                });
            }
            GuestMsg::Output(text) => {
                // In order with the serial output around it: both arrive on this thread.
                self.console.write_output(text.as_bytes());
                self.controller.output(text);
                return self.answer(seq, &HostMsg::Continue);
            }
        };
        self.controller.exits(&self.exits);
        let answer = self.controller.next(event);
        self.answer(seq, &answer)
    }

    /// Writes `answer` to message `seq`; `Some` ends the run.
    fn answer(&mut self, seq: u32, answer: &HostMsg) -> Option<RunEnd> {
        match self.channel.write_host_msg(seq, answer) {
            Ok(()) => None,
            Err(ControlError::Frame(e)) => Some(RunEnd::AnswerTooLarge(e.to_string())),
            Err(e) => Some(RunEnd::KvmFailure(format!("answering the guest: {e}"))),
        }
    }
}

/// A little-endian value of 1, 2 or 4 bytes (an `out` of that width).
fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_values_are_little_endian() {
        assert_eq!(le_value(&[0x31, 0x4c, 0x4d, 0x4b]), 0x4b4d_4c31);
        assert_eq!(le_value(&[7]), 7);
        assert_eq!(le_value(&[]), 0);
    }

    #[test]
    fn guest_phases_come_from_the_status_page_in_ms() {
        use kmodlab_abi::status::BootPhase;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        assert_eq!(
            guest_phases(&mem, 2_000_000),
            vec![],
            "nothing published yet"
        );
        for (i, p) in BootPhase::ALL.iter().enumerate() {
            let tsc = 1_000_000 + 200_000 * i as u64;
            mem.write_obj(tsc, GuestAddress(layout::STATUS_GPA + p.offset()))
                .unwrap();
        }
        // The guest says the heap ended before the page tables did: untrusted, not shown.
        mem.write_obj(
            1u64,
            GuestAddress(layout::STATUS_GPA + BootPhase::Heap.offset()),
        )
        .unwrap();
        let phases = guest_phases(&mem, 2_000_000);
        assert_eq!(phases.len(), BootPhase::ALL.len() - 1);
        assert_eq!(
            phases[0],
            GuestPhase {
                phase: "boot_info",
                ms: Some(0.1)
            }
        );
        assert_eq!(phases[4].phase, "heap");
        assert_eq!((phases[4].ms, phases[5].ms), (None, None));
        assert_eq!(phases[8].phase, "ready");
        assert_eq!(phases[8].ms, Some(0.1));
    }

    #[test]
    fn a_write_to_read_only_memory_says_what_was_written() {
        let end = RunEnd::ReadOnlyWrite {
            gpa: 0x100_0040,
            what: "the module archive",
        };
        assert_eq!(
            end.describe(),
            "guest wrote read-only guest-physical address 0x1000040 (the module archive, which \
             the kernel must only read)"
        );
    }

    #[test]
    fn run_end_descriptions_name_the_fault() {
        let end = RunEnd::KernelFault(FaultReport {
            vector: 14,
            error_code: 0,
            rip: 0xffff_ffff_8020_1000,
            cr2: 0,
            rsp: 0,
            rflags: 2,
            cpl: 0,
        });
        let d = end.describe();
        assert!(
            d.contains("#PF page fault") && d.contains("0xffffffff80201000"),
            "{d}"
        );
    }
}
