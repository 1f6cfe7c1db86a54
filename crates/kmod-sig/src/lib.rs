//! Module signatures as Linux's `CONFIG_MODULE_SIG` makes them: a signature appended to the
//! module file, found, checked and cut off by the kernel before it looks at the ELF.
//!
//! A signed module is laid out as Linux's `scripts/sign-file` writes it (and as kmod's
//! `libkmod-signature.c` and the kernel's `module_signing.c` read it):
//!
//! ```text
//! [ module (the ELF file)         ]
//! [ signature data: PKCS#7 (DER)  ]  sig_len bytes
//! [ struct module_signature       ]  12 bytes: algo, hash, id_type, signer_len, key_id_len,
//! [                               ]            3 pad bytes, sig_len (big-endian u32)
//! [ "~Module signature appended~\n" ] 28 bytes
//! ```
//!
//! # The format chosen, and why
//!
//! - **`id_type` = 2 (`PKEY_ID_PKCS7`)**, with `algo`, `hash`, `signer_len`, `key_id_len` and
//!   the pad all zero: the only form Linux has accepted since 4.3 (`mod_check_sig` refuses
//!   anything else). The legacy layout (`id_type` X509 or PGP, signer and key id in the
//!   trailer) would be simpler, but kmod only displays it for `algo` RSA or DSA, so a
//!   non-RSA key could not be shown truthfully, and no current kernel would load it.
//! - **The signature data is a real CMS `SignedData` (RFC 5652)** shaped exactly like
//!   `sign-file`'s (OpenSSL's `CMS_sign` with `CMS_NOATTR | CMS_DETACHED | CMS_NOCERTS`):
//!   digest algorithm SHA-256, content type `data` with the content detached (it is the
//!   module), no certificates, one `SignerInfo` identified by issuer and serial number, no
//!   signed attributes (so the signature is over the module bytes themselves).
//! - **ECDSA over NIST P-256 with SHA-256** (`ecdsa-with-SHA256`, the signature value the DER
//!   `ECDSA-Sig-Value`), from RustCrypto's [`p256`]: `no_std`, no SIMD (it builds for the
//!   guest's soft-float `x86_64-unknown-none`), and what Linux's
//!   `CONFIG_MODULE_SIG_KEY_TYPE_ECDSA` uses, so a Linux kernel given the key's certificate
//!   would verify these modules too. Signatures are deterministic (RFC 6979): the same key
//!   and module always give the same bytes, which keeps the build reproducible. Ed25519
//!   (faster) was the alternative, but Linux cannot verify it for modules.
//!
//! kmod's `modinfo` (built with OpenSSL, as Debian's is) shows such a module's
//! `sig_id: PKCS#7`, `signer` (the issuer's common name), `sig_key` (the serial number),
//! `sig_hashalgo: sha256` and `signature` (the ECDSA signature's DER bytes): see
//! [`SignatureInfo`], which computes the same fields for any file.
//!
//! # Keys and their identity
//!
//! A PKCS#7 signer is named by issuer and serial number, which Linux takes from the signing
//! key's X.509 certificate. kmodlab has no certificates: a key's identity is derived from the
//! public key alone ([`KeyIdentity`]): issuer `CN=`[`SIGNER_NAME`], serial the first 16 bytes
//! of the SHA-256 of the public key point. The kernel trusts one key ([`TrustedKey`], handed
//! to it as a DER `SubjectPublicKeyInfo` at build time); a signature by another key is
//! "unavailable key" (`ENOKEY`), as in Linux.
//!
//! # What the kernel does with it
//!
//! [`check`] is Linux's `module_sig_check` + `mod_verify_sig`: it finds the trailer, checks
//! every length against the file, verifies the signature and returns the ELF part (what the
//! loader must see) with the outcome. [`VerifyError::class`] sorts failures the way Linux
//! does: no signature, unsupported crypto and unknown key are tolerated (with a warning)
//! unless signatures are enforced; everything else — a signature that does not match, a
//! malformed trailer or PKCS#7 message — refuses the module whatever the setting.
//!
//! Where this is stricter or narrower than Linux's PKCS#7 verifier: exactly one signer (Linux
//! accepts several, one of them trusted); no signed attributes (Linux verifies their
//! `messageDigest`; here they are "unsupported crypto", `ENOPKG`); the unauthenticated fields
//! (versions, the digest algorithm set, unsigned attributes) must be what `sign-file` writes,
//! so changing them is tampering (`EBADMSG`) rather than ignored; embedded certificates are
//! ignored (the kernel trusts its one key, not a chain); DER only (Linux's parser is BER, but
//! `sign-file` writes DER).
//!
//! Nothing here panics on any input (property-tested); every slice is taken with checked
//! lengths.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod info;
mod key;
mod pkcs7;
#[cfg(any(test, feature = "sign"))]
mod sign;
mod trailer;

pub use error::{Tolerance, VerifyError};
pub use info::SignatureInfo;
pub use key::{KeyError, KeyIdentity, SERIAL_LEN, SIGNER_NAME, TrustedKey};
pub use pkcs7::oid;
#[cfg(any(test, feature = "sign"))]
pub use sign::{SignError, SigningKey};
pub use trailer::{
    MAGIC, ModuleSignature, PKEY_ID_PKCS7, SIGNATURE_INFO_SIZE, Trailer, TrailerError, append,
    split, strip,
};

use sha2::{Digest, Sha256};

/// The result of [`check`]: the bytes the loader is to see, and what the signature check
/// found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The module without its signature trailer (Linux truncates `info->len` the same way).
    /// For an unsigned file, the whole file.
    pub module: &'a [u8],
    /// `Ok` if the module carries a valid signature by the trusted key.
    pub outcome: Result<Verified, VerifyError>,
}

/// A signature that verified: who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer's identity (issuer common name and serial number).
    pub identity: KeyIdentity,
}

/// Checks the signature of module file `file` against `key` (`None`: a kernel built without
/// a trusted key, which can verify nothing), as Linux's `module_sig_check` does.
///
/// Time is linear in the file's length (one SHA-256 pass) plus one ECDSA verification;
/// memory is the decoded PKCS#7 message, bounded by the trailer's length.
pub fn check<'a>(file: &'a [u8], key: Option<&TrustedKey>) -> Checked<'a> {
    let trailer = match split(file) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Checked {
                module: file,
                outcome: Err(VerifyError::Unsigned),
            };
        }
        Err(e) => {
            return Checked {
                // Linux has cut the marker off by then and leaves the rest in place.
                module: file
                    .get(..file.len().saturating_sub(MAGIC.len()))
                    .unwrap_or(file),
                outcome: Err(VerifyError::Trailer(e)),
            };
        }
    };
    Checked {
        module: trailer.module,
        outcome: verify_trailer(&trailer, key),
    }
}

fn verify_trailer(
    trailer: &Trailer<'_>,
    key: Option<&TrustedKey>,
) -> Result<Verified, VerifyError> {
    let message = pkcs7::parse_signed_data(trailer.signature)?;
    let signer = message.only_signer()?;
    signer.check_algorithms()?;
    let key = key.ok_or(VerifyError::NoTrustedKey)?;
    let identity = signer.identity()?;
    if identity != *key.identity() {
        return Err(VerifyError::UnknownKey { signer: identity });
    }
    let digest = Sha256::digest(trailer.module);
    key.verify_digest(&digest, signer.signature())?;
    Ok(Verified { identity })
}

#[cfg(test)]
mod tests;
