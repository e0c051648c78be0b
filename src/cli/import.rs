//! `stagehook import FILE`: loads an export into a stopped stagehook's data folder through
//! [`crate::export::check`] and [`crate::export::import`].

use super::{load_with_dir, open_stopped, runtime, CliError, Exit, ImportArgs, Outcome, Threads};
use crate::export::{ImportError, Rules};

/// The whole file is checked first, so a refused line (malformed, a provider name no endpoint
/// could have, a body over the limit; exit 1, naming each) imports nothing; then every event is
/// stored as processed, duplicates skipped and counted.
pub fn run(args: ImportArgs) -> Outcome {
    let config = load_with_dir(args.config.as_deref(), args.data_dir.as_deref())?.config;
    let open = || std::fs::File::open(&args.file).map(std::io::BufReader::new);
    let file = args.file.display();
    let rules = Rules { max_body_bytes: args.max_body_bytes.unwrap_or(config.limits.max_body_bytes) };
    let checked = open()
        .map_err(ImportError::Read)
        .and_then(|f| crate::export::check(f, &rules))
        .map_err(|e| CliError::new(Exit::Failure, format!("{file}: {e}; nothing was imported")))?;
    let store = open_stopped(&config, false, "")?;
    let runtime = runtime(Threads::One)?;
    let result = match open() {
        Ok(reader) => runtime.block_on(crate::export::import(&store, reader, &checked)),
        Err(e) => Err(ImportError::Read(e)),
    };
    let closed = runtime.block_on(store.shutdown());
    match (result, closed) {
        (Ok(done), Ok(())) => {
            println!(
                "imported {} events, skipped {} duplicates, into {}",
                done.imported,
                done.skipped,
                config.server.data_dir.display()
            );
            Ok(Exit::Success)
        }
        (Err(e), _) => Err(CliError::new(
            Exit::Failure,
            format!(
                "{file}: {e}; the events stored before it stay (importing the file again skips them as duplicates)"
            ),
        )),
        (Ok(_), Err(e)) => Err(CliError::new(Exit::Failure, e.to_string())),
    }
}
