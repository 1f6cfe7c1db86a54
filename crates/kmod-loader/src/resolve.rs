//! Step 3, **resolve**: give every undefined symbol an address from a [`SymbolProvider`], and
//! record who provided it (the module's dependency edges).
//!
//! The loader does not know where symbols come from: the caller supplies a provider, usually
//! an [`ExportTable`] holding the kernel's API and the exports of modules already loaded,
//! each export tagged with the [`ProviderId`] of whoever exports it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hashbrown::HashMap;

use crate::counts::ResolveCounts;
use crate::error::Error;
use crate::validate::{Binding, IGNORED_UNDEFINED, Module};

/// Who provides a symbol: opaque to the loader (for example 0 for the kernel and a module id
/// for each loaded module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub u64);

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A symbol's address and who provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvidedSymbol {
    /// Final virtual address.
    pub address: u64,
    /// Who provides it.
    pub provider: ProviderId,
}

/// Something that can resolve symbol names: the kernel's export table, loaded modules' exports.
pub trait SymbolProvider {
    /// The symbol named `name`, if this provider has it.
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol>;
}

impl<P: SymbolProvider + ?Sized> SymbolProvider for &P {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        (**self).lookup(name)
    }
}

/// Tries `.0`, then `.1`.
impl<A: SymbolProvider, B: SymbolProvider> SymbolProvider for (A, B) {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        self.0.lookup(name).or_else(|| self.1.lookup(name))
    }
}

/// Tries each provider in order.
impl<P: SymbolProvider> SymbolProvider for [P] {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        self.iter().find_map(|p| p.lookup(name))
    }
}

/// A provider backed by a function (stand-ins, tests).
pub struct FnProvider<F>(pub F);

impl<F: Fn(&str) -> Option<ProvidedSymbol>> SymbolProvider for FnProvider<F> {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        (self.0)(name)
    }
}

/// A hashed table of exported symbols, from any number of providers.
#[derive(Clone, Debug, Default)]
pub struct ExportTable {
    symbols: HashMap<String, ProvidedSymbol>,
}

impl ExportTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table with room for `capacity` symbols.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            symbols: HashMap::with_capacity(capacity),
        }
    }

    /// Adds an export. A name can be exported once: a second export is an error, as in Linux.
    pub fn insert(&mut self, name: &str, address: u64, provider: ProviderId) -> Result<(), Error> {
        if let Some(existing) = self.symbols.get(name) {
            return Err(Error::DuplicateExport {
                symbol: String::from(name),
                existing: existing.provider,
                new: provider,
            });
        }
        self.symbols
            .insert(String::from(name), ProvidedSymbol { address, provider });
        Ok(())
    }

    /// Adds all of `exports` for `provider`, or none of them if one is already exported (or
    /// appears twice in `exports`).
    pub fn insert_all<'a>(
        &mut self,
        exports: impl IntoIterator<Item = (&'a str, u64)> + Clone,
        provider: ProviderId,
    ) -> Result<(), Error> {
        let mut seen = hashbrown::HashSet::new();
        for (name, _) in exports.clone() {
            let existing = self.symbols.get(name).map(|s| s.provider);
            if existing.is_some() || !seen.insert(name) {
                return Err(Error::DuplicateExport {
                    symbol: String::from(name),
                    existing: existing.unwrap_or(provider),
                    new: provider,
                });
            }
        }
        for (name, address) in exports {
            self.insert(name, address, provider)?;
        }
        Ok(())
    }

    /// Removes every export of `provider` (when it is unloaded); returns how many.
    pub fn remove_provider(&mut self, provider: ProviderId) -> usize {
        let before = self.symbols.len();
        self.symbols.retain(|_, s| s.provider != provider);
        before.saturating_sub(self.symbols.len())
    }

    /// The export named `name`.
    pub fn get(&self, name: &str) -> Option<ProvidedSymbol> {
        self.symbols.get(name).copied()
    }

    /// Number of exports.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// All exports, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ProvidedSymbol)> {
        self.symbols.iter().map(|(name, s)| (name.as_str(), *s))
    }
}

