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
//! kind of pass times the whole pipeline per module without the per-step clock reads. Two
//! figures are reported for each, as milliseconds and nanoseconds per relocation: the sum
//! over modules of each module's fastest time in `--passes` passes ("minima": steady on a
//! shared machine, where few whole passes run undisturbed), and the fastest whole pass.
//!
//! Options:
//! - `--passes N`: passes of each kind (default 11).
//! - `--fresh-memory`: allocate zeroed region memory for every load (as a simple caller
//!   would) instead of reusing one buffer per region.
//! - `--simple`: use the free functions (`validate`, `layout`, …), which allocate their
//!   tables for every module, instead of one [`Loader`] that keeps them.
//! - `--per-module`: also print one line per module (best pass).
//! - `--warm`: load each module once, untimed, right before each timed load of it, so that
//!   its file, its region memory and the loader's tables are in the caches, as they are in a
//!   kernel that has just read the file into its buffer (for the files smaller than the L2
//!   cache: nearly all of a Linux tree). Without it a tree larger than the caches is read
//!   from memory by each load: the default, and the figure the loader's goals are stated in.
//!
//! - `--provider table|hash|null`: where undefined symbols resolve. `table` (the default):
//!   an [`ExportTable`] holding every name the set leaves undefined at stand-in kernel
//!   addresses, one hash lookup per undefined symbol, as in a kernel. `hash`: the stand-in
//!   kernel of the loader's end-to-end tests, which computes an address from the name
//!   (FNV-1a, over the name's bytes) and reads no table. `null`: every name resolves to one
//!   address without being read, so that `resolve` shows the loader's own share of the step.
//!
//! Modules the loader refuses are counted and skipped (their error is printed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kmod_loader::{
    ExportTable, Loader, ProvidedSymbol, ProviderId, RegionMemory, Regions, SymbolProvider,
    copy_sections, layout, relocate, resolve, validate,
};

const CORE_BASE: u64 = 0xffff_ffff_c000_0000;
const INIT_BASE: u64 = 0xffff_ffff_c800_0000;
const KERNEL_BASE: u64 = 0xffff_ffff_8100_0000;
const STEPS: [&str; 5] = ["validate", "layout", "resolve", "copy", "relocate"];

struct Options {
    passes: usize,
    fresh_memory: bool,
    simple: bool,
    per_module: bool,
    warm: bool,
    provider: Provider,
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    Table,
    Hash,
    Null,
}

fn usage(message: &str) -> ! {
    eprintln!("throughput: {message}");
    eprintln!(
        "usage: throughput [--passes N] [--fresh-memory] [--simple] [--per-module] [--warm] \
         [--provider table|hash|null] [FILE.ko | DIR ...]"
    );
    std::process::exit(2);
}

