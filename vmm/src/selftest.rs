//! `kmodlab boot`: boot the guest, run its self-test, and summarise the run.

use std::collections::BTreeMap;
use std::time::Instant;

use kmodlab_abi::KernelConfig;
use kmodlab_abi::channel::{Check, Command, KernelImageInfo, Reply, SelfTestParams};
use serde::Serialize;

use crate::control::Script;
use crate::devices::serial::Echo;
use crate::host::HostInfo;
use crate::vm::{self, BootTimings, GuestImages, RunEnd, VmConfig, VmError};

/// Supervisor loops costing more than this many times the user loop mean supervisor code is
/// not running natively (on kvm_pvm: the VIF page was not honoured). Emulated supervisor code
/// costs ≈ 4,000× (a 100,000-iteration loop: 285–300 M cycles against ≈ 70 k), while native
/// runs measured 1.0× on a quiet host and up to 2.3× on a busy one (the two loops run a few
/// milliseconds apart, and a `dec; jnz` loop loses half its issue rate when the other
/// hyperthread of the core gets busy in between), so the limit sits far from both.
pub const NATIVE_RATIO_LIMIT: f64 = 20.0;

/// Everything `kmodlab boot --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BootSummary {
    /// kmodlab's version.
    pub kmodlab_version: &'static str,
    /// `"hardware"` or `"pvm"`.
    pub kvm_flavour: &'static str,
    /// The guest setup the run booted with: the same as `kvm_flavour`, or `"hardware"` on a
    /// kvm_pvm host under `--hardware-setup` (supervisor code emulated, system calls
    /// unusable; see [`BootSummary::warnings`]).
    pub guest_setup: &'static str,
    /// `"monolithic"` or `"microkernel"`.
    pub config: &'static str,
    /// The host.
    pub host: HostInfo,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// Whether the PVM VIF page was registered.
    pub pvm_vif_registered: bool,
    /// kvm_pvm's feature mask (0x1ff: native supervisor mode allowed), if on PVM.
    pub pvm_features: Option<u64>,
    /// From process start to the guest's ready message, in ms.
    pub boot_ms: f64,
    /// Milestones from process start, in ms.
    pub boot_breakdown_ms: BootTimings,
    /// VM exits by reason over the whole run.
    pub vm_exits: BTreeMap<&'static str, u64>,
    /// Parameters of the measurements.
    pub params: SelfTestParams,
    /// Median cycles per iteration of the tight loop in guest supervisor mode.
    pub supervisor_loop_cycles_per_iter: f64,
    /// Median cycles per iteration of the same loop in guest user mode.
    pub user_loop_cycles_per_iter: f64,
    /// supervisor / user.
    pub supervisor_to_user_ratio: f64,
    /// Whether supervisor code ran natively (ratio within [`NATIVE_RATIO_LIMIT`]).
    pub supervisor_native: bool,
    /// Median cycles of one null system call, user → kernel → user.
    pub syscall_roundtrip_cycles: f64,
    /// Median cycles of one null IPC round trip between two tasks (call, then the server's
    /// reply_recv): two system calls and two address-space switches.
    pub ipc_roundtrip_cycles: f64,
    /// Raw per-run totals, for whoever wants the spread.
    pub samples: Samples,
    /// The kernel image's sizes.
    pub kernel_image: KernelImageInfo,
    /// The privileged code of every embedded kernel (from its ELF): `.text` bytes and the
    /// bytes of each component (module loader, module subsystem, tasks and IPC, …), so that
    /// the two configurations' privileged code can be compared from either boot.
    pub privileged_text: BTreeMap<&'static str, crate::image::TextReport>,
    /// Frames managed by the guest kernel.
    pub frames_total: u64,
    /// Frames free after boot.
    pub frames_free: u64,
    /// Kernel heap size.
    pub heap_bytes: u64,
    /// The self-test's functional checks.
    pub checks: Vec<Check>,
    /// Whether every user-mode probe of guest kernel memory faulted (reads and writes of
    /// text, data, heap, stack, TSS and another task's page, after the kernel touched them).
    /// `false` on kvm_pvm with `kpti` off, where native supervisor execution needs
    /// user-accessible kernel pages and the hypervisor shares one shadow table per CR3.
    pub user_kernel_isolation: bool,
    /// Whether guest user mode ran on page tables of its own (`--kpti`, kernel `kpti=`).
    pub kpti: bool,
    /// The guest kernel's warning about what its user mode could read and write, if any.
    pub isolation_warning: Option<String>,
    /// How the run ended.
    pub guest_end: String,
}

/// Per-run cycle totals.
#[derive(Debug, Clone, Serialize)]
pub struct Samples {
    /// Supervisor loop, per run.
    pub supervisor_loop_cycles: Vec<u64>,
    /// User loop, per run.
    pub user_loop_cycles: Vec<u64>,
    /// `syscall_iterations` null system calls, per run.
    pub syscall_cycles: Vec<u64>,
    /// `syscall_iterations` null IPC round trips, per run.
    pub ipc_cycles: Vec<u64>,
}

