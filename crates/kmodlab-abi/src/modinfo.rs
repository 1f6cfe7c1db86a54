//! Printing a module's `.modinfo` the way Linux's `modinfo` does. Shared by the host tool
//! (`kmodlab modinfo`) and the guest shell's `modinfo`, so the two print the same bytes.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// One module parameter, from its `parm=` and `parmtype=` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Name.
    pub name: String,
    /// Description (`parm=NAME:DESC`).
    pub description: Option<String>,
    /// Type (`parmtype=NAME:TYPE`).
    pub ty: Option<String>,
}

impl Param {
    /// `NAME:DESC (TYPE)`, as modinfo prints a `parm:` line.
    pub fn display(&self) -> String {
        match (&self.description, &self.ty) {
            (None, ty) => alloc::format!("{}:{}", self.name, ty.as_deref().unwrap_or("")),
            (Some(d), Some(t)) => alloc::format!("{}:{d} ({t})", self.name),
            (Some(d), None) => alloc::format!("{}:{d}", self.name),
        }
    }
}

/// The parameters described by `modinfo`'s key/value pairs, in the order modinfo prints
/// them (the reverse of their first appearance, as kmod does).
pub fn params<'a>(modinfo: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Param> {
    let mut list: Vec<Param> = Vec::new();
    for (key, value) in modinfo {
        let is_parm = key == "parm";
        if !is_parm && key != "parmtype" {
            continue;
        }
        let Some((name, rest)) = value.split_once(':') else {
            continue;
        };
        let index = match list.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                list.push(Param {
                    name: name.to_owned(),
                    description: None,
                    ty: None,
                });
                list.len() - 1
            }
        };
        if is_parm {
            list[index].description = Some(rest.to_owned());
        } else {
            list[index].ty = Some(rest.to_owned());
        }
    }
    list.reverse();
    list
}

/// kmod's form of a binary value (`sig_key`, `signature`): upper-case hex bytes joined by
/// `:`, with a line break and two tabs after every 20 bytes (`kmod_module_hex_to_str`).
pub fn kmod_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 + bytes.len() / 20 * 3);
    for (i, b) in bytes.iter().enumerate() {
        let _ = write!(out, "{b:02X}");
        if i + 1 < bytes.len() {
            out.push(':');
            if (i + 1) % 20 == 0 {
                out.push_str("\n\t\t");
            }
        }
    }
    out
}

/// The fields kmod's `modinfo` adds after a signed module's `.modinfo` entries, in its order:
/// `sig_id`, `signer`, `sig_key`, `sig_hashalgo`, `signature`. Append them to the pairs
/// given to [`render`]. `signer` is shown up to its first NUL byte, as kmod prints it
/// (bytes that are not UTF-8 are replaced).
pub fn signature_fields(
    id_type: &str,
    signer: &[u8],
    key_id: &[u8],
    hash_algo: &str,
    signature: &[u8],
) -> Vec<(&'static str, String)> {
    let signer = signer.split(|&b| b == 0).next().unwrap_or(&[]);
    alloc::vec![
        ("sig_id", id_type.to_owned()),
        ("signer", String::from_utf8_lossy(signer).into_owned()),
        ("sig_key", kmod_hex(key_id)),
        ("sig_hashalgo", hash_algo.to_owned()),
        ("signature", kmod_hex(signature)),
    ]
}

fn label(key: &str) -> String {
    let pad = 15usize.abs_diff(key.len());
    alloc::format!("{key}:{}", " ".repeat(pad))
}

/// What modinfo prints for a module file called `filename` whose `.modinfo` is `modinfo`:
/// every field (`field` = `None`) or just one, each followed by `separator` (`\n`, or `\0`
/// for `-0`).
pub fn render<'a>(
    modinfo: &[(&'a str, &'a str)],
    filename: &str,
    field: Option<&str>,
    separator: char,
) -> String {
    let mut out = String::new();
    match field {
        Some("filename") => {
            let _ = write!(out, "{filename}{separator}");
        }
        Some("parm") => {
            for p in params(modinfo.iter().copied()) {
                let _ = write!(out, "{}{separator}", p.display());
            }
        }
        Some(field) => {
            for (key, value) in modinfo {
                if *key == field {
                    let _ = write!(out, "{value}{separator}");
                }
            }
        }
        None => {
            let _ = write!(out, "{:<16}{filename}{separator}", "filename:");
            for (key, value) in modinfo {
                if *key == "parm" || *key == "parmtype" {
                    continue;
                }
                if separator == '\0' {
                    let _ = write!(out, "{key}={value}{separator}");
                } else {
                    let _ = write!(out, "{}{value}{separator}", label(key));
                }
            }
            for p in params(modinfo.iter().copied()) {
                let _ = write!(out, "{:<16}{}{separator}", "parm:", p.display());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &[(&str, &str)] = &[
        ("license", "GPL"),
        ("parm", "count:how many"),
        ("parmtype", "count:int"),
        ("parmtype", "verbose:bool"),
        ("name", "params"),
    ];

    #[test]
    fn renders_like_linux_modinfo() {
        let out = render(INFO, "/lib/modules/params.ko", None, '\n');
        assert_eq!(
            out,
            "filename:       /lib/modules/params.ko\nlicense:        GPL\nname:           params\n\
             parm:           verbose:bool\nparm:           count:how many (int)\n"
        );
    }

    #[test]
    fn hex_wraps_like_kmod() {
        assert_eq!(kmod_hex(&[]), "");
        assert_eq!(kmod_hex(&[0x0a, 0xbc]), "0A:BC");
        let twenty_one: Vec<u8> = (0..21).collect();
        assert_eq!(
            kmod_hex(&twenty_one),
            "00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:\n\t\t14"
        );
        let twenty: Vec<u8> = (0..20).collect();
        assert!(!kmod_hex(&twenty).contains('\n'));
    }

    #[test]
    fn signature_fields_render_after_modinfo() {
        let sig = signature_fields("PKCS#7", b"me\0junk", &[1, 2], "sha256", &[0xff]);
        let mut pairs: Vec<(&str, &str)> = INFO.to_vec();
        pairs.extend(sig.iter().map(|(k, v)| (*k, v.as_str())));
        let out = render(&pairs, "/m.ko", None, '\n');
        assert!(
            out.contains(
                "name:           params\nsig_id:         PKCS#7\nsigner:         me\n\
                 sig_key:        01:02\nsig_hashalgo:   sha256\nsignature:      FF\nparm:"
            ),
            "{out}"
        );
        assert_eq!(render(&pairs, "/m.ko", Some("sig_key"), '\n'), "01:02\n");
    }

    #[test]
    fn renders_single_fields() {
        assert_eq!(render(INFO, "f", Some("license"), '\n'), "GPL\n");
        assert_eq!(render(INFO, "f", Some("filename"), '\0'), "f\0");
        assert_eq!(
            render(INFO, "f", Some("parm"), '\n'),
            "verbose:bool\ncount:how many (int)\n"
        );
    }
}
