//! Runs the built modules on the host: each `.ko` is loaded by `kmod-loader` into executable
//! memory mapped low in the address space (the kernel code model needs the module within
//! ±2 GiB of what its 32-bit relocations point at, and 32S absolute addresses below 2 GiB),
//! its kernel API calls go through stubs to host functions below, and its `init_module` /
//! `cleanup_module` really run. The printed lines prove that the modules do their work
//! (checksums, the key-value store on the block device, services, parameters, and every
//! relocation of `big`) before any guest kernel exists.
//!
//! x86-64 Linux hosts only (it maps memory with mmap and executes the modules' code).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::Mutex;

use kmod_api::Errno;
use kmod_loader::{ExportTable, Loaded, ProviderId, RegionMemory, Regions};
use kmodlab_build::BuildDirs;
use kmodlab_build::modules::{BuiltModules, build_modules};

/// Where the test maps module memory: low enough for 32-bit sign-extended absolute
/// addresses, and rarely taken by anything else in a test process.
const ARENA_BASE: usize = 0x3000_0000;
const ARENA_SIZE: usize = 64 << 20;
const PAGE: usize = 4096;

// ---- the host-side kernel API ----

#[derive(Default)]
struct Kernel {
    log: String,
    services: Vec<Option<(String, kmod_api::abi::ServiceHandler, usize)>>,
    live: Vec<String>,
    allocated: usize,
}

static KERNEL: Mutex<Option<Kernel>> = Mutex::new(None);

fn with_kernel<T>(f: impl FnOnce(&mut Kernel) -> T) -> T {
    let mut guard = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Kernel::default))
}

/// # Safety
/// `ptr` must be valid for `len` bytes (or `len` 0).
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller (the kernel API contract).
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

mod kapi {
    use super::*;

    pub extern "C" fn kmod_print(msg: *const u8, len: usize) {
        // SAFETY: the kernel API contract: msg is valid for len bytes.
        let text = String::from_utf8_lossy(unsafe { bytes(msg, len) }).into_owned();
        with_kernel(|k| k.log.push_str(&text));
    }

    pub extern "C" fn kmod_alloc(size: usize, align: usize) -> *mut u8 {
        let Ok(layout) = std::alloc::Layout::from_size_align(size, align) else {
            return std::ptr::null_mut();
        };
        if size == 0 || align > 4096 {
            return std::ptr::null_mut();
        }
        with_kernel(|k| k.allocated += size);
        // SAFETY: layout has a non-zero size.
        unsafe { std::alloc::alloc_zeroed(layout) }
    }

    pub extern "C" fn kmod_free(ptr: *mut u8, size: usize, align: usize) {
        if ptr.is_null() {
            return;
        }
        let layout = std::alloc::Layout::from_size_align(size, align).expect("layout");
        with_kernel(|k| k.allocated -= size);
        // SAFETY: per the contract ptr came from kmod_alloc with this size and align.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }

    pub extern "C" fn kmod_cycles() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NOW: AtomicU64 = AtomicU64::new(0);
        NOW.fetch_add(1000, Ordering::Relaxed)
    }

    pub extern "C" fn kmod_request_module(name: *const u8, name_len: usize) -> i32 {
        // SAFETY: the contract: name is valid for name_len bytes.
        let name = String::from_utf8_lossy(unsafe { bytes(name, name_len) }).into_owned();
        if with_kernel(|k| k.live.contains(&name)) {
            0
        } else {
            Errno::ENOENT.to_ret()
        }
    }

    pub extern "C" fn kmod_service_register(
        name: *const u8,
        name_len: usize,
        handler: kmod_api::abi::ServiceHandler,
        ctx: *mut c_void,
    ) -> i32 {
        // SAFETY: the contract: name is valid for name_len bytes.
        let name = String::from_utf8_lossy(unsafe { bytes(name, name_len) }).into_owned();
        with_kernel(|k| {
            if k.services.iter().flatten().any(|(n, _, _)| *n == name) {
                return Errno::EEXIST.to_ret();
            }
            k.services.push(Some((name, handler, ctx as usize)));
            0
        })
    }

