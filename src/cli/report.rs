//! How a command ends: its exit code ([`Exit`], the codes README and docs/configuration.md
//! document), its failure ([`CliError`]), and the one [`Reporter`] that prints a failure, as
//! `stagehook: message` on stderr or, under `--json`, as `{"ok": false, "error": {...}}` on stdout.

use std::borrow::Cow;
use std::process::ExitCode;

use serde_json::{Map, Value};

/// How a command ended: the exit code to leave with (its output printed already), or a failure
/// still to be reported.
pub type Outcome = Result<Exit, CliError>;

/// The exit codes of `stagehook`. clap leaves with 2 too on a bad flag, as [`Exit::Config`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; all sound; every answer 2xx.
    Success,
    /// 1: the command ran and something failed: an answer that is not 2xx, nothing answered,
    /// damaged items, a refused import line, a store or an address that cannot be opened.
    Failure,
    /// 2: a configuration, a flag or an input the user must fix, found before anything was
    /// done (for `serve`, another running stagehook under the same name too).
    Config,
    /// 2: `store verify` could not check the folder at all (in use, no database).
    Unchecked,
    /// 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process
    /// a signal ended: `serve` stopped at once by a second signal.
    Signalled(i32),
}

impl Exit {
    /// The number the process leaves with.
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Config | Exit::Unchecked => 2,
            Exit::Signalled(signal) => 128 + signal,
        }
    }

    /// Success when `ok`, else [`Exit::Failure`].
    pub fn ok_if(ok: bool) -> Exit {
        if ok {
            Exit::Success
        } else {
            Exit::Failure
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        // Every code is in 0..=255: 128 plus a signal's number (at most 64 on Linux) included.
        ExitCode::from(u8::try_from(exit.code()).unwrap_or(u8::MAX))
    }
}

/// Why a command failed, for a person (`message`, then `lines`) and, where it has a stable
/// `code`, for a script (`--json`). Its text form: `stagehook: message`, then the lines.
#[derive(Debug, thiserror::Error)]
#[error("{speaker}: {message}{}", .lines.iter().map(|line| format!("\n{line}")).collect::<String>())]
pub struct CliError {
    pub exit: Exit,
    /// The machine-readable code of `--json`. Without one, the failure is printed as text even
    /// under `--json` (a configuration that does not load, a runtime that does not start).
    pub code: Option<Cow<'static, str>>,
    pub message: String,
    /// Printed under the message in text; in JSON, the error's `text` array.
    pub lines: Vec<String>,
    /// More fields of the JSON error object (`findings`, `hint`).
    pub detail: Map<String, Value>,
    /// Who speaks in text: `stagehook`, or `stagehook tail`.
    pub speaker: &'static str,
}

impl CliError {
    /// A failure without a code, printed as text.
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            code: None,
            message: message.into(),
            lines: Vec::new(),
            detail: Map::new(),
            speaker: "stagehook",
        }
    }

    /// A failure with a stable code, printed as JSON under `--json`.
    /// The code is one of the command's own, or one the server answered with (`backfill`).
    pub fn coded(exit: Exit, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> CliError {
        CliError { code: Some(code.into()), ..CliError::new(exit, message) }
    }

    /// With `lines` under the message.
    pub fn with_lines(mut self, lines: Vec<String>) -> CliError {
        self.lines = lines;
        self
    }

    /// With one more field in the JSON error object.
    pub fn with_detail(mut self, key: &str, value: Value) -> CliError {
        self.detail.insert(key.to_string(), value);
        self
    }

    /// Spoken by `speaker` (`stagehook tail`) rather than `stagehook`.
    pub fn from_speaker(mut self, speaker: &'static str) -> CliError {
        self.speaker = speaker;
        self
    }

    /// The `--json` form: `{"ok": false, "error": {"code", "message", ...}}`.
    pub fn to_json(&self) -> Option<Value> {
        let code = self.code.as_deref()?;
        let mut error = Map::new();
        error.insert("code".into(), code.into());
        error.insert("message".into(), self.message.clone().into());
        if !self.lines.is_empty() {
            error.insert("text".into(), self.lines.clone().into());
        }
        error.extend(self.detail.clone());
        Some(serde_json::json!({"ok": false, "error": error}))
    }
}

/// Prints a command's failure: as JSON on stdout under `--json` (with the same exit code as in
/// text), else on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    json: bool,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        Reporter { json }
    }

    /// The reporter of `command`: only `send` and `backfill` have failures with a stable code, and prints them
    /// as JSON under `--json`.
    pub fn for_command(command: &super::Command) -> Reporter {
        use super::Command::{Backfill, CheckApp, Send};
        Reporter::new(
            matches!(command, Send(args) if args.json)
                || matches!(command, Backfill(args) if args.json)
                || matches!(command, CheckApp(args) if args.json),
        )
    }

    /// Prints the failure, if any, and says which exit code to leave with.
    pub fn finish(self, outcome: Outcome) -> Exit {
        match outcome {
            Ok(exit) => exit,
            Err(e) => {
                self.fail(&e);
                e.exit
            }
        }
    }

    pub fn fail(self, e: &CliError) {
        match e.to_json().filter(|_| self.json) {
            Some(json) => println!("{json:#}"),
            None => eprintln!("{e}"),
        }
    }
}

/// Writes generated text to stdout. A reader that stops early (`stagehook man | head`) closes the
/// pipe: that is its choice, not a failure, so a broken pipe ends quietly with success.
pub fn print_output(bytes: &[u8], what: &str) -> Outcome {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(e) => Err(CliError::new(Exit::Failure, format!("cannot write {what}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coded_failure_has_a_json_form_and_an_uncoded_one_does_not() {
        let e = CliError::coded(Exit::Config, "bad_export", "x: line 1")
            .with_lines(vec!["  more".into()])
            .with_detail("hint", "look".into());
        assert_eq!(
            e.to_json(),
            Some(
                serde_json::json!({"ok": false, "error": {"code": "bad_export", "message": "x: line 1", "text": ["  more"], "hint": "look"}})
            )
        );
        assert_eq!(e.to_string(), "stagehook: x: line 1\n  more");
        assert_eq!(CliError::new(Exit::Config, "no").to_json(), None);
        assert_eq!(
            CliError::new(Exit::Failure, "gone").from_speaker("stagehook tail").to_string(),
            "stagehook tail: gone"
        );
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let codes: Vec<i32> =
            [Exit::Success, Exit::Failure, Exit::Config, Exit::Unchecked, Exit::Signalled(libc::SIGINT)]
                .into_iter()
                .map(Exit::code)
                .collect();
        assert_eq!(codes, [0, 1, 2, 2, 130]);
    }

    /// The exit codes have one home: outside this file, no `ExitCode` constant and no number
    /// handed to `ExitCode::from` or `process::exit`.
    #[test]
    fn no_exit_number_outside_exit() {
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        files(&src, &mut paths);
        let mut found = Vec::new();
        for path in paths.iter().filter(|p| !p.ends_with("cli/report.rs")) {
            let text = std::fs::read_to_string(path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let number_after = |call: &str| {
                    line.match_indices(call).any(|(i, _)| {
                        let rest = line[i + call.len()..].trim_start();
                        rest.starts_with(|c: char| c.is_ascii_digit())
                    })
                };
                if line.contains("ExitCode::SUCCESS")
                    || line.contains("ExitCode::FAILURE")
                    || number_after("ExitCode::from(")
                    || number_after("process::exit(")
                {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(found.is_empty(), "exit codes are named by `Exit` in src/cli/report.rs:\n{}", found.join("\n"));
    }
}
