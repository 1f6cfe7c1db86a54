//! `rival`: exports `rival_token` and, if `want=` names a module, `request_module()`s it from
//! its init and reports the result (the load still succeeds). A copy of this module under
//! another name (the tests rename it in `.modinfo`) exports the same symbol: loading one from
//! the other's init is the race Linux closes by reserving a module's exports while it is
//! COMING (`vmm/tests/kvm_modules.rs`, export reservation).
#![no_std]

use kmod_api::{Errno, println};

kmod_api::module! {
    name: "rival",
    license: "GPL",
    author: "kmodlab",
    description: "Exports rival_token; can request another module while it is loading",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        want: charp = "", "module to request from init (none by default)";
    },
}

/// What `rival_token` returns: a value a caller can check it reached this module.
const TOKEN: u64 = 0x7269_7661_6c00_0001;

kmod_api::export! {
    /// The exported symbol two copies of this module both claim.
    pub extern "C" fn rival_token() -> u64 {
        TOKEN
    }
}

fn init() -> Result<(), Errno> {
    let want = params::want.get();
    if want.is_empty() {
        println!("loaded, exporting rival_token");
    } else {
        match kmod_api::request_module(want) {
            Ok(()) => println!("request_module({want}): ok"),
            Err(e) => println!("request_module({want}): {e}"),
        }
    }
    Ok(())
}

fn exit() {
    println!("exit ran");
}