fn options() -> Options {
    let mut options = Options {
        passes: 11,
        fresh_memory: false,
        simple: false,
        per_module: false,
        warm: false,
        provider: Provider::Table,
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
            Some("--simple") => options.simple = true,
            Some("--provider") => {
                options.provider = match args.next().as_ref().and_then(|v| v.to_str()) {
                    Some("table") => Provider::Table,
                    Some("hash") => Provider::Hash,
                    Some("null") => Provider::Null,
                    _ => usage("--provider needs `table`, `hash` or `null`"),
                }
            }
            Some("--per-module") => options.per_module = true,
            Some("--warm") => options.warm = true,
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

/// A stand-in kernel address for `name` (FNV-1a into 16 MiB, 16-byte aligned): the
/// end-to-end tests' `kernel_address`, over bytes.
fn kernel_address(name: &[u8]) -> u64 {
    let hash = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    KERNEL_BASE + (hash % (16 << 20)) / 16 * 16
}

/// The `hash` stand-in kernel: an address computed from each name's bytes.
struct ComputedKernel;

impl SymbolProvider for ComputedKernel {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        self.lookup_bytes(name.as_bytes())
    }

    fn lookup_bytes(&self, name: &[u8]) -> Option<ProvidedSymbol> {
        Some(ProvidedSymbol {
            address: kernel_address(name),
            provider: ProviderId(0),
        })
    }
}

/// The `null` stand-in kernel: one address for every name, which it does not read.
struct NullKernel;

impl SymbolProvider for NullKernel {
    fn lookup(&self, _: &str) -> Option<ProvidedSymbol> {
        self.lookup_bytes(&[])
    }

    fn lookup_bytes(&self, _: &[u8]) -> Option<ProvidedSymbol> {
        Some(ProvidedSymbol {
            address: KERNEL_BASE,
            provider: ProviderId(0),
        })
    }
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

/// Loads one module, with the free functions (`loader` is `None`) or a [`Loader`]; with
/// `timed`, returns each step's time.
fn load_one(
    input: &Input,
    kernel: &dyn SymbolProvider,
    loader: Option<&mut Loader>,
    memory: &mut Memory,
    timed: bool,
) -> [Duration; 5] {
    let clock = || timed.then(Instant::now);
    let since = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    };
    let fail = |e: kmod_loader::Error| -> ! { panic!("{}: {e}", input.name) };
    let t0 = clock();
    match loader {
        Some(loader) => {
            let module = loader.validate(&input.data).unwrap_or_else(|e| fail(e));
            let t1 = clock();
            let layout = loader.layout(&module).unwrap_or_else(|e| fail(e));
            let t2 = clock();
            let resolution = loader.resolve(&module, kernel).unwrap_or_else(|e| fail(e));
            let t3 = clock();
            let mut regions = memory.regions(input.core_size, input.init_size);
            copy_sections(&module, &layout, &mut regions).unwrap_or_else(|e| fail(e));
            let t4 = clock();
            loader
                .relocate(&module, &layout, &resolution, &mut regions)
                .unwrap_or_else(|e| fail(e));
            let t5 = clock();
            loader.recycle(module, layout, resolution);
            [
                since(t0, t1),
                since(t1, t2),
                since(t2, t3),
                since(t3, t4),
                since(t4, t5),
            ]
        }
        None => {
            let module = validate(&input.data).unwrap_or_else(|e| fail(e));
            let t1 = clock();
            let layout = layout(&module).unwrap_or_else(|e| fail(e));
            let t2 = clock();
            let resolution = resolve(&module, kernel).unwrap_or_else(|e| fail(e));
            let t3 = clock();
            let mut regions = memory.regions(input.core_size, input.init_size);
            copy_sections(&module, &layout, &mut regions).unwrap_or_else(|e| fail(e));
            let t4 = clock();
            relocate(&module, &layout, &resolution, &mut regions).unwrap_or_else(|e| fail(e));
            let t5 = clock();
            [
                since(t0, t1),
                since(t1, t2),
                since(t2, t3),
                since(t3, t4),
                since(t4, t5),
            ]
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
    let mut table = ExportTable::new();
    let mut inputs = Vec::new();
    let mut refused = 0usize;
    for path in files {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
        let name = path.display().to_string();
        let scanned = validate(&data).and_then(|module| {
            let layout = layout(&module)?;
            for &index in module.undefined_symbols() {
                let name = module.symbol(index).and_then(|s| s.name()).unwrap_or("");
                if !name.is_empty() && name != "_GLOBAL_OFFSET_TABLE_" && table.get(name).is_none()
                {
                    table
                        .insert(name, kernel_address(name.as_bytes()), ProviderId(0))
                        .expect("new name");
                }
            }
            Ok((
                module.counts().relocation_entries(),
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

    let kernel: &dyn SymbolProvider = match options.provider {
        Provider::Table => &table,
        Provider::Hash => &ComputedKernel,
        Provider::Null => &NullKernel,
    };
    let mut loader = (!options.simple).then(Loader::new);
    // Per-step passes.
    let mut best_steps = [Duration::MAX; 5];
    let mut best_step_total = Duration::MAX;
    let mut per_module = vec![[Duration::MAX; 5]; inputs.len()];
    for _ in 0..options.passes {
        let mut pass = [Duration::ZERO; 5];
        for (input, best) in inputs.iter().zip(per_module.iter_mut()) {
            if options.warm {
                load_one(input, kernel, loader.as_mut(), &mut memory, false);
            }
            let times = load_one(input, kernel, loader.as_mut(), &mut memory, true);
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

    // Whole-pipeline passes: one clock read per module, none between the steps.
    let mut best_whole = Duration::MAX;
    let mut per_module_whole = vec![Duration::MAX; inputs.len()];
    for _ in 0..options.passes {
        let pass_start = Instant::now();
        let mut timed = Duration::ZERO;
        for (input, best) in inputs.iter().zip(per_module_whole.iter_mut()) {
            if options.warm {
                load_one(input, kernel, loader.as_mut(), &mut memory, false);
            }
            let start = Instant::now();
            load_one(input, kernel, loader.as_mut(), &mut memory, false);
            let elapsed = start.elapsed();
            timed += elapsed;
            *best = (*best).min(elapsed);
        }
        // A warm pass also holds the untimed loads: its figure is the sum of the timed ones.
        best_whole = best_whole.min(if options.warm {
            timed
        } else {
            pass_start.elapsed()
        });
    }
    // On a shared machine a pass is rarely undisturbed; each module's fastest load almost
    // always is, so the sum of per-module minima is the steadier figure.
    let mut minima = [Duration::ZERO; 5];
    for best in &per_module {
        for (sum, d) in minima.iter_mut().zip(best) {
            *sum += *d;
        }
    }
    let minima_whole: Duration = per_module_whole.iter().sum();

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
        "{} modules ({} refused), {:.1} MB of files, {} relocations, {} undefined names \
         ({}); best of {} passes, {} region memory, {}, {}",
        inputs.len(),
        refused,
        bytes as f64 / 1e6,
        relocations,
        table.len(),
        match options.provider {
            Provider::Table => "resolved through an ExportTable",
            Provider::Hash => "addresses computed from names",
            Provider::Null => "one address for every name, unread",
        },
        options.passes,
        if options.fresh_memory {
            "fresh"
        } else {
            "reused"
        },
        if options.simple {
            "free functions"
        } else {
            "one Loader"
        },
        if options.warm {
            "warm: each timed load right after an untimed one of the same module"
        } else {
            "cold: each module's first load in its pass"
        },
    );
    println!(
        "{:<16} {:>12} {:>14} {:>12} {:>14}",
        "step", "ms (minima)", "ns/reloc", "ms (pass)", "ns/reloc"
    );
    let row = |name: &str, minima: Duration, pass: Duration| {
        println!(
            "{:<16} {:>12.2} {:>14.2} {:>12.2} {:>14.2}",
            name,
            minima.as_secs_f64() * 1e3,
            ns_per(minima),
            pass.as_secs_f64() * 1e3,
            ns_per(pass)
        );
    };
    for ((step, minima), pass) in STEPS.iter().zip(minima).zip(best_steps) {
        row(step, minima, pass);
    }
    row("sum of steps", minima.iter().sum(), best_step_total);
    row("whole pipeline", minima_whole, best_whole);
}
