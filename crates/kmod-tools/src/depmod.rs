//! `depmod`: module dependencies from undefined symbols vs. exports, in Linux's
//! `modules.dep` format and order (the algorithm of kmod's depmod).
//!
//! `modules.dep` has one line per module, `path: dep dep ...`, listing *every* module it
//! needs, directly or not. As in Linux, a module comes before the modules it depends on:
//! the list is in reverse load order, so a loader (modprobe) loads it from the last entry
//! to the first, then the module itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Result, ToolError};
use crate::ko::{ModuleFile, NameKey, WalkWarning};

/// Symbols every Linux kernel provides without exporting them (kmod's "fake" symbols).
const ALWAYS_PROVIDED: &[&str] = &["__this_module", "_GLOBAL_OFFSET_TABLE_"];

/// Which symbols the kernel itself exports: a symbol no module exports is looked up here.
#[derive(Debug, Clone)]
pub enum KernelExports {
    /// kmodlab's own kernel API ([`kmod_api::KERNEL_API_SYMBOLS`]) for kmodlab modules;
    /// Linux modules' other symbols are taken to come from the kernel unchecked.
    Default,
    /// This list, for every module (from a System.map, Module.symvers or plain list).
    List(HashSet<String>),
    /// No check: every symbol no module exports is taken to come from the kernel.
    Unchecked,
}

impl KernelExports {
    /// Whether `symbol`, needed by `module`, is provided by the kernel, or `None` when this
    /// list does not judge that module. `longest` is the length of the list's longest name:
    /// a longer symbol is not in it, and is not hashed to find that out.
    fn provides(&self, module: &ModuleFile, symbol: &str, longest: usize) -> Option<bool> {
        if ALWAYS_PROVIDED.contains(&symbol) {
            return Some(true);
        }
        match self {
            KernelExports::Default if module.linux => None,
            KernelExports::Default => Some(kmod_api::KERNEL_API_SYMBOLS.contains(&symbol)),
            KernelExports::List(set) => Some(symbol.len() <= longest && set.contains(symbol)),
            KernelExports::Unchecked => None,
        }
    }

    /// Exported symbols from a System.map: the `X` of every `__ksymtab_X` line (as kmod).
    pub fn from_system_map(path: &Path, text: &str) -> Result<KernelExports> {
        let mut set = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(_addr), Some(_kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(ToolError::SymbolList {
                    path: path.to_owned(),
                    line: i + 1,
                    reason: "expected `ADDRESS TYPE NAME`".into(),
                });
            };
            if let Some(sym) = name.strip_prefix("__ksymtab_") {
                set.insert(sym.to_owned());
            }
        }
        if set.is_empty() {
            // Debian ships a one-line stub System.map; checking against it would call every
            // kernel symbol missing.
            return Err(ToolError::SymbolList {
                path: path.to_owned(),
                line: 1,
                reason: "no __ksymtab_ entries (a stub System.map? use the kernel's debug \
                         package's one, or Module.symvers with -E)"
                    .into(),
            });
        }
        Ok(KernelExports::List(set))
    }

    /// Exported symbols from a Module.symvers: those whose module is `vmlinux` (as kmod).
    pub fn from_symvers(path: &Path, text: &str) -> Result<KernelExports> {
        let mut set = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(['\t', ' ']).filter(|f| !f.is_empty()).collect();
            let [_crc, name, module, ..] = fields.as_slice() else {
                return Err(ToolError::SymbolList {
                    path: path.to_owned(),
                    line: i + 1,
                    reason: "expected `CRC SYMBOL MODULE [EXPORT_TYPE [NAMESPACE]]`".into(),
                });
            };
            if *module == "vmlinux" {
                set.insert((*name).to_owned());
            }
        }
        Ok(KernelExports::List(set))
    }

    /// A plain list: one symbol per line; `#` starts a comment.
    pub fn from_plain_list(text: &str) -> KernelExports {
        KernelExports::List(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
}

/// One module given to [`compute`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path as written in `modules.dep` (relative to the module directory, `/`-separated).
    pub relpath: String,
    /// The parsed module ([`ModuleFile::unreadable`] for one that could not be parsed).
    pub module: ModuleFile,
}

/// The result of [`compute`], borrowing names and paths from its entries.
#[derive(Debug, Clone, Default)]
pub struct DepGraph<'e> {
    /// Module paths, in output order.
    pub modules: Vec<&'e str>,
    /// For each module (same index), the indices of its direct dependencies.
    pub direct: Vec<Vec<usize>>,
    /// For each module, every module it needs, in `modules.dep` order (reverse load order).
    pub all: Vec<Vec<usize>>,
    /// Symbols found nowhere, with the modules that need them.
    pub missing: BTreeMap<&'e str, Vec<&'e str>>,
    /// Symbols exported by more than one module: (symbol, the module used, the one ignored).
    pub duplicates: Vec<(&'e str, &'e str, &'e str)>,
}

