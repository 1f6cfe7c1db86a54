//! What kmodlab records about the host next to every result.

use serde::Serialize;

/// The host a result was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    /// CPU model name, from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel_release: String,
    /// The KVM module loaded (`kvm_intel`, `kvm_amd`, `kvm_pvm`), if one is.
    pub kvm_module: Option<String>,
}

impl HostInfo {
    /// Reads the host's description.
    pub fn detect() -> HostInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let kvm_module = ["kvm_pvm", "kvm_intel", "kvm_amd"]
            .into_iter()
            .find(|m| std::path::Path::new("/sys/module").join(m).exists())
            .map(String::from);
        HostInfo {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel_release,
            kvm_module,
        }
    }
}
