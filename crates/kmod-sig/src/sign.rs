//! Signing modules and the key files that do it (host only).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use crate::key::{KeyIdentity, TrustedKey};
use crate::trailer::{self, TrailerError};

/// Why signing, or reading or making a key, failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The key file is not a PEM PKCS#8 ECDSA P-256 private key.
    NotP256PrivateKey {
        /// The decoder's complaint.
        reason: String,
    },
    /// Encoding the key or the signature failed.
    Encode {
        /// What failed.
        reason: String,
    },
    /// The signature cannot be appended (beyond 4 GiB).
    Trailer(TrailerError),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::NotP256PrivateKey { reason } => write!(
                f,
                "not a PEM PKCS#8 ECDSA P-256 private key (\"-----BEGIN PRIVATE KEY-----\"): \
                 {reason}"
            ),
            SignError::Encode { reason } => write!(f, "cannot encode: {reason}"),
            SignError::Trailer(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for SignError {}

/// A module signing key: an ECDSA P-256 private key.
#[derive(Clone)]
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
    trusted: TrustedKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "SigningKey({})", self.identity())
    }
}

impl SigningKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> SigningKey {
        SigningKey::from_key(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    fn from_key(key: p256::ecdsa::SigningKey) -> SigningKey {
        SigningKey {
            trusted: TrustedKey::new(*key.verifying_key()),
            key,
        }
    }

    /// Reads a PEM PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`; what
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes too).
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, SignError> {
        p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map(SigningKey::from_key)
            .map_err(|e| SignError::NotP256PrivateKey {
                reason: e.to_string(),
            })
    }

    /// The key as PEM PKCS#8 (the key file).
    pub fn to_pkcs8_pem(&self) -> Result<String, SignError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.as_str().to_string())
            .map_err(|e| SignError::Encode {
                reason: e.to_string(),
            })
    }

    /// The public key as a DER `SubjectPublicKeyInfo` (what the kernel is given).
    pub fn public_key_der(&self) -> Result<Vec<u8>, SignError> {
        self.key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| SignError::Encode {
                reason: e.to_string(),
            })
    }

    /// The public half, as a kernel would trust it.
    pub fn trusted_key(&self) -> &TrustedKey {
        &self.trusted
    }

    /// The identity its signatures carry.
    pub fn identity(&self) -> &KeyIdentity {
        self.trusted.identity()
    }

    /// The PKCS#7 message signing `module` (deterministic: RFC 6979 nonces).
    pub fn pkcs7_signature(&self, module: &[u8]) -> Result<Vec<u8>, SignError> {
        let digest = Sha256::digest(module);
        let signature: p256::ecdsa::Signature =
            self.key
                .sign_prehash(&digest)
                .map_err(|e| SignError::Encode {
                    reason: e.to_string(),
                })?;
        crate::pkcs7::encode(self.identity(), signature.to_der().as_bytes()).map_err(|e| {
            SignError::Encode {
                reason: e.to_string(),
            }
        })
    }

    /// `module` (an ELF file without a signature) followed by its signature trailer: what
    /// `sign-file` writes.
    pub fn sign(&self, module: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = self.pkcs7_signature(module)?;
        let mut out = Vec::with_capacity(module.len() + signature.len() + 40);
        out.extend_from_slice(module);
        trailer::append(&mut out, &signature).map_err(SignError::Trailer)?;
        Ok(out)
    }
}
