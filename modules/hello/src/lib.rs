//! `hello`: the smallest module. Prints one line on init and one on exit, and nothing else,
//! so it measures the fixed cost of loading and unloading a module.
#![no_std]

use kmod_api::{Errno, println};

kmod_api::module! {
    name: "hello",
    license: "GPL",
    author: "kmodlab",
    description: "Prints a greeting on load and a farewell on unload",
    version: "1.0",
    init: init,
    exit: exit,
}

fn init() -> Result<(), Errno> {
    println!("Hello from a kmodlab module");
    Ok(())
}

fn exit() {
    println!("Goodbye from a kmodlab module");
}
