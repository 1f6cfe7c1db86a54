//! The signature fields kmod's `modinfo` shows, computed the way kmod 30 (Debian 12's, built
//! with OpenSSL) computes them in `kmod_module_signature_info`.

use alloc::vec::Vec;

use crate::pkcs7;
use crate::trailer::{MAGIC, ModuleSignature, PKEY_ID_PKCS7, SIGNATURE_INFO_SIZE};

/// kmod's `pkey_id_type` names.
const ID_TYPES: [&str; 3] = ["PGP", "X509", "PKCS#7"];
/// kmod's `pkey_hash_algo` names, indexed by `struct module_signature`'s `hash`.
const HASH_NAMES: [&str; 9] = [
    "md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "sm3",
];
/// `PKEY_ALGO__LAST`: kmod knows DSA (0) and RSA (1).
const ALGO_COUNT: u8 = 2;

/// The signature of a module file as kmod's `modinfo` shows it: `sig_id`, `signer`,
/// `sig_key`, `sig_hashalgo`, `signature`. The fields are kmod's values, not a judgement:
/// nothing here is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// `sig_id`: `PGP`, `X509` or `PKCS#7`.
    pub id_type: &'static str,
    /// `signer`: the issuer's common name (PKCS#7) or the trailer's signer bytes (legacy),
    /// up to the first NUL byte as kmod prints it.
    pub signer: Vec<u8>,
    /// `sig_key`: the serial number's magnitude without leading zeros (PKCS#7) or the
    /// trailer's key id (legacy).
    pub key_id: Vec<u8>,
    /// `sig_hashalgo`: kmod's name of the digest algorithm.
    pub hash_algo: &'static str,
    /// `signature`: the signature value's bytes.
    pub signature: Vec<u8>,
}

impl SignatureInfo {
    /// What kmod shows for `file`, or `None` where kmod shows no signature fields: no marker,
    /// a trailer kmod rejects (unknown `algo`, `hash` or `id_type`, zero or too long
    /// `sig_len`), or a PKCS#7 message that does not decode, has no signer named by issuer and
    /// serial number, or uses a digest kmod has no name for (kmod 30 then reads outside its
    /// name table; kmodlab shows nothing instead). kmod decodes PKCS#7 as BER with OpenSSL;
    /// this decodes DER, which is what Linux's `sign-file` writes.
    pub fn of(file: &[u8]) -> Option<SignatureInfo> {
        let rest = file.strip_suffix(MAGIC.as_slice())?;
        let front_len = rest.len().checked_sub(SIGNATURE_INFO_SIZE)?;
        let (front, info_bytes) = rest.split_at(front_len);
        let info = ModuleSignature::from_bytes(info_bytes.try_into().ok()?);
        if info.algo >= ALGO_COUNT
            || usize::from(info.hash) >= HASH_NAMES.len()
            || usize::from(info.id_type) >= ID_TYPES.len()
        {
            return None;
        }
        let sig_len = usize::try_from(info.sig_len).ok()?;
        let needed = sig_len
            .checked_add(usize::from(info.signer_len))?
            .checked_add(usize::from(info.key_id_len))?;
        if sig_len == 0 || front.len() < needed {
            return None;
        }
        let id_type = ID_TYPES[usize::from(info.id_type)];
        let (rest, signature) = front.split_at(front.len() - sig_len);
        if info.id_type == PKEY_ID_PKCS7 {
            return pkcs7_info(signature, id_type);
        }
        let (rest, key_id) = rest.split_at(rest.len() - usize::from(info.key_id_len));
        let signer = &rest[rest.len() - usize::from(info.signer_len)..];
        Some(SignatureInfo {
            id_type,
            signer: until_nul(signer),
            key_id: key_id.to_vec(),
            hash_algo: HASH_NAMES[usize::from(info.hash)],
            signature: signature.to_vec(),
        })
    }
}

fn until_nul(bytes: &[u8]) -> Vec<u8> {
    bytes.split(|&b| b == 0).next().unwrap_or(&[]).to_vec()
}

fn pkcs7_info(der: &[u8], id_type: &'static str) -> Option<SignatureInfo> {
    use cms::signed_data::SignerIdentifier;

    let message = pkcs7::parse_signed_data(der).ok()?;
    let signer = message.first_signer()?;
    let SignerIdentifier::IssuerAndSerialNumber(id) = &signer.info.sid else {
        return None;
    };
    let hash_algo = pkcs7::oid::KMOD_HASH_ALGORITHMS
        .iter()
        .find(|(_, oid)| *oid == signer.digest_oid())
        .map(|(name, _)| *name)?;
    Some(SignatureInfo {
        id_type,
        signer: issuer_text(&id.issuer),
        key_id: integer_magnitude(id.serial_number.as_bytes()),
        hash_algo,
        signature: signer.signature().to_vec(),
    })
}

/// kmod's `x509_name_to_str`: the value of the first common name; without one, the value of
/// the last attribute (its loop leaves that entry selected); none for an empty name.
fn issuer_text(name: &x509_cert::name::Name) -> Vec<u8> {
    let attributes = || name.0.iter().flat_map(|rdn| rdn.0.iter());
    let chosen = attributes()
        .find(|a| a.oid == pkcs7::oid::COMMON_NAME)
        .or_else(|| attributes().last());
    chosen.map_or_else(Vec::new, |a| until_nul(a.value.value()))
}

/// The magnitude of a DER INTEGER's two's-complement bytes without leading zeros: what
/// OpenSSL's `ASN1_INTEGER_to_BN` + `BN_bn2bin` give kmod.
fn integer_magnitude(bytes: &[u8]) -> Vec<u8> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = bytes.to_vec();
    if negative {
        // Two's complement: invert and add one.
        let mut carry = true;
        for b in magnitude.iter_mut().rev() {
            let (v, c) = (!*b).overflowing_add(u8::from(carry));
            *b = v;
            carry = c;
        }
    }
    let first = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    magnitude.split_off(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_magnitudes_match_openssl() {
        assert_eq!(integer_magnitude(&[0x00, 0x80, 0x01]), [0x80, 0x01]);
        assert_eq!(integer_magnitude(&[0x7f]), [0x7f]);
        assert_eq!(integer_magnitude(&[0x00]), [] as [u8; 0]);
        assert_eq!(integer_magnitude(&[0xff]), [0x01]);
        assert_eq!(integer_magnitude(&[0xff, 0x00]), [0x01, 0x00]);
        assert_eq!(integer_magnitude(&[0x80]), [0x80]);
    }
}
