//! Host-side module tools (placeholder; see issue 3): `modinfo`, `depmod`, `objstat`.

/// Command-line entry points called by the `kmodlab` binary.
pub mod cli {
    use std::path::PathBuf;
    use std::process::ExitCode;

    /// A failure of one of the tools.
    #[derive(Debug, thiserror::Error)]
    pub enum ToolError {
        /// Not built yet.
        #[error("{0} is not implemented yet")]
        NotImplemented(&'static str),
    }

    /// `kmodlab modinfo`.
    #[derive(Debug, clap::Args)]
    pub struct ModinfoArgs {
        /// Module files (.ko).
        pub files: Vec<PathBuf>,
    }

    /// `kmodlab depmod`.
    #[derive(Debug, clap::Args)]
    pub struct DepmodArgs {
        /// Directory holding the modules.
        pub dir: Option<PathBuf>,
    }

    /// `kmodlab objstat`.
    #[derive(Debug, clap::Args)]
    pub struct ObjstatArgs {
        /// Module files (.ko).
        pub files: Vec<PathBuf>,
    }

    /// Runs `modinfo`.
    pub fn modinfo(_args: &ModinfoArgs) -> Result<ExitCode, ToolError> {
        Err(ToolError::NotImplemented("modinfo"))
    }

    /// Runs `depmod`.
    pub fn depmod(_args: &DepmodArgs) -> Result<ExitCode, ToolError> {
        Err(ToolError::NotImplemented("depmod"))
    }

    /// Runs `objstat`.
    pub fn objstat(_args: &ObjstatArgs) -> Result<ExitCode, ToolError> {
        Err(ToolError::NotImplemented("objstat"))
    }
}
