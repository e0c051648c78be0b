//! ARCHITECTURE.md's invariants that a reading of the source tree can check. Each test names
//! the file and line that breaks its rule, so the fix is one look away.

use std::collections::{BTreeMap, BTreeSet};
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

/// Whether the line names the `redis` crate (or a key of stagehook's in Redis), rather than
/// stagehook's own `redis` module (`crate::redis::`, `stagehook::redis::`, `super::redis::`).
fn names_the_redis_crate(line: &str) -> bool {
    let mut l = line.to_string();
    for own in ["crate::redis::", "stagehook::redis::", "super::redis::"] {
        l = l.replace(own, "");
    }
    ["redis::", "use redis", "}claim:", "}rate:"].iter().any(|w| l.contains(w))
}

/// The Redis client, its scripts and the key layout in Redis live in `src/redis/`; the rest of
/// the code asks `Redis` for decisions.
#[test]
fn only_the_redis_module_speaks_to_redis() {
    assert!(names_the_redis_crate("use redis::aio::ConnectionManager;"));
    assert!(names_the_redis_crate("let key = format!(\"{{{p}}}claim:{id}\");"));
    assert!(!names_the_redis_crate("use crate::redis::{Claim, Pending, Redis, Unavailable};"));
    assert!(!names_the_redis_crate("let redis = crate::redis::Redis::open(&settings, clock)?;"));
    let found = offenders("", &["src/redis"], names_the_redis_crate);
    assert!(found.is_empty(), "Redis belongs to src/redis/:\n{}", found.join("\n"));
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
    // Besides a versioned name: the version-free name of a record's fields and the record enums.
    let found = offenders("", &["src/store/record"], |l| {
        names_a_record_version(l) || ["EventFields", "Record::"].iter().any(|w| l.contains(w))
    });
    assert!(found.is_empty(), "record versions are private to src/store/record/:\n{}", found.join("\n"));
}

/// Outside the store, counters are read through `Counters`: no file spells a counter's name.
#[test]
fn counters_are_named_only_in_the_store() {
    const PREFIXES: [&str; 13] = [
        "events",
        "duplicates",
        "items",
        "minute",
        "second",
        "queue",
        "rejected",
        "hist",
        "failures",
        "delivered_after",
        "dead_letters",
        "retention",
        "segment",
    ];
    let found = offenders("", &["src/store"], |l| PREFIXES.iter().any(|p| l.contains(&format!("\"{p}/"))));
    assert!(found.is_empty(), "read counters through store::Counters:\n{}", found.join("\n"));
}

/// `config` calls into `providers/` through the registry, never the other way round, so the two
/// form no circle.
#[test]
fn providers_and_config_form_no_circle() {
    let found = offenders("providers", &[], |l| l.contains("crate::config") || l.contains("super::super::config"));
    assert!(found.is_empty(), "nothing in providers/ reads config:\n{}", found.join("\n"));
    let found = offenders("config", &[], |l| {
        l.match_indices("providers::").any(|(i, _)| !l[i..].starts_with("providers::registry"))
    });
    assert!(found.is_empty(), "config reaches providers/ only through providers::registry:\n{}", found.join("\n"));
}

/// The HTTP layer names no kind and no built-in endpoint; what it needs of a provider, it asks
/// through the trait (`dry_run_media_type`, `secret_headers`, `answer`).
#[test]
fn the_http_layer_names_no_provider() {
    use stagehook::providers::registry::built_ins;
    use stagehook::providers::ProviderKind;
    let names: Vec<String> = ProviderKind::ALL
        .iter()
        .map(|k| k.as_str())
        .chain(built_ins().flat_map(|(_, s)| [s.name, s.path]))
        .map(|n| format!("\"{n}\""))
        .collect();
    assert!(names.len() >= 9, "{names:?}");
    let found = offenders("http", &[], |l| {
        names.iter().any(|n| l.contains(n.as_str()))
            || ProviderKind::ALL.iter().any(|k| l.contains(&format!("providers::{}::", k.as_str())))
    });
    assert!(found.is_empty(), "http/ names a provider:\n{}", found.join("\n"));
}

/// The error type of every `Result<..>` the line names: its last top-level argument.
fn error_types(line: &str) -> Vec<&str> {
    line.match_indices("Result<")
        .filter_map(|(at, r)| {
            let (mut depth, mut last) = (0, at + r.len());
            for (i, c) in line[at + r.len()..].char_indices() {
                let i = at + r.len() + i;
                match c {
                    '<' | '(' | '[' => depth += 1,
                    ',' if depth == 0 => last = i + 1,
                    '>' if depth == 0 => return Some(line[last..i].trim()),
                    '>' | ')' | ']' => depth -= 1,
                    _ => {}
                }
            }
            None
        })
        .collect()
}

