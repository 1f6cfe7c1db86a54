//! The two configurations side by side: every group has a `monolithic` and a `microkernel`
//! benchmark id, so Criterion's reports compare them directly.
//!
//! - `boot/<config>`: a boot to the kernel's ready message (wall clock);
//! - `load/<module>` and `unload/<module>`: insmod → LIVE and rmmod, in the guest;
//! - `relocate/<module>`: the guest loader's relocation step (`Throughput::Elements` =
//!   relocations applied);
//! - `call/<series>/<bytes>`: a call between modules (direct call or IPC), via `callbench`;
//! - `footprint/<module>`: bytes a loaded module costs (the [`Bytes`] measurement).
//!
//! Guest figures come from the guest's TSC through `iter_custom`; one boot per group and
//! configuration (only for the benchmarks the filter selects). A configuration that cannot
//! load modules yet is reported once, with the guest's own error, and has no module
//! benchmark ids.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kmodlab::KernelConfig;
use kmodlab::compare::run::{BUILT_IN_ROWS, CALL_SERIES};
use kmodlab::compare::session::boot_once;
use kmodlab::vm::VmConfig;
use kmodlab_benches::{Bytes, CONFIGS, Guest};

/// Whether `config` can load modules, probed once (one boot) per configuration: a
/// configuration that cannot gets no module benchmark ids, and one line saying why.
fn modules_supported(config: KernelConfig) -> bool {
    static PROBES: OnceLock<Vec<(KernelConfig, Result<(), String>)>> = OnceLock::new();
    let probes = PROBES.get_or_init(|| {
        CONFIGS
            .iter()
            .map(|&c| {
                let result = Guest::boot(c).and_then(|mut g| {
                    let r = g.load_rounds(&["hello".to_string()], 1).map(drop);
                    g.finish();
                    r
                });
                if let Err(e) = &result {
                    println!(
                        "{}: module benchmarks (load, unload, relocate, call, footprint) unsupported here: {e}",
                        c.name()
                    );
                }
                (c, result)
            })
            .collect()
    });
    probes.iter().any(|(c, r)| *c == config && r.is_ok())
}

/// Boots `config` and runs `prepare`, for the benchmark that needs it (booted only if the
/// benchmark runs: Criterion calls the routine only for ids its filter selects).
fn guest(config: KernelConfig, prepare: impl FnOnce(&mut Guest) -> Result<(), String>) -> Guest {
    let mut g = Guest::boot(config).unwrap_or_else(|e| panic!("{}: {e}", config.name()));
    prepare(&mut g).unwrap_or_else(|e| panic!("{}: {e}", config.name()));
    g
}

fn boot(c: &mut Criterion) {
    let mut group = c.benchmark_group("boot");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for config in CONFIGS {
        let cfg = VmConfig {
            cmdline: "quiet".into(),
            ..VmConfig::new(config)
        };
        if let Err(e) = boot_once(&cfg, kmodlab::artifacts::images(config)) {
            println!("boot/{}: unsupported here: {e}", config.name());
            continue;
        }
        group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    boot_once(&cfg, kmodlab::artifacts::images(config))
                        .expect("the guest booted before");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn load_unload(c: &mut Criterion) {
    for row in BUILT_IN_ROWS {
        let modules: Vec<String> = row.modules.iter().map(|s| s.to_string()).collect();
        let big = row.name == "big";
        for (what, pick_unload) in [("load", false), ("unload", true)] {
            let name = format!("{what}/{}", row.name);
            let mut group = c.benchmark_group(&name);
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(if big { 8 } else { 2 }));
            for config in CONFIGS.into_iter().filter(|&c| modules_supported(c)) {
                let mut booted: Option<Guest> = None;
                group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                    let g = booted.get_or_insert_with(|| {
                        guest(config, |g| g.load_dependencies(row.modules[0]))
                    });
                    b.iter_custom(|iters| {
                        let (samples, _) = g.load_rounds(&modules, iters).expect("load rounds");
                        let cycles = samples
                            .iter()
                            .map(|s| if pick_unload { s.unload } else { s.load })
                            .sum();
                        g.duration(cycles)
                    })
                });
                if let Some(g) = booted {
                    g.finish();
                }
            }
            group.finish();
        }
    }
}

fn relocate(c: &mut Criterion) {
    for module in ["hello", "crc32", "big"] {
        let name = format!("relocate/{module}");
        let mut group = c.benchmark_group(&name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if module == "big" { 8 } else { 2 }));
        let modules = vec![module.to_string()];
        for config in CONFIGS.into_iter().filter(|&c| modules_supported(c)) {
            // The throughput needs the relocation count before the benchmark: one load.
            let mut g = guest(config, |g| g.load_dependencies(module));
            let (_, records) = g.load_rounds(&modules, 1).expect("a load round");
            group.throughput(Throughput::Elements(
                records.iter().map(|r| r.relocations).sum(),
            ));
            group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                b.iter_custom(|iters| {
                    let (samples, _) = g.load_rounds(&modules, iters).expect("load rounds");
                    g.duration(samples.iter().map(|s| s.steps.relocate).sum())
                })
            });
            g.finish();
        }
        group.finish();
    }
}

fn calls(c: &mut Criterion) {
    for &(series, kind, max) in CALL_SERIES {
        for bytes in [0u32, 64, 4096].into_iter().filter(|&b| b <= max) {
            let name = format!("call/{series}/{bytes}");
            let mut group = c.benchmark_group(&name);
            group
                .sample_size(20)
                .warm_up_time(Duration::from_millis(300));
            group.measurement_time(Duration::from_secs(1));
            for config in CONFIGS.into_iter().filter(|&c| modules_supported(c)) {
                let mut booted: Option<Guest> = None;
                group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                    let g = booted.get_or_insert_with(|| {
                        guest(config, |g| {
                            g.load_dependencies("kvstore")?;
                            g.load(&["kvstore", "callbench"])
                        })
                    });
                    b.iter_custom(|iters| {
                        let cycles = g.call_cycles(kind, bytes, iters).expect("calls");
                        g.duration(cycles)
                    })
                });
                if let Some(g) = booted {
                    g.finish();
                }
            }
            group.finish();
        }
    }
}

fn footprint(c: &mut Criterion<Bytes>) {
    for row in BUILT_IN_ROWS {
        let name = format!("footprint/{}", row.name);
        let mut group = c.benchmark_group(&name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(10));
        group.measurement_time(Duration::from_millis(50));
        let modules: Vec<String> = row.modules.iter().map(|s| s.to_string()).collect();
        for config in CONFIGS.into_iter().filter(|&c| modules_supported(c)) {
            let mut booted: Option<Guest> = None;
            group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                let g = booted
                    .get_or_insert_with(|| guest(config, |g| g.load_dependencies(row.modules[0])));
                // Each iteration is a real load and unload in the guest; its value is the
                // loaded module's footprint, which the kernel accounts the same on every
                // load (the check gate asserts it): the last round's, once per round.
                b.iter_custom(|iters| {
                    let (_, records) = g.load_rounds(&modules, iters).expect("load rounds");
                    let bytes: u64 = records.iter().map(|r| r.footprint.total_bytes()).sum();
                    bytes.saturating_mul(iters)
                })
            });
            if let Some(g) = booted {
                g.finish();
            }
        }
        group.finish();
    }
}

fn bytes_criterion() -> Criterion<Bytes> {
    Criterion::default().with_measurement(Bytes)
}

criterion_group!(timings, boot, load_unload, relocate, calls);
criterion_group! {
    name = memory;
    config = bytes_criterion();
    targets = footprint
}
criterion_main!(timings, memory);
