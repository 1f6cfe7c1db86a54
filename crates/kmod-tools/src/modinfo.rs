//! `modinfo`: a module's `.modinfo`, printed the way Linux's (kmod's) modinfo prints it.

pub use kmod_sig::SignatureInfo;
pub use kmodlab_abi::modinfo::Param;

fn pairs(modinfo: &[(String, String)]) -> Vec<(&str, &str)> {
    modinfo
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The signature fields kmod shows after `.modinfo`'s (none for an unsigned module).
pub fn signature_fields(signature: Option<&SignatureInfo>) -> Vec<(&'static str, String)> {
    signature.map_or_else(Vec::new, |s| {
        kmodlab_abi::modinfo::signature_fields(
            s.id_type,
            &s.signer,
            &s.key_id,
            s.hash_algo,
            &s.signature,
        )
    })
}

/// The parameters described by a module's `.modinfo` entries, in the order modinfo prints
/// them.
pub fn params(modinfo: &[(String, String)]) -> Vec<Param> {
    kmodlab_abi::modinfo::params(pairs(modinfo))
}

/// What modinfo prints for a module with these `.modinfo` entries and this appended
/// signature (see [`kmodlab_abi::modinfo::render`], which the guest shell's `modinfo` also
/// uses).
pub fn render(
    modinfo: &[(String, String)],
    signature: Option<&SignatureInfo>,
    filename: &str,
    field: Option<&str>,
    separator: char,
) -> String {
    let signature = signature_fields(signature);
    let mut pairs = pairs(modinfo);
    pairs.extend(signature.iter().map(|(k, v)| (*k, v.as_str())));
    kmodlab_abi::modinfo::render(&pairs, filename, field, separator)
}

/// The file name modinfo prints: absolute, by joining a relative path to the current
/// directory without normalising it (what kmod shows).
pub fn display_filename(path: &std::path::Path) -> String {
    if path.is_absolute() {
        return path.display().to_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => format!("{}/{}", cwd.display(), path.display()),
        Err(_) => path.display().to_string(),
    }
}
