//! Host-side loader throughput, step by step (a quick measurement; the Criterion benchmark
//! lives elsewhere).
//!
//! `cargo run --release -p kmod-loader --example throughput -- [FILE.ko ...]`
//!
//! Without arguments it measures the committed fixtures. Each file is loaded repeatedly for
//! about a second; the output gives the mean time of each step and relocations per second for
//! the relocate step alone and for a whole load.

use std::time::{Duration, Instant};

use kmod_loader::{
    FnProvider, ProvidedSymbol, ProviderId, RegionMemory, Regions, copy_sections, layout, relocate,
    resolve, validate,
};

const CORE_BASE: u64 = 0xffff_ffff_c000_0000;
const INIT_BASE: u64 = 0xffff_ffff_c800_0000;

fn main() {
    let mut paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for dir in ["c", "linux"] {
            for entry in std::fs::read_dir(fixtures.join(dir)).expect("fixtures") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "ko") {
                    paths.push(path);
                }
            }
        }
        paths.sort();
    }
    // A stand-in kernel: every name resolves to a kernel-range address.
    let provider = FnProvider(|name: &str| {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (!name.contains("optional")).then_some(ProvidedSymbol {
            address: 0xffff_ffff_8100_0000 + (hash % (16 << 20)) / 16 * 16,
            provider: ProviderId(0),
        })
    });
    println!(
        "{:<28} {:>9} {:>8} | {:>9} {:>9} {:>9} {:>9} {:>9} | {:>12} {:>12}",
        "module",
        "bytes",
        "relocs",
        "validate",
        "layout",
        "resolve",
        "copy",
        "relocate",
        "reloc/s(rel)",
        "reloc/s(all)"
    );
    for path in paths {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let module = validate(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        let relocations = module.counts().relocations.total();
        let layout0 = layout(&module).unwrap();
        let mut core = vec![0u8; layout0.core.size as usize];
        let mut init = vec![0u8; layout0.init.size as usize];

        let mut times = [Duration::ZERO; 5];
        let mut rounds = 0u32;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) || rounds < 3 {
            let t0 = Instant::now();
            let module = validate(&data).unwrap();
            let t1 = Instant::now();
            let layout = layout(&module).unwrap();
            let t2 = Instant::now();
            let resolution = resolve(&module, &provider).unwrap();
            let t3 = Instant::now();
            let mut regions = Regions {
                core: RegionMemory {
                    base: CORE_BASE,
                    bytes: &mut core,
                },
                init: RegionMemory {
                    base: INIT_BASE,
                    bytes: &mut init,
                },
            };
            copy_sections(&module, &layout, &mut regions).unwrap();
            let t4 = Instant::now();
            relocate(&module, &layout, &resolution, &mut regions).unwrap();
            let t5 = Instant::now();
            for (slot, d) in times
                .iter_mut()
                .zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4])
            {
                *slot += d;
            }
            rounds += 1;
        }
        let mean = |d: Duration| d / rounds;
        let total: Duration = times.iter().sum();
        let per_second = |d: Duration| relocations as f64 / d.as_secs_f64();
        println!(
            "{:<28} {:>9} {:>8} | {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} | {:>12.3e} {:>12.3e}",
            name,
            data.len(),
            relocations,
            mean(times[0]),
            mean(times[1]),
            mean(times[2]),
            mean(times[3]),
            mean(times[4]),
            per_second(mean(times[4])),
            per_second(mean(total)),
        );
    }
}
