//! Step 3, **resolve**: give every undefined symbol an address from a [`SymbolProvider`], and
//! record who provided it (the module's dependency edges).
//!
//! The loader does not know where symbols come from: the caller supplies a provider, usually
//! an [`ExportTable`] holding the kernel's API and the exports of modules already loaded,
//! each export tagged with the [`ProviderId`] of whoever exports it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

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

    /// The symbol whose name is the bytes `name`. [`resolve()`] asks this way, so that a
    /// name is never decoded just to be compared; the default decodes it and asks
    /// [`SymbolProvider::lookup`] (a name that is not UTF-8 is then not found).
    fn lookup_bytes(&self, name: &[u8]) -> Option<ProvidedSymbol> {
        core::str::from_utf8(name)
            .ok()
            .and_then(|name| self.lookup(name))
    }
}

impl<P: SymbolProvider + ?Sized> SymbolProvider for &P {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        (**self).lookup(name)
    }

    fn lookup_bytes(&self, name: &[u8]) -> Option<ProvidedSymbol> {
        (**self).lookup_bytes(name)
    }
}

/// Tries `.0`, then `.1`.
impl<A: SymbolProvider, B: SymbolProvider> SymbolProvider for (A, B) {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        self.0.lookup(name).or_else(|| self.1.lookup(name))
    }

    fn lookup_bytes(&self, name: &[u8]) -> Option<ProvidedSymbol> {
        self.0
            .lookup_bytes(name)
            .or_else(|| self.1.lookup_bytes(name))
    }
}

/// Tries each provider in order.
impl<P: SymbolProvider> SymbolProvider for [P] {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        self.iter().find_map(|p| p.lookup(name))
    }

    fn lookup_bytes(&self, name: &[u8]) -> Option<ProvidedSymbol> {
        self.iter().find_map(|p| p.lookup_bytes(name))
    }
}

/// A provider backed by a function (stand-ins, tests).
pub struct FnProvider<F>(pub F);

impl<F: Fn(&str) -> Option<ProvidedSymbol>> SymbolProvider for FnProvider<F> {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        (self.0)(name)
    }
}

/// Names up to this long are compared inside the table entry (most kernel symbol names are:
/// 99 % of the undefined names of a Debian 6.1 kernel's modules).
const INLINE_NAME: usize = 32;

/// One export of an [`ExportTable`], one cache line: its name is `names[start..start + len]`,
/// with a copy of its first [`INLINE_NAME`] bytes here so that a lookup usually reads no
/// other memory, and its hash, so that the table never rehashes a name.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct ExportEntry {
    hash: u64,
    symbol: ProvidedSymbol,
    start: u32,
    len: u32,
    inline: [u8; INLINE_NAME],
}

impl ExportEntry {
    /// Whether this is the export of `name` (whose hash is `hash`), reading `names` only for
    /// a name longer than the inline copy.
    #[inline]
    fn is(&self, hash: u64, name: &[u8], names: &str) -> bool {
        if self.hash != hash || usize::try_from(self.len).ok() != Some(name.len()) {
            return false;
        }
        match self.inline.get(..name.len()) {
            Some(inline) => inline == name,
            None => {
                let start = usize::try_from(self.start).unwrap_or(usize::MAX);
                names
                    .as_bytes()
                    .get(start..start.saturating_add(name.len()))
                    == Some(name)
            }
        }
    }
}

/// A hashed table of exported symbols, from any number of providers.
///
/// The names live in one string, not one allocation each: a lookup reads the hash table and
/// then one place of that string, and the table is two allocations however many exports it
/// holds.
#[derive(Clone, Debug, Default)]
pub struct ExportTable {
    names: String,
    entries: HashTable<ExportEntry>,
    hasher: DefaultHashBuilder,
    /// Bytes of `names` that belong to removed exports (compacted when they are the most).
    garbage: usize,
}

