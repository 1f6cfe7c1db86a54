//! `sh`, the guest's module shell: Linux's module tools (`insmod`, `rmmod`, `lsmod`,
//! `modinfo`, `modprobe`, `depmod`'s output) plus `dmesg` and `ls`, as a user program that
//! reaches the kernel only through system calls. The kernel runs it on a script (from
//! `kmodlab run -c`) or on the serial console (`kmodlab shell`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use guest_rt::{cap, errno};
use kmodlab_abi::input::{Line, LineReader};
use kmodlab_abi::modules_dep::{ModulesDep, module_name};
use kmodlab_user::{print, println};

/// The heap: module files are read whole (the largest is a few MiB).
static mut ARENA: [u8; 16 << 20] = [0; 16 << 20];

const PROMPT: &str = "kmodlab# ";
/// The longest input line the shell runs (far more than any command needs; a script from the
/// control channel can be up to half a MiB). A longer line is refused whole, never cut.
const MAX_LINE: usize = 64 << 10;
/// Bytes asked for per `read_input` (a longer line takes several reads).
const READ_CHUNK: usize = 4096;
const MODULE_DIR: &str = "lib/modules";

/// `interactive` (rdi): 1 for a console session (prompts), 0 for a script (commands echoed).
/// Reports the number of commands run and failed; exits 1 if any failed.
#[unsafe(no_mangle)]
pub extern "C" fn user_main(interactive: u64, _: u64, _: u64) -> u64 {
    let arena: *mut [u8; 16 << 20] = &raw mut ARENA;
    // SAFETY: this is the only reference ever taken to ARENA, handed to the allocator for
    // the program's lifetime.
    kmodlab_user::init_heap(unsafe { &mut *arena });
    let interactive = interactive != 0;
    let (mut run, mut failed) = (0u64, 0u64);
    let mut input = LineReader::new(MAX_LINE);
    let mut chunk = alloc::vec![0u8; READ_CHUNK];
    let mut line_number = 0u64;
    loop {
        if interactive {
            print!("{PROMPT}");
        }
        let line = match input.next_line(&mut chunk, kmodlab_user::read_input) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                println!("sh: cannot read input: {}", errno_text(e));
                failed += 1;
                break;
            }
        };
        line_number += 1;
        let line = match line {
            Line::Text(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Line::TooLong { len } => {
                // Refused whole: running the part that fits would run commands the user
                // never wrote (a cut-off argument) and skip the rest.
                println!(
                    "sh: line {line_number} is {len} bytes long, more than the {MAX_LINE} this \
                     shell takes; it was not run"
                );
                run += 1;
                failed += 1;
                continue;
            }
        };
        let mut stop = false;
        for command in line.split(';') {
            let words: Vec<&str> = command.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            if !interactive {
                println!("{PROMPT}{}", words.join(" "));
            }
            if words[0] == "exit" {
                stop = true;
                break;
            }
            run += 1;
            if let Err(message) = execute(&words) {
                println!("{message}");
                failed += 1;
            }
        }
        if stop {
            break;
        }
    }
    kmodlab_user::report(run);
    kmodlab_user::report(failed);
    u64::from(failed > 0)
}

fn execute(words: &[&str]) -> Result<(), String> {
    match words[0] {
        "insmod" => insmod(words),
        "rmmod" => rmmod(words),
        "lsmod" => lsmod(words),
        "modinfo" => modinfo(words),
        "modprobe" => modprobe(words),
        "dmesg" => dmesg(),
        "ls" => ls(words),
        "capdrop" => {
            kmodlab_user::cap_drop(cap::SYS_MODULE);
            println!("dropped CAP_SYS_MODULE");
            Ok(())
        }
        "echo" => {
            println!("{}", words[1..].join(" "));
            Ok(())
        }
        "help" => {
            help();
            Ok(())
        }
        other => Err(alloc::format!("sh: {other}: command not found (try help)")),
    }
}

fn help() {
    println!(
        "commands:\n\
         \x20 insmod FILE [param=value ...]   load a module file (name.ko, or a path)\n\
         \x20 rmmod NAME                      unload a module\n\
         \x20 lsmod [-v]                      list loaded modules (-v: accounting, load cycles)\n\
         \x20 modinfo NAME|FILE               show a module's .modinfo\n\
         \x20 modprobe NAME [param=value ...] load a module and what it depends on (modules.dep)\n\
         \x20 modprobe -r NAME                unload a module and its unused dependencies\n\
         \x20 dmesg                           the kernel log\n\
         \x20 ls [PREFIX]                     files of the module archive\n\
         \x20 capdrop                         give up CAP_SYS_MODULE (to test permission checks)\n\
         \x20 echo TEXT | help | exit\n\
         several commands on one line are separated by ';'"
    );
}

