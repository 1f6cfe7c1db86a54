//! The user's own modules (`--module PATH.ko`, `--modules DIR`): checked on the host before
//! anything boots, then added to a copy of the module archive with `modules.dep`
//! recomputed, so that they load by name like the built-in ones.
//!
//! The checks are the host loader's `validate` (the same code the guest runs, with its typed
//! error), the module's name (`.modinfo` `name=` must match the file name and not shadow a
//! built-in module), and its symbols: every undefined symbol must be a kernel API function
//! or an export of a built-in or given module (depmod, as the build checks the built-in
//! set).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use kmod_tools::ModuleFile;
use kmod_tools::depmod::{self, KernelExports};
use kmodlab_abi::initramfs::Archive;

/// Where modules live in the archive.
const MODULE_DIR: &str = "lib/modules/";
/// The dependency file in the archive.
const MODULES_DEP: &str = "lib/modules/modules.dep";

/// Why the user's modules cannot be used. Each names the file and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum UserModuleError {
    /// The file (or directory) cannot be read.
    #[error("{path}: cannot read it: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `--modules` directory holds no `.ko` file.
    #[error("{0}: no .ko files in this directory")]
    EmptyDir(PathBuf),
    /// The host loader refuses the file.
    #[error("{path}: not a loadable module: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The loader's error.
        source: Box<kmod_loader::Error>,
    },
    /// The host tools cannot read the file's symbols.
    #[error("{0}")]
    Tool(#[from] kmod_tools::ToolError),
    /// `.modinfo` has no `name=`.
    #[error("{0}: .modinfo has no name= entry (kmod_api::module! and MODULE_NAME() write it)")]
    NoName(PathBuf),
    /// The file name and `name=` differ.
    #[error(
        "{path}: the file is called {stem}.ko but its .modinfo says name={name}; rename the \
         file or the module so that they agree"
    )]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// The file's stem.
        stem: String,
        /// The module's name.
        name: String,
    },
    /// The module has the name of a built-in module.
    #[error("{path}: a built-in module is already called {name}; rename yours")]
    ShadowsBuiltIn {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// Two given files are the same module.
    #[error("{first} and {second} are both module {name}; give only one")]
    Duplicate {
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
        /// The name.
        name: String,
    },
    /// Symbols nobody provides.
    #[error(
        "{path}: undefined symbol {} is neither a kernel API function (see \
         modules/include/kmod.h) nor exported by a built-in or given module",
        symbols.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    )]
    UnknownSymbol {
        /// The file.
        path: PathBuf,
        /// The symbols, sorted.
        symbols: Vec<String>,
    },
    /// The embedded archive is unreadable (a build problem, not the user's).
    #[error("the embedded module archive is unreadable: {0}")]
    Archive(kmodlab_abi::initramfs::ArchiveError),
    /// Writing the new archive failed.
    #[error("writing the module archive: {0}")]
    Write(std::io::Error),
}

/// One checked user module.
#[derive(Debug, Clone)]
pub struct UserModule {
    /// Its name.
    pub name: String,
    /// Where it came from.
    pub path: PathBuf,
    /// The file.
    pub bytes: Vec<u8>,
    /// The modules it needs, in load order (providers first), not itself.
    pub depends: Vec<String>,
    /// Whether it has `cleanup_module` (can be unloaded).
    pub has_exit: bool,
}

/// The user modules and the archive that holds them.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The modules, in the order given.
    pub modules: Vec<UserModule>,
    /// The module archive with them (and the new `modules.dep`); without user modules, the
    /// base archive itself, not a copy (the VMM then maps the embedded archive's own pages
    /// into the guest instead of copying it, see `vm::place_memory`).
    pub archive: Cow<'static, [u8]>,
}

