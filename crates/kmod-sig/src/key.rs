//! The key a kernel trusts, and how a key is named in a signature.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use der::asn1::SetOfVec;
use der::{Any, Encode, Tag};
use p256::ecdsa::VerifyingKey;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use crate::error::VerifyError;
use crate::pkcs7::oid;

/// The issuer common name of every kmodlab signing key (see [`KeyIdentity`]).
pub const SIGNER_NAME: &str = "kmodlab module signing key";

/// Bytes of the serial number derived from a public key.
pub const SERIAL_LEN: usize = 16;

/// How a PKCS#7 signer names its key: issuer and serial number, as an X.509 certificate
/// would give them.
///
/// For kmodlab's keys both follow from the public key: issuer `CN=`[`SIGNER_NAME`], serial
/// the first [`SERIAL_LEN`] bytes of SHA-256 over the uncompressed public key point, with
/// the top bit cleared and the next set (a positive integer of exactly that length, so kmod
/// shows all of it). Two keys thus differ in serial, and a key file alone determines the
/// identity its signatures carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    /// The issuer `Name`, DER-encoded (what is compared).
    pub issuer_der: Vec<u8>,
    /// The issuer as text (RFC 4514), for messages.
    pub issuer: String,
    /// The serial number's big-endian bytes, as encoded (a leading zero byte included).
    pub serial: Vec<u8>,
}

impl KeyIdentity {
    /// The identity kmodlab gives `key`.
    pub fn of(key: &VerifyingKey) -> KeyIdentity {
        let point = key.to_encoded_point(false);
        let hash = Sha256::digest(point.as_bytes());
        let mut serial = hash[..SERIAL_LEN].to_vec();
        serial[0] = (serial[0] & 0x7f) | 0x40;
        let issuer = signer_name();
        KeyIdentity::new(&issuer, serial)
    }

    /// An identity from a decoded issuer name and serial number bytes.
    pub(crate) fn new(issuer: &Name, serial: Vec<u8>) -> KeyIdentity {
        KeyIdentity {
            // Encoding a decoded (or constructed, well-formed) Name cannot fail but for
            // lengths beyond 256 MiB, which a trailer cannot hold.
            issuer_der: issuer.to_der().unwrap_or_default(),
            issuer: issuer.to_string(),
            serial,
        }
    }
}

impl fmt::Display for KeyIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "issuer \"{}\", serial ", self.issuer)?;
        for (i, b) in self.serial.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// The issuer `Name` of kmodlab's keys: one RDN, `CN=`[`SIGNER_NAME`] as a UTF8String.
pub(crate) fn signer_name() -> Name {
    let cn = AttributeTypeAndValue {
        oid: oid::COMMON_NAME,
        value: Any::new(Tag::Utf8String, SIGNER_NAME.as_bytes()).unwrap_or_else(|_| Any::null()),
    };
    let mut rdn = SetOfVec::new();
    // A set of one element is always in DER order.
    let _ = rdn.insert(cn);
    RdnSequence(vec![RelativeDistinguishedName(rdn)])
}

/// Why a public key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The bytes are not a DER `SubjectPublicKeyInfo` of a P-256 key.
    NotP256PublicKey {
        /// The decoder's complaint.
        reason: String,
    },
}

impl core::error::Error for KeyError {}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotP256PublicKey { reason } => write!(
                f,
                "not a DER SubjectPublicKeyInfo of an ECDSA P-256 public key: {reason}"
            ),
        }
    }
}

/// The public key a kernel verifies modules with, and its [`KeyIdentity`].
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: VerifyingKey,
    identity: KeyIdentity,
}

impl TrustedKey {
    /// Reads a DER `SubjectPublicKeyInfo` (what the build hands the kernel).
    pub fn from_spki_der(der: &[u8]) -> Result<TrustedKey, KeyError> {
        let key =
            VerifyingKey::from_public_key_der(der).map_err(|e| KeyError::NotP256PublicKey {
                reason: e.to_string(),
            })?;
        Ok(TrustedKey::new(key))
    }

    /// Trusts `key`.
    pub fn new(key: VerifyingKey) -> TrustedKey {
        TrustedKey {
            identity: KeyIdentity::of(&key),
            key,
        }
    }

    /// The identity its signatures carry.
    pub fn identity(&self) -> &KeyIdentity {
        &self.identity
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Verifies the DER ECDSA `signature` over SHA-256 `digest`.
    pub(crate) fn verify_digest(&self, digest: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        let signature = p256::ecdsa::Signature::from_der(signature)
            .map_err(|_| VerifyError::BadSignatureEncoding)?;
        self.key
            .verify_prehash(digest, &signature)
            .map_err(|_| VerifyError::Rejected)
    }
}
