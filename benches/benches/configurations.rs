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
//! configuration. A configuration that cannot do an operation yet is reported as
//! unsupported, with the guest's own error, and has no benchmark id.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kmodlab::KernelConfig;
use kmodlab::compare::run::{BUILT_IN_ROWS, CALL_SERIES};
use kmodlab::compare::session::boot_once;
use kmodlab::vm::VmConfig;
use kmodlab_benches::{Bytes, CONFIGS, Guest};

fn unsupported(group: &str, config: KernelConfig, why: &str) {
    println!("{group}/{}: unsupported here: {why}", config.name());
}

/// Boots `config` and runs `prepare`; `None` (and a line saying why) if either fails.
fn guest(
    group: &str,
    config: KernelConfig,
    prepare: impl FnOnce(&mut Guest) -> Result<(), String>,
) -> Option<Guest> {
    let mut g = match Guest::boot(config) {
        Ok(g) => g,
        Err(e) => {
            unsupported(group, config, &e);
            return None;
        }
    };
    match prepare(&mut g) {
        Ok(()) => Some(g),
        Err(e) => {
            unsupported(group, config, &e);
            g.finish();
            None
        }
    }
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
            unsupported("boot", config, &e.to_string());
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
            for config in CONFIGS {
                let Some(mut g) = guest(&name, config, |g| {
                    g.load_dependencies(row.modules[0])?;
                    g.load_rounds(&modules, 1).map(drop)
                }) else {
                    continue;
                };
                group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                    b.iter_custom(|iters| {
                        let (samples, _) = g
                            .load_rounds(&modules, iters)
                            .expect("a load round ran before");
                        let cycles = samples
                            .iter()
                            .map(|s| if pick_unload { s.unload } else { s.load })
                            .sum();
                        g.duration(cycles)
                    })
                });
                g.finish();
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
        for config in CONFIGS {
            let mut relocations = 0;
            let Some(mut g) = guest(&name, config, |g| {
                g.load_dependencies(module)?;
                let (_, records) = g.load_rounds(&modules, 1)?;
                relocations = records.iter().map(|r| r.relocations).sum();
                Ok(())
            }) else {
                continue;
            };
            group.throughput(Throughput::Elements(relocations));
            group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                b.iter_custom(|iters| {
                    let (samples, _) = g
                        .load_rounds(&modules, iters)
                        .expect("a load round ran before");
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
            for config in CONFIGS {
                let Some(mut g) = guest(&name, config, |g| {
                    g.load_dependencies("kvstore")?;
                    g.load(&["kvstore", "callbench"])?;
                    g.call_cycles(kind, bytes, 1).map(drop)
                }) else {
                    continue;
                };
                group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                    b.iter_custom(|iters| {
                        let cycles = g
                            .call_cycles(kind, bytes, iters)
                            .expect("a call ran before");
                        g.duration(cycles)
                    })
                });
                g.finish();
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
        for config in CONFIGS {
            let mut bytes = 0u64;
            let Some(g) = guest(&name, config, |g| {
                g.load_dependencies(row.modules[0])?;
                let (_, records) = g.load_rounds(&modules, 1)?;
                bytes = records.iter().map(|r| r.footprint.total_bytes()).sum();
                Ok(())
            }) else {
                continue;
            };
            g.finish();
            // The footprint is a property of the loaded module, the same on every load:
            // each "iteration" reports it once.
            group.bench_function(BenchmarkId::from_parameter(config.name()), |b| {
                b.iter_custom(|iters| bytes * iters)
            });
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
