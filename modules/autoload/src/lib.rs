//! `autoload`: exercises the kernel's `request_module` (kmod's auto-load). Its init asks for
//! module `want` (default `kvclient`, which needs kvstore, ramblk and crc32 first: the
//! kernel loads them from `modules.dep`), then asks for itself, which the kernel must refuse
//! as busy because it is still COMING; its exit asks for itself again (GOING, also busy).
//! Nothing links against another module's symbols, so it unloads independently.
#![no_std]

use kmod_api::{Errno, println};

kmod_api::module! {
    name: "autoload",
    license: "GPL",
    author: "kmodlab",
    description: "Loads other modules on demand and checks re-entrant requests are refused",
    version: "1.0",
    init: init,
    exit: exit,
    params: {
        want: charp = "kvclient", "module to load on demand";
    },
}

fn init() -> Result<(), Errno> {
    let want = params::want.get();
    match kmod_api::request_module(want) {
        Ok(()) => println!("request_module({want}): ok"),
        Err(e) => {
            println!("request_module({want}): {e}");
            return Err(e);
        }
    }
    match kmod_api::request_module("autoload") {
        Err(Errno::EBUSY) => println!("request_module(self) while COMING: EBUSY, as expected"),
        other => {
            println!("request_module(self) while COMING: {other:?}, expected EBUSY");
            return Err(Errno::EINVAL);
        }
    }
    Ok(())
}

fn exit() {
    match kmod_api::request_module("autoload") {
        Err(Errno::EBUSY) => println!("request_module(self) while GOING: EBUSY, as expected"),
        other => println!("request_module(self) while GOING: {other:?}, expected EBUSY"),
    }
}