/// Whether the line names a `Result<_, String>`.
fn has_string_error(line: &str) -> bool {
    error_types(line).contains(&"String")
}

/// Errors are types at module boundaries. A `String` error is for a person, at the edge, and
/// the line above it says why (`// A String: ...`).
#[test]
fn a_string_error_says_why() {
    assert!(has_string_error("fn f() -> Result<(), String> {"));
    assert!(has_string_error("fn f() -> Result<Vec<(u8, u8)>, String> {"));
    assert!(!has_string_error("fn f(q: &BTreeMap<String, String>) -> Result<Response, ApiError> {"));
    assert!(!has_string_error("fn f() -> Result<String, Error> {"));
    let mut unexplained = Vec::new();
    let mut count = 0;
    for (path, text) in sources("") {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") || !has_string_error(l) {
                continue;
            }
            count += 1;
            let above = lines[..i].iter().rev().take_while(|p| p.trim_start().starts_with("//"));
            if !above.into_iter().any(|p| p.trim_start().starts_with("// A String:")) {
                unexplained.push(format!("{path}:{}: {}", i + 1, l));
            }
        }
    }
    assert!(unexplained.is_empty(), "a String error without `// A String:` above it:\n{}", unexplained.join("\n"));
    assert!(count <= 5, "{count} String errors: make them types");
}

/// Whether the line names a `Result<_, &str>`, with any lifetime (`&'static str` most often).
fn has_str_error(line: &str) -> bool {
    error_types(line).iter().any(|t| {
        let Some(rest) = t.strip_prefix('&') else { return false };
        let rest = match rest.strip_prefix('\'') {
            Some(lifetime) => lifetime.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'),
            None => rest,
        };
        rest.trim_start() == "str"
    })
}

/// A `&'static str` error is a `String` error that cannot even say which value was wrong: a
/// module boundary answers with a type (`providers::Malformed` where a fixed reason is all there
/// is to say).
#[test]
fn a_str_error_is_a_type() {
    assert!(has_str_error("pub fn f(s: &str) -> Result<Vec<u8>, &'static str> {"));
    assert!(has_str_error("fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), &'static str> {"));
    assert!(has_str_error("fn f<'a>(s: &'a str) -> Result<u8, &'a str> {"));
    assert!(has_str_error("fn f() -> Result<(), &str> {"));
    assert!(!has_str_error("let f = |k: &str| -> Result<Option<&'static str>, ConfigError> {"));
    assert!(!has_str_error("fn f(s: &'static str) -> Result<&'static str, ParseError> {"));
    assert!(!has_str_error("fn f() -> Result<(), &'static OsStr> {"));
    let found = offenders("", &[], has_str_error);
    assert!(found.is_empty(), "a &str error: make it a type (thiserror):\n{}", found.join("\n"));
}

/// A module's path as `crate::` spells it (`http::edit`, `config`; the crate root is empty),
/// from its file, at most two levels deep (a deeper file counts as its second-level module).
fn module_of(path: &str) -> Vec<String> {
    let inner = path.strip_prefix("src/").unwrap().strip_suffix(".rs").unwrap();
    let mut parts: Vec<String> = inner.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts.truncate(2);
    parts
}

/// Every path a file's code names through `crate::`, `$crate::` or `super::`, resolved from the
/// crate root, the branches of a `{ ... }` group each on its own (`use super::{a, b::c}` names
/// `a` and `b::c`).
fn named_paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code: String = code(text).map(|(_, l)| format!("{l}\n")).collect();
    let b = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = (i == 0 || !ident(b[i - 1])) && (b[i..].starts_with(b"crate::") || b[i..].starts_with(b"super::"));
        if !starts {
            i += 1;
            continue;
        }
        let mut base: Vec<String> = module.to_vec();
        let mut j = i;
        if b[j..].starts_with(b"crate::") {
            base.clear();
            j += "crate::".len();
        }
        while b[j..].starts_with(b"super::") {
            base.pop();
            j += "super::".len();
        }
        i = tree(&code, j, base, &mut out);
    }
    out
}

