//! The appended trailer: the marker, `struct module_signature`, and the lengths that locate
//! the signature data in front of them.

use core::fmt;

/// The marker a signed module ends with (`MODULE_SIG_STRING`).
pub const MAGIC: &[u8; 28] = b"~Module signature appended~\n";

/// Size of `struct module_signature`.
pub const SIGNATURE_INFO_SIZE: usize = 12;

/// `id_type` of a PKCS#7 signature (`PKEY_ID_PKCS7`), the only one Linux accepts.
pub const PKEY_ID_PKCS7: u8 = 2;

/// `struct module_signature`, the 12 bytes in front of the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSignature {
    /// Public-key algorithm (`enum pkey_algo`); 0 for PKCS#7, which names its own.
    pub algo: u8,
    /// Digest algorithm (`enum pkey_hash_algo`); 0 for PKCS#7.
    pub hash: u8,
    /// Key identifier type: 0 PGP, 1 X.509, 2 PKCS#7.
    pub id_type: u8,
    /// Length of the signer's name in front of the key id (legacy layouts); 0 for PKCS#7.
    pub signer_len: u8,
    /// Length of the key identifier in front of the signature (legacy layouts); 0 for PKCS#7.
    pub key_id_len: u8,
    /// Padding, zero.
    pub pad: [u8; 3],
    /// Length of the signature data (stored big-endian).
    pub sig_len: u32,
}

impl ModuleSignature {
    /// The header `sign-file` writes for a PKCS#7 signature of `sig_len` bytes.
    pub fn pkcs7(sig_len: u32) -> ModuleSignature {
        ModuleSignature {
            algo: 0,
            hash: 0,
            id_type: PKEY_ID_PKCS7,
            signer_len: 0,
            key_id_len: 0,
            pad: [0; 3],
            sig_len,
        }
    }

    /// Reads the structure from its 12 bytes.
    pub fn from_bytes(b: &[u8; SIGNATURE_INFO_SIZE]) -> ModuleSignature {
        ModuleSignature {
            algo: b[0],
            hash: b[1],
            id_type: b[2],
            signer_len: b[3],
            key_id_len: b[4],
            pad: [b[5], b[6], b[7]],
            sig_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    /// Its 12 bytes, as they are stored.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_INFO_SIZE] {
        let l = self.sig_len.to_be_bytes();
        [
            self.algo,
            self.hash,
            self.id_type,
            self.signer_len,
            self.key_id_len,
            self.pad[0],
            self.pad[1],
            self.pad[2],
            l[0],
            l[1],
            l[2],
            l[3],
        ]
    }
}

/// A signed module file, split at its trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer<'a> {
    /// The module itself (the ELF file).
    pub module: &'a [u8],
    /// The signature data (a DER PKCS#7 message).
    pub signature: &'a [u8],
    /// The `struct module_signature` in front of the marker.
    pub info: ModuleSignature,
}

/// Why a file that ends in [`MAGIC`] has no usable trailer (Linux: `EBADMSG` or `ENOPKG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerError {
    /// Too few bytes in front of the marker for `struct module_signature` and a module.
    TooShort {
        /// Bytes in front of the marker.
        len: usize,
    },
    /// `sig_len` leaves no room for the module in front of the signature.
    SignatureTooLong {
        /// The declared signature length.
        sig_len: u32,
        /// Bytes in front of `struct module_signature`.
        available: usize,
    },
    /// `id_type` is not PKCS#7 (an old, pre-4.3 signature format).
    NotPkcs7 {
        /// The `id_type` found.
        id_type: u8,
    },
    /// A PKCS#7 trailer with a non-zero `algo`, `hash`, `signer_len`, `key_id_len` or pad.
    NonZeroParams {
        /// The structure found.
        info: ModuleSignature,
    },
}

impl core::error::Error for TrailerError {}

impl fmt::Display for TrailerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrailerError::TooShort { len } => write!(
                f,
                "the signature trailer is truncated: {len} bytes before the marker, fewer than \
                 struct module_signature ({SIGNATURE_INFO_SIZE}) and a module"
            ),
            TrailerError::SignatureTooLong { sig_len, available } => write!(
                f,
                "the signature trailer declares {sig_len} bytes of signature, but only \
                 {available} bytes precede it (the module would be empty)"
            ),
            TrailerError::NotPkcs7 { id_type } => write!(
                f,
                "not signed with the expected PKCS#7 message (id_type {id_type}, expected \
                 {PKEY_ID_PKCS7})"
            ),
            TrailerError::NonZeroParams { info } => write!(
                f,
                "PKCS#7 signature info has unexpected non-zero params (algo {}, hash {}, \
                 signer_len {}, key_id_len {}, pad {:?})",
                info.algo, info.hash, info.signer_len, info.key_id_len, info.pad
            ),
        }
    }
}

/// Splits a module file at its signature trailer, checking it as Linux's `mod_verify_sig`
/// and `mod_check_sig` do. `Ok(None)`: the file does not end in [`MAGIC`] (unsigned).
pub fn split(file: &[u8]) -> Result<Option<Trailer<'_>>, TrailerError> {
    let Some(rest) = file.strip_suffix(MAGIC.as_slice()) else {
        return Ok(None);
    };
    // Linux: `modlen <= sizeof(ms)` is EBADMSG, so at least one byte of module must remain.
    if rest.len() <= SIGNATURE_INFO_SIZE {
        return Err(TrailerError::TooShort { len: rest.len() });
    }
    let (front, info_bytes) = rest.split_at(rest.len() - SIGNATURE_INFO_SIZE);
    let info_bytes: &[u8; SIGNATURE_INFO_SIZE] = info_bytes
        .try_into()
        .map_err(|_| TrailerError::TooShort { len: rest.len() })?;
    let info = ModuleSignature::from_bytes(info_bytes);
    // `sig_len >= file_len - sizeof(ms)` is EBADMSG: the module may not be empty.
    let sig_len = usize::try_from(info.sig_len).unwrap_or(usize::MAX);
    if sig_len >= front.len() {
        return Err(TrailerError::SignatureTooLong {
            sig_len: info.sig_len,
            available: front.len(),
        });
    }
    if info.id_type != PKEY_ID_PKCS7 {
        return Err(TrailerError::NotPkcs7 {
            id_type: info.id_type,
        });
    }
    if info.algo != 0
        || info.hash != 0
        || info.signer_len != 0
        || info.key_id_len != 0
        || info.pad != [0; 3]
    {
        return Err(TrailerError::NonZeroParams { info });
    }
    let (module, signature) = front.split_at(front.len() - sig_len);
    Ok(Some(Trailer {
        module,
        signature,
        info,
    }))
}

/// The ELF part of a module file: without its trailer if it has a well-formed one, else the
/// whole file (what the loader of an unsigned module sees).
pub fn strip(file: &[u8]) -> &[u8] {
    match split(file) {
        Ok(Some(t)) => t.module,
        _ => file,
    }
}

/// Appends the trailer for PKCS#7 message `signature` to `module`.
pub fn append(module: &mut alloc::vec::Vec<u8>, signature: &[u8]) -> Result<(), TrailerError> {
    let sig_len = u32::try_from(signature.len()).map_err(|_| TrailerError::SignatureTooLong {
        sig_len: u32::MAX,
        available: module.len(),
    })?;
    module.extend_from_slice(signature);
    module.extend_from_slice(&ModuleSignature::pkcs7(sig_len).to_bytes());
    module.extend_from_slice(MAGIC);
    Ok(())
}
