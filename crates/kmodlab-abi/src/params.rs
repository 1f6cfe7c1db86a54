//! Module parameters (`modules/ABI.md`, "Parameters"): parsing `key=value …` against the
//! types a module declares in its `.modinfo` (`parmtype=NAME:TYPE`), as the kernel does
//! before it loads anything. Writing the values into the module is the kernel's part.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Longest `charp` value accepted.
pub const MAX_STRING: usize = 1024;

/// A parsed, type-checked parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `int`: an i64.
    Int(i64),
    /// `bool`.
    Bool(bool),
    /// `charp`: the string.
    Str(String),
}

impl Value {
    /// The bytes the module's storage gets for `Int` and `Bool` (ABI.md); `None` for `Str`,
    /// whose storage points at a copy the kernel owns.
    pub fn storage_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Value::Int(v) => Some(v.to_le_bytes().to_vec()),
            Value::Bool(b) => Some(alloc::vec![u8::from(*b)]),
            Value::Str(_) => None,
        }
    }
}

/// Why parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// The module declares no parameter of that name.
    Unknown {
        /// The name given.
        param: String,
    },
    /// The value does not fit the declared type.
    BadValue {
        /// The parameter.
        param: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Unknown { param } => write!(f, "unknown parameter '{param}'"),
            ParamError::BadValue { param, why } => {
                write!(f, "invalid value for parameter '{param}': {why}")
            }
        }
    }
}

impl core::error::Error for ParamError {}

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

/// An i64 in decimal or `0x` hex, with an optional sign.
pub fn parse_int(s: &str) -> Option<i64> {
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

/// A bool as Linux's `param_set_bool` takes it; a bare name means true.
pub fn parse_bool(s: Option<&str>) -> Option<bool> {
    match s {
        None => Some(true),
        Some("1" | "y" | "Y" | "true" | "on") => Some(true),
        Some("0" | "n" | "N" | "false" | "off") => Some(false),
        Some(_) => None,
    }
}

/// Parses `params` against the parameter types declared in `modinfo`'s `parmtype=` pairs.
/// A repeated name keeps its last value. Nothing is written anywhere.
pub fn parse<'a>(
    modinfo: impl Iterator<Item = (&'a str, &'a str)>,
    params: &str,
) -> Result<Vec<(String, Value)>, ParamError> {
    let types: Vec<(&str, &str)> = modinfo
        .filter(|(k, _)| *k == "parmtype")
        .filter_map(|(_, v)| v.split_once(':'))
        .collect();
    let mut out: Vec<(String, Value)> = Vec::new();
    for (key, raw) in split(params) {
        let bad = |why| ParamError::BadValue {
            param: key.clone(),
            why,
        };
        let Some(&(_, ty)) = types.iter().find(|(n, _)| *n == key) else {
            return Err(ParamError::Unknown { param: key });
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use proptest::prelude::*;

    const INFO: &[(&str, &str)] = &[
        ("parm", "count:how many"),
        ("parmtype", "count:int"),
        ("parmtype", "verbose:bool"),
        ("parmtype", "greeting:charp"),
        ("parmtype", "odd:float"),
    ];

    fn p(params: &str) -> Result<Vec<(String, Value)>, ParamError> {
        parse(INFO.iter().copied(), params)
    }

    #[test]
    fn parses_every_type() {
        assert_eq!(
            p(r#"count=-0x10 verbose greeting="hi there""#).unwrap(),
            [
                ("count".to_string(), Value::Int(-16)),
                ("verbose".to_string(), Value::Bool(true)),
                ("greeting".to_string(), Value::Str("hi there".into())),
            ]
        );
        assert_eq!(
            p("verbose=n").unwrap(),
            [("verbose".to_string(), Value::Bool(false))]
        );
        assert_eq!(p("").unwrap(), []);
        assert_eq!(
            p("count=1 count=2").unwrap(),
            [("count".to_string(), Value::Int(2))]
        );
    }

    #[test]
    fn refuses_unknown_names_and_bad_values() {
        assert_eq!(
            p("bogus=1"),
            Err(ParamError::Unknown {
                param: "bogus".into()
            })
        );
        assert!(matches!(p("count=x"), Err(ParamError::BadValue { .. })));
        assert!(matches!(
            p("count=9223372036854775808"),
            Err(ParamError::BadValue { .. })
        ));
        assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
        assert!(matches!(
            p("verbose=maybe"),
            Err(ParamError::BadValue { .. })
        ));
        assert!(matches!(p("greeting"), Err(ParamError::BadValue { .. })));
        assert!(matches!(p("odd=1.5"), Err(ParamError::BadValue { .. })));
        let long = alloc::format!("greeting={}", "x".repeat(MAX_STRING + 1));
        assert!(matches!(p(&long), Err(ParamError::BadValue { .. })));
    }

    #[test]
    fn storage_bytes_follow_the_abi() {
        assert_eq!(
            Value::Int(-2).storage_bytes().unwrap(),
            (-2i64).to_le_bytes()
        );
        assert_eq!(Value::Bool(true).storage_bytes().unwrap(), [1]);
        assert_eq!(Value::Str("x".into()).storage_bytes(), None);
    }

    proptest! {
        #[test]
        fn arbitrary_parameter_strings_never_panic(s in ".{0,200}") {
            let _ = p(&s);
        }
    }
}
