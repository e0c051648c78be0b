//! `stagehook check-config`: every finding of [`crate::config::validate`] on the layered
//! configuration (and, unless `--offline`, of probing the `forward_to` targets), as text or JSON.

use super::{env_vars, load, runtime, CheckArgs, Exit, Outcome, Threads};
use crate::config::validate::{probe_targets, validate, Context};
use crate::finding::{Finding, Severity};

/// Exit 1 when a finding is an error, 2 when the configuration does not load.
pub fn run(args: CheckArgs) -> Outcome {
    let layered = load(args.config.as_deref(), &[])?;
    let mut report = validate(&layered.config, &env_vars(), Context::Check);
    report.findings.extend(alerting(&layered.config));
    if !args.offline {
        runtime(Threads::One)?.block_on(async {
            report.findings.extend(probe_targets(&layered.config).await);
            report.findings.extend(crate::redis::probe(&layered.config.redis_settings()).await);
        });
    }
    if args.json {
        let mut out = report.to_json();
        if args.show {
            out["effective"] = layered
                .show()
                .into_iter()
                .map(|(k, v, src)| (k, serde_json::json!({"value": v, "source": src.to_string()})))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{out:#}");
    } else {
        if args.show {
            for (key, value, source) in layered.show() {
                println!("{key} = {value}    # {source}");
            }
            println!();
        }
        print!("{}", report.to_text());
    }
    Ok(Exit::ok_if(report.errors() == 0))
}

/// Who is told of what: each notifier and each rule as an `ok` finding, or one saying there are
/// none, so that a commented-out `[[alerts]]` block is seen before it is missed.
fn alerting(config: &crate::Config) -> Vec<Finding> {
    let mut out: Vec<Finding> = config
        .notifiers
        .iter()
        .map(|(name, n)| Finding::new("notifiers.declared", Severity::Ok, &format!("notifiers.{name}"), n.describe()))
        .collect();
    out.extend(
        config
            .alerts
            .iter()
            .enumerate()
            .map(|(i, rule)| Finding::new("alerts.rule", Severity::Ok, &format!("alerts[{i}]"), rule.describe())),
    );
    if config.alerts.is_empty() {
        out.push(Finding::new("alerts.none", Severity::Ok, "alerts", "no [[alerts]] rules: nothing is notified"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging.toml");
        std::fs::write(&path, toml).unwrap();
        run(CheckArgs { config: Some(path), show: false, json: false, offline: true })
    }

    #[test]
    fn a_file_that_does_not_load_is_a_configuration_to_fix() {
        let e = check("[server]\nbind = \"nonsense\"\n").expect_err("does not load");
        assert_eq!(e.exit, Exit::Config);
        assert_eq!(e.code, None, "reported as text, even under --json");
        assert!(e.message.contains("server.bind"), "{e}");
    }

    #[test]
    fn a_file_with_an_error_finding_loads_and_fails() {
        let placeholder = "[providers.stripe]\nsecret = \"whsec_REPLACE_ME\"\n";
        assert_eq!(check(placeholder).expect("loads"), Exit::Failure);
    }
}
