//! The `stagehook` binary: parse the command line, set up logging, and hand the command over to
//! its module in the library's command layer ([`stagehook::cli`]), whose outcome becomes the exit
//! code.

use std::process::ExitCode;

use clap::Parser;
use stagehook::cli::{self, Cli, Command, LogFormat, Reporter, StoreCommand};
use tracing_subscriber::EnvFilter;

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
    let reporter = Reporter::for_command(&cli.command);
    let outcome = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::CheckConfig(args) => cli::check_config::run(args),
        Command::Send(args) => cli::send::run(args),
        Command::CheckApp(args) => cli::check_app::run(args),
        Command::Export(args) => cli::export::run(args),
        Command::Import(args) => cli::import::run(args),
        Command::Tail(args) => cli::tail::run(args),
        Command::Listen(args) => cli::listen::run(args),
        Command::Backfill(args) => cli::backfill::run(args),
        Command::Mcp(args) => cli::mcp::run(args),
        Command::Store(StoreCommand::Verify(args)) => cli::store::verify(args),
        Command::Completions(args) => cli::completions::run(args),
        Command::Man => cli::man::run(),
    };
    // A failure is printed here, once, as text or JSON; its exit code is the process's.
    ExitCode::from(reporter.finish(outcome))
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