    pub extern "C" fn kmod_service_unregister(name: *const u8, name_len: usize) -> i32 {
        // SAFETY: the contract: name is valid for name_len bytes.
        let name = String::from_utf8_lossy(unsafe { bytes(name, name_len) }).into_owned();
        with_kernel(|k| {
            for slot in &mut k.services {
                if slot.as_ref().is_some_and(|(n, _, _)| *n == name) {
                    *slot = None;
                    return 0;
                }
            }
            Errno::ENOENT.to_ret()
        })
    }

    pub extern "C" fn kmod_service_lookup(
        name: *const u8,
        name_len: usize,
        handle: *mut u64,
    ) -> i32 {
        // SAFETY: the contract: name is valid for name_len bytes.
        let name = String::from_utf8_lossy(unsafe { bytes(name, name_len) }).into_owned();
        let found = with_kernel(|k| {
            k.services
                .iter()
                .position(|s| s.as_ref().is_some_and(|(n, _, _)| *n == name))
        });
        match found {
            Some(i) => {
                // SAFETY: the contract: handle is writable.
                unsafe { handle.write(i as u64) };
                0
            }
            None => Errno::ENOENT.to_ret(),
        }
    }

    pub extern "C" fn kmod_service_call(
        handle: u64,
        op: u32,
        req: *const u8,
        req_len: usize,
        reply: *mut u8,
        reply_cap: usize,
        reply_len: *mut usize,
    ) -> i32 {
        // The lock is not held while the handler runs: it may call the kernel API itself.
        let service = with_kernel(|k| k.services.get(handle as usize).cloned().flatten());
        let Some((_, handler, ctx)) = service else {
            return Errno::ENOENT.to_ret();
        };
        let mut len = 0usize;
        // SAFETY: the handler and ctx were registered together by a loaded module; the
        // buffers are the caller's, valid per the contract, and len is a local.
        let status = unsafe {
            handler(
                ctx as *mut c_void,
                op,
                req,
                req_len,
                reply,
                reply_cap,
                &mut len,
            )
        };
        if status == 0 {
            if len > reply_cap {
                return Errno::EMSGSIZE.to_ret();
            }
            // SAFETY: the contract: reply_len is writable.
            unsafe { reply_len.write(len) };
        }
        status
    }

    pub static TABLE: [kmod_api::KernelApiEntry; kmod_api::KERNEL_API_SYMBOLS.len()] =
        kmod_api::kernel_api_table!();
}

// ---- module memory and loading ----

/// The mapped arena: kernel API stubs first, then module regions, bump-allocated.
struct Arena {
    base: usize,
    next: usize,
}

