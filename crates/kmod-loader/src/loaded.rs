//! What the kernel keeps about a module after loading: owned, so that the file bytes can be
//! freed once the module is in place.

use alloc::string::String;
use alloc::vec::Vec;

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::counts::LoadCounts;
use crate::layout::{Layout, SectionPlacement};
use crate::relocate::{RegionBases, SymbolAddresses};
use crate::resolve::{ProviderId, Resolution, Source};
use crate::validate::{Binding, Definition, Module, Permission, RegionKind};

/// Where a defined symbol ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolLocation {
    /// Its region.
    pub region: RegionKind,
    /// Offset in the region (so callers can bounds-check against the region).
    pub offset: u64,
    /// Final virtual address.
    pub address: u64,
    /// `st_size`.
    pub size: u64,
    /// Permission of the pages it lives in.
    pub permission: Permission,
}

/// A loaded section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedSection {
    /// Section index in the file.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Where it went.
    pub placement: SectionPlacement,
    /// Final virtual address.
    pub address: u64,
}

/// An exported symbol and its final address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedSymbol {
    /// The exported name.
    pub name: String,
    /// Final virtual address.
    pub address: u64,
}

/// One dependency edge: `symbol` came from `provider`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The undefined symbol.
    pub symbol: String,
    /// Who supplied it.
    pub provider: ProviderId,
}

/// A loaded module, as the kernel needs it after loading.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The module's name (`.modinfo` `name=`, possibly empty).
    pub name: String,
    /// Region base addresses.
    pub bases: RegionBases,
    /// Region sizes: core, init.
    pub sizes: (u64, u64),
    /// Loaded sections in section order.
    pub sections: Vec<PlacedSection>,
    /// Exports (`__ksymtab_NAME`) with final addresses.
    pub exports: Vec<ExportedSymbol>,
    /// `.modinfo` key/value pairs in file order.
    pub modinfo: Vec<(String, String)>,
    /// Distinct providers used, sorted.
    pub providers: Vec<ProviderId>,
    /// Every resolved undefined symbol and its provider.
    pub dependencies: Vec<Dependency>,
    /// Counts of all steps.
    pub counts: LoadCounts,
    symbols: SymbolIndex,
}

/// The defined non-local symbols by name: names in one string and locations in one hash
/// table, three allocations however many symbols a module has (a kernel heap pays for each
/// allocation, and a large module defines thousands of symbols).
#[derive(Clone, Debug, Default)]
struct SymbolIndex {
    names: String,
    entries: HashTable<(u64, u32, u32, SymbolLocation)>,
    hasher: DefaultHashBuilder,
}

impl SymbolIndex {
    fn name(&self, start: u32, len: u32) -> &[u8] {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        self.names.as_bytes().get(start..end).unwrap_or(&[])
    }

    fn get(&self, name: &str) -> Option<SymbolLocation> {
        let hash = self.hasher.hash_one(name.as_bytes());
        self.entries
            .find(hash, |&(h, start, len, _)| {
                h == hash && self.name(start, len) == name.as_bytes()
            })
            .map(|&(_, _, _, location)| location)
    }

    fn insert(&mut self, name: &str, location: SymbolLocation) {
        if self.get(name).is_some() {
            return;
        }
        let (Ok(start), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            return;
        };
        self.names.push_str(name);
        let hash = self.hasher.hash_one(name.as_bytes());
        self.entries
            .insert_unique(hash, (hash, start, len, location), |&(h, ..)| h);
    }
}

impl Loaded {
    /// Collects what the kernel keeps, for regions placed at `bases`.
    pub fn new(
        module: &Module<'_>,
        layout: &Layout,
        resolution: &Resolution,
        bases: RegionBases,
        counts: LoadCounts,
    ) -> Self {
        let addresses = SymbolAddresses::new(module, layout, resolution, bases);
        let mut symbols = SymbolIndex::default();
        for (i, sym) in module.symbol_entries().enumerate() {
            if sym.binding == Binding::Local || sym.st_type == object::elf::STT_SECTION.0 {
                continue;
            }
            let Definition::Section(section) = sym.definition else {
                continue;
            };
            let Ok(index) = u32::try_from(i) else {
                continue;
            };
            // A name that is not UTF-8 cannot be asked for by name: it is not kept.
            let Ok(name) = core::str::from_utf8(module.name_bytes(&sym)) else {
                continue;
            };
            // find_symbol applies the global-over-weak rule.
            if name.is_empty() || module.find_symbol(name).map(|s| s.index) != Some(index) {
                continue;
            }
            let Some(placement) = layout.placement(section) else {
                continue;
            };
            let (Some(offset), Some(address)) = (
                placement.offset.checked_add(sym.value),
                addresses.get(index),
            ) else {
                continue;
            };
            symbols.insert(
                name,
                SymbolLocation {
                    region: placement.region,
                    offset,
                    address,
                    size: sym.size,
                    permission: placement.permission,
                },
            );
        }
        let sections = layout
            .placements()
            .filter_map(|(index, placement)| {
                Some(PlacedSection {
                    index,
                    name: String::from(module.section(index)?.name),
                    placement,
                    address: bases.get(placement.region).checked_add(placement.offset)?,
                })
            })
            .collect();
        let exports = module
            .exports()
            .iter()
            .filter_map(|e| {
                Some(ExportedSymbol {
                    name: String::from(e.name),
                    address: addresses.get(e.symbol)?,
                })
            })
            .collect();
        let dependencies = resolution
            .symbols()
            .iter()
            .filter_map(|r| match r.source {
                Source::Provider(provider) => Some(Dependency {
                    symbol: String::from_utf8_lossy(module.symbol(r.symbol)?.name_bytes)
                        .into_owned(),
                    provider,
                }),
                Source::WeakUnresolved | Source::Ignored => None,
            })
            .collect();
        Self {
            name: String::from(module.name()),
            bases,
            sizes: (layout.core.size, layout.init.size),
            sections,
            exports,
            modinfo: module
                .modinfo()
                .map(|(k, v)| (String::from(k), String::from(v)))
                .collect(),
            providers: resolution.providers().to_vec(),
            dependencies,
            counts,
            symbols,
        }
    }

    /// The defined non-local symbol `name` (`init_module`, `cleanup_module`,
    /// `__kmod_param_NAME`, …), if it lives in a loaded section.
    pub fn symbol(&self, name: &str) -> Option<SymbolLocation> {
        self.symbols.get(name)
    }

    /// The first `.modinfo` value for `key`.
    pub fn modinfo_value<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.modinfo_values(key).next()
    }

    /// Every `.modinfo` value for `key` (`parm`, `parmtype` repeat).
    pub fn modinfo_values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.modinfo
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
