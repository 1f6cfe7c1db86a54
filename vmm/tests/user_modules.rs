//! The user's own modules (`--module`, `--modules`): modules/README.md's worked example (C
//! against `kmod.h`, and Rust with `kmod-api`) built here from scratch, loaded by name in
//! the guest and measured by `compare`; and bad module files refused with a clear error and
//! exit status before anything boots.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::kvm_usable;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kmodlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .output()
        .expect("cannot run the kmodlab binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kmodlab-user-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The code block that follows `<!-- user-module-example: NAME -->` in modules/README.md.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("modules/README.md")).unwrap();
    let marker = format!("<!-- user-module-example: {name} -->\n");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("modules/README.md has no example {name}"));
    let rest = &readme[at + marker.len()..];
    let body = &rest[rest.find('\n').expect("a fenced block") + 1..];
    body[..body.find("```").expect("a closed block")].to_owned()
}

/// Builds a C module from `source` (named NAME.c in dir NAME) with the README's commands.
fn build_c(dir: &Path, name: &str, source: &str) -> PathBuf {
    let module_dir = dir.join(name);
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join(format!("{name}.c")), source).unwrap();
    let script = readme_block("build.sh").replace("mymod", name);
    let out = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(dir)
        .env("KMODLAB", repo_root())
        .output()
        .expect("cannot run sh");
    assert!(
        out.status.success(),
        "the README's build commands failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    module_dir.join(format!("{name}.ko"))
}

/// The README's C module, built with its commands.
fn build_readme_c(dir: &Path) -> PathBuf {
    build_c(dir, "mymod", &readme_block("mymod.c"))
}

/// The README's Rust module, built with the build pipeline's out-of-tree entry point (what
/// `--example build-module` runs).
fn build_readme_rust(dir: &Path) -> PathBuf {
    let krate = dir.join("myrmod");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let kmod_api = repo_root().join("modules/kmod-api");
    let manifest = readme_block("Cargo.toml").replace(
        "../kmodlab/modules/kmod-api",
        kmod_api.to_str().expect("a UTF-8 path"),
    );
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(krate.join("src/lib.rs"), readme_block("lib.rs")).unwrap();
    kmodlab_build::ensure_guest_target().unwrap();
    // The Rust target directory is kept between runs (under the build's), so only the first
    // run compiles kmod-api.
    let work = repo_root().join("target/guest/test-user-modules");
    kmodlab_build::modules::build_out_of_tree(&repo_root(), &krate, &work, dir)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn bad_module_files_are_refused_before_any_boot() {
    let s = Scratch::new("bad");
    let missing = s.0.join("missing.ko");
    let not_elf = s.0.join("notelf.ko");
    std::fs::write(&not_elf, b"this is not an ELF file\n").unwrap();
    let bytes = std::fs::read(&not_elf).unwrap();
    let Err(loader_error) = kmod_loader::validate(&bytes) else {
        panic!("the loader accepts a text file");
    };
    let unknown = build_c(
        &s.0,
        "needsfoo",
        "#include <kmod.h>\nMODULE_NAME(\"needsfoo\");\nMODULE_LICENSE(\"GPL\");\n\
         extern int32_t kmod_no_such_function(void);\n\
         static int __init needsfoo_init(void) { return kmod_no_such_function(); }\n\
         module_init(needsfoo_init);\n\
         static void __exit needsfoo_exit(void) {}\n\
         module_exit(needsfoo_exit);\n",
    );
    let cases = [
        (
            missing.clone(),
            format!(
                "kmodlab: {}: cannot read it: No such file or directory (os error 2)\n",
                missing.display()
            ),
        ),
        (
            not_elf.clone(),
            format!(
                "kmodlab: {}: not a loadable module: {loader_error}\n",
                not_elf.display()
            ),
        ),
        (
            unknown.clone(),
            format!(
                "kmodlab: {}: undefined symbol `kmod_no_such_function` is neither a kernel API \
                 function (see modules/include/kmod.h) nor exported by a built-in or given module\n",
                unknown.display()
            ),
        ),
    ];
    for (path, expected) in &cases {
        let p = path.to_str().unwrap();
        for args in [
            vec!["run", "--module", p, "-c", "lsmod"],
            vec!["shell", "--module", p],
            vec!["compare", "--quick", "--module", p],
        ] {
            let out = kmodlab(&args);
            assert_eq!(out.status.code(), Some(1), "kmodlab {args:?}");
            assert_eq!(text(&out.stderr), *expected, "kmodlab {args:?}");
            // Nothing booted: a boot prints the guest's banner on stdout.
            assert!(
                out.stdout.is_empty(),
                "kmodlab {args:?}: {}",
                text(&out.stdout)
            );
        }
    }
    // --modules: a directory without modules is an error too.
    let empty = s.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = kmodlab(&["run", "--modules", empty.to_str().unwrap(), "-c", "lsmod"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "kmodlab: {}: no .ko files in this directory\n",
            empty.display()
        )
    );
}

#[test]
fn the_readme_examples_build_load_and_are_measured() {
    let s = Scratch::new("readme");
    let c = build_readme_c(&s.0);
    let rust = build_readme_rust(&s.0);
    if !kvm_usable() {
        return;
    }
    let script =
        "insmod mymod.ko times=2; insmod myrmod.ko times=2; lsmod; rmmod mymod; rmmod myrmod";
    // --modules DIR: every .ko of the directory (here both).
    let mine = s.0.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::copy(&c, mine.join("mymod.ko")).unwrap();
    std::fs::copy(&rust, mine.join("myrmod.ko")).unwrap();
    for config in ["monolithic", "microkernel"] {
        let out = kmodlab(&[
            "run",
            "--config",
            config,
            "--modules",
            mine.to_str().unwrap(),
            "-c",
            script,
        ]);
        let console = text(&out.stdout).replace('\r', "");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{config}: {console}{}",
            text(&out.stderr)
        );
        for line in [
            "mymod: greeting 1\n",
            "mymod: greeting 2\n",
            "myrmod: greeting 2\n",
            "mymod: goodbye\n",
            "myrmod: goodbye\n",
        ] {
            assert!(
                console.contains(line),
                "{config}: no {line:?} in:\n{console}"
            );
        }
        assert!(!console.contains("mymod: greeting 3"), "{console}");
    }

    // compare measures them like the built-in modules.
    let results = s.0.join("results");
    let out = kmodlab(&[
        "compare",
        "--quick",
        "--module",
        "hello",
        "--module",
        c.to_str().unwrap(),
        "--module",
        rust.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = kmodlab::compare::report::Report::read(&results).unwrap();
    assert_eq!(report.parameters.modules, ["hello", "mymod", "myrmod"]);
    for config in ["monolithic", "microkernel"] {
        let cr = report.config(config).unwrap();
        for name in ["mymod", "myrmod"] {
            let row = cr.loads.iter().find(|l| l.name == name).unwrap();
            assert_eq!(row.source, "user");
            let m = row
                .outcome
                .measured()
                .unwrap_or_else(|| panic!("{config} {name}: {:?}", row.outcome));
            assert_eq!(m.load.n, report.parameters.load_iterations as usize);
            assert!(m.load.median > 0.0);
            let (module, f) = &m.footprint[0];
            assert_eq!(module, name);
            assert!(f.section_pages >= 1 && f.metadata_bytes > 0, "{f:?}");
        }
    }
    let md = std::fs::read_to_string(results.join("REPORT.md")).unwrap();
    assert!(md.contains("| load mymod (µs) |"), "{md}");
    assert!(md.contains("| footprint myrmod (KiB) |"), "{md}");
}