impl DepGraph<'_> {
    /// The `modules.dep` text.
    pub fn modules_dep(&self) -> String {
        let mut out = String::new();
        for (i, path) in self.modules.iter().enumerate() {
            out.push_str(path);
            out.push(':');
            for &d in &self.all[i] {
                out.push(' ');
                out.push_str(self.modules[d]);
            }
            out.push('\n');
        }
        out
    }

    /// The load order for module `index`: its dependencies, deepest first, then itself.
    pub fn load_order(&self, index: usize) -> Vec<&str> {
        let mut order: Vec<&str> = self.all[index]
            .iter()
            .rev()
            .map(|&d| self.modules[d])
            .collect();
        order.push(self.modules[index]);
        order
    }

    /// Index of the module whose path is `relpath`.
    pub fn index_of(&self, relpath: &str) -> Option<usize> {
        self.modules.iter().position(|m| *m == relpath)
    }
}

/// Computes dependencies of `entries`, which must already be in output order (Linux: the
/// order of `modules.order`; otherwise sorted by path). Fails with [`ToolError::Cycle`] if
/// modules depend on each other in a circle.
///
/// Symbol names are looked up by [`NameKey`], whose hash does not read a whole name, so a
/// module with very long names costs time in proportion to its size.
pub fn compute<'e>(entries: &'e [Entry], kernel: &KernelExports) -> Result<DepGraph<'e>> {
    let n = entries.len();
    // Symbol owner: the first module (in order) exporting it, as kmod keeps the first.
    let mut owner: HashMap<NameKey<'e>, usize> = HashMap::new();
    let mut duplicates = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        for sym in e.module.exports() {
            match owner.get(&NameKey(sym)) {
                Some(&first) if first != i => {
                    duplicates.push((sym, entries[first].relpath.as_str(), e.relpath.as_str()))
                }
                Some(_) => {}
                None => {
                    owner.insert(NameKey(sym), i);
                }
            }
        }
    }
    let longest_kernel_symbol = match kernel {
        KernelExports::List(set) => set.iter().map(String::len).max().unwrap_or(0),
        _ => usize::MAX,
    };

    // Direct dependencies, in the order of the importing module's symbol table.
    let mut direct: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut users = vec![0usize; n];
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        for import in e.module.imports() {
            match owner.get(&NameKey(import.name)) {
                Some(&dep) if dep != i => {
                    if !direct[i].contains(&dep) {
                        direct[i].push(dep);
                        users[dep] += 1;
                    }
                }
                Some(_) => {}
                None => {
                    let provided = kernel.provides(&e.module, import.name, longest_kernel_symbol);
                    if !import.weak && provided == Some(false) {
                        missing.entry(import.name).or_default().push(&e.relpath);
                    }
                }
            }
        }
    }

    // Topological order, modules without users first (kmod's depmod: a LIFO of roots).
    let mut remaining = users.clone();
    let mut roots: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut sort_idx = vec![usize::MAX; n];
    let mut sorted = 0;
    while let Some(src) = roots.pop() {
        sort_idx[src] = sorted;
        sorted += 1;
        for &dst in &direct[src] {
            remaining[dst] -= 1;
            if remaining[dst] == 0 {
                roots.push(dst);
            }
        }
    }
    if sorted < n {
        return Err(ToolError::Cycle {
            cycle: find_cycle(&direct, &remaining, entries),
        });
    }

    let all = (0..n)
        .map(|i| {
            let mut seen = vec![false; n];
            let mut stack = direct[i].clone();
            let mut deps = Vec::new();
            while let Some(d) = stack.pop() {
                if !std::mem::replace(&mut seen[d], true) {
                    deps.push(d);
                    stack.extend(&direct[d]);
                }
            }
            deps.sort_by_key(|&d| sort_idx[d]);
            deps
        })
        .collect();

    Ok(DepGraph {
        modules: entries.iter().map(|e| e.relpath.as_str()).collect(),
        direct,
        all,
        missing,
        duplicates,
    })
}

/// One cycle among the modules Kahn's algorithm could not order (`remaining > 0`), as
/// paths, each depending on the next, the first repeated at the end.
fn find_cycle(direct: &[Vec<usize>], remaining: &[usize], entries: &[Entry]) -> Vec<String> {
    // An unordered module still has a user that was never ordered, and that user is
    // unordered itself; so walking from user to user among unordered modules never gets
    // stuck and must revisit one: the walk from there is a cycle (backwards).
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); direct.len()];
    for (user, deps) in direct.iter().enumerate() {
        for &d in deps {
            users[d].push(user);
        }
    }
    let Some(start) = (0..direct.len()).find(|&i| remaining[i] > 0) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut at = start;
    while let Some(&next) = users[at].iter().find(|&&u| remaining[u] > 0) {
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<String> = path[pos..]
                .iter()
                .rev()
                .map(|&i| entries[i].relpath.clone())
                .collect();
            cycle.insert(0, entries[next].relpath.clone());
            return cycle;
        }
        path.push(next);
        at = next;
    }
    // Unreachable by the argument above; name what was walked rather than panic.
    path.iter().map(|&i| entries[i].relpath.clone()).collect()
}

