//! Module parameters in a module server: [`kmodlab_abi::params`] parses and type-checks them
//! (as in the monolithic kernel); this writes the values into the module's core region
//! image before the manager copies it into the server, with the monolithic kernel's checks
//! and messages. A `charp` value is copied into the server's parameter-string area (read-only,
//! after the core region) and the storage points at that copy.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kmod_loader::{Loaded, Permission, RegionKind};
use kmodlab_abi::params::{ParamError, Value};

use crate::error::ModError;

/// Bytes the `charp` values of `values` take in the parameter-string area.
pub fn strings_size(values: &[(String, Value)]) -> u64 {
    values
        .iter()
        .map(|(_, v)| match v {
            Value::Str(s) => s.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Writes `values` into `core` (the core region's bytes), placing `charp` strings in
/// `strings` (the parameter-string area's bytes, at `strings_base` in the server).
pub fn apply(
    module: &str,
    loaded: &Loaded,
    values: &[(String, Value)],
    core: &mut [u8],
    strings: &mut Vec<u8>,
    strings_base: u64,
) -> Result<(), ModError> {
    for (name, value) in values {
        let bad = |why| ModError::Param {
            module: module.to_string(),
            error: ParamError::BadValue {
                param: name.clone(),
                why,
            },
        };
        let symbol = format!("__kmod_param_{name}");
        let loc = loaded
            .symbol(&symbol)
            .ok_or_else(|| bad("the module declares it but has no storage for it"))?;
        if loc.region != RegionKind::Core || loc.permission != Permission::ReadWrite {
            return Err(bad("its storage is not in the module's writable data"));
        }
        let bytes: Vec<u8> = match value {
            Value::Int(_) | Value::Bool(_) => value.storage_bytes().unwrap_or_default(),
            Value::Str(s) => {
                let at = strings_base + strings.len() as u64;
                strings.extend_from_slice(s.as_bytes());
                let mut b = at.to_le_bytes().to_vec();
                b.extend_from_slice(&(s.len() as u64).to_le_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use kmod_loader::{FnProvider, ProvidedSymbol, ProviderId, RegionMemory, Regions};

    const PARAMS_KO: &[u8] = include_bytes!("../../kmod-tools/tests/fixtures/kmodlab/params.ko");

    /// Loads the params module fixture at `core_base` against a stand-in kernel API.
    fn load(core: &mut Vec<u8>, init: &mut Vec<u8>, core_base: u64) -> Loaded {
        let kernel = FnProvider(|_: &str| {
            Some(ProvidedSymbol {
                address: 0x1000_0000,
                provider: ProviderId(0),
            })
        });
        let prepared = kmod_loader::prepare(PARAMS_KO, &kernel).unwrap();
        core.resize(prepared.layout.core.size as usize, 0);
        init.resize(prepared.layout.init.size as usize, 0);
        prepared
            .finish(Regions {
                core: RegionMemory {
                    base: core_base,
                    bytes: core,
                },
                init: RegionMemory {
                    base: core_base + 0x10_0000,
                    bytes: init,
                },
            })
            .unwrap()
    }

    #[test]
    fn values_land_in_the_storage_and_strings_in_the_string_area() {
        let (mut core, mut init) = (Vec::new(), Vec::new());
        let loaded = load(&mut core, &mut init, 0x4000_0000);
        let modinfo: Vec<(&str, &str)> = loaded
            .modinfo
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let values = kmodlab_abi::params::parse(
            modinfo.into_iter(),
            "count=5 verbose greeting=\"hi there\"",
        )
        .unwrap();
        assert_eq!(strings_size(&values), 8);
        let mut strings = Vec::new();
        apply(
            "params",
            &loaded,
            &values,
            &mut core,
            &mut strings,
            0x4000_8000,
        )
        .unwrap();
        assert_eq!(strings, b"hi there");
        let at = |name: &str| loaded.symbol(name).unwrap().offset as usize;
        let count = at("__kmod_param_count");
        assert_eq!(core[count..count + 8], 5i64.to_le_bytes());
        assert_eq!(core[at("__kmod_param_verbose")], 1);
        let greeting = at("__kmod_param_greeting");
        assert_eq!(core[greeting..greeting + 8], 0x4000_8000u64.to_le_bytes());
        assert_eq!(core[greeting + 8..greeting + 16], 8u64.to_le_bytes());
    }

    #[test]
    fn storage_outside_the_module_is_refused_with_the_kernels_message() {
        let (mut core, mut init) = (Vec::new(), Vec::new());
        let loaded = load(&mut core, &mut init, 0x4000_0000);
        let values = [(String::from("count"), Value::Int(1))];
        let mut strings = Vec::new();
        // A core image cut short: the storage is past its end.
        let e = apply("params", &loaded, &values, &mut core[..8], &mut strings, 0).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "params: invalid value for parameter 'count': its storage lies outside the module"
        );
        let values = [(String::from("nosuch"), Value::Int(1))];
        let e = apply("params", &loaded, &values, &mut core, &mut strings, 0).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "params: invalid value for parameter 'nosuch': the module declares it but has no \
             storage for it"
        );
    }
}
