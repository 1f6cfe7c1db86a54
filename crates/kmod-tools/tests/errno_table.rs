//! The one errno table (`kmod_api::errno`) is Linux's: every name and number of Linux's own
//! `asm-generic/errno*.h` and nothing else, and each text is what glibc's `strerror` prints,
//! unknown numbers included (`Unknown error N`).

use std::collections::BTreeMap;

use kmod_api::Errno;
use kmod_api::errno::{TABLE, describe};

/// Linux's UAPI errno headers (package linux-libc-dev on Debian, a dependency of libc6-dev).
const LINUX_HEADERS: [&str; 2] = [
    "/usr/include/asm-generic/errno-base.h",
    "/usr/include/asm-generic/errno.h",
];

/// `NAME -> number` of every `#define EXXX <number>` in Linux's headers, and the aliases
/// (`#define EWOULDBLOCK EAGAIN`) separately.
fn linux_errnos() -> (BTreeMap<String, i32>, BTreeMap<String, String>) {
    let mut numbers = BTreeMap::new();
    let mut aliases = BTreeMap::new();
    for path in LINUX_HEADERS {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{path}: {e}; install Linux's UAPI headers (Debian: linux-libc-dev)")
        });
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            if !name.starts_with('E') || name.starts_with("_") {
                continue;
            }
            match value.parse::<i32>() {
                Ok(n) => {
                    numbers.insert(name.to_owned(), n);
                }
                Err(_) => {
                    aliases.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }
    (numbers, aliases)
}

#[test]
fn table_is_linuxs_errno_list() {
    let (linux, aliases) = linux_errnos();
    assert!(linux.len() > 100, "parsed only {} errnos", linux.len());
    let ours: BTreeMap<String, i32> = TABLE
        .iter()
        .map(|e| (e.name.to_owned(), e.number))
        .collect();
    assert_eq!(ours.len(), TABLE.len(), "a name appears twice in the table");
    assert_eq!(
        ours, linux,
        "kmod_api::errno::TABLE differs from Linux's headers"
    );
    // Kmod-api's aliases are Linux's.
    for (alias, target, ours) in [
        ("EWOULDBLOCK", "EAGAIN", Errno::EWOULDBLOCK),
        ("EDEADLOCK", "EDEADLK", Errno::EDEADLOCK),
        ("ENOTSUP", "EOPNOTSUPP", Errno::ENOTSUP),
    ] {
        let linux_target = aliases.get(alias).map(String::as_str);
        // glibc, not Linux, defines ENOTSUP; the others are Linux's.
        if alias != "ENOTSUP" {
            assert_eq!(linux_target, Some(target), "{alias}");
        }
        assert_eq!(ours.name(), Some(target), "{alias}");
    }
}

#[test]
fn table_is_ordered_and_consistent_with_errno() {
    for pair in TABLE.windows(2) {
        assert!(pair[0].number < pair[1].number, "{pair:?} out of order");
    }
    for e in TABLE {
        let errno = Errno::new(e.number).expect("positive");
        assert_eq!(errno.name(), Some(e.name));
        assert_eq!(errno.text(), Some(e.text));
        assert_eq!(errno.to_string(), e.name);
        assert_eq!(errno.describe().to_string(), e.text);
        assert_eq!(Errno::check(errno.to_ret()), Err(errno));
        assert!(!e.text.is_empty() && !e.text.ends_with('.'), "{e:?}");
    }
    assert_eq!(Errno::EINVAL.get(), 22);
    assert_eq!(kmod_api::errno::values::ENOSPC, 28);
    assert_eq!(describe(41).to_string(), "Unknown error 41");
    assert_eq!(describe(4242).to_string(), "Unknown error 4242");
    assert_eq!(Errno::new(4242).map(Errno::name), Some(None));
}

/// Every text is glibc's, byte for byte, for every number up to past the table's end.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn texts_are_glibcs_strerror() {
    for n in 1..=200i32 {
        // SAFETY: strerror returns a pointer to a NUL-terminated string that stays valid until
        // the next strerror call on this thread; it is copied out at once.
        let glibc = unsafe { std::ffi::CStr::from_ptr(libc::strerror(n)) }
            .to_string_lossy()
            .into_owned();
        assert_eq!(describe(n as u64).to_string(), glibc, "errno {n}");
    }
}
