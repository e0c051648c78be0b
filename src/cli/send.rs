//! `stagehook send`: signed test events from the providers' fixtures, or the events of an export
//! (`--from`), through [`crate::send`]; the answers as text or, with `--json`, as JSON.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{env_vars, load, runtime, CliError, Exit, Outcome, SendArgs, Threads};
use crate::config::layers::Layered;
use crate::config::Config;
use crate::providers::Endpoint;
use crate::send::{SendFailure, SendRequest};
use crate::Clock;

/// Exit 0 when every answer is 2xx, 1 otherwise or when nothing could be sent, 2 for a
/// configuration to fix. With `--json`, a failure is a JSON object on stdout too (a stable
/// `code`), with the same exit code as in text.
pub fn run(args: SendArgs) -> Outcome {
    let layered = load(args.config.as_deref(), &[])?;
    // For the hint when nothing answers: where the address `send` used came from.
    let bind_source = layered
        .show()
        .into_iter()
        .find(|(key, _, _)| key == "server.bind")
        .map(|(_, _, source)| source.to_string())
        .unwrap_or_else(|| "default".into());
    let Layered { config, endpoints, .. } = layered;
    if args.list {
        if args.json {
            println!("{:#}", crate::send::list_json(&endpoints));
        } else {
            print!("{}", crate::send::list(&endpoints));
        }
        return Ok(Exit::Success);
    }
    if let Some(path) = &args.from {
        return send_from(path, &config, &endpoints, &args, &bind_source);
    }
    let payload = match &args.file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            CliError::coded(Exit::Config, "file_unreadable", format!("cannot read {}: {e}", path.display()))
        })?),
        None => None,
    };
    let provider = args.provider.clone().unwrap_or_default();
    let refusals = crate::send::refusals(&config, &endpoints, &provider, &env_vars());
    if !refusals.is_empty() {
        let mut text: Vec<String> = refusals.iter().map(|f| format!("  {} [{}]: {}", f.key, f.id, f.message)).collect();
        text.push("(set the real secret in the environment of this shell, as for `serve`, or in the file)".into());
        let message = format!(
            "not sending: the configuration's secret for `{provider}` cannot be the one stagehook verifies with:"
        );
        return Err(CliError::coded(Exit::Config, "config_refused", message)
            .with_lines(text)
            .with_detail("findings", serde_json::json!(refusals)));
    }
    let req = SendRequest {
        provider,
        event: args.event.clone(),
        payload,
        to: args.to.clone(),
        server: args.server.clone(),
        count: args.count,
    };
    let runtime = runtime(Threads::One)?;
    let clock = Clock::system();
    let sent = runtime.block_on(crate::send::send(&config, &endpoints, &req, || clock.now_s())).map_err(|e| {
        let failure = CliError::coded(Exit::Failure, e.code(), e.to_string());
        match &e {
            SendFailure::Post { .. } => {
                let hint = unreachable_hint(&config, &args, &bind_source);
                failure.with_lines(vec![format!("  ({hint})")]).with_detail("hint", hint.into())
            }
            _ => failure,
        }
    })?;
    let ok = sent.iter().all(|s| (200..300).contains(&s.status));
    if args.json {
        let sent: Vec<Value> = sent
            .iter()
            .map(|s| serde_json::json!({"url": s.url, "status": s.status, "body": as_json(&s.body)}))
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
    Ok(Exit::ok_if(ok))
}

/// An answer's body as JSON where it is JSON (stagehook's always is), else as a string.
fn as_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| body.into())
}