/// Why `boot` failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The VMM could not run the guest.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The guest did not complete the self-test; `console` holds its last lines.
    #[error("{end}\nlast console lines:\n{console}")]
    Guest {
        /// How the run ended.
        end: String,
        /// The guest's last console lines.
        console: String,
    },
    /// The guest answered something other than a self-test report.
    #[error("the guest answered the self-test with {0}")]
    UnexpectedReply(String),
}

/// The median of `v` (0 for an empty slice).
pub fn median(v: &[u64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let mid = s.len() / 2;
    if s.len() % 2 == 1 {
        s[mid] as f64
    } else {
        (s[mid - 1] as f64 + s[mid] as f64) / 2.0
    }
}

/// Boots `config`, runs the self-test with `params` and summarises it.
pub fn boot(
    config: KernelConfig,
    images: GuestImages<'_>,
    params: SelfTestParams,
    vm_config: &VmConfig,
    echo: Echo,
    t0: Instant,
) -> Result<BootSummary, BootError> {
    let script = Script::new([Command::SelfTest(params)]);
    let report = vm::run(vm_config, images, script, echo, t0)?;
    if report.end != (RunEnd::Exited { status: 0 }) || report.controller.replies.len() != 1 {
        return Err(BootError::Guest {
            end: report.end.describe(),
            console: report.last_console_lines(20).join("\n"),
        });
    }
    let ready = report
        .controller
        .ready
        .clone()
        .ok_or_else(|| BootError::UnexpectedReply("no ready message".into()))?;
    let st = match &report.controller.replies[0] {
        Reply::SelfTest(st) => st.clone(),
        other => return Err(BootError::UnexpectedReply(format!("{other:?}"))),
    };
    let iters = f64::from(st.params.loop_iterations);
    let sup = median(&st.supervisor_loop_cycles) / iters;
    let user = median(&st.user_loop_cycles) / iters;
    let syscall = median(&st.syscall_cycles) / f64::from(st.params.syscall_iterations);
    let ipc = median(&st.ipc_cycles) / f64::from(st.params.syscall_iterations);
    let ratio = if user > 0.0 {
        sup / user
    } else {
        f64::INFINITY
    };
    let boot_ms = report.timings.ready_ms.unwrap_or(f64::NAN);
    Ok(BootSummary {
        kmodlab_version: env!("CARGO_PKG_VERSION"),
        kvm_flavour: report.flavour.name(),
        guest_setup: report.guest_setup.name(),
        config: config.name(),
        host: HostInfo::detect(),
        tsc_khz: report.tsc_khz,
        pvm_vif_registered: report.vif_registered,
        pvm_features: report.pvm_features,
        boot_ms,
        boot_breakdown_ms: report.timings.clone(),
        vm_exits: report.exits.clone(),
        params: st.params,
        supervisor_loop_cycles_per_iter: sup,
        user_loop_cycles_per_iter: user,
        supervisor_to_user_ratio: ratio,
        supervisor_native: ratio <= NATIVE_RATIO_LIMIT,
        syscall_roundtrip_cycles: syscall,
        ipc_roundtrip_cycles: ipc,
        samples: Samples {
            supervisor_loop_cycles: st.supervisor_loop_cycles,
            user_loop_cycles: st.user_loop_cycles,
            syscall_cycles: st.syscall_cycles,
            ipc_cycles: st.ipc_cycles,
        },
        kernel_image: ready.image,
        privileged_text: crate::artifacts::KERNELS
            .iter()
            .filter_map(|(name, elf)| Some((*name, crate::image::text_report(elf).ok()?)))
            .collect(),
        frames_total: ready.frames_total,
        frames_free: ready.frames_free,
        heap_bytes: ready.heap_bytes,
        checks: st.checks,
        user_kernel_isolation: st.user_kernel_isolation,
        kpti: st.kpti,
        isolation_warning: st.isolation_warning,
        guest_end: report.end.describe(),
    })
}

impl BootSummary {
    /// Whether this run is a kvm_pvm host booted with the hardware-KVM guest setup.
    pub fn hardware_setup_on_pvm(&self) -> bool {
        self.guest_setup != self.kvm_flavour
    }

    /// Caveats of the platform that do not fail the run but must be visible.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.hardware_setup_on_pvm() {
            w.push(format!(
                "--hardware-setup: a kvm_pvm host booted with the hardware-KVM guest setup (no \
                 VIF page, kernel pages without U/S); supervisor code is emulated ({:.0} cycles \
                 per loop iteration), so no timing of this run means anything",
                self.supervisor_loop_cycles_per_iter
            ));
        }
        for c in self.checks.iter() {
            if let Some(why) = &c.not_run {
                w.push(format!("self-test check NOT RUN: {} ({why})", c.name));
            }
        }
        if let Some(guest) = &self.isolation_warning {
            w.push(format!(
                "{guest}; the module subsystem's isolation results of this run hold against \
                 faults, not against a malicious module server"
            ));
        } else if !self.user_kernel_isolation {
            w.push(
                "guest user mode reached guest kernel memory (see the failed isolation checks)"
                    .to_string(),
            );
        }
        w
    }

    /// Problems that make the run a failure: failed checks, or emulated supervisor mode
    /// (unless the hardware-KVM setup on kvm_pvm asked for it).
    pub fn problems(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed && c.not_run.is_none())
            .map(|c| format!("self-test check failed: {} ({})", c.name, c.detail))
            .collect();
        if !self.supervisor_native && !self.hardware_setup_on_pvm() {
            p.push(format!(
                "guest supervisor code is NOT running natively: the supervisor loop costs {:.1}× \
                 the user loop ({:.2} vs {:.2} cycles/iteration). On kvm_pvm this means the VIF \
                 page was not honoured; every kernel-side figure of this run is meaningless.",
                self.supervisor_to_user_ratio,
                self.supervisor_loop_cycles_per_iter,
                self.user_loop_cycles_per_iter
            ));
        }
        p
    }

    /// The human-readable summary.
    pub fn human(&self) -> String {
        let b = &self.boot_breakdown_ms;
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let passed = self.checks.iter().filter(|c| c.passed).count();
        let not_run = self.checks.iter().filter(|c| c.not_run.is_some()).count();
        let setup = if self.hardware_setup_on_pvm() {
            " with the hardware-KVM guest setup"
        } else {
            ""
        };
        let not_run = if not_run > 0 {
            format!(", {not_run} not run in this setup")
        } else {
            String::new()
        };
        // Both need system calls (to report), which a setup may not have.
        let user_loop = if self.samples.user_loop_cycles.is_empty() {
            "not measured".to_string()
        } else {
            format!(
                "{:.2} cycles/iteration  (ratio {:.2}: {})",
                self.user_loop_cycles_per_iter,
                self.supervisor_to_user_ratio,
                if self.supervisor_native {
                    "native"
                } else {
                    "EMULATED"
                }
            )
        };
        let syscall = if self.samples.syscall_cycles.is_empty() {
            "not measured".to_string()
        } else {
            format!("{:.0} cycles round trip", self.syscall_roundtrip_cycles)
        };
        let ipc = if self.samples.ipc_cycles.is_empty() {
            "not measured".to_string()
        } else {
            format!(
                "{:.0} cycles round trip (call + reply_recv between two tasks)",
                self.ipc_roundtrip_cycles
            )
        };
        let mut exits: Vec<String> = self
            .vm_exits
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        exits.sort();
        format!(
            "kmodlab {} — {} kernel on {} KVM{} ({}; TSC {} kHz)\n\
             boot: {:.1} ms to ready (VM {:.1}, memory {:.1}, loaded {:.1}, vCPU {:.1}, first instruction {}, guest memory {}, ready {} ms)\n\
             guest boot phases (ms): {}\n\
             images: kernel {}; module archive {}\n\
             kernel image: text {} KiB, rodata {} KiB, data {} KiB, bss {} KiB; {} of {} frames free; heap {} MiB\n\
             supervisor loop: {:.2} cycles/iteration\n\
             user loop:       {}\n\
             null syscall:    {}\n\
             null IPC:        {}\n\
             user page tables: {}\n\
             self-test: {}/{} checks passed{}\n\
             VM exits: {}\n",
            self.kmodlab_version,
            self.config,
            self.kvm_flavour,
            setup,
            self.host.cpu_model,
            self.tsc_khz,
            self.boot_ms,
            b.vm_created_ms,
            b.memory_ready_ms,
            b.loaded_ms,
            b.vcpu_ready_ms,
            opt(b.first_instruction_ms),
            opt(b.guest_memory_ready_ms),
            opt(b.ready_ms),
            if b.guest_phases_ms.is_empty() {
                "not reported".to_string()
            } else {
                b.guest_phases_ms
                    .iter()
                    .map(|p| {
                        format!(
                            "{} {}",
                            p.phase,
                            p.ms.map_or("-".into(), |v| format!("{v:.3}"))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            b.kernel,
            b.archive,
            self.kernel_image.text >> 10,
            self.kernel_image.rodata >> 10,
            self.kernel_image.data >> 10,
            self.kernel_image.bss >> 10,
            self.frames_free,
            self.frames_total,
            self.heap_bytes >> 20,
            self.supervisor_loop_cycles_per_iter,
            user_loop,
            syscall,
            ipc,
            match (self.kpti, self.user_kernel_isolation) {
                (true, true) => "split (kpti on): every user probe of kernel memory faulted",
                (true, false) => "split (kpti on), but a user probe reached kernel memory",
                (false, true) => "shared with the kernel (kpti off); U/S isolates",
                (false, false) => "shared with the kernel (kpti off); NOT isolated",
            },
            passed,
            self.checks.len(),
            not_run,
            exits.join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[5, 1, 3]), 3.0);
        assert_eq!(median(&[4, 1, 3, 2]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
