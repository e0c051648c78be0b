//! `stagehook store verify`: reads a stopped stagehook's data folder back through
//! [`crate::store::verify`] and prints one line per damaged item, then a summary.

use super::{load, CliError, Exit, Outcome, VerifyArgs};

/// Exit 0 when sound, 1 when damaged, 2 ([`Exit::Unchecked`]) when the folder could not be
/// checked.
pub fn verify(args: VerifyArgs) -> Outcome {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => load(args.config.as_deref(), &[])?.config.server.data_dir,
    };
    let report = crate::store::verify::verify(&data_dir).map_err(|e| CliError::new(Exit::Unchecked, e.to_string()))?;
    for finding in &report.findings {
        println!("damaged: {finding}");
    }
    let verdict = match report.findings.len() {
        0 => "all sound".to_string(),
        1 => "1 damaged item".to_string(),
        n => format!("{n} damaged items"),
    };
    if report.recovered > 0 {
        println!("applied {} groups of the log that the database lacked, as a start would", report.recovered);
    }
    println!("checked {} in {}: {verdict}", report.checked, data_dir.display());
    Ok(Exit::ok_if(report.sound()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_no_database_is_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = verify(VerifyArgs { config: None, data_dir: Some(dir.path().to_path_buf()) });
        let e = outcome.expect_err("nothing to check");
        assert_eq!(e.exit, Exit::Unchecked);
        assert!(e.message.contains("no stagehook database"), "{e}");
        assert!(!dir.path().join("db").exists(), "none is created");
    }
}
