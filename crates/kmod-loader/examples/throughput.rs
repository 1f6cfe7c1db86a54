//! Host-side loader throughput, step by step, on a set of modules or a whole module tree
//! (the Criterion benchmark is `benches/benches/host_loader.rs`).
//!
//! ```text
//! cargo run --release -p kmod-loader --example throughput -- [OPTIONS] [PATH ...]
//! ```
//!
//! Each PATH is a `.ko` file or a directory searched recursively for `.ko` files (for example
//! `/lib/modules/$(uname -r)` or an unpacked Debian `linux-image-*` package); without PATH
//! the committed fixtures are measured. All files are read into memory first. A pass loads
//! every module once, timing each step (validate, layout, resolve, copy, relocate); a second
//! kind of pass times the whole pipeline per module without the per-step clock reads. The
//! best of `--passes` passes of each kind is reported, as milliseconds and nanoseconds per
//! relocation.
//!
//! Options:
//! - `--passes N`: passes of each kind (default 7).
//! - `--fresh-memory`: allocate zeroed region memory for every load (as a simple caller
//!   would) instead of reusing one buffer per region.
//! - `--per-module`: also print one line per module (best pass).
//!
//! Symbols resolve through an [`ExportTable`] holding every name the set leaves undefined,
//! at stand-in kernel addresses, so resolution costs one hash lookup per undefined symbol.
//! Modules the loader refuses are counted and skipped (their error is printed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kmod_loader::{
    ExportTable, ProviderId, RegionMemory, Regions, copy_sections, layout, relocate, resolve,
    validate,
};

const CORE_BASE: u64 = 0xffff_ffff_c000_0000;
const INIT_BASE: u64 = 0xffff_ffff_c800_0000;
const KERNEL_BASE: u64 = 0xffff_ffff_8100_0000;
const STEPS: [&str; 5] = ["validate", "layout", "resolve", "copy", "relocate"];

struct Options {
    passes: usize,
    fresh_memory: bool,
    per_module: bool,
    paths: Vec<PathBuf>,
}

fn usage(message: &str) -> ! {
    eprintln!("throughput: {message}");
    eprintln!("usage: throughput [--passes N] [--fresh-memory] [--per-module] [FILE.ko | DIR ...]");
    std::process::exit(2);
}

fn options() -> Options {
    let mut options = Options {
        passes: 7,
        fresh_memory: false,
        per_module: false,
        paths: Vec::new(),
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--passes") => {
                options.passes = args
                    .next()
                    .and_then(|v| v.to_str()?.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--passes needs a positive number"));
            }
            Some("--fresh-memory") => options.fresh_memory = true,
            Some("--per-module") => options.per_module = true,
            Some(flag) if flag.starts_with("--") => usage(&format!("unknown option {flag}")),
            _ => options.paths.push(arg.into()),
        }
    }
    if options.paths.is_empty() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        options.paths = vec![fixtures.join("c"), fixtures.join("linux")];
    }
    options
}

/// Every `.ko` under `path` (or `path` itself), sorted.
fn module_files(path: &Path, out: &mut Vec<PathBuf>) {
    let metadata =
        std::fs::metadata(path).unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
    if metadata.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "ko") {
                module_files(&entry, out);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
}

/// A stand-in kernel address for `name` (FNV-1a into 16 MiB, 16-byte aligned).
fn kernel_address(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    KERNEL_BASE + (hash % (16 << 20)) / 16 * 16
}

struct Input {
    name: String,
    data: Vec<u8>,
    relocations: u64,
    core_size: usize,
    init_size: usize,
}

/// Region memory: reused buffers, or fresh zeroed ones per load.
struct Memory {
    fresh: bool,
    core: Vec<u8>,
    init: Vec<u8>,
}

impl Memory {
    fn regions(&mut self, core_size: usize, init_size: usize) -> Regions<'_> {
        if self.fresh {
            self.core = vec![0; core_size];
            self.init = vec![0; init_size];
        }
        Regions {
            core: RegionMemory {
                base: CORE_BASE,
                bytes: &mut self.core,
            },
            init: RegionMemory {
                base: INIT_BASE,
                bytes: &mut self.init,
            },
        }
    }
}