impl Arena {
    fn map() -> Arena {
        // SAFETY: a fresh private anonymous mapping at an address nothing else uses
        // (MAP_FIXED_NOREPLACE fails rather than replacing an existing mapping).
        let ptr = unsafe {
            libc::mmap(
                ARENA_BASE as *mut c_void,
                ARENA_SIZE,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(ptr as usize, ARENA_BASE, "mmap of the module arena failed");
        Arena {
            base: ARENA_BASE,
            next: ARENA_BASE,
        }
    }

    fn take(&mut self, size: usize) -> (u64, &'static mut [u8]) {
        let size = size.div_ceil(PAGE).max(1) * PAGE;
        let at = self.next;
        assert!(at + size <= self.base + ARENA_SIZE, "arena exhausted");
        self.next += size;
        // SAFETY: [at, at + size) lies in the arena mapping, is handed out once, and the
        // mapping is never unmapped during the test.
        (at as u64, unsafe {
            std::slice::from_raw_parts_mut(at as *mut u8, size)
        })
    }

    /// A stub per kernel API function, `movabs $impl, %rax; jmp *%rax`, so that modules
    /// reach host functions with 32-bit PC-relative calls.
    fn kernel_stubs(&mut self) -> ExportTable {
        let mut table = ExportTable::new();
        let (base, bytes) = self.take(16 * kapi::TABLE.len());
        for (i, entry) in kapi::TABLE.iter().enumerate() {
            let stub = &mut bytes[16 * i..16 * i + 12];
            stub[..2].copy_from_slice(&[0x48, 0xb8]);
            stub[2..10].copy_from_slice(&(entry.addr as u64).to_le_bytes());
            stub[10..12].copy_from_slice(&[0xff, 0xe0]);
            table
                .insert(entry.name, base + 16 * i as u64, ProviderId(0))
                .unwrap();
        }
        table
    }

    fn load(&mut self, data: &[u8], provider: &ExportTable) -> Loaded {
        let prepared = kmod_loader::prepare(data, provider).unwrap_or_else(|e| panic!("{e}"));
        let (core_base, core) = self.take(prepared.layout.core.size as usize);
        let (init_base, init) = self.take(prepared.layout.init.size as usize);
        prepared
            .finish(Regions {
                core: RegionMemory {
                    base: core_base,
                    bytes: core,
                },
                init: RegionMemory {
                    base: init_base,
                    bytes: init,
                },
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn address(loaded: &Loaded, symbol: &str) -> usize {
    loaded
        .symbol(symbol)
        .unwrap_or_else(|| panic!("{}: no {symbol}", loaded.name))
        .address as usize
}

fn run_init(loaded: &Loaded) -> i32 {
    let at = address(loaded, "init_module");
    // SAFETY: init_module of a module just relocated into executable memory, with the ABI
    // `extern "C" fn() -> i32` (ABI.md); its kernel API calls land in `kapi`.
    let init: extern "C" fn() -> i32 = unsafe { std::mem::transmute(at) };
    init()
}

fn run_exit(loaded: &Loaded) {
    let at = address(loaded, "cleanup_module");
    // SAFETY: as in run_init, for `extern "C" fn()`.
    let exit: extern "C" fn() = unsafe { std::mem::transmute(at) };
    exit()
}

/// Writes parameter storage the way the kernel does before init (ABI.md "Parameters").
fn set_param(loaded: &Loaded, name: &str, value: &[u8]) {
    let at = address(loaded, &format!("__kmod_param_{name}"));
    // SAFETY: the symbol is the parameter's storage in the module's writable core region,
    // which is at least as large as the value written for its type.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), at as *mut u8, value.len()) };
}

fn set_charp(loaded: &Loaded, name: &str, value: &str) {
    let copy: &'static [u8] = Box::leak(value.as_bytes().to_vec().into_boxed_slice());
    let mut storage = [0u8; 16];
    storage[..8].copy_from_slice(&(copy.as_ptr() as u64).to_le_bytes());
    storage[8..].copy_from_slice(&(copy.len() as u64).to_le_bytes());
    set_param(loaded, name, &storage);
}

fn take_log() -> String {
    with_kernel(|k| std::mem::take(&mut k.log))
}

fn built() -> BuiltModules {
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-pipeline");
    kmodlab_build::ensure_guest_target().expect("guest target");
    build_modules(&BuildDirs {
        repo_root,
        target_root: scratch.join("target"),
        out_dir: scratch.join("out-host-run"),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn modules_run_on_a_host_kernel_api() {
    let modules = built();
    let mut arena = Arena::map();
    let mut provider = arena.kernel_stubs();
    let read = |name: &str| std::fs::read(&modules.get(name).unwrap().path).unwrap();
    let mut live: Vec<Loaded> = Vec::new();

    // In dependency order; each module's exports become available to the next.
    for name in [
        "hello", "crc32", "ramblk", "kvstore", "kvclient", "cstats", "big", "faulty",
    ] {
        let loaded = arena.load(&read(name), &provider);
        with_kernel(|k| k.live.push(name.to_owned()));
        let status = run_init(&loaded);
        let log = take_log();
        print!("{log}");
        assert_eq!(status, 0, "{name} init failed: {log}");
        for export in &loaded.exports {
            provider
                .insert(
                    &export.name,
                    export.address,
                    ProviderId(live.len() as u64 + 1),
                )
                .unwrap();
        }
        match name {
            "hello" => assert_eq!(log, "hello: Hello from a kmodlab module\n"),
            "crc32" => {
                assert!(log.contains("crc32: self-test ok"), "{log}");
                assert!(log.contains("bench: crc32 of 64 KiB = 0x"), "{log}");
                assert!(log.contains("service \"crc32\" registered"), "{log}");
            }
            "ramblk" => assert!(log.contains("ramblk: 64 blocks x 512 bytes = 32768 bytes ready (self-test ok)"), "{log}"),
            "kvstore" => assert!(log.contains("kvstore: formatted 63 slots on ramblk"), "{log}"),
            "kvclient" => assert!(
                log.contains("kvclient: put 16, read back 16 ok, deleted 4, count 12, service get ok, service count 12, crc32 digest 0x"),
                "{log}"
            ),
            "cstats" => {
                assert!(log.contains("cstats: 1000 samples (seed 42): min "), "{log}");
                assert!(log.contains("cstats: service \"cstats\" registered"), "{log}");
            }
            "big" => {
                assert_eq!(log.matches(" ok\n").count(), 3, "{log}");
                assert!(!log.contains("MISMATCH"), "{log}");
            }
            "faulty" => assert!(log.contains("faulty: loaded cleanly"), "{log}"),
            _ => {}
        }
        live.push(loaded);
    }

    // The C module's service, called from the host like another module would.
    let handle = {
        let mut h = 0u64;
        assert_eq!(kapi::kmod_service_lookup(b"cstats".as_ptr(), 6, &mut h), 0);
        h
    };
    let values: Vec<u8> = [5u32, 1, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut reply = [0u8; 20];
    let mut len = 0;
    let status = kapi::kmod_service_call(
        handle,
        0,
        values.as_ptr(),
        values.len(),
        reply.as_mut_ptr(),
        20,
        &mut len,
    );
    assert_eq!((status, len), (0, 20));
    assert_eq!(reply[..12], [3, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0]);
    assert_eq!(u64::from_le_bytes(reply[12..].try_into().unwrap()), 500);

    // Unload in reverse order: exits run and give back what they took.
    for loaded in live.iter().rev() {
        run_exit(loaded);
    }
    let log = take_log();
    print!("{log}");
    assert!(
        log.contains("kvclient: removed 12 keys, store count now 0"),
        "{log}"
    );
    assert!(log.contains("ramblk: "), "{log}");
    assert!(
        log.contains("hello: Goodbye from a kmodlab module\n"),
        "{log}"
    );
    assert_eq!(
        with_kernel(|k| k.allocated),
        0,
        "modules leaked kernel memory"
    );
    assert!(
        with_kernel(|k| k.services.iter().all(Option::is_none)),
        "services left registered"
    );

    // Parameters: defaults, values set by the "kernel", and a value init refuses.
    let params = read("params");
    let run_params = |arena: &mut Arena, set: &dyn Fn(&Loaded)| {
        let loaded = arena.load(&params, &provider);
        set(&loaded);
        let status = run_init(&loaded);
        (status, take_log())
    };
    let (status, log) = run_params(&mut arena, &|_| {});
    assert_eq!(status, 0, "{log}");
    assert!(
        log.contains("params: count=3 verbose=false greeting=\"hello\" offset=-1\n"),
        "{log}"
    );
    assert!(
        log.contains("params: greeted 3 times, sum of offsets -3\n"),
        "{log}"
    );
    let (status, log) = run_params(&mut arena, &|l| {
        set_param(l, "count", &2i64.to_le_bytes());
        set_param(l, "verbose", &[1]);
        set_charp(l, "greeting", "hi");
    });
    assert_eq!(status, 0, "{log}");
    assert!(log.contains("params: hi #1\nparams: hi #2\n"), "{log}");
    let (status, log) = run_params(&mut arena, &|l| set_param(l, "count", &11i64.to_le_bytes()));
    assert_eq!(status, Errno::EINVAL.to_ret(), "{log}");
    assert!(
        log.contains("count=11 is out of range 0..=10: refusing to load"),
        "{log}"
    );

    // kvclient refuses a bad parameter before touching the store.
    let services_before = with_kernel(|k| k.services.len());
    let kvclient = arena.load(&read("kvclient"), &provider);
    set_param(&kvclient, "keys", &0i64.to_le_bytes());
    assert_eq!(run_init(&kvclient), Errno::EINVAL.to_ret());
    assert!(take_log().contains("keys=0 is out of range"));
    assert_eq!(with_kernel(|k| k.services.len()), services_before);

    // faulty: each mode really faults (in a forked child, so the test survives), with the
    // signal the CPU exception becomes on the host.
    let faulty = read("faulty");
    for (mode, signals) in [
        ("null", &[libc::SIGSEGV][..]),
        ("ud", &[libc::SIGILL][..]),
        ("div0", &[libc::SIGFPE][..]),
        ("wild", &[libc::SIGSEGV, libc::SIGBUS][..]),
        ("panic", &[libc::SIGILL][..]),
        // Rust's runtime turns a guard-page hit into an abort with a message.
        ("stack", &[libc::SIGSEGV, libc::SIGABRT, libc::SIGBUS][..]),
        // Its state's pointer chain, scribbled: a wild load.
        ("scribble", &[libc::SIGSEGV, libc::SIGBUS][..]),
        ("loop", &[][..]),
        ("none", &[][..]),
    ] {
        let loaded = arena.load(&faulty, &provider);
        set_charp(&loaded, "mode", mode);
        let outcome = run_in_child(&loaded);
        match (mode, outcome) {
            ("loop", Outcome::StillRunning) => {}
            ("none", Outcome::Exited(0)) => {}
            (_, Outcome::Signal(sig)) if signals.contains(&sig) => {}
            (_, other) => panic!("faulty mode={mode}: {other:?}"),
        }
    }

    // mode=garbage at=init: init fails with an errno past the errno table (no fault).
    let loaded = arena.load(&faulty, &provider);
    set_charp(&loaded, "mode", "garbage");
    let ret = run_init(&loaded);
    assert!(
        (-8191..=-4096).contains(&ret),
        "garbage init returned {ret}"
    );
    assert!(take_log().contains(&format!("garbage: init fails with errno {}", -ret)));

    // at=call: loads cleanly, and faults when its service is called.
    let loaded = arena.load(&faulty, &provider);
    set_charp(&loaded, "mode", "ud");
    set_charp(&loaded, "at", "call");
    assert_eq!(run_init(&loaded), 0);
    assert!(take_log().contains("armed: mode=ud on a call to service \"faulty\""));
    let mut handle = 0u64;
    assert_eq!(
        kapi::kmod_service_lookup(b"faulty".as_ptr(), 6, &mut handle),
        0
    );
    let call = || {
        let mut len = 0;
        kapi::kmod_service_call(
            handle,
            0,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            0,
            &mut len,
        )
    };
    assert!(matches!(in_child(call), Outcome::Signal(libc::SIGILL)));
    run_exit(&loaded);
    assert!(with_kernel(|k| k.services.iter().all(Option::is_none)));
}

#[derive(Debug)]
enum Outcome {
    Exited(i32),
    Signal(i32),
    StillRunning,
}

/// Runs `loaded`'s init in a forked child; a child still running after half a second is
/// killed and reported as such.
fn run_in_child(loaded: &Loaded) -> Outcome {
    in_child(|| run_init(loaded))
}

/// Runs `f` in a forked child; its result is the child's exit status.
fn in_child(f: impl FnOnce() -> i32) -> Outcome {
    // SAFETY: the child only runs module code and the `kapi` functions (whose lock no other
    // thread holds now), then _exit()s without unwinding.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let status = f();
        // SAFETY: ends the child at once, as fork's contract requires.
        unsafe { libc::_exit(status.rem_euclid(256)) };
    }
    let mut status = 0;
    for _ in 0..50 {
        // SAFETY: waits for our own child; status is a local.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            return if libc::WIFSIGNALED(status) {
                Outcome::Signal(libc::WTERMSIG(status))
            } else {
                Outcome::Exited(libc::WEXITSTATUS(status))
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: kills and reaps our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    Outcome::StillRunning
}
