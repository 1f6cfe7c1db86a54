//! The bodies of the signature fuzz targets, shared by `fuzz_targets/*.rs` (cargo-fuzz,
//! nightly) and `tests/fuzz_corpus.rs`, which replays the committed corpus on stable.
//!
//! A module file, trailer included, comes from whoever asks to load it: the kernel runs
//! [`check`] on it before anything else, and the host tools run [`SignatureInfo::of`].
//!
//! - [`signed_file`]: the input is a whole module file (hostile trailers and lengths).
//! - [`pkcs7`]: the input is the signature data only, appended to a fixed module with a
//!   well-formed trailer, so that every input reaches the DER decoder and the PKCS#7 checks
//!   (a valid signature by the trusted key is among the seeds).
//!
//! The trusted key is `test-key.pub.der`, the public half of
//! `crates/kmod-tools/tests/fixtures/signing/test-key.pem` (a unit test of the crate checks
//! that they match).

use kmod_sig::{Checked, SignatureInfo, TrustedKey, VerifyError, append, check, split, strip};

/// The module the [`pkcs7`] target's signatures are appended to (and the seeds sign).
pub const MODULE: &[u8] =
    b"\x7fELF\x02\x01\x01\0kmodlab fuzz module: the signature covers these bytes";

fn trusted() -> TrustedKey {
    TrustedKey::from_spki_der(include_bytes!("test-key.pub.der")).expect("the committed key")
}

/// Checks what [`check`] promises for `file`: the module it returns is a prefix of the file,
/// a verified module is shorter than the file (the trailer is cut off), every error has a
/// class, a message and an errno.
fn checked<'a>(file: &'a [u8], key: &TrustedKey) -> Checked<'a> {
    let c = check(file, Some(key));
    assert!(file.starts_with(c.module));
    match &c.outcome {
        Ok(v) => {
            assert!(c.module.len() < file.len());
            assert_eq!(&v.identity, key.identity());
            assert_eq!(strip(file), c.module);
        }
        Err(e) => {
            let _ = (e.class(), e.errno(), e.to_string());
        }
    }
    let without_key = check(file, None);
    assert_eq!(without_key.module, c.module);
    assert!(without_key.outcome.is_err());
    c
}

/// A whole module file.
pub fn signed_file(file: &[u8]) {
    let key = trusted();
    let c = checked(file, &key);
    match split(file) {
        Ok(Some(t)) => {
            assert_eq!(t.module, c.module);
            assert_eq!(t.module.len() + t.signature.len() + 12 + 28, file.len());
        }
        Ok(None) => assert_eq!(c.outcome, Err(VerifyError::Unsigned)),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = SignatureInfo::of(file);
}

/// The signature data of a module with a well-formed trailer.
pub fn pkcs7(signature: &[u8]) {
    let mut file = MODULE.to_vec();
    if append(&mut file, signature).is_err() {
        return;
    }
    let key = trusted();
    let c = checked(&file, &key);
    assert_eq!(c.module, MODULE);
    let _ = SignatureInfo::of(&file);
}
