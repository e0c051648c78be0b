//! `stagehook tail`: follows the running stagehook's event stream through [`crate::tail`].

use std::io::IsTerminal;

use super::{load, runtime, CliError, Exit, Outcome, TailArgs, Threads};
use crate::tail::{Tail, TailError};

/// Runs until the stream ends; exit 2 when the server refuses it (retrying will not help), 1 when
/// nothing answers.
pub fn run(args: TailArgs) -> Outcome {
    let speak = |e: CliError| e.from_speaker("stagehook tail");
    let config = load(args.config.as_deref(), &[])?.config;
    let tail = Tail {
        server: crate::send::server_url(&config, args.server.as_deref()),
        token: config.server.admin_token.as_ref().map(|t| t.expose().to_string()),
        provider: args.provider,
        status: args.status,
        json: args.json,
        colour: !args.json && std::io::stdout().is_terminal(),
    };
    let runtime = runtime(Threads::One).map_err(speak)?;
    runtime.block_on(tail.run(&mut std::io::stdout())).map_err(|e| {
        let exit = match e {
            TailError::Refused(_) => Exit::Config,
            TailError::Unreachable { .. } => Exit::Failure,
        };
        speak(CliError::new(exit, e.to_string()))
    })?;
    Ok(Exit::Success)
}