/// Reads a use tree at `at` (`a::b`, `a::{b, c::d}`, `{a, b}`) below `base` into `out`; returns
/// where it ends.
fn tree(code: &str, mut at: usize, mut base: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let b = code.as_bytes();
    let skip_space = |mut k: usize| {
        while k < b.len() && b[k].is_ascii_whitespace() {
            k += 1;
        }
        k
    };
    loop {
        at = skip_space(at);
        if at < b.len() && b[at] == b'{' {
            at += 1;
            loop {
                at = tree(code, at, base.clone(), out);
                at = skip_space(at);
                match b.get(at) {
                    Some(b',') => at += 1,
                    Some(b'}') => return at + 1,
                    _ => return at,
                }
                if b.get(skip_space(at)) == Some(&b'}') {
                    return skip_space(at) + 1;
                }
            }
        }
        let end = (at..b.len()).find(|&k| !(b[k].is_ascii_alphanumeric() || b[k] == b'_')).unwrap_or(b.len());
        if end == at {
            out.push(base);
            return at;
        }
        base.push(code[at..end].to_string());
        if b[end..].starts_with(b"::") {
            at = end + 2;
        } else {
            out.push(base);
            return end;
        }
    }
}

/// `(importer, imported)` for every module that names another, at the top level (`http`,
/// `config`) and at the second (`http::edit`, `providers::registry`), neither the other's
/// ancestor: a child that uses its parent's items through `super::` is no circle.
/// Each with the files that name the imported module.
fn imports() -> BTreeMap<(String, String), BTreeSet<String>> {
    let files = sources("");
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(p, _)| module_of(p)).collect();
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &files {
        if path == "src/main.rs" {
            continue; // Another crate: it reaches the library through `stagehook::`.
        }
        let from = module_of(path);
        for named in named_paths(&from, text) {
            // The longest prefix that is a module: `crate::http::origin::Policy` is `http::origin`.
            let Some(to) = (0..=named.len().min(2)).rev().map(|n| named[..n].to_vec()).find(|p| modules.contains(p))
            else {
                continue;
            };
            for level in [1, 2] {
                let (a, b) = (&from[..from.len().min(level)], &to[..to.len().min(level)]);
                if a.is_empty() || b.is_empty() || a.starts_with(b) || b.starts_with(a) {
                    continue;
                }
                edges.entry((a.join("::"), b.join("::"))).or_default().insert(path.clone());
            }
        }
    }
    edges
}

/// No two modules import each other: when a lower module needs a higher one's type, the type is
/// in the wrong module (move it down, or pass the value in).
#[test]
fn no_two_modules_import_each_other() {
    let m = |p: &str| p.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let text = "use super::{admin, edit::{self, Edit}};\nuse crate::config::X;\n// crate::store\nf(super::super::y);\n";
    let want = ["http::admin", "http::edit::self", "http::edit::Edit", "config::X", "y"].map(m);
    assert_eq!(named_paths(&m("http::events"), text), want);
    assert_eq!((module_of("src/http/mod.rs"), module_of("src/lib.rs")), (m("http"), m("")));
    let edges = imports();
    let circles: Vec<String> = edges
        .iter()
        .filter_map(|((a, b), there)| {
            let back = edges.get(&(b.clone(), a.clone())).filter(|_| a < b)?;
            let files = |f: &BTreeSet<String>| f.iter().cloned().collect::<Vec<_>>().join(", ");
            Some(format!("{a} <-> {b} ({a} in {}; {b} in {})", files(there), files(back)))
        })
        .collect();
    assert!(circles.is_empty(), "modules that import each other:\n{}", circles.join("\n"));
}

/// The leaf modules, which name nothing else of the crate: what a module's settings file may
/// read.
const LEAVES: [&str; 3] = ["clock", "duration", "secret"];

/// `config` reads settings: it calls neither into the HTTP layer nor into the Redis module. Its
/// one path into `src/redis/` is the Redis settings' own file, which it re-exports and which
/// names nothing of the crate but leaf modules; and the Redis module does not read `config`.
#[test]
fn config_reaches_neither_http_nor_redis() {
    let named = |under: &str| {
        sources(under).into_iter().flat_map(|(path, text)| {
            let module = module_of(&path);
            named_paths(&module, &text).into_iter().map(move |p| (path.clone(), p.join("::")))
        })
    };
    let found: Vec<String> = named("config")
        .filter(|(_, p)| {
            let settings = p == "redis::settings" || p.starts_with("redis::settings::");
            p == "http" || p.starts_with("http::") || ((p == "redis" || p.starts_with("redis::")) && !settings)
        })
        .map(|(path, p)| format!("{path}: crate::{p}"))
        .collect();
    assert!(found.is_empty(), "config/ reaches http/ or redis/ beyond redis::settings:\n{}", found.join("\n"));
    let found: Vec<String> = named("redis")
        .filter(|(path, p)| {
            let top = p.split("::").next().unwrap_or_default();
            top == "config" || (path == "src/redis/settings.rs" && !LEAVES.contains(&top))
        })
        .map(|(path, p)| format!("{path}: crate::{p}"))
        .collect();
    assert!(found.is_empty(), "redis/ reads config, or its settings more than leaf modules:\n{}", found.join("\n"));
}

