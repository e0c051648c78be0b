//! The command layer: one module per command, each a `run(args)` that returns an [`Outcome`]; the
//! binary only parses, dispatches to these, and turns the outcome into an exit code through the
//! [`Reporter`].
//!
//! - [`args`]: the clap definitions (re-exported here, so `stagehook::cli::Cli` names them).
//! - [`report`]: the exit codes ([`Exit`]), the command error ([`CliError`]) and the one
//!   [`Reporter`] that prints a failure as text or, under `--json`, as JSON.
//! - A module per command: [`serve`], [`check_config`], [`send`], [`check_app`], [`export`], [`import`],
//!   [`tail`], [`listen`], [`backfill`], [`mcp`], [`store`] (`store verify`), [`completions`], [`man`]. The work itself
//!   lives in the library ([`crate::send`], [`crate::check_app`], [`crate::export`], [`crate::tail`],
//!   [`crate::listen`], [`crate::mcp`], [`crate::store::verify`], [`crate::config::validate`]); a command reads
//!   its flags, calls it and says what happened.
//!
//! Each command prints what it has to say as it goes (an export streams, `tail` never ends); what
//! it returns is how it ended, so a test can call it in-process and look at the outcome.

pub mod args;
pub mod backfill;
pub mod check_app;
pub mod check_config;
pub mod completions;
pub mod export;
pub mod import;
pub mod listen;
pub mod man;
pub mod mcp;
pub mod report;
pub mod send;
pub mod serve;
pub mod store;
pub mod tail;

use std::collections::BTreeMap;
use std::path::Path;

pub use args::*;
pub use man::man_page;
pub use report::{CliError, Exit, Outcome, Reporter};

use crate::config::layers::{self, flag_value, Layered};
use crate::config::Config;
use crate::store::Store;
use crate::Clock;

/// How many threads a command's runtime has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only: a command that waits on a few requests or on the store.
    One,
    /// A worker per core, returning idle memory when a worker parks: `serve`.
    Many,
}

/// The tokio runtime of every command that needs one.
pub fn runtime(threads: Threads) -> Result<tokio::runtime::Runtime, CliError> {
    let built = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Threads::Many => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .on_thread_park(crate::allocator::collect_when_idle)
            .build(),
    };
    built.map_err(|e| CliError::new(Exit::Failure, format!("cannot start the runtime: {e}")))
}

/// The process's environment, which the configuration's layers and checks read.
pub(crate) fn env_vars() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Defaults, file, environment, then the flags given. A configuration that does not load is
/// reported as text, even under `--json`.
pub(crate) fn load(config: Option<&Path>, flags: &[(&str, &str, toml::Value)]) -> Result<Layered, CliError> {
    layers::load(config, &env_vars(), flags).map_err(|e| CliError::new(Exit::Config, e.to_string()))
}

/// The configuration with `--data-dir` over `server.data_dir`.
pub(crate) fn load_with_dir(config: Option<&Path>, data_dir: Option<&Path>) -> Result<Layered, CliError> {
    let mut flags = Vec::new();
    if let Some(dir) = data_dir {
        flags.push(("server.data_dir", "--data-dir", flag_value(&dir)));
    }
    load(config, &flags)
}

/// Opens the data folder of a stopped stagehook for `export` or `import`, or says why it cannot:
/// a running stagehook holds it (sled's lock), or (when `existing`) there is no database in it.
pub(crate) fn open_stopped(config: &Config, existing: bool, running_hint: &str) -> Result<Store, CliError> {
    let dir = &config.server.data_dir;
    let refuse = |message: String| CliError::new(Exit::Config, message);
    if existing && !dir.join("db").exists() {
        return Err(refuse(format!("no stagehook data in {} (no database there)", dir.display())));
    }
    if crate::store::in_use(dir) == Some(true) {
        return Err(refuse(format!(
            "{} is in use by a running stagehook, which holds it until it stops; stop it first{running_hint}",
            dir.display()
        )));
    }
    Store::open(dir, crate::store_options(config), Clock::system()).map_err(|e| refuse(e.to_string()))
}