/// The `.ko` files `--module` names and the `.ko` files directly in each `--modules`
/// directory (sorted), in that order.
pub fn collect(files: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<PathBuf>, UserModuleError> {
    let mut out: Vec<PathBuf> = files.to_vec();
    for dir in dirs {
        let read = |source| UserModuleError::Read {
            path: dir.clone(),
            source,
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "ko"))
            .collect();
        if found.is_empty() {
            return Err(UserModuleError::EmptyDir(dir.clone()));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Checks `paths` against the built-in modules of `base_archive` and builds the archive
/// holding both. With no paths, the archive is `base_archive` unchanged.
pub fn prepare(
    base_archive: &'static [u8],
    paths: &[PathBuf],
) -> Result<Prepared, UserModuleError> {
    if paths.is_empty() {
        return Ok(Prepared {
            modules: Vec::new(),
            archive: Cow::Borrowed(base_archive),
        });
    }
    let base = Archive::new(base_archive).map_err(UserModuleError::Archive)?;
    let mut modules: Vec<UserModule> = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| UserModuleError::Read {
            path: path.clone(),
            source,
        })?;
        let name = {
            let m = kmod_loader::validate(&bytes).map_err(|source| UserModuleError::Invalid {
                path: path.clone(),
                source: Box::new(source),
            })?;
            m.name().to_owned()
        };
        if name.is_empty() {
            return Err(UserModuleError::NoName(path.clone()));
        }
        let stem = kmod_tools::ko::module_name(path).unwrap_or_default();
        if stem != name {
            return Err(UserModuleError::NameMismatch {
                path: path.clone(),
                stem,
                name,
            });
        }
        if base.find(&format!("{MODULE_DIR}{name}.ko")).is_some() {
            return Err(UserModuleError::ShadowsBuiltIn {
                path: path.clone(),
                name,
            });
        }
        if let Some(first) = modules.iter().find(|m| m.name == name) {
            return Err(UserModuleError::Duplicate {
                first: first.path.clone(),
                second: path.clone(),
                name,
            });
        }
        let has_exit = ModuleFile::parse(path, &bytes)?
            .defined_globals()
            .any(|g| g == "cleanup_module");
        modules.push(UserModule {
            name,
            path: path.clone(),
            bytes,
            depends: Vec::new(),
            has_exit,
        });
    }

    // Every module of the new archive, sorted by name as the build sorts the built-in set.
    let mut all: Vec<(String, Vec<u8>, Option<usize>)> = base
        .files()
        .filter_map(|f| {
            let file = f.name.strip_prefix(MODULE_DIR)?;
            let name = file.strip_suffix(".ko")?;
            (!name.contains('/')).then(|| (name.to_owned(), f.data.to_vec(), None))
        })
        .collect();
    for (i, m) in modules.iter().enumerate() {
        all.push((m.name.clone(), m.bytes.clone(), Some(i)));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::with_capacity(all.len());
    for (name, bytes, user) in &all {
        let path = match user {
            Some(i) => modules[*i].path.clone(),
            None => PathBuf::from(format!("{MODULE_DIR}{name}.ko")),
        };
        entries.push(depmod::Entry {
            relpath: format!("{name}.ko"),
            module: ModuleFile::parse(&path, bytes)?,
        });
    }
    let graph = depmod::compute(&entries, &KernelExports::Default)?;
    // Built-in modules were checked when they were built: a missing symbol is a user's.
    for m in &modules {
        let relpath = format!("{}.ko", m.name);
        let symbols: Vec<String> = graph
            .missing
            .iter()
            .filter(|(_, users)| users.contains(&relpath.as_str()))
            .map(|(symbol, _)| symbol.to_string())
            .collect();
        if !symbols.is_empty() {
            return Err(UserModuleError::UnknownSymbol {
                path: m.path.clone(),
                symbols,
            });
        }
    }
    for m in &mut modules {
        let index = graph
            .index_of(&format!("{}.ko", m.name))
            .expect("every user module is in the graph");
        m.depends = graph.load_order(index)[..graph.all[index].len()]
            .iter()
            .map(|p| p.trim_end_matches(".ko").to_owned())
            .collect();
    }

    // The archive: the base's files in order with the new modules.dep, then the user modules.
    let mut files: Vec<(String, Vec<u8>)> = base
        .files()
        .filter(|f| f.name != MODULES_DEP)
        .map(|f| (f.name.to_owned(), f.data.to_vec()))
        .collect();
    files.push((MODULES_DEP.to_owned(), graph.modules_dep().into_bytes()));
    for m in &modules {
        files.push((format!("{MODULE_DIR}{}.ko", m.name), m.bytes.clone()));
    }
    let archive = write_newc(&files).map_err(UserModuleError::Write)?;
    Ok(Prepared {
        modules,
        archive: Cow::Owned(archive),
    })
}

/// A cpio "newc" archive of `files` (fixed mtime, as the build writes it).
fn write_newc(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let inputs = files.iter().enumerate().map(|(i, (name, data))| {
        let builder = cpio::newc::Builder::new(name)
            .ino(i as u32 + 1)
            .mode(0o100644)
            .nlink(1)
            .mtime(0);
        (builder, std::io::Cursor::new(data.as_slice()))
    });
    cpio::write_cpio(inputs, &mut out)?;
    Ok(out)
}

/// `path`'s display form relative to the current directory when it is inside it.
pub fn display(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> &'static [u8] {
        crate::artifacts::INITRAMFS
    }

    #[test]
    fn without_user_modules_the_archive_is_unchanged() {
        assert_eq!(prepare(base(), &[]).unwrap().archive, base());
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kmodlab-usermods-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The built-in hello module renamed to `hellp` (same length, so only `.modinfo`'s
    /// `name=` changes).
    fn renamed_hello(dir: &Path) -> PathBuf {
        let a = Archive::new(base()).unwrap();
        let mut bytes = a.find("lib/modules/hello.ko").unwrap().data.to_vec();
        let at = bytes
            .windows(11)
            .position(|w| w == b"name=hello\0")
            .expect("hello.ko has name=hello");
        bytes[at..at + 10].copy_from_slice(b"name=hellp");
        let path = dir.join("hellp.ko");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_user_module_joins_the_archive_and_modules_dep() {
        let dir = scratch("join");
        let path = renamed_hello(&dir);
        let p = prepare(base(), std::slice::from_ref(&path)).unwrap();
        assert_eq!(p.modules.len(), 1);
        assert_eq!(p.modules[0].name, "hellp");
        assert!(p.modules[0].depends.is_empty());
        assert!(p.modules[0].has_exit);
        let old = Archive::new(base()).unwrap();
        let new = Archive::new(&p.archive).unwrap();
        let dep = |a: &Archive<'_>| {
            String::from_utf8(a.find(MODULES_DEP).unwrap().data.to_vec()).unwrap()
        };
        // The built-in lines as the build wrote them, and one more, in name order.
        let mut expected: Vec<String> = dep(&old).lines().map(String::from).collect();
        expected.push("hellp.ko:".into());
        expected.sort();
        let mut got: Vec<String> = dep(&new).lines().map(String::from).collect();
        got.sort();
        assert_eq!(got, expected);
        assert!(new.find("lib/modules/hellp.ko").is_some());
        assert_eq!(new.files().count(), old.files().count() + 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_module_named_like_a_built_in_is_refused() {
        let dir = scratch("shadow");
        let a = Archive::new(base()).unwrap();
        let copy = dir.join("hello.ko");
        std::fs::write(&copy, a.find("lib/modules/hello.ko").unwrap().data).unwrap();
        let err = prepare(base(), std::slice::from_ref(&copy)).unwrap_err();
        assert!(
            matches!(err, UserModuleError::ShadowsBuiltIn { .. }),
            "{err}"
        );
        // Under another file name, the name check speaks first.
        let other = dir.join("other.ko");
        std::fs::copy(&copy, &other).unwrap();
        let err = prepare(base(), std::slice::from_ref(&other)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: the file is called other.ko but its .modinfo says name=hello; rename the \
                 file or the module so that they agree",
                other.display()
            )
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let err = prepare(base(), &[PathBuf::from("/nonexistent/x.ko")]).unwrap_err();
        assert!(matches!(err, UserModuleError::Read { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("/nonexistent/x.ko: cannot read it"),
            "{err}"
        );
    }

    #[test]
    fn a_non_elf_file_is_refused_by_the_loader() {
        let dir = scratch("notelf");
        let path = dir.join("notelf.ko");
        std::fs::write(&path, b"this is not an ELF file").unwrap();
        let err = prepare(base(), std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(err, UserModuleError::Invalid { .. }), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
