//! Building the modules under `modules/` into `.ko` files (placeholder; see issue 3).

use std::path::PathBuf;

use crate::{BuildDirs, Result, archive::Entry};

/// One built module.
#[derive(Debug, Clone)]
pub struct BuiltModule {
    /// Module name (file stem).
    pub name: String,
    /// The `.ko` file.
    pub path: PathBuf,
}

/// The built module set.
#[derive(Debug, Clone, Default)]
pub struct BuiltModules {
    /// Every module, in build order.
    pub modules: Vec<BuiltModule>,
    /// The generated `modules.dep`, if any.
    pub modules_dep: Option<PathBuf>,
}

impl BuiltModules {
    /// The archive entries for the modules (`lib/modules/NAME.ko`, `lib/modules/modules.dep`).
    pub fn archive_entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for m in &self.modules {
            entries.push(Entry::from_file(
                format!("lib/modules/{}.ko", m.name),
                &m.path,
            )?);
        }
        if let Some(dep) = &self.modules_dep {
            entries.push(Entry::from_file("lib/modules/modules.dep".into(), dep)?);
        }
        Ok(entries)
    }
}

/// Builds every module (placeholder: none yet).
pub fn build_modules(_dirs: &BuildDirs) -> Result<BuiltModules> {
    Ok(BuiltModules::default())
}
