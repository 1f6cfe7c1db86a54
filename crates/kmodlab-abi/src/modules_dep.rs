//! Reading `modules.dep`, the dependency file `depmod` writes (Linux's format): one line per
//! module, `path.ko: dep1.ko dep2.ko …`, where the dependencies are listed so that the last
//! one must be loaded first (modprobe loads the list from the end, then the module).
//! The guest kernel (`request_module`) and the guest shell (`modprobe`) share this reader.

use alloc::vec::Vec;

/// A parsed `modules.dep`, borrowing the file's text.
#[derive(Debug, Clone, Default)]
pub struct ModulesDep<'a> {
    entries: Vec<(&'a str, Vec<&'a str>)>,
}

/// The module name of a path: `kernel/fs/foo-bar.ko` → `foo_bar` (Linux treats `-` and `_`
/// alike in module names).
pub fn module_name(path: &str) -> alloc::string::String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))
        .unwrap_or(file);
    stem.replace('-', "_")
}

impl<'a> ModulesDep<'a> {
    /// Parses the file; lines that are not `path: deps` (blank, comments) are skipped.
    pub fn parse(text: &'a str) -> ModulesDep<'a> {
        let entries = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| {
                let (path, deps) = l.split_once(':')?;
                let path = path.trim();
                (!path.is_empty()).then(|| (path, deps.split_whitespace().collect()))
            })
            .collect();
        ModulesDep { entries }
    }

    /// The path of module `name`, if listed.
    pub fn path_of(&self, name: &str) -> Option<&'a str> {
        let wanted = name.replace('-', "_");
        self.entries
            .iter()
            .find(|(p, _)| module_name(p) == wanted)
            .map(|(p, _)| *p)
    }

    /// Paths to load for module `name`, in load order: its dependencies (the file's list
    /// reversed), then the module itself. `None` if the module is not listed.
    pub fn load_order(&self, name: &str) -> Option<Vec<&'a str>> {
        let path = self.path_of(name)?;
        let (_, deps) = self.entries.iter().find(|(p, _)| *p == path)?;
        let mut order: Vec<&str> = deps.iter().rev().copied().collect();
        order.push(path);
        Some(order)
    }

    /// Every listed module path, in file order.
    pub fn paths(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.entries.iter().map(|(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "hello.ko:\nkvclient.ko: kvstore.ko ramblk.ko crc32.ko\n\
                       kvstore.ko: ramblk.ko crc32.ko\n# comment\n\ncrc32.ko:\nramblk.ko:\n\
                       kernel/net/foo-bar.ko: crc32.ko\n";

    #[test]
    fn load_order_puts_the_deepest_dependency_first() {
        let d = ModulesDep::parse(DEP);
        assert_eq!(
            d.load_order("kvclient").unwrap(),
            ["crc32.ko", "ramblk.ko", "kvstore.ko", "kvclient.ko"]
        );
        assert_eq!(d.load_order("hello").unwrap(), ["hello.ko"]);
        assert!(d.load_order("missing").is_none());
    }

    #[test]
    fn names_ignore_directories_and_dashes() {
        let d = ModulesDep::parse(DEP);
        assert_eq!(d.path_of("foo_bar"), Some("kernel/net/foo-bar.ko"));
        assert_eq!(d.path_of("foo-bar"), Some("kernel/net/foo-bar.ko"));
        assert_eq!(module_name("a/b/x-y.ko.xz"), "x_y");
        assert_eq!(d.paths().count(), 6);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let d = ModulesDep::parse("no colon here\n: empty path\nok.ko:\n\u{0}\u{ff}");
        assert_eq!(d.paths().collect::<Vec<_>>(), ["ok.ko"]);
    }
}