fn main() {
    let options = options();
    let mut files = Vec::new();
    for path in &options.paths {
        module_files(path, &mut files);
    }

    // Read everything, keep what loads, and build the stand-in kernel's export table.
    let mut kernel = ExportTable::new();
    let mut inputs = Vec::new();
    let mut refused = 0usize;
    for path in files {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
        let name = path.display().to_string();
        let scanned = validate(&data).and_then(|module| {
            let layout = layout(&module)?;
            for sym in module.symbols() {
                if sym.definition == kmod_loader::validate::Definition::Undefined
                    && !sym.name.is_empty()
                    && sym.name != "_GLOBAL_OFFSET_TABLE_"
                    && kernel.get(sym.name).is_none()
                {
                    kernel
                        .insert(sym.name, kernel_address(sym.name), ProviderId(0))
                        .expect("new name");
                }
            }
            Ok((
                module.counts().relocations.total(),
                layout.core.size as usize,
                layout.init.size as usize,
            ))
        });
        let (relocations, core_size, init_size) = match scanned {
            Ok(sizes) => sizes,
            Err(e) => {
                eprintln!("{name}: refused: {e}");
                refused += 1;
                continue;
            }
        };
        inputs.push(Input {
            name,
            data,
            relocations,
            core_size,
            init_size,
        });
    }
    if inputs.is_empty() {
        usage("no module loads");
    }
    let max = |f: fn(&Input) -> usize| inputs.iter().map(f).max().unwrap_or(0);
    let mut memory = Memory {
        fresh: options.fresh_memory,
        core: vec![0; max(|i| i.core_size)],
        init: vec![0; max(|i| i.init_size)],
    };

    // Per-step passes.
    let mut best_steps = [Duration::MAX; 5];
    let mut best_step_total = Duration::MAX;
    let mut per_module = vec![[Duration::MAX; 5]; inputs.len()];
    for _ in 0..options.passes {
        let mut pass = [Duration::ZERO; 5];
        for (input, best) in inputs.iter().zip(per_module.iter_mut()) {
            let t0 = Instant::now();
            let module = validate(&input.data).expect("loaded before");
            let t1 = Instant::now();
            let layout = layout(&module).expect("laid out before");
            let t2 = Instant::now();
            let resolution = resolve(&module, &kernel).expect("every name is exported");
            let t3 = Instant::now();
            let mut regions = memory.regions(input.core_size, input.init_size);
            copy_sections(&module, &layout, &mut regions).expect("memory is large enough");
            let t4 = Instant::now();
            relocate(&module, &layout, &resolution, &mut regions)
                .unwrap_or_else(|e| panic!("{}: {e}", input.name));
            let t5 = Instant::now();
            let times = [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4];
            for i in 0..5 {
                pass[i] += times[i];
                best[i] = best[i].min(times[i]);
            }
        }
        for i in 0..5 {
            best_steps[i] = best_steps[i].min(pass[i]);
        }
        best_step_total = best_step_total.min(pass.iter().sum());
    }

    // Whole-pipeline passes: one clock read per pass.
    let mut best_whole = Duration::MAX;
    for _ in 0..options.passes {
        let start = Instant::now();
        for input in &inputs {
            let module = validate(&input.data).expect("loaded before");
            let layout = layout(&module).expect("laid out before");
            let resolution = resolve(&module, &kernel).expect("every name is exported");
            let mut regions = memory.regions(input.core_size, input.init_size);
            copy_sections(&module, &layout, &mut regions).expect("memory is large enough");
            relocate(&module, &layout, &resolution, &mut regions).expect("relocated before");
        }
        best_whole = best_whole.min(start.elapsed());
    }

    let relocations: u64 = inputs.iter().map(|i| i.relocations).sum();
    let bytes: usize = inputs.iter().map(|i| i.data.len()).sum();
    if options.per_module {
        println!(
            "{:<48} {:>8} | {}",
            "module",
            "relocs",
            STEPS.map(|s| format!("{s:>9}")).join(" ")
        );
        for (input, best) in inputs.iter().zip(&per_module) {
            let name = input.name.rsplit('/').next().unwrap_or(&input.name);
            println!(
                "{:<48} {:>8} | {}",
                name,
                input.relocations,
                best.map(|d| format!("{:>9.1?}", d)).join(" ")
            );
        }
        println!();
    }
    let ns_per = |d: Duration| d.as_nanos() as f64 / relocations.max(1) as f64;
    println!(
        "{} modules ({} refused), {:.1} MB of files, {} relocations, {} undefined names; \
         best of {} passes, {} region memory",
        inputs.len(),
        refused,
        bytes as f64 / 1e6,
        relocations,
        kernel.len(),
        options.passes,
        if options.fresh_memory {
            "fresh"
        } else {
            "reused"
        },
    );
    println!("{:<24} {:>10} {:>14}", "step", "ms", "ns/relocation");
    for (step, d) in STEPS.iter().zip(best_steps) {
        println!(
            "{:<24} {:>10.2} {:>14.2}",
            step,
            d.as_secs_f64() * 1e3,
            ns_per(d)
        );
    }
    println!(
        "{:<24} {:>10.2} {:>14.2}",
        "sum of steps",
        best_step_total.as_secs_f64() * 1e3,
        ns_per(best_step_total)
    );
    println!(
        "{:<24} {:>10.2} {:>14.2}",
        "whole pipeline",
        best_whole.as_secs_f64() * 1e3,
        ns_per(best_whole)
    );
}
