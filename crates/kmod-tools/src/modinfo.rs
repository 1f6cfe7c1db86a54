//! `modinfo`: a module's `.modinfo`, printed the way Linux's (kmod's) modinfo prints it.

use std::fmt::Write;

use crate::ko::ModuleFile;

/// One parameter as modinfo shows it, merged from `parm=` and `parmtype=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Description (`parm=`).
    pub description: Option<String>,
    /// Type (`parmtype=`).
    pub ty: Option<String>,
}

impl Param {
    /// `NAME:DESC (TYPE)` / `NAME:DESC` / `NAME:TYPE`, as kmod prints a parameter.
    pub fn display(&self) -> String {
        match (&self.description, &self.ty) {
            (None, ty) => format!("{}:{}", self.name, ty.as_deref().unwrap_or("")),
            (Some(d), Some(t)) => format!("{}:{d} ({t})", self.name),
            (Some(d), None) => format!("{}:{d}", self.name),
        }
    }
}

/// The parameters in the order kmod prints them: the reverse of their first appearance in
/// `.modinfo` (Linux modules store them last-declared first, so this is declaration order).
/// Entries without a `:` are skipped, as kmod does (with a complaint on stderr).
pub fn params(module: &ModuleFile) -> Vec<Param> {
    let mut list: Vec<Param> = Vec::new();
    for (key, value) in &module.modinfo {
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

/// `key:` padded like kmod's `printf("%s:%-*s", key, 15 - keylen, "")` (which pads long
/// keys too, because a negative `*` width means left-justify).
fn label(key: &str) -> String {
    let pad = 15usize.abs_diff(key.len());
    format!("{key}:{}", " ".repeat(pad))
}

/// What modinfo prints for one module: `filename:` first (`filename` as given, made
/// absolute like kmod), then every `.modinfo` key in file order, then the `parm:` lines.
/// With `field`, only that field's values, one per `separator`-terminated record.
pub fn render(module: &ModuleFile, filename: &str, field: Option<&str>, separator: char) -> String {
    let mut out = String::new();
    match field {
        Some("filename") => {
            let _ = write!(out, "{filename}{separator}");
        }
        Some("parm") => {
            for p in params(module) {
                let _ = write!(out, "{}{separator}", p.display());
            }
        }
        Some(field) => {
            for (key, value) in &module.modinfo {
                if key == field {
                    let _ = write!(out, "{value}{separator}");
                }
            }
        }
        None => {
            let _ = write!(out, "{:<16}{filename}{separator}", "filename:");
            for (key, value) in &module.modinfo {
                if key == "parm" || key == "parmtype" {
                    continue;
                }
                if separator == '\0' {
                    let _ = write!(out, "{key}={value}{separator}");
                } else {
                    let _ = write!(out, "{}{value}{separator}", label(key));
                }
            }
            for p in params(module) {
                let _ = write!(out, "{:<16}{}{separator}", "parm:", p.display());
            }
        }
    }
    out
}

/// The file name modinfo prints: absolute, by joining a relative path to the current
/// directory without normalising it (what kmod shows).
pub fn display_filename(path: &std::path::Path) -> String {
    if path.is_absolute() {
        return path.display().to_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => format!("{}/{}", cwd.display(), path.display()),
        Err(_) => path.display().to_string(),
    }
}
