//! `stagehook check-app`: tests the app's webhook handler through [`crate::check_app`] and prints
//! the scorecard as text or, with `--json`, as JSON (the shape the API answers too).

use super::{load, runtime, CheckAppArgs, CliError, Exit, Outcome, Threads};
use crate::check_app::{CheckName, Plan};
use crate::config::layers::Layered;
use crate::Clock;

/// Exit 0 when every check passes (or does not apply), 1 when any fails, 2 for a configuration
/// error: an unknown endpoint or check, nothing to sign with, no target.
pub fn run(args: CheckAppArgs) -> Outcome {
    let only = args
        .only
        .iter()
        .map(|name| {
            CheckName::parse(name).ok_or_else(|| {
                CliError::coded(
                    Exit::Config,
                    "unknown_check",
                    format!("no check `{name}`; known: {}", CheckName::known()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Layered { config, endpoints, .. } = load(args.config.as_deref(), &[])?;
    let plan = Plan::new(&config, &endpoints, &args.endpoint, args.target.as_deref(), only)
        .map_err(|e| CliError::coded(Exit::Config, e.code(), e.to_string()))?;
    let clock = Clock::system();
    let report = runtime(Threads::One)?
        .block_on(crate::check_app::run(&plan, clock.now_s(), clock.now_ms()))
        .map_err(|e| CliError::coded(Exit::Failure, e.code(), e.to_string()))?;
    if args.json {
        let json = serde_json::to_value(&report).map_err(|e| CliError::new(Exit::Failure, e.to_string()))?;
        println!("{json:#}");
    } else {
        print!("{}", crate::check_app::text(&report));
    }
    Ok(Exit::ok_if(report.ok))
}
