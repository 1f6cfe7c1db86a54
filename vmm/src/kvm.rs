//! Opening KVM and checking it can run kmodlab, with errors a user can act on.

use std::os::fd::FromRawFd;

use kvm_ioctls::{Cap, Kvm};

/// The only KVM API version there has ever been (`KVM_GET_API_VERSION`).
pub const KVM_API_VERSION: i32 = 12;

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// There is no `/dev/kvm`.
    #[error(
        "/dev/kvm does not exist: this machine has no KVM. Enable virtualization (VT-x/AMD-V) in \
         the firmware and load kvm_intel or kvm_amd, or use a host or VM with nested \
         virtualization"
    )]
    NoDevice,
    /// `/dev/kvm` exists but cannot be opened by this user.
    #[error(
        "permission denied opening /dev/kvm: add your user to its group \
         (`sudo usermod -aG kvm $USER`, then log in again) or run as root"
    )]
    PermissionDenied,
    /// Opening `/dev/kvm` failed otherwise.
    #[error("opening /dev/kvm failed: {0}")]
    Open(#[source] kvm_ioctls::Error),
    /// The kernel speaks a different KVM API.
    #[error("KVM API version is {found}, kmodlab needs {KVM_API_VERSION}")]
    ApiVersion {
        /// What `KVM_GET_API_VERSION` returned.
        found: i32,
    },
    /// A capability kmodlab needs is missing.
    #[error("KVM lacks {0}, which kmodlab needs; upgrade the host kernel")]
    MissingCapability(&'static str),
}

/// Capabilities kmodlab needs, with the names users see.
const REQUIRED: &[(Cap, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::GetTscKhz, "KVM_CAP_GET_TSC_KHZ"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// Opens `/dev/kvm` and checks the API version and required capabilities.
pub fn open() -> Result<Kvm, PreflightError> {
    let fd = match Kvm::open_with_cloexec(true) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match e.errno() {
                libc::ENOENT | libc::ENXIO | libc::ENODEV => PreflightError::NoDevice,
                libc::EACCES | libc::EPERM => PreflightError::PermissionDenied,
                _ => PreflightError::Open(e),
            });
        }
    };
    // SAFETY: `fd` was just opened on /dev/kvm and is owned by nothing else.
    let kvm = unsafe { Kvm::from_raw_fd(fd) };
    let found = kvm.get_api_version();
    if found != KVM_API_VERSION {
        return Err(PreflightError::ApiVersion { found });
    }
    for (cap, name) in REQUIRED {
        if !kvm.check_extension(*cap) {
            return Err(PreflightError::MissingCapability(name));
        }
    }
    Ok(kvm)
}

/// Whether this process can use KVM at all, for tests and `--help`-level diagnostics.
pub fn availability() -> Result<(), PreflightError> {
    open().map(|_| ())
}

/// `KVM_INTERRUPT`, which kvm-ioctls does not wrap (in a module of its own because the macro
/// makes an undocumented `pub fn`).
mod ioctls {
    use kvm_bindings::kvm_interrupt;
    vmm_sys_util::ioctl_iow_nr!(KVM_INTERRUPT, kvm_bindings::KVMIO, 0x86, kvm_interrupt);
}

/// Queues external interrupt `vector` for the vCPU (userspace interrupt controller only).
/// KVM injects it at the next entry; on hardware KVM only once the guest's IF allows it, on
/// kvm_pvm at once, whatever the guest's interrupt flag (measured), so callers on kvm_pvm must
/// pick the moment themselves.
pub fn inject_interrupt(vcpu: &kvm_ioctls::VcpuFd, vector: u8) -> Result<(), kvm_ioctls::Error> {
    let irq = kvm_bindings::kvm_interrupt {
        irq: u32::from(vector),
    };
    // SAFETY: KVM_INTERRUPT reads one kvm_interrupt from the pointer, which lives across the
    // call; the vCPU file descriptor is valid for as long as `vcpu` is.
    let r = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(vcpu, ioctls::KVM_INTERRUPT(), &irq) };
    if r < 0 {
        return Err(kvm_ioctls::Error::last());
    }
    Ok(())
}
