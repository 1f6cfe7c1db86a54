//! Model-specific registers of kvm_pvm: detecting it, and registering the VIF page that lets
//! guest supervisor code run natively (see `shared/notes/kvm-on-pvm.md`).

use kvm_bindings::{Msrs, kvm_msr_entry};
use kvm_ioctls::VcpuFd;

/// Fork-specific MSR holding the VIF page address (with flags) of this vCPU.
pub const PVM_MSR_VIF_PAGE: u32 = 0x4b56_4d10;
/// Fork-specific identification MSR; reads [`PVM_ID`] on kvm_pvm.
pub const PVM_MSR_ID: u32 = 0x4b56_4d11;
/// Fork-specific feature mask (0x1ff when native supervisor execution is allowed).
pub const PVM_MSR_FEATURES: u32 = 0x4b56_4d12;
/// "PVM" as the identification MSR reads it.
pub const PVM_ID: u64 = 0x4d_5650;
/// Marks a VMM (host-initiated) write of the VIF MSR; required with a non-zero address.
pub const VIF_HOST_INITIATED: u64 = 1 << 10;

fn read_msr(vcpu: &VcpuFd, index: u32) -> Option<u64> {
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
        index,
        ..Default::default()
    }])
    .ok()?;
    // KVM_GET_MSRS returns how many MSRs it read: 0 for an MSR this KVM does not know.
    match vcpu.get_msrs(&mut msrs) {
        Ok(1) => Some(msrs.as_slice()[0].data),
        _ => None,
    }
}

/// Whether this vCPU runs on kvm_pvm (its identification MSR answers).
pub fn is_pvm(vcpu: &VcpuFd) -> bool {
    read_msr(vcpu, PVM_MSR_ID) == Some(PVM_ID)
}

/// kvm_pvm's feature mask, if readable.
pub fn pvm_features(vcpu: &VcpuFd) -> Option<u64> {
    read_msr(vcpu, PVM_MSR_FEATURES)
}

/// The value written to [`PVM_MSR_VIF_PAGE`] for a VIF page at `gpa`.
pub const fn vif_msr_value(gpa: u64) -> u64 {
    gpa | VIF_HOST_INITIATED
}

/// Registers the VIF page at `gpa` (page-aligned, zeroed) for this vCPU.
pub fn register_vif_page(vcpu: &VcpuFd, gpa: u64) -> Result<(), kvm_ioctls::Error> {
    let msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: PVM_MSR_VIF_PAGE,
        data: vif_msr_value(gpa),
        ..Default::default()
    }])
    .map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
    match vcpu.set_msrs(&msrs)? {
        1 => Ok(()),
        _ => Err(kvm_ioctls::Error::new(libc::EINVAL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vif_value_sets_the_host_initiated_bit_only() {
        assert_eq!(vif_msr_value(0x3000), 0x3400);
        assert_eq!(vif_msr_value(0x3000) & (1 << 9), 0);
    }

    #[test]
    fn pvm_id_spells_pvm() {
        assert_eq!(&PVM_ID.to_le_bytes()[..3], b"PVM");
    }
}
