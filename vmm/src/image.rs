//! What is in a kernel image: the size of its privileged code and which components it comes
//! from, read from the ELF's section headers and symbol table (the guest kernels keep their
//! symbols). This is how kmodlab shows that the microkernel's privileged code contains no
//! module loader, module list, symbol table or `.modinfo` parsing.

use std::collections::BTreeMap;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use serde::Serialize;

/// Why an image could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not an ELF file `object` can read.
    #[error("the kernel image is not a readable ELF file: {0}")]
    Elf(#[from] object::Error),
    /// No `.text` section.
    #[error("the kernel image has no .text section")]
    NoText,
}

/// Components of the kernel, by the Rust path their functions live under. The first match
/// wins, so more specific prefixes come first.
pub const COMPONENTS: &[(&str, &[&str])] = &[
    ("module loader (kmod-loader)", &["kmod_loader::"]),
    ("module subsystem", &["kmodlab_kernel::module::"]),
    (
        ".modinfo, parameters, modules.dep",
        &[
            "kmodlab_abi::modinfo",
            "kmodlab_abi::params",
            "kmodlab_abi::modules_dep",
        ],
    ),
    // The errno table is kmod-api's too, but every part of the system shares it (issue 10,
    // item 11): it says nothing about where the module subsystem runs.
    ("errno table (kmod_api::errno)", &["kmod_api::errno"]),
    ("module API (kmod-api)", &["kmod_api::"]),
    (
        "microkernel backend (client of the module manager)",
        &["kmodlab_kernel::manager::"],
    ),
    (
        "tasks and IPC",
        &[
            "kmodlab_kernel::task::",
            "kmodlab_kernel::ipc::",
            "kmodlab_ipc::",
        ],
    ),
];

/// Which component a demangled symbol belongs to, if any of [`COMPONENTS`].
pub fn component_of(demangled: &str) -> Option<&'static str> {
    // Generic instantiations read `<alloc::vec::Vec<kmod_loader::X> as ...>`: look at every
    // path in the name, not only its start.
    COMPONENTS
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| demangled.contains(p)))
        .map(|(name, _)| *name)
}

/// A function symbol of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSymbol {
    /// Demangled name, without the hash.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// The privileged code of a kernel image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TextReport {
    /// Bytes of `.text`.
    pub text_bytes: u64,
    /// Bytes of functions per component of [`COMPONENTS`] (components with none are listed
    /// with 0); the rest is "other".
    pub by_component: BTreeMap<&'static str, u64>,
}

/// Every function symbol of `elf`.
pub fn functions(elf: &[u8]) -> Result<Vec<FunctionSymbol>, ImageError> {
    let file = object::File::parse(elf)?;
    Ok(file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text)
        .filter_map(|s| {
            let name = s.name().ok()?;
            Some(FunctionSymbol {
                name: format!("{:#}", rustc_demangle::demangle(name)),
                size: s.size(),
            })
        })
        .collect())
}

/// The size of `elf`'s privileged code and what it is made of.
pub fn text_report(elf: &[u8]) -> Result<TextReport, ImageError> {
    let file = object::File::parse(elf)?;
    let text = file
        .section_by_name(".text")
        .ok_or(ImageError::NoText)?
        .size();
    let mut by_component: BTreeMap<&'static str, u64> =
        COMPONENTS.iter().map(|(n, _)| (*n, 0)).collect();
    let mut other = 0;
    for f in functions(elf)? {
        match component_of(&f.name) {
            Some(c) => *by_component.entry(c).or_insert(0) += f.size,
            None => other += f.size,
        }
    }
    by_component.insert("other", other);
    Ok(TextReport {
        text_bytes: text,
        by_component,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_match_paths_anywhere_in_a_name() {
        assert_eq!(
            component_of("kmod_loader::relocate::relocate"),
            Some("module loader (kmod-loader)")
        );
        assert_eq!(
            component_of(
                "<alloc::vec::Vec<kmod_loader::loaded::ExportedSymbol> as core::ops::Drop>::drop"
            ),
            Some("module loader (kmod-loader)")
        );
        assert_eq!(
            component_of("kmodlab_kernel::module::load::load_coming"),
            Some("module subsystem")
        );
        assert_eq!(
            component_of("kmodlab_kernel::ipc::call"),
            Some("tasks and IPC")
        );
        assert_eq!(component_of("kmodlab_kernel::boot::kmain"), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            text_report(b"not an elf"),
            Err(ImageError::Elf(_))
        ));
    }
}