impl ExportTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table with room for `capacity` symbols.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: HashTable::with_capacity(capacity),
            ..Self::default()
        }
    }

    fn name_of(&self, entry: &ExportEntry) -> &str {
        let start = usize::try_from(entry.start).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(entry.len).unwrap_or(usize::MAX));
        self.names.get(start..end).unwrap_or("")
    }

    fn find(&self, name: &[u8]) -> Option<&ExportEntry> {
        let hash = self.hasher.hash_one(name);
        self.entries.find(hash, |e| e.is(hash, name, &self.names))
    }

    /// Adds an export. A name can be exported once: a second export is an error, as in Linux.
    pub fn insert(&mut self, name: &str, address: u64, provider: ProviderId) -> Result<(), Error> {
        if let Some(existing) = self.find(name.as_bytes()) {
            return Err(Error::DuplicateExport {
                symbol: String::from(name),
                existing: existing.symbol.provider,
                new: provider,
            });
        }
        let (Ok(start), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            // More than 4 GiB of names: no kernel has that many exports.
            return Err(Error::OutOfMemory {
                core: u64::try_from(self.names.len()).unwrap_or(u64::MAX),
                init: 0,
            });
        };
        self.names.push_str(name);
        let hash = self.hasher.hash_one(name.as_bytes());
        let mut inline = [0; INLINE_NAME];
        for (slot, &byte) in inline.iter_mut().zip(name.as_bytes()) {
            *slot = byte;
        }
        self.entries.insert_unique(
            hash,
            ExportEntry {
                hash,
                symbol: ProvidedSymbol { address, provider },
                start,
                len,
                inline,
            },
            |e| e.hash,
        );
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
            let existing = self.get(name).map(|s| s.provider);
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
        let before = self.entries.len();
        let mut freed = 0usize;
        self.entries.retain(|e| {
            let keep = e.symbol.provider != provider;
            if !keep {
                freed = freed.saturating_add(usize::try_from(e.len).unwrap_or(0));
            }
            keep
        });
        self.garbage = self.garbage.saturating_add(freed);
        if self.garbage > self.names.len() / 2 {
            self.compact();
        }
        before.saturating_sub(self.entries.len())
    }

    /// Rewrites the names without those of removed exports.
    fn compact(&mut self) {
        let mut names = String::with_capacity(self.names.len().saturating_sub(self.garbage));
        for entry in self.entries.iter_mut() {
            let start = usize::try_from(entry.start).unwrap_or(usize::MAX);
            let end = start.saturating_add(usize::try_from(entry.len).unwrap_or(usize::MAX));
            let name = self.names.get(start..end).unwrap_or("");
            entry.start = u32::try_from(names.len()).unwrap_or(u32::MAX);
            names.push_str(name);
        }
        self.names = names;
        self.garbage = 0;
    }

    /// The export named `name`.
    pub fn get(&self, name: &str) -> Option<ProvidedSymbol> {
        self.find(name.as_bytes()).map(|e| e.symbol)
    }

    /// Number of exports.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All exports, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ProvidedSymbol)> {
        self.entries.iter().map(|e| (self.name_of(e), e.symbol))
    }
}

impl SymbolProvider for ExportTable {
    fn lookup(&self, name: &str) -> Option<ProvidedSymbol> {
        self.get(name)
    }

    fn lookup_bytes(&self, name: &[u8]) -> Option<ProvidedSymbol> {
        self.find(name).map(|e| e.symbol)
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
/// `_GLOBAL_OFFSET_TABLE_` (which old GNU as emits unreferenced; Linux ignores it too).
/// Names are looked up as bytes ([`SymbolProvider::lookup_bytes`]): one that is not UTF-8
/// matches no export of an [`ExportTable`], and a message about it decodes it lossily.
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
        let name = module.name_bytes(&sym);
        let resolved = match provider.lookup_bytes(name) {
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
            None if name == IGNORED_UNDEFINED.as_bytes() => {
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
                    symbol: String::from_utf8_lossy(name).into_owned(),
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
