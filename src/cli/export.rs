//! `stagehook export`: a stopped stagehook's events as NDJSON through [`crate::export::Exporter`],
//! to `--out` or stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::{load_with_dir, open_stopped, runtime, CliError, Exit, ExportArgs, Outcome, Threads};
use crate::config::layers::Layered;
use crate::export::Exporter;
use crate::store::Store;

/// Writes to `--out` (beside it, then renamed, so a failed export leaves no short file that looks
/// whole) or stdout; the count to stderr. Exit 1 when an event could not be read back (the others
/// are written), 2 when nothing could be exported.
pub fn run(args: ExportArgs) -> Outcome {
    let Layered { config, endpoints, .. } = load_with_dir(args.config.as_deref(), args.data_dir.as_deref())?;
    let query: BTreeMap<String, String> = [
        ("provider", &args.provider),
        ("status", &args.status),
        ("type", &args.event_type),
        ("source", &args.source),
        ("since", &args.since),
        ("until", &args.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
    .collect();
    let filter = crate::filter::from_query(&query).map_err(|e| CliError::new(Exit::Config, e.to_string()))?;
    let hint = ", or export from it: GET /staging/webhooks/events/export";
    let store = open_stopped(&config, true, hint)?;
    let partial = args.out.as_ref().map(|p| {
        let mut name = p.as_os_str().to_owned();
        name.push(".partial");
        PathBuf::from(name)
    });
    let mut out: Box<dyn Write> = match &partial {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => return Err(CliError::new(Exit::Config, format!("cannot write {}: {e}", path.display()))),
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut exporter = Exporter::new(filter);
    let written = loop {
        match exporter.next_lines(&store, &endpoints) {
            Ok(Some(lines)) => {
                if let Err(e) = out.write_all(&lines) {
                    break Err(format!("cannot write: {e}"));
                }
            }
            Ok(None) => break out.flush().map_err(|e| format!("cannot write: {e}")),
            Err(e) => break Err(e.to_string()),
        }
    };
    drop(out);
    let written = written.and_then(|()| close(store).map_err(|e| e.to_string()));
    let written = match (written, &partial, &args.out) {
        (Ok(()), Some(from), Some(to)) => {
            std::fs::rename(from, to).map_err(|e| format!("cannot write {}: {e}", to.display()))
        }
        (other, Some(from), _) => {
            let _ = std::fs::remove_file(from);
            other
        }
        (other, None, _) => other,
    };
    written.map_err(|e| CliError::new(Exit::Failure, format!("export stopped: {e}")))?;
    eprintln!("exported {} events from {}", exporter.exported, config.server.data_dir.display());
    if exporter.damaged > 0 {
        return Err(CliError::new(
            Exit::Failure,
            format!(
                "left out {} events that do not read back (run `stagehook store verify` to see them)",
                exporter.damaged
            ),
        ));
    }
    Ok(Exit::Success)
}

/// Flushes and closes a store opened by a command.
fn close(store: Store) -> std::io::Result<()> {
    let runtime = runtime(Threads::One).map_err(|e| std::io::Error::other(e.message))?;
    runtime.block_on(store.shutdown()).map_err(std::io::Error::other)
}
