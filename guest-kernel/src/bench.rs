//! In-guest measurements for `kmodlab compare` and the Criterion benchmarks
//! ([`kmodlab_abi::channel::Command::Bench`]).
//!
//! Everything here goes through four entry points of the module backend
//! ([`crate::backend::ModuleBackend`]: `insmod_from_archive`, `delete_module`, `list`,
//! `service_call`) plus the TSC and the event counters of [`crate::stats`], so the same code
//! measures whichever configuration the kernel was built as: in the monolithic kernel the
//! backend is the in-kernel subsystem, in the microkernel the user-space module manager. Timed regions contain no VM exit (the kernel log stays in its
//! ring under the `quiet` command line; the result goes back in one reply), and a failure is
//! reported with the backend's own error, never papered over with a number.

use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::rdtsc_ordered;
use kmodlab_abi::channel::{
    BenchReply, BenchRequest, LoadBench, LoadBenchReport, LoadCycles, LoadSample, MAX_BENCH_REPLY,
    ModuleError, ModuleRecord, Reply, ServiceBench, ServiceBenchReport,
};

use crate::backend::{Caller, Failure, backend};
use crate::stats;

/// Most timed rounds one request may ask for (bounds the reply's size).
const MAX_ITERATIONS: u32 = 10_000;

/// Runs `request`.
pub fn run(request: BenchRequest) -> Reply {
    match request {
        BenchRequest::LoadUnload(b) => load_unload(&b),
        BenchRequest::ServiceCall(b) => service(&b),
    }
}

fn error(errno: u64, message: String) -> ModuleError {
    kprintln!("bench: {message}");
    ModuleError {
        errno: errno as i32,
        message,
    }
}

fn failure(errno: u64, message: String) -> Reply {
    Reply::ModuleError(error(errno, message))
}

fn module_failure(what: &str, e: &Failure) -> ModuleError {
    error(e.errno, alloc::format!("{what}: {}", e.message))
}

/// Loads `modules` in order; on failure unloads what this call loaded. Returns the records,
/// the summed step cycles and the cycles of the whole load.
fn load_all(
    modules: &[String],
    params: &str,
) -> Result<(Vec<ModuleRecord>, LoadCycles, u64), ModuleError> {
    let mut records = Vec::with_capacity(modules.len());
    let mut steps = LoadCycles::default();
    let last = modules.len().saturating_sub(1);
    let start = rdtsc_ordered();
    for (i, name) in modules.iter().enumerate() {
        let p = if i == last { params } else { "" };
        match backend().insmod_from_archive(name, p, Caller::KERNEL) {
            Ok(r) => {
                add_steps(&mut steps, &r.load_cycles);
                records.push(r);
            }
            Err(e) => {
                let reply = module_failure(&alloc::format!("loading {name}"), &e);
                unload_all(&modules[..i]).ok();
                return Err(reply);
            }
        }
    }
    let cycles = rdtsc_ordered() - start;
    Ok((records, steps, cycles))
}

/// Unloads `modules` in reverse order; returns the cycles it took.
fn unload_all(modules: &[String]) -> Result<u64, ModuleError> {
    let start = rdtsc_ordered();
    for name in modules.iter().rev() {
        if let Err(e) = backend().delete_module(name, Caller::KERNEL) {
            return Err(module_failure(&alloc::format!("unloading {name}"), &e));
        }
    }
    Ok(rdtsc_ordered() - start)
}

fn add_steps(sum: &mut LoadCycles, c: &LoadCycles) {
    sum.copy += c.copy;
    sum.verify += c.verify;
    sum.validate += c.validate;
    sum.params += c.params;
    sum.layout += c.layout;
    sum.allocate += c.allocate;
    sum.resolve += c.resolve;
    sum.relocate += c.relocate;
    sum.protect += c.protect;
    sum.init += c.init;
    sum.total += c.total;
}

fn load_unload(b: &LoadBench) -> Reply {
    if b.modules.is_empty() || b.iterations == 0 || b.iterations > MAX_ITERATIONS {
        return failure(
            guest_rt::errno::EINVAL,
            alloc::format!(
                "a load benchmark needs 1..={MAX_ITERATIONS} iterations of at least one module"
            ),
        );
    }
    let loaded = || backend().list().map(|(records, _)| records.len());
    let loaded_before = match loaded() {
        Ok(n) => n,
        Err(e) => return Reply::ModuleError(module_failure("listing modules", &e)),
    };
    let rounds = if b.unload { b.warmup + b.iterations } else { 1 };
    let mut samples = Vec::with_capacity(b.iterations as usize);
    let mut last_records = Vec::new();
    let mut counters_start = stats::snapshot();
    for round in 0..rounds {
        let timed = !b.unload || round >= b.warmup;
        if timed && samples.is_empty() {
            counters_start = stats::snapshot();
        }
        let (records, steps, load) = match load_all(&b.modules, &b.params) {
            Ok(x) => x,
            Err(e) => return Reply::ModuleError(e),
        };
        let unload = if b.unload {
            match unload_all(&b.modules) {
                Ok(c) => c,
                Err(e) => return Reply::ModuleError(e),
            }
        } else {
            0
        };
        if timed {
            samples.push(LoadSample {
                load,
                unload,
                steps,
            });
            last_records = records;
        }
    }
    let counters = stats::snapshot().since(&counters_start);
    // A round that unloads must leave the kernel as it found it.
    let loaded_after = match loaded() {
        Ok(n) => n,
        Err(e) => return Reply::ModuleError(module_failure("listing modules", &e)),
    };
    let expected = loaded_before + if b.unload { 0 } else { b.modules.len() };
    if loaded_after != expected {
        return failure(
            guest_rt::errno::EBUSY,
            alloc::format!(
                "{loaded_after} modules loaded after the benchmark, {expected} expected"
            ),
        );
    }
    Reply::Bench(BenchReply::Load(LoadBenchReport {
        samples,
        records: last_records,
        counters,
    }))
}

fn service(b: &ServiceBench) -> Reply {
    if b.reply_capacity > MAX_BENCH_REPLY {
        return failure(
            guest_rt::errno::EINVAL,
            alloc::format!("reply capacity {} > {MAX_BENCH_REPLY}", b.reply_capacity),
        );
    }
    let counters_start = stats::snapshot();
    let start = rdtsc_ordered();
    let result = backend().service_call(&b.service, b.op, &b.request, b.reply_capacity as usize);
    let cycles = rdtsc_ordered() - start;
    let counters = stats::snapshot().since(&counters_start);
    match result {
        Ok(reply) => Reply::Bench(BenchReply::Service(ServiceBenchReport {
            reply,
            cycles,
            counters,
        })),
        Err(e) => Reply::ModuleError(module_failure(
            &alloc::format!("service {} op {}", b.service, b.op),
            &e,
        )),
    }
}
