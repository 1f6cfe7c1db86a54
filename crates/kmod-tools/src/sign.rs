//! Signing modules, as Linux's `scripts/sign-file` does: the module's bytes, then a PKCS#7
//! signature, `struct module_signature` and `~Module signature appended~\n` (see the
//! `kmod-sig` crate for the format and the algorithm).

use std::io::Write;
use std::path::{Path, PathBuf};

use kmod_sig::{SigningKey, TrailerError};

use crate::error::{Result, ToolError};
use crate::ko::ModuleFile;

/// Largest key file read: a PEM P-256 key is about 250 bytes.
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// Reads a signing key file (PEM PKCS#8, ECDSA P-256). Only a regular file of at most
/// [`MAX_KEY_FILE`] bytes is read.
pub fn read_key(path: &Path) -> Result<SigningKey> {
    use std::io::Read;
    let io = |source| ToolError::Io {
        path: path.to_owned(),
        source,
    };
    let not_key = |why: &str| ToolError::Key {
        path: path.to_owned(),
        reason: format!(
            "not a PEM PKCS#8 ECDSA P-256 private key (\"-----BEGIN PRIVATE KEY-----\"): {why}"
        ),
    };
    // Opened without blocking (a FIFO would wait for a writer) and checked to be a regular
    // file on the open descriptor.
    let file = match crate::input::open_regular(path) {
        Ok((file, _)) => file,
        Err(ToolError::NotRegular { .. }) => return Err(not_key("not a regular file")),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(not_key(&format!("larger than {MAX_KEY_FILE} bytes")));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| not_key("not text"))?;
    SigningKey::from_pkcs8_pem(text).map_err(|e| ToolError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Where the public key of key file `key` is written: `KEY.pub.der`.
pub fn public_key_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub.der");
    PathBuf::from(name)
}

fn create_new(path: &Path, mode: u32, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ToolError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// Creates a new key at `path` (readable by its owner only) and its public key at
/// [`public_key_path`]; refuses to overwrite either.
pub fn new_key(path: &Path) -> Result<SigningKey> {
    let public = public_key_path(path);
    for p in [path, public.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(ToolError::Key {
                path: p.to_owned(),
                reason: "already exists; a new key is never written over a file (remove it \
                         or choose another path)"
                    .into(),
            });
        }
    }
    let key = SigningKey::generate();
    let encode = |e: kmod_sig::SignError| ToolError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let pem = key.to_pkcs8_pem().map_err(encode)?;
    let der = key.public_key_der().map_err(encode)?;
    create_new(path, 0o600, pem.as_bytes())?;
    create_new(&public, 0o644, &der)?;
    Ok(key)
}

/// The bytes of `module` (read from `path`) signed with `key`, and who had signed it before
/// if it was signed already (its signature is replaced).
pub fn sign_bytes(
    key: &SigningKey,
    path: &Path,
    module: &[u8],
) -> Result<(Vec<u8>, Option<String>)> {
    let (elf, replaced) = match kmod_sig::split(module) {
        Ok(None) => (module, None),
        Ok(Some(trailer)) => {
            // The lengths fit, but only a signature that decodes proves where the module
            // ends: otherwise cutting at sig_len could chop the module.
            let Some(before) = kmod_sig::SignatureInfo::of(module) else {
                return Err(ToolError::Sign {
                    path: path.to_owned(),
                    reason: "it ends in the signature marker, but its signature data is not a \
                             PKCS#7 message; rebuild the module"
                        .into(),
                });
            };
            let before = format!(
                "signer \"{}\", key {}",
                String::from_utf8_lossy(&before.signer),
                kmodlab_abi::modinfo::kmod_hex(&before.key_id)
            );
            (trailer.module, Some(before))
        }
        Err(e) => {
            return Err(ToolError::Sign {
                path: path.to_owned(),
                reason: format!(
                    "it ends in the signature marker, but {e}{}; rebuild the module",
                    match e {
                        TrailerError::NotPkcs7 { .. } => " (an old signature format)",
                        _ => "",
                    }
                ),
            });
        }
    };
    // Only modules are signed: the file must parse as one.
    ModuleFile::parse(path, elf)?;
    let signed = key.sign(elf).map_err(|e| ToolError::Sign {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((signed, replaced))
}

/// Signs the module at `path`, writing the result to `output` (which may be `path`: the file
/// is replaced whole, never left half-written). Returns who had signed it before, if anyone.
pub fn sign_file(key: &SigningKey, path: &Path, output: &Path) -> Result<Option<String>> {
    let name = path.to_string_lossy();
    if name.ends_with(".xz") || name.ends_with(".zst") {
        return Err(ToolError::Sign {
            path: path.to_owned(),
            reason: "the module is compressed; sign the uncompressed .ko, then compress it (as \
                     Linux does)"
                .into(),
        });
    }
    let data = crate::input::read_regular(path, crate::input::MAX_MODULE_SIZE, "the file")?;
    let (signed, replaced) = sign_bytes(key, path, &data)?;
    write_replacing(output, &signed)?;
    Ok(replaced)
}

/// Writes `contents` to a temporary file beside `path` and renames it over `path` (see
/// [`crate::input::write_replacing`]).
pub use crate::input::write_replacing;