/// `hello`, `hello.ko` or a path → the archive path of the module file.
fn module_path(arg: &str) -> String {
    let arg = arg.trim_start_matches('/');
    if arg.contains('/') {
        arg.to_string()
    } else if arg.ends_with(".ko") {
        alloc::format!("{MODULE_DIR}/{arg}")
    } else {
        alloc::format!("{MODULE_DIR}/{arg}.ko")
    }
}

/// What `strerror` says for `e` (the one errno table, `kmod_api::errno`).
fn errno_text(e: u64) -> errno::Describe {
    errno::describe(e)
}

/// The kernel's detail of the last failure, as a second line.
fn detail() -> String {
    let d = kmodlab_user::last_error();
    if d.is_empty() {
        d
    } else {
        alloc::format!("\n  kernel: {d}")
    }
}

fn load(path: &str, params: &str) -> Result<(), String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let image = kmodlab_user::read_file(path).map_err(|e| {
        alloc::format!(
            "insmod: ERROR: could not load module {file}: {}",
            errno_text(e)
        )
    })?;
    kmodlab_user::init_module(&image, params).map_err(|e| {
        // kmod's insmod words these two its own way (its `mod_strerror`); the rest is strerror.
        let why = match e {
            errno::ENOENT => "Unknown symbol in module, or unknown parameter".to_string(),
            errno::ENOEXEC => "Invalid module format".to_string(),
            _ => errno_text(e).to_string(),
        };
        alloc::format!(
            "insmod: ERROR: could not insert module {file}: {why}{}",
            detail()
        )
    })
}

fn insmod(words: &[&str]) -> Result<(), String> {
    let Some(file) = words.get(1) else {
        return Err("usage: insmod FILE [param=value ...]".into());
    };
    load(&module_path(file), &words[2..].join(" "))
}

fn rmmod(words: &[&str]) -> Result<(), String> {
    let Some(name) = words.get(1) else {
        return Err("usage: rmmod NAME".into());
    };
    let name = module_name(name);
    kmodlab_user::delete_module(&name).map_err(|e| {
        let d = kmodlab_user::last_error();
        if d.is_empty() {
            alloc::format!(
                "rmmod: ERROR: could not remove module {name}: {}",
                errno_text(e)
            )
        } else {
            alloc::format!("rmmod: ERROR: {d}")
        }
    })
}

/// One line of `/proc/modules`.
struct ProcModule {
    name: String,
    size: u64,
    refcount: u64,
    users: Vec<String>,
    /// The module's code stopped running (its server died: the `D` flag).
    faulted: bool,
}

fn proc_modules() -> Result<Vec<ProcModule>, String> {
    let text = kmodlab_user::read_proc("modules")
        .map_err(|e| alloc::format!("cannot read /proc/modules: {}", errno_text(e)))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let users = match *f.get(3)? {
                "-" => Vec::new(),
                u => u
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            };
            Some(ProcModule {
                name: f.first()?.to_string(),
                size: f.get(1)?.parse().ok()?,
                refcount: f.get(2)?.parse().ok()?,
                users,
                faulted: f
                    .get(6)
                    .is_some_and(|flags| flags.starts_with('(') && flags.contains('D')),
            })
        })
        .collect())
}

