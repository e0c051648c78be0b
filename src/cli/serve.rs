//! `stagehook serve`: checks the layered configuration with [`crate::config::validate`], binds the
//! listeners, opens the [`App`] and serves until SIGINT or SIGTERM.

use std::collections::BTreeMap;

use super::{env_vars, load, runtime, CliError, Exit, Outcome, ServeArgs, Threads};
use crate::config::layers::{flag_value, Layered};
use crate::config::validate::{validate, Context, Severity};
use crate::config::{DedupBackend, LimitsBackend};
use crate::{App, Clock};

/// Exit 0 after a clean stop, 2 for a configuration to fix (another running stagehook under the
/// same name included), 1 when the store or an address cannot be opened.
pub fn run(args: ServeArgs) -> Outcome {
    let mut flags = Vec::new();
    if let Some(bind) = args.bind {
        flags.push(("server.bind", "--bind", flag_value(&bind)));
    }
    if let Some(dir) = &args.data_dir {
        flags.push(("server.data_dir", "--data-dir", flag_value(dir)));
    }
    // The providers are built (and the origins read) here, once, by the check, and handed on to
    // `App::open_built`.
    let Layered { config, endpoints, origins, .. } = load(args.config.as_deref(), &flags)?;
    // Every problem at once, not just the first; warnings go to the log.
    let report = validate(&config, &env_vars(), Context::Standalone);
    for f in &report.findings {
        if f.severity == Severity::Warning {
            tracing::warn!(id = f.id, key = %f.key, "{}", f.message);
        }
    }
    if report.errors() > 0 {
        let mut lines: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("  {} [{}]: {}", f.key, f.id, f.message))
            .collect();
        let check = match &args.config {
            Some(path) => format!("stagehook check-config --config {}", path.display()),
            None => "stagehook check-config".to_string(),
        };
        lines.push(format!("(run `{check}` for the full report)"));
        let message = format!("the configuration has {} error(s):", report.errors());
        return Err(CliError::new(Exit::Config, message).with_lines(lines));
    }
    let failure = |message: String| CliError::new(Exit::Failure, message);
    runtime(Threads::Many)?.block_on(async move {
        let bind = config.server.bind;
        let data_dir = config.server.data_dir.clone();
        let grace = config.server.shutdown_grace_seconds;
        let forwards: BTreeMap<String, Vec<String>> = config
            .sections()
            .into_iter()
            .map(|(name, section)| (name, section.forward_to.iter().map(|u| crate::redact::url(u)).collect()))
            .collect();
        let routes: BTreeMap<String, usize> =
            config.sections().into_iter().map(|(name, section)| (name, section.routes.len())).collect();
        // What the startup lines say besides the providers: the shared backends and who is told
        // of what, so that a rule or a notifier left commented out is seen at once.
        let redis_use: Vec<&str> = [
            ("the rate limit", config.limits.backend == LimitsBackend::Redis),
            ("duplicates", config.dedup.backend == DedupBackend::Redis),
        ]
        .into_iter()
        .filter_map(|(what, on)| on.then_some(what))
        .collect();
        let redis_url = config.redis.url.as_deref().map(crate::redact::url).unwrap_or_default();
        let on_error = config.redis.on_error.as_str();
        let notifiers: Vec<String> =
            config.notifiers.iter().map(|(name, n)| format!("notifier {name}: {}", n.describe())).collect();
        let alerts: Vec<String> = config.alerts.iter().map(|rule| format!("alert: {}", rule.describe())).collect();
        // Bound before the store opens: a start that fails on a taken port leaves no new data
        // folder behind.
        let listener =
            tokio::net::TcpListener::bind(bind).await.map_err(|e| failure(format!("cannot listen on {bind}: {e}")))?;
        let metrics = match config.server.metrics_bind {
            Some(at) => Some(
                tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| failure(format!("cannot listen on {at} (server.metrics_bind): {e}")))?,
            ),
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        let app = App::open_built(config, endpoints, origins, Clock::system()).map_err(|e| failure(e.to_string()))?;
        // Another running stagehook under this name is a configuration to fix: its claims and
        // this one's stay apart, but nothing could tell the two instances apart.
        app.join_redis().await.map_err(|taken| CliError::new(Exit::Config, taken.to_string()))?;
        let app = match metrics {
            Some(l) => app.with_metrics_listener(l),
            None => app,
        };
        let shutdown = shutdown_signal(grace);
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| bind.to_string());
        println!("data dir: {}", data_dir.display());
        for (name, path, configured) in app.endpoints() {
            let state = if configured { "configured" } else { "not configured (no secret): answers 503" };
            // Where its events go, credentials masked as everywhere else.
            let targets = match forwards.get(&name).map(Vec::as_slice) {
                None | Some([]) => "stored only (no forward_to)".to_string(),
                Some(urls) => format!("forwards to {}", urls.join(", ")),
            };
            let routed = match routes.get(&name).copied().unwrap_or(0) {
                0 => String::new(),
                1 => ", and 1 route by event type".to_string(),
                n => format!(", and {n} routes by event type"),
            };
            println!("provider {name}: POST {path} ({state}), {targets}{routed}");
        }
        match app.redis_state() {
            None => println!("redis: not used (limits.backend and dedup.backend are local)"),
            Some(state) => {
                println!("redis: {redis_url} {state}, shares {} (on_error = \"{on_error}\")", redis_use.join(" and "))
            }
        }
        for line in notifiers.iter().chain(&alerts) {
            println!("{line}");
        }
        if alerts.is_empty() {
            println!("alerts: none ([[alerts]] rules notify no one until some are set)");
        }
        if let Some(at) = metrics_addr {
            println!("metrics: GET http://{at}/metrics (no token)");
        }
        // Last, so that a script (or a test) waiting for this line has seen the others.
        println!("stagehook {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
        app.serve(listener, shutdown).await;
        tracing::info!("stopped cleanly");
        Ok(Exit::Success)
    })
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either.
///
/// The handlers must exist before the "listening" line is printed: a future that registered
/// them only when first polled would leave a window in which SIGTERM still kills the process
/// outright, skipping the final flush.
///
/// The first signal says at once that stagehook is stopping and for how long it may wait (a
/// silent wait of up to twice the grace looks like a hang); a second one stops the process at
/// once, with [`Exit::Signalled`] (130 for Ctrl-C), as a shell reports a process a signal
/// ended: it did not stop cleanly, but nothing acknowledged is lost (every 2xx was flushed
/// first), and jobs in flight stay queued for the next start.
#[cfg(unix)]
fn shutdown_signal(grace_s: u64) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                eprintln!(
                    "stagehook: stopping: no new connections; waiting up to {grace_s} s for requests in flight, then up to {grace_s} s for deliveries in flight (Ctrl-C again to stop at once)"
                );
                tokio::spawn(async move {
                    let signal = tokio::select! {
                        _ = int.recv() => libc::SIGINT,
                        _ = term.recv() => libc::SIGTERM,
                    };
                    eprintln!("stagehook: stopped at once by a second signal; deliveries in flight stay queued for the next start");
                    std::process::exit(Exit::Signalled(signal).code());
                });
            }
            _ => {
                tracing::warn!("cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}

#[cfg(not(unix))]
fn shutdown_signal(grace_s: u64) -> impl std::future::Future<Output = ()> {
    async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stagehook: stopping: waiting up to {grace_s} s for requests, then for deliveries, in flight");
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}
