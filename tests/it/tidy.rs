//! ARCHITECTURE.md's invariants that a reading of the source tree can check. Each test names
//! the file and line that breaks its rule, so the fix is one look away.

use std::path::{Path, PathBuf};

/// Every `.rs` file below `src/<under>`, with its path relative to the crate (`src/http/api.rs`).
fn sources(under: &str) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src").join(under), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no source under src/{under}");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

/// The lines of code, numbered from 1, without whole-line comments (`//`, `///`, `//!`): prose
/// may speak of anything, code may not.
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim_start().starts_with("//"))
}

/// `file:line: text` for every line of code under `src/<under>` (outside the files `exempt`
/// names) that `bad` says breaks the rule.
fn offenders(under: &str, exempt: &[&str], bad: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in sources(under) {
        if exempt.iter().any(|e| path == *e || path.starts_with(&format!("{e}/"))) {
            continue;
        }
        for (n, line) in code(&text) {
            if bad(line) {
                out.push(format!("{path}:{n}: {}", line.trim()));
            }
        }
    }
    out
}

#[test]
fn only_the_store_names_sled_or_postcard() {
    let found = offenders("", &["src/store"], |l| {
        ["sled::", "postcard::", "use sled", "use postcard"].iter().any(|w| l.contains(w))
    });
    assert!(found.is_empty(), "store bytes belong to src/store/:\n{}", found.join("\n"));
}

#[test]
fn wall_clock_time_comes_from_clock() {
    let found = offenders("", &["src/clock.rs"], |l| l.contains("SystemTime::now"));
    assert!(found.is_empty(), "read the time from Clock:\n{}", found.join("\n"));
}

/// A type name that ends in a version (`EventV1`, `JobV2`): a record's shape on disk. `V4` in
/// `IpAddr::V4` is a variant, not a name that ends in one.
fn names_a_record_version(line: &str) -> bool {
    let b = line.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (1..b.len()).any(|i| {
        if !(b[i] == b'V' && b[i - 1].is_ascii_lowercase() && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            return false;
        }
        let end = (i + 1..b.len()).find(|&j| !b[j].is_ascii_digit()).unwrap_or(b.len());
        let start = (0..i).rev().find(|&j| !ident(b[j])).map_or(0, |j| j + 1);
        !b.get(end).copied().is_some_and(ident) && b[start].is_ascii_uppercase()
    })
}

#[test]
fn record_versions_stay_inside_the_store_records() {
    assert!(names_a_record_version("let e: EventV1 = x;"));
    assert!(names_a_record_version("Vec<AttemptV2>"));
    assert!(!names_a_record_version("let event = Event::new(); // V1"));
    assert!(!names_a_record_version("IpAddr::V4(ip)"));
    let found = offenders("", &["src/store/record.rs"], names_a_record_version);
    assert!(found.is_empty(), "record versions are private to src/store/record.rs:\n{}", found.join("\n"));
}