/// `lsmod` as kmod prints it: `%-19s %8lu  %d` plus the users; a module whose code stopped
/// running (microkernel: its server died) is marked `[faulted]`, as old lsmod marked
/// `[permanent]` modules.
fn lsmod(words: &[&str]) -> Result<(), String> {
    if words.get(1) == Some(&"-v") {
        let text = kmodlab_user::read_proc("modules-verbose")
            .map_err(|e| alloc::format!("lsmod: {}", errno_text(e)))?;
        print!("{text}");
        return Ok(());
    }
    let mut out = String::from("Module                  Size  Used by\n");
    for m in proc_modules()? {
        out.push_str(&alloc::format!(
            "{:<19} {:>8}  {}",
            m.name,
            m.size,
            m.refcount
        ));
        if !m.users.is_empty() {
            out.push(' ');
            out.push_str(&m.users.join(","));
        }
        if m.faulted {
            out.push_str(" [faulted]");
        }
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

fn modinfo(words: &[&str]) -> Result<(), String> {
    let Some(arg) = words.get(1) else {
        return Err("usage: modinfo NAME|FILE".into());
    };
    let path = module_path(arg);
    let image = kmodlab_user::read_file(&path)
        .map_err(|_| alloc::format!("modinfo: ERROR: Module {arg} not found."))?;
    let module = kmod_loader::validate(kmod_sig::strip(&image))
        .map_err(|e| alloc::format!("modinfo: ERROR: could not get modinfo from '{arg}': {e}"))?;
    let signature = kmod_sig::SignatureInfo::of(&image).map_or_else(Vec::new, |s| {
        kmodlab_abi::modinfo::signature_fields(
            s.id_type,
            &s.signer,
            &s.key_id,
            s.hash_algo,
            &s.signature,
        )
    });
    let mut pairs: Vec<(&str, &str)> = module.modinfo().collect();
    pairs.extend(signature.iter().map(|(k, v)| (*k, v.as_str())));
    print!(
        "{}",
        kmodlab_abi::modinfo::render(&pairs, &alloc::format!("/{path}"), None, '\n')
    );
    Ok(())
}

fn modules_dep() -> Result<String, String> {
    kmodlab_user::read_file(&alloc::format!("{MODULE_DIR}/modules.dep"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| {
            alloc::format!(
                "modprobe: FATAL: cannot read modules.dep: {}",
                errno_text(e)
            )
        })
}

fn modprobe(words: &[&str]) -> Result<(), String> {
    if words.get(1) == Some(&"-r") {
        let Some(name) = words.get(2) else {
            return Err("usage: modprobe -r NAME".into());
        };
        return modprobe_remove(name);
    }
    let Some(name) = words.get(1) else {
        return Err("usage: modprobe NAME [param=value ...]".into());
    };
    let dep_text = modules_dep()?;
    let dep = ModulesDep::parse(&dep_text);
    let order = dep.load_order(name).ok_or_else(|| {
        alloc::format!("modprobe: FATAL: Module {name} not found in directory /{MODULE_DIR}")
    })?;
    let loaded: Vec<String> = proc_modules()?.into_iter().map(|m| m.name).collect();
    let last = order.len() - 1;
    for (i, path) in order.iter().enumerate() {
        if loaded.contains(&module_name(path)) {
            continue;
        }
        // Parameters go to the named module only, as modprobe does.
        let params = if i == last {
            words[2..].join(" ")
        } else {
            String::new()
        };
        load(&alloc::format!("{MODULE_DIR}/{path}"), &params)?;
    }
    Ok(())
}

/// Removes `name`, then each of its dependencies nothing else uses any more.
fn modprobe_remove(name: &str) -> Result<(), String> {
    let dep_text = modules_dep()?;
    let dep = ModulesDep::parse(&dep_text);
    let name = module_name(name);
    let mut order = dep.load_order(&name).ok_or_else(|| {
        alloc::format!("modprobe: FATAL: Module {name} not found in directory /{MODULE_DIR}")
    })?;
    order.reverse();
    for (i, path) in order.iter().enumerate() {
        let m = module_name(path);
        let Some(state) = proc_modules()?.into_iter().find(|p| p.name == m) else {
            if i == 0 {
                return Err(alloc::format!(
                    "modprobe: FATAL: Module {m} is not in kernel."
                ));
            }
            continue;
        };
        if i > 0 && state.refcount > 0 {
            continue;
        }
        kmodlab_user::delete_module(&m)
            .map_err(|_| alloc::format!("modprobe: FATAL: {}", kmodlab_user::last_error()))?;
    }
    Ok(())
}

fn dmesg() -> Result<(), String> {
    let log =
        kmodlab_user::read_proc("kmsg").map_err(|e| alloc::format!("dmesg: {}", errno_text(e)))?;
    print!("{log}");
    Ok(())
}

fn ls(words: &[&str]) -> Result<(), String> {
    let prefix = words.get(1).map_or("", |p| p.trim_start_matches('/'));
    let files =
        kmodlab_user::read_proc("files").map_err(|e| alloc::format!("ls: {}", errno_text(e)))?;
    let mut out = String::new();
    for line in files.lines().filter(|l| l.starts_with(prefix)) {
        if let Some((path, size)) = line.split_once(' ') {
            out.push_str(&alloc::format!("{size:>9}  /{path}\n"));
        }
    }
    print!("{out}");
    Ok(())
}
