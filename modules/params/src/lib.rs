//! `params`: every parameter type (int, bool, charp) with defaults and descriptions. Init
//! prints the values it got and refuses out-of-range ones with `-EINVAL`, so tests can check
//! both the kernel's parameter parsing and a module-side rejection.
#![no_std]

use kmod_api::{Errno, println};

kmod_api::module! {
    name: "params",
    license: "GPL",
    author: "kmodlab",
    description: "Shows every parameter type and rejects out-of-range values",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        count: int = 3, "how many times to greet (0..=10)";
        verbose: bool = false, "print each greeting on its own line";
        greeting: charp = "hello", "the word to greet with (1..=32 bytes)";
        offset: int = -1, "any i64; printed back to check sign handling";
    },
}

/// Largest accepted `count`.
const MAX_COUNT: i64 = 10;
/// Longest accepted `greeting`.
const MAX_GREETING: usize = 32;

fn init() -> Result<(), Errno> {
    let count = params::count.get();
    let verbose = params::verbose.get();
    let greeting = params::greeting.get();
    let offset = params::offset.get();
    println!("count={count} verbose={verbose} greeting=\"{greeting}\" offset={offset}");
    if !(0..=MAX_COUNT).contains(&count) {
        println!("count={count} is out of range 0..={MAX_COUNT}: refusing to load");
        return Err(Errno::EINVAL);
    }
    if greeting.is_empty() || greeting.len() > MAX_GREETING {
        println!(
            "greeting is {} bytes, must be 1..={MAX_GREETING}: refusing to load",
            greeting.len()
        );
        return Err(Errno::EINVAL);
    }
    if verbose {
        for i in 1..=count {
            println!("{greeting} #{i}");
        }
    }
    println!(
        "greeted {count} times, sum of offsets {}",
        offset.wrapping_mul(count)
    );
    Ok(())
}

fn exit() {
    println!("unloaded (count was {})", params::count.get());
}
