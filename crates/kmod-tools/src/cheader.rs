//! The generated blocks of `modules/include/kmod.h`: the kernel API, from kmod-api's list,
//! and the error numbers, from [`kmod_api::errno::TABLE`], so that the C header cannot drift
//! apart from [`kmod_api::KERNEL_API`] or the errno table (a test compares them).

use kmod_api::ApiFunction;

/// First line of the generated block in kmod.h.
pub const BEGIN_MARKER: &str = "/* BEGIN KERNEL API (generated; do not edit by hand) */";
/// Last line of the generated block in kmod.h.
pub const END_MARKER: &str = "/* END KERNEL API */";

/// The C type for a Rust type of the kernel API list, or `None` if it has no mapping yet.
pub fn c_type(rust: &str) -> Option<&'static str> {
    let compact: String = rust.chars().filter(|c| !c.is_whitespace()).collect();
    Some(match compact.as_str() {
        "" => "void",
        "*constu8" => "const void *",
        "*mutu8" => "void *",
        "*mut::core::ffi::c_void" | "*mutcore::ffi::c_void" => "void *",
        "usize" => "size_t",
        "u64" => "uint64_t",
        "u32" => "uint32_t",
        "i32" => "int32_t",
        "i64" => "int64_t",
        "*mutu64" => "uint64_t *",
        "*mutusize" => "size_t *",
        s if s.ends_with("ServiceHandler") => "kmod_service_handler_t",
        _ => return None,
    })
}

fn declaration(ty: &str, name: &str) -> String {
    if ty.ends_with('*') {
        format!("{ty}{name}")
    } else {
        format!("{ty} {name}")
    }
}

/// The C prototype of one kernel API function, with its documentation as a comment.
pub fn prototype(f: &ApiFunction) -> Result<String, String> {
    let map =
        |rust: &str| c_type(rust).ok_or_else(|| format!("{}: no C type for `{rust}`", f.name));
    let mut out = String::from("/*\n");
    for line in f.doc.lines() {
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.is_empty() {
            out.push_str(" *\n");
        } else {
            out.push_str(" * ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(" */\n");
    let args = if f.args.is_empty() {
        "void".to_owned()
    } else {
        f.args
            .iter()
            .map(|(name, ty)| Ok(declaration(map(ty)?, name)))
            .collect::<Result<Vec<_>, String>>()?
            .join(", ")
    };
    out.push_str(&declaration(map(f.ret)?, f.name));
    out.push('(');
    out.push_str(&args);
    out.push_str(");\n");
    Ok(out)
}

/// The whole generated block, markers included.
pub fn kernel_api_block() -> Result<String, String> {
    let mut out = String::from(BEGIN_MARKER);
    out.push('\n');
    for f in kmod_api::KERNEL_API {
        out.push_str(&prototype(f)?);
    }
    out.push_str(END_MARKER);
    Ok(out)
}

/// First line of the generated errno block in kmod.h.
pub const ERRNO_BEGIN_MARKER: &str =
    "/* BEGIN ERRNO (generated from kmod_api::errno; do not edit by hand) */";
/// Last line of the generated errno block in kmod.h.
pub const ERRNO_END_MARKER: &str = "/* END ERRNO */";

/// The errno block, markers included: one `#define` per row of the table, with its text.
pub fn errno_block() -> String {
    let mut out = String::from(ERRNO_BEGIN_MARKER);
    out.push('\n');
    for e in kmod_api::errno::TABLE {
        out.push_str(&format!(
            "#define {} {} /* {} */\n",
            e.name, e.number, e.text
        ));
    }
    out.push_str(ERRNO_END_MARKER);
    out
}

/// Byte range of the block from `begin` to `end` (markers included) in `header`.
fn block_range(header: &str, begin: &str, end: &str) -> Option<core::ops::Range<usize>> {
    let start = header.find(begin)?;
    let stop = header[start..].find(end)? + start + end.len();
    Some(start..stop)
}

/// `header` with its generated kernel API block replaced by `block`, or `None` if the markers
/// are missing.
pub fn replace_block(header: &str, block: &str) -> Option<String> {
    let r = block_range(header, BEGIN_MARKER, END_MARKER)?;
    Some(format!(
        "{}{}{}",
        &header[..r.start],
        block,
        &header[r.end..]
    ))
}

/// The generated kernel API block currently in `header`.
pub fn current_block(header: &str) -> Option<&str> {
    block_range(header, BEGIN_MARKER, END_MARKER).map(|r| &header[r])
}

/// `header` with its generated errno block replaced by `block`, or `None` if the markers are
/// missing.
pub fn replace_errno_block(header: &str, block: &str) -> Option<String> {
    let r = block_range(header, ERRNO_BEGIN_MARKER, ERRNO_END_MARKER)?;
    Some(format!(
        "{}{}{}",
        &header[..r.start],
        block,
        &header[r.end..]
    ))
}

/// The generated errno block currently in `header`.
pub fn current_errno_block(header: &str) -> Option<&str> {
    block_range(header, ERRNO_BEGIN_MARKER, ERRNO_END_MARKER).map(|r| &header[r])
}
