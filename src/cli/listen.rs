//! `stagehook listen`: follows a staging stagehook from this machine through [`crate::listen`].
//! Here the flags become a [`Listen`]: the targets, the local secrets (`--config` layered with
//! the environment, then `--secret`), the name, the state file and the first run's start.

use std::path::PathBuf;

use sha2::Digest;

use super::{load, runtime, CliError, Exit, ListenArgs, Outcome, Threads};
use crate::config::layers::flag_value;
use crate::listen::{is_safe_url, Listen, ListenError, Targets};
use crate::providers::registry::ProviderKind;
use crate::Clock;

/// Runs until the staging stagehook refuses (exit 2: a token or filter to fix) or the state
/// file cannot be written (exit 1); a bad flag is exit 2 before anything is done.
pub fn run(args: ListenArgs) -> Outcome {
    let speak = |e: CliError| e.from_speaker("stagehook listen");
    let listen = prepare(args).map_err(speak)?;
    let runtime = runtime(Threads::One).map_err(speak)?;
    runtime.block_on(listen.run(&mut std::io::stdout())).map_err(|e| {
        let exit = match e {
            ListenError::Refused(_) => Exit::Config,
            ListenError::State { .. } | ListenError::Client(_) => Exit::Failure,
        };
        speak(CliError::new(exit, e.to_string()))
    })?;
    Ok(Exit::Success)
}

fn bad(code: &'static str, message: String) -> CliError {
    CliError::coded(Exit::Config, code, message)
}

/// The listener the flags describe, or the first flag that is wrong.
pub fn prepare(args: ListenArgs) -> Result<Listen, CliError> {
    let server = args.url.trim_end_matches('/').to_string();
    let shown = crate::redact::url(&server);
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(bad("bad_url", format!("{shown} is not an http(s) URL of a staging stagehook")));
    }
    if !args.insecure_http && !is_safe_url(&server) {
        return Err(bad(
            "insecure_http",
            format!(
                "{shown} is plain http to another machine: the token and every event would cross the network in \
                 the clear; use https, or --insecure-http if this network is yours"
            ),
        ));
    }
    let targets = Targets::parse(&args.forward_to).map_err(|e| bad("bad_forward_to", e.to_string()))?;
    let (config, endpoints) = local_secrets(&args)?;
    let timeout = humantime::parse_duration(&args.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| bad("bad_timeout", format!("--timeout {}: not a duration above zero (`10s`)", args.timeout)))?;
    let clock = Clock::system();
    let since_ms = args.since.as_deref().map(|s| since(s, &clock)).transpose()?;
    // A malformed pattern would match nothing and the listener would wait for ever in silence.
    for t in &args.types {
        crate::filter::type_pattern(t).map_err(|e| bad("bad_type", format!("--type {e}")))?;
    }
    let host = host_name();
    let name = match args.name {
        Some(n) if n.trim().is_empty() => return Err(bad("bad_name", "--name is empty".into())),
        Some(n) => n,
        None => format!("{}@{host}", std::env::var("USER").unwrap_or_else(|_| "someone".into())),
    };
    let state_path = match args.state {
        Some(path) => path,
        None => default_state(&server, &name)?,
    };
    if args.token.as_deref().is_some_and(str::is_empty) {
        return Err(bad("bad_token", "--token (or STAGEHOOK_TOKEN) is empty".into()));
    }
    Ok(Listen {
        server,
        token: args.token,
        name,
        host,
        targets,
        providers: args.provider,
        types: args.types,
        state_path,
        since_ms,
        json: args.json,
        report: args.report,
        timeout,
        retries: args.retries,
        config,
        endpoints,
        clock,
    })
}

/// The local configuration, with each `--secret NAME=SECRET` as the credential of `NAME`'s
/// section (its kind from the file, else the kind it is named after).
fn local_secrets(args: &ListenArgs) -> Result<(crate::config::Config, Vec<crate::providers::Endpoint>), CliError> {
    let file = load(args.config.as_deref(), &[])?;
    let mut flags = Vec::new();
    for given in &args.secret {
        let Some((name, secret)) = given.split_once('=').filter(|(n, s)| !n.is_empty() && !s.is_empty()) else {
            return Err(bad("bad_secret", "--secret takes NAME=SECRET (e.g. --secret stripe=whsec_...)".into()));
        };
        let kind = match file.config.providers.get(name) {
            Some(section) => section.settings.kind(),
            None => ProviderKind::parse(name).ok_or_else(|| {
                bad(
                    "bad_secret",
                    format!(
                        "--secret {name}=...: no [providers.{name}] in --config, and `{name}` is no kind; declare the \
                         endpoint with its `kind` in the file"
                    ),
                )
            })?,
        };
        let key = format!("providers.{name}.{}", kind.credential_key());
        flags.push((key, flag_value(&secret)));
    }
    let flags: Vec<(&str, &str, toml::Value)> =
        flags.iter().map(|(k, v)| (k.as_str(), "--secret", v.clone())).collect();
    let layered = load(args.config.as_deref(), &flags)?;
    Ok((layered.config, layered.endpoints))
}

/// `--since`: a duration ago (`2h`), or a time (RFC 3339 or Unix ms).
fn since(text: &str, clock: &Clock) -> Result<i64, CliError> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(clock.now_ms() - d.as_millis() as i64);
    }
    crate::filter::time("since", &serde_json::Value::String(text.into())).ok().flatten().ok_or_else(|| {
        bad("bad_since", format!("--since {text}: not a duration (`2h`) nor a time (RFC 3339 or Unix ms)"))
    })
}

/// `$XDG_STATE_HOME/stagehook/listen-<hash>.json` (or under `~/.local/state`): one place per
/// staging URL and listener name.
fn default_state(server: &str, name: &str) -> Result<PathBuf, CliError> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/state")))
        .ok_or_else(|| bad("no_state_dir", "neither XDG_STATE_HOME nor HOME is set: give --state FILE".into()))?;
    let hash = sha2::Sha256::digest(format!("{server}\n{name}").as_bytes());
    Ok(base.join("stagehook").join(format!("listen-{}.json", &hex::encode(hash)[..16])))
}

/// This machine's name.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if rc != 0 || end == 0 {
        return "localhost".into();
    }
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
