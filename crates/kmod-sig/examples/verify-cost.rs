//! Host cost of checking a module signature (`kmod_sig::check`), for comparison with the
//! guest's `verify` load step: `cargo run --release -p kmod-sig --features sign --example
//! verify-cost`. Prints the median of 51 runs for a 2.6 KB and a 4 MB module (the sizes of
//! `hello` and `big`), in microseconds and TSC cycles.
use std::time::Instant;

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no preconditions on x86-64; it only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn main() {
    let key = kmod_sig::SigningKey::generate();
    for size in [2_568usize, 4_080_728] {
        let module: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let signed = key.sign(&module).expect("signing a synthetic module");
        let mut micros = Vec::new();
        let mut cycles = Vec::new();
        for _ in 0..51 {
            let (t, c) = (Instant::now(), rdtsc());
            let checked = kmod_sig::check(&signed, Some(key.trusted_key()));
            cycles.push(rdtsc() - c);
            micros.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(checked.outcome.is_ok());
        }
        micros.sort_by(f64::total_cmp);
        cycles.sort_unstable();
        println!(
            "{size:>9} bytes: check {:.1} us, {} cycles (median of 51; min {} max {})",
            micros[25], cycles[25], cycles[0], cycles[50]
        );
    }
}