/// `send --from FILE`: every event of an export, in order, signed afresh for its provider's
/// configured secret; one line per event, exit 1 if any was not accepted (2xx). The whole file
/// is read first: a malformed line (exit 2) or a placeholder secret sends nothing.
fn send_from(path: &Path, config: &Config, endpoints: &[Endpoint], args: &SendArgs, bind_source: &str) -> Outcome {
    let open = || std::fs::File::open(path).map(std::io::BufReader::new);
    let mut providers = BTreeSet::new();
    open()
        .map_err(crate::export::ImportError::Read)
        .and_then(|file| {
            crate::export::lines(file).try_for_each(|line| {
                line.map(|(_, e)| {
                    providers.insert(e.provider);
                })
            })
        })
        .map_err(|e| {
            CliError::coded(Exit::Config, "bad_export", format!("{}: {e}; nothing was sent", path.display()))
        })?;
    let env = env_vars();
    let refusals: Vec<_> = providers.iter().flat_map(|p| crate::send::refusals(config, endpoints, p, &env)).collect();
    if let Some(f) = refusals.first() {
        return Err(CliError::coded(
            Exit::Config,
            "config_refused",
            format!("not sending: {} [{}]: {} (set the real secret, as for `serve`)", f.key, f.id, f.message),
        ));
    }
    let runtime = runtime(Threads::One)?;
    let client =
        crate::delivery::client::Client::new().map_err(|e| CliError::coded(Exit::Failure, "client", e.to_string()))?;
    let file = open().map_err(|e| {
        CliError::coded(Exit::Config, "file_unreadable", format!("cannot read {}: {e}", path.display()))
    })?;
    let clock = Clock::system();
    let (mut accepted, mut failed, mut unanswered) = (0u64, 0u64, false);
    let mut report = Vec::new();
    for line in crate::export::lines(file) {
        // Checked above; an error here means the file changed under us.
        let (_, event) =
            line.map_err(|e| CliError::coded(Exit::Failure, "bad_export", format!("{}: {e}", path.display())))?;
        let to = (args.to.as_deref(), args.server.as_deref());
        let r = runtime.block_on(crate::send::resend(config, endpoints, &event, &client, to, clock.now_s()));
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
                let body = as_json(&sent.body);
                let duplicate = body.get("duplicate") == Some(&Value::Bool(true));
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
                unanswered |= matches!(e, SendFailure::Post { .. });
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
    Ok(Exit::ok_if(failed == 0))
}

/// What `send` tried when nothing answered, and what to check: most often stagehook is not
/// running, or runs with another configuration (another port) than the one `send` read.
fn unreachable_hint(config: &Config, args: &SendArgs, bind_source: &str) -> String {
    if let Some(to) = &args.to {
        return format!("nothing answered at --to {to}: is the app listening there?");
    }
    let server = crate::send::server_url(config, args.server.as_deref());
    let from = match (&args.server, &args.config) {
        (Some(_), _) => "--server".to_string(),
        (None, Some(path)) => format!("server.bind ({bind_source}) of {}", path.display()),
        (None, None) => format!("server.bind ({bind_source}); no --config given"),
    };
    format!(
        "is stagehook running? send looked for it at {server}, from {from}. Start it with `stagehook serve`, give send the same `--config` as serve, or name it with `--server http://HOST:PORT`."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SendArgs {
        SendArgs {
            provider: Some("stripe".into()),
            from: None,
            config: None,
            event: None,
            file: None,
            to: None,
            server: None,
            count: 1,
            list: false,
            json: true,
        }
    }

    #[test]
    fn inputs_that_cannot_be_read_are_coded_configuration_errors_and_send_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = run(SendArgs { file: Some(missing), ..args() }).expect_err("no file");
        assert_eq!((e.exit, e.code.as_deref()), (Exit::Config, Some("file_unreadable")), "{e}");

        let export = dir.path().join("capture.ndjson");
        std::fs::write(&export, "not json\n").unwrap();
        let e = run(SendArgs { provider: None, from: Some(export), ..args() }).expect_err("a malformed line");
        assert_eq!((e.exit, e.code.as_deref()), (Exit::Config, Some("bad_export")), "{e}");
        assert!(
            e.message.ends_with("line 1: not an exported event: expected ident at line 1 column 2; nothing was sent"),
            "{e}"
        );
    }
}
