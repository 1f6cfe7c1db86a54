//! The module signing key (Linux's `CONFIG_MODULE_SIG_KEY`): one per target directory,
//! generated on first use and never committed, or the user's own.
//!
//! The key is `TARGET/guest/module-signing/signing_key.pem` (PEM PKCS#8, ECDSA P-256,
//! readable by its owner only), created if missing; `KMODLAB_MODULE_SIG_KEY=PATH` makes the
//! build use the key at PATH instead (for example one made with `kmodlab sign --new-key`).
//! Its public key goes to `signing_key.pub.der` beside it (a DER `SubjectPublicKeyInfo`),
//! which the guest kernel and user programs embed: their build scripts read the path from
//! [`PUBLIC_KEY_ENV`].

use std::path::{Path, PathBuf};

use kmod_sig::SigningKey;

use crate::{BuildDirs, BuildError, Result};

/// Names a key file the build signs with instead of its own generated one.
pub const KEY_ENV: &str = "KMODLAB_MODULE_SIG_KEY";

/// What the nested guest builds get: the path of the public key (DER SubjectPublicKeyInfo).
pub const PUBLIC_KEY_ENV: &str = "KMODLAB_MODULE_SIG_PUBKEY";

/// The key modules are signed with, and where its files are.
#[derive(Debug, Clone)]
pub struct ModuleSigningKey {
    /// The key.
    pub key: SigningKey,
    /// Its key file.
    pub key_path: PathBuf,
    /// Its public key, DER (what the guest embeds).
    pub public_key_path: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `path` holding `contents` (owner-only) unless it exists. Safe against a
/// concurrent build doing the same: the file appears whole (hard link of a finished
/// temporary file) or not at all, and the first one wins.
fn create_once(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn read_key(path: &Path) -> Result<SigningKey> {
    kmod_tools::sign::read_key(path).map_err(|e| {
        BuildError::Invalid(format!(
            "module signing key: {e}\n(a key made by `kmodlab sign --new-key PATH` works; \
             unset {KEY_ENV} to let the build generate its own)"
        ))
    })
}

/// The build's signing key: `KMODLAB_MODULE_SIG_KEY`'s, or the target directory's own,
/// generated now if it does not exist. Writes its public key beside it.
pub fn module_signing_key(dirs: &BuildDirs) -> Result<ModuleSigningKey> {
    let dir = dirs.target_root.join("module-signing");
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let (key, key_path) = match std::env::var_os(KEY_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            (read_key(&path)?, path)
        }
        None => {
            let path = dir.join("signing_key.pem");
            if path.symlink_metadata().is_err() {
                let pem = SigningKey::generate()
                    .to_pkcs8_pem()
                    .map_err(|e| BuildError::Invalid(format!("module signing key: {e}")))?;
                create_once(&path, pem.as_bytes())?;
            }
            (read_key(&path)?, path)
        }
    };
    let public_key_path = dir.join("signing_key.pub.der");
    let der = key
        .public_key_der()
        .map_err(|e| BuildError::Invalid(format!("module signing key: {e}")))?;
    if std::fs::read(&public_key_path).ok().as_deref() != Some(der.as_slice()) {
        kmod_tools::sign::write_replacing(&public_key_path, &der)
            .map_err(|e| BuildError::Invalid(e.to_string()))?;
    }
    Ok(ModuleSigningKey {
        key,
        key_path,
        public_key_path,
    })
}
