//! The command line: `stagehook serve [--config PATH] [--bind ADDR] [--data-dir DIR]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "stagehook",
    version,
    about = "A staging webhook receiver: verify, guard and durably record provider webhooks"
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Check the configuration and print every finding; exit 1 if any is an error.
    CheckConfig(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// TOML configuration file; without one, the embedded defaults are checked.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Also print the effective configuration, each key with where it came from (secrets
    /// redacted).
    #[arg(long)]
    pub show: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file; without one, the embedded defaults are used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `server.bind`).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Database folder (overrides `server.data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}