/// The `fn` names a cited test path (`tidy::only_the_store_names_sled_or_postcard`,
/// `store::record::tests::records_...`) can be found under: an integration test module
/// (`tests/it/<module>.rs`), or the source file of a unit test module (`src/<path>.rs` or
/// `src/<path>/mod.rs`).
fn test_is_defined(path: &str) -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let parts: Vec<&str> = path.split("::").collect();
    let Some((name, modules)) = parts.split_last() else { return false };
    let candidates: Vec<PathBuf> = match modules.iter().position(|m| *m == "tests") {
        Some(at) => {
            let module = modules[..at].join("/");
            // The tests of a module are in its file, or in its folder's `tests.rs`.
            vec![
                root.join(format!("src/{module}.rs")),
                root.join(format!("src/{module}/mod.rs")),
                root.join(format!("src/{module}/tests.rs")),
            ]
        }
        None => vec![root.join(format!("tests/it/{}.rs", modules.join("/")))],
    };
    candidates.iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            code(&text).any(|(_, l)| {
                let l = l.trim_start();
                l.starts_with(&format!("fn {name}(")) || l.starts_with(&format!("async fn {name}("))
            })
        })
    })
}

/// ARCHITECTURE.md stays a map: short, and every invariant names the test that checks it (one
/// that exists) or says that none does.
#[test]
fn architecture_is_a_map() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    let lines = text.lines().count();
    assert!(lines <= 400, "ARCHITECTURE.md has {lines} lines: a map names what rarely changes (at most 400)");
    let start = text.find("\n## Invariants").expect("an Invariants section");
    let section = &text[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |end| end + 1)];
    let mut bad = Vec::new();
    let mut cited = 0;
    for item in section.split("\n- ").skip(1) {
        let item = item.split("\n\n").next().unwrap_or(item);
        let first = item.lines().next().unwrap_or_default();
        let Some(at) = item.find("Checked by") else {
            if !item.contains("Not checked") {
                bad.push(format!("neither `Checked by` nor `Not checked`: {first}"));
            }
            continue;
        };
        for path in item[at..].split('`').skip(1).step_by(2) {
            cited += 1;
            if !test_is_defined(path) {
                bad.push(format!("cites `{path}`, which is no test: {first}"));
            }
        }
    }
    assert!(cited > 20, "only {cited} tests cited: is the Invariants section still read right?");
    assert!(bad.is_empty(), "ARCHITECTURE.md's invariants:\n{}", bad.join("\n"));
}

/// Test-only code is compiled only for tests: the store's fault injection (`inject_*`) and the
/// modules named `testing` (a `redis-server` of its own) need the `testing` feature, which only
/// the tests and benchmarks turn on, so a release build cannot call them.
#[test]
fn test_only_code_needs_the_testing_feature() {
    let gated = |above: &str| {
        let above = above.trim();
        above == "#[cfg(test)]" || above == "#[cfg(any(test, feature = \"testing\"))]"
    };
    let mut found = Vec::new();
    let mut seen = 0;
    for (path, text) in sources("") {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim_start();
            let test_only = l.starts_with("pub fn inject_")
                || l.starts_with("pub mod testing")
                || l.starts_with("pub(crate) mod testing");
            if !test_only {
                continue;
            }
            seen += 1;
            if !i.checked_sub(1).is_some_and(|above| gated(lines[above])) {
                found.push(format!("{path}:{}: {}", i + 1, l));
            }
        }
    }
    assert!(seen >= 4, "only {seen} test-only items found: is the rule still reading the right names?");
    assert!(found.is_empty(), "test-only code outside #[cfg(any(test, feature = \"testing\"))]:\n{}", found.join("\n"));
}

/// A file holds one concern: `main.rs` parses and dispatches (each command is a module of
/// `src/cli/`), and no source file grows past 900 lines, the point where it has always held two
/// things.
#[test]
fn main_dispatches_and_files_stay_small() {
    let mut found = Vec::new();
    for (path, text) in sources("") {
        let lines = text.lines().count();
        let most = if path == "src/main.rs" { 80 } else { 900 };
        if lines > most {
            found.push(format!("{path}: {lines} lines (at most {most})"));
        }
    }
    assert!(found.is_empty(), "split these by concern:\n{}", found.join("\n"));
}
