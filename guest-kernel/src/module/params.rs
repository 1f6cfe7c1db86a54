//! Module parameters (ABI.md "Parameters"): parsing `key=value …` against the types the
//! module declares in `.modinfo`, and writing the values into the module's storage
//! (`__kmod_param_NAME`) before its init runs.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kmod_loader::{Loaded, Permission, RegionKind};

use super::ModError;

/// Longest `charp` value accepted.
const MAX_STRING: usize = 1024;

/// A parsed, type-checked parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `int`: an i64.
    Int(i64),
    /// `bool`.
    Bool(bool),
    /// `charp`: the bytes of the string.
    Str(String),
}

/// Splits `key=value key2="quoted value" flag` into pairs (a bare key has no value).
fn split(params: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = params.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            out.push((key, None));
            continue;
        }
        chars.next();
        let mut value = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
            } else if c.is_whitespace() && !quoted {
                break;
            } else {
                value.push(c);
            }
            chars.next();
        }
        out.push((key, Some(value)));
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16).ok()?
    } else {
        digits.parse::<i128>().ok()?
    };
    let v = if neg { -magnitude } else { magnitude };
    i64::try_from(v).ok()
}

fn parse_bool(s: Option<&str>) -> Option<bool> {
    match s {
        None => Some(true),
        Some("1" | "y" | "Y" | "true" | "on") => Some(true),
        Some("0" | "n" | "N" | "false" | "off") => Some(false),
        Some(_) => None,
    }
}

/// Parses `params` against the module's declared parameter types (`parmtype=NAME:TYPE` in
/// its `.modinfo`). Unknown names and bad values are errors; nothing is written yet.
pub fn parse<'a>(
    module: &str,
    modinfo: impl Iterator<Item = (&'a str, &'a str)>,
    params: &str,
) -> Result<Vec<(String, Value)>, ModError> {
    let types: Vec<(&str, &str)> = modinfo
        .filter(|(k, _)| *k == "parmtype")
        .filter_map(|(_, v)| v.split_once(':'))
        .collect();
    let mut out: Vec<(String, Value)> = Vec::new();
    for (key, raw) in split(params) {
        let bad = |why| ModError::BadParam {
            module: module.to_string(),
            param: key.clone(),
            why,
        };
        let Some(&(_, ty)) = types.iter().find(|(n, _)| *n == key) else {
            return Err(ModError::UnknownParam {
                module: module.to_string(),
                param: key,
            });
        };
        let value = match ty {
            "int" => Value::Int(
                raw.as_deref()
                    .and_then(parse_int)
                    .ok_or_else(|| bad("not an integer in the i64 range"))?,
            ),
            "bool" => Value::Bool(
                parse_bool(raw.as_deref()).ok_or_else(|| bad("not one of 1/0/y/n/true/false"))?,
            ),
            "charp" => {
                let s = raw.ok_or_else(|| bad("a string parameter needs a value"))?;
                if s.len() > MAX_STRING {
                    return Err(bad("longer than 1024 bytes"));
                }
                Value::Str(s)
            }
            _ => return Err(bad("the module declares a type this kernel does not know")),
        };
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    }
    Ok(out)
}

/// Writes parsed values into the module's core region (`core` is its bytes, writable at this
/// point of the load), checking that each parameter's storage lies wholly inside the
/// writable part of core. `charp` values are copied into kernel memory the module keeps
/// (`strings`) and the storage points at the copy.
pub fn apply(
    module: &str,
    loaded: &Loaded,
    values: &[(String, Value)],
    core: &mut [u8],
    strings: &mut Vec<Box<[u8]>>,
) -> Result<(), ModError> {
    for (name, value) in values {
        let bad = |why| ModError::BadParam {
            module: module.to_string(),
            param: name.clone(),
            why,
        };
        let symbol = alloc::format!("__kmod_param_{name}");
        let loc = loaded
            .symbol(&symbol)
            .ok_or_else(|| bad("the module declares it but has no storage for it"))?;
        if loc.region != RegionKind::Core || loc.permission != Permission::ReadWrite {
            return Err(bad("its storage is not in the module's writable data"));
        }
        let bytes: Vec<u8> = match value {
            Value::Int(v) => v.to_le_bytes().to_vec(),
            Value::Bool(b) => alloc::vec![u8::from(*b)],
            Value::Str(s) => {
                let copy: Box<[u8]> = s.as_bytes().into();
                let mut b = (copy.as_ptr() as u64).to_le_bytes().to_vec();
                b.extend_from_slice(&(copy.len() as u64).to_le_bytes());
                strings.push(copy);
                b
            }
        };
        let start = usize::try_from(loc.offset).map_err(|_| bad("storage offset overflows"))?;
        let dst = start
            .checked_add(bytes.len())
            .and_then(|end| core.get_mut(start..end))
            .ok_or_else(|| bad("its storage lies outside the module"))?;
        dst.copy_from_slice(&bytes);
    }
    Ok(())
}