impl SymbolProvider for ExportTable {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        self.get(name)
    }
}

/// How an undefined symbol was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A provider supplied it.
    Provider(ProviderId),
    /// Weak and unknown: its address is 0.
    WeakUnresolved,
    /// `_GLOBAL_OFFSET_TABLE_`, unknown and tolerated as Linux does; it has no address, and a
    /// relocation that uses it is an error.
    Ignored,
}

/// One undefined symbol after resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedSymbol {
    /// Symbol index in the module.
    pub symbol: u32,
    /// Address (0 unless a provider supplied it).
    pub address: u64,
    /// Where it came from.
    pub source: Source,
}

/// Result of [`resolve`].
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    symbols: Vec<ResolvedSymbol>,
    providers: Vec<ProviderId>,
    counts: ResolveCounts,
}

impl Resolution {
    /// Every undefined symbol, in symbol table order.
    pub fn symbols(&self) -> &[ResolvedSymbol] {
        &self.symbols
    }

    /// The distinct providers the module uses, sorted: its dependencies.
    pub fn providers(&self) -> &[ProviderId] {
        &self.providers
    }

    /// What resolution counted.
    pub fn counts(&self) -> &ResolveCounts {
        &self.counts
    }
}

/// Resolves every undefined symbol of `module` through `provider`.
///
/// An unknown symbol is an error naming it and the module, unless it is weak (address 0) or
/// `_GLOBAL_OFFSET_TABLE_` (which old GNU as emits unreferenced; Linux ignores it too). This
/// is where undefined names are read as text, so a name that is not UTF-8 is refused here.
pub fn resolve<P: SymbolProvider + ?Sized>(
    module: &Module<'_>,
    provider: &P,
) -> Result<Resolution, Error> {
    let mut resolution = Resolution::default();
    resolve_into(module, provider, &mut resolution)?;
    Ok(resolution)
}

/// [`resolve`], into `resolution`'s memory (whatever it held is replaced).
pub(crate) fn resolve_into<P: SymbolProvider + ?Sized>(
    module: &Module<'_>,
    provider: &P,
    resolution: &mut Resolution,
) -> Result<(), Error> {
    resolution.symbols.clear();
    resolution.providers.clear();
    resolution.counts = ResolveCounts::default();
    for &index in module.undefined_symbols() {
        let Some(sym) = module.symbol_entry(index) else {
            continue;
        };
        let name =
            core::str::from_utf8(module.name_bytes(sym)).map_err(|_| Error::BadSymbolName {
                index,
                offset: u64::from(sym.st_name),
            })?;
        let resolved = match provider.lookup(name) {
            Some(found) => {
                resolution.counts.resolved = resolution.counts.resolved.saturating_add(1);
                // Most symbols come from the provider of the previous one (the kernel):
                // keep the list short before sorting it.
                if resolution.providers.last() != Some(&found.provider) {
                    resolution.providers.push(found.provider);
                }
                ResolvedSymbol {
                    symbol: index,
                    address: found.address,
                    source: Source::Provider(found.provider),
                }
            }
            None if sym.binding == Binding::Weak => {
                resolution.counts.weak_unresolved =
                    resolution.counts.weak_unresolved.saturating_add(1);
                ResolvedSymbol {
                    symbol: index,
                    address: 0,
                    source: Source::WeakUnresolved,
                }
            }
            None if name == IGNORED_UNDEFINED => {
                resolution.counts.ignored = resolution.counts.ignored.saturating_add(1);
                ResolvedSymbol {
                    symbol: index,
                    address: 0,
                    source: Source::Ignored,
                }
            }
            None => {
                return Err(Error::UnknownSymbol {
                    module: String::from(module.display_name()),
                    symbol: String::from(name),
                });
            }
        };
        resolution.symbols.push(resolved);
    }
    resolution.counts.undefined = resolution.symbols.len();
    resolution.providers.sort_unstable();
    resolution.providers.dedup();
    resolution.counts.providers = resolution.providers.len();
    Ok(())
}
