//! The command line's arguments: `stagehook serve [--config PATH] [--bind ADDR] [--data-dir DIR]`,
//! `check-config`, `send`, `check-app`, `export`, `import`, `tail`, `listen`, `mcp`, `store verify`, `completions` and `man`. The
//! shell completions and the manual page are generated from these definitions, so they never drift
//! from the real flags.

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
    /// Send realistic, correctly signed test events to stagehook (or to `--to`), or the events of
    /// an export (`--from`), each signed afresh.
    Send(SendArgs),
    /// Test the app's webhook handler as production will: send it a short series of requests,
    /// signed as the endpoint's provider signs (valid, with another secret, unsigned, tampered,
    /// stale, twice, out of order) and grade each answer; exit 0 when every check passes, 1 when
    /// any fails, 2 for a configuration error.
    CheckApp(CheckAppArgs),
    /// Write the stored events as NDJSON, one event a line, from the data folder of a stopped
    /// stagehook (a running one serves the same at `GET /staging/webhooks/events/export`).
    Export(ExportArgs),
    /// Load an export file into a data folder: duplicates (same provider and event id) are
    /// skipped and counted; edited copies are linked to their parent's new id; events are
    /// recorded as processed, never delivered to the app. Each refused line (malformed, a body
    /// over the limit, a provider that is not an endpoint name) is named, and then nothing is
    /// imported.
    Import(ImportArgs),
    /// Print what happens on the running stagehook as it happens: one line per new event and per
    /// change of status (coloured on a terminal), or JSON with `--json`.
    Tail(TailArgs),
    /// Recover the events an endpoint's provider sent while they could not be received: list
    /// them through the provider's API (Stripe's events, GitHub's hook deliveries), skip those
    /// already stored, and record and deliver the rest, on the running stagehook.
    Backfill(BackfillArgs),
    /// Follow a shared staging stagehook from this machine: deliver each stored event to the
    /// local app, signed afresh with the local secret, resuming where it stopped.
    Listen(ListenArgs),
    /// Serve the Model Context Protocol over stdio for an editor's coding agent: the running
    /// stagehook's events, signature diagnoses, stats and breakers as tools (and, with
    /// `--allow-write`, send, replay and edit and replay), through its HTTP API.
    Mcp(McpArgs),
    /// Inspect the data folder of a stopped stagehook.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script (e.g. `stagehook completions bash > /etc/bash_completion.d/stagehook`).
    Completions(CompletionsArgs),
    /// Print the manual page, in roff (e.g. `stagehook man | man -l -`).
    Man,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read every record and body back and print each damaged one; exit 0 when all is sound, 1
    /// when anything is damaged, 2 when the folder cannot be checked (in use, no database).
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// TOML configuration file, for `server.data_dir`.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database folder (overrides `server.data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// TOML configuration file, for `server.data_dir` and the providers whose signature headers
    /// are redacted (give the one `serve` uses).
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database folder (overrides `server.data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only events of this endpoint.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only events with this status (received, processing, processed, retrying, failed).
    #[arg(long)]
    pub status: Option<String>,
    /// Only events of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only events that came this way (webhook, backfill).
    #[arg(long)]
    pub source: Option<String>,
    /// Only events stored at or after this time (RFC 3339 or Unix milliseconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events stored before this time (RFC 3339 or Unix milliseconds).
    #[arg(long)]
    pub until: Option<String>,
    /// Write here instead of to stdout (through `FILE.partial`, renamed when complete).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// TOML configuration file: where stagehook listens, and its admin token.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// The running stagehook's base URL (e.g. `http://127.0.0.1:9000`), when it is not at the
    /// configuration's `server.bind`.
    #[arg(long)]
    pub server: Option<String>,
    /// Only this endpoint's events.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only changes to this status (`received`, `processing`, `processed`, `retrying`, `failed`).
    #[arg(long)]
    pub status: Option<String>,
    /// Print each message's JSON (with its `kind`: `event` or `status`), one a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// TOML configuration file: where stagehook listens, its admin token, and the secrets
    /// `send_fixture` signs with.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// The running stagehook's base URL (e.g. `http://127.0.0.1:8080`), when it is not at the
    /// configuration's `server.bind`.
    #[arg(long)]
    pub server: Option<String>,
    /// The running stagehook's admin token (a read token serves the read tools only); by default
    /// the configuration's `server.admin_token` (`STAGEHOOK_SERVER_ADMIN_TOKEN`).
    #[arg(long, env = "STAGEHOOK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Offer the tools that change the running stagehook: send_fixture, replay, edit_and_replay.
    #[arg(long)]
    pub allow_write: bool,
}

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The endpoint (`stripe`, or a `[providers.<name>]` of a kind with an events API).
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: String,
    /// From when: a duration ago (`6h`) or a time (RFC 3339, or Unix milliseconds); by default
    /// the last day. The provider's retention cuts it (Stripe 30 days, GitHub 3).
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Until when, in the same forms; by default now.
    #[arg(long, value_name = "DURATION|TIME")]
    pub until: Option<String>,
    /// Only events of this type (`*` any run of characters: `invoice.*`); repeatable.
    #[arg(long = "type", value_name = "GLOB")]
    pub types: Vec<String>,
    /// Print what would be added, adding nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// TOML configuration file: where stagehook listens, and its admin token.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// The running stagehook's base URL (e.g. `http://127.0.0.1:9000`), when it is not at the
    /// configuration's `server.bind`.
    #[arg(long)]
    pub server: Option<String>,
    /// Print the run's report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// The staging stagehook's base URL (e.g. `https://staging.example.com`).
    #[arg(value_name = "STAGEHOOK_URL")]
    pub url: String,
    /// Where to deliver: `URL` for every provider, or `NAME=URL` for the endpoint `NAME`
    /// (`stripe`, `twilio`, a `[providers.<name>]`); repeatable.
    #[arg(long = "forward-to", value_name = "[NAME=]URL", required = true)]
    pub forward_to: Vec<String>,
    /// Only this endpoint's events (repeatable).
    #[arg(long, value_name = "NAME")]
    pub provider: Vec<String>,
    /// Only events whose type matches (`*` for any text, e.g. `invoice.*`; repeatable).
    #[arg(long = "type", value_name = "GLOB")]
    pub types: Vec<String>,
    /// The staging stagehook's admin (or read-only) token.
    #[arg(long, env = "STAGEHOOK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// TOML configuration file with this machine's secrets (`[providers.<name>]`), the app's own.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// `NAME=SECRET`: the local secret of endpoint `NAME`, over the configuration's (repeatable;
    /// a flag is visible to other users of this machine, a file is not).
    #[arg(long, value_name = "NAME=SECRET")]
    pub secret: Vec<String>,
    /// How this listener is named on the staging stagehook; `<user>@<host>` by default.
    #[arg(long)]
    pub name: Option<String>,
    /// Where the place in the stream is kept; by default a file under `$XDG_STATE_HOME` (or
    /// `~/.local/state`) `/stagehook/`, one per URL and name.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// On a first run, start this long ago (`2h`) or at this time (RFC 3339 or Unix ms) rather
    /// than now.
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// One JSON object per event.
    #[arg(long)]
    pub json: bool,
    /// Tell the staging stagehook each delivery's outcome.
    #[arg(long)]
    pub report: bool,
    /// Allow a plain `http://` staging URL to another machine (the token then travels in the
    /// clear).
    #[arg(long)]
    pub insecure_http: bool,
    /// The time limit of each local delivery.
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// Attempts after the first for a local delivery that finds no app, or gets 5xx, 408 or 429
    /// (waiting 0.5 s, doubling).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The export file (NDJSON, as `stagehook export` writes it).
    pub file: PathBuf,
    /// TOML configuration file, for `server.data_dir`.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database folder (overrides `server.data_dir`); created when it does not exist.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Refuse a body larger than this many bytes (overrides `limits.max_body_bytes`).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The endpoint: `stripe`, `twilio`, or a `[providers.<name>]` of the config.
    #[arg(required_unless_present_any = ["list", "from"])]
    pub provider: Option<String>,
    /// Send every event of this export file instead of a fixture, each signed afresh with its
    /// provider's secret from the configuration, in the file's order.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["provider", "event", "file", "count", "list"])]
    pub from: Option<PathBuf>,
    /// TOML configuration file: the secrets to sign with, and where stagehook listens.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// The fixture's event type (see `--list`); the provider's first fixture by default.
    #[arg(long)]
    pub event: Option<String>,
    /// Send this file's bytes as the body instead of a fixture.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Send here, the full URL, instead of the running stagehook (e.g. straight to the app under
    /// test).
    #[arg(long, conflicts_with = "server")]
    pub to: Option<String>,
    /// The running stagehook's base URL (e.g. `http://127.0.0.1:9000`), when it is not at the
    /// configuration's `server.bind`; the provider's path is added.
    #[arg(long)]
    pub server: Option<String>,
    /// How many events to send (at least 1), each with fresh ids.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// List the configured providers and their fixtures, and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the answers (or the list, or what went wrong) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckAppArgs {
    /// The endpoint: `stripe`, `twilio`, or a `[providers.<name>]` of the config.
    pub endpoint: String,
    /// TOML configuration file: the endpoint's secret and its `forward_to`.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// The app's webhook URL, instead of where the endpoint sends its default fixture (a route's
    /// target, else its first `forward_to`).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Run only this check (repeatable): accepts_valid, refuses_wrong_secret, refuses_unsigned,
    /// refuses_modified_body, accepts_exact_bytes, refuses_stale, refuses_wrong_url,
    /// idempotent_duplicate, tolerates_order, answers_in_time.
    #[arg(long, value_name = "CHECK")]
    pub only: Vec<String>,
    /// Print the scorecard (or what went wrong) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// TOML configuration file; without one, the embedded defaults are checked.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Also print the effective configuration, each key with where it came from (secrets
    /// redacted).
    #[arg(long)]
    pub show: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not probe the `forward_to` targets (no network access; no `target.reachable`).
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file; without one, the embedded defaults are used.
    #[arg(long, short, env = "STAGEHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `server.bind`).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Database folder (overrides `server.data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}
