//! `stagehook mcp`: the Model Context Protocol server of [`crate::mcp`] on stdin and stdout,
//! until the client closes stdin.

use super::{env_vars, load, runtime, CliError, Exit, McpArgs, Outcome, Threads};
use crate::backfill::remote::Remote;
use crate::config::layers::Layered;
use crate::mcp::Server;

/// Exit 0 when the client closed the connection, 2 when the configuration does not load or the
/// token is empty, 1 when stdout cannot be written.
pub fn run(args: McpArgs) -> Outcome {
    let speak = |e: CliError| e.from_speaker("stagehook mcp");
    let layered = load(args.config.as_deref(), &[]).map_err(speak)?;
    if args.token.as_deref().is_some_and(str::is_empty) {
        return Err(speak(CliError::coded(Exit::Config, "bad_token", "--token (or STAGEHOOK_TOKEN) is empty")));
    }
    let effective: serde_json::Map<_, _> = layered
        .show()
        .into_iter()
        .map(|(k, v, src)| (k, serde_json::json!({"value": v, "source": src.to_string()})))
        .collect();
    let Layered { config, endpoints, .. } = layered;
    let api = Remote {
        server: crate::send::server_url(&config, args.server.as_deref()),
        token: args.token.or_else(|| config.server.admin_token.as_ref().map(|t| t.expose().to_string())),
    };
    tracing::info!(server = %crate::redact::url(&api.server), allow_write = args.allow_write, "stagehook mcp on stdio");
    let server = Server {
        api,
        config,
        endpoints,
        env: env_vars(),
        effective: effective.into(),
        allow_write: args.allow_write,
        clock: crate::Clock::system(),
    };
    let runtime = runtime(Threads::One).map_err(speak)?;
    server
        .serve(&runtime, std::io::stdin().lock(), std::io::stdout().lock())
        .map_err(|e| speak(CliError::new(Exit::Failure, format!("stdio: {e}"))))?;
    Ok(Exit::Success)
}
