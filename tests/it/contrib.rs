//! `contrib/`: the systemd unit runs `serve` on its state directory and is not restarted on a
//! configuration error; `systemd-analyze verify` accepts it and `systemd-analyze security` rates
//! it well hardened (systemd's tools where installed; CI installs them).

use std::path::Path;
use std::process::Command;

fn unit() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/stagehook.service")).unwrap()
}

/// The unit with `ExecStart` pointing at the binary this test run built, in a folder of its own
/// (systemd-analyze checks that the program exists).
fn unit_here(dir: &Path) -> std::path::PathBuf {
    let text = unit().replace("/usr/local/bin/stagehook", env!("CARGO_BIN_EXE_stagehook"));
    let path = dir.join("stagehook.service");
    std::fs::write(&path, text).unwrap();
    path
}

/// systemd-analyze, or `None` on a machine without systemd's tools (a developer's Mac);
/// CI installs them, so there a missing tool fails the test.
fn systemd_analyze() -> Option<Command> {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(out) if out.status.success() => Some(Command::new("systemd-analyze")),
        _ if std::env::var_os("CI").is_some() => panic!("systemd-analyze is missing; .ci/run installs systemd"),
        _ => {
            eprintln!("systemd-analyze is not installed: the unit is only read, not verified");
            None
        }
    }
}

#[test]
fn the_unit_runs_serve_with_its_state_directory_and_does_not_restart_on_a_config_error() {
    let unit = unit();
    let line = |key: &str| {
        unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key}="))
    };
    let exec = line("ExecStart");
    assert!(exec.starts_with("/usr/local/bin/stagehook serve --config /etc/stagehook/staging.toml"), "{exec}");
    // The data folder is the state directory systemd creates and hands to the dynamic user.
    assert!(exec.ends_with(&format!("--data-dir /var/lib/{}", line("StateDirectory"))), "{exec}");
    assert_eq!(line("DynamicUser"), "yes");
    // `serve` exits 2 on a configuration error (tests/it/exits.rs): a restart cannot fix it.
    assert_eq!(line("RestartPreventExitStatus"), "2");
    assert_eq!(line("KillSignal"), "SIGTERM");
    for hardening in ["ProtectSystem=strict", "NoNewPrivileges=yes", "ProtectHome=yes", "PrivateTmp=yes"] {
        assert!(unit.lines().any(|l| l == hardening), "{hardening}");
    }
}

#[test]
fn systemd_analyze_verifies_the_unit_and_rates_it_well_hardened() {
    let Some(mut verify) = systemd_analyze() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = unit_here(dir.path());
    let out = verify.arg("verify").arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    // Anything it says about the unit is a problem it found (it is silent on a sound unit).
    assert!(!said.contains("stagehook.service"), "{said}");

    let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&path).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let level: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for stagehook.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    // systemd calls 0 to 2 "OK"; a unit without hardening is 9.6 ("UNSAFE").
    assert!(level <= 2.0, "exposure {level}: {report}");
}
