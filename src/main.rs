//! The `stagehook` binary: parse the command line, load the configuration, set up logging, and
//! hand over to the library.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use stagehook::cli::{CheckArgs, Cli, Command, LogFormat, SendArgs, ServeArgs, StoreCommand, VerifyArgs};
use stagehook::config::layers::{self, flag_value, Layered};
use stagehook::config::validate::{validate, Context, Severity};
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
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Send(args) => send(args),
        Command::Store(StoreCommand::Verify(args)) => verify(args),
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
    let Layered { config, instances, .. } = layered;
    if args.list {
        print!("{}", stagehook::send::list(&instances));
        return ExitCode::SUCCESS;
    }
    let payload = match &args.file {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                eprintln!("stagehook: cannot read {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let provider = args.provider.unwrap_or_default();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let refusals = stagehook::send::refusals(&config, &instances, &provider, &env);
    if !refusals.is_empty() {
        eprintln!("stagehook: not sending: the configuration's secret for `{provider}` cannot be the one stagehook verifies with:");
        for f in &refusals {
            eprintln!("  {} [{}]: {}", f.key, f.id, f.message);
        }
        eprintln!("(set the real secret in the environment of this shell, as for `serve`, or in the file)");
        return ExitCode::from(EXIT_CONFIG);
    }
    let req = stagehook::send::SendRequest { provider, event: args.event, payload, to: args.to, count: args.count };
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
            let mut ok = true;
            for s in &sent {
                ok &= (200..300).contains(&s.status);
                println!("POST {} -> {}", s.url, s.status);
                if !s.body.is_empty() {
                    println!("{}", s.body);
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("stagehook: {e}");
            ExitCode::FAILURE
        }
    }
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
    let report = validate(&layered.config, &env, Context::Standalone);
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
    // The providers are built here, once, by the check, and handed on to `App::open_built`.
    let Layered { config, instances, .. } = match load(args.config.as_deref(), &flags) {
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
        eprintln!("(run `stagehook check-config` for the full report)");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stagehook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let bind = config.server.bind;
        let data_dir = config.server.data_dir.clone();
        let app = match App::open_built(config, instances, Clock::system()) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("stagehook: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("stagehook: cannot listen on {bind}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = shutdown_signal();
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| bind.to_string());
        println!("data dir: {}", data_dir.display());
        for (name, path, configured) in app.endpoints() {
            let state = if configured { "configured" } else { "not configured (no secret): answers 503" };
            println!("provider {name}: POST {path} ({state})");
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
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
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
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}
