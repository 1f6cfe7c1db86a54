//! Shared helpers of the benchmarks in `benches/benches/`: a booted guest per group, the
//! in-guest measurements it runs, and the bytes [`Measurement`] for footprints.
//!
//! Guest-side figures are measured inside the guest with the TSC around N iterations (no VM
//! exit in the timed region) and handed to Criterion through `iter_custom`, cycles turned
//! into a [`Duration`] with the guest's TSC frequency. One boot serves a whole group.

use std::time::Duration;

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};
use kmodlab::KernelConfig;
use kmodlab::compare::run::dependencies;
use kmodlab::compare::session::GuestSession;
use kmodlab::devices::serial::Echo;
use kmodlab::vm::VmConfig;
use kmodlab_abi::channel::{
    BenchReply, BenchRequest, Command, LoadBench, LoadSample, ModuleRecord, Reply, ServiceBench,
};

/// Both configurations, in the order the benchmark ids show them.
pub const CONFIGS: [KernelConfig; 2] = [KernelConfig::Monolithic, KernelConfig::Microkernel];

/// Most rounds one load request asks for (the guest's limit is 10 000).
const MAX_ROUNDS: u64 = 5_000;

/// A booted guest for one benchmark group.
pub struct Guest {
    session: GuestSession,
    /// Modules this guest loaded as dependencies (unloaded at the end).
    deps: Vec<String>,
}

impl Guest {
    /// Boots `config` (kernel log kept off the console: console bytes are VM exits).
    pub fn boot(config: KernelConfig) -> Result<Guest, String> {
        let cfg = VmConfig {
            cmdline: "quiet".into(),
            deadline: Duration::from_secs(1800),
            ..VmConfig::new(config)
        };
        let session = GuestSession::boot(
            &cfg,
            kmodlab::artifacts::images(config),
            Echo::Quiet,
            Duration::from_secs(600),
        )
        .map_err(|e| e.to_string())?;
        Ok(Guest {
            session,
            deps: Vec::new(),
        })
    }

    /// Guest cycles as time.
    pub fn duration(&self, cycles: u64) -> Duration {
        Duration::from_nanos(
            (cycles as u128 * 1_000_000 / u128::from(self.session.tsc_khz.max(1))) as u64,
        )
    }

    fn command(&mut self, cmd: Command) -> Result<Reply, String> {
        let (reply, _) = self.session.command(cmd).map_err(|e| e.to_string())?;
        match reply {
            Reply::ModuleError(e) => Err(format!("{} (errno {})", e.message, e.errno)),
            r => Ok(r),
        }
    }

    /// Loads what `module` needs (not itself), for the group's lifetime.
    pub fn load_dependencies(&mut self, module: &str) -> Result<(), String> {
        for d in dependencies(kmodlab::artifacts::INITRAMFS, module) {
            self.command(Command::InitModule {
                name: d.clone(),
                params: String::new(),
            })?;
            self.deps.push(d);
        }
        Ok(())
    }

    /// `rounds` timed load+unload rounds of `modules` (chunked to the guest's limit).
    pub fn load_rounds(
        &mut self,
        modules: &[String],
        rounds: u64,
    ) -> Result<(Vec<LoadSample>, Vec<ModuleRecord>), String> {
        let mut samples = Vec::new();
        let mut records = Vec::new();
        let mut left = rounds.max(1);
        while left > 0 {
            let n = left.min(MAX_ROUNDS);
            left -= n;
            let reply = self.command(Command::Bench(BenchRequest::LoadUnload(LoadBench {
                modules: modules.to_vec(),
                params: String::new(),
                warmup: 0,
                iterations: n as u32,
                unload: true,
            })))?;
            match reply {
                Reply::Bench(BenchReply::Load(r)) => {
                    samples.extend(r.samples);
                    records = r.records;
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Ok((samples, records))
    }

    /// Cycles of `calls` calls of callbench's `kind` with `bytes` bytes (callbench and what
    /// it needs must be loaded).
    pub fn call_cycles(&mut self, kind: u32, bytes: u32, calls: u64) -> Result<u64, String> {
        const MAX_BATCH: u64 = 100_000;
        let samples = calls.max(1).div_ceil(MAX_BATCH);
        let batch = calls.max(1).div_ceil(samples);
        let mut request = Vec::new();
        for v in [kind, bytes, samples as u32, batch as u32] {
            request.extend_from_slice(&v.to_le_bytes());
        }
        let reply = self.command(Command::Bench(BenchRequest::ServiceCall(ServiceBench {
            service: "callbench".into(),
            op: 0,
            request,
            reply_capacity: samples as u32 * 8,
        })))?;
        let Reply::Bench(BenchReply::Service(r)) = reply else {
            return Err(format!("unexpected reply {reply:?}"));
        };
        let total: u64 = r
            .reply
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .sum();
        // Scale the batches' calls back to the count asked for.
        Ok((u128::from(total) * u128::from(calls) / u128::from(samples * batch)) as u64)
    }

    /// Loads `modules` (in order) for the group's lifetime.
    pub fn load(&mut self, modules: &[&str]) -> Result<(), String> {
        for m in modules {
            self.command(Command::InitModule {
                name: (*m).into(),
                params: String::new(),
            })?;
            self.deps.push((*m).into());
        }
        Ok(())
    }

    /// Unloads what the group loaded and shuts the guest down.
    pub fn finish(mut self) {
        for d in std::mem::take(&mut self.deps).iter().rev() {
            let _ = self.command(Command::DeleteModule { name: d.clone() });
        }
        self.session.shutdown();
    }
}

/// Memory in bytes, as a Criterion measurement: `footprint/<module>` reports what a loaded
/// module costs through the same machinery (and next to) the timings.
pub struct Bytes;

impl Measurement for Bytes {
    type Intermediate = ();
    type Value = u64;

    fn start(&self) -> Self::Intermediate {}

    fn end(&self, _: Self::Intermediate) -> Self::Value {
        // Footprints are taken with iter_custom; there is no interval to measure.
        0
    }

    fn add(&self, v1: &Self::Value, v2: &Self::Value) -> Self::Value {
        v1 + v2
    }

    fn zero(&self) -> Self::Value {
        0
    }

    fn to_f64(&self, value: &Self::Value) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &BytesFormatter
    }
}

/// Formats [`Bytes`] values in B, KiB or MiB.
pub struct BytesFormatter;

impl BytesFormatter {
    fn unit(typical: f64) -> (f64, &'static str) {
        if typical >= f64::from(1u32 << 20) {
            (f64::from(1u32 << 20), "MiB")
        } else if typical >= 1024.0 {
            (1024.0, "KiB")
        } else {
            (1.0, "B")
        }
    }
}

impl ValueFormatter for BytesFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = Self::unit(typical_value);
        for v in values.iter_mut() {
            *v /= div;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        _t: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // Bytes per element make no sense for a footprint; show them as they are.
        let _ = values;
        "B"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "B"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_scale_to_readable_units() {
        let mut v = [2048.0, 4096.0];
        assert_eq!(BytesFormatter.scale_values(3000.0, &mut v), "KiB");
        assert_eq!(v, [2.0, 4.0]);
        let mut v = [512.0];
        assert_eq!(BytesFormatter.scale_values(512.0, &mut v), "B");
        assert_eq!(
            BytesFormatter.format_value(3.0 * 1048576.0).trim(),
            "3.0000 MiB"
        );
    }
}