/// A problem met by [`load_dir`] that does not stop depmod: kmod's depmod reports these and
/// writes `modules.dep` anyway.
#[derive(Debug, thiserror::Error)]
pub enum DepmodWarning {
    /// Walking the directory met an entry it could not use.
    #[error("{0}")]
    Walk(#[from] WalkWarning),
    /// A module file could not be parsed: it is listed without dependencies.
    #[error("{error} (listed in modules.dep without dependencies)")]
    Unreadable {
        /// Why.
        error: ToolError,
    },
    /// Two files have the same module name: only one can be loaded by that name.
    #[error(
        "module {name}: {ignored} ignored, {kept} takes precedence ({reason}); \
         remove one of them"
    )]
    DuplicateModule {
        /// The module name.
        name: String,
        /// The file kept (relative to the directory).
        kept: String,
        /// The file left out.
        ignored: String,
        /// Why `kept` wins.
        reason: &'static str,
    },
    /// `modules.order` exists but could not be read: modules are in path order.
    #[error("{error}; modules are ordered by path instead")]
    ModulesOrder {
        /// Why.
        error: ToolError,
    },
}

/// The modules of a directory, for [`compute`], and what [`load_dir`] warns about.
#[derive(Debug)]
pub struct DirScan {
    /// The modules, in depmod's order.
    pub entries: Vec<Entry>,
    /// Problems that left a file out or unparsed.
    pub warnings: Vec<DepmodWarning>,
}

/// Whether kmod's default search order (`search updates built-in`) prefers `relpath`
/// because it is under `updates/`.
fn in_updates(relpath: &str) -> bool {
    relpath.starts_with("updates/")
}

/// Reads every module under `dir` into entries in Linux depmod's order: `modules.order`
/// first (if `dir` has one), then the rest sorted by path.
///
/// As kmod's depmod: a module that cannot be parsed is listed with a warning (and no
/// dependencies) instead of failing the run; of two files with the same module name the one
/// under `updates/` wins, otherwise the first found (here: first by path), and the other is
/// left out with a warning; symbolic links are followed.
pub fn load_dir(dir: &Path) -> Result<DirScan> {
    let (files, walk_warnings) = crate::ko::find_modules(dir)?;
    let mut warnings: Vec<DepmodWarning> = walk_warnings.into_iter().map(Into::into).collect();

    // Module name -> index in `chosen`.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut chosen: Vec<(String, PathBuf)> = Vec::new();
    for file in files {
        let rel = relpath(dir, &file);
        let name = crate::ko::module_name(&file).unwrap_or_else(|| rel.clone());
        match by_name.get(&name) {
            None => {
                by_name.insert(name, chosen.len());
                chosen.push((rel, file));
            }
            Some(&i) => {
                let (kept, ignored, reason) = if in_updates(&rel) && !in_updates(&chosen[i].0) {
                    let old = std::mem::replace(&mut chosen[i], (rel, file));
                    (chosen[i].0.clone(), old.0, "updates/ comes first")
                } else {
                    (chosen[i].0.clone(), rel, "found first")
                };
                warnings.push(DepmodWarning::DuplicateModule {
                    name,
                    kept,
                    ignored,
                    reason,
                });
            }
        }
    }

    let mut entries = Vec::with_capacity(chosen.len());
    for (relpath, file) in chosen {
        let module = match ModuleFile::open(&file) {
            Ok(module) => module,
            Err(error) => {
                warnings.push(DepmodWarning::Unreadable { error });
                ModuleFile::unreadable(&file)
            }
        };
        entries.push(Entry { relpath, module });
    }

    let order_file = dir.join("modules.order");
    let order = match crate::input::read_list(&order_file) {
        Ok(text) => Some(text),
        Err(ToolError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            warnings.push(DepmodWarning::ModulesOrder { error });
            None
        }
    };
    if let Some(text) = order {
        order_by_modules_order(&mut entries, &text);
    }
    Ok(DirScan { entries, warnings })
}

/// Sorts `entries` as `modules.order` (`text`) lists them, the unlisted ones after, by
/// path. A compressed module matches the `.ko` name modules.order gives; of a line listed
/// twice the last counts, as in kmod.
pub fn order_by_modules_order(entries: &mut [Entry], text: &str) {
    let rank: HashMap<&str, usize> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (l.trim(), i))
        .collect();
    let key = |e: &Entry| {
        let plain = strip_compression(&e.relpath);
        rank.get(plain).copied().unwrap_or(usize::MAX)
    };
    entries.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.relpath.cmp(&b.relpath)));
}

/// Writes `text` to `target` through [`crate::input::write_replacing`]: a temporary file
/// renamed over `target`, so a symbolic link there is replaced (as kmod does), never written
/// through.
pub fn write_replacing(target: &Path, text: &str) -> Result<()> {
    crate::input::write_replacing(target, text.as_bytes())
}

fn strip_compression(path: &str) -> &str {
    path.strip_suffix(".xz")
        .or_else(|| path.strip_suffix(".zst"))
        .unwrap_or(path)
}

/// `file` relative to `dir`, `/`-separated.
pub fn relpath(dir: &Path, file: &Path) -> String {
    let rel: PathBuf = file.strip_prefix(dir).unwrap_or(file).to_owned();
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
