//! The `stagehook` binary: parse the command line, load the configuration, set up logging, and
//! hand over to the library.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use stagehook::cli::{
    CheckArgs, Cli, Command, ExportArgs, ImportArgs, LogFormat, SendArgs, ServeArgs, StoreCommand, VerifyArgs,
};
use stagehook::config::layers::{self, flag_value, Layered};
use stagehook::config::validate::{probe_targets, validate, Context, Severity};
use stagehook::config::Config;
use stagehook::store::Store;
use stagehook::{App, Clock};
use tracing_subscriber::EnvFilter;

/// Exit code for a configuration the user must fix.
const EXIT_CONFIG: u8 = 2;
/// Exit code of `store verify` when the folder could not be checked at all (in use, no database).
const EXIT_UNCHECKED: u8 = 2;

#[global_allocator]
static ALLOCATOR: stagehook::allocator::Allocator = stagehook::allocator::Allocator;

fn main() -> ExitCode {
    stagehook::allocator::tune();
    // An empty `STAGEHOOK_CONFIG` is ignored, as every empty `STAGEHOOK_*` variable is, rather
    // than clap's "a value is required for --config". Still one thread here: nothing else reads
    // the environment concurrently.
    if std::env::var_os("STAGEHOOK_CONFIG").is_some_and(|v| v.is_empty()) {
        std::env::remove_var("STAGEHOOK_CONFIG");
    }
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Send(args) => send(args),
        Command::Export(args) => export(args),
        Command::Import(args) => import(args),
        Command::Tail(args) => tail(args),
        Command::Store(StoreCommand::Verify(args)) => verify(args),
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "stagehook", &mut script);
            print_output(&script, "the completion script")
        }
        Command::Man => match stagehook::cli::man_page() {
            Ok(page) => print_output(&page, "the manual page"),
            Err(e) => {
                eprintln!("stagehook: cannot write the manual page: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Writes generated text to stdout. A reader that stops early (`stagehook man | head`) closes the
/// pipe: that is its choice, not a failure, so a broken pipe ends quietly with success.
fn print_output(bytes: &[u8], what: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stagehook: cannot write {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `store verify`: one line per damaged item, then a summary. Exit 0 when sound, 1 when damaged,
/// 2 when the folder could not be checked.
fn verify(args: VerifyArgs) -> ExitCode {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => match load(args.config.as_deref(), &[]) {
            Ok(l) => l.config.server.data_dir,
            Err(code) => return code,
        },
    };
    match stagehook::store::verify::verify(&data_dir) {
        Ok(report) => {
            for finding in &report.findings {
                println!("damaged: {finding}");
            }
            let verdict = match report.findings.len() {
                0 => "all sound".to_string(),
                1 => "1 damaged item".to_string(),
                n => format!("{n} damaged items"),
            };
            println!("checked {} in {}: {verdict}", report.checked, data_dir.display());
            if report.sound() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("stagehook: {e}");
            ExitCode::from(EXIT_UNCHECKED)
        }
    }
}

fn send(args: SendArgs) -> ExitCode {
    let layered = match load(args.config.as_deref(), &[]) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // For the hint when nothing answers: where the address `send` used came from.
    let bind_source = layered
        .show()
        .into_iter()
        .find(|(key, _, _)| key == "server.bind")
        .map(|(_, _, source)| source.to_string())
        .unwrap_or_else(|| "default".into());
    let Layered { config, instances, .. } = layered;
    if args.list {
        if args.json {
            println!("{:#}", stagehook::send::list_json(&instances));
        } else {
            print!("{}", stagehook::send::list(&instances));
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.from {
        return send_from(path, &config, &instances, &args, &bind_source);
    }
    // With `--json`, a failure is a JSON object on stdout too (a stable `code`), with the same
    // exit code as in text.
    let fail = |code: &str, message: String, detail: serde_json::Value, exit: u8| {
        if args.json {
            let mut out = serde_json::json!({"ok": false, "error": {"code": code, "message": message}});
            if let serde_json::Value::Object(extra) = detail {
                out["error"].as_object_mut().expect("an object").extend(extra);
            }
            println!("{out:#}");
        } else {
            eprintln!("stagehook: {message}");
            if let Some(lines) = detail.as_object() {
                for line in lines.get("text").and_then(|t| t.as_array()).into_iter().flatten() {
                    eprintln!("{}", line.as_str().unwrap_or_default());
                }
            }
        }
        ExitCode::from(exit)
    };
    let payload = match &args.file {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                return fail(
                    "file_unreadable",
                    format!("cannot read {}: {e}", path.display()),
                    json_null(),
                    EXIT_CONFIG,
                )
            }
        },
        None => None,
    };
    let provider = args.provider.clone().unwrap_or_default();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let refusals = stagehook::send::refusals(&config, &instances, &provider, &env);
    if !refusals.is_empty() {
        let mut text: Vec<String> = refusals.iter().map(|f| format!("  {} [{}]: {}", f.key, f.id, f.message)).collect();
        text.push("(set the real secret in the environment of this shell, as for `serve`, or in the file)".into());
        return fail(
            "config_refused",
            format!(
                "not sending: the configuration's secret for `{provider}` cannot be the one stagehook verifies with:"
            ),
            serde_json::json!({"findings": refusals, "text": text}),
            EXIT_CONFIG,
        );
    }
    let req = stagehook::send::SendRequest {
        provider,
        event: args.event.clone(),
        payload,
        to: args.to.clone(),
        server: args.server.clone(),
        count: args.count,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stagehook: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let clock = Clock::system();
    match runtime.block_on(stagehook::send::send(&config, &instances, &req, || clock.now_s())) {
        Ok(sent) => {
            let ok = sent.iter().all(|s| (200..300).contains(&s.status));
            if args.json {
                let sent: Vec<serde_json::Value> = sent
                    .iter()
                    .map(|s| {
                        // The answer's body as JSON where it is JSON (stagehook's always is).
                        let body: serde_json::Value =
                            serde_json::from_str(&s.body).unwrap_or_else(|_| s.body.clone().into());
                        serde_json::json!({"url": s.url, "status": s.status, "body": body})
                    })
                    .collect();
                println!("{:#}", serde_json::json!({"ok": ok, "sent": sent}));
            } else {
                for s in &sent {
                    println!("POST {} -> {}", s.url, s.status);
                    if !s.body.is_empty() {
                        println!("{}", s.body);
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            let hint = match &e {
                stagehook::send::SendFailure::Post { .. } => unreachable_hint(&config, &args, &bind_source),
                _ => String::new(),
            };
            let detail = if hint.is_empty() {
                json_null()
            } else {
                serde_json::json!({"hint": hint, "text": [format!("  ({hint})")]})
            };
            fail(e.code(), e.to_string(), detail, 1)
        }
    }
}

/// `send --from FILE`: every event of an export, in order, signed afresh for its provider's
/// configured secret; one line per event, exit 1 if any was not accepted (2xx). The whole file
/// is read first: a malformed line (exit 2) or a placeholder secret sends nothing.
fn send_from(
    path: &std::path::Path,
    config: &stagehook::config::Config,
    instances: &[stagehook::providers::Instance],
    args: &SendArgs,
    bind_source: &str,
) -> ExitCode {
    let fail = |code: &str, message: String, exit: u8| {
        if args.json {
            println!("{:#}", serde_json::json!({"ok": false, "error": {"code": code, "message": message}}));
        } else {
            eprintln!("stagehook: {message}");
        }
        ExitCode::from(exit)
    };
    let open = || std::fs::File::open(path).map(std::io::BufReader::new);
    let mut providers = std::collections::BTreeSet::new();
    let checked = open().map_err(stagehook::export::ImportError::Read).and_then(|file| {
        stagehook::export::lines(file).try_for_each(|line| {
            line.map(|(_, e)| {
                providers.insert(e.provider);
            })
        })
    });
    if let Err(e) = checked {
        return fail("bad_export", format!("{}: {e}; nothing was sent", path.display()), EXIT_CONFIG);
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let refusals: Vec<_> =
        providers.iter().flat_map(|p| stagehook::send::refusals(config, instances, p, &env)).collect();
    if let Some(f) = refusals.first() {
        return fail(
            "config_refused",
            format!("not sending: {} [{}]: {} (set the real secret, as for `serve`)", f.key, f.id, f.message),
            EXIT_CONFIG,
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail("client", format!("cannot start the runtime: {e}"), 1),
    };
    let client = match stagehook::delivery::client::Client::new() {
        Ok(c) => c,
        Err(e) => return fail("client", e.to_string(), 1),
    };
    let file = match open() {
        Ok(f) => f,
        Err(e) => return fail("file_unreadable", format!("cannot read {}: {e}", path.display()), EXIT_CONFIG),
    };
    let clock = Clock::system();
    let (mut accepted, mut failed, mut unanswered) = (0u64, 0u64, false);
    let mut report = Vec::new();
    for line in stagehook::export::lines(file) {
        let event = match line {
            Ok((_, e)) => e,
            // Checked above; the file changed under us.
            Err(e) => return fail("bad_export", format!("{}: {e}", path.display()), 1),
        };
        let to = (args.to.as_deref(), args.server.as_deref());
        let r = runtime.block_on(stagehook::send::resend(config, instances, &event, &client, to, clock.now_s()));
        let name = format!("{} {}", r.provider, r.event_id);
        match &r.result {
            Ok(sent) => {
                let ok = (200..300).contains(&sent.status);
                if ok {
                    accepted += 1;
                } else {
                    failed += 1;
                }
                // stagehook's own receipt says when it had the event already.
                let body: serde_json::Value =
                    serde_json::from_str(&sent.body).unwrap_or_else(|_| sent.body.clone().into());
                let duplicate = body.get("duplicate") == Some(&serde_json::Value::Bool(true));
                if args.json {
                    report.push(serde_json::json!({"provider": r.provider, "event_id": r.event_id, "url": sent.url, "status": sent.status, "body": body}));
                } else {
                    let note = if duplicate { " duplicate" } else { "" };
                    println!("{name}: POST {} -> {}{note}", sent.url, sent.status);
                    if !ok && !sent.body.is_empty() {
                        println!("  {}", sent.body);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                unanswered |= matches!(e, stagehook::send::SendFailure::Post { .. });
                if args.json {
                    report.push(serde_json::json!({"provider": r.provider, "event_id": r.event_id, "error": {"code": e.code(), "message": e.to_string()}}));
                } else {
                    println!("{name}: failed: {e}");
                }
            }
        }
    }
    if args.json {
        println!("{:#}", serde_json::json!({"ok": failed == 0, "sent": report}));
    } else {
        println!("sent {}: {accepted} accepted, {failed} failed", accepted + failed);
        if unanswered {
            eprintln!("  ({})", unreachable_hint(config, args, bind_source));
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Opens the data folder of a stopped stagehook for `export` or `import`, or says why it cannot:
/// a running stagehook holds it (sled's lock), or (when `existing`) there is no database in it.
// A String: a message for the person at the terminal, the command's last word.
fn open_stopped(config: &Config, existing: bool, running_hint: &str) -> Result<Store, String> {
    let dir = &config.server.data_dir;
    if existing && !dir.join("db").exists() {
        return Err(format!("no stagehook data in {} (no database there)", dir.display()));
    }
    if stagehook::store::in_use(dir) == Some(true) {
        return Err(format!(
            "{} is in use by a running stagehook, which holds it until it stops; stop it first{running_hint}",
            dir.display()
        ));
    }
    Store::open(dir, stagehook::store_options(config), Clock::system()).map_err(|e| e.to_string())
}

/// Flushes and closes a store opened by a command.
fn close(store: Store) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(store.shutdown()).map_err(std::io::Error::other)
}

/// The configuration with `--data-dir` over `server.data_dir`.
fn load_with_dir(config: Option<&std::path::Path>, data_dir: Option<&std::path::Path>) -> Result<Layered, ExitCode> {
    let mut flags = Vec::new();
    if let Some(dir) = data_dir {
        flags.push(("server.data_dir", "--data-dir", flag_value(&dir)));
    }
    load(config, &flags)
}

/// `export`: NDJSON to `--out` (written beside it, then renamed, so a failed export leaves no
/// short file that looks whole) or stdout; the count to stderr. Exit 1 when an event could not
/// be read back (the others are written), 2 when nothing could be exported.
fn export(args: ExportArgs) -> ExitCode {
    use std::io::Write;
    let Layered { config, instances, .. } = match load_with_dir(args.config.as_deref(), args.data_dir.as_deref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let query: BTreeMap<String, String> = [
        ("provider", &args.provider),
        ("status", &args.status),
        ("type", &args.event_type),
        ("since", &args.since),
        ("until", &args.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
    .collect();
    let filter = match stagehook::filter::from_query(&query) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("stagehook: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let hint = ", or export from it: GET /staging/webhooks/events/export";
    let store = match open_stopped(&config, true, hint) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stagehook: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let partial = args.out.as_ref().map(|p| {
        let mut name = p.as_os_str().to_owned();
        name.push(".partial");
        std::path::PathBuf::from(name)
    });
    let mut out: Box<dyn Write> = match &partial {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("stagehook: cannot write {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut exporter = stagehook::export::Exporter::new(filter);
    let written = loop {
        match exporter.next_lines(&store, &instances) {
            Ok(Some(lines)) => {
                if let Err(e) = out.write_all(&lines) {
                    break Err(format!("cannot write: {e}"));
                }
            }
            Ok(None) => break out.flush().map_err(|e| format!("cannot write: {e}")),
            Err(e) => break Err(e.to_string()),
        }
    };
    drop(out);
    let written = written.and_then(|()| close(store).map_err(|e| e.to_string()));
    let written = match (written, &partial, &args.out) {
        (Ok(()), Some(from), Some(to)) => {
            std::fs::rename(from, to).map_err(|e| format!("cannot write {}: {e}", to.display()))
        }
        (other, Some(from), _) => {
            let _ = std::fs::remove_file(from);
            other
        }
        (other, None, _) => other,
    };
    if let Err(e) = written {
        eprintln!("stagehook: export stopped: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("exported {} events from {}", exporter.exported, config.server.data_dir.display());
    if exporter.damaged > 0 {
        eprintln!(
            "stagehook: left out {} events that do not read back (run `stagehook store verify` to see them)",
            exporter.damaged
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `import FILE`: the whole file is checked first, so a refused line (malformed, a provider name
/// no endpoint could have, a body over the limit; exit 1, naming each) imports nothing; then
/// every event is stored as processed, duplicates skipped and counted.
fn tail(args: stagehook::cli::TailArgs) -> ExitCode {
    use std::io::IsTerminal;
    let Layered { config, .. } = match load(args.config.as_deref(), &[]) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let tail = stagehook::tail::Tail {
        server: stagehook::send::server_url(&config, args.server.as_deref()),
        token: config.server.admin_token.as_ref().map(|t| t.expose().to_string()),
        provider: args.provider,
        status: args.status,
        json: args.json,
        colour: !args.json && std::io::stdout().is_terminal(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stagehook tail: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tail.run(&mut std::io::stdout())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stagehook tail: {e}");
            ExitCode::from(match e {
                stagehook::tail::TailError::Refused(_) => 2,
                stagehook::tail::TailError::Unreachable { .. } => 1,
            })
        }
    }
}

fn import(args: ImportArgs) -> ExitCode {
    let Layered { config, .. } = match load_with_dir(args.config.as_deref(), args.data_dir.as_deref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let open = || std::fs::File::open(&args.file).map(std::io::BufReader::new);
    let file = args.file.display();
    let rules =
        stagehook::export::Rules { max_body_bytes: args.max_body_bytes.unwrap_or(config.limits.max_body_bytes) };
    let checked =
        open().map_err(stagehook::export::ImportError::Read).and_then(|f| stagehook::export::check(f, &rules));
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("stagehook: {file}: {e}; nothing was imported");
            return ExitCode::FAILURE;
        }
    };
    let store = match open_stopped(&config, false, "") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stagehook: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stagehook: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match open() {
        Ok(reader) => runtime.block_on(stagehook::export::import(&store, reader, &checked)),
        Err(e) => Err(stagehook::export::ImportError::Read(e)),
    };
    let closed = runtime.block_on(store.shutdown());
    match (result, closed) {
        (Ok(done), Ok(())) => {
            println!(
                "imported {} events, skipped {} duplicates, into {}",
                done.imported,
                done.skipped,
                config.server.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!(
                "stagehook: {file}: {e}; the events stored before it stay (importing the file again skips them as duplicates)"
            );
            ExitCode::FAILURE
        }
        (Ok(_), Err(e)) => {
            eprintln!("stagehook: {e}");
            ExitCode::FAILURE
        }
    }
}

fn json_null() -> serde_json::Value {
    serde_json::Value::Null
}

/// What `send` tried when nothing answered, and what to check: most often stagehook is not
/// running, or runs with another configuration (another port) than the one `send` read.
fn unreachable_hint(config: &stagehook::config::Config, args: &SendArgs, bind_source: &str) -> String {
    if let Some(to) = &args.to {
        return format!("nothing answered at --to {to}: is the app listening there?");
    }
    let server = stagehook::send::server_url(config, args.server.as_deref());
    let from = match (&args.server, &args.config) {
        (Some(_), _) => "--server".to_string(),
        (None, Some(path)) => format!("server.bind ({bind_source}) of {}", path.display()),
        (None, None) => format!("server.bind ({bind_source}); no --config given"),
    };
    format!(
        "is stagehook running? send looked for it at {server}, from {from}. Start it with `stagehook serve`, give send the same `--config` as serve, or name it with `--server http://HOST:PORT`."
    )
}

/// Defaults, file, environment, then the flags given.
fn load(config: Option<&std::path::Path>, flags: &[(&str, &str, toml::Value)]) -> Result<Layered, ExitCode> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    layers::load(config, &env, flags).map_err(|e| {
        eprintln!("stagehook: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check_config(args: CheckArgs) -> ExitCode {
    let layered = match load(args.config.as_deref(), &[]) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut report = validate(&layered.config, &env, Context::Check);
    if !args.offline {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(async {
                report.findings.extend(probe_targets(&layered.config).await);
                report.findings.extend(stagehook::shared::probe(&layered.config.sharing()).await);
            }),
            Err(e) => {
                eprintln!("stagehook: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.json {
        let mut out = report.to_json();
        if args.show {
            out["effective"] = layered
                .show()
                .into_iter()
                .map(|(k, v, src)| (k, serde_json::json!({"value": v, "source": src.to_string()})))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{out:#}");
    } else {
        if args.show {
            for (key, value, source) in layered.show() {
                println!("{key} = {value}    # {source}");
            }
            println!();
        }
        print!("{}", report.to_text());
    }
    if report.errors() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file, a pipe or journald they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut flags = Vec::new();
    if let Some(bind) = args.bind {
        flags.push(("server.bind", "--bind", flag_value(&bind)));
    }
    if let Some(dir) = &args.data_dir {
        flags.push(("server.data_dir", "--data-dir", flag_value(dir)));
    }
    // The providers are built (and the origins read) here, once, by the check, and handed on to
    // `App::open_built`.
    let Layered { config, instances, origins, .. } = match load(args.config.as_deref(), &flags) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // Every problem at once, not just the first; warnings go to the log.
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let report = validate(&config, &env, Context::Standalone);
    for f in &report.findings {
        if f.severity == Severity::Warning {
            tracing::warn!(id = f.id, key = %f.key, "{}", f.message);
        }
    }
    if report.errors() > 0 {
        eprintln!("stagehook: the configuration has {} error(s):", report.errors());
        for f in report.findings.iter().filter(|f| f.severity == Severity::Error) {
            eprintln!("  {} [{}]: {}", f.key, f.id, f.message);
        }
        let check = match &args.config {
            Some(path) => format!("stagehook check-config --config {}", path.display()),
            None => "stagehook check-config".to_string(),
        };
        eprintln!("(run `{check}` for the full report)");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(stagehook::allocator::collect_when_idle)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stagehook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let bind = config.server.bind;
        let data_dir = config.server.data_dir.clone();
        let grace = config.server.shutdown_grace_seconds;
        let forwards: BTreeMap<String, Vec<String>> = config
            .sections()
            .into_iter()
            .map(|(name, section)| (name, section.forward_to.iter().map(|u| stagehook::redact::url(u)).collect()))
            .collect();
        // Bound before the store opens: a start that fails on a taken port leaves no new data
        // folder behind.
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("stagehook: cannot listen on {bind}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let metrics = match config.server.metrics_bind {
            Some(at) => match tokio::net::TcpListener::bind(at).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("stagehook: cannot listen on {at} (server.metrics_bind): {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        let app = match App::open_built(config, instances, origins, Clock::system()) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("stagehook: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Another running stagehook under this name is a configuration to fix: its claims and
        // this one's stay apart, but nothing could tell the two instances apart.
        if let Err(taken) = app.join_shared().await {
            eprintln!("stagehook: {taken}");
            return ExitCode::from(EXIT_CONFIG);
        }
        let app = match metrics {
            Some(l) => app.with_metrics_listener(l),
            None => app,
        };
        let shutdown = shutdown_signal(grace);
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| bind.to_string());
        println!("data dir: {}", data_dir.display());
        for (name, path, configured) in app.endpoints() {
            let state = if configured { "configured" } else { "not configured (no secret): answers 503" };
            // Where its events go, credentials masked as everywhere else.
            let targets = match forwards.get(&name).map(Vec::as_slice) {
                None | Some([]) => "stored only (no forward_to)".to_string(),
                Some(urls) => format!("forwards to {}", urls.join(", ")),
            };
            println!("provider {name}: POST {path} ({state}), {targets}");
        }
        if let Some(at) = metrics_addr {
            println!("metrics: GET http://{at}/metrics (no token)");
        }
        // Last, so that a script (or a test) waiting for this line has seen the others.
        println!("stagehook {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
        app.serve(listener, shutdown).await;
        tracing::info!("stopped cleanly");
        ExitCode::SUCCESS
    })
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either.
///
/// The handlers must exist before the "listening" line is printed: a future that registered
/// them only when first polled would leave a window in which SIGTERM still kills the process
/// outright, skipping the final flush.
///
/// The first signal says at once that stagehook is stopping and for how long it may wait (a
/// silent wait of up to twice the grace looks like a hang); a second one stops the process at
/// once, with 128 + the signal's number (130 for Ctrl-C), as a shell reports a process a signal
/// ended: it did not stop cleanly, but nothing acknowledged is lost (every 2xx was flushed
/// first), and jobs in flight stay queued for the next start.
#[cfg(unix)]
fn shutdown_signal(grace_s: u64) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                eprintln!(
                    "stagehook: stopping: no new connections; waiting up to {grace_s} s for requests in flight, then up to {grace_s} s for deliveries in flight (Ctrl-C again to stop at once)"
                );
                tokio::spawn(async move {
                    let code = tokio::select! {
                        _ = int.recv() => 128 + libc::SIGINT,
                        _ = term.recv() => 128 + libc::SIGTERM,
                    };
                    eprintln!("stagehook: stopped at once by a second signal; deliveries in flight stay queued for the next start");
                    std::process::exit(code);
                });
            }
            _ => {
                tracing::warn!("cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}

#[cfg(not(unix))]
fn shutdown_signal(grace_s: u64) -> impl std::future::Future<Output = ()> {
    async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stagehook: stopping: waiting up to {grace_s} s for requests, then for deliveries, in flight");
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}
