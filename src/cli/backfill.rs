//! `stagehook backfill`: asks the running stagehook to recover an endpoint's missed events
//! ([`crate::backfill::remote`]) and prints the run's report.

use serde_json::{json, Map, Value};

use super::{load, runtime, BackfillArgs, CliError, Exit, Outcome, Threads};
use crate::backfill::remote::{Remote, RemoteError};
use crate::clock::rfc3339;

/// Exit 0 when the run ended, 1 when the provider's API or the server failed it, 2 when it was
/// refused (an unknown endpoint, no API access, a bad window, a wrong token).
pub fn run(args: BackfillArgs) -> Outcome {
    let speak = |e: CliError| e.from_speaker("stagehook backfill");
    let config = load(args.config.as_deref(), &[])?.config;
    let remote = Remote {
        server: crate::send::server_url(&config, args.server.as_deref()),
        token: config.server.admin_token.as_ref().map(|t| t.expose().to_string()),
    };
    let mut ask = Map::new();
    ask.insert("endpoint".into(), json!(args.endpoint));
    // Durations and times go as they were typed: the server reads them against its own clock.
    if let Some(since) = &args.since {
        ask.insert("since".into(), json!(since));
    }
    if let Some(until) = &args.until {
        ask.insert("until".into(), json!(until));
    }
    ask.insert("types".into(), json!(args.types));
    ask.insert("dry_run".into(), json!(args.dry_run));
    let runtime = runtime(Threads::One).map_err(speak)?;
    let report = runtime.block_on(remote.run(ask)).map_err(|e| {
        speak(match e {
            RemoteError::Refused { status, code, message } => {
                let exit = if status >= 500 { Exit::Failure } else { Exit::Config };
                CliError::coded(exit, code, message)
            }
            RemoteError::Unreachable(m) => CliError::new(Exit::Failure, m),
        })
    })?;
    if args.json {
        println!("{report}");
    } else {
        print!("{}", text(&report));
    }
    if let Some(error) = report.get("error").filter(|e| !e.is_null()) {
        let code = error["code"].as_str().unwrap_or("backfill_failed").to_string();
        let message = error["message"].as_str().unwrap_or("the run failed").to_string();
        return Err(speak(CliError::coded(Exit::Failure, code, message)));
    }
    Ok(Exit::Success)
}

/// The report for a person: the window, the counts, then what a dry run would add and what was
/// refused.
pub fn text(r: &Value) -> String {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let at = |v: &Value| v.as_i64().map(rfc3339).unwrap_or_default();
    let mut out = format!(
        "{} {}: {} to {}\n",
        if r["dry_run"] == true { "dry run of" } else { "backfill of" },
        r["endpoint"].as_str().unwrap_or(""),
        at(&r["window"]["since_ms"]),
        at(&r["window"]["until_ms"]),
    );
    if let Some(cut) = r["cut_from_ms"].as_i64() {
        out.push_str(&format!("  (asked from {}: the provider's API keeps no older events)\n", rfc3339(cut)));
    }
    let added = if r["dry_run"] == true { "would add" } else { "added" };
    out.push_str(&format!(
        "listed {}, already stored {}, {added} {}, refused {}\n",
        n("listed"),
        n("already_stored"),
        n("added"),
        n("refused")
    ));
    for e in r["would_add"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  would add {} {} (created {})\n",
            e["event_id"].as_str().unwrap_or(""),
            e["event_type"].as_str().unwrap_or(""),
            at(&e["created_ms"])
        ));
    }
    for e in r["refusals"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  refused {}: {}: {}\n",
            e["event_id"].as_str().unwrap_or(""),
            e["code"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        ));
    }
    out
}
