//! docs/delivery.md's "An example session" is `scripts/example-session.sh`'s real output: the script runs
//! against the binary this test run built, and every code block of the section must appear in
//! what it printed, in order. Ids, times, durations and ports differ from run to run, so both
//! sides are masked by the same rule ([`mask`]) before they are compared; a line reading `...`
//! in docs/delivery.md stands for any number of lines left out.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECTION: &str = "### An example session";

#[test]
fn readme_example_session_is_the_scripts_real_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("docs/delivery.md")).unwrap();
    let blocks = section_blocks(&readme);
    // The section walks through the whole session; a handful of blocks at least, so an edit that
    // drops them (or renames the heading) cannot leave the test checking nothing.
    assert!(blocks.len() >= 5, "docs/delivery.md's example session has {} code blocks", blocks.len());

    let output = run_script(root);
    let out: Vec<String> = mask(&output).lines().map(|l| l.trim_end().to_string()).collect();
    let mut from = 0;
    for (n, block) in blocks.iter().enumerate() {
        let want: Vec<String> = mask(block).lines().map(|l| l.trim_end().to_string()).collect();
        match (from..=out.len()).find_map(|start| match_at(&want, &out, start)) {
            Some(end) => from = end,
            None => panic!(
                "docs/delivery.md's example-session block {} is not in the script's output (after line {from}):\n\
                 --- docs/delivery.md (masked) ---\n{}\n--- script output (masked) ---\n{}",
                n + 1,
                want.join("\n"),
                out.join("\n")
            ),
        }
    }
}

/// Runs the script with this build's binary, 120 s at most (it takes seconds; its own waits are
/// bounded at 30 s each), and returns its standard output.
fn run_script(root: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new("bash")
        .arg(root.join("scripts/example-session.sh"))
        .env("STAGEHOOK", env!("CARGO_BIN_EXE_stagehook"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        // Files, not pipes: nothing blocks on a full pipe while this waits.
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("scripts/example-session.sh did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    std::fs::File::open(&out_path).unwrap().read_to_string(&mut stdout).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "scripts/example-session.sh: {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    stdout
}

/// The fenced code blocks of docs/delivery.md's example-session section, up to the next heading of its
/// level or above.
fn section_blocks(readme: &str) -> Vec<String> {
    let start = readme.find(SECTION).expect("docs/delivery.md has the example-session section");
    let rest = &readme[start + SECTION.len()..];
    let end = rest.find("\n## ").into_iter().chain(rest.find("\n### ")).min().unwrap_or(rest.len());
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in rest[..end].lines() {
        if line.starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => {
                    // Every block is a transcript: a block of another kind would go unchecked.
                    assert_eq!(line, "```console", "docs/delivery.md's example session: every block is `console`");
                    current = Some(String::new());
                }
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    assert!(current.is_none(), "docs/delivery.md's example session: a code block is not closed");
    blocks
}

/// Where `want` matches `out` from `start` on, the line after the match. A line reading `...`
/// matches any run of output lines (none included) that holds no command (`$ ...`).
fn match_at(want: &[String], out: &[String], start: usize) -> Option<usize> {
    let Some((first, rest)) = want.split_first() else {
        return Some(start);
    };
    if first.trim() == "..." {
        // It leaves out lines of one command's output, never a command: each excerpt stays
        // within the output of the commands it shows.
        let end = (start..out.len()).find(|&i| out[i].starts_with("$ ")).unwrap_or(out.len());
        return (start..=end).find_map(|s| match_at(rest, out, s));
    }
    if out.get(start) == Some(first) {
        match_at(rest, out, start + 1)
    } else {
        None
    }
}

/// The parts that change from run to run, each replaced by a placeholder: ULIDs (stagehook's
/// ids, and the fixtures' `evt_...`), the digits after `127.0.0.1:` (ports), and the number of
/// every `..._ms` or `..._us` JSON member (times and durations).
fn mask(text: &str) -> String {
    let text = mask_ulids(text);
    let text = mask_digits_after(&text, "127.0.0.1:", "<port>");
    let text = mask_digits_after(&text, "_ms\": ", "<n>");
    mask_digits_after(&text, "_us\": ", "<n>")
}

fn mask_digits_after(text: &str, marker: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let digits = rest[after..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str(placeholder);
        }
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    out
}

/// A run of letters and digits that is a ULID (26 Crockford base-32 capitals and digits, the
/// first at most `7`) is one of stagehook's ids or a fixture's.
fn mask_ulids(text: &str) -> String {
    fn is_ulid(run: &str) -> bool {
        run.len() == 26
            && matches!(run.as_bytes()[0], b'0'..=b'7')
            && run.chars().all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c)))
    }
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_alphanumeric() {
            run.push(c);
            continue;
        }
        out.push_str(if is_ulid(&run) { "<ULID>" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop(); // the newline added to end the last run
    out
}

#[test]
fn mask_replaces_ids_ports_and_times_only() {
    let line = r#"{"id": "01M8NRWH6YCRA1E8HPE7RA07D6", "event_id": "evt_01M8NRWNKBH2122CGK4DJX8PMT", "at_ms": 1796027073763, "duration_us": 12, "attempts": 5, "url": "http://127.0.0.1:45335/x", "next_probe_ms": null}"#;
    assert_eq!(
        mask(line),
        r#"{"id": "<ULID>", "event_id": "evt_<ULID>", "at_ms": <n>, "duration_us": <n>, "attempts": 5, "url": "http://127.0.0.1:<port>/x", "next_probe_ms": null}"#
    );
    // A run of 26 that does not start with a digit up to 7, or a shorter one, is left alone.
    assert_eq!(
        mask("0BCDEFGHJKMNPQRSTVWXYZ0123 ABCDEFGHJKMNPQRSTVWXYZ012 01M8NRWH6Y"),
        "<ULID> ABCDEFGHJKMNPQRSTVWXYZ012 01M8NRWH6Y"
    );
    let (want, out) = (vec!["a".to_string(), "...".to_string(), "d".to_string()], vec!["a", "b", "c", "d"]);
    let out: Vec<String> = out.into_iter().map(String::from).collect();
    assert_eq!(match_at(&want, &out, 0), Some(4));
    assert_eq!(match_at(&want, &out, 1), None);
    let out: Vec<String> = ["a", "$ b", "d"].into_iter().map(String::from).collect();
    assert_eq!(match_at(&want, &out, 0), None, "`...` does not leave out a command");
}
