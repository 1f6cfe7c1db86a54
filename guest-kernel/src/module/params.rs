//! Module parameters in the kernel: [`kmodlab_abi::params`] parses and type-checks
//! `key=value …` against the module's `.modinfo`; this writes the values into the module's
//! storage (`__kmod_param_NAME`, ABI.md) before its init runs.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kmod_loader::{Loaded, Permission, RegionKind};
pub use kmodlab_abi::params::Value;

use super::ModError;

/// Parses `params` for module `module` (see [`kmodlab_abi::params::parse`]).
pub fn parse<'a>(
    module: &str,
    modinfo: impl Iterator<Item = (&'a str, &'a str)>,
    params: &str,
) -> Result<Vec<(String, Value)>, ModError> {
    kmodlab_abi::params::parse(modinfo, params).map_err(|e| ModError::Param {
        module: module.to_string(),
        error: e,
    })
}

/// Writes parsed values into the module's core region (`core` is its bytes, writable at this
/// point of the load), checking that each parameter's storage lies wholly inside the
/// writable part of core. `charp` values are copied into kernel memory the module keeps
/// (`strings`) and the storage points at the copy.
pub fn apply(
    module: &str,
    loaded: &Loaded,
    values: &[(String, Value)],
    core: &mut [u8],
    strings: &mut Vec<Box<[u8]>>,
) -> Result<(), ModError> {
    for (name, value) in values {
        let bad = |why| ModError::Param {
            module: module.to_string(),
            error: kmodlab_abi::params::ParamError::BadValue {
                param: name.clone(),
                why,
            },
        };
        let symbol = alloc::format!("__kmod_param_{name}");
        let loc = loaded
            .symbol(&symbol)
            .ok_or_else(|| bad("the module declares it but has no storage for it"))?;
        if loc.region != RegionKind::Core || loc.permission != Permission::ReadWrite {
            return Err(bad("its storage is not in the module's writable data"));
        }
        let bytes: Vec<u8> = match value {
            Value::Int(_) | Value::Bool(_) => value.storage_bytes().unwrap_or_default(),
            Value::Str(s) => {
                let copy: Box<[u8]> = s.as_bytes().into();
                let mut b = (copy.as_ptr() as u64).to_le_bytes().to_vec();
                b.extend_from_slice(&(copy.len() as u64).to_le_bytes());
                strings.push(copy);
                b
            }
        };
        let start = usize::try_from(loc.offset).map_err(|_| bad("storage offset overflows"))?;
        let dst = start
            .checked_add(bytes.len())
            .and_then(|end| core.get_mut(start..end))
            .ok_or_else(|| bad("its storage lies outside the module"))?;
        dst.copy_from_slice(&bytes);
    }
    Ok(())
}
