//! What a report records about where it was measured: CPU, mitigations, load, git state,
//! date.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::report::Git;

/// `/sys/devices/system/cpu/vulnerabilities`: file name → its one-line state.
pub fn mitigations() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu/vulnerabilities") else {
        return out;
    };
    for entry in dir.flatten() {
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            out.insert(
                entry.file_name().to_string_lossy().into_owned(),
                text.trim().to_owned(),
            );
        }
    }
    out
}

/// The 1/5/15-minute load averages (zeros if unreadable).
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = [0.0; 3];
    for (slot, field) in v.iter_mut().zip(text.split_whitespace()) {
        *slot = field.parse().unwrap_or(0.0);
    }
    v
}

/// A short, file-name-safe form of a CPU model: vendor marketing words dropped, the first
/// two distinctive words kept (`Intel(R) Xeon(R) Processor` → `xeon`, `AMD EPYC 7B13
/// 64-Core Processor` → `epyc-7b13`).
pub fn cpu_short(model: &str) -> String {
    const NOISE: &[&str] = &[
        "intel",
        "amd",
        "(r)",
        "(tm)",
        "cpu",
        "processor",
        "core",
        "@",
        "with",
        "radeon",
        "graphics",
        "genuine",
        "authentic",
    ];
    let words: Vec<String> = model
        .to_lowercase()
        .replace("(r)", " ")
        .replace("(tm)", " ")
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty() && !NOISE.contains(w))
        .filter(|w| !w.ends_with("-core") && !w.ends_with("ghz"))
        .map(|w| {
            w.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        })
        .filter(|w: &String| !w.is_empty())
        .take(2)
        .collect();
    if words.is_empty() {
        "cpu".into()
    } else {
        words.join("-")
    }
}

/// The git commit and dirty flag of the tree at `repo` (the source tree the binary was built
/// from), if it is a git checkout and git is installed.
pub fn git(repo: &Path) -> Git {
    let run = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = run(&["rev-parse", "HEAD"]);
    let dirty = commit
        .as_ref()
        .and_then(|_| run(&["status", "--porcelain", "--untracked-files=no"]))
        .map(|s| !s.is_empty());
    Git { commit, dirty }
}

/// The source tree this binary was built from.
pub fn source_tree() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `(year, month, day)` of a day count since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Now, UTC: `(YYYY-MM-DD, RFC 3339 timestamp)`.
pub fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let stamp = format!("{date}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60);
    (date, stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn cpu_short_names() {
        assert_eq!(cpu_short("Intel(R) Xeon(R) Processor"), "xeon");
        assert_eq!(cpu_short("AMD EPYC 7B13 64-Core Processor"), "epyc-7b13");
        assert_eq!(
            cpu_short("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"),
            "i7-8650u"
        );
        assert_eq!(cpu_short(""), "cpu");
    }
}
